//! The commit rule (docs/design.md §3.4), ordering leaders' causal histories
//! into batches, garbage collection, and installing what catch-up verified.

use super::*;

impl Node {
    pub(super) fn leader_vertex(&self, w: Wave) -> Option<(Coin, Arc<Vertex>)> {
        let coin = *self.coin.coin(w)?;
        let leader = coin.value.leader(self.config.n);
        let v = self.dag.slot(leader_round(w), leader)?.clone();
        Some((coin, v))
    }

    /// The commit rule of docs/design.md §3.4.
    pub(super) fn try_commit(&mut self, step: &mut Step) {
        let q = self.config.quorum();
        loop {
            let top_wave = self.dag.highest_round().wave();
            let mut decided = None;
            let mut w = Wave(self.last_decided_wave.0 + 1);
            while w <= top_wave {
                if let Some((_, leader)) = self.leader_vertex(w) {
                    let reach = self.dag.strong_reachers(&leader.reference(), last_round(w));
                    let supporters = self
                        .dag
                        .round(last_round(w))
                        .filter(|(h, _)| reach.contains(h))
                        .count();
                    if supporters >= q {
                        decided = Some((w, leader));
                        break;
                    }
                }
                w = Wave(w.0 + 1);
            }
            let Some((w, leader)) = decided else { return };
            // Wait for the coins of every skipped wave.
            let skipped = (self.last_decided_wave.0 + 1)..w.0;
            if skipped.clone().any(|s| self.coin.coin(Wave(s)).is_none()) {
                return;
            }
            self.decide(w, leader, step);
        }
    }

    pub(super) fn decide(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let f = self.config.f;
        let mut stack = vec![(w, leader.clone())];
        let mut v = leader;
        let mut s = w.0;
        while s > self.last_decided_wave.0 + 1 {
            s -= 1;
            let ws = Wave(s);
            let Some(coin) = self.coin.coin(ws).copied() else {
                continue;
            };
            let leader_id = coin.value.leader(self.config.n);
            let history = self.dag.causal_history(&v.hash(), leader_round(ws));
            let Some(candidate) = history
                .iter()
                .filter_map(|h| self.dag.get(h))
                .find(|x| x.round == leader_round(ws) && x.author == leader_id)
                .cloned()
            else {
                continue;
            };
            let reach = self
                .dag
                .strong_reachers(&candidate.reference(), last_round(ws).max(v.round));
            let strong_path = reach.contains(&v.hash());
            let witnesses = self
                .dag
                .round(last_round(ws))
                .filter(|(h, _)| history.contains(h) && reach.contains(h))
                .count();
            if strong_path && witnesses > f {
                stack.push((ws, candidate.clone()));
                v = candidate;
            }
        }
        self.last_decided_wave = w;
        self.counters.waves_decided += 1;
        while let Some((ws, l)) = stack.pop() {
            self.order_leader(ws, l, step);
        }
        self.coin.prune_below(Wave(w.0 + 1));
        self.shares_released = self.shares_released.split_off(&Wave(w.0 + 1));
        let checkpoint = self.checkpoint();
        if !self.restoring {
            step.writes.push(Durable::Checkpoint(checkpoint));
        }
    }

