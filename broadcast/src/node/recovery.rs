//! Recovering lost messages: the stall detector that asks for a round's
//! votes when the DAG stands still, the resend timer, and re-sending what
//! this replica recorded — each answer within the asking peer's byte budget.

use super::*;
use crate::budget::ByteBudget;

/// Payload bytes of an ECHO or READY (round, author, hash).
const VOTE_BYTES: usize = 8 + 2 + 32;
/// Payload bytes of a coin share (wave, share).
const COIN_SHARE_BYTES: usize = 8 + 96;
/// What visiting one slot while re-sending is charged, voted in or not.
const SLOT_VISIT_BYTES: usize = 8;

/// The round time assumed before the first one is measured.
const ROUND_TIME_INITIAL: Micros = Micros::from_millis(10);
/// Own rounds whose durations are kept to estimate the round time.
const ROUND_TIME_WINDOW: usize = 32;
/// Delivered slots whose delivery times are kept, likewise.
const SLOT_TIME_WINDOW: usize = 64;
/// Round times the DAG may stand still before the missing votes are asked
/// for.
pub const STALL_ROUNDS: u64 = 2;
/// The shortest wait before a stall is acted on.
pub const STALL_MIN: Micros = Micros::from_millis(4);
/// The longest wait between two asks while a stall lasts.
pub const STALL_BACKOFF_MAX: Micros = Micros::from_millis(100);

/// Loss recovery's state: how long rounds and slots take, when the DAG last
/// grew, the stall timer, and what each peer may still be re-sent.
///
/// Invariants: at most `ROUND_TIME_WINDOW` round times and
/// `SLOT_TIME_WINDOW` slot times are kept; at most one stall timer is armed
/// (`stall_armed`); one re-send budget and one remembered round per
/// replica.
#[derive(Debug)]
pub(super) struct LossRecovery {
    /// Durations of the last own rounds (the shortest is the round time a
    /// round without losses takes).
    round_times: VecDeque<Micros>,
    /// How long the last slots took from first message to delivery.
    slot_times: VecDeque<Micros>,
    /// When the DAG last grew (or a stall was last acted on).
    last_growth: Micros,
    /// The DAG's top round, the decided wave and the last coin's wave when
    /// it last grew.
    grown_to: (Round, Wave, Wave),
    /// DAG vertices held when last looked.
    held_at_fetch: usize,
    stall_armed: bool,
    stall_backoff: Micros,
    /// Per peer, what it may still be re-sent.
    resend_budget: Vec<ByteBudget>,
    /// Per peer, its claimed round at the last resend tick.
    rounds_at_last_resend: Vec<Round>,
}

impl LossRecovery {
    /// Nothing measured yet, full budgets.
    pub(super) fn new(config: &Config) -> Self {
        let budget = ByteBudget::new(
            config.resend_bytes_per_peer_per_s,
            config.resend_burst_bytes,
        );
        LossRecovery {
            round_times: VecDeque::new(),
            slot_times: VecDeque::new(),
            last_growth: Micros::ZERO,
            grown_to: (Round(0), Wave(0), Wave(0)),
            held_at_fetch: 0,
            stall_armed: false,
            stall_backoff: Micros::ZERO,
            resend_budget: vec![budget; config.n],
            rounds_at_last_resend: vec![Round(0); config.n],
        }
    }

    /// An own round took `took`.
    pub(super) fn note_round_time(&mut self, took: Micros) {
        if self.round_times.len() >= ROUND_TIME_WINDOW {
            self.round_times.pop_front();
        }
        self.round_times.push_back(took);
    }

    /// A slot took `took` from its first message to its delivery.
    pub(super) fn note_slot_time(&mut self, took: Micros) {
        if self.slot_times.len() >= SLOT_TIME_WINDOW {
            self.slot_times.pop_front();
        }
        self.slot_times.push_back(took);
    }

