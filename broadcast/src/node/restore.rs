//! Restoring a node from its durable records, and the records a compacted
//! journal keeps instead of them.

use super::*;

impl Node {
    /// Rebuilds a node from everything it asked to persist, in the order the
    /// writes were made. Call [`Node::handle`] with [`Input::Start`] next.
    pub fn restore(config: Config, crypto: Arc<dyn ThresholdCrypto>, records: &[Durable]) -> Self {
        let mut node = Node::new(config, crypto);
        node.restoring = true;
        let mut ignored = Step::default();
        if let Some(cp) = records.iter().rev().find_map(|r| match r {
            Durable::Checkpoint(cp) => Some(cp.clone()),
            _ => None,
        }) {
            node.install_checkpoint(cp, &mut ignored);
        }
        let horizon = node.dag.horizon();
        for record in records {
            node.restore_record(record, horizon);
        }
        for record in records {
            if let Durable::Delivered(v) = record {
                let hash = v.hash();
                if v.round >= node.dag.horizon() && node.dag.get(&hash).is_none() {
                    node.rbc.restore_delivered(v.round, v.author, hash);
                    node.enter_or_buffer(hash, v.clone(), &mut ignored);
                }
            }
        }
        node.restoring = false;
        node
    }

    /// Restores one record but a checkpoint or a delivered vertex (those
    /// are restored first and last); `horizon` is the restored checkpoint's.
    fn restore_record(&mut self, record: &Durable, horizon: Round) {
        let me = self.config.me;
        match record {
            Durable::Chain {
                round,
                last_own,
                last_clock,
                last_recv_time,
            } => {
                let moved = self
                    .own
                    .restore_chain(*round, *last_own, *last_clock, *last_recv_time);
                if moved {
                    self.peer_rounds.set_own(me, *round);
                }
            }
            Durable::OwnVertex(v) => {
                let moved = self.own.restore_own_vertex(v, horizon);
                if moved {
                    self.peer_rounds.set_own(me, v.round);
                }
            }
            Durable::Vote {
                kind,
                round,
                author,
                hash,
                body,
            } if *round >= horizon => {
                self.rbc
                    .restore_vote(me, *kind, (*round, *author), *hash, body.as_ref());
            }
            Durable::Coin(c) => self.commit.restore_coin(*c),
            Durable::Observing => {
                self.rejoin.start_observing();
                self.rejoin.participating = false;
            }
            Durable::Joined { above } => {
                let joined = self.rejoin.restore_joined(*above);
                if joined {
                    self.rejoin.participating = true;
                }
            }
            _ => {}
        }
    }

    /// The records a restart needs, rebuilt from memory: the ordering
    /// checkpoint, the own chain's position, own vertices, own votes (an
    /// ECHO with the body it echoed), coins of undecided waves, and the DAG
    /// — everything at or above the GC horizon. [`Node::restore`] from these
    /// alone rebuilds what it rebuilds from every record ever written, so a
    /// journal can replace its past with them (compaction costs O(what is
    /// held), never a re-read of the journal).
    pub fn live_records(&self) -> Vec<Durable> {
        let mut out =
            Vec::with_capacity(3 + self.own.own_vertices_len() + 2 * self.rbc.slots_len());
        if self.rejoin.observing() {
            out.push(Durable::Observing);
        } else if self.rejoin.joined_above().0 > 0 {
            out.push(Durable::Joined {
                above: self.rejoin.joined_above(),
            });
        }
        out.push(Durable::Checkpoint(self.checkpoint()));
        out.extend(self.own.records());
        out.extend(self.rbc.vote_records(&self.dag));
        out.extend(self.commit.undecided_coins().map(|c| Durable::Coin(*c)));
        out.extend(self.dag.vertices().cloned().map(Durable::Delivered));
        out
    }
}
