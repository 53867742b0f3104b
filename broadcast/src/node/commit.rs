//! The coin and the commit rule (docs/design.md §3.4): [`Commit`], ordering
//! leaders' causal histories into batches, and garbage collection.

use super::*;
use belfry_coin::SignatureShare;

/// The coin and the ordering state: which waves' shares this replica
/// released, the coins revealed, the last decided wave, the last leader
/// ordered and the references ordered above the GC horizon.
///
/// Invariants: `last_decided_wave` and `last_leader_round` only grow; a
/// share is released at most once per wave (`shares_released`), and none is
/// kept for a decided wave; coins and `ordered` are pruned as waves are
/// decided and the horizon rises; `order_digests` caches per-round digests
/// of `ordered` and is cleared whenever `ordered` is replaced wholesale.
#[derive(Debug)]
pub(super) struct Commit {
    coin: CommonCoin,
    shares_released: BTreeSet<Wave>,
    /// Own coin shares of waves above the horizon, kept for re-sending: a
    /// replica that was down needs them even for waves the rest already
    /// decided. Re-sending leaks nothing — each was released once already.
    own_shares: BTreeMap<Wave, SignatureShare>,
    last_decided_wave: Wave,
    last_leader_round: Round,
    /// Shared with the checkpoints handed out, copied on the next write.
    ordered: Arc<BTreeSet<VertexRef>>,
    /// Per-round digests of `ordered`, so a batch's commitment rehashes
    /// only the rounds it touched.
    order_digests: RoundDigests,
}

impl Commit {
    /// Nothing decided, no coin.
    pub(super) fn new(config: &Config) -> Self {
        Commit {
            coin: CommonCoin::new(config.cluster_id, config.n, config.f),
            shares_released: BTreeSet::new(),
            own_shares: BTreeMap::new(),
            last_decided_wave: Wave(0),
            last_leader_round: Round(0),
            ordered: Arc::default(),
            order_digests: RoundDigests::new(),
        }
    }

    /// The last decided wave.
    pub(super) fn last_decided_wave(&self) -> Wave {
        self.last_decided_wave
    }

    /// The round of the last leader ordered.
    pub(super) fn last_leader_round(&self) -> Round {
        self.last_leader_round
    }

    /// The revealed coin of a wave, if still held.
    pub(super) fn coin(&self, wave: Wave) -> Option<&Coin> {
        self.coin.coin(wave)
    }

    /// The wave of the last coin held (0 if none).
    pub(super) fn last_coin_wave(&self) -> Wave {
        self.coin.coins().last().map_or(Wave(0), |c| c.wave)
    }

    /// Waves whose shares were released and not yet decided below.
    pub(super) fn shares_released(&self) -> usize {
        self.shares_released.len()
    }

    /// The references ordered above the horizon.
    pub(super) fn ordered(&self) -> &BTreeSet<VertexRef> {
        &self.ordered
    }

