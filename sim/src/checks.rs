//! What the simulator checks and reports: the invariants after every
//! released turn of an honest replica, receipts at the end, stalls, and the
//! run's report.

use crate::byzantine::is_censored;
use crate::config::Strategy;
use crate::engine::{honest, Sim, LIVE_AGAIN_BOUND};
use crate::metrics;
use crate::report::{CensoredSplit, DigestGroup, Latency, Report};
use belfry_replica::broadcast::Durable;
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::{verify_inclusion, verify_receipt, Entry};
use belfry_replica::Released;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most a replica held over a run (sampled every 50 ms).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ReplicaMemory {
    /// DAG vertices.
    pub dag_vertices: usize,
    /// Reliable-broadcast slots.
    pub slots: usize,
    /// Delivered vertices waiting for references.
    pub buffered: usize,
    /// Vertex bodies kept for slots.
    pub bodies: usize,
    /// Canonical bytes of every vertex held.
    pub vertex_bytes: usize,
    /// Digests the replica reported and not yet logged.
    pub pending_digests: usize,
    /// Digests the sequencer holds pending.
    pub sequencer_pending: usize,
    /// The bound on DAG vertices, slots and buffered vertices:
    /// `(gc_depth + 2 round_window + 1) · n`.
    pub bound: usize,
}

/// Work answering requests, summed over the honest replicas.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ServingReport {
    /// Requests (or occasions, for re-sends).
    pub requests: u64,
    /// Refused at once: the asker's budget was empty.
    pub refused: u64,
    /// Bytes answered.
    pub bytes: u64,
    /// Bytes answered per logged digest.
    pub bytes_per_digest: f64,
}

impl Sim {
    /// Samples what every running replica holds (every 50 ms) and checks
    /// the bounds for honest ones.
    pub(crate) fn sample_memory(&mut self) {
        if self.world.now.saturating_sub(self.oracle.memory_sampled) < Micros::from_millis(50) {
            return;
        }
        self.oracle.memory_sampled = self.world.now;
        let mut broken = Vec::new();
        for (i, r) in self.world.replicas.iter().enumerate() {
            let Some(core) = r.host.as_ref().map(|h| h.core()) else {
                continue;
            };
            let node = core.node();
            let m = node.memory_use();
            let bound = node.memory_bound();
            let seq = core.sequencer_state().pending_len();
            let max = &mut self.oracle.memory[i];
            max.dag_vertices = max.dag_vertices.max(m.dag_vertices);
            max.slots = max.slots.max(m.slots);
            max.buffered = max.buffered.max(m.buffered);
            max.bodies = max.bodies.max(m.bodies);
            max.vertex_bytes = max.vertex_bytes.max(m.vertex_bytes);
            max.pending_digests = max.pending_digests.max(core.pending_len());
            max.sequencer_pending = max.sequencer_pending.max(seq);
            max.bound = bound;
            let n = self.cfg.n;
            let seq_bound = n * belfry_replica::broadcast::fair::MAX_WEAK_PENDING_PER_AUTHOR
                + belfry_replica::broadcast::config::MAX_PENDING_DIGESTS;
            let over = m.dag_vertices > bound
                || m.slots > bound
                || m.buffered > bound
                || m.bodies > 2 * bound
                || seq > seq_bound;
            if over && honest(&self.cfg, i) {
                broken.push(format!(
                    "memory: replica {i} holds {} DAG vertices, {} slots, {} buffered, {} bodies, {seq} pending in the sequencer (bound {bound}, {} for bodies, {seq_bound} pending)",
                    m.dag_vertices, m.slots, m.buffered, m.bodies, 2 * bound
                ));
            }
        }
        for b in broken {
            if !self
                .oracle
                .violations
                .iter()
                .any(|v| v.starts_with("memory:"))
            {
                self.oracle.violations.push(b);
            }
        }
    }

