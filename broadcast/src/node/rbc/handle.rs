//! The replica's part in reliable broadcast: a VAL checked and echoed, votes
//! counted and cast, bodies fetched, slots delivered (docs/design.md §3.3).

use super::*;

impl Node {
    /// Checks a vertex `from` sent (docs/design.md §3.3); an invalid one
    /// is a fault of the sender's.
    pub(in crate::node) fn valid(&self, from: ReplicaId, v: &Vertex, step: &mut Step) -> bool {
        match check_vertex(&self.config, v) {
            Ok(()) => true,
            Err(why) => {
                step.blame(
                    from,
                    FaultKind::InvalidVertex {
                        hash: v.hash(),
                        why,
                    },
                );
                false
            }
        }
    }

    pub(in crate::node) fn on_val(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        if v.author != from {
            step.blame(from, FaultKind::ValFromNonAuthor { hash: v.hash() });
            return;
        }
        // The claim counts for the window estimate even when out of window.
        self.peer_rounds.claim(from, v.round);
        if !self.in_window(v.round) {
            return;
        }
        if !self.valid(from, &v, step) {
            return;
        }
        let hash = match self.loopback.take_own_hash(v.round) {
            Some(hash) if from == self.config.me => hash,
            _ => v.hash(),
        };
        let (round, author) = (v.round, v.author);
        let Some(body) = self.rbc.take_val(from, hash, v, self.now, step) else {
            return;
        };
        if self.may_sign(round) && self.rbc.cast(VoteKind::Echo, round, author, hash) {
            step.write(Durable::Vote {
                kind: VoteKind::Echo,
                round,
                author,
                hash,
                body: Some(body),
            });
            self.broadcast(
                Message::Echo {
                    round,
                    author,
                    hash,
                },
                step,
            );
        }
        self.try_deliver(round, author, step);
    }

    pub(in crate::node) fn on_vote(
        &mut self,
        from: ReplicaId,
        kind: VoteKind,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
        step: &mut Step,
    ) {
        if author.index() >= self.config.n {
            step.blame(
                from,
                FaultKind::VoteForUnknownAuthor {
                    kind,
                    round,
                    author,
                    hash,
                },
            );
            return;
        }
        if round.0 == 0 || !self.in_window(round) {
            return;
        }
        let Some((echoes, readies)) =
            self.rbc
                .record_vote(from, kind, (round, author), hash, self.now, step)
        else {
            return;
        };
        if self.may_sign(round)
            && (echoes >= self.config.echo_threshold()
                || readies >= self.config.ready_amplify_threshold())
            && self.rbc.cast(VoteKind::Ready, round, author, hash)
        {
            step.write(Durable::Vote {
                kind: VoteKind::Ready,
                round,
                author,
                hash,
                body: None,
            });
            self.broadcast(
                Message::Ready {
                    round,
                    author,
                    hash,
                },
                step,
            );
        }
        self.try_deliver(round, author, step);
    }

    pub(in crate::node) fn on_body(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        let hash = v.hash();
        if !self.rbc.wants_body(v.round, v.author, &hash) {
            return;
        }
        if let Err(why) = check_vertex(&self.config, &v) {
            step.blame(from, FaultKind::InvalidVertex { hash, why });
            return;
        }
        let (round, author) = (v.round, v.author);
        self.rbc.keep_fetched(round, author, hash, Arc::new(v));
        self.try_deliver(round, author, step);
    }

    pub(in crate::node) fn try_deliver(
        &mut self,
        round: Round,
        author: ReplicaId,
        step: &mut Step,
    ) {
        let threshold = self.config.deliver_threshold();
        match self.rbc.deliver(round, author, threshold, self.config.me) {
            Delivery::Deliver {
                hash,
                body,
                first_seen,
            } => {
                if let Some(t) = first_seen {
                    // How long a slot takes from its first message to its
                    // delivery: the network's pace, whatever the rounds'.
                    self.recovery.note_slot_time(self.now.saturating_sub(t));
                }
                self.enter_or_buffer(hash, body, step);
            }
            Delivery::Fetch { hash, holders } => {
                for r in holders {
                    step.send_to(Target::One(r), Message::FetchVertex(hash));
                }
            }
            Delivery::Nothing => {}
        }
    }
}
