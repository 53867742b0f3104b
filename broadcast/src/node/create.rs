//! Creating this replica's own vertices (docs/design.md §3.2): the
//! [`OwnChain`] and the pace it keeps.

use super::*;

/// This replica's own chain of vertices: where it stands, the reports
/// queued for the coming vertices, the DAG vertices none of its vertices
/// reaches yet (its weak edges to come), and what sets its pace.
///
/// Invariants: own vertices are made in strictly rising rounds, each
/// linking the last by `prev`, with strictly rising clocks and report
/// `recv_time`s that never go back; `own_vertices` holds those at or above
/// the GC horizon; a report leaves `pending` only into an own vertex (or,
/// requeued, back to its front).
#[derive(Debug, Default)]
pub(super) struct OwnChain {
    /// The last round this replica created a vertex for.
    round: Round,
    last_own: Option<VertexRef>,
    own_vertices: BTreeMap<Round, Arc<Vertex>>,
    last_clock: Micros,
    last_recv_time: Micros,
    last_vertex_at: Option<Micros>,
    /// Reports to include in coming vertices, in the order received.
    pending: VecDeque<Report>,
    /// DAG vertices above the horizon that no own vertex reaches yet.
    unreached: BTreeSet<(Round, ReplicaId, VertexHash)>,
    /// When the armed round timer fires, if one is armed.
    round_timer_due: Option<Micros>,
    /// Delivered vertices with reports that no leader has ordered yet:
    /// while any is left, rounds keep the fast pace (their reports are
    /// ordered only as later waves commit).
    unordered_reports: BTreeSet<VertexRef>,
    /// Work the replica above the node still waits on (digests reported and
    /// not yet logged): it keeps the fast pace too.
    external_work: bool,
    /// Until when the fast pace is kept after this replica started and after
    /// a peer's `Hello` (an observer joins
    /// only once the DAG is `round_window + 2` rounds past its peers'
    /// answers, which at the idle pace would take ~25 s).
    fast_until: Micros,
}

impl OwnChain {
    /// The last round this replica created a vertex for.
    pub(super) fn round(&self) -> Round {
        self.round
    }

    /// When the last own vertex was made, if one was since the start.
    pub(super) fn last_vertex_at(&self) -> Option<Micros> {
        self.last_vertex_at
    }

    /// Queues reports for the coming vertices.
    pub(super) fn propose(&mut self, reports: Vec<Report>) {
        self.pending.extend(reports);
    }

    /// Reports queued for the coming vertices.
    pub(super) fn queued_reports(&self) -> usize {
        self.pending.len()
    }

    /// The digests the queue and the own vertices held carry.
    pub(super) fn carried(&self) -> BTreeSet<crate::vertex::Digest> {
        self.pending
            .iter()
            .chain(self.own_vertices.values().flat_map(|v| v.reports.iter()))
            .map(|r| r.digest)
            .collect()
    }

    /// Those of `digests` the queue and the own vertices held carry.
    pub(super) fn carried_among(
        &self,
        digests: &BTreeSet<crate::vertex::Digest>,
    ) -> BTreeSet<crate::vertex::Digest> {
        self.pending
            .iter()
            .chain(self.own_vertices.values().flat_map(|v| v.reports.iter()))
            .map(|r| r.digest)
            .filter(|d| digests.contains(d))
            .collect()
    }

    /// Own vertices of rounds `lo ..= hi` still held.
    pub(super) fn own_vertices_in(
        &self,
        lo: Round,
        hi: Round,
    ) -> impl Iterator<Item = &Arc<Vertex>> {
        self.own_vertices.range(lo..=hi).map(|(_, v)| v)
    }

    /// Whether there is something to order at `now` (see [`Node::pace`]).
    fn is_busy(&self, now: Micros) -> bool {
        !self.pending.is_empty()
            || !self.unordered_reports.is_empty()
            || self.external_work
            || now < self.fast_until
    }

