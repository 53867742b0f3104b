//! Rejoining after data loss: a replica with nothing durable observes until
//! it is past every round it may have signed in (see [`Node::observing`]).

use super::*;

impl Node {
    /// While observing, asks `to` (every peer if `None`) that has not
    /// answered yet for its round.
    pub(super) fn say_hello(&mut self, to: Option<ReplicaId>, step: &mut Step) {
        let Some(o) = self.observing.as_mut() else {
            return;
        };
        for p in 0..self.config.n {
            let p = ReplicaId(p as u16);
            if p == self.config.me || o.answers.contains_key(&p) || to.is_some_and(|t| t != p) {
                continue;
            }
            o.asked.insert(p);
            step.send(Target::One(p), Message::Hello);
        }
    }

    /// Answers a `Hello`, within the peer's re-send budget: the highest
    /// round this replica holds (its DAG — delivered, so real — its GC
    /// horizon, its own round) and the highest round of anything it holds
    /// from the asker (a vertex, an ECHO or a READY).
    pub(super) fn answer_hello(&mut self, peer: ReplicaId, step: &mut Step) {
        let now = self.now;
        let slots = self.slots.len();
        let allowed = self.resend_budget.get_mut(peer.index()).is_some_and(|b| {
            b.available(now) && {
                b.charge(64 + 8 * slots);
                true
            }
        });
        if !allowed {
            return;
        }
        // The asker observes until the DAG is well past this answer: make
        // the rounds it waits for at the fast pace.
        self.fast_until = now.saturating_add(REJOIN_FAST_WINDOW);
        // A replica at genesis answers 0 even after making its first vertex
        // (nothing is delivered yet), so that replicas starting together all
        // join at once.
        let round = self.dag.highest_round().max(self.dag.horizon()).max(
            if self.dag.highest_round().0 > 0 {
                self.round
            } else {
                Round(0)
            },
        );
        let yours = self
            .slots
            .iter()
            .rev()
            .find(|((_, author), slot)| {
                *author == peer
                    || slot.echoes.contains_key(&peer)
                    || slot.readies.contains_key(&peer)
            })
            .map_or(Round(0), |((r, _), _)| *r);
        step.send(Target::One(peer), Message::Status { round, yours });
    }

    /// Whether this replica observes (it started without durable state and
    /// has not joined yet).
    ///
    /// # The rejoin rule
    ///
    /// A replica that lost its data may have sent a vertex or votes in any
    /// round up to its last round `r` plus `round_window`, and must never
    /// sign differently in those slots. It asks every peer (`Hello`) for the
    /// highest round it holds and the highest round it holds anything from
    /// the asker in (`Status`); only a peer's first answer to a `Hello`
    /// counts, and only once the replica's own DAG has reached the round it
    /// names — a Byzantine peer can neither move the bar by answering again
    /// nor claim a round nobody reached. The replica counts as one of the
    /// `f` faulty while it rejoins; then among `Q − 1` counted answers one
    /// comes from an honest replica whose vertex was a parent of the
    /// replica's last vertex (quorum intersection), so the answer is at
    /// least `r − 1`. The replica joins once its DAG is `round_window + 2`
    /// rounds above the largest counted answer, and from then on signs
    /// nothing at or below the round it joined at (durable:
    /// `Durable::Joined`). When every counted answer is 0 — nothing
    /// delivered anywhere and nothing held from it — the cluster is just
    /// starting, and it joins at once.
    pub fn observing(&self) -> bool {
        self.observing.is_some()
    }

    pub(super) fn maybe_join(&mut self, step: &mut Step) {
        let Some(o) = &self.observing else {
            return;
        };
        let top = self.dag.highest_round();
        let counted: Vec<Round> = o.answers.values().filter(|r| **r <= top).copied().collect();
        if counted.len() < self.config.quorum().saturating_sub(1) {
            return;
        }
        let past = counted.iter().max().copied().unwrap_or_default();
        let clear = past.0 == 0 || top.0 > past.0.saturating_add(self.config.round_window + 2);
        if !clear {
            return;
        }
        self.observing = None;
        self.config.participate = true;
        self.joined_above = top;
        self.counters.rejoined = true;
        step.writes.push(Durable::Joined { above: top });
        self.dirty = true;
    }
}