    /// How long the DAG may stand still at `pace` before the missing votes
    /// are asked for: a few round times, doubled on each fruitless ask up
    /// to the resend interval.
    fn stall_after(&self, pace: Micros, resend_interval: Micros) -> Micros {
        // The quickest recent round is what a round without losses takes
        // (rounds slowed by lost votes must not stretch the wait).
        // A round takes the round interval plus a slot's delivery; the
        // quickest recent slot is what one without losses takes (when every
        // round loses a vote somewhere — many replicas, none to spare — the
        // rounds are all slow, but some slots are not).
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
            .min(resend_interval);
        // Backing off stops at STALL_BACKOFF_MAX: asking costs the asker
        // one small request per peer, and each answer comes out of the
        // peer's re-send budget.
        base.max(self.stall_backoff.min(STALL_BACKOFF_MAX))
    }

    /// Notes the DAG's state at `now` — `grown` (top round, decided wave,
    /// last coin) and `held` vertices — and returns when the stall timer
    /// is to fire if it is to be armed.
    fn watch(
        &mut self,
        grown: (Round, Wave, Wave),
        held: usize,
        now: Micros,
        pace: Micros,
        resend_interval: Micros,
    ) -> Option<Micros> {
        if grown != self.grown_to {
            self.grown_to = grown;
            self.last_growth = now;
            self.stall_backoff = Micros::ZERO;
        }
        if held != self.held_at_fetch {
            // Some vertex came in since the last ask: the asking works, so
            // keep asking at the round's pace (the back-off is for peers
            // that do not answer at all).
            self.held_at_fetch = held;
            self.stall_backoff = Micros::ZERO;
        }
        if self.stall_armed {
            return None;
        }
        self.stall_armed = true;
        let after = self.stall_after(pace, resend_interval);
        Some(self.last_growth.max(now).saturating_add(after))
    }

    /// The stall timer fired (it is no longer armed).
    pub(super) fn stall_timer_fired(&mut self) {
        self.stall_armed = false;
    }

    /// Whether the DAG stood still long enough by `now` to ask.
    fn stalled(&self, now: Micros, pace: Micros, resend_interval: Micros) -> bool {
        now.saturating_sub(self.last_growth) >= self.stall_after(pace, resend_interval)
    }

    /// The missing votes were asked for at `now`: wait twice as long
    /// before asking again.
    fn backed_off(&mut self, now: Micros, pace: Micros, resend_interval: Micros) {
        self.stall_backoff = Micros(self.stall_after(pace, resend_interval).0.saturating_mul(2));
        self.last_growth = now;
    }

    /// `peer`'s re-send budget.
    pub(super) fn budget_mut(&mut self, peer: ReplicaId) -> Option<&mut ByteBudget> {
        self.resend_budget.get_mut(peer.index())
    }

    /// The peers to re-send to on the resend tick, with their claimed
    /// rounds: every peer but `me` whose claim has not advanced since the
    /// last tick, or that is more than a round behind `round`. Remembers the
    /// claims for the next tick.
    fn lagging(
        &mut self,
        me: ReplicaId,
        claims: &[Round],
        round: Round,
    ) -> Vec<(ReplicaId, Round)> {
        let mut out = Vec::new();
        for (p, (claimed, before)) in claims.iter().zip(&self.rounds_at_last_resend).enumerate() {
            let peer = ReplicaId(p as u16);
            if peer == me {
                continue;
            }
            let stuck = claimed <= before;
            if stuck || claimed.0.saturating_add(1) < round.0 {
                out.push((peer, *claimed));
            }
        }
        self.rounds_at_last_resend = claims.to_vec();
        out
    }
}

impl Node {
    /// The first wave whose coin this replica waits for (see
    /// `Commit::coin_wanted`).
    fn coin_wanted(&self) -> Option<Wave> {
        self.commit.coin_wanted()
    }

    /// Notes progress — the DAG reached a new round, a wave was decided, a
    /// coin came out — and keeps the stall timer armed. (Vertices trickling
    /// into the top round are not progress: one lost vote still holds the
    /// round back.)
    pub(super) fn watch_growth(&mut self, step: &mut Step) {
        let top = self.dag.highest_round();
        let coins = self.commit.last_coin_wave();
        let grown = (top, self.commit.last_decided_wave(), coins);
        let held = self.dag.len();
        let (pace, resend) = (self.pace(), self.config.resend_interval);
        if let Some(at) = self.recovery.watch(grown, held, self.now, pace, resend) {
            step.timer(at, TimerKind::Stall);
        }
    }

