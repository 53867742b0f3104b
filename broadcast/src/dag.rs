//! The local DAG: vertices that were delivered by reliable broadcast *and*
//! whose references are all in the DAG (or below the GC horizon). Only these
//! count for vertex creation, coin shares and commits (docs/design.md §3.2).

use crate::vertex::{Round, Vertex, VertexHash, VertexRef};
use belfry_coin::ReplicaId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The DAG above the GC horizon.
#[derive(Debug, Default)]
pub struct Dag {
    rounds: BTreeMap<Round, BTreeMap<ReplicaId, (VertexHash, Arc<Vertex>)>>,
    by_hash: BTreeMap<VertexHash, Arc<Vertex>>,
    horizon: Round,
}

impl Dag {
    /// The GC horizon: vertices below it are gone and references below it
    /// count as present.
    pub fn horizon(&self) -> Round {
        self.horizon
    }

    /// Number of vertices held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the DAG holds no vertex.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether a reference is satisfied: below the horizon, or present with the
    /// slot it claims.
    pub fn satisfies(&self, r: &VertexRef) -> bool {
        r.round < self.horizon || self.get(&r.hash).is_some()
    }

    /// A reference that names a present vertex with another slot than the one
    /// it claims: the referencing vertex lies.
    pub fn contradicts(&self, r: &VertexRef) -> bool {
        self.get(&r.hash)
            .is_some_and(|v| v.round != r.round || v.author != r.author)
    }

    /// The vertex with this hash.
    pub fn get(&self, hash: &VertexHash) -> Option<&Arc<Vertex>> {
        self.by_hash.get(hash)
    }

    /// The vertex of a slot.
    pub fn slot(&self, round: Round, author: ReplicaId) -> Option<&Arc<Vertex>> {
        self.rounds
            .get(&round)
            .and_then(|r| r.get(&author))
            .map(|(_, v)| v)
    }

    /// The vertices of a round with their hashes, by author.
    pub fn round(&self, round: Round) -> impl Iterator<Item = (VertexHash, &Arc<Vertex>)> {
        self.rounds
            .get(&round)
            .into_iter()
            .flat_map(|r| r.values().map(|(h, v)| (*h, v)))
    }

    /// Every vertex held, in `(round, author)` order.
    pub fn vertices(&self) -> impl Iterator<Item = &Arc<Vertex>> {
        self.rounds
            .values()
            .flat_map(|r| r.values().map(|(_, v)| v))
    }

    /// References to the vertices of a round, by author.
    pub fn refs(&self, round: Round) -> impl Iterator<Item = VertexRef> + '_ {
        self.round(round).map(|(hash, v)| VertexRef {
            round: v.round,
            author: v.author,
            hash,
        })
    }

    /// How many vertices a round holds.
    pub fn count(&self, round: Round) -> usize {
        self.rounds.get(&round).map_or(0, |r| r.len())
    }

    /// The highest round holding any vertex.
    pub fn highest_round(&self) -> Round {
        self.rounds.keys().next_back().copied().unwrap_or_default()
    }

    /// Inserts a vertex (its slot must be empty: reliable broadcast delivers at
    /// most one vertex per slot).
    pub fn insert(&mut self, v: Arc<Vertex>, hash: VertexHash) {
        self.rounds
            .entry(v.round)
            .or_default()
            .insert(v.author, (hash, v.clone()));
        self.by_hash.insert(hash, v);
    }

    /// Raises the horizon and frees every vertex below it.
    pub fn prune_below(&mut self, horizon: Round) {
        if horizon <= self.horizon {
            return;
        }
        self.horizon = horizon;
        let kept = self.rounds.split_off(&horizon);
        for (hash, _) in self.rounds.values().flat_map(|r| r.values()) {
            self.by_hash.remove(hash);
        }
        self.rounds = kept;
    }

    /// Hashes of the vertices in rounds `target.round ..= up_to` that have a
    /// strong path (parent edges only) to `target`, `target` included.
    pub fn strong_reachers(&self, target: &VertexRef, up_to: Round) -> BTreeSet<VertexHash> {
        let mut reach = BTreeSet::new();
        if self.get(&target.hash).is_none() {
            return reach;
        }
        reach.insert(target.hash);
        let mut r = target.round.next();
        while r <= up_to {
            let found: Vec<VertexHash> = self
                .round(r)
                .filter(|(_, v)| v.parents.iter().any(|p| reach.contains(&p.hash)))
                .map(|(h, _)| h)
                .collect();
            if found.is_empty() {
                break;
            }
            reach.extend(found);
            r = r.next();
        }
        reach
    }

    /// The causal history of `from` (every edge: prev, parents, weak) at or
    /// above `floor`, `from` included, as a set of hashes.
    pub fn causal_history(&self, from: &VertexHash, floor: Round) -> BTreeSet<VertexHash> {
        self.causal_history_until(from, floor, |_| false)
    }

    /// Like [`Dag::causal_history`], but not entering vertices for which
    /// `stop` holds (nor counting them). Ordering uses it with "already
    /// ordered": an ordered vertex's whole history was ordered with it, so the
    /// walk only visits what is new.
    pub fn causal_history_until(
        &self,
        from: &VertexHash,
        floor: Round,
        stop: impl Fn(&VertexRef) -> bool,
    ) -> BTreeSet<VertexHash> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![*from];
        while let Some(h) = stack.pop() {
            let Some(v) = self.get(&h) else { continue };
            if v.round < floor || !seen.insert(h) {
                continue;
            }
            for r in v.references() {
                if r.round >= floor && !seen.contains(&r.hash) && !stop(r) {
                    stack.push(r.hash);
                }
            }
        }
        seen
    }
}
