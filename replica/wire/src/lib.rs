//! Frames and the messages they carry (DESIGN.md section 4): a version byte, a
//! length (u32, big-endian), and a postcard body. `max_frame` is enforced here,
//! before anything is decoded, so oversized or malformed bytes from a peer or a
//! client are an error value — never a panic, never an allocation of the
//! claimed size.

use belfry_broadcast::coin::SignatureShare;
use belfry_broadcast::config::MAX_FRAME_BYTES;
use belfry_broadcast::Message;
use belfry_timestamp::{Entry, Hash, Receipt, SignedTreeHead};
use serde::{Deserialize, Serialize};

/// The frame format version.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the body: version u8 + length u32.
pub const FRAME_HEADER: usize = 5;

/// A frame that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than its header or its declared length.
    #[error("truncated frame: {got} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Longer than `max_frame`.
    #[error("frame of {len} bytes exceeds max_frame {max}")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version this replica does not speak.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// Bytes after the declared body.
    #[error("{0} trailing bytes after the frame body")]
    Trailing(usize),
    /// The body does not decode.
    #[error("frame body does not decode: {0}")]
    Decode(String),
}

/// Encodes a value into one frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    // The body is written straight after a header placeholder: one buffer,
    // sized for a vote, grown only for vertices and answers.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[FRAME_VERSION, 0, 0, 0, 0]);
    let mut out = postcard::to_extend(value, out).map_err(|e| FrameError::Decode(e.to_string()))?;
    let len = out.len() - FRAME_HEADER;
    if len > MAX_FRAME_BYTES - FRAME_HEADER {
        return Err(FrameError::TooLarge {
            len: len + FRAME_HEADER,
            max: MAX_FRAME_BYTES,
        });
    }
    out[1..FRAME_HEADER].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Decodes exactly one frame.
pub fn decode<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    if frame.len() < FRAME_HEADER {
        return Err(FrameError::Truncated {
            got: frame.len(),
            need: FRAME_HEADER,
        });
    }
    if frame[0] != FRAME_VERSION {
        return Err(FrameError::Version(frame[0]));
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    if len > MAX_FRAME_BYTES - FRAME_HEADER {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    let need = FRAME_HEADER + len;
    if frame.len() < need {
        return Err(FrameError::Truncated {
            got: frame.len(),
            need,
        });
    }
    if frame.len() > need {
        return Err(FrameError::Trailing(frame.len() - need));
    }
    postcard::from_bytes(&frame[FRAME_HEADER..]).map_err(|e| FrameError::Decode(e.to_string()))
}

/// Replica-to-replica messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// A broadcast-layer message.
    Broadcast(Message),
    /// A share of the tree head whose last leaf is the Tick ending at
    /// `tree_size`.
    HeadShare {
        /// The tree size.
        tree_size: u64,
        /// The share.
        share: SignatureShare,
    },
    /// Catch-up: log entries from `from` on.
    FetchLog {
        /// First index wanted.
        from: u64,
    },
    /// A page of the log, with the sender's latest signed tree head and the
    /// consistency proof from the page's end (`from + entries.len()`) to that
    /// head: the receiver, which holds the log up to `from`, checks the page
    /// on arrival (and so knows which peer sent a bad one).
    LogRange {
        /// Index of the first entry.
        from: u64,
        /// At most `MAX_LOG_PAGE` entries, all within `head`.
        entries: Vec<Entry>,
        /// The sender's latest signed head.
        head: Option<SignedTreeHead>,
        /// RFC 9162 consistency proof from `from + entries.len()` to the
        /// head's size.
        proof: Vec<Hash>,
    },
    /// Catch-up: the sequencer state and ordering checkpoint at the latest
    /// Tick at or below `at_most`.
    FetchState {
        /// Upper bound on the tree size.
        at_most: u64,
    },
    /// Catch-up within `gc_depth`: the causal histories of the leaders
    /// ordered after wave `from_wave`, from round `floor` on.
    FetchLeaders {
        /// The asker's last decided wave.
        from_wave: u64,
        /// The asker's DAG horizon: older vertices are not needed.
        floor: u64,
    },
    /// One page of the answer to `FetchLeaders`: vertices in `(round,
    /// author)` order, cut so each page stays under `max_frame`.
    Leaders {
        /// The `from_wave` asked for.
        from_wave: u64,
        /// This page's number, from 0.
        page: u32,
        /// Pages in all (at most [`MAX_STATE_PAGES`]).
        pages: u32,
        /// The vertices.
        vertices: Vec<belfry_broadcast::Vertex>,
    },
    /// One page of the state right after the Tick that ends the log at
    /// `tree_size`: the postcard encoding of [`StateSnapshot`] cut into
    /// pages of at most [`STATE_PAGE_BYTES`], so a state of any size travels
    /// under `max_frame`. The receiver reassembles the pages, decodes them
    /// and checks the result against that Tick's `state_root`.
    State {
        /// Tree size after the Tick.
        tree_size: u64,
        /// This page's number, from 0.
        page: u32,
        /// Pages in all (at most [`MAX_STATE_PAGES`]).
        pages: u32,
        /// The page's bytes.
        bytes: Vec<u8>,
    },
    /// The answer to a catch-up request the sender cannot serve (it does
    /// not hold what was asked for): the asker moves on to another peer at
    /// once rather than at its deadline.
    CannotServe(Unserved),
}

