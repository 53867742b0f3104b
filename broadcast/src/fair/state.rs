//! What the sequencer carries from one batch to the next: the pending
//! digests, the [`SequencerState`] persisted at a Tick, and the
//! [`SequencerDelta`] a turn persists instead of it.

use crate::vertex::{Digest, Round};
use belfry_coin::clock::Micros;
use belfry_coin::{sha3, ReplicaId, Wave};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An unlogged digest's counted reports and the wave of its first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    /// author → (value, recv_time)
    pub(super) reports: BTreeMap<ReplicaId, (u64, Micros)>,
    pub(super) first_wave: Wave,
}

/// The trie value of a pending digest (see [`super::Sequencer::state_root`]).
pub(super) fn pending_leaf(p: &Pending) -> [u8; 32] {
    let mut b = Vec::with_capacity(28 + p.reports.len() * 18);
    b.extend_from_slice(b"belfry-pending-v2");
    b.extend_from_slice(&p.first_wave.0.to_be_bytes());
    b.extend_from_slice(&(p.reports.len() as u16).to_be_bytes());
    for (a, (v, t)) in &p.reports {
        b.extend_from_slice(&a.0.to_be_bytes());
        b.extend_from_slice(&v.to_be_bytes());
        b.extend_from_slice(&t.0.to_be_bytes());
    }
    sha3(&[&b])
}

/// What changed in the sequencer state since the last delta was taken: the
/// per-turn durable record of the sequencer (docs/design.md §3.6 asks a Tick to be
/// cheap; a whole state per Tick grows with everything pending). Applying the
/// deltas in order to the state they were taken after gives the state now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencerDelta {
    /// The small, fixed-size part of the state, whole.
    pub(super) frontier_round: Vec<u64>,
    pub(super) frontier_time: Vec<Micros>,
    pub(super) prev_tick_time: Micros,
    pub(super) horizon: Round,
    pub(super) last_wave: Wave,
    pub(super) order_state: [u8; 32],
    /// Pending digests added or changed.
    pub(super) upserts: Vec<(Digest, Pending)>,
    /// Pending digests logged (or dropped).
    pub(super) removed: Vec<Digest>,
}

impl SequencerDelta {
    /// Pending digests this delta adds, changes or removes.
    pub fn changed(&self) -> usize {
        self.upserts.len() + self.removed.len()
    }
}

/// Everything the sequencer carries from one batch to the next: persisted at
/// each Tick, and what a catching-up replica installs (checked against the
/// Tick's `state_root`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencerState {
    pub(super) frontier_round: Vec<u64>,
    pub(super) frontier_time: Vec<Micros>,
    pub(super) pending: BTreeMap<Digest, Pending>,
    pub(super) prev_tick_time: Micros,
    pub(super) horizon: Round,
    pub(super) last_wave: Wave,
    pub(super) order_state: [u8; 32],
}

impl SequencerState {
    /// A state with nothing in it, for [`SequencerState::apply`] to fill:
    /// the first delta a sequencer hands out carries every change since
    /// genesis.
    pub fn empty() -> Self {
        SequencerState {
            frontier_round: Vec::new(),
            frontier_time: Vec::new(),
            pending: BTreeMap::new(),
            prev_tick_time: Micros::ZERO,
            horizon: Round(0),
            last_wave: Wave(0),
            order_state: [0; 32],
        }
    }

    /// The state after `delta`, taken after this state.
    pub fn apply(&mut self, delta: SequencerDelta) {
        self.frontier_round = delta.frontier_round;
        self.frontier_time = delta.frontier_time;
        self.prev_tick_time = delta.prev_tick_time;
        self.horizon = delta.horizon;
        self.last_wave = delta.last_wave;
        self.order_state = delta.order_state;
        for (d, p) in delta.upserts {
            self.pending.insert(d, p);
        }
        for d in delta.removed {
            self.pending.remove(&d);
        }
    }

    /// Unlogged digests with counted reports.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The wave of the last batch sequenced (0 before the first).
    pub fn last_wave(&self) -> Wave {
        self.last_wave
    }

    /// The broadcast node's ordering-state commitment this state was built on.
    pub fn order_state(&self) -> [u8; 32] {
        self.order_state
    }
}
