//! The oracle's state: what it knows to be true (every digest submitted and
//! when, the canonical log, the signed heads, the races), what it
//! remembers of each replica to check invariants after every event
//! (`checks.rs`, `blame.rs`), and what it measures (`metrics.rs`).

use crate::metrics;
use belfry_replica::broadcast::{Round, VertexHash};
use belfry_replica::clock::Micros;
use belfry_replica::timestamp::{Entry, SignedTreeHead};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A race: digests submitted at one instant by different clients.
#[derive(Clone, Debug)]
pub struct Race {
    /// "two", "biased" or "three".
    pub kind: &'static str,
    /// The digests, client order.
    pub digests: Vec<[u8; 32]>,
}

/// What the oracle remembers of one replica between its turns.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen {
    /// Catch-ups seen so far (leaders, snapshots), for coverage.
    pub(crate) catchups: (u64, u64),
    /// Journal snapshots seen so far (the double-signing memory is pruned
    /// at each).
    pub(crate) snapshots: u64,
    /// It rejoined after a wipe.
    pub(crate) rejoined: bool,
    /// Digests it reported again after state installs, so far (coverage).
    pub(crate) reports_again: u64,
    /// The replica's `reports_awaited` last seen.
    pub(crate) reports_awaited: u64,
}

/// What the oracle holds between events.
pub(crate) struct Oracle {
    /// The oracle's memory of each replica.
    pub(crate) seen: Vec<Seen>,
    /// The honest replicas' reports (M1, M6), taken from what they released.
    pub(crate) reports: metrics::HonestReports,
    pub(crate) report_seen: Vec<BTreeSet<[u8; 32]>>,
    /// The range of honest replicas' later reports of a digest they had
    /// reported before (see `absorb_reports`).
    pub(crate) reported_again: BTreeMap<[u8; 32], (u64, u64)>,
    // Invariants.
    /// The log every honest replica's log must be a prefix of.
    pub(crate) canonical: Vec<Entry>,
    /// Each logged digest's index in it.
    pub(crate) logged: BTreeMap<[u8; 32], u64>,
    /// Signed heads by size.
    pub(crate) heads: BTreeMap<u64, SignedTreeHead>,
    /// Each honest replica's votes (two different ones for a slot are
    /// double-signing).
    pub(crate) votes: Vec<BTreeMap<belfry_replica::broadcast::Pledge, VertexHash>>,
    /// Each honest replica's own vertices by round, compared by content (the
    /// same check as by hash, without hashing every vertex a second time).
    pub(crate) own_vertices: Vec<BTreeMap<Round, Arc<belfry_replica::broadcast::Vertex>>>,
    /// Invariant violations found.
    pub(crate) violations: Vec<String>,
    /// The blame checks' memory (`blame.rs`).
    pub(crate) blame: crate::blame::Blame,
    /// Where progress stopped, as reported.
    pub(crate) stalls: Vec<String>,
    /// When the log last grew.
    pub(crate) last_progress: Micros,
    pub(crate) stall_reported: bool,
    /// Replicas whose fault ended: by when their log must reach what size
    /// (the catch-up invariant).
    pub(crate) catchup_due: BTreeMap<usize, (Micros, u64)>,
    /// Windows in which a fault leaves no quorum: no progress is expected.
    pub(crate) no_quorum: Vec<(Micros, Micros)>,
    /// The open window (an index into `no_quorum`) in which crashed,
    /// paused, observing or cut-off honest replicas and the Byzantine ones
    /// are more than f together.
    pub(crate) beyond_f: Option<usize>,
    /// The most each replica held (sampled every 50 ms).
    pub(crate) memory: Vec<crate::checks::ReplicaMemory>,
    pub(crate) memory_sampled: Micros,
    // Ground truth and measures.
    /// When each digest was submitted.
    pub(crate) submitted: BTreeMap<[u8; 32], Micros>,
    /// When each replica first saw each digest.
    pub(crate) first_seen: BTreeMap<[u8; 32], Vec<Option<Micros>>>,
    /// When a signed head first covered each digest.
    pub(crate) covered_at: BTreeMap<[u8; 32], Micros>,
    /// Logged digests no signed head covers yet, by index.
    pub(crate) uncovered: BTreeMap<u64, [u8; 32]>,
    pub(crate) last_tick_time: Option<Micros>,
    /// Digests the sequencers held back (M7).
    pub(crate) held: BTreeSet<[u8; 32]>,
    /// The races run.
    pub(crate) races: Vec<Race>,
}

impl Oracle {
    /// Nothing known yet about `n` replicas, at `now`.
    pub(crate) fn new(n: usize, now: Micros) -> Self {
        Oracle {
            seen: vec![Seen::default(); n],
            reports: BTreeMap::new(),
            report_seen: vec![BTreeSet::new(); n],
            reported_again: BTreeMap::new(),
            canonical: Vec::new(),
            logged: BTreeMap::new(),
            heads: BTreeMap::new(),
            votes: vec![BTreeMap::new(); n],
            own_vertices: vec![BTreeMap::new(); n],
            violations: Vec::new(),
            blame: crate::blame::Blame::default(),
            stalls: Vec::new(),
            last_progress: now,
            stall_reported: false,
            catchup_due: BTreeMap::new(),
            no_quorum: Vec::new(),
            beyond_f: None,
            memory: vec![crate::checks::ReplicaMemory::default(); n],
            memory_sampled: now,
            submitted: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            covered_at: BTreeMap::new(),
            uncovered: BTreeMap::new(),
            last_tick_time: None,
            held: BTreeSet::new(),
            races: Vec::new(),
        }
    }
}
