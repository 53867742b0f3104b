//! Frames and the messages they carry (docs/design.md section 4): a version byte, a
//! length (u32, big-endian), and a postcard body. `max_frame` is enforced here,
//! before anything is decoded, so oversized or malformed bytes from a peer or a
//! client are an error value — never a panic, never an allocation of the
//! claimed size.

use belfry_broadcast::coin::SignatureShare;
use belfry_broadcast::config::MAX_FRAME_BYTES;
use belfry_broadcast::Message;
use belfry_timestamp::{Entry, Hash, Receipt, SignedTreeHead};
use serde::{Deserialize, Serialize};

/// The frame format version of replica-to-replica frames, and of the
/// id-less client request frames that in-process drivers (the simulator, the
/// in-process cluster) send: a bare [`ClientRequest`], answered as request 0.
pub const FRAME_VERSION: u8 = 1;
/// The frame format version of the client protocol over the network: a
/// [`ClientCall`] (a request with its id) from the client, a
/// [`ClientMessage`] (an answer or a push) from the replica.
pub const CLIENT_FRAME_VERSION: u8 = 2;
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
    encode_as(FRAME_VERSION, value)
}

fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>, FrameError> {
    // The body is written straight after a header placeholder: one buffer,
    // sized for a vote, grown only for vertices and answers.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&[version, 0, 0, 0, 0]);
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
    decode_as(FRAME_VERSION, frame)
}