    /// Nothing moved for a few round times: a VAL, ECHO, READY or coin share
    /// was probably lost. Ask every peer for its vertex, votes and coin
    /// shares of the rounds in question — the top round, the rounds
    /// buffered vertices miss, the wave whose coin is awaited — rather than
    /// wait for the next resend.
    pub(super) fn on_stall_timer(&mut self, step: &mut Step) {
        let (pace, resend) = (self.pace(), self.config.resend_interval);
        if !self.recovery.stalled(self.now, pace, resend) {
            return; // it moved meanwhile; `watch_growth` re-arms
        }
        let top = self.dag.highest_round();
        let missing = self.buffer.missing_rounds(&self.dag).min();
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
            step.send_to(Target::All, Message::FetchVotes { from, to });
        }
        self.counters.stall_fetches += 1;
        self.recovery.backed_off(self.now, pace, resend);
    }

    pub(super) fn on_resend_timer(&mut self, step: &mut Step) {
        // Vertices waiting for references that never came: ask everyone for
        // their votes on the missing rounds (links may have dropped them).
        let (lo, hi) = self
            .buffer
            .missing_rounds(&self.dag)
            .fold((Round(u64::MAX), Round(0)), |(lo, hi), r| {
                (lo.min(r), hi.max(r))
            });
        if lo <= hi {
            step.send_to(Target::All, Message::FetchVotes { from: lo, to: hi });
        }
        // Slots with a READY quorum whose body never arrived (the request or
        // the answer was lost): ask again.
        for (round, author) in self.rbc.stalled_fetches() {
            self.rbc.rearm_fetch(round, author);
            self.try_deliver(round, author, step);
        }
        // Re-send to every peer that has not advanced since the last tick
        // (docs/design.md §3.3): it lags us, or the whole cluster is stuck on a
        // message some link dropped — then nobody lags, and only this gets
        // the lost votes through again.
        let lagging =
            self.recovery
                .lagging(self.config.me, self.peer_rounds.claims(), self.own.round());
        for (peer, claimed) in lagging {
            let from = Round(claimed.0.saturating_sub(1)).max(self.dag.horizon());
            self.resend_to(peer, from, Round(u64::MAX), ResendCause::Timer, step);
        }
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
        let Some(budget) = self.recovery.budget_mut(peer) else {
            // Senders are checked in `on_message`, reconnects in `handle`.
            debug_assert!(false, "a re-send goes to one of the n replicas");
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
        for v in self.own.own_vertices_in(lo, hi) {
            if !room {
                break;
            }
            let len = v.canonical_len();
            room = budget.charge(len);
            sent += len;
            step.send_to(Target::One(peer), Message::Val((**v).clone()));
        }
        for ((round, author), slot) in self.rbc.slots_from(lo) {
            if *round > hi || !room {
                break;
            }
            // Visiting a slot is work too, voted in or not.
            room = budget.charge(SLOT_VISIT_BYTES);
            for (kind, vote) in slot.own_votes() {
                let Some(hash) = vote else { continue };
                room = budget.charge(VOTE_BYTES);
                sent += VOTE_BYTES;
                step.send_to(
                    Target::One(peer),
                    Message::vote(kind, *round, *author, hash),
                );
            }
        }
        for (w, share) in self.commit.own_shares_in(lo.wave(), hi.wave()) {
            if !room {
                break;
            }
            room = budget.charge(COIN_SHARE_BYTES);
            sent += COIN_SHARE_BYTES;
            step.send_to(
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
        let Some(budget) = self.recovery.budget_mut(peer) else {
            // Senders are checked in `on_message`.
            debug_assert!(false, "a body is served to one of the n replicas");
            return;
        };
        let served = &mut self.counters.resends[ResendCause::FetchVertex.index()];
        served.requests += 1;
        if !budget.available(now) {
            served.refused += 1;
            return;
        }
        let Some(v) = self.rbc.body(hash).or_else(|| self.dag.get(hash)) else {
            return;
        };
        let len = v.canonical_len();
        budget.charge(len);
        served.bytes += len as u64;
        if let Some(b) = self.counters.resent_bytes_per_peer.get_mut(peer.index()) {
            *b += len as u64;
        }
        step.send_to(Target::One(peer), Message::VertexBody((**v).clone()));
    }
}
