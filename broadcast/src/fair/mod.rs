//! Fair sequencing (docs/design.md §3.5, 3.6): committed batches in, a fair
//! first-come order of client digests and the batch's Tick fields out.
//!
//! # The rule
//!
//! Each batch's vertices are processed in canonical `(round, author)` order. A
//! report *counts* if it does not go back behind its author's committed
//! frontier — under `lamport` the vertex's round must exceed the author's
//! highest previously sequenced round, under `clock` the `recv_time` must not
//! be below the author's highest counted `recv_time` — and is the author's
//! first report of that digest. This is where chain monotonicity is enforced:
//! one vertex cannot show it, since a Byzantine author can fork its chain, but
//! honest chains are committed in order, so honest reports always count.
//!
//! After the batch, a digest with `>= 2f + 1` counted reports is *ready*; its
//! key is the lower median of its counted values (the vertex round under
//! `lamport`, the `recv_time` under `clock`). With at most `f` Byzantine values
//! among `k >= 2f + 1`, at least `f + 1` values lie on each side of the lower
//! median, so honest values bracket it: a Byzantine minority cannot move a key
//! outside what honest replicas saw (guarantee 1, M6).
//!
//! Ready digests are ordered by `(key, tie)` with
//! `tie = SHA3-256("belfry-tie-v1" || coin || digest)` and the batch's own
//! leader coin, which nobody knew while anything in the batch could change
//! (docs/design.md §3.4): equal keys (`clock`: equal `key / granularity` buckets) are a
//! Lamport-order tie, and the coin breaks it (guarantee 3).
//!
//! # Hold-back, and why no clearly earlier digest is overtaken
//!
//! `a` is *clearly before* `b` when all honest replicas reported both and the
//! latest honest report of `a` is below the earliest honest report of `b`.
//! Then every honest reporter of `b` reported `a` earlier in its own chain, so
//! when `b` is ready (`2f + 1` reports, at least `f + 1` honest) `a` already has
//! at least `f + 1` counted reports — Byzantine replicas may have withheld
//! theirs. A ready `b` is appended only if no unlogged digest with `>= f + 1`
//! counted reports could still end with a key `<= key(b)`. The bound is exact:
//! a report of `a` that has not counted yet can only count later with a value
//! above its author's frontier (the counting rule applies to Byzantine authors
//! too), so `LB(a)` is the smallest lower median over the report sets `a` can
//! still end with, each missing author contributing the smallest value it
//! could still report. If `a` is clearly before `b`, `a`'s final key is at most
//! the largest honest report of `a`, below `key(b)` — so `LB(a) <= key(b)`
//! holds `b` back until `a` is logged first (guarantee 2, M1 = 0). Candidates
//! are taken in `(key, tie)` order and the first held one stops the batch: it
//! stays pending and would hold back every later candidate anyway.
//!
//! # Why hold-back cannot stall
//!
//! Only digests with `>= f + 1` counted reports hold anything back, so at least
//! one honest replica reported them, and honest replicas re-report digests they
//! see in the DAG (docs/design.md §3.2): such a digest gathers `2f + 1` reports within
//! about a round and becomes ready itself. And as honest authors' frontiers
//! move on, `LB(a)` rises past any fixed key.
//!
//! # Late digests, and why the adversary cannot choose them
//!
//! A digest still not ready `late_waves` waves after its first counted
//! report is finalized as *late* with key `LB(a)`, passing the same test,
//! and `witnessed_at` set to the batch's tick time, so nobody can backdate
//! through late entries — but only if waiting longer could not help: it has
//! at most `f` counted reports (it blocks nothing), or (under `lamport`,
//! whose state keeps round frontiers) more than `n − 2f − 1` of the authors
//! that did not report it have committed vertices past the deadline (the last round of wave `first_wave + late_waves − 1`), so the
//! authors that could still report it in time are too few for `2f + 1`.
//! Moving on without reporting is something at most `f` Byzantine authors
//! can do alone, never `n − 2f ≥ f + 1`: a censor that withholds its reports
//! of chosen digests while an honest replica is slow no longer makes them
//! late; they wait for the slow replica, and hold back what comes after
//! them, like everyone's. Such a digest is *awaited*: every replica that has
//! not reported it reports it now (the `Awaited` output), so it cannot wait
//! for a report nobody owes. After `late_waves_max` waves a digest is late
//! whoever moved on — the last resort when more than `f` replicas fail.
//!
//! # The Tick (docs/design.md §3.6)
//!
//! `time = max(previous tick time, lower median of the leader's parents'
//! clocks (genesis time for a leader without parents), max witnessed_at of the
//! batch's non-late digests)`: monotone, and bracketed by honest clocks.
//! `state_root` commits to the ordering state (from the broadcast node), `G`,
//! the previous tick time, the author frontiers and every unlogged digest
//! with its counted reports and first-report wave; see [`Sequencer::state_root`].