/// Reads a frame header (what a stream reader sees first): the version and
/// the body length, checked against `max_frame` before anything is
/// allocated for the body.
pub fn read_header(header: [u8; FRAME_HEADER]) -> Result<(u8, usize), FrameError> {
    let version = header[0];
    if version != FRAME_VERSION && version != CLIENT_FRAME_VERSION {
        return Err(FrameError::Version(version));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_FRAME_BYTES - FRAME_HEADER {
        return Err(FrameError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok((version, len))
}

fn decode_as<T: for<'de> Deserialize<'de>>(version: u8, frame: &[u8]) -> Result<T, FrameError> {
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
    if frame[0] != version {
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

// ---------------------------------------------------------------------------
// The client protocol (docs/design.md section 4).
//
// Over QUIC a client opens one bidirectional *call stream*: it writes
// [`ClientCall`] frames (version [`CLIENT_FRAME_VERSION`]) and reads
// [`ClientMessage::Answer`]s on it, each echoing its call's id. The replica
// opens one unidirectional *push stream* for [`ClientMessage::Push`]es (so a
// client slow to drain a subscription never delays its answers). In-process
// drivers send bare [`ClientRequest`] frames (version [`FRAME_VERSION`]):
// they are request 0.
// ---------------------------------------------------------------------------

/// A request id, chosen by the client and echoed by every answer and push
/// the request causes.
pub type RequestId = u64;

/// Digests per `Receipts` request, and receipts per `Signed` push: 1,024
/// inclusion proofs of at most 64 hashes stay under `max_frame`.
pub const MAX_RECEIPTS_PER_ANSWER: usize = 1_024;

/// The ALPN of replica-to-replica connections.
pub const PEER_ALPN: &[u8] = b"belfry-peer/1";
/// The ALPN of client connections.
pub const CLIENT_ALPN: &[u8] = b"belfry-client/1";

/// QUIC application error codes a replica closes a connection or stops a
/// stream with (the reason phrase says more).
pub mod close {
    /// A normal close.
    pub const DONE: u32 = 0;
    /// The replica is shutting down: retry another replica, or later.
    pub const SHUTTING_DOWN: u32 = 1;
    /// A frame was malformed or over `max_frame` (the stream is stopped;
    /// on a client's call stream, after an answer with request id 0,
    /// [`ClientError::BadRequest`](crate::ClientError::BadRequest), that
    /// says what was wrong).
    pub const BAD_FRAME: u32 = 2;
    /// The peer did not read its answers or pushes fast enough: its send
    /// queue hit its byte budget.
    pub const TOO_SLOW: u32 = 3;
    /// The replica serves no more connections now.
    pub const BUSY: u32 = 4;
    /// The connection's identity or use is not allowed (an unknown replica
    /// certificate, a replica dialing the wrong way, a stream not expected).
    pub const REFUSED: u32 = 5;
    /// A newer connection from the same peer replaced this one.
    pub const REPLACED: u32 = 6;
}

/// A client request with its id (version-2 frames).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCall {
    /// Echoed by the answer and by the pushes the request causes.
    pub id: RequestId,
    /// The request.
    pub request: ClientRequest,
}

/// A client request (docs/design.md section 4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Submit digests (at most `max_digests_per_request`). Answered with
    /// `Accepted`; then the replica pushes `Ordered` as they are logged and
    /// `Signed` (proofs under one signed head) as heads cover them.
    Submit(Vec<[u8; 32]>),
    /// The receipt of one digest, once a signed tree head covers it.
    Receipt([u8; 32]),
    /// The latest signed tree head.
    TreeHead,
    /// A consistency proof between two tree sizes.
    Consistency(u64, u64),
    /// Entries `[from, to)` (at most one page).
    Entries(u64, u64),
    /// The ordered stream from an index on (within one page of the log's
    /// end; further behind, read with `Entries` first). Answered with the
    /// entries already logged; the rest are pushed as they are ordered.
    Subscribe(u64),
    /// Receipts of many digests under one signed head (at most
    /// [`MAX_RECEIPTS_PER_ANSWER`]).
    Receipts(Vec<[u8; 32]>),
    /// A push of every signed tree head from now on (answered with the
    /// latest).
    SignedHeads,
    /// The signed head of this size (0: the latest) as a C2SP checkpoint
    /// (docs/checkpoints.md), with the cluster's signature, the replica's
    /// Ed25519 note signature and the witness cosignatures it holds on it.
    Checkpoint(u64),
    /// The checkpoints witnesses cosigned last (one per witness at most),
    /// each with its cosignatures, largest first.
    Witnessed,
    /// A checkpoint note carrying cosignatures of witnesses the cluster
    /// lists (at most [`belfry_timestamp::checkpoint::MAX_NOTE_BYTES`]).
    Cosign(String),
}

/// What a replica sends a client (version-2 frames).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The answer to request `id` (on the call stream).
    Answer {
        /// The request's id.
        id: RequestId,
        /// The answer.
        response: ClientResponse,
    },
    /// Something request `id` subscribed to (on the push stream).
    Push {
        /// The request's id.
        id: RequestId,
        /// What happened.
        push: ClientPush,
    },
}

/// Whether a replica-to-client frame is a push (else an answer), without
/// decoding it: the driver routes pushes to their own stream. The body's
/// first byte is the [`ClientMessage`] variant (postcard writes the variant
/// index as a varint; 0 is `Answer`, 1 is `Push`).
pub fn is_push(frame: &[u8]) -> bool {
    frame.get(FRAME_HEADER) == Some(&1)
}

/// Encodes a client call (version-2 frame).
pub fn encode_call(call: &ClientCall) -> Result<Vec<u8>, FrameError> {
    encode_as(CLIENT_FRAME_VERSION, call)
}

/// Decodes a client's frame: a version-2 [`ClientCall`], or a version-1 bare
/// [`ClientRequest`] from an in-process driver (request id 0).
pub fn decode_call(frame: &[u8]) -> Result<ClientCall, FrameError> {
    match frame.first() {
        Some(&FRAME_VERSION) => {
            decode_as(FRAME_VERSION, frame).map(|request| ClientCall { id: 0, request })
        }
        _ => decode_as(CLIENT_FRAME_VERSION, frame),
    }
}

/// Encodes what a replica sends a client (version-2 frame).
pub fn encode_message(message: &ClientMessage) -> Result<Vec<u8>, FrameError> {
    encode_as(CLIENT_FRAME_VERSION, message)
}

/// Decodes what a replica sent.
pub fn decode_message(frame: &[u8]) -> Result<ClientMessage, FrameError> {
    decode_as(CLIENT_FRAME_VERSION, frame)
}

/// Why a request was not (fully) served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClientError {
    /// The replica holds `max_pending_digests` unlogged digests: retry
    /// later. The first `taken` digests of the request were taken.
    #[error("backpressure: {pending} digests pending; {taken} of the request taken")]
    Backpressure {
        /// Pending now.
        pending: u64,
        /// Leading digests of the request that were taken.
        taken: u32,
    },
    /// This client has `limit` digests outstanding (not yet covered by a
    /// signed head): wait for receipts before submitting more.
    #[error("client limit: {outstanding} digests outstanding, limit {limit}; {taken} of the request taken")]
    ClientLimit {
        /// Outstanding now.
        outstanding: u64,
        /// The per-client limit.
        limit: u64,
        /// Leading digests of the request that were taken.
        taken: u32,
    },
    /// More items in one request than allowed.
    #[error("{items} items in one request, limit {limit}")]
    TooLarge {
        /// Items sent.
        items: u64,
        /// The limit.
        limit: u64,
    },
    /// The replica never saw this digest.
    #[error("unknown digest")]
    UnknownDigest,
    /// Pending or logged, but no signed tree head covers it yet.
    #[error("not yet signed")]
    NotYetSigned,
    /// `Subscribe` from further back than one page: read with `Entries`
    /// up to near `log_len` first.
    #[error("subscription start too far behind the log end {log_len}")]
    TooFarBehind {
        /// The log's length now.
        log_len: u64,
    },
    /// The replica is shutting down (also the connection close code
    /// [`close::SHUTTING_DOWN`]).
    #[error("the replica is shutting down")]
    ShuttingDown,
    /// A request that cannot be served as asked (an empty or inverted
    /// range, a frame that does not decode).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// This client's reads (receipts, heads, proofs, entries) are answered
    /// out of a byte budget per client, and it is spent: ask again after
    /// `retry_after_ms` (or ask another replica). Submissions are never
    /// refused this way.
    #[error("read rate limit: retry after {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds until the budget allows an answer again.
        retry_after_ms: u32,
    },
}

