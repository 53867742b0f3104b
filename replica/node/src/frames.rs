//! Reading frames from a QUIC stream (docs/design.md section 4): the 5-byte
//! header first, its version and length checked against `max_frame` before
//! anything is allocated for the body; the body is then read as it arrives
//! (a sender that claims 4 MiB and sends nothing costs nothing). A bad
//! frame is an error value naming why, for the caller to stop the stream
//! with [`belfry_wire::close::BAD_FRAME`] and count.

use belfry_wire::{read_header, FrameError, FRAME_HEADER};
use quinn::RecvStream;

/// Reads of one chunk at most this long (the body grows by chunks).
const CHUNK_BYTES: usize = 64 * 1024;

/// Why no (further) frame could be read.
#[derive(Debug)]
pub enum ReadEnd {
    /// The stream ended cleanly between frames.
    Finished,
    /// The stream or connection failed (reset, closed, timed out).
    Lost,
    /// A bad frame: stop the stream.
    Bad(&'static str, Option<FrameError>),
}

/// Reads one whole frame (header included), accepting the frame versions
/// in `versions`.
pub async fn read_frame(recv: &mut RecvStream, versions: &[u8]) -> Result<Vec<u8>, ReadEnd> {
    let mut header = [0u8; FRAME_HEADER];
    match recv.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(ReadEnd::Finished),
        Err(quinn::ReadExactError::FinishedEarly(_)) => {
            return Err(ReadEnd::Bad("half_frame", None))
        }
        Err(quinn::ReadExactError::ReadError(_)) => return Err(ReadEnd::Lost),
    }
    let (version, len) = match read_header(header) {
        Ok(h) => h,
        Err(e @ FrameError::TooLarge { .. }) => return Err(ReadEnd::Bad("too_large", Some(e))),
        Err(e) => return Err(ReadEnd::Bad("bad_header", Some(e))),
    };
    if !versions.contains(&version) {
        return Err(ReadEnd::Bad(
            "wrong_version",
            Some(FrameError::Version(version)),
        ));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + len.min(CHUNK_BYTES));
    frame.extend_from_slice(&header);
    while frame.len() < FRAME_HEADER + len {
        let want = (FRAME_HEADER + len - frame.len()).min(CHUNK_BYTES);
        match recv.read_chunk(want, true).await {
            Ok(Some(chunk)) => frame.extend_from_slice(&chunk.bytes),
            Ok(None) => return Err(ReadEnd::Bad("half_frame", None)),
            Err(_) => return Err(ReadEnd::Lost),
        }
    }
    Ok(frame)
}