    pub(super) fn order_leader(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let horizon = Round(
            self.last_leader_round
                .0
                .saturating_sub(self.config.gc_depth),
        );
        let leader_ref = leader.reference();
        let ordered = &self.ordered;
        let history = self
            .dag
            .causal_history_until(&leader_ref.hash, horizon, |r| ordered.contains(r));
        let mut batch: Vec<(VertexRef, Arc<Vertex>)> = history
            .iter()
            .filter_map(|h| {
                self.dag.get(h).map(|v| {
                    let r = VertexRef {
                        round: v.round,
                        author: v.author,
                        hash: *h,
                    };
                    (r, v.clone())
                })
            })
            .filter(|(r, _)| r.round >= horizon && !self.ordered.contains(r))
            .collect();
        batch.sort_by_key(|(r, _)| (r.round, r.author));
        if !batch.is_empty() {
            let ordered = Arc::make_mut(&mut self.ordered);
            for (r, _) in &batch {
                ordered.insert(*r);
                self.unordered_reports.remove(r);
            }
        }
        let batch: Vec<Arc<Vertex>> = batch.into_iter().map(|(_, v)| v).collect();
        let leader_parent_clocks = leader
            .parents
            .iter()
            .filter_map(|p| self.dag.get(&p.hash).map(|v| v.clock))
            .collect();
        let coin = self.coin.coin(w).copied();
        self.last_leader_round = leader.round;
        self.counters.batches += 1;
        self.counters.vertices_ordered += batch.len() as u64;
        let new_horizon = Round(leader.round.0.saturating_sub(self.config.gc_depth));
        if !self.restoring {
            self.requeue_orphaned_reports(new_horizon);
        }
        self.collect_garbage(new_horizon, step);
        // The batch's own wave, not `last_decided_wave`: a replica that orders
        // this leader through a later wave's stack must commit to the same
        // state as one that committed it directly.
        let order = Checkpoint {
            last_decided_wave: w,
            last_leader_round: self.last_leader_round,
            ordered: self.ordered.clone(),
        };
        if let Some(coin) = coin {
            step.batches.push(CommittedBatch {
                wave: w,
                leader: leader_ref,
                coin,
                leader_parent_clocks,
                horizon,
                vertices: batch,
                order_state: order.commitment_cached(&mut self.order_digests),
                order,
            });
        }
    }

