//! The serving side of catch-up (DESIGN.md 3.8): log ranges with their
//! consistency proofs, state snapshots and committed leaders' histories, in
//! pages, each peer within a budget so that nobody can make a replica work
//! without end.

use super::*;
use catchup::SERVE_PAGES_PER_S;

impl ReplicaCore {
    pub(super) fn take_serve_budget(&mut self, peer: ReplicaId, pages: u64) -> bool {
        let now = self.now;
        let Some(b) = self.served.get_mut(peer.index()) else {
            return false;
        };
        if now.saturating_sub(b.0) >= Micros::from_secs(1) {
            *b = (now, 0);
        }
        if b.1.saturating_add(pages) > SERVE_PAGES_PER_S {
            return false;
        }
        b.1 += pages;
        true
    }

    pub(super) fn serve_log(&mut self, to: ReplicaId, from: u64, out: &mut CoreStep) {
        if to.index() >= self.config.broadcast.n {
            return;
        }
        // Only entries a signed head covers can be checked by the asker:
        // the page ends at the head, and carries the proof from its end to it.
        let head = self.log.latest_head().filter(|h| from < h.head.tree_size);
        let Some(head) = head else {
            self.cannot_serve(to, wire::Unserved::Log, out);
            return;
        };
        if !self.take_serve_budget(to, 1) {
            return;
        }
        let size = head.head.tree_size;
        let end = size.min(from.saturating_add(wire::MAX_LOG_PAGE as u64));
        let Ok(proof) = self.log.consistency_proof(end, size) else {
            return;
        };
        let m = PeerMessage::LogRange {
            from,
            entries: self.log.entries(from, end),
            head: Some(head),
            proof,
        };
        self.send_peer(Target::One(to), &m, out);
    }

    /// Tells a peer its request cannot be served here (within its
    /// budget, like any answer).
    fn cannot_serve(&mut self, to: ReplicaId, what: wire::Unserved, out: &mut CoreStep) {
        if self.take_serve_budget(to, 1) {
            self.send_peer(Target::One(to), &PeerMessage::CannotServe(what), out);
        }
    }

    pub(super) fn serve_state(&mut self, to: ReplicaId, at_most: u64, out: &mut CoreStep) {
        let Some((size, (seq, cp))) = self.recent_states.range(..=at_most).next_back() else {
            self.cannot_serve(to, wire::Unserved::State, out);
            return;
        };
        let size = *size;
        let snapshot = wire::StateSnapshot {
            sequencer: seq.clone(),
            checkpoint: cp.clone(),
        };
        // One page's worth up front pays for the encoding.
        if !self.take_serve_budget(to, 1) {
            return;
        }
        let Ok(bytes) = postcard::to_allocvec(&snapshot) else {
            return;
        };
        let page_bytes = self
            .config
            .catchup_page_bytes
            .clamp(1, wire::STATE_PAGE_BYTES);
        let pages = bytes.len().div_ceil(page_bytes).max(1);
        let Ok(pages) = u32::try_from(pages) else {
            return;
        };
        if pages > wire::MAX_STATE_PAGES || !self.take_serve_budget(to, u64::from(pages) - 1) {
            // Larger than any peer accepts, or this peer asked too much:
            // refusing is the honest answer; the peer asks the others.
            return;
        }
        for (page, chunk) in bytes.chunks(page_bytes).enumerate() {
            let m = PeerMessage::State {
                tree_size: size,
                page: page as u32,
                pages,
                bytes: chunk.to_vec(),
            };
            self.send_peer(Target::One(to), &m, out);
        }
    }

    /// Answers `FetchLeaders`: the leaders of the Ticks after `from_wave`
    /// (read back from the end of the log), with the vertices of their
    /// causal histories from `floor` on, in pages.
    pub(super) fn serve_leaders(
        &mut self,
        to: ReplicaId,
        from_wave: u64,
        floor: u64,
        out: &mut CoreStep,
    ) {
        if to.index() >= self.config.broadcast.n || from_wave >= self.node.last_decided_wave().0 {
            return;
        }
        // Each answer costs a scan and a walk of the DAG: charge a share of
        // the peer's budget up front, before doing the work.
        if !self.take_serve_budget(to, 8) {
            return;
        }
        // Leaders older than gc_depth rounds are gone from the DAG anyway:
        // read back at most that many Ticks.
        let max_ticks = self.config.broadcast.gc_depth / 4 + 2;
        let mut leaders = Vec::new();
        let mut i = self.log.len();
        let stop = i.saturating_sub(MAX_LEADER_SCAN);
        let mut reached = false;
        while i > stop && (leaders.len() as u64) <= max_ticks {
            i -= 1;
            if let Some(Entry::Tick(t)) = self.log.entry(i) {
                if t.wave <= from_wave {
                    reached = true;
                    break;
                }
                leaders.push(belfry_broadcast::VertexHash(t.leader));
            }
        }
        if !reached && i > 0 {
            // Too far back: the asker needs a snapshot.
            self.cannot_serve(to, wire::Unserved::Leaders, out);
            return;
        }
        if !reached && from_wave > 0 {
            self.cannot_serve(to, wire::Unserved::Leaders, out);
            return;
        }
        leaders.reverse();
        let Some(vertices) = self
            .node
            .leader_histories(&leaders, belfry_broadcast::Round(floor))
        else {
            self.cannot_serve(to, wire::Unserved::Leaders, out);
            return;
        };
        let page_bytes = self
            .config
            .catchup_page_bytes
            .clamp(1, wire::STATE_PAGE_BYTES);
        let mut pages: Vec<Vec<belfry_broadcast::Vertex>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for v in vertices {
            let len = v.canonical_bytes().len() + 64;
            if bytes + len > page_bytes && !pages.last().is_some_and(Vec::is_empty) {
                pages.push(Vec::new());
                bytes = 0;
            }
            bytes += len;
            if let Some(p) = pages.last_mut() {
                p.push((*v).clone());
            }
        }
        let Ok(total) = u32::try_from(pages.len()) else {
            return;
        };
        if total > wire::MAX_STATE_PAGES || !self.take_serve_budget(to, u64::from(total)) {
            return;
        }
        for (page, vertices) in pages.into_iter().enumerate() {
            let m = PeerMessage::Leaders {
                from_wave,
                page: page as u32,
                pages: total,
                vertices,
            };
            self.send_peer(Target::One(to), &m, out);
        }
    }
}
