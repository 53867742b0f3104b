//! DAG vertices, their canonical bytes and their hash (docs/design.md §3.2).

use belfry_coin::clock::Micros;
use belfry_coin::{sha3, ReplicaId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A DAG round. Round 1 is the first; wave `w` spans rounds `4w − 3 ..= 4w`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u64);

impl Round {
    /// The wave this round belongs to (round 0, which holds no vertex, maps to wave 0).
    pub const fn wave(self) -> belfry_coin::Wave {
        belfry_coin::Wave(self.0.div_ceil(4))
    }

    /// The previous round (saturating at 0).
    pub const fn prev(self) -> Round {
        Round(self.0.saturating_sub(1))
    }

    /// The next round.
    pub const fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round {}", self.0)
    }
}

/// The round of wave `w`'s leader vertex: `4w − 3`.
pub const fn leader_round(w: belfry_coin::Wave) -> Round {
    Round((4 * w.0).saturating_sub(3))
}

/// The last round of wave `w`: `4w`.
pub const fn last_round(w: belfry_coin::Wave) -> Round {
    Round(4 * w.0)
}

/// SHA3-256 of a vertex's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VertexHash(pub [u8; 32]);

belfry_coin::hash_ord!(VertexHash);

impl fmt::Debug for VertexHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(&self.0[..6]))
    }
}

/// A 32-byte client digest (a commitment: the content stays with the client).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

belfry_coin::hash_ord!(Digest);

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", hex::encode(&self.0[..6]))
    }
}

/// A reference to a vertex: its slot and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VertexRef {
    /// Round of the referenced vertex.
    pub round: Round,
    /// Its author.
    pub author: ReplicaId,
    /// Its hash.
    pub hash: VertexHash,
}

/// An author's report that it first saw `digest` at `recv_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report {
    /// The client digest.
    pub digest: Digest,
    /// When the author first saw it (µs, its own clock).
    pub recv_time: Micros,
}

/// A DAG vertex (docs/design.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    /// Its round (>= 1).
    pub round: Round,
    /// Its author.
    pub author: ReplicaId,
    /// The author's latest earlier vertex (any round); `None` for its first.
    pub prev: Option<VertexRef>,
    /// Strong edges: >= Q distinct authors of `round − 1` (none in round 1).
    pub parents: Vec<VertexRef>,
    /// Weak edges: vertices of rounds below `round − 1` not otherwise reachable.
    pub weak: Vec<VertexRef>,
    /// The author's clock at creation.
    pub clock: Micros,
    /// What the author reports having seen, in the order it saw it.
    pub reports: Vec<Report>,
}

fn put_ref(out: &mut Vec<u8>, r: &VertexRef) {
    out.extend_from_slice(&r.round.0.to_be_bytes());
    out.extend_from_slice(&r.author.0.to_be_bytes());
    out.extend_from_slice(&r.hash.0);
}

impl Vertex {
    /// Domain tag of the canonical bytes.
    pub const DOMAIN: &'static [u8] = b"belfry-vertex-v1";

    /// The canonical bytes:
    /// `"belfry-vertex-v1" || round u64 || author u16 || prev (0x00 | 0x01 ref)
    ///  || count u16 || parents || count u16 || weak || clock u64
    ///  || count u32 || (digest[32] || recv_time u64)*`, refs as
    /// `round u64 || author u16 || hash[32]`.
    ///
    /// Counts are checked against the limits before a vertex is created or
    /// accepted, so they always fit their fields.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_len());
        self.write_canonical(&mut out);
        out
    }

    /// The length of [`Vertex::canonical_bytes`], without building them.
    pub fn canonical_len(&self) -> usize {
        Self::DOMAIN.len()
            + 8
            + 2
            + if self.prev.is_some() { 43 } else { 1 }
            + 2
            + 42 * self.parents.len()
            + 2
            + 42 * self.weak.len()
            + 8
            + 4
            + 40 * self.reports.len()
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(Self::DOMAIN);
        out.extend_from_slice(&self.round.0.to_be_bytes());
        out.extend_from_slice(&self.author.0.to_be_bytes());
        match &self.prev {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                put_ref(out, p);
            }
        }
        out.extend_from_slice(&(self.parents.len() as u16).to_be_bytes());
        for p in &self.parents {
            put_ref(out, p);
        }
        out.extend_from_slice(&(self.weak.len() as u16).to_be_bytes());
        for w in &self.weak {
            put_ref(out, w);
        }
        out.extend_from_slice(&self.clock.0.to_be_bytes());
        out.extend_from_slice(&(self.reports.len() as u32).to_be_bytes());
        for r in &self.reports {
            out.extend_from_slice(&r.digest.0);
            out.extend_from_slice(&r.recv_time.0.to_be_bytes());
        }
    }

    /// SHA3-256 of the canonical bytes.
    pub fn hash(&self) -> VertexHash {
        VertexHash(sha3(&[&self.canonical_bytes()]))
    }

    /// The reference to this vertex.
    pub fn reference(&self) -> VertexRef {
        VertexRef {
            round: self.round,
            author: self.author,
            hash: self.hash(),
        }
    }

    /// Every reference of this vertex: prev, parents, weak edges.
    pub fn references(&self) -> impl Iterator<Item = &VertexRef> {
        self.prev
            .iter()
            .chain(self.parents.iter())
            .chain(self.weak.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vertex {
        Vertex {
            round: Round(2),
            author: ReplicaId(1),
            prev: Some(VertexRef {
                round: Round(1),
                author: ReplicaId(1),
                hash: VertexHash([7; 32]),
            }),
            parents: vec![VertexRef {
                round: Round(1),
                author: ReplicaId(0),
                hash: VertexHash([8; 32]),
            }],
            weak: vec![],
            clock: Micros(0x0102),
            reports: vec![Report {
                digest: Digest([9; 32]),
                recv_time: Micros(0x0101),
            }],
        }
    }

    #[test]
    fn canonical_bytes_follow_the_design_layout() {
        let b = sample().canonical_bytes();
        let mut expected = b"belfry-vertex-v1".to_vec();
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1u16.to_be_bytes());
        expected.push(1);
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&1u16.to_be_bytes());
        expected.extend_from_slice(&[7; 32]);
        expected.extend_from_slice(&1u16.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&0u16.to_be_bytes());
        expected.extend_from_slice(&[8; 32]);
        expected.extend_from_slice(&0u16.to_be_bytes());
        expected.extend_from_slice(&0x0102u64.to_be_bytes());
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&[9; 32]);
        expected.extend_from_slice(&0x0101u64.to_be_bytes());
        assert_eq!(b, expected);
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let base = sample().hash();
        let mut v = sample();
        v.clock = Micros(0x0103);
        assert_ne!(v.hash(), base);
        let mut v = sample();
        v.prev = None;
        assert_ne!(v.hash(), base);
        let mut v = sample();
        v.reports[0].recv_time = Micros(0);
        assert_ne!(v.hash(), base);
    }

    #[test]
    fn rounds_map_to_waves() {
        use belfry_coin::Wave;
        assert_eq!(Round(1).wave(), Wave(1));
        assert_eq!(Round(4).wave(), Wave(1));
        assert_eq!(Round(5).wave(), Wave(2));
        assert_eq!(leader_round(Wave(2)), Round(5));
        assert_eq!(last_round(Wave(2)), Round(8));
    }
}