    /// Own vertices about to fall below the GC horizon that no committed
    /// leader reached will never be ordered — by any replica: every replica
    /// orders the same leaders down to the same horizon — so their reports
    /// would be lost, digests a client was told were taken. (A replica whose
    /// vertices are slow to spread, as a flooded one's full vertices are,
    /// can see many of them left out of every leader's history.) Their
    /// reports go back to the front of the queue for the coming vertices, in
    /// their order; the sequencer never counted them, so nothing is reported
    /// twice.
    fn requeue_orphaned_reports(&mut self, horizon: Round) {
        let me = self.config.me;
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
            if self.ordered.range(lo..=hi).next().is_none() {
                back.extend(v.reports.iter().copied());
            }
        }
        if back.is_empty() {
            return;
        }
        self.counters.reports_requeued += back.len() as u64;
        for r in back.into_iter().rev() {
            self.pending.push_front(r);
        }
    }

    pub(super) fn collect_garbage(&mut self, horizon: Round, step: &mut Step) {
        if horizon <= self.dag.horizon() {
            return;
        }
        self.dag.prune_below(horizon);
        let floor = VertexRef {
            round: horizon,
            author: ReplicaId(0),
            hash: VertexHash([0; 32]),
        };
        if self.ordered.first().is_some_and(|r| *r < floor) {
            let ordered = Arc::make_mut(&mut self.ordered);
            *ordered = ordered.split_off(&floor);
        }
        self.slots = self.slots.split_off(&(horizon, ReplicaId(0)));
        self.bodies.retain(|_, v| v.round >= horizon);
        self.own_vertices = self.own_vertices.split_off(&horizon);
        self.own_shares = self.own_shares.split_off(&horizon.wave());
        self.unreached = self
            .unreached
            .split_off(&(horizon, ReplicaId(0), VertexHash([0; 32])));
        // Below the horizon nothing is ordered any more.
        self.unordered_reports = self.unordered_reports.split_off(&floor);
        // Buffered vertices: drop those below the horizon, retry the rest
        // (references below the horizon now count as present).
        let buffered = std::mem::take(&mut self.buffered);
        self.waiting_on.clear();
        for (hash, v) in buffered {
            if v.round >= horizon {
                self.enter_or_buffer(hash, v, step);
            }
        }
    }

    /// The vertices of the causal histories of `leaders` at or above
    /// `floor`, in `(round, author)` order — what a peer catching up within
    /// `gc_depth` asks for. `None` if a leader is not in the DAG (any more).
    pub fn leader_histories(
        &self,
        leaders: &[VertexHash],
        floor: Round,
    ) -> Option<Vec<Arc<Vertex>>> {
        let floor = floor.max(self.dag.horizon());
        let mut all = BTreeSet::new();
        for l in leaders {
            self.dag.get(l)?;
            all.extend(self.dag.causal_history(l, floor));
        }
        let mut out: Vec<Arc<Vertex>> = all
            .iter()
            .filter_map(|h| self.dag.get(h).cloned())
            .collect();
        out.sort_by_key(|v| (v.round, v.author));
        Some(out)
    }

    pub(super) fn install_leaders(
        &mut self,
        from: ReplicaId,
        leaders: &[(Wave, belfry_coin::GroupSignature, VertexHash)],
        vertices: Vec<Vertex>,
        step: &mut Step,
    ) {
        let horizon = self.dag.horizon();
        let mut pool: BTreeMap<VertexHash, Arc<Vertex>> = BTreeMap::new();
        for v in vertices {
            if v.round < horizon {
                continue;
            }
            if let Err(why) = check_vertex(&self.config, &v) {
                step.fault(
                    from,
                    FaultKind::InvalidVertex {
                        hash: v.hash(),
                        why,
                    },
                );
                return;
            }
            pool.insert(v.hash(), Arc::new(v));
        }
        // Only what the committed leaders reach is taken.
        let mut accepted: BTreeMap<(Round, ReplicaId), (VertexHash, Arc<Vertex>)> = BTreeMap::new();
        let mut work: Vec<VertexHash> = leaders.iter().map(|(_, _, h)| *h).collect();
        let mut seen = BTreeSet::new();
        while let Some(h) = work.pop() {
            if !seen.insert(h) || self.dag.get(&h).is_some() {
                continue;
            }
            let Some(v) = pool.get(&h) else { continue };
            for r in v.references() {
                if r.round >= horizon {
                    work.push(r.hash);
                }
            }
            accepted.insert((v.round, v.author), (h, v.clone()));
        }
        for ((round, author), (hash, v)) in accepted {
            let slot = self.slots.entry((round, author)).or_default();
            match slot.delivered {
                Some(d) if d != hash => {
                    // Reliable broadcast delivered another vertex in this
                    // slot: a committed history cannot contain this one.
                    step.fault(
                        from,
                        FaultKind::InvalidVertex {
                            hash,
                            why: VertexError::ContradictsDelivered,
                        },
                    );
                    return;
                }
                _ => slot.delivered = Some(hash),
            }
            self.bodies.insert(hash, v.clone());
            self.enter_or_buffer(hash, v, step);
        }
        let mut ordered_any = false;
        for (w, signature, hash) in leaders {
            if *w <= self.last_decided_wave {
                continue;
            }
            let Some(coin) =
                Coin::from_signature(self.crypto.as_ref(), self.config.cluster_id, *w, *signature)
            else {
                step.fault(from, FaultKind::BadCatchUpCoin { wave: *w });
                break;
            };
            let Some(leader) = self.dag.get(hash).cloned() else {
                break;
            };
            if leader.round != leader_round(*w) || leader.author != coin.value.leader(self.config.n)
            {
                step.fault(
                    from,
                    FaultKind::WrongCatchUpLeader {
                        wave: *w,
                        hash: *hash,
                    },
                );
                break;
            }
            self.coin.insert(coin);
            self.order_leader(*w, leader, step);
            self.last_decided_wave = *w;
            self.counters.waves_decided += 1;
            self.coin.prune_below(Wave(w.0 + 1));
            self.shares_released = self.shares_released.split_off(&Wave(w.0 + 1));
            ordered_any = true;
        }
        if ordered_any {
            self.dirty = true;
            if !self.restoring {
                step.writes.push(Durable::Checkpoint(self.checkpoint()));
            }
        }
    }

    pub(super) fn install_checkpoint(&mut self, cp: Checkpoint, step: &mut Step) {
        if cp.last_decided_wave <= self.last_decided_wave {
            return;
        }
        let horizon = cp.horizon(self.config.gc_depth);
        self.last_decided_wave = cp.last_decided_wave;
        self.last_leader_round = cp.last_leader_round;
        self.ordered = cp.ordered;
        let ordered = &self.ordered;
        self.unordered_reports.retain(|r| !ordered.contains(r));
        self.order_digests.clear();
        self.coin.prune_below(Wave(cp.last_decided_wave.0 + 1));
        self.shares_released = self
            .shares_released
            .split_off(&Wave(cp.last_decided_wave.0 + 1));
        self.collect_garbage(horizon, step);
        self.dirty = true;
        if !self.restoring {
            step.writes.push(Durable::Checkpoint(self.checkpoint()));
            // Everything above the new horizon is needed to order what comes
            // next: ask every peer for it now rather than on its next resend.
            step.send(
                Target::All,
                Message::FetchVotes {
                    from: horizon,
                    to: Round(u64::MAX),
                },
            );
        }
    }
}
