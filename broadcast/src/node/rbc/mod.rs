//! Bracha reliable broadcast per (round, author) slot (docs/design.md §3.3):
//! [`Rbc`] keeps the slots and the bodies (here); `Node` checks VALs, casts
//! this replica's votes and hands delivered vertices on to the DAG
//! (`handle.rs`, then `buffer.rs`).

use super::*;

mod handle;

/// Reliable-broadcast state of one (round, author) slot.
///
/// Invariants: a replica's vote of each kind is the first one recorded and
/// never changes; `my_echo` and `my_ready` are set at most once;
/// `delivered`, once set, never changes.
#[derive(Debug, Default)]
pub(super) struct Slot {
    echoes: BTreeMap<ReplicaId, VertexHash>,
    readies: BTreeMap<ReplicaId, VertexHash>,
    my_echo: Option<VertexHash>,
    my_ready: Option<VertexHash>,
    /// The one unconfirmed VAL body kept per slot (the first valid one).
    val: Option<(VertexHash, Arc<Vertex>)>,
    /// A body fetched by hash for a hash with READY support.
    fetched: Option<(VertexHash, Arc<Vertex>)>,
    delivered: Option<VertexHash>,
    fetch_sent: bool,
    /// When the first message about the slot arrived (`None` when the slot
    /// was rebuilt on restore).
    first_seen: Option<Micros>,
}

impl Slot {
    /// The hash the slot's author voted for in its own slot, if it did.
    fn author_vote(&self, author: ReplicaId) -> Option<VertexHash> {
        self.echoes
            .get(&author)
            .or_else(|| self.readies.get(&author))
            .copied()
    }

    fn body(&self, hash: &VertexHash) -> Option<&Arc<Vertex>> {
        [&self.val, &self.fetched]
            .into_iter()
            .flatten()
            .find(|(h, _)| h == hash)
            .map(|(_, v)| v)
    }

    fn count(votes: &BTreeMap<ReplicaId, VertexHash>, hash: &VertexHash) -> usize {
        votes.values().filter(|h| *h == hash).count()
    }

    /// This replica's own votes in the slot, ECHO first.
    pub(super) fn own_votes(&self) -> [(VoteKind, Option<VertexHash>); 2] {
        [
            (VoteKind::Echo, self.my_echo),
            (VoteKind::Ready, self.my_ready),
        ]
    }

    /// The hash with `threshold` READYs, if one has. At most one hash can
    /// gather 2f+1 readies. Readies almost always name one hash: count each
    /// distinct one in place, no map per vote.
    fn ready_quorum(&self, threshold: usize) -> Option<VertexHash> {
        let readies = &self.readies;
        readies
            .values()
            .enumerate()
            .filter(|(i, h)| !readies.values().take(*i).any(|x| x == *h))
            .map(|(_, h)| *h)
            .find(|h| readies.values().filter(|x| *x == h).count() >= threshold)
    }

    /// Every replica but `me` that vouched for `hash` (an ECHO or READY for
    /// it): at least one honest one has the body.
    fn vouchers(&self, hash: VertexHash, me: ReplicaId) -> BTreeSet<ReplicaId> {
        self.echoes
            .iter()
            .chain(self.readies.iter())
            .filter(|(r, h)| **h == hash && **r != me)
            .map(|(r, _)| *r)
            .collect()
    }
}

/// What [`Rbc::deliver`] found a slot ready for.
pub(super) enum Delivery {
    /// Nothing (yet): no READY quorum, already delivered, or the body was
    /// asked for already.
    Nothing,
    /// The slot delivered `hash`, whose body is here.
    Deliver {
        hash: VertexHash,
        body: Arc<Vertex>,
        /// When the slot's first message arrived, if known.
        first_seen: Option<Micros>,
    },
    /// `hash` has a READY quorum but no body: ask the vouchers for it.
    Fetch {
        hash: VertexHash,
        holders: BTreeSet<ReplicaId>,
    },
}

