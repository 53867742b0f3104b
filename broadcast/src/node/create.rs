//! Creating this replica's own vertices (docs/design.md §3.2).

use super::*;

impl Node {
    /// Creates the next own vertex when the DAG holds Q vertices of the round
    /// below it and either the batch is full or `round_interval` has passed.
    pub(super) fn try_create_vertex(&mut self, step: &mut Step) {
        if !self.config.participate {
            return;
        }
        let q = self.config.quorum();
        // The highest round with a quorum in the DAG: a replica that was away
        // jumps straight there (its `prev` link spans the gap).
        let mut base = self.dag.highest_round();
        while base > self.round && base.0 > 0 && self.dag.count(base) < q {
            base = base.prev();
        }
        let target = if self.round.0 == 0 && base.0 == 0 {
            Round(1)
        } else if base >= self.round && base.0 > 0 && self.dag.count(base) >= q {
            base.next()
        } else {
            return;
        };
        if target <= self.round || target <= self.joined_above {
            return;
        }
        // A replica that is catching up (after a restart or a partition) does
        // not build vertices far behind the cluster: they would fall below the
        // others' GC horizon and never be ordered. Its DAG catches up by
        // itself; it rejoins at the current round.
        if target.0.saturating_add(self.config.gc_depth / 2) < self.cluster_round().0 {
            return;
        }
        let full = self.pending.len() >= self.config.max_reports_per_vertex;
        if let Some(at) = self.last_vertex_at {
            let due = at.saturating_add(self.pace());
            if self.now < due && !full {
                if self.round_timer_due.is_none() {
                    self.round_timer_due = Some(due);
                    step.timers.push((due, TimerKind::RoundInterval));
                }
                return;
            }
        }
        self.create_vertex(target, step);
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
        !self.pending.is_empty()
            || !self.unordered_reports.is_empty()
            || self.external_work
            || self.now < self.fast_until
    }

    /// Tells the node whether the replica above still waits on ordering
    /// (digests reported and not yet logged): it keeps the fast pace.
    pub fn set_external_work(&mut self, waiting: bool) {
        self.external_work = waiting;
    }

    pub(super) fn create_vertex(&mut self, round: Round, step: &mut Step) {
        let parents: Vec<VertexRef> = if round.0 > 1 {
            self.dag.refs(round.prev()).collect()
        } else {
            Vec::new()
        };
        let clock = self.now.max(Micros(self.last_clock.0.saturating_add(1)));
        let mut reports = Vec::new();
        let mut seen = BTreeSet::new();
        while reports.len() < self.config.max_reports_per_vertex {
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
        // Weak edges: DAG vertices above the horizon that neither the parents
        // nor the prev chain reach.
        let mut frontier: Vec<VertexHash> = parents.iter().map(|p| p.hash).collect();
        frontier.extend(self.last_own.iter().map(|p| p.hash));
        self.mark_reached(frontier);
        let limit = self.config.max_weak_edges();
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
        self.mark_reached(weak.iter().map(|w| w.hash).collect());
        let v = Vertex {
            round,
            author: self.config.me,
            prev: self.last_own,
            parents,
            weak,
            clock,
            reports,
        };
        let reference = v.reference();
        if let Some(at) = self.last_vertex_at {
            let took = self.now.saturating_sub(at).min(self.config.resend_interval);
            if self.round_times.len() >= ROUND_TIME_WINDOW {
                self.round_times.pop_front();
            }
            self.round_times.push_back(took);
        }
        self.round = round;
        self.last_own = Some(reference);
        self.last_clock = clock;
        self.last_vertex_at = Some(self.now);
        self.peer_rounds[self.config.me.index()] = round;
        self.counters.rounds_created += 1;
        let own = Arc::new(v.clone());
        self.own_vertices.insert(round, own.clone());
        step.writes.push(Durable::OwnVertex(own));
        self.own_val_hash = Some((round, reference.hash));
        self.broadcast(Message::Val(v), step);
    }

    /// Removes from `unreached` everything reachable from `from` that is still
    /// in it (a reached vertex's ancestors were reached with it).
    pub(super) fn mark_reached(&mut self, from: Vec<VertexHash>) {
        let mut stack = from;
        while let Some(h) = stack.pop() {
            let Some(v) = self.dag.get(&h) else { continue };
            if !self.unreached.remove(&(v.round, v.author, h)) {
                continue;
            }
            stack.extend(v.references().map(|r| r.hash));
        }
    }
}