//!
//! # Files
//!
//! This file holds the configuration, the outputs and the [`Sequencer`]
//! with its state root; `sequence.rs` sequences a batch in four steps —
//! count the reports (the rule), rank the ready digests (keys and ties),
//! hold back, close the tick; `state.rs` holds the [`SequencerState`]
//! persisted at a Tick and the [`SequencerDelta`] a turn persists instead.

use crate::step::Fault;
use crate::trie::HashTrie;
use crate::vertex::{Digest, Round, VertexHash};
use belfry_coin::clock::Micros;
use belfry_coin::{sha3, GroupSignature, Policy, ReplicaId, Wave};
use std::collections::{BTreeMap, BTreeSet};

mod sequence;
mod state;

use state::pending_leaf;
pub use state::{SequencerDelta, SequencerState};

/// What the sequencer needs to know about the log: whether a digest is
/// already in it (read through storage in the replica; a set in tests).
pub trait DigestIndex {
    /// Whether `digest` is logged.
    fn is_logged(&self, digest: &Digest) -> bool;
}

impl DigestIndex for std::collections::BTreeSet<Digest> {
    fn is_logged(&self, digest: &Digest) -> bool {
        self.contains(digest)
    }
}

/// Sequencer configuration.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Replicas.
    pub n: usize,
    /// Fault bound.
    pub f: usize,
    /// `lamport` or `clock{granularity}`.
    pub policy: Policy,
    /// See [`crate::config::LATE_WAVES`].
    pub late_waves: u64,
    /// See [`crate::config::LATE_WAVES_MAX`].
    pub late_waves_max: u64,
    /// The cluster's genesis time: the first tick's lower bound.
    pub genesis_time: Micros,
    /// The hold-back rule. Switching it off is for the simulator's metric
    /// tests only (it must then see M1 > 0 under withhold-and-rush): the
    /// field exists only with the `sim-hooks` feature, which the `belfry`
    /// binary never enables — without it the rule is always on.
    #[cfg(feature = "sim-hooks")]
    pub hold_back: bool,
    /// Test-only (`sim-hooks`): break ties by the digest itself instead of
    /// the coin, a deterministic and biasable rule the simulator's M5 must
    /// catch.
    #[cfg(feature = "sim-hooks")]
    pub fixed_tie_break: bool,
    /// Baseline only (`sim-hooks`): plain commit order — every digest is
    /// logged at its first counted report, in canonical vertex order, with
    /// no quorum, median or hold-back (what the simulator's M7 compares
    /// fairness against).
    #[cfg(feature = "sim-hooks")]
    pub fairness_off: bool,
    /// See [`MAX_WEAK_PENDING_PER_AUTHOR`].
    pub max_weak_per_author: usize,
}

/// Most pending digests one author may hold among those at most `f`
/// authors reported ("weak": no honest replica need have seen them): a
/// report of a digest new to the sequencer from an author at its quota does
/// not count. This bounds what a Byzantine author's junk keeps pending (and
/// in every state snapshot) to `f` quotas, while an honest author's digests
/// leave the weak set within a round or two, as other replicas re-report
/// them (docs/design.md §3.2). Twenty full vertices' worth: more than an honest
/// author can hold weak even when only the first `⌈max_reports / n⌉` of
/// each of its full vertices are re-reported and the rest wait to turn
/// late (`late_waves + 1` waves, sixteen rounds, of full vertices).
pub const MAX_WEAK_PENDING_PER_AUTHOR: usize = 20 * crate::config::MAX_REPORTS_PER_VERTEX;

