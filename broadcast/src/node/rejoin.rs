//! Rejoining after data loss: a replica with nothing durable observes until
//! it is past every round it may have signed in (see [`Node::observing`]).

use super::*;

/// What an observing replica asked and was answered (see
/// [`Node::observing`]).
#[derive(Debug, Default)]
struct Observer {
    /// Peers asked that have not answered.
    asked: BTreeSet<ReplicaId>,
    /// Each peer's first answer: the larger of its round and the highest
    /// round it holds anything from this replica in.
    answers: BTreeMap<ReplicaId, Round>,
}

/// The rejoin state: whether this replica takes part (votes, proposes,
/// releases coin shares), whether it observes, and the round it joined
/// above.
///
/// Invariants: while observing, this replica does not take part and signs
/// nothing; only a peer's first answer to a `Hello` it was sent counts;
/// after joining it signs nothing at or below `joined_above`, which only
/// grows. An auditor ([`Node::auditor`]) never observes, so never joins.
#[derive(Debug)]
pub(super) struct Rejoin {
    /// Whether this replica votes, proposes and releases coin shares (state,
    /// not configuration: it stops while observing and starts on joining).
    pub(super) participating: bool,
    /// While observing after a start without durable state: whom it asked
    /// and what they answered.
    observing: Option<Observer>,
    /// After rejoining: it signs nothing in rounds at or below this.
    joined_above: Round,
}

impl Rejoin {
    /// A replica that takes part from the start (or, `false`, never: an
    /// auditor).
    pub(super) fn new(participating: bool) -> Self {
        Rejoin {
            participating,
            observing: None,
            joined_above: Round(0),
        }
    }

    /// Whether this replica observes.
    pub(super) fn observing(&self) -> bool {
        self.observing.is_some()
    }

    /// Starts observing, with nobody asked yet.
    pub(super) fn start_observing(&mut self) {
        self.observing = Some(Observer::default());
    }

    /// Whether `round` is above the round this replica joined at.
    pub(super) fn may_sign(&self, round: Round) -> bool {
        round > self.joined_above
    }

    /// The round this replica joined above (0 if it never rejoined).
    pub(super) fn joined_above(&self) -> Round {
        self.joined_above
    }

    /// `from` answered `Status { round, yours }`: only the first answer to a
    /// Hello counts, so a peer cannot move the bar by answering again, or
    /// unasked.
    pub(super) fn on_status(&mut self, from: ReplicaId, round: Round, yours: Round) {
        if let Some(o) = self.observing.as_mut() {
            if o.asked.remove(&from) {
                o.answers.entry(from).or_insert(round.max(yours));
            }
        }
    }

    /// While observing, the peers of an `n`-replica cluster to ask: `to`
    /// (every peer if `None`) but `me` and those that answered. They count
    /// as asked.
    fn ask(&mut self, n: usize, me: ReplicaId, to: Option<ReplicaId>) -> Vec<ReplicaId> {
        let Some(o) = self.observing.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in 0..n {
            let p = ReplicaId(p as u16);
            if p == me || o.answers.contains_key(&p) || to.is_some_and(|t| t != p) {
                continue;
            }
            o.asked.insert(p);
            out.push(p);
        }
        out
    }

    /// Joins if observing and the rejoin rule allows it (see
    /// [`Node::observing`]): `quorum − 1` counted answers, the DAG `top`
    /// `round_window + 2` rounds past the largest — then it joins above
    /// `top` — or, short of that, every counted answer 0: the cluster is
    /// starting. It then joins above round 0, taking part from the first
    /// round as the replicas that started with it do, if nothing says it
    /// ever signed (every answer received is 0, and `own` — the highest
    /// round of a slot it authored or voted in that it holds, from peers'
    /// votes — is 0); else above `top`, as before. (Joining above `top` there would
    /// keep a replica whose answers came late out of the first rounds the
    /// others already reached; with a Byzantine replica withholding, those
    /// rounds could then never complete.) Returns the round joined above.
    fn try_join(
        &mut self,
        top: Round,
        own: Round,
        quorum: usize,
        round_window: u64,
    ) -> Option<Round> {
        let o = self.observing.as_ref()?;
        let counted: Vec<Round> = o.answers.values().filter(|r| **r <= top).copied().collect();
        if counted.len() < quorum.saturating_sub(1) {
            return None;
        }
        let past = counted.iter().max().copied().unwrap_or_default();
        // Nothing says this replica ever signed: every answer it got, counted
        // or not, is 0, and it holds no slot of its own nor a vote it cast.
        let fresh = own.0 == 0 && o.answers.values().all(|r| r.0 == 0);
        let above = if top.0 > past.0.saturating_add(round_window + 2) {
            top
        } else if past.0 == 0 && fresh {
            Round(0)
        } else if past.0 == 0 {
            top
        } else {
            return None;
        };
        self.observing = None;
        self.joined_above = above;
        Some(above)
    }

    /// Restores a `Joined` record: whether it ended observing.
    pub(super) fn restore_joined(&mut self, above: Round) -> bool {
        self.joined_above = self.joined_above.max(above);
        self.observing.take().is_some()
    }
}

impl Node {
    /// While observing, asks `to` (every peer if `None`) that has not
    /// answered yet for its round.
    pub(super) fn say_hello(&mut self, to: Option<ReplicaId>, step: &mut Step) {
        for p in self.rejoin.ask(self.config.n, self.config.me, to) {
            step.send_to(Target::One(p), Message::Hello);
        }
    }

    /// Answers a `Hello`, within the peer's re-send budget: the highest
    /// round this replica holds (its DAG — delivered, so real — its GC
    /// horizon, its own round) and the highest round of anything it holds
    /// from the asker (a vertex, an ECHO or a READY).
    pub(super) fn answer_hello(&mut self, peer: ReplicaId, step: &mut Step) {
        let now = self.now;
        let slots = self.rbc.slots_len();
        let allowed = self.recovery.budget_mut(peer).is_some_and(|b| {
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
        self.own
            .keep_fast_until(now.saturating_add(REJOIN_FAST_WINDOW));
        // A replica at genesis answers 0 even after making its first vertex
        // (nothing is delivered yet), so that replicas starting together all
        // join at once.
        let round = self.dag.highest_round().max(self.dag.horizon()).max(
            if self.dag.highest_round().0 > 0 {
                self.own.round()
            } else {
                Round(0)
            },
        );
        let yours = self.rbc.last_round_from(peer);
        step.send_to(Target::One(peer), Message::Status { round, yours });
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
        self.rejoin.observing()
    }

    pub(super) fn maybe_join(&mut self, step: &mut Step) {
        let top = self.dag.highest_round();
        let quorum = self.config.quorum();
        let own = self.rbc.last_round_from(self.config.me);
        let Some(above) = self
            .rejoin
            .try_join(top, own, quorum, self.config.round_window)
        else {
            return;
        };
        self.rejoin.participating = true;
        self.counters.rejoined = true;
        step.write(Durable::Joined { above });
    }
}