/// Reliable broadcast's state (docs/design.md §3.3): a [`Slot`] per
/// (round, author) at or above the GC horizon, and the vertex bodies kept.
///
/// Invariants: every body a slot keeps (its VAL or a fetched body) is in
/// `bodies` under its hash (which may hold more: bodies catch-up
/// installed); a slot delivers at most one hash, and only with a READY
/// quorum for it or from a history catch-up verified; after
/// [`Rbc::prune_below`] nothing below the horizon is kept.
#[derive(Debug, Default)]
pub(super) struct Rbc {
    slots: BTreeMap<(Round, ReplicaId), Slot>,
    bodies: BTreeMap<VertexHash, Arc<Vertex>>,
}

impl Rbc {
    /// Slots held.
    pub(super) fn slots_len(&self) -> usize {
        self.slots.len()
    }

    /// Bodies held.
    pub(super) fn bodies_len(&self) -> usize {
        self.bodies.len()
    }

    /// Every body held, by hash.
    pub(super) fn bodies(&self) -> impl Iterator<Item = (&VertexHash, &Arc<Vertex>)> {
        self.bodies.iter()
    }

    /// The body of `hash`, if held.
    pub(super) fn body(&self, hash: &VertexHash) -> Option<&Arc<Vertex>> {
        self.bodies.get(hash)
    }

    /// The slot of `(round, author)`, made if new, noting when its first
    /// message came.
    fn touch(
        slots: &mut BTreeMap<(Round, ReplicaId), Slot>,
        (round, author): (Round, ReplicaId),
        now: Micros,
    ) -> &mut Slot {
        let slot = slots.entry((round, author)).or_default();
        slot.first_seen.get_or_insert(now);
        slot
    }

    /// Takes `from`'s VAL `v` (valid, in the window, of hash `hash`): its
    /// body, or `None` if the slot kept another VAL (an equivocation,
    /// recorded). A VAL for another hash than the author voted for in its
    /// own slot is recorded as an equivocation too, but kept.
    pub(super) fn take_val(
        &mut self,
        from: ReplicaId,
        hash: VertexHash,
        v: Vertex,
        now: Micros,
        step: &mut Step,
    ) -> Option<Arc<Vertex>> {
        let (round, author) = (v.round, v.author);
        let slot = Self::touch(&mut self.slots, (round, author), now);
        match &slot.val {
            Some((existing, _)) if *existing != hash => {
                step.blame(
                    from,
                    FaultKind::Equivocation {
                        round,
                        author,
                        first: *existing,
                        second: hash,
                        vote: None,
                    },
                );
                None
            }
            Some((_, body)) => Some(body.clone()),
            None => {
                if let Some(voted) = slot.author_vote(author).filter(|h| *h != hash) {
                    // The author voted in its own slot for another vertex
                    // than the VAL it sent here: it sent two VALs.
                    step.blame(
                        from,
                        FaultKind::Equivocation {
                            round,
                            author,
                            first: voted,
                            second: hash,
                            vote: None,
                        },
                    );
                }
                let body = Arc::new(v);
                slot.val = Some((hash, body.clone()));
                self.bodies.insert(hash, body.clone());
                Some(body)
            }
        }
    }

