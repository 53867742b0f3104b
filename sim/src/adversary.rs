//! The adversary's state: which replica runs which Byzantine strategy and
//! what each strategy holds between events, and the faults in force —
//! paused and starved replicas and the events held for them. The fault
//! schedule is in `events.rs`, the strategies in `byzantine.rs` and
//! `network.rs`.

use crate::config::Strategy;
use crate::engine::Event;
use belfry_replica::clock::Micros;
use belfry_replica::journal::MemoryJournal;
use belfry_replica::Host;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};

/// What the adversary holds between events.
pub(crate) struct Adversary {
    /// Each replica's strategy (`None`: honest).
    pub(crate) byz: Vec<Option<Strategy>>,
    /// The strategies' randomness.
    pub(crate) byz_rng: ChaCha20Rng,
    /// Frames a replaying adversary recorded: (sender, frame).
    pub(crate) replay_buf: Vec<(usize, Vec<u8>)>,
    /// Late-leader frames held until their wave's coin is out.
    pub(crate) held_frames: Vec<(usize, usize, belfry_replica::coin::Wave, Vec<u8>)>,
    /// Hashes of vertices a late leader withheld.
    pub(crate) withheld: BTreeSet<[u8; 32]>,
    /// The honest replica a withhold-and-rush adversary slows down.
    pub(crate) rush_slowed: Option<usize>,
    /// Twins: the second instance of a replica.
    pub(crate) twins: BTreeMap<usize, Host<MemoryJournal>>,
    /// When a stall-catchup adversary last let a log page through, per asker.
    pub(crate) stall_served: BTreeMap<usize, Micros>,
    /// The honest replica a nearest-head adversary is the nearest peer of.
    pub(crate) nearest_victim: Option<usize>,
    /// Paused replicas.
    pub(crate) paused: BTreeSet<usize>,
    /// Timers and sync completions of paused replicas, held until they
    /// resume.
    pub(crate) held_events: Vec<(usize, Event)>,
    /// The starved replica and until when (no coin shares, no catch-up
    /// answers reach it).
    pub(crate) starved: Option<(usize, Micros)>,
    /// When each replica last restarted (equivocation aims at a replica
    /// that just restarted).
    pub(crate) restarted_at: BTreeMap<usize, Micros>,
}

impl Adversary {
    /// The adversary of a run whose replicas run `byz`.
    pub(crate) fn new(byz: Vec<Option<Strategy>>, byz_rng: ChaCha20Rng) -> Self {
        let n = byz.len();
        let rush_slowed = byz
            .contains(&Some(Strategy::WithholdAndRush))
            .then(|| (0..n).rev().find(|i| byz[*i].is_none()))
            .flatten();
        Adversary {
            byz,
            byz_rng,
            replay_buf: Vec::new(),
            held_frames: Vec::new(),
            withheld: BTreeSet::new(),
            rush_slowed,
            twins: BTreeMap::new(),
            stall_served: BTreeMap::new(),
            nearest_victim: None,
            paused: BTreeSet::new(),
            held_events: Vec::new(),
            starved: None,
            restarted_at: BTreeMap::new(),
        }
    }
}