    /// Keeps the fast pace until at least `until`.
    pub(super) fn keep_fast_until(&mut self, until: Micros) {
        self.fast_until = until;
    }

    /// The armed round timer fired.
    pub(super) fn round_timer_fired(&mut self) {
        self.round_timer_due = None;
    }

    /// Whether the next vertex waits for the pace: the last one was made
    /// less than `pace` ago and the queue does not fill a vertex. Arms the
    /// round timer for when it is due, unless one is armed.
    fn wait_for_pace(
        &mut self,
        now: Micros,
        pace: Micros,
        full_at: usize,
        step: &mut Step,
    ) -> bool {
        let full = self.pending.len() >= full_at;
        let Some(at) = self.last_vertex_at else {
            return false;
        };
        let due = at.saturating_add(pace);
        if now < due && !full {
            if self.round_timer_due.is_none() {
                self.round_timer_due = Some(due);
                step.timer(due, TimerKind::RoundInterval);
            }
            return true;
        }
        false
    }

    /// The next vertex's clock: `now`, but above the last one's.
    fn next_clock(&self, now: Micros) -> Micros {
        now.max(Micros(self.last_clock.0.saturating_add(1)))
    }

    /// Takes up to `max` distinct reports from the queue for a vertex with
    /// clock `clock`, their `recv_time`s made monotone and at most `clock`.
    fn take_reports(&mut self, max: usize, clock: Micros) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut seen = BTreeSet::new();
        while reports.len() < max {
            let Some(r) = self.pending.pop_front() else {
                break;
            };
            if !seen.insert(r.digest) {
                continue;
            }
            let recv_time = r.recv_time.max(self.last_recv_time).min(clock);
            self.last_recv_time = recv_time;
            reports.push(Report {
                digest: r.digest,
                recv_time,
            });
        }
        reports
    }

    /// The weak edges of a round-`round` vertex with `parents`: up to
    /// `limit` DAG vertices above the horizon that neither the parents nor
    /// the prev chain reach, and at least two rounds below. They count as
    /// reached from then on.
    fn weak_edges(
        &mut self,
        dag: &Dag,
        parents: &[VertexRef],
        round: Round,
        limit: usize,
    ) -> Vec<VertexRef> {
        let mut frontier: Vec<VertexHash> = parents.iter().map(|p| p.hash).collect();
        frontier.extend(self.last_own.iter().map(|p| p.hash));
        self.mark_reached(dag, frontier);
        let weak: Vec<VertexRef> = self
            .unreached
            .iter()
            .filter(|(r, _, _)| r.0.saturating_add(1) < round.0)
            .take(limit)
            .map(|(r, a, h)| VertexRef {
                round: *r,
                author: *a,
                hash: *h,
            })
            .collect();
        self.mark_reached(dag, weak.iter().map(|w| w.hash).collect());
        weak
    }

    /// Removes from `unreached` everything reachable from `from` that is still
    /// in it (a reached vertex's ancestors were reached with it).
    fn mark_reached(&mut self, dag: &Dag, from: Vec<VertexHash>) {
        let mut stack = from;
        while let Some(h) = stack.pop() {
            let Some(v) = dag.get(&h) else { continue };
            if !self.unreached.remove(&(v.round, v.author, h)) {
                continue;
            }
            stack.extend(v.references().map(|r| r.hash));
        }
    }

    /// `own` (of reference `reference`) is the new last own vertex, made at
    /// `now`.
    fn advance(&mut self, own: Arc<Vertex>, reference: VertexRef, now: Micros) {
        self.round = own.round;
        self.last_own = Some(reference);
        self.last_clock = own.clock;
        self.last_vertex_at = Some(now);
        self.own_vertices.insert(own.round, own);
    }

    /// A vertex of hash `hash` entered the DAG: no own vertex reaches it
    /// yet, and its reports, unless `ordered` holds it, keep the fast pace.
    pub(super) fn note_delivered(
        &mut self,
        v: &Vertex,
        hash: VertexHash,
        ordered: &BTreeSet<VertexRef>,
    ) {
        self.unreached.insert((v.round, v.author, hash));
        if !v.reports.is_empty() && !ordered.contains(&v.reference()) {
            self.unordered_reports.insert(v.reference());
        }
    }

    /// `r` was ordered.
    pub(super) fn note_ordered(&mut self, r: &VertexRef) {
        self.unordered_reports.remove(r);
    }

    /// An installed ordering state holds `ordered`.
    pub(super) fn forget_ordered(&mut self, ordered: &BTreeSet<VertexRef>) {
        self.unordered_reports.retain(|r| !ordered.contains(r));
    }

    /// Drops what lies below `horizon` (`floor` is its least reference).
    pub(super) fn prune_below(&mut self, horizon: Round, floor: &VertexRef) {
        self.own_vertices = self.own_vertices.split_off(&horizon);
        self.unreached = self
            .unreached
            .split_off(&(horizon, ReplicaId(0), VertexHash([0; 32])));
        // Below the horizon nothing is ordered any more.
        self.unordered_reports = self.unordered_reports.split_off(floor);
    }

    /// Own vertices about to fall below the GC horizon that no committed
    /// leader reached will never be ordered — by any replica: every replica
    /// orders the same leaders down to the same horizon — so their reports
    /// would be lost, digests a client was told were taken. (A replica whose
    /// vertices are slow to spread, as a flooded one's full vertices are,
    /// can see many of them left out of every leader's history.) Their
    /// reports go back to the front of the queue for the coming vertices, in
    /// their order; the sequencer never counted them, so nothing is reported
    /// twice. Returns how many went back.
    pub(super) fn requeue_orphaned_reports(
        &mut self,
        horizon: Round,
        me: ReplicaId,
        ordered: &BTreeSet<VertexRef>,
    ) -> usize {
        let mut back: Vec<Report> = Vec::new();
        for (round, v) in self.own_vertices.range(..horizon) {
            let lo = VertexRef {
                round: *round,
                author: me,
                hash: VertexHash([0; 32]),
            };
            let hi = VertexRef {
                round: *round,
                author: me,
                hash: VertexHash([0xff; 32]),
            };
            if ordered.range(lo..=hi).next().is_none() {
                back.extend(v.reports.iter().copied());
            }
        }
        let requeued = back.len();
        for r in back.into_iter().rev() {
            self.pending.push_front(r);
        }
        requeued
    }

    /// Restores the chain's position from a `Chain` record: whether it
    /// moved the chain on.
    pub(super) fn restore_chain(
        &mut self,
        round: Round,
        last_own: Option<VertexRef>,
        last_clock: Micros,
        last_recv_time: Micros,
    ) -> bool {
        let moved = round > self.round;
        if moved {
            self.round = round;
            self.last_own = last_own;
            self.last_clock = last_clock;
        }
        self.last_recv_time = self.last_recv_time.max(last_recv_time);
        moved
    }

    /// Restores an own vertex (kept if at or above `horizon`): whether it
    /// moved the chain on.
    pub(super) fn restore_own_vertex(&mut self, v: &Arc<Vertex>, horizon: Round) -> bool {
        let moved = v.round > self.round;
        if moved {
            self.round = v.round;
            self.last_own = Some(v.reference());
            self.last_clock = v.clock;
        }
        if let Some(last) = v.reports.last() {
            self.last_recv_time = self.last_recv_time.max(last.recv_time);
        }
        if v.round >= horizon {
            self.own_vertices.insert(v.round, v.clone());
        }
        moved
    }

    /// The chain's records: its position, then the own vertices held.
    pub(super) fn records(&self) -> impl Iterator<Item = Durable> + '_ {
        let chain = Durable::Chain {
            round: self.round,
            last_own: self.last_own,
            last_clock: self.last_clock,
            last_recv_time: self.last_recv_time,
        };
        std::iter::once(chain).chain(self.own_vertices.values().cloned().map(Durable::OwnVertex))
    }

    /// Own vertices held.
    pub(super) fn own_vertices_len(&self) -> usize {
        self.own_vertices.len()
    }
}

