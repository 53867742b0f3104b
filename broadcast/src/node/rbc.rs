//! Bracha reliable broadcast per (round, author) slot (docs/design.md §3.3), and
//! delivered vertices entering the DAG once their references are there.

use super::*;

impl Node {
    pub(super) fn in_window(&mut self, round: Round) -> bool {
        if round < self.dag.horizon() {
            return false;
        }
        if round > self.window_top() {
            // Counted, not blamed: an honest peer is ahead of a replica
            // that was cut off or cannot order.
            self.counters.out_of_window += 1;
            return false;
        }
        true
    }

    pub(super) fn on_val(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        if v.author != from {
            step.fault(from, FaultKind::ValFromNonAuthor { hash: v.hash() });
            return;
        }
        // The claim counts for the window estimate even when out of window.
        if let Some(claim) = self.peer_rounds.get_mut(from.index()) {
            *claim = (*claim).max(v.round);
        }
        if !self.in_window(v.round) {
            return;
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
        let hash = match self.own_val_hash.take() {
            Some((round, hash)) if from == self.config.me && round == v.round => hash,
            _ => v.hash(),
        };
        let (round, author) = (v.round, v.author);
        let now = self.now;
        let slot = self.slots.entry((round, author)).or_default();
        slot.first_seen.get_or_insert(now);
        let body = match &slot.val {
            Some((existing, _)) if *existing != hash => {
                step.fault(
                    from,
                    FaultKind::Equivocation {
                        round,
                        first: *existing,
                        second: hash,
                    },
                );
                return;
            }
            Some((_, body)) => body.clone(),
            None => {
                if let Some(voted) = slot.author_vote(author).filter(|h| *h != hash) {
                    // The author voted in its own slot for another vertex
                    // than the VAL it sent here: it sent two VALs.
                    step.fault(
                        from,
                        FaultKind::Equivocation {
                            round,
                            first: voted,
                            second: hash,
                        },
                    );
                }
                let body = Arc::new(v);
                self.bodies.insert(hash, body.clone());
                slot.val = Some((hash, body.clone()));
                body
            }
        };
        if slot.my_echo.is_none() && self.config.participate && round > self.joined_above {
            slot.my_echo = Some(hash);
            step.writes.push(Durable::Vote {
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

    pub(super) fn on_vote(
        &mut self,
        from: ReplicaId,
        kind: VoteKind,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
        step: &mut Step,
    ) {
        if author.index() >= self.config.n {
            step.fault(from, FaultKind::VoteForUnknownAuthor { round, author });
            return;
        }
        if round.0 == 0 || !self.in_window(round) {
            return;
        }
        let now = self.now;
        let slot = self.slots.entry((round, author)).or_default();
        slot.first_seen.get_or_insert(now);
        if from == author {
            // An honest author votes in its own slot only for the one VAL
            // it sent everyone (a slot's `val` is the author's own VAL).
            if let Some((val, _)) = slot.val.as_ref().filter(|(h, _)| *h != hash) {
                step.fault(
                    from,
                    FaultKind::Equivocation {
                        round,
                        first: *val,
                        second: hash,
                    },
                );
            }
        }
        let votes = match kind {
            VoteKind::Echo => &mut slot.echoes,
            VoteKind::Ready => &mut slot.readies,
        };
        match votes.get(&from) {
            Some(h) if *h != hash => {
                let first = *h;
                step.fault(
                    from,
                    FaultKind::ConflictingVote {
                        kind,
                        round,
                        author,
                        first,
                        second: hash,
                    },
                );
                return;
            }
            Some(_) => return,
            None => {
                votes.insert(from, hash);
            }
        }
        let echoes = Slot::count(&slot.echoes, &hash);
        let readies = Slot::count(&slot.readies, &hash);
        if slot.my_ready.is_none()
            && self.config.participate
            && round > self.joined_above
            && (echoes >= self.config.echo_threshold()
                || readies >= self.config.ready_amplify_threshold())
        {
            slot.my_ready = Some(hash);
            step.writes.push(Durable::Vote {
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

    pub(super) fn on_body(&mut self, from: ReplicaId, v: Vertex, step: &mut Step) {
        let hash = v.hash();
        let Some(slot) = self.slots.get_mut(&(v.round, v.author)) else {
            return;
        };
        let wanted = slot.delivered.is_none()
            && slot.body(&hash).is_none()
            && slot.readies.values().any(|h| *h == hash);
        if !wanted {
            return;
        }
        if let Err(why) = check_vertex(&self.config, &v) {
            step.fault(from, FaultKind::InvalidVertex { hash, why });
            return;
        }
        let (round, author) = (v.round, v.author);
        let body = Arc::new(v);
        self.bodies.insert(hash, body.clone());
        slot.fetched = Some((hash, body));
        self.try_deliver(round, author, step);
    }

    pub(super) fn try_deliver(&mut self, round: Round, author: ReplicaId, step: &mut Step) {
        let deliver_threshold = self.config.deliver_threshold();
        let Some(slot) = self.slots.get_mut(&(round, author)) else {
            return;
        };
        if slot.delivered.is_some() {
            return;
        }
        // At most one hash can gather 2f+1 readies. Readies almost always
        // name one hash: count each distinct one in place, no map per vote.
        let readies = &slot.readies;
        let Some(hash) = readies
            .values()
            .enumerate()
            .filter(|(i, h)| !readies.values().take(*i).any(|x| x == *h))
            .map(|(_, h)| *h)
            .find(|h| readies.values().filter(|x| *x == h).count() >= deliver_threshold)
        else {
            return;
        };
        match slot.body(&hash).cloned() {
            Some(v) => {
                slot.delivered = Some(hash);
                if let Some(t) = slot.first_seen {
                    // How long a slot takes from its first message to its
                    // delivery: the network's pace, whatever the rounds'.
                    if self.slot_times.len() >= SLOT_TIME_WINDOW {
                        self.slot_times.pop_front();
                    }
                    self.slot_times.push_back(self.now.saturating_sub(t));
                }
                self.enter_or_buffer(hash, v, step);
            }
            None if !slot.fetch_sent => {
                slot.fetch_sent = true;
                // Ask every replica that vouched for the hash; at least one
                // honest one has the body.
                let holders: BTreeSet<ReplicaId> = slot
                    .echoes
                    .iter()
                    .chain(slot.readies.iter())
                    .filter(|(r, h)| **h == hash && **r != self.config.me)
                    .map(|(r, _)| *r)
                    .collect();
                for r in holders {
                    step.send(Target::One(r), Message::FetchVertex(hash));
                }
            }
            None => {}
        }
    }

    /// A delivered vertex enters the DAG once everything it references is
    /// there (or below the horizon); until then it waits.
    /// `hash` is `v`'s hash (the caller has it already).
    pub(super) fn enter_or_buffer(&mut self, hash: VertexHash, v: Arc<Vertex>, step: &mut Step) {
        let mut work = vec![(hash, v)];
        while let Some((hash, v)) = work.pop() {
            if v.round < self.dag.horizon() || self.dag.get(&hash).is_some() {
                continue;
            }
            if let Some(bad) = v.references().find(|r| self.dag.contradicts(r)) {
                step.fault(
                    v.author,
                    FaultKind::InvalidVertex {
                        hash,
                        why: VertexError::WrongSlotReference(*bad),
                    },
                );
                continue;
            }
            let missing: Vec<VertexHash> = v
                .references()
                .filter(|r| !self.dag.satisfies(r))
                .map(|r| r.hash)
                .collect();
            if !missing.is_empty() {
                for m in missing {
                    self.waiting_on.entry(m).or_default().insert(hash);
                }
                self.buffered.insert(hash, v);
                continue;
            }
            self.buffered.remove(&hash);
            self.dag.insert(v.clone(), hash);
            self.dirty = true;
            self.unreached.insert((v.round, v.author, hash));
            if !v.reports.is_empty() && !self.ordered.contains(&v.reference()) {
                self.unordered_reports.insert(v.reference());
            }
            if !self.restoring {
                step.writes.push(Durable::Delivered(v.clone()));
            }
            if let Some(waiters) = self.waiting_on.remove(&hash) {
                for w in waiters {
                    if let Some(b) = self.buffered.get(&w) {
                        work.push((w, b.clone()));
                    }
                }
            }
        }
    }
}
