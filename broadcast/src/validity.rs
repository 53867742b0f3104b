//! Validity rules a vertex must pass on its own (docs/design.md §3.2): they read only
//! the vertex itself — presence of its references is checked when it enters the
//! DAG — never local history that replicas prune at different times.

use crate::config::Config;
use crate::vertex::{Round, Vertex};
use std::collections::BTreeSet;

/// Checks every rule that reads only the vertex; returns what is wrong.
pub fn check_vertex(config: &Config, v: &Vertex) -> Result<(), String> {
    if v.round.0 == 0 {
        return Err("round 0 holds no vertex".into());
    }
    if v.author.index() >= config.n {
        return Err(format!("author {} is not a replica", v.author));
    }
    // Parents: >= Q distinct authors of round − 1 (none in round 1).
    let want = v.round.prev();
    let mut authors = BTreeSet::new();
    for p in &v.parents {
        if p.round != want {
            return Err(format!("parent in {} for a vertex of {}", p.round, v.round));
        }
        if p.author.index() >= config.n {
            return Err(format!("parent by unknown author {}", p.author));
        }
        if !authors.insert(p.author) {
            return Err(format!("two parents by {}", p.author));
        }
    }
    if v.round == Round(1) {
        if !v.parents.is_empty() {
            return Err("a round-1 vertex has no parents".into());
        }
    } else if authors.len() < config.quorum() {
        return Err(format!(
            "{} parents, need Q = {}",
            authors.len(),
            config.quorum()
        ));
    }
    if let Some(prev) = &v.prev {
        if prev.author != v.author || prev.round >= v.round {
            return Err(format!(
                "prev must be an earlier vertex of the same author, got {} of {}",
                prev.round, prev.author
            ));
        }
    }
    if v.weak.len() > config.max_weak_edges() {
        return Err(format!(
            "{} weak edges, limit {}",
            v.weak.len(),
            config.max_weak_edges()
        ));
    }
    let mut weak_seen = BTreeSet::new();
    for w in &v.weak {
        if w.round.0.saturating_add(1) >= v.round.0 || w.round.0 == 0 {
            return Err(format!("weak edge to {} from {}", w.round, v.round));
        }
        if w.author.index() >= config.n || !weak_seen.insert((w.round, w.author)) {
            return Err("weak edge to an unknown author or a slot twice".into());
        }
    }
    if v.reports.len() > config.max_reports_per_vertex {
        return Err(format!(
            "{} reports, limit {}",
            v.reports.len(),
            config.max_reports_per_vertex
        ));
    }
    let mut last = belfry_coin::clock::Micros::ZERO;
    let mut digests = BTreeSet::new();
    for r in &v.reports {
        if r.recv_time > v.clock {
            return Err("a report received after the vertex clock".into());
        }
        if r.recv_time < last {
            return Err("report times decrease within the vertex".into());
        }
        last = r.recv_time;
        if !digests.insert(r.digest) {
            return Err(format!("digest {:?} reported twice", r.digest));
        }
    }
    Ok(())
}
