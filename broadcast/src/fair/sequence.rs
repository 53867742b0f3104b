//! Sequencing one committed batch (docs/design.md §3.5), in four steps:
//! count the batch's reports, rank the ready digests, hold back what a
//! digest not yet ready could still precede, and close the tick.

use super::state::{pending_leaf, Pending};
use super::{
    DigestIndex, DigestRecord, SequenceStep, Sequenced, SequencedBatch, Sequencer, TickRecord,
};
use crate::step::{CommittedBatch, Fault, FaultKind};
use crate::vertex::{last_round, Digest, Report, Vertex, VertexHash};
use belfry_coin::clock::{lower_median, Micros};
use belfry_coin::{Policy, ReplicaId, Wave};
use std::collections::BTreeMap;

/// A digest up for logging: `(key / granularity, tie, digest, key, late)` —
/// ordered by bucket, then by the coin's tie-break.
type Candidate = (u64, [u8; 32], Digest, u64, bool);

/// What counting a batch's reports found.
#[derive(Default)]
struct Counted {
    /// Reports ignored, attributed.
    faults: Vec<Fault>,
    /// Digests new to the sequencer, in the order their first report
    /// counted (the order plain commit order logs them in).
    first_seen_here: Vec<Digest>,
}

/// The ready and late digests of a batch, ranked.
struct Ranking {
    /// In `(bucket, tie)` order.
    candidates: Vec<Candidate>,
    /// The smallest bucket a digest that is neither ready nor late, with
    /// `>= f + 1` counted reports, could still end in (`LB(a) / G`).
    min_block: u64,
    /// Blocking digests past the late deadline that wait for reports.
    awaited: Vec<Digest>,
}

impl Sequencer {
    fn granularity(&self) -> u64 {
        match self.config.policy {
            Policy::Lamport => 1,
            Policy::Clock { granularity_us } => granularity_us.max(1),
        }
    }

    /// The smallest value author `x` could still get counted.
    fn min_future_value(&self, x: usize) -> u64 {
        match self.config.policy {
            Policy::Lamport => self.state.frontier_round[x].saturating_add(1),
            Policy::Clock { .. } => self.state.frontier_time[x].0,
        }
    }

    /// `LB(a)`: the smallest lower median over the report sets `a` can still
    /// end with (at least `2f + 1` reports).
    fn lower_bound(&self, p: &Pending) -> u64 {
        let mut counted: Vec<u64> = p.reports.values().map(|(v, _)| *v).collect();
        let mut missing: Vec<u64> = (0..self.config.n)
            .filter(|x| !p.reports.contains_key(&ReplicaId(*x as u16)))
            .map(|x| self.min_future_value(x))
            .collect();
        missing.sort_unstable();
        let need = (2 * self.config.f + 1).saturating_sub(counted.len());
        let mut best = u64::MAX;
        counted.extend(missing.iter().take(need));
        for j in need..=missing.len() {
            if j > need {
                counted.push(missing[j - 1]);
            }
            let mut set = counted.clone();
            if let Some(m) = lower_median(&mut set) {
                best = best.min(m);
            }
        }
        best
    }

    /// Sequences one committed batch. `index` says which digests are logged.
    pub fn sequence(&mut self, batch: &CommittedBatch, index: &dyn DigestIndex) -> SequenceStep {
        let counted = self.count_reports(batch, index);
        let mut ranking = self.rank(batch);
        let awaited = std::mem::take(&mut ranking.awaited);
        #[cfg_attr(not(feature = "sim-hooks"), allow(unused_variables))]
        let (chosen, held) = self.hold_back(ranking, &counted.first_seen_here);
        let (mut records, max_witnessed) = self.log(&chosen);
        let tick = self.close_tick(batch, &mut records, max_witnessed);
        let mut step = SequenceStep::default();
        if !awaited.is_empty() {
            step.push(Sequenced::Awaited(awaited));
        }
        #[cfg(feature = "sim-hooks")]
        if !held.is_empty() {
            step.push(Sequenced::HeldBack(held));
        }
        step.push(Sequenced::Batch(SequencedBatch { records, tick }));
        step.faults = counted.faults;
        step
    }

    /// Step 1: counts the batch's reports, vertex by vertex in canonical
    /// order (see the module documentation, "The rule").
    fn count_reports(&mut self, batch: &CommittedBatch, index: &dyn DigestIndex) -> Counted {
        let mut counted = Counted::default();
        self.state.horizon = batch.horizon;
        for v in &batch.vertices {
            if v.author.index() >= self.config.n || v.round < batch.horizon {
                continue;
            }
            if !self.advance_round_frontier(v, &mut counted.faults) {
                continue;
            }
            // The vertex's hash, computed only if a fault needs it.
            let mut vertex_hash = None;
            for r in &v.reports {
                self.count_report(v, r, batch.wave, index, &mut vertex_hash, &mut counted);
            }
        }
        counted
    }

