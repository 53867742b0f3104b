//! What a node counts and holds: activity counters, re-send work by cause,
//! memory use, and the payload sizes messages are counted by.

use crate::message::Message;

/// Counters of a node's activity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Own vertices created.
    pub rounds_created: u64,
    /// Reports of own vertices that fell below the GC horizon unordered,
    /// queued again (see `requeue_orphaned_reports`).
    pub reports_requeued: u64,
    /// Waves decided (directly committed leaders).
    pub waves_decided: u64,
    /// Batches output (ordered leaders).
    pub batches: u64,
    /// Vertices ordered.
    pub vertices_ordered: u64,
    /// Messages sent, by [`MessageKind`] index.
    pub sent: [u64; 8],
    /// Payload bytes sent, by kind.
    pub sent_bytes: [u64; 8],
    /// Messages received, by kind.
    pub received: [u64; 8],
    /// Payload bytes received, by kind.
    pub received_bytes: [u64; 8],
    /// Messages dropped for being outside the round window.
    pub out_of_window: u64,
    /// Times the DAG stood still and the missing votes were asked for.
    pub stall_fetches: u64,
    /// The replica started without durable state and has since joined.
    pub rejoined: bool,
    /// Re-send work by why it was done, by [`ResendCause`] index.
    pub resends: [Served; 4],
    /// Bytes re-sent to each peer.
    pub resent_bytes_per_peer: Vec<u64>,
    /// Faults recorded.
    pub faults: u64,
}

/// What a node holds (see [`Node::memory_use`](crate::Node::memory_use) and
/// [`Node::memory_bound`](crate::Node::memory_bound)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryUse {
    /// Vertices in the DAG.
    pub dag_vertices: usize,
    /// Reliable-broadcast slots.
    pub slots: usize,
    /// Delivered vertices waiting for their references.
    pub buffered: usize,
    /// Vertex bodies kept for slots (VALs and fetched bodies).
    pub bodies: usize,
    /// Reports waiting for the next own vertex.
    pub pending_reports: usize,
    /// Canonical bytes of every vertex held.
    pub vertex_bytes: usize,
}

/// What answering one kind of request cost (counted deterministically, so
/// the simulator can bound it without a CPU model).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests (or occasions).
    pub requests: u64,
    /// Refused at once: the peer's budget was empty.
    pub refused: u64,
    /// Payload bytes answered.
    pub bytes: u64,
}

/// Why a node re-sends what it recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResendCause {
    /// A peer's `FetchVotes`.
    FetchVotes,
    /// A peer's `FetchVertex`.
    FetchVertex,
    /// A peer's link came back (or this node started).
    Reconnect,
    /// The resend timer found the peer stuck.
    Timer,
}

impl ResendCause {
    /// Every cause, in index order.
    pub const ALL: [ResendCause; 4] = [
        ResendCause::FetchVotes,
        ResendCause::FetchVertex,
        ResendCause::Reconnect,
        ResendCause::Timer,
    ];

    /// Its index in [`Counters::resends`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Payload size of a message: canonical vertex bytes for bodies, field sizes
/// for votes and requests.
pub fn payload_len(m: &Message) -> usize {
    match m {
        Message::Val(v) | Message::VertexBody(v) => v.canonical_len(),
        Message::Echo { .. } | Message::Ready { .. } => 8 + 2 + 32,
        Message::FetchVertex(_) => 32,
        Message::FetchVotes { .. } => 16,
        Message::CoinShare { .. } => 8 + 96,
        Message::Hello => 0,
        Message::Status { .. } => 16,
    }
}
