//! Installing what catch-up verified (docs/design.md §3.8): a newer ordering
//! checkpoint, or committed leaders with the vertices of their histories.

use super::*;

/// Vertices of a catch-up answer that the committed leaders reach, by slot.
type Reached = BTreeMap<(Round, ReplicaId), (VertexHash, Arc<Vertex>)>;

impl Node {
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

    /// `Input::InstallLeaders`: takes the vertices the leaders reach, then
    /// orders each leader whose coin verifies, as a commit would.
    pub(super) fn install_leaders(
        &mut self,
        from: ReplicaId,
        leaders: &[(Wave, belfry_coin::GroupSignature, VertexHash)],
        vertices: Vec<Vertex>,
        step: &mut Step,
    ) {
        let Some(pool) = self.catch_up_pool(from, vertices, step) else {
            return;
        };
        let reached = self.reached_from(leaders, &pool);
        if !self.deliver_reached(from, reached, step) {
            return;
        }
        let ordered_any = self.order_caught_up(from, leaders, step);
        if ordered_any && !self.restoring {
            step.write(Durable::Checkpoint(self.checkpoint()));
        }
    }

    /// The answer's vertices at or above the horizon, by hash; `None` if
    /// one is invalid (recorded against `from`).
    fn catch_up_pool(
        &self,
        from: ReplicaId,
        vertices: Vec<Vertex>,
        step: &mut Step,
    ) -> Option<BTreeMap<VertexHash, Arc<Vertex>>> {
        let horizon = self.dag.horizon();
        let mut pool = BTreeMap::new();
        for v in vertices {
            if v.round < horizon {
                continue;
            }
            if !self.valid(from, &v, step) {
                return None;
            }
            pool.insert(v.hash(), Arc::new(v));
        }
        Some(pool)
    }

    /// Only what the committed leaders reach through references is taken
    /// (so a peer can add nothing of its own), and nothing the DAG holds.
    fn reached_from(
        &self,
        leaders: &[(Wave, belfry_coin::GroupSignature, VertexHash)],
        pool: &BTreeMap<VertexHash, Arc<Vertex>>,
    ) -> Reached {
        let horizon = self.dag.horizon();
        let mut accepted = Reached::new();
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
        accepted
    }

    /// Delivers the reached vertices in their slots and hands them to the
    /// DAG: `false` if one contradicts what a slot delivered (recorded
    /// against `from`).
    fn deliver_reached(&mut self, from: ReplicaId, reached: Reached, step: &mut Step) -> bool {
        for ((round, author), (hash, v)) in reached {
            if !self.rbc.adopt(round, author, hash, &v) {
                // Reliable broadcast delivered another vertex in this
                // slot: a committed history cannot contain this one.
                step.blame(
                    from,
                    FaultKind::InvalidVertex {
                        hash,
                        why: VertexError::ContradictsDelivered,
                    },
                );
                return false;
            }
            self.enter_or_buffer(hash, v, step);
        }
        true
    }

    /// Orders the undecided leaders in log order, each once its coin
    /// verifies and the DAG holds it as that wave's leader; stops at the
    /// first that does not. Whether any was ordered.
    fn order_caught_up(
        &mut self,
        from: ReplicaId,
        leaders: &[(Wave, belfry_coin::GroupSignature, VertexHash)],
        step: &mut Step,
    ) -> bool {
        let mut ordered_any = false;
        for (w, signature, hash) in leaders {
            if *w <= self.commit.last_decided_wave() {
                continue;
            }
            let Some(coin) =
                Coin::from_signature(self.crypto.as_ref(), self.config.cluster_id, *w, *signature)
            else {
                step.blame(
                    from,
                    FaultKind::BadCatchUpCoin {
                        wave: *w,
                        signature: *signature,
                        leader: *hash,
                    },
                );
                break;
            };
            let Some(leader) = self.dag.get(hash).cloned() else {
                break;
            };
            if leader.round != leader_round(*w) || leader.author != coin.value.leader(self.config.n)
            {
                step.blame(
                    from,
                    FaultKind::WrongCatchUpLeader {
                        wave: *w,
                        hash: *hash,
                    },
                );
                break;
            }
            self.commit.insert_coin(coin);
            self.order_leader(*w, leader, step);
            self.commit.decided(*w);
            self.counters.waves_decided += 1;
            ordered_any = true;
        }
        ordered_any
    }

    pub(super) fn install_checkpoint(&mut self, cp: Checkpoint, step: &mut Step) {
        if cp.last_decided_wave <= self.commit.last_decided_wave() {
            return;
        }
        let horizon = cp.horizon(self.config.gc_depth);
        self.commit.install(cp);
        self.own.forget_ordered(self.commit.ordered());
        self.collect_garbage(horizon, step);
        if !self.restoring {
            step.write(Durable::Checkpoint(self.checkpoint()));
            // Everything above the new horizon is needed to order what comes
            // next: ask every peer for it now rather than on its next resend.
            step.send_to(
                Target::All,
                Message::FetchVotes {
                    from: horizon,
                    to: Round(u64::MAX),
                },
            );
        }
    }
}