// An honest replica's pending digests never exceed its weak quota.
const _: () = assert!(crate::config::MAX_PENDING_DIGESTS < MAX_WEAK_PENDING_PER_AUTHOR);

impl SequencerConfig {
    /// Defaults for an `(n, f)` cluster.
    pub fn new(n: usize, f: usize, policy: Policy, genesis_time: Micros) -> Self {
        SequencerConfig {
            n,
            f,
            policy,
            late_waves: crate::config::LATE_WAVES,
            late_waves_max: crate::config::LATE_WAVES_MAX,
            genesis_time,
            #[cfg(feature = "sim-hooks")]
            hold_back: true,
            #[cfg(feature = "sim-hooks")]
            fixed_tie_break: false,
            #[cfg(feature = "sim-hooks")]
            fairness_off: false,
            max_weak_per_author: MAX_WEAK_PENDING_PER_AUTHOR,
        }
    }

    /// Whether the hold-back rule applies: always, but for a simulator
    /// run that switched it off (`sim-hooks`).
    fn hold_back_on(&self) -> bool {
        #[cfg(feature = "sim-hooks")]
        return self.hold_back;
        #[cfg(not(feature = "sim-hooks"))]
        return true;
    }

    /// Whether ties are broken by the digest instead of the coin: never,
    /// but in a simulator run (`sim-hooks`).
    fn fixed_tie_break_on(&self) -> bool {
        #[cfg(feature = "sim-hooks")]
        return self.fixed_tie_break;
        #[cfg(not(feature = "sim-hooks"))]
        return false;
    }

    /// Whether fair sequencing is off (plain commit order): never, but in
    /// the simulator's M7 baseline (`sim-hooks`).
    fn fairness_off_on(&self) -> bool {
        #[cfg(feature = "sim-hooks")]
        return self.fairness_off;
        #[cfg(not(feature = "sim-hooks"))]
        return false;
    }
}

/// A digest's place in the fair order, as the log will record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestRecord {
    /// The digest.
    pub digest: Digest,
    /// Lower median of the counted reports' `recv_time`s (late: the tick time).
    pub witnessed_at: Micros,
    /// The sequencing key.
    pub key: u64,
    /// Counted reports the key was taken from.
    pub witnesses: u16,
    /// Finalized late.
    pub late: bool,
}

/// The Tick fields the sequencer fixes (the replica adds `prev_root` and
/// `batch_len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickRecord {
    /// The leader's wave.
    pub wave: Wave,
    /// The tick time.
    pub time: Micros,
    /// `σ_w` of the wave.
    pub coin_sig: GroupSignature,
    /// The leader vertex's hash.
    pub leader: VertexHash,
    /// Commitment to the sequencer state after the batch.
    pub state_root: [u8; 32],
}

/// One committed batch as the sequencer logs it: its digests in order,
/// and the Tick that closes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencedBatch {
    /// Digests to log, in order.
    pub records: Vec<DigestRecord>,
    /// The closing Tick.
    pub tick: TickRecord,
}

/// One output of sequencing a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sequenced {
    /// The batch as logged: exactly one per step, the last output.
    Batch(SequencedBatch),
    /// Digests past the late deadline that hold the order back and wait
    /// for reports (see "Late digests" above): a replica that has not
    /// reported one reports it. At most every pending digest; only when
    /// there are any, before the batch.
    Awaited(Vec<Digest>),
    /// Ready or late digests the batch's hold-back test held back (for the
    /// simulator's M7; only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    HeldBack(Vec<Digest>),
}

/// What sequencing one committed batch gives, in belfry's one step shape
/// ([`belfry_coin::step::Step`]): its outputs, no messages, and the reports
/// it ignored as faults, attributed.
pub type SequenceStep = belfry_coin::step::Step<Sequenced, belfry_coin::step::Never, Fault>;