impl Node {
    /// Creates the next own vertex when the DAG holds Q vertices of the round
    /// below it and either the batch is full or `round_interval` has passed.
    pub(super) fn try_create_vertex(&mut self, step: &mut Step) {
        if !self.rejoin.participating {
            return;
        }
        let Some(target) = self.next_round() else {
            return;
        };
        if target <= self.own.round() || !self.rejoin.may_sign(target) {
            return;
        }
        // A replica that is catching up (after a restart or a partition) does
        // not build vertices far behind the cluster: they would fall below the
        // others' GC horizon and never be ordered. Its DAG catches up by
        // itself; it rejoins at the current round.
        if target.0.saturating_add(self.config.gc_depth / 2) < self.cluster_round().0 {
            return;
        }
        let pace = self.pace();
        let full_at = self.config.max_reports_per_vertex;
        if self.own.wait_for_pace(self.now, pace, full_at, step) {
            return;
        }
        self.create_vertex(target, step);
    }

    /// The round the next own vertex is for, if the DAG allows one: above
    /// the highest round with a quorum in the DAG — a replica that was away
    /// jumps straight there (its `prev` link spans the gap) — or round 1 at
    /// genesis.
    fn next_round(&self) -> Option<Round> {
        let q = self.config.quorum();
        let round = self.own.round();
        let mut base = self.dag.highest_round();
        while base > round && base.0 > 0 && self.dag.count(base) < q {
            base = base.prev();
        }
        if round.0 == 0 && base.0 == 0 {
            Some(Round(1))
        } else if base >= round && base.0 > 0 && self.dag.count(base) >= q {
            Some(base.next())
        } else {
            None
        }
    }