    /// Under `lamport`, moves `v`'s author's frontier to `v`'s round: `false`
    /// (and a fault per report) if the round does not exceed it. Under
    /// `clock`, frontiers move report by report.
    fn advance_round_frontier(&mut self, v: &Vertex, faults: &mut Vec<Fault>) -> bool {
        if self.config.policy != Policy::Lamport {
            return true;
        }
        let a = v.author.index();
        if v.round.0 <= self.state.frontier_round[a] {
            let vertex = v.hash();
            for r in &v.reports {
                faults.push(Fault {
                    replica: v.author,
                    kind: FaultKind::ReportGoesBack {
                        digest: r.digest,
                        vertex,
                    },
                });
            }
            return false;
        }
        self.state.frontier_round[a] = v.round.0;
        true
    }

    /// Counts report `r` of vertex `v` unless its digest is logged, the
    /// author reported it before, the author is at its weak quota, or
    /// (`clock`) it goes back behind the author's frontier.
    fn count_report(
        &mut self,
        v: &Vertex,
        r: &Report,
        wave: Wave,
        index: &dyn DigestIndex,
        vertex_hash: &mut Option<VertexHash>,
        counted: &mut Counted,
    ) {
        let a = v.author.index();
        let f = self.config.f;
        // A pending digest is not logged (logging removes it from
        // `pending`), so only digests new to this sequencer cost a look
        // into the log's index.
        if !self.state.pending.contains_key(&r.digest) && index.is_logged(&r.digest) {
            return;
        }
        if self
            .state
            .pending
            .get(&r.digest)
            .is_some_and(|p| p.reports.contains_key(&v.author))
        {
            counted.faults.push(Fault {
                replica: v.author,
                kind: FaultKind::DuplicateReport {
                    digest: r.digest,
                    vertex: *vertex_hash.get_or_insert_with(|| v.hash()),
                },
            });
            return;
        }
        let new_digest = !self.state.pending.contains_key(&r.digest);
        if new_digest && self.weak[a] >= self.config.max_weak_per_author {
            self.over_quota += 1;
            return;
        }
        let value = match self.config.policy {
            Policy::Lamport => v.round.0,
            Policy::Clock { .. } => {
                if r.recv_time < self.state.frontier_time[a] {
                    counted.faults.push(Fault {
                        replica: v.author,
                        kind: FaultKind::ReportGoesBack {
                            digest: r.digest,
                            vertex: *vertex_hash.get_or_insert_with(|| v.hash()),
                        },
                    });
                    return;
                }
                self.state.frontier_time[a] = r.recv_time;
                r.recv_time.0
            }
        };
        if !self.state.pending.contains_key(&r.digest) {
            counted.first_seen_here.push(r.digest);
        }
        let p = self
            .state
            .pending
            .entry(r.digest)
            .or_insert_with(|| Pending {
                reports: BTreeMap::new(),
                first_wave: wave,
            });
        p.reports.insert(v.author, (value, r.recv_time));
        let reporters = p.reports.len();
        if reporters <= f {
            self.weak[a] += 1;
        } else if reporters == f + 1 {
            // No longer weak: it leaves every earlier reporter's count.
            for x in p.reports.keys().filter(|x| **x != v.author) {
                if let Some(w) = self.weak.get_mut(x.index()) {
                    *w = w.saturating_sub(1);
                }
            }
        }
        self.dirty.insert(r.digest);
    }

    /// Whether waiting longer for `p`'s reports cannot help at `wave` (see
    /// the module documentation, "Late digests"): it is `late_waves` waves
    /// old and has at most `f` counted reports, or more than `n − 2f − 1`
    /// authors that did not report it have committed a vertex in the last
    /// round of wave `first_wave + late_waves − 1` or later; or it is
    /// `late_waves_max` waves old. Under `clock` the state keeps no round
    /// frontiers (adding them would change every state root a running
    /// cluster signs), so every author counts as moved on: the deadline
    /// alone decides, as before this rule.
    fn is_late(&self, p: &Pending, wave: Wave) -> bool {
        let (n, f) = (self.config.n, self.config.f);
        let first = p.first_wave.0;
        if wave.0 < first.saturating_add(self.config.late_waves) {
            return false;
        }
        if p.reports.len() <= f
            || wave.0 >= first.saturating_add(self.config.late_waves_max)
            || self.config.policy != Policy::Lamport
        {
            return true;
        }
        let deadline = last_round(Wave(
            first
                .saturating_add(self.config.late_waves)
                .saturating_sub(1),
        ));
        let moved_on = (0..n)
            .filter(|x| {
                self.state.frontier_round[*x] >= deadline.0
                    && !p.reports.contains_key(&ReplicaId(*x as u16))
            })
            .count();
        moved_on > n.saturating_sub(2 * f + 1)
    }

