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
            match record {
                Durable::Chain {
                    round,
                    last_own,
                    last_clock,
                    last_recv_time,
                } => {
                    if *round > node.round {
                        node.round = *round;
                        node.last_own = *last_own;
                        node.last_clock = *last_clock;
                        node.peer_rounds[node.config.me.index()] = *round;
                    }
                    node.last_recv_time = node.last_recv_time.max(*last_recv_time);
                }
                Durable::OwnVertex(v) => {
                    if v.round > node.round {
                        node.round = v.round;
                        node.last_own = Some(v.reference());
                        node.last_clock = v.clock;
                        node.peer_rounds[node.config.me.index()] = v.round;
                    }
                    if let Some(last) = v.reports.last() {
                        node.last_recv_time = node.last_recv_time.max(last.recv_time);
                    }
                    if v.round >= horizon {
                        node.own_vertices.insert(v.round, v.clone());
                    }
                }
                Durable::Vote {
                    kind,
                    round,
                    author,
                    hash,
                    body,
                } if *round >= horizon => {
                    // A vote restored is a vote cast: it counts toward the
                    // slot's thresholds exactly as it did before the crash
                    // (through the node's own inbox). Restoring only the
                    // flag that stops a second vote left a slot pending at
                    // the crash needing 2f + 1 votes from the others, and a
                    // cluster with one silent replica stalled for ever.
                    let me = node.config.me;
                    let slot = node.slots.entry((*round, *author)).or_default();
                    match kind {
                        VoteKind::Echo => {
                            slot.my_echo = Some(*hash);
                            slot.echoes.insert(me, *hash);
                            if let Some(b) = body {
                                node.bodies.insert(*hash, b.clone());
                                slot.val = Some((*hash, b.clone()));
                            }
                        }
                        VoteKind::Ready => {
                            slot.my_ready = Some(*hash);
                            slot.readies.insert(me, *hash);
                        }
                    }
                }
                Durable::Coin(c) if c.wave > node.last_decided_wave => node.coin.insert(*c),
                Durable::Observing => {
                    node.observing = Some(Observer::default());
                    node.config.participate = false;
                }
                Durable::Joined { above } => {
                    node.joined_above = node.joined_above.max(*above);
                    if node.observing.take().is_some() {
                        node.config.participate = true;
                    }
                }
                _ => {}
            }
        }
        for record in records {
            if let Durable::Delivered(v) = record {
                let hash = v.hash();
                if v.round >= node.dag.horizon() && node.dag.get(&hash).is_none() {
                    let v = v.clone();
                    let slot = node.slots.entry((v.round, v.author)).or_default();
                    slot.delivered = Some(hash);
                    node.enter_or_buffer(hash, v, &mut ignored);
                }
            }
        }
        node.restoring = false;
        node
    }

    /// The records a restart needs, rebuilt from memory: the ordering
    /// checkpoint, the own chain's position, own vertices, own votes (an
    /// ECHO with the body it echoed), coins of undecided waves, and the DAG
    /// — everything at or above the GC horizon. [`Node::restore`] from these
    /// alone rebuilds what it rebuilds from every record ever written, so a
    /// journal can replace its past with them (compaction costs O(what is
    /// held), never a re-read of the journal).
    pub fn live_records(&self) -> Vec<Durable> {
        let mut out = Vec::with_capacity(3 + self.own_vertices.len() + 2 * self.slots.len());
        if self.observing.is_some() {
            out.push(Durable::Observing);
        } else if self.joined_above.0 > 0 {
            out.push(Durable::Joined {
                above: self.joined_above,
            });
        }
        out.push(Durable::Checkpoint(self.checkpoint()));
        out.push(Durable::Chain {
            round: self.round,
            last_own: self.last_own,
            last_clock: self.last_clock,
            last_recv_time: self.last_recv_time,
        });
        out.extend(self.own_vertices.values().cloned().map(Durable::OwnVertex));
        for ((round, author), slot) in &self.slots {
            if let Some(hash) = slot.my_echo {
                // The body echoed, unless the DAG holds it (its Delivered
                // record below carries it then).
                let body = if self.dag.get(&hash).is_some() {
                    None
                } else {
                    slot.body(&hash).cloned()
                };
                out.push(Durable::Vote {
                    kind: VoteKind::Echo,
                    round: *round,
                    author: *author,
                    hash,
                    body,
                });
            }
            if let Some(hash) = slot.my_ready {
                out.push(Durable::Vote {
                    kind: VoteKind::Ready,
                    round: *round,
                    author: *author,
                    hash,
                    body: None,
                });
            }
        }
        out.extend(
            self.coin
                .coins()
                .filter(|c| c.wave > self.last_decided_wave)
                .map(|c| Durable::Coin(*c)),
        );
        out.extend(self.dag.vertices().cloned().map(Durable::Delivered));
        out
    }
}
