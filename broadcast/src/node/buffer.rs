//! Delivered vertices entering the DAG once everything they reference has,
//! and the [`Buffer`] they wait in until then.

use super::*;

/// Delivered vertices waiting for vertices they reference to enter the DAG.
///
/// Invariant: every buffered vertex is delivered, at or above the horizon,
/// not in the DAG, and misses at least one reference it is listed under in
/// `waiting_on` (the lists may name vertices no longer buffered).
#[derive(Debug, Default)]
pub(super) struct Buffer {
    buffered: BTreeMap<VertexHash, Arc<Vertex>>,
    /// Missing reference → the buffered vertices that wait for it.
    waiting_on: BTreeMap<VertexHash, BTreeSet<VertexHash>>,
}

impl Buffer {
    /// Vertices buffered.
    pub(super) fn len(&self) -> usize {
        self.buffered.len()
    }

    /// Whether `hash` is buffered.
    pub(super) fn contains(&self, hash: &VertexHash) -> bool {
        self.buffered.contains_key(hash)
    }

    /// The buffered vertices.
    pub(super) fn vertices(&self) -> impl Iterator<Item = &Arc<Vertex>> {
        self.buffered.values()
    }

    /// The rounds of the references buffered vertices miss.
    pub(super) fn missing_rounds<'a>(&'a self, dag: &'a Dag) -> impl Iterator<Item = Round> + 'a {
        self.buffered
            .values()
            .flat_map(|v| v.references())
            .filter(|r| !dag.satisfies(r))
            .map(|r| r.round)
    }

    /// Buffers `v` (of hash `hash`) until every one of `missing` enters.
    fn wait(&mut self, hash: VertexHash, v: Arc<Vertex>, missing: Vec<VertexHash>) {
        for m in missing {
            self.waiting_on.entry(m).or_default().insert(hash);
        }
        self.buffered.insert(hash, v);
    }

    /// `hash` entered the DAG: the buffered vertices that waited for it.
    fn take_waiters(&mut self, hash: &VertexHash) -> Vec<(VertexHash, Arc<Vertex>)> {
        let Some(waiters) = self.waiting_on.remove(hash) else {
            return Vec::new();
        };
        waiters
            .into_iter()
            .filter_map(|w| self.buffered.get(&w).map(|b| (w, b.clone())))
            .collect()
    }

    /// Everything buffered, emptying the buffer.
    pub(super) fn take_all(&mut self) -> BTreeMap<VertexHash, Arc<Vertex>> {
        self.waiting_on.clear();
        std::mem::take(&mut self.buffered)
    }
}

impl Node {
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
                step.blame(
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
                self.buffer.wait(hash, v, missing);
                continue;
            }
            self.buffer.buffered.remove(&hash);
            self.dag.insert(v.clone(), hash);
            self.own.note_delivered(&v, hash, self.commit.ordered());
            if !self.restoring {
                step.write(Durable::Delivered(v.clone()));
            }
            work.extend(self.buffer.take_waiters(&hash));
        }
    }
}