/// One digest's part of a [`ReceiptBundle`].
// Items live briefly in one answer's vector; boxing the entry would cost
// an allocation per receipt for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptItem {
    /// Logged under the bundle's head: the entry (canonical bytes), its
    /// index and its inclusion proof in the head's tree. With the cluster
    /// description and the head this is a full receipt.
    Included {
        /// The entry.
        entry: Entry,
        /// Its log index.
        leaf_index: u64,
        /// RFC 9162 inclusion proof in the tree of the head's size.
        proof: Vec<Hash>,
    },
    /// Not covered by a signed head yet.
    NotYet([u8; 32]),
    /// Never seen.
    Unknown([u8; 32]),
}

/// Receipts of many digests sharing one signed tree head: one signature
/// check for all of them (the head), then a hash path each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBundle {
    /// The signed head every included item is proved under (`None` before
    /// the first head).
    pub head: Option<SignedTreeHead>,
    /// One item per digest.
    pub items: Vec<ReceiptItem>,
}

/// A reply to a client request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// Digests accepted for ordering (`duplicates` were already pending or
    /// logged: the client waits on them all the same).
    Accepted {
        /// Newly accepted.
        accepted: u32,
        /// Already known.
        duplicates: u32,
    },
    /// A receipt in its binary `.belfry` form (self-verifying against the
    /// anchor: read it with `Receipt::from_binary`).
    Receipt(Vec<u8>),
    /// Receipts under one signed head.
    Receipts(ReceiptBundle),
    /// The latest signed tree head.
    TreeHead(Option<SignedTreeHead>),
    /// A consistency proof.
    Consistency(Vec<Hash>),
    /// Log entries from `from` on (`Entries`, and the start of a
    /// subscription).
    Entries {
        /// First index.
        from: u64,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// The request failed.
    Error(ClientError),
    /// A gateway's answer to `Receipts`: aggregated receipts of the digests
    /// it can prove, by round (digests it cannot prove yet are left out).
    /// Replicas never send it.
    Aggregated(Vec<AggregatedBundle>),
    /// A checkpoint note (`Checkpoint`).
    Checkpoint(String),
    /// Cosigned checkpoint notes (`Witnessed`).
    Witnessed(Vec<String>),
    /// Cosignatures kept from a `Cosign` (newer than what each witness had
    /// here).
    Cosigned {
        /// Cosignatures stored.
        stored: u32,
    },
}

/// What a replica pushes to a client, tagged with the request it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientPush {
    /// Digests of a `Submit` were logged at these indices.
    Ordered(Vec<([u8; 32], u64)>),
    /// A signed head now covers digests of a `Submit`: their receipts.
    Signed(ReceiptBundle),
    /// The ordered stream of a `Subscribe`, continuing at `from`.
    Entries {
        /// First index.
        from: u64,
        /// The entries.
        entries: Vec<Entry>,
    },
    /// A new signed tree head (`SignedHeads`).
    Head(SignedTreeHead),
    /// A gateway's round that holds digests of a `Submit` has its root's
    /// receipt: theirs, aggregated. Replicas never send it.
    Aggregated(AggregatedBundle),
}

/// Consecutive digests of one request in a gateway round's tree, with one
/// range proof for them all (docs/gateway.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatedRange {
    /// Leaf index of the first digest.
    pub first: u64,
    /// The digests, in leaf order.
    pub digests: Vec<[u8; 32]>,
    /// The range proof (`belfry_timestamp::aggregate::range_proof`).
    pub proof: Vec<Hash>,
}

/// Aggregated receipts of one gateway round: the receipt of the round's
/// root (binary; version 1 from the cluster, version 2 from an upstream
/// gateway), the round's tree size, and ranges of digests in it. A client
/// checks the root's receipt once and derives each digest's path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregatedBundle {
    /// The root's receipt, binary.
    pub upper: Vec<u8>,
    /// The round's tree size.
    pub tree_size: u64,
    /// The digests' ranges.
    pub ranges: Vec<AggregatedRange>,
}

impl ClientResponse {
    /// Builds a receipt response.
    pub fn receipt(r: &Receipt) -> Self {
        ClientResponse::Receipt(r.to_binary())
    }
}
