//! Reading frames from a QUIC stream, and writing them
//! ([`FrameWriter`]) (docs/design.md section 4): the 5-byte
//! header first, its version and length checked against `max_frame` before
//! anything is allocated for the body; the body is then read as it arrives
//! (a sender that claims 4 MiB and sends nothing costs nothing). A bad
//! frame is an error value naming why, for the caller to stop the stream
//! with [`belfry_wire::close::BAD_FRAME`] and count.

use belfry_wire::{read_header, FrameError, FRAME_HEADER};
use quinn::{Connection, RecvStream, SendStream};

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

/// Writes frames on a unidirectional stream of one connection, opened on
/// the first frame and opened again when the other side stops it (the
/// frame being written then is dropped: the other side said it will not
/// read it).
pub struct FrameWriter<'a> {
    conn: &'a Connection,
    stream: Option<SendStream>,
}

/// What became of one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Written whole.
    Sent,
    /// The other side stopped the stream: the frame is dropped, the next
    /// goes on a new stream.
    Stopped,
}

impl<'a> FrameWriter<'a> {
    /// A writer on `conn`; no stream is opened yet.
    pub fn new(conn: &'a Connection) -> Self {
        FrameWriter { conn, stream: None }
    }

    /// Writes one frame; `Err` when the connection failed (stop writing).
    pub async fn write(&mut self, frame: bytes::Bytes) -> Result<Written, ()> {
        let stream = match self.stream.as_mut() {
            Some(s) => s,
            None => self
                .stream
                .insert(self.conn.open_uni().await.map_err(|_| ())?),
        };
        match stream.write_chunk(frame).await {
            Ok(()) => Ok(Written::Sent),
            Err(quinn::WriteError::Stopped(_)) => {
                self.stream = None;
                Ok(Written::Stopped)
            }
            Err(_) => Err(()),
        }
    }
}