    /// The ordering state now.
    pub(super) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            last_decided_wave: self.last_decided_wave,
            last_leader_round: self.last_leader_round,
            ordered: self.ordered.clone(),
        }
    }

    /// The first wave whose coin this replica waits for: it released its
    /// share, the coin is not out.
    pub(super) fn coin_wanted(&self) -> Option<Wave> {
        self.shares_released
            .iter()
            .find(|w| **w > self.last_decided_wave && self.coin.coin(**w).is_none())
            .copied()
    }

    /// Own shares of waves `lo ..= hi` still kept.
    pub(super) fn own_shares_in(
        &self,
        lo: Wave,
        hi: Wave,
    ) -> impl Iterator<Item = (&Wave, &SignatureShare)> {
        self.own_shares.range(lo..=hi)
    }

    /// Coins of waves not decided yet.
    pub(super) fn undecided_coins(&self) -> impl Iterator<Item = &Coin> {
        self.coin
            .coins()
            .filter(|c| c.wave > self.last_decided_wave)
    }

    /// Releases this replica's share of every undecided wave whose last
    /// round holds `q` DAG vertices, once per wave; returns the shares to
    /// send. (A verifier-only node, without a secret, releases none.)
    fn release_shares(
        &mut self,
        crypto: &dyn ThresholdCrypto,
        dag: &Dag,
        q: usize,
    ) -> Vec<(Wave, SignatureShare)> {
        let mut out = Vec::new();
        let top = dag.highest_round();
        let mut w = Wave(self.last_decided_wave.0 + 1);
        while last_round(w) <= top {
            if !self.shares_released.contains(&w) && dag.count(last_round(w)) >= q {
                self.shares_released.insert(w);
                if let Ok(share) = self.coin.own_share(crypto, w) {
                    self.own_shares.insert(w, share);
                    out.push((w, share));
                }
            }
            w = Wave(w.0 + 1);
        }
        out
    }

    /// Takes `from`'s share of `wave`: the coin if it completed one. Bad
    /// shares are recorded as faults.
    fn take_share(
        &mut self,
        crypto: &dyn ThresholdCrypto,
        from: ReplicaId,
        wave: Wave,
        share: SignatureShare,
        step: &mut Step,
    ) -> Option<Coin> {
        let coin = self.coin.handle_share(crypto, from, wave, share);
        let coins = step.extend_with(coin, belfry_coin::step::never, |f| Fault {
            replica: f.replica,
            kind: match f.kind {
                ShareFaultKind::UnknownReplica => FaultKind::UnknownSender {
                    message: Message::CoinShare {
                        wave,
                        share: f.share,
                    }
                    .hash(),
                },
                _ => FaultKind::BadCoinShare {
                    wave,
                    share: f.share,
                },
            },
        });
        coins.into_iter().next()
    }

    /// Adopts a coin catch-up verified.
    pub(super) fn insert_coin(&mut self, coin: Coin) {
        self.coin.insert(coin);
    }

    /// Restores a coin from its record, unless its wave is decided.
    pub(super) fn restore_coin(&mut self, coin: Coin) {
        if coin.wave > self.last_decided_wave {
            self.coin.insert(coin);
        }
    }

    /// The leader vertex of wave `w` in `dag`, with the coin that elected
    /// it, if both are there.
    fn leader_vertex(&self, w: Wave, dag: &Dag, n: usize) -> Option<(Coin, Arc<Vertex>)> {
        let coin = *self.coin.coin(w)?;
        let leader = coin.value.leader(n);
        let v = dag.slot(leader_round(w), leader)?.clone();
        Some((coin, v))
    }

    /// Whether the coins of the waves strictly between the last decided one
    /// and `w` are all known.
    fn skipped_coins_known(&self, w: Wave) -> bool {
        ((self.last_decided_wave.0 + 1)..w.0).all(|s| self.coin.coin(Wave(s)).is_some())
    }

    /// Wave `w` is decided: coins and released shares up to it go.
    pub(super) fn decided(&mut self, w: Wave) {
        self.last_decided_wave = w;
        self.coin.prune_below(Wave(w.0 + 1));
        self.shares_released = self.shares_released.split_off(&Wave(w.0 + 1));
    }

    /// A leader of round `round` was ordered, with the vertices of `batch`.
    fn ordered_leader(&mut self, round: Round, batch: &[(VertexRef, Arc<Vertex>)]) {
        if !batch.is_empty() {
            let ordered = Arc::make_mut(&mut self.ordered);
            for (r, _) in batch {
                ordered.insert(*r);
            }
        }
        self.last_leader_round = round;
    }

    /// The ordering state after a batch of wave `w` and its commitment.
    fn batch_order(&mut self, w: Wave) -> (Checkpoint, [u8; 32]) {
        let order = Checkpoint {
            last_decided_wave: w,
            last_leader_round: self.last_leader_round,
            ordered: self.ordered.clone(),
        };
        let commitment = order.commitment_cached(&mut self.order_digests);
        (order, commitment)
    }

    /// Drops what lies below `horizon` (`floor` is its least reference).
    fn prune_below(&mut self, horizon: Round, floor: &VertexRef) {
        if self.ordered.first().is_some_and(|r| r < floor) {
            let ordered = Arc::make_mut(&mut self.ordered);
            *ordered = ordered.split_off(floor);
        }
        self.own_shares = self.own_shares.split_off(&horizon.wave());
    }

    /// Adopts a newer ordering state.
    pub(super) fn install(&mut self, cp: Checkpoint) {
        self.last_decided_wave = cp.last_decided_wave;
        self.last_leader_round = cp.last_leader_round;
        self.ordered = cp.ordered;
        self.order_digests.clear();
        self.coin.prune_below(Wave(cp.last_decided_wave.0 + 1));
        self.shares_released = self
            .shares_released
            .split_off(&Wave(cp.last_decided_wave.0 + 1));
    }
}

impl Node {
    pub(super) fn release_coin_shares(&mut self, step: &mut Step) {
        if !self.rejoin.participating {
            return;
        }
        let q = self.config.quorum();
        for (wave, share) in self
            .commit
            .release_shares(self.crypto.as_ref(), &self.dag, q)
        {
            self.broadcast(Message::CoinShare { wave, share }, step);
        }
    }

    pub(super) fn on_coin_share(
        &mut self,
        from: ReplicaId,
        wave: Wave,
        share: SignatureShare,
        step: &mut Step,
    ) {
        if wave <= self.commit.last_decided_wave() || wave.0 == 0 {
            return;
        }
        let top_wave = self.window_top().wave();
        if wave.0 > top_wave.0.saturating_add(self.config.round_window / 4) {
            self.counters.out_of_window += 1;
            return;
        }
        let crypto = self.crypto.as_ref();
        if let Some(c) = self.commit.take_share(crypto, from, wave, share, step) {
            step.write(Durable::Coin(c));
        }
    }

