//! Limits and defaults (docs/design.md §3.9), all in one place, and a node's
//! configuration.

use belfry_coin::clock::Micros;
use belfry_coin::{quorum, ClusterId, ReplicaId};

/// Most reports in one vertex; a full batch triggers the next vertex early.
pub const MAX_REPORTS_PER_VERTEX: usize = 16_384;
/// Weak edges per vertex, per replica of the cluster (`max_weak_edges = 4n`).
pub const MAX_WEAK_EDGES_PER_REPLICA: usize = 4;
/// Messages about rounds above `current + ROUND_WINDOW` are dropped, never stored.
pub const ROUND_WINDOW: u64 = 64;
/// Lower bound between own vertices when batches are not full and there is
/// something to order.
pub const ROUND_INTERVAL: Micros = Micros::from_millis(5);
/// Lower bound between own vertices while there is nothing to order: no
/// report waits for a vertex, every delivered vertex with reports is
/// ordered, and the replica's log has nothing pending (docs/design.md §3.2,
/// "Pacing"). An idle n = 4 cluster then makes ~2.9 rounds and ~0.7 waves (Ticks)
/// a second instead of ~145 and ~36; the first report makes it fast again.
pub const IDLE_ROUND_INTERVAL: Micros = Micros::from_millis(350);
/// How long answering a peer's `Hello` keeps the fast pace: the asker
/// observes until the DAG is `round_window + 2` rounds past the answers
/// (rejoin, docs/design.md §3.8), ~0.5 s of rounds at the fast pace and
/// ~25 s at the idle one.
pub const REJOIN_FAST_WINDOW: Micros = Micros::from_secs(10);
/// Rounds kept below the last ordered leader.
pub const GC_DEPTH: u64 = 50;
/// Waves after which a digest still not ready may be finalized as late:
/// when it has at most `f` counted reports, or when more than `n − 2f − 1`
/// of the authors that have not reported it have committed vertices past
/// the deadline — the authors that could still report it in time are too
/// few for `2f + 1` (docs/design.md §3.5, "Late digests").
pub const LATE_WAVES: u64 = 3;
/// Waves after which a digest still not ready is finalized as late whoever
/// has moved on: the last resort when more than `f` replicas are faulty
/// (docs/design.md §3.5, "Late digests").
pub const LATE_WAVES_MAX: u64 = 64;
/// Largest frame on the wire.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Most digests in one client request.
pub const MAX_DIGESTS_PER_REQUEST: usize = 4_096;
/// Most digests a replica holds pending (received or re-reported, not
/// logged); beyond it clients get backpressure. Below the sequencer's
/// per-author weak quota ([`crate::fair::MAX_WEAK_PENDING_PER_AUTHOR`]), so
/// that an honest replica never reports more digests that only it has seen
/// than the sequencer counts from it: a digest it accepted is never
/// dropped as over quota.
pub const MAX_PENDING_DIGESTS: usize = 262_144;
/// Most reports a replica queues for its coming vertices (two full ones);
/// beyond it clients get backpressure. It bounds how long a digest accepted
/// now waits for a vertex, whatever a flooding client sends.
pub const MAX_QUEUED_REPORTS: usize = 2 * MAX_REPORTS_PER_VERTEX;
/// Recorded votes and coin shares are re-sent to a peer that has not advanced.
pub const RESEND_INTERVAL: Micros = Micros::from_secs(1);
/// Bytes of re-sent vertices, votes and coin shares (`FetchVotes`,
/// `FetchVertex`, reconnects, the resend timer) per peer per second at most.
pub const RESEND_BYTES_PER_PEER_PER_S: u64 = 1024 * 1024;
/// The burst of [`RESEND_BYTES_PER_PEER_PER_S`] (a full vertex is 656 KB).
pub const RESEND_BURST_BYTES: u64 = 1024 * 1024;

/// Configuration of one broadcast [`Node`](crate::Node).
#[derive(Clone, Debug)]
pub struct Config {
    /// This replica.
    pub me: ReplicaId,
    /// Number of replicas (>= 4 in production; the protocol works for n >= 1).
    pub n: usize,
    /// Byzantine replicas tolerated.
    pub f: usize,
    /// The cluster (binds the coin messages).
    pub cluster_id: ClusterId,
    /// See [`ROUND_INTERVAL`].
    pub round_interval: Micros,
    /// See [`IDLE_ROUND_INTERVAL`] (at least `round_interval`).
    pub idle_round_interval: Micros,
    /// See [`GC_DEPTH`].
    pub gc_depth: u64,
    /// See [`ROUND_WINDOW`].
    pub round_window: u64,
    /// See [`MAX_REPORTS_PER_VERTEX`].
    pub max_reports_per_vertex: usize,
    /// See [`RESEND_INTERVAL`].
    pub resend_interval: Micros,
    /// See [`RESEND_BYTES_PER_PEER_PER_S`].
    pub resend_bytes_per_peer_per_s: u64,
    /// See [`RESEND_BURST_BYTES`].
    pub resend_burst_bytes: u64,
}

impl Config {
    /// The defaults of docs/design.md §3.9 for replica `me` of an `(n, f)` cluster.
    pub fn new(me: ReplicaId, n: usize, f: usize, cluster_id: ClusterId) -> Self {
        Config {
            me,
            n,
            f,
            cluster_id,
            round_interval: ROUND_INTERVAL,
            idle_round_interval: IDLE_ROUND_INTERVAL,
            gc_depth: GC_DEPTH,
            round_window: ROUND_WINDOW,
            max_reports_per_vertex: MAX_REPORTS_PER_VERTEX,
            resend_interval: RESEND_INTERVAL,
            resend_bytes_per_peer_per_s: RESEND_BYTES_PER_PEER_PER_S,
            resend_burst_bytes: RESEND_BURST_BYTES,
        }
    }

    /// The quorum `Q = n − f`.
    pub fn quorum(&self) -> usize {
        quorum(self.n, self.f)
    }

    /// ECHOs needed to send READY: `⌈(n + f + 1) / 2⌉`.
    pub fn echo_threshold(&self) -> usize {
        (self.n + self.f + 1).div_ceil(2)
    }

    /// READYs that make a replica send its own READY: `f + 1`.
    pub fn ready_amplify_threshold(&self) -> usize {
        self.f + 1
    }

    /// READYs needed to deliver: `2f + 1` (docs/design.md §3.3).
    pub fn deliver_threshold(&self) -> usize {
        2 * self.f + 1
    }

    /// `max_weak_edges = 4n`.
    pub fn max_weak_edges(&self) -> usize {
        MAX_WEAK_EDGES_PER_REPLICA * self.n
    }
}