    /// The honest replicas' work answering each kind of request.
    pub(crate) fn serving_report(&self) -> BTreeMap<String, ServingReport> {
        use belfry_replica::broadcast::ResendCause;
        use belfry_replica::core::ServeKind;
        let logged = self.oracle.logged.len().max(1) as f64;
        let mut out: BTreeMap<String, ServingReport> = BTreeMap::new();
        for (i, r) in self.world.replicas.iter().enumerate() {
            let Some(core) = r.host.as_ref().map(|h| h.core()) else {
                continue;
            };
            if !honest(&self.cfg, i) {
                continue;
            }
            let resends = core.node().counters().resends;
            let causes = ResendCause::ALL.iter().map(|c| {
                let name = match c {
                    ResendCause::FetchVotes => "FetchVotes",
                    ResendCause::FetchVertex => "FetchVertex",
                    ResendCause::Reconnect => "resend on reconnect",
                    ResendCause::Timer => "resend on timer",
                };
                (name, resends[c.index()])
            });
            let kinds = ServeKind::ALL
                .iter()
                .map(|k| (k.name(), core.serving().kinds[*k as usize]));
            for (name, s) in causes.chain(kinds) {
                let e = out.entry(name.to_string()).or_default();
                e.requests += s.requests;
                e.refused += s.refused;
                e.bytes += s.bytes;
            }
        }
        for e in out.values_mut() {
            e.bytes_per_digest = e.bytes as f64 / logged;
        }
        out
    }
    /// Takes the reports of an honest replica's newly persisted own
    /// vertices, valued by the policy: its first report of each digest, and
    /// the range of any later ones. A replica reports a digest again when
    /// the vertex that carried it fell below the GC horizon unordered (then
    /// the later report is the one that counts) or after a crash or wipe
    /// (then the sequencer ignores it as a duplicate): which one counted is
    /// not known here, so the fairness measures use the widest range —
    /// never a false alarm, at worst a pair less counted as clearly ordered.
    pub(crate) fn absorb_reports(&mut self, i: usize, writes: &[Durable]) {
        if !honest(&self.cfg, i) {
            return;
        }
        for w in writes {
            if let Durable::OwnVertex(v) = w {
                for r in &v.reports {
                    let value = match self.cfg.policy {
                        Policy::Lamport => v.round.0,
                        Policy::Clock { .. } => r.recv_time.0,
                    };
                    if self.oracle.report_seen[i].insert(r.digest.0) {
                        self.oracle
                            .reports
                            .entry(r.digest.0)
                            .or_default()
                            .push(value);
                    } else {
                        let (lo, hi) = self
                            .oracle
                            .reported_again
                            .entry(r.digest.0)
                            .or_insert((value, value));
                        *lo = (*lo).min(value);
                        *hi = (*hi).max(value);
                    }
                }
            }
        }
    }

    /// Notes where progress stopped: no new log entry for 2 s while digests
    /// wait.
    pub(crate) fn detect_stall(&mut self) {
        let waiting = self.oracle.submitted.len() > self.oracle.logged.len();
        if !waiting || self.oracle.stall_reported {
            return;
        }
        // Inside a window that leaves no quorum nothing is expected to
        // move; after it, the clock starts at its end.
        let mut since = self.oracle.last_progress;
        let windows = if self.cfg.exempt_no_quorum {
            &self.oracle.no_quorum[..]
        } else {
            &[]
        };
        for (start, end) in windows {
            if *start <= self.world.now && self.world.now <= *end {
                return;
            }
            if *end <= self.world.now {
                since = since.max(*end);
            }
        }
        if self.world.now.saturating_sub(since) > LIVE_AGAIN_BOUND {
            self.oracle.stall_reported = true;
            let state: Vec<String> = self
                .world
                .replicas
                .iter()
                .enumerate()
                .map(|(i, r)| match r.host.as_ref().map(|h| h.core()) {
                    Some(c) => format!(
                        "r{i}: round {} wave {} log {}",
                        c.node().round().0,
                        c.node().last_decided_wave().0,
                        c.log_len()
                    ),
                    None => format!("r{i}: down"),
                })
                .collect();
            let stall = format!(
                "no progress for {} s from {} µs (log size {}): {}",
                LIVE_AGAIN_BOUND.0 / 1_000_000,
                since.0,
                self.oracle.canonical.len(),
                state.join("; ")
            );
            self.oracle.violations.push(format!("stall: {stall}"));
            self.oracle.stalls.push(stall);
        }
    }