    /// Records `from`'s vote of `kind` for `hash` in slot `(round, author)`.
    /// Returns the ECHOs and READYs `hash` has now, or `None` if the vote is
    /// not new (a repeat, or a conflicting vote — recorded as a fault).
    pub(super) fn record_vote(
        &mut self,
        from: ReplicaId,
        kind: VoteKind,
        (round, author): (Round, ReplicaId),
        hash: VertexHash,
        now: Micros,
        step: &mut Step,
    ) -> Option<(usize, usize)> {
        let slot = Self::touch(&mut self.slots, (round, author), now);
        if from == author {
            // An honest author votes in its own slot only for the one VAL
            // it sent everyone (a slot's `val` is the author's own VAL).
            if let Some((val, _)) = slot.val.as_ref().filter(|(h, _)| *h != hash) {
                step.blame(
                    from,
                    FaultKind::Equivocation {
                        round,
                        author,
                        first: *val,
                        second: hash,
                        vote: Some(kind),
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
                step.blame(
                    from,
                    FaultKind::ConflictingVote {
                        kind,
                        round,
                        author,
                        first,
                        second: hash,
                    },
                );
                return None;
            }
            Some(_) => return None,
            None => {
                votes.insert(from, hash);
            }
        }
        Some((
            Slot::count(&slot.echoes, &hash),
            Slot::count(&slot.readies, &hash),
        ))
    }

    /// Casts this replica's vote of `kind` for `hash` in an existing slot:
    /// `false` if it voted that kind there already.
    pub(super) fn cast(
        &mut self,
        kind: VoteKind,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
    ) -> bool {
        let Some(slot) = self.slots.get_mut(&(round, author)) else {
            // Every caller casts right after `take_val` or `record_vote`
            // made the slot.
            debug_assert!(false, "a vote is cast only in a slot that exists");
            return false;
        };
        let mine = match kind {
            VoteKind::Echo => &mut slot.my_echo,
            VoteKind::Ready => &mut slot.my_ready,
        };
        if mine.is_some() {
            return false;
        }
        *mine = Some(hash);
        true
    }

    /// Whether a body of `hash` is wanted for slot `(round, author)`: the
    /// slot has not delivered, has no such body, and a READY names it.
    pub(super) fn wants_body(&self, round: Round, author: ReplicaId, hash: &VertexHash) -> bool {
        self.slots.get(&(round, author)).is_some_and(|slot| {
            slot.delivered.is_none()
                && slot.body(hash).is_none()
                && slot.readies.values().any(|h| h == hash)
        })
    }

    /// Keeps a fetched body (see [`Rbc::wants_body`]).
    pub(super) fn keep_fetched(
        &mut self,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
        body: Arc<Vertex>,
    ) {
        self.bodies.insert(hash, body.clone());
        if let Some(slot) = self.slots.get_mut(&(round, author)) {
            slot.fetched = Some((hash, body));
        }
    }

    /// Delivers slot `(round, author)` if a hash has `threshold` READYs and
    /// its body is here; asks for the body (once) if not.
    pub(super) fn deliver(
        &mut self,
        round: Round,
        author: ReplicaId,
        threshold: usize,
        me: ReplicaId,
    ) -> Delivery {
        let Some(slot) = self.slots.get_mut(&(round, author)) else {
            // Asked after a message touched the slot, a fetched body it
            // wanted, or `stalled_fetches` listed it; nothing prunes between.
            debug_assert!(false, "delivery is tried only for a slot that exists");
            return Delivery::Nothing;
        };
        if slot.delivered.is_some() {
            return Delivery::Nothing;
        }
        let Some(hash) = slot.ready_quorum(threshold) else {
            return Delivery::Nothing;
        };
        match slot.body(&hash).cloned() {
            Some(body) => {
                slot.delivered = Some(hash);
                Delivery::Deliver {
                    hash,
                    body,
                    first_seen: slot.first_seen,
                }
            }
            None if !slot.fetch_sent => {
                slot.fetch_sent = true;
                Delivery::Fetch {
                    hash,
                    holders: slot.vouchers(hash, me),
                }
            }
            None => Delivery::Nothing,
        }
    }

    /// Slots with a READY quorum whose body was asked for and never came.
    pub(super) fn stalled_fetches(&self) -> Vec<(Round, ReplicaId)> {
        self.slots
            .iter()
            .filter(|(_, s)| s.delivered.is_none() && s.fetch_sent)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Lets [`Rbc::deliver`] ask for slot `(round, author)`'s body again.
    pub(super) fn rearm_fetch(&mut self, round: Round, author: ReplicaId) {
        if let Some(slot) = self.slots.get_mut(&(round, author)) {
            slot.fetch_sent = false;
        }
    }

    /// Marks slot `(round, author)` delivered with `hash`, whose body a
    /// verified history carries (catch-up): `false`, and nothing kept, if the
    /// slot delivered another hash.
    pub(super) fn adopt(
        &mut self,
        round: Round,
        author: ReplicaId,
        hash: VertexHash,
        body: &Arc<Vertex>,
    ) -> bool {
        let slot = self.slots.entry((round, author)).or_default();
        match slot.delivered {
            Some(d) if d != hash => return false,
            _ => slot.delivered = Some(hash),
        }
        self.bodies.insert(hash, body.clone());
        true
    }

    /// Restores a slot's delivery from a `Delivered` record.
    pub(super) fn restore_delivered(&mut self, round: Round, author: ReplicaId, hash: VertexHash) {
        self.slots.entry((round, author)).or_default().delivered = Some(hash);
    }

    /// Restores this replica's own vote. A vote restored is a vote cast: it
    /// counts toward the slot's thresholds exactly as it did before the
    /// crash (through the node's own inbox). Restoring only the flag that
    /// stops a second vote left a slot pending at the crash needing 2f + 1
    /// votes from the others, and a cluster with one silent replica stalled
    /// for ever.
    pub(super) fn restore_vote(
        &mut self,
        me: ReplicaId,
        kind: VoteKind,
        (round, author): (Round, ReplicaId),
        hash: VertexHash,
        body: Option<&Arc<Vertex>>,
    ) {
        let slot = self.slots.entry((round, author)).or_default();
        match kind {
            VoteKind::Echo => {
                slot.my_echo = Some(hash);
                slot.echoes.insert(me, hash);
                if let Some(b) = body {
                    self.bodies.insert(hash, b.clone());
                    slot.val = Some((hash, b.clone()));
                }
            }
            VoteKind::Ready => {
                slot.my_ready = Some(hash);
                slot.readies.insert(me, hash);
            }
        }
    }

    /// This replica's own votes as durable records: an ECHO with the body it
    /// echoed, unless the DAG holds it (its `Delivered` record carries it
    /// then).
    pub(super) fn vote_records<'a>(&'a self, dag: &'a Dag) -> impl Iterator<Item = Durable> + 'a {
        self.slots.iter().flat_map(move |((round, author), slot)| {
            slot.own_votes()
                .into_iter()
                .filter_map(move |(kind, hash)| {
                    let hash = hash?;
                    let body = match kind {
                        VoteKind::Echo if dag.get(&hash).is_none() => slot.body(&hash).cloned(),
                        _ => None,
                    };
                    Some(Durable::Vote {
                        kind,
                        round: *round,
                        author: *author,
                        hash,
                        body,
                    })
                })
        })
    }

    /// Slots from round `lo` up, in `(round, author)` order.
    pub(super) fn slots_from(
        &self,
        lo: Round,
    ) -> impl Iterator<Item = (&(Round, ReplicaId), &Slot)> {
        self.slots.range((lo, ReplicaId(0))..)
    }

    /// The highest round of a slot `peer` authored or voted in (0 if none).
    pub(super) fn last_round_from(&self, peer: ReplicaId) -> Round {
        self.slots
            .iter()
            .rev()
            .find(|((_, author), slot)| {
                *author == peer
                    || slot.echoes.contains_key(&peer)
                    || slot.readies.contains_key(&peer)
            })
            .map_or(Round(0), |((r, _), _)| *r)
    }

    /// Drops the slots and bodies below `horizon`.
    pub(super) fn prune_below(&mut self, horizon: Round) {
        self.slots = self.slots.split_off(&(horizon, ReplicaId(0)));
        self.bodies.retain(|_, v| v.round >= horizon);
    }
}