    /// The commit rule of docs/design.md §3.4.
    pub(super) fn try_commit(&mut self, step: &mut Step) {
        loop {
            let Some((w, leader)) = self.directly_committed() else {
                return;
            };
            // Wait for the coins of every skipped wave.
            if !self.commit.skipped_coins_known(w) {
                return;
            }
            self.decide(w, leader, step);
        }
    }

    /// The first undecided wave whose leader `Q` vertices of the wave's last
    /// round reach by strong paths.
    fn directly_committed(&self) -> Option<(Wave, Arc<Vertex>)> {
        let q = self.config.quorum();
        let top_wave = self.dag.highest_round().wave();
        let mut w = Wave(self.commit.last_decided_wave().0 + 1);
        while w <= top_wave {
            if let Some((_, leader)) = self.commit.leader_vertex(w, &self.dag, self.config.n) {
                let reach = self.dag.strong_reachers(&leader.reference(), last_round(w));
                let supporters = self
                    .dag
                    .round(last_round(w))
                    .filter(|(h, _)| reach.contains(h))
                    .count();
                if supporters >= q {
                    return Some((w, leader));
                }
            }
            w = Wave(w.0 + 1);
        }
        None
    }

    pub(super) fn decide(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let f = self.config.f;
        let mut stack = vec![(w, leader.clone())];
        let mut v = leader;
        let mut s = w.0;
        while s > self.commit.last_decided_wave().0 + 1 {
            s -= 1;
            let ws = Wave(s);
            let Some(coin) = self.commit.coin(ws).copied() else {
                // `try_commit` decides only once `skipped_coins_known`.
                debug_assert!(false, "the coin of every wave a decision skips is known");
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
        self.counters.waves_decided += 1;
        while let Some((ws, l)) = stack.pop() {
            self.order_leader(ws, l, step);
        }
        self.commit.decided(w);
        let checkpoint = self.checkpoint();
        if !self.restoring {
            step.write(Durable::Checkpoint(checkpoint));
        }
    }

    /// The vertices of `leader`'s causal history not yet ordered, at or
    /// above `horizon`, in `(round, author)` order.
    fn unordered_history(
        &self,
        leader: &VertexRef,
        horizon: Round,
    ) -> Vec<(VertexRef, Arc<Vertex>)> {
        let ordered = self.commit.ordered();
        let history = self
            .dag
            .causal_history_until(&leader.hash, horizon, |r| ordered.contains(r));
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
            .filter(|(r, _)| r.round >= horizon && !ordered.contains(r))
            .collect();
        batch.sort_by_key(|(r, _)| (r.round, r.author));
        batch
    }

    pub(super) fn order_leader(&mut self, w: Wave, leader: Arc<Vertex>, step: &mut Step) {
        let horizon = Round(
            self.commit
                .last_leader_round()
                .0
                .saturating_sub(self.config.gc_depth),
        );
        let leader_ref = leader.reference();
        let batch = self.unordered_history(&leader_ref, horizon);
        self.commit.ordered_leader(leader.round, &batch);
        for (r, _) in &batch {
            self.own.note_ordered(r);
        }
        let batch: Vec<Arc<Vertex>> = batch.into_iter().map(|(_, v)| v).collect();
        let leader_parent_clocks = leader
            .parents
            .iter()
            .filter_map(|p| self.dag.get(&p.hash).map(|v| v.clock))
            .collect();
        let coin = self.commit.coin(w).copied();
        self.counters.batches += 1;
        self.counters.vertices_ordered += batch.len() as u64;
        let new_horizon = Round(leader.round.0.saturating_sub(self.config.gc_depth));
        if !self.restoring {
            let requeued = self.own.requeue_orphaned_reports(
                new_horizon,
                self.config.me,
                self.commit.ordered(),
            );
            self.counters.reports_requeued += requeued as u64;
        }
        self.collect_garbage(new_horizon, step);
        // The batch's own wave, not `last_decided_wave`: a replica that orders
        // this leader through a later wave's stack must commit to the same
        // state as one that committed it directly.
        if let Some(coin) = coin {
            let (order, order_state) = self.commit.batch_order(w);
            step.batch(CommittedBatch {
                wave: w,
                leader: leader_ref,
                coin,
                leader_parent_clocks,
                horizon,
                vertices: batch,
                order_state,
                order,
            });
        } else {
            // `decide` orders leaders whose coins it read, catch-up inserts
            // the coin it verified first; nothing prunes coins in between.
            debug_assert!(false, "a leader is ordered only with its wave's coin known");
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
        self.commit.prune_below(horizon, &floor);
        self.rbc.prune_below(horizon);
        self.own.prune_below(horizon, &floor);
        // Buffered vertices: drop those below the horizon, retry the rest
        // (references below the horizon now count as present).
        for (hash, v) in self.buffer.take_all() {
            if v.round >= horizon {
                self.enter_or_buffer(hash, v, step);
            }
        }
    }
}