    /// The invariants that must hold after every released turn of an
    /// honest replica.
    pub(crate) fn check_turn(&mut self, i: usize, step: &Released) {
        for h in &step.held {
            self.oracle.held.insert(*h);
        }
        for (k, e) in step.appended.iter().enumerate() {
            let index = step.first + k as u64;
            if let Some(existing) = self.oracle.canonical.get(index as usize) {
                if existing != e {
                    self.oracle.violations.push(format!(
                        "event {}: replica {i}'s log differs from another honest log at index {index}",
                        self.events
                    ));
                }
                continue;
            }
            if index as usize != self.oracle.canonical.len() {
                continue;
            }
            match e {
                Entry::Digest(d) => {
                    self.oracle.uncovered.insert(index, d.digest);
                    if self.oracle.logged.insert(d.digest, index).is_some() {
                        self.oracle.violations.push(format!(
                            "event {}: digest {} logged twice",
                            self.events,
                            hex::encode(d.digest)
                        ));
                    }
                }
                Entry::Tick(t) => {
                    if self.adversary.withheld.contains(&t.leader) {
                        self.oracle.violations.push(format!(
                            "event {}: a late leader's withheld vertex was ordered as the leader of wave {}",
                            self.events, t.wave
                        ));
                    }
                    if self.oracle.last_tick_time.is_some_and(|l| t.time < l) {
                        self.oracle.violations.push(format!(
                            "event {}: tick time went back at index {index}",
                            self.events
                        ));
                    }
                    self.oracle.last_tick_time = Some(t.time);
                }
            }
            self.oracle.canonical.push(*e);
            self.oracle.last_progress = self.world.now;
            self.oracle.stall_reported = false;
        }
        for h in &step.heads {
            match self.oracle.heads.get(&h.head.tree_size) {
                Some(other) if other != h => self.oracle.violations.push(format!(
                    "event {}: two different signed heads at size {}",
                    self.events, h.head.tree_size
                )),
                Some(_) => {}
                None => {
                    self.oracle.heads.insert(h.head.tree_size, *h);
                    let rest = self.oracle.uncovered.split_off(&h.head.tree_size);
                    let now = self.world.now;
                    for d in std::mem::replace(&mut self.oracle.uncovered, rest).into_values() {
                        self.oracle.covered_at.entry(d).or_insert(now);
                    }
                }
            }
        }
        for w in &step.writes {
            if let Durable::OwnVertex(v) = w {
                match self.oracle.own_vertices[i].get(&v.round) {
                    Some(prev) if !Arc::ptr_eq(prev, v) && **prev != **v => {
                        self.oracle.violations.push(format!(
                            "event {}: replica {i} persisted two different own vertices for {}",
                            self.events, v.round
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.oracle.own_vertices[i].insert(v.round, v.clone());
                    }
                }
            }
        }
        let votes = step
            .writes
            .iter()
            .filter(|w| matches!(w, Durable::Vote { .. }));
        for (pledge, hash) in votes.filter_map(Durable::pledge) {
            if let Some(prev) = self.oracle.votes[i].insert(pledge, hash) {
                if prev != hash {
                    self.oracle.violations.push(format!(
                        "event {}: replica {i} persisted two different hashes for {pledge:?}",
                        self.events
                    ));
                }
            }
        }
    }

    /// Receipts from every running honest replica verify: fully under real
    /// BLS, the inclusion proof under the mock.
    pub(crate) fn check_receipts(&mut self) {
        let sample: Vec<[u8; 32]> = self.oracle.logged.keys().step_by(97).copied().collect();
        for i in 0..self.cfg.n {
            if !honest(&self.cfg, i) {
                continue;
            }
            let Some(core) = self.world.replicas[i].host.as_ref().map(|h| h.core()) else {
                continue;
            };
            for d in &sample {
                let Some(r) = core.receipt(d) else { continue };
                let ok = match &self.anchor {
                    Some(anchor) => verify_receipt(&r, anchor).is_ok(),
                    None => verify_inclusion(
                        &r.entry.leaf_hash(),
                        r.leaf_index,
                        r.tree_size,
                        &r.inclusion_proof,
                        &r.root,
                    ),
                };
                if !ok {
                    self.oracle.violations.push(format!(
                        "replica {i}'s receipt for {} does not verify",
                        hex::encode(d)
                    ));
                }
            }
        }
    }

    pub(crate) fn report(self) -> Report {
        let serving = self.serving_report();
        let memory = (0..self.cfg.n)
            .map(|i| (format!("r{i}"), self.oracle.memory[i]))
            .collect();
        let honest_ids: Vec<usize> = (0..self.cfg.n).filter(|i| honest(&self.cfg, *i)).collect();
        let reports = &self.oracle.reports;
        let metrics = metrics::compute(&metrics::Inputs {
            canonical: &self.oracle.canonical,
            logged: &self.oracle.logged,
            reports,
            reported_again: &self.oracle.reported_again,
            honest: honest_ids.len(),
            first_seen: &self.oracle.first_seen,
            races: &self.oracle.races,
            held: &self.oracle.held,
            policy: self.cfg.policy,
        });
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"));
        for (d, at) in &self.oracle.covered_at {
            if let Some(s) = self.oracle.submitted.get(d) {
                hist.saturating_record(at.saturating_sub(*s).0.max(1));
            }
        }
        let logged = self.oracle.logged.len().max(1) as f64;
        let secs = self.cfg.duration.0 as f64 / 1e6;
        let mut messages_by_type = BTreeMap::new();
        for kind in belfry_replica::broadcast::MessageKind::ALL {
            let (mut m, mut b) = (0u64, 0u64);
            for core in self.world.replicas.iter().filter_map(|r| r.host.as_ref()) {
                m += core.core().node().counters().sent[kind.index()];
                b += core.core().node().counters().sent_bytes[kind.index()];
            }
            messages_by_type.insert(format!("{kind:?}"), (m as f64 / logged, b as f64 / logged));
        }
        let stall_fetches: u64 = self
            .world
            .replicas
            .iter()
            .filter_map(|r| r.host.as_ref())
            .map(|h| h.core().node().counters().stall_fetches)
            .sum();
        if stall_fetches > 0 {
            messages_by_type.insert("StallFetches".to_string(), (stall_fetches as f64, 0.0));
        }
        let mut assignment = BTreeMap::new();
        for i in 0..self.cfg.n {
            assignment.insert(
                format!("r{i}"),
                self.adversary.byz[i].map_or("honest".to_string(), |s| s.name().to_string()),
            );
        }
        let blame = self.blame_report();
        let censored = self.censored_split();
        Report {
            seed: self.cfg.seed,
            replay: self.cfg.replay_command(),
            assignment,
            trace_hash: hex::encode(self.trace.digest()),
            violations: self.oracle.violations,
            throughput_digests_per_s: self.oracle.logged.len() as f64 / secs,
            latency_ms: Latency {
                p50: hist.value_at_quantile(0.5) as f64 / 1_000.0,
                p99: hist.value_at_quantile(0.99) as f64 / 1_000.0,
            },
            metrics,
            blame,
            coverage: self.world.coverage,
            events: self.events,
            messages_per_digest: self.world.network.frames as f64 / logged,
            bytes_per_digest: self.world.network.bytes as f64 / logged,
            trace_log: self.trace_log,
            messages_by_type,
            stalls: self.oracle.stalls,
            serving,
            memory,
            censored,
            config: self.cfg,
        }
    }

    /// With a `censor` replica in the run: the logged digests it withheld
    /// its reports of, and the rest — late, latency, timestamp shift.
    fn censored_split(&self) -> Option<CensoredSplit> {
        if !self.adversary.byz.contains(&Some(Strategy::Censor)) {
            return None;
        }
        let hist = || {
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"))
        };
        let mut groups = [
            (DigestGroup::default(), hist(), 0i128),
            (DigestGroup::default(), hist(), 0i128),
        ];
        for e in &self.oracle.canonical {
            let Entry::Digest(d) = e else { continue };
            let Some(submitted) = self.oracle.submitted.get(&d.digest) else {
                continue;
            };
            let (g, latencies, shift) = &mut groups[usize::from(!is_censored(&d.digest))];
            g.logged += 1;
            g.late += u64::from(d.late);
            *shift += i128::from(d.witnessed_at.0) - i128::from(submitted.0);
            if let Some(at) = self.oracle.covered_at.get(&d.digest) {
                latencies.saturating_record(at.saturating_sub(*submitted).0.max(1));
            }
        }
        let [censored, others] = groups.map(|(mut g, latencies, shift)| {
            if !latencies.is_empty() {
                g.latency_ms = Some(Latency {
                    p50: latencies.value_at_quantile(0.5) as f64 / 1_000.0,
                    p99: latencies.value_at_quantile(0.99) as f64 / 1_000.0,
                });
            }
            g.mean_stamp_shift_ms = shift as f64 / g.logged.max(1) as f64 / 1_000.0;
            g
        });
        Some(CensoredSplit { censored, others })
    }
}
