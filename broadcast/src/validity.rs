//! Validity rules a vertex must pass on its own (docs/design.md §3.2): they read only
//! the vertex itself — presence of its references is checked when it enters the
//! DAG — never local history that replicas prune at different times.

use crate::config::Config;
use crate::vertex::{Digest, Round, Vertex, VertexRef};
use belfry_coin::ReplicaId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Which validity rule a vertex breaks (docs/design.md §3.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VertexError {
    /// A vertex in round 0.
    #[error("round 0 holds no vertex")]
    RoundZero,
    /// The author is not a replica.
    #[error("author {0} is not a replica")]
    UnknownAuthor(ReplicaId),
    /// A parent outside the round below.
    #[error("parent in {parent} for a vertex of {round}")]
    ParentRound {
        /// The parent's round.
        parent: Round,
        /// The vertex's round.
        round: Round,
    },
    /// A parent by an author outside the cluster.
    #[error("parent by unknown author {0}")]
    ParentUnknownAuthor(ReplicaId),
    /// Two parents by one author.
    #[error("two parents by {0}")]
    TwoParents(ReplicaId),
    /// A round-1 vertex with parents.
    #[error("a round-1 vertex has no parents")]
    RoundOneParents,
    /// Fewer than Q parents.
    #[error("{got} parents, need Q = {need}")]
    TooFewParents {
        /// Distinct parent authors.
        got: usize,
        /// Q.
        need: usize,
    },
    /// `prev` is not an earlier vertex of the same author.
    #[error("prev must be an earlier vertex of the same author, got {round} of {author}")]
    BadPrev {
        /// Its round.
        round: Round,
        /// Its author.
        author: ReplicaId,
    },
    /// More weak edges than allowed.
    #[error("{got} weak edges, limit {limit}")]
    TooManyWeakEdges {
        /// Weak edges.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A weak edge to a round that is not at least two below.
    #[error("weak edge to {to} from {round}")]
    WeakEdgeRound {
        /// The edge's round.
        to: Round,
        /// The vertex's round.
        round: Round,
    },
    /// A weak edge to an unknown author, or two to one slot.
    #[error("weak edge to an unknown author or a slot twice")]
    WeakEdgeSlot,
    /// More reports than allowed.
    #[error("{got} reports, limit {limit}")]
    TooManyReports {
        /// Reports.
        got: usize,
        /// The limit.
        limit: usize,
    },
    /// A report received after the vertex's clock.
    #[error("a report received after the vertex clock")]
    ReportAfterClock,
    /// Report times that decrease.
    #[error("report times decrease within the vertex")]
    ReportTimesDecrease,
    /// One digest reported twice in the vertex.
    #[error("digest {0:?} reported twice")]
    DigestTwice(Digest),
    /// A reference whose hash names a vertex of another slot (found when
    /// the vertex enters the DAG).
    #[error("reference to {:?} names the wrong slot ({} of {})", .0.hash, .0.round, .0.author)]
    WrongSlotReference(VertexRef),
    /// A catch-up vertex in a slot where reliable broadcast delivered
    /// another one: a committed history cannot contain it.
    #[error("catch-up vertex contradicts the one delivered in its slot")]
    ContradictsDelivered,
}

/// Checks every rule that reads only the vertex; returns what is wrong.
pub fn check_vertex(config: &Config, v: &Vertex) -> Result<(), VertexError> {
    if v.round.0 == 0 {
        return Err(VertexError::RoundZero);
    }
    if v.author.index() >= config.n {
        return Err(VertexError::UnknownAuthor(v.author));
    }
    // Parents: >= Q distinct authors of round − 1 (none in round 1).
    let want = v.round.prev();
    let mut authors = BTreeSet::new();
    for p in &v.parents {
        if p.round != want {
            return Err(VertexError::ParentRound {
                parent: p.round,
                round: v.round,
            });
        }
        if p.author.index() >= config.n {
            return Err(VertexError::ParentUnknownAuthor(p.author));
        }
        if !authors.insert(p.author) {
            return Err(VertexError::TwoParents(p.author));
        }
    }
    if v.round == Round(1) {
        if !v.parents.is_empty() {
            return Err(VertexError::RoundOneParents);
        }
    } else if authors.len() < config.quorum() {
        return Err(VertexError::TooFewParents {
            got: authors.len(),
            need: config.quorum(),
        });
    }
    if let Some(prev) = &v.prev {
        if prev.author != v.author || prev.round >= v.round {
            return Err(VertexError::BadPrev {
                round: prev.round,
                author: prev.author,
            });
        }
    }
    if v.weak.len() > config.max_weak_edges() {
        return Err(VertexError::TooManyWeakEdges {
            got: v.weak.len(),
            limit: config.max_weak_edges(),
        });
    }
    let mut weak_seen = BTreeSet::new();
    for w in &v.weak {
        if w.round.0.saturating_add(1) >= v.round.0 || w.round.0 == 0 {
            return Err(VertexError::WeakEdgeRound {
                to: w.round,
                round: v.round,
            });
        }
        if w.author.index() >= config.n || !weak_seen.insert((w.round, w.author)) {
            return Err(VertexError::WeakEdgeSlot);
        }
    }
    if v.reports.len() > config.max_reports_per_vertex {
        return Err(VertexError::TooManyReports {
            got: v.reports.len(),
            limit: config.max_reports_per_vertex,
        });
    }
    let mut last = belfry_coin::clock::Micros::ZERO;
    let mut digests = BTreeSet::new();
    for r in &v.reports {
        if r.recv_time > v.clock {
            return Err(VertexError::ReportAfterClock);
        }
        if r.recv_time < last {
            return Err(VertexError::ReportTimesDecrease);
        }
        last = r.recv_time;
        if !digests.insert(r.digest) {
            return Err(VertexError::DigestTwice(r.digest));
        }
    }
    Ok(())
}