/// What a [`PeerMessage::CannotServe`] answer is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unserved {
    /// A `FetchLog`.
    Log,
    /// A `FetchLeaders`.
    Leaders,
    /// A `FetchState`.
    State,
}

/// What the pages of a `State` answer carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// The sequencer state.
    pub sequencer: belfry_broadcast::fair::SequencerState,
    /// The ordering checkpoint.
    pub checkpoint: belfry_broadcast::Checkpoint,
}

/// Bytes per `State` page: a quarter of `max_frame`.
pub const STATE_PAGE_BYTES: usize = MAX_FRAME_BYTES / 4;

/// Most pages a `State` answer may have (256 MiB in all): a bound on what a
/// catching-up replica buffers per peer.
pub const MAX_STATE_PAGES: u32 = 256;

/// Entries per `LogRange` page: 4,096 entries of at most 213 bytes stay far
/// under `max_frame`.
pub const MAX_LOG_PAGE: usize = 4_096;

/// A client request (DESIGN.md section 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Submit digests (at most `max_digests_per_request`).
    Submit(Vec<[u8; 32]>),
    /// The receipt of a digest, once a signed tree head covers it.
    Receipt([u8; 32]),
    /// The latest signed tree head.
    TreeHead,
    /// A consistency proof between two tree sizes.
    Consistency(u64, u64),
    /// Entries `[from, to)`.
    Entries(u64, u64),
    /// The ordered stream from an index on (answered with what is logged;
    /// the node pushes the rest as it is ordered).
    Subscribe(u64),
}

/// A reply to a client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// Digests accepted for ordering (`duplicates` were already pending or logged).
    Accepted {
        /// Newly accepted.
        accepted: u32,
        /// Already known.
        duplicates: u32,
    },
    /// Too many pending digests: retry later.
    Backpressure {
        /// Pending now.
        pending: u64,
    },
    /// A digest was ordered at this log index.
    Ordered {
        /// The digest.
        digest: [u8; 32],
        /// Its log index.
        index: u64,
    },
    /// A receipt in its binary `.belfry` form (self-verifying against the
    /// anchor: read it with `Receipt::from_binary`).
    Receipt(Vec<u8>),
    /// Logged, but no signed tree head covers it yet; or not logged yet.
    NotYet,
    /// Never seen.
    Unknown,
    /// The latest signed tree head.
    TreeHead(Option<SignedTreeHead>),
    /// A consistency proof.
    Consistency(Vec<Hash>),
    /// Log entries from `from` on.
    Entries {
        /// First index.
        from: u64,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// The request was invalid.
    Error(String),
}

impl ClientResponse {
    /// Builds a receipt response.
    pub fn receipt(r: &Receipt) -> Self {
        ClientResponse::Receipt(r.to_binary())
    }
}