/// Reading a [`SequenceStep`].
pub trait SequenceStepExt {
    /// The batch as logged.
    fn batch(&self) -> Option<&SequencedBatch>;
    /// The batch as logged, by value.
    fn into_batch(self) -> Option<SequencedBatch>;
}

impl SequenceStepExt for SequenceStep {
    fn batch(&self) -> Option<&SequencedBatch> {
        self.output.iter().find_map(|o| match o {
            Sequenced::Batch(b) => Some(b),
            _ => None,
        })
    }

    fn into_batch(self) -> Option<SequencedBatch> {
        self.output.into_iter().find_map(|o| match o {
            Sequenced::Batch(b) => Some(b),
            _ => None,
        })
    }
}

/// The fair sequencer: deterministic, sans-IO; every replica that sequences
/// the same committed batches produces the same records and state roots.
#[derive(Clone, Debug)]
pub struct Sequencer {
    config: SequencerConfig,
    state: SequencerState,
    /// The commitment to `state.pending`, brought up to date once per
    /// batch from `dirty` (a digest reported and logged within one batch
    /// never touches it).
    pending_trie: HashTrie,
    dirty: BTreeSet<Digest>,
    /// Digests whose pending entry changed since the last
    /// [`Sequencer::take_delta`]: what the next durable record carries.
    unpersisted: BTreeSet<Digest>,
    /// A batch was sequenced since the last [`Sequencer::take_delta`].
    moved: bool,
    /// Per author, the pending digests it reported that at most `f`
    /// authors reported (derived from `state.pending`; see
    /// [`MAX_WEAK_PENDING_PER_AUTHOR`]).
    weak: Vec<usize>,
    /// Reports not counted because their author was at its quota.
    over_quota: u64,
}

impl Sequencer {
    /// A sequencer at genesis.
    pub fn new(config: SequencerConfig) -> Self {
        let n = config.n;
        let genesis = config.genesis_time;
        Sequencer {
            config,
            state: SequencerState {
                frontier_round: vec![0; n],
                frontier_time: vec![Micros::ZERO; n],
                pending: BTreeMap::new(),
                prev_tick_time: genesis,
                horizon: Round(0),
                last_wave: Wave(0),
                order_state: [0; 32],
            },
            pending_trie: HashTrie::new(),
            dirty: BTreeSet::new(),
            unpersisted: BTreeSet::new(),
            moved: false,
            weak: vec![0; n],
            over_quota: 0,
        }
    }

    /// A sequencer resuming from a persisted state. The state must be for
    /// this cluster size; otherwise it is refused.
    pub fn restore(config: SequencerConfig, state: SequencerState) -> Option<Self> {
        if state.frontier_round.len() != config.n || state.frontier_time.len() != config.n {
            return None;
        }
        let mut pending_trie = HashTrie::new();
        let mut weak = vec![0usize; config.n];
        for (d, p) in &state.pending {
            pending_trie.insert(d.0, pending_leaf(p));
            if p.reports.len() <= config.f {
                for a in p.reports.keys() {
                    if let Some(w) = weak.get_mut(a.index()) {
                        *w += 1;
                    }
                }
            }
        }
        Some(Sequencer {
            config,
            state,
            pending_trie,
            dirty: BTreeSet::new(),
            unpersisted: BTreeSet::new(),
            moved: false,
            weak,
            over_quota: 0,
        })
    }

    /// The changes since the last call (or since `new`/`restore`): what a
    /// turn's durable record carries instead of the whole state. Costs
    /// O(n + digests changed).
    pub fn take_delta(&mut self) -> SequencerDelta {
        let mut delta = SequencerDelta {
            frontier_round: self.state.frontier_round.clone(),
            frontier_time: self.state.frontier_time.clone(),
            prev_tick_time: self.state.prev_tick_time,
            horizon: self.state.horizon,
            last_wave: self.state.last_wave,
            order_state: self.state.order_state,
            upserts: Vec::new(),
            removed: Vec::new(),
        };
        self.moved = false;
        for d in std::mem::take(&mut self.unpersisted) {
            match self.state.pending.get(&d) {
                Some(p) => delta.upserts.push((d, p.clone())),
                None => delta.removed.push(d),
            }
        }
        delta
    }

