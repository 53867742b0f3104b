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
