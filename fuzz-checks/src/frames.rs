//! Peer and client frames (docs/design.md §4).
//!
//! Round trip, by value: a frame that decodes re-encodes to a frame that
//! decodes to the same value. Not byte for byte: postcard reads a varint
//! written longer than needed (`0x80 0x00` for 0), and the re-encoding is
//! the short form.

use belfry_wire::{
    self as wire, ClientMessage, ClientRequest, FrameError, PeerMessage, CLIENT_FRAME_VERSION,
    FRAME_HEADER, FRAME_VERSION,
};

/// What the header says must agree with what `decode` accepted: a frame
/// that decodes has a header `read_header` accepts, of the frame's length.
fn header_agrees(data: &[u8], decoded: bool) {
    let Some(header) = data.first_chunk::<FRAME_HEADER>() else {
        assert!(!decoded, "a frame shorter than its header decoded");
        return;
    };
    match wire::read_header(*header) {
        Ok((version, len)) => {
            assert!(version == FRAME_VERSION || version == CLIENT_FRAME_VERSION);
            assert!(len <= belfry_replica::broadcast::config::MAX_FRAME_BYTES - FRAME_HEADER);
            if decoded {
                assert_eq!(len, data.len() - FRAME_HEADER, "decoded frame's length");
            }
        }
        Err(FrameError::Version(_) | FrameError::TooLarge { .. }) => {
            assert!(!decoded, "a frame decoded whose header read_header refuses")
        }
        Err(e) => panic!("read_header: unexpected error {e}"),
    }
}

/// A replica-to-replica frame: every [`PeerMessage`].
pub fn peer_frame(data: &[u8]) {
    let decoded = wire::decode::<PeerMessage>(data);
    header_agrees(data, decoded.is_ok());
    if let Ok(m) = decoded {
        let again = wire::encode(&m).expect("a decoded peer message re-encodes");
        assert_eq!(wire::decode::<PeerMessage>(&again), Ok(m));
        assert!(again.len() <= data.len(), "re-encoding grew");
    }
}

/// A client's frame: a version-2 call or a version-1 bare request.
pub fn client_call(data: &[u8]) {
    let decoded = wire::decode_call(data);
    header_agrees(data, decoded.is_ok());
    if let Ok(call) = decoded {
        let again = if data[0] == FRAME_VERSION {
            assert_eq!(call.id, 0, "a bare request is request 0");
            wire::encode(&call.request).expect("a decoded request re-encodes")
        } else {
            wire::encode_call(&call).expect("a decoded call re-encodes")
        };
        assert_eq!(again[0], data[0], "re-encoded with another version");
        assert_eq!(wire::decode_call(&again), Ok(call));
    }
    if let Ok(r) = wire::decode::<ClientRequest>(data) {
        let again = wire::encode(&r).expect("a decoded request re-encodes");
        assert_eq!(wire::decode::<ClientRequest>(&again), Ok(r));
    }
}

/// What a replica or a gateway sends a client.
pub fn client_message(data: &[u8]) {
    let decoded = wire::decode_message(data);
    header_agrees(data, decoded.is_ok());
    if let Ok(m) = decoded {
        let again = wire::encode_message(&m).expect("a decoded message re-encodes");
        // `is_push` reads the variant byte of frames the replica encoded
        // itself (the driver routes them), which are in postcard's short
        // form; a frame from outside may write the variant long (`0x81
        // 0x00` for 1), which decodes but is not what `is_push` is for.
        assert_eq!(
            wire::is_push(&again),
            matches!(m, ClientMessage::Push { .. }),
            "is_push disagrees with the encoded message"
        );
        assert_eq!(wire::decode_message(&again), Ok(m));
    }
}
