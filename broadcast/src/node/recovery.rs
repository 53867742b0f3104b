//! Recovering lost messages: the stall detector that asks for a round's
//! votes when the DAG stands still, the resend timer, and re-sending what
//! this replica recorded — each answer within the asking peer's byte budget.

use super::*;

impl Node {
    /// How long the DAG may stand still before the missing votes are asked
    /// for: a few round times, doubled on each fruitless ask up to the
    /// resend interval.
    pub(super) fn stall_after(&self) -> Micros {
        // The quickest recent round is what a round without losses takes
        // (rounds slowed by lost votes must not stretch the wait).
        // A round takes the round interval plus a slot's delivery; the
        // quickest recent slot is what one without losses takes (when every
        // round loses a vote somewhere — many replicas, none to spare — the
        // rounds are all slow, but some slots are not).
        let pace = self.pace();
        let by_slots = self.slot_times.iter().min().map(|t| t.saturating_add(pace));
        let by_rounds = self.round_times.iter().min().copied();
        // A round takes at least the current pace: an idle cluster's slow
        // rounds are not a stall.
        let round_time = match (by_slots, by_rounds) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(ROUND_TIME_INITIAL),
        }
        .max(pace);
        let base = Micros(round_time.0.saturating_mul(STALL_ROUNDS))
            .max(STALL_MIN)
            .min(self.config.resend_interval);
        // Backing off stops at STALL_BACKOFF_MAX: asking costs the asker
        // one small request per peer, and each answer comes out of the
        // peer's re-send budget.
        base.max(self.stall_backoff.min(STALL_BACKOFF_MAX))
    }

    /// The first wave whose coin this replica waits for: it released its
    /// share, the coin is not out.
    pub(super) fn coin_wanted(&self) -> Option<Wave> {
        self.shares_released
            .iter()
            .find(|w| **w > self.last_decided_wave && self.coin.coin(**w).is_none())
            .copied()
    }

    /// Notes progress — the DAG reached a new round, a wave was decided, a
    /// coin came out — and keeps the stall timer armed. (Vertices trickling
    /// into the top round are not progress: one lost vote still holds the
    /// round back.)
    pub(super) fn watch_growth(&mut self, step: &mut Step) {
        let top = self.dag.highest_round();
        let coins = self.coin.coins().last().map_or(Wave(0), |c| c.wave);
        let grown = (top, self.last_decided_wave, coins);
        if grown != self.grown_to {
            self.grown_to = grown;
            self.last_growth = self.now;
            self.stall_backoff = Micros::ZERO;
        }
        let held = self.dag.len();
        if held != self.held_at_fetch {
            // Some vertex came in since the last ask: the asking works, so
            // keep asking at the round's pace (the back-off is for peers
            // that do not answer at all).
            self.held_at_fetch = held;
            self.stall_backoff = Micros::ZERO;
        }
        if !self.stall_armed {
            self.stall_armed = true;
            let at = self
                .last_growth
                .max(self.now)
                .saturating_add(self.stall_after());
            step.timers.push((at, TimerKind::Stall));
        }
    }

    /// Nothing moved for a few round times: a VAL, ECHO, READY or coin share
    /// was probably lost. Ask every peer for its vertex, votes and coin
    /// shares of the rounds in question — the top round, the rounds
    /// buffered vertices miss, the wave whose coin is awaited — rather than
    /// wait for the next resend.
    pub(super) fn on_stall_timer(&mut self, step: &mut Step) {
        if self.now.saturating_sub(self.last_growth) < self.stall_after() {
            return; // it moved meanwhile; `watch_growth` re-arms
        }
        let top = self.dag.highest_round();
        let missing = self
            .buffered
            .values()
            .flat_map(|v| v.references())
            .filter(|r| !self.dag.satisfies(r))
            .map(|r| r.round)
            .min();
        let coin = self.coin_wanted().map(last_round);
        // Narrow asks, each answered cheaply: the top round (and the one
        // being built), the lowest round buffered vertices miss, the round
        // whose coin shares are awaited (shares of its wave come with it).
        let top_ask = (top, Round(top.0.saturating_add(1)));
        let mut asks = vec![top_ask];
        for r in [missing, coin].into_iter().flatten() {
            let r = r.max(self.dag.horizon());
            if r < top_ask.0 && !asks.contains(&(r, r)) {
                asks.push((r, r));
            }
        }
        for (from, to) in asks {
            step.send(Target::All, Message::FetchVotes { from, to });
        }
        self.counters.stall_fetches += 1;
        self.stall_backoff = Micros(self.stall_after().0.saturating_mul(2));
        self.last_growth = self.now;
    }

    pub(super) fn on_resend_timer(&mut self, step: &mut Step) {
        // Vertices waiting for references that never came: ask everyone for
        // their votes on the missing rounds (links may have dropped them).
        let missing = self
            .buffered
            .values()
            .flat_map(|v| v.references())
            .filter(|r| !self.dag.satisfies(r))
            .map(|r| r.round);
        let (lo, hi) = missing.fold((Round(u64::MAX), Round(0)), |(lo, hi), r| {
            (lo.min(r), hi.max(r))
        });
        if lo <= hi {
            step.send(Target::All, Message::FetchVotes { from: lo, to: hi });
        }
        // Slots with a READY quorum whose body never arrived (the request or
        // the answer was lost): ask again.
        let stalled: Vec<(Round, ReplicaId)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.delivered.is_none() && s.fetch_sent)
            .map(|(k, _)| *k)
            .collect();
        for (round, author) in stalled {
            if let Some(slot) = self.slots.get_mut(&(round, author)) {
                slot.fetch_sent = false;
            }
            self.try_deliver(round, author, step);
        }
        // Re-send to every peer that has not advanced since the last tick
        // (docs/design.md §3.3): it lags us, or the whole cluster is stuck on a
        // message some link dropped — then nobody lags, and only this gets
        // the lost votes through again.
        for p in 0..self.config.n {
            let peer = ReplicaId(p as u16);
            if peer == self.config.me {
                continue;
            }
            let claimed = self.peer_rounds[p];
            let stuck = claimed <= self.rounds_at_last_resend[p];
            if stuck || claimed.0.saturating_add(1) < self.round.0 {
                let from = Round(claimed.0.saturating_sub(1)).max(self.dag.horizon());
                self.resend_to(peer, from, Round(u64::MAX), ResendCause::Timer, step);
            }
        }
        self.rounds_at_last_resend = self.peer_rounds.clone();
    }

    /// Re-sends own vertices, recorded votes and coin shares for rounds
    /// `lo ..= hi` above the horizon to `peer`, within its byte budget:
    /// nothing is cloned once the budget is spent, and nothing at all when
    /// it is empty.
    pub(super) fn resend_to(
        &mut self,
        peer: ReplicaId,
        lo: Round,
        hi: Round,
        cause: ResendCause,
        step: &mut Step,
    ) {
        let now = self.now;
        let Some(budget) = self.resend_budget.get_mut(peer.index()) else {
            return;
        };
        let served = &mut self.counters.resends[cause.index()];
        served.requests += 1;
        if !budget.available(now) {
            served.refused += 1;
            return;
        }
        let lo = lo.max(self.dag.horizon());
        if lo > hi {
            return;
        }
        let mut sent = 0usize;
        let mut room = true;
        for v in self.own_vertices.range(lo..=hi).map(|(_, v)| v) {
            if !room {
                break;
            }
            let len = v.canonical_len();
            room = budget.charge(len);
            sent += len;
            step.send(Target::One(peer), Message::Val((**v).clone()));
        }
        for ((round, author), slot) in self.slots.range((lo, ReplicaId(0))..) {
            if *round > hi || !room {
                break;
            }
            // Visiting a slot is work too, voted in or not.
            room = budget.charge(SLOT_VISIT_BYTES);
            for (kind, vote) in [
                (VoteKind::Echo, slot.my_echo),
                (VoteKind::Ready, slot.my_ready),
            ] {
                let Some(hash) = vote else { continue };
                room = budget.charge(VOTE_BYTES);
                sent += VOTE_BYTES;
                let (round, author) = (*round, *author);
                step.send(
                    Target::One(peer),
                    match kind {
                        VoteKind::Echo => Message::Echo {
                            round,
                            author,
                            hash,
                        },
                        VoteKind::Ready => Message::Ready {
                            round,
                            author,
                            hash,
                        },
                    },
                );
            }
        }
        for (w, share) in self.own_shares.range(lo.wave()..=hi.wave()) {
            if !room {
                break;
            }
            room = budget.charge(COIN_SHARE_BYTES);
            sent += COIN_SHARE_BYTES;
            step.send(
                Target::One(peer),
                Message::CoinShare {
                    wave: *w,
                    share: *share,
                },
            );
        }
        self.counters.resends[cause.index()].bytes += sent as u64;
        if let Some(b) = self.counters.resent_bytes_per_peer.get_mut(peer.index()) {
            *b += sent as u64;
        }
    }

    /// Answers `FetchVertex` within the peer's re-send budget (the body is
    /// cloned only when the budget allows it).
    pub(super) fn serve_vertex(&mut self, peer: ReplicaId, hash: &VertexHash, step: &mut Step) {
        let now = self.now;
        let Some(budget) = self.resend_budget.get_mut(peer.index()) else {
            return;
        };
        let served = &mut self.counters.resends[ResendCause::FetchVertex.index()];
        served.requests += 1;
        if !budget.available(now) {
            served.refused += 1;
            return;
        }
        let Some(v) = self.bodies.get(hash).or_else(|| self.dag.get(hash)) else {
            return;
        };
        let len = v.canonical_len();
        budget.charge(len);
        served.bytes += len as u64;
        if let Some(b) = self.counters.resent_bytes_per_peer.get_mut(peer.index()) {
            *b += len as u64;
        }
        step.send(Target::One(peer), Message::VertexBody((**v).clone()));
    }
}