    /// Whether anything changed since the last [`Sequencer::take_delta`].
    pub fn has_delta(&self) -> bool {
        self.moved || !self.unpersisted.is_empty()
    }

    /// The state to persist.
    pub fn state(&self) -> &SequencerState {
        &self.state
    }

    /// The wave of the last batch sequenced.
    pub fn last_wave(&self) -> Wave {
        self.state.last_wave
    }

    /// Digests with counted reports that are not logged yet.
    pub fn pending_len(&self) -> usize {
        self.state.pending.len()
    }

    /// Digests that hold the order back and wait for reports — pending,
    /// with more than `f` but at most `2f` counted reports — that `author`
    /// has not reported: what a replica that installed this state owes.
    pub fn blocking_unreported(&self, author: ReplicaId) -> Vec<Digest> {
        let f = self.config.f;
        self.state
            .pending
            .iter()
            .filter(|(_, p)| {
                p.reports.len() > f && p.reports.len() <= 2 * f && !p.reports.contains_key(&author)
            })
            .map(|(d, _)| *d)
            .collect()
    }

    /// Whether `digest` has counted reports and is not logged yet.
    pub fn is_pending(&self, digest: &Digest) -> bool {
        self.state.pending.contains_key(digest)
    }

    /// Whether `author`'s report of `digest` is counted and the digest not
    /// logged yet.
    pub fn has_report(&self, digest: &Digest, author: ReplicaId) -> bool {
        self.state
            .pending
            .get(digest)
            .is_some_and(|p| p.reports.contains_key(&author))
    }

    /// Per author, the weak pending digests it reported (see
    /// [`MAX_WEAK_PENDING_PER_AUTHOR`]).
    pub fn weak_per_author(&self) -> &[usize] {
        &self.weak
    }

    /// Reports not counted because their author was at its quota.
    pub fn over_quota(&self) -> u64 {
        self.over_quota
    }

    /// The previous tick's time.
    pub fn prev_tick_time(&self) -> Micros {
        self.state.prev_tick_time
    }

    /// The state root after a batch:
    /// `SHA3-256("belfry-state-v1" || order_state[32] || G u64 ||
    /// prev_tick_time u64 || n u16 || (frontier_round u64 || frontier_time u64)*
    /// || pending_root[32])`, where `pending_root` is the root of the
    /// [`HashTrie`] over the unlogged digests, each digest's value being
    /// `SHA3-256("belfry-pending-v2" || first_wave u64 || reports u16 ||
    /// (author u16 || value u64 || recv_time u64)*)` with authors sorted.
    /// `order_state` is the broadcast node's commitment to
    /// `last_decided_wave`, `G`'s leader round and the ordered references
    /// above `G`.
    ///
    /// The trie is brought up to date once per batch for the digests the
    /// batch touched and left pending (or removed), so a Tick costs O(n)
    /// plus at most 256 hashes per such digest — not a pass over every
    /// pending digest (docs/design.md §3.6).
    pub fn state_root(&self, order_state: &[u8; 32]) -> [u8; 32] {
        let pending_root = self.pending_trie.root();
        let mut s = Vec::with_capacity(96 + 16 * self.config.n);
        s.extend_from_slice(b"belfry-state-v1");
        s.extend_from_slice(order_state);
        s.extend_from_slice(&self.state.horizon.0.to_be_bytes());
        s.extend_from_slice(&self.state.prev_tick_time.0.to_be_bytes());
        s.extend_from_slice(&(self.config.n as u16).to_be_bytes());
        for x in 0..self.config.n {
            s.extend_from_slice(&self.state.frontier_round[x].to_be_bytes());
            s.extend_from_slice(&self.state.frontier_time[x].0.to_be_bytes());
        }
        s.extend_from_slice(&pending_root);
        sha3(&[&s])
    }
}