    /// Step 2: readiness and keys, once per batch. A digest with `2f + 1`
    /// counted reports is ready, keyed by their lower median; one that
    /// waiting cannot help any more is late, keyed by `LB(a)`; the rest with
    /// `f + 1` reports may block, and are awaited once past the deadline.
    fn rank(&self, batch: &CommittedBatch) -> Ranking {
        let f = self.config.f;
        let g = self.granularity();
        let fixed = self.config.fixed_tie_break_on();
        let tie = |d: &Digest| {
            if fixed {
                d.0
            } else {
                batch.coin.value.tie(&d.0)
            }
        };
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut min_block = u64::MAX;
        let mut awaited = Vec::new();
        for (d, p) in &self.state.pending {
            let k = p.reports.len();
            if k > 2 * f {
                let mut values: Vec<u64> = p.reports.values().map(|(v, _)| *v).collect();
                let key = lower_median(&mut values).unwrap_or(0);
                candidates.push((key / g, tie(d), *d, key, false));
            } else if self.is_late(p, batch.wave) {
                let key = self.lower_bound(p);
                candidates.push((key / g, tie(d), *d, key, true));
            } else if k > f {
                min_block = min_block.min(self.lower_bound(p) / g);
                if batch.wave.0 >= p.first_wave.0.saturating_add(self.config.late_waves) {
                    awaited.push(*d);
                }
            }
        }
        candidates.sort_unstable();
        Ranking {
            candidates,
            min_block,
            awaited,
        }
    }

    /// Step 3: hold-back. Candidates are taken in order until the first
    /// whose bucket a blocking digest could still reach; it and the rest
    /// stay pending (returned as held). The M7 baseline (`fairness_off`)
    /// takes the batch's new digests in commit order instead.
    fn hold_back(
        &self,
        ranking: Ranking,
        first_seen_here: &[Digest],
    ) -> (Vec<Candidate>, Vec<Digest>) {
        let Ranking {
            mut candidates,
            min_block,
            ..
        } = ranking;
        let mut chosen = Vec::new();
        if self.config.fairness_off_on() {
            // Plain commit order: first seen, first logged.
            let g = self.granularity();
            candidates.clear();
            for d in first_seen_here {
                if let Some(p) = self.state.pending.get(d) {
                    let key = p.reports.values().map(|(v, _)| *v).min().unwrap_or(0);
                    chosen.push((key / g, [0; 32], *d, key, false));
                }
            }
        }
        let mut taken = 0;
        for c in &candidates {
            if self.config.hold_back_on() && c.0 >= min_block {
                break;
            }
            chosen.push(*c);
            taken += 1;
        }
        let held: Vec<Digest> = candidates[taken..].iter().map(|c| c.2).collect();
        (chosen, held)
    }

    /// Logs the chosen digests: out of `pending`, into records. Returns them
    /// with the latest `witnessed_at` of the non-late ones.
    fn log(&mut self, chosen: &[Candidate]) -> (Vec<DigestRecord>, Micros) {
        let f = self.config.f;
        let mut records = Vec::with_capacity(chosen.len());
        let mut max_witnessed = Micros::ZERO;
        for (_, _, d, key, late) in chosen {
            let Some(p) = self.state.pending.remove(d) else {
                // `rank` and `hold_back` choose from `pending`, each digest once.
                debug_assert!(false, "a digest chosen for the log is pending");
                continue;
            };
            if p.reports.len() <= f {
                for x in p.reports.keys() {
                    if let Some(w) = self.weak.get_mut(x.index()) {
                        *w = w.saturating_sub(1);
                    }
                }
            }
            self.dirty.insert(*d);
            let mut times: Vec<Micros> = p.reports.values().map(|(_, t)| *t).collect();
            let witnessed_at = lower_median(&mut times).unwrap_or_default();
            if !late {
                max_witnessed = max_witnessed.max(witnessed_at);
            }
            records.push(DigestRecord {
                digest: *d,
                witnessed_at,
                key: *key,
                witnesses: p.reports.len().min(usize::from(u16::MAX)) as u16,
                late: *late,
            });
        }
        (records, max_witnessed)
    }

    /// Step 4: closes the tick (docs/design.md §3.6) — its time, late
    /// records witnessed at it, the state moved on and its root.
    fn close_tick(
        &mut self,
        batch: &CommittedBatch,
        records: &mut [DigestRecord],
        max_witnessed: Micros,
    ) -> TickRecord {
        let mut clocks = batch.leader_parent_clocks.clone();
        let median_clock = if batch.wave.0 <= 1 || clocks.is_empty() {
            self.config.genesis_time
        } else {
            lower_median(&mut clocks).unwrap_or(self.config.genesis_time)
        };
        let time = self
            .state
            .prev_tick_time
            .max(median_clock)
            .max(max_witnessed);
        for r in records.iter_mut().filter(|r| r.late) {
            r.witnessed_at = time;
        }
        self.state.prev_tick_time = time;
        self.state.last_wave = batch.wave;
        self.state.order_state = batch.order_state;
        self.flush_dirty();
        TickRecord {
            wave: batch.wave,
            time,
            coin_sig: batch.coin.signature,
            leader: batch.leader.hash,
            state_root: self.state_root(&batch.order_state),
        }
    }

    /// Brings the pending trie up to date for the digests the batch touched,
    /// and marks them for the next delta.
    fn flush_dirty(&mut self) {
        self.unpersisted.extend(self.dirty.iter().copied());
        self.moved = true;
        for d in std::mem::take(&mut self.dirty) {
            match self.state.pending.get(&d) {
                Some(p) => self.pending_trie.insert(d.0, pending_leaf(p)),
                None => self.pending_trie.remove(&d.0),
            }
        }
    }
}
