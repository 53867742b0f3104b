//! Frames round-trip, and truncated, trailing, wrong-version, oversized and
//! arbitrary bytes are errors, never panics; entries travel as canonical
//! bytes.

#![allow(clippy::unwrap_used)]

use belfry_broadcast::config::MAX_FRAME_BYTES;
use belfry_wire::{decode, encode, ClientRequest, ClientResponse, FrameError, PeerMessage};
use proptest::prelude::*;

#[test]
fn frames_round_trip_and_reject_bad_bytes() {
    let m = ClientRequest::Submit(vec![[7; 32]; 3]);
    let f = encode(&m).unwrap();
    assert_eq!(decode::<ClientRequest>(&f).unwrap(), m);
    assert!(matches!(
        decode::<ClientRequest>(&f[..3]),
        Err(FrameError::Truncated { .. })
    ));
    assert!(matches!(
        decode::<ClientRequest>(&f[..f.len() - 1]),
        Err(FrameError::Truncated { .. })
    ));
    let mut long = f.clone();
    long.push(0);
    assert_eq!(decode::<ClientRequest>(&long), Err(FrameError::Trailing(1)));
    let mut v = f.clone();
    v[0] = 9;
    assert_eq!(decode::<ClientRequest>(&v), Err(FrameError::Version(9)));
    let mut huge = f.clone();
    huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode::<ClientRequest>(&huge),
        Err(FrameError::TooLarge { .. })
    ));
    let oversized = vec![0u8; MAX_FRAME_BYTES + 1];
    assert!(matches!(
        decode::<ClientRequest>(&oversized),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn entries_travel_as_canonical_bytes() {
    use belfry_timestamp::{DigestEntry, Entry};
    let e = Entry::Digest(DigestEntry {
        digest: [3; 32],
        witnessed_at: belfry_timestamp::clock::Micros(5),
        key: 2,
        witnesses: 3,
        late: true,
    });
    let r = ClientResponse::Entries {
        from: 4,
        entries: vec![e, e],
    };
    assert_eq!(decode::<ClientResponse>(&encode(&r).unwrap()).unwrap(), r);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode::<PeerMessage>(&bytes);
        let _ = decode::<ClientRequest>(&bytes);
    }
}

#[test]
fn client_calls_carry_ids_and_old_frames_are_request_zero() {
    use belfry_wire::{
        decode_call, decode_message, encode_call, encode_message, is_push, ClientCall, ClientError,
        ClientMessage, ClientPush,
    };
    let call = ClientCall {
        id: 77,
        request: ClientRequest::Receipts(vec![[1; 32]; 2]),
    };
    assert_eq!(decode_call(&encode_call(&call).unwrap()).unwrap(), call);
    // An in-process driver's bare request is request 0.
    let bare = encode(&ClientRequest::Submit(vec![[2; 32]])).unwrap();
    assert_eq!(
        decode_call(&bare).unwrap(),
        ClientCall {
            id: 0,
            request: ClientRequest::Submit(vec![[2; 32]])
        }
    );
    // Answers and pushes are told apart without decoding.
    let answer = ClientMessage::Answer {
        id: 77,
        response: ClientResponse::Error(ClientError::NotYetSigned),
    };
    let push = ClientMessage::Push {
        id: 77,
        push: ClientPush::Ordered(vec![([3; 32], 9)]),
    };
    let (fa, fp) = (
        encode_message(&answer).unwrap(),
        encode_message(&push).unwrap(),
    );
    assert!(!is_push(&fa) && is_push(&fp));
    assert_eq!(decode_message(&fa).unwrap(), answer);
    assert_eq!(decode_message(&fp).unwrap(), push);
    // Headers are checked before a body is read.
    let mut h = [0u8; 5];
    h.copy_from_slice(&fa[..5]);
    assert_eq!(belfry_wire::read_header(h).unwrap().1, fa.len() - 5);
    h[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        belfry_wire::read_header(h),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        belfry_wire::read_header([9, 0, 0, 0, 0]),
        Err(FrameError::Version(9))
    ));
}