    /// The least time between own vertices now: `round_interval` while
    /// there is something to order — reports waiting for a vertex,
    /// delivered reports not yet ordered, or work the replica above waits
    /// on — else `idle_round_interval` (docs/design.md §3.2, "Pacing").
    pub(super) fn pace(&self) -> Micros {
        if self.is_busy() {
            self.config.round_interval
        } else {
            self.config
                .idle_round_interval
                .max(self.config.round_interval)
        }
    }

    /// Whether there is something to order (see [`Node::pace`]).
    pub fn is_busy(&self) -> bool {
        self.own.is_busy(self.now)
    }

    /// Tells the node whether the replica above still waits on ordering
    /// (digests reported and not yet logged): it keeps the fast pace.
    pub fn set_external_work(&mut self, waiting: bool) {
        self.own.external_work = waiting;
    }

    pub(super) fn create_vertex(&mut self, round: Round, step: &mut Step) {
        let parents: Vec<VertexRef> = if round.0 > 1 {
            self.dag.refs(round.prev()).collect()
        } else {
            Vec::new()
        };
        let clock = self.own.next_clock(self.now);
        let reports = self
            .own
            .take_reports(self.config.max_reports_per_vertex, clock);
        // Weak edges: DAG vertices above the horizon that neither the parents
        // nor the prev chain reach.
        let limit = self.config.max_weak_edges();
        let weak = self.own.weak_edges(&self.dag, &parents, round, limit);
        let v = Vertex {
            round,
            author: self.config.me,
            prev: self.own.last_own,
            parents,
            weak,
            clock,
            reports,
        };
        let reference = v.reference();
        if let Some(at) = self.own.last_vertex_at() {
            let took = self.now.saturating_sub(at).min(self.config.resend_interval);
            self.recovery.note_round_time(took);
        }
        let own = Arc::new(v.clone());
        self.own.advance(own.clone(), reference, self.now);
        self.peer_rounds.set_own(self.config.me, round);
        self.counters.rounds_created += 1;
        step.write(Durable::OwnVertex(own));
        self.loopback.own_val_hash = Some((round, reference.hash));
        self.broadcast(Message::Val(v), step);
    }
}
