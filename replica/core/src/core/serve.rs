//! The serving side of catch-up (docs/design.md §3.8, 3.9): log ranges with their
//! consistency proofs, state snapshots and committed leaders' histories, in
//! pages. Every answer comes out of the asking peer's byte budget
//! ([`ByteBudget`], [`SERVE_BYTES_PER_PEER_PER_S`]): nothing is started
//! while the budget is empty, and every byte read, encoded and sent is
//! charged as it is produced — so a peer asking without end makes a replica
//! work at most the budget's rate, whatever it asks for.

use super::*;
use belfry_broadcast::budget::ByteBudget;
use belfry_broadcast::Served;

/// Bytes of catch-up answers (log pages, states, leaders' histories) one
/// peer may be served per second. A replica catching up from far behind
/// fetches ≈ 15,000 log entries a second from the peer it asks.
pub const SERVE_BYTES_PER_PEER_PER_S: u64 = 1024 * 1024;

/// The burst of [`SERVE_BYTES_PER_PEER_PER_S`].
pub const SERVE_BURST_BYTES: u64 = 8 * 1024 * 1024;

/// What reading one log entry back costs (a Tick's canonical bytes), for
/// the scan `FetchLeaders` makes.
const ENTRY_COST: usize = 213;

/// The catch-up requests a replica answers, for its work counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeKind {
    /// `FetchLog`.
    Log,
    /// `FetchLeaders`.
    Leaders,
    /// `FetchState`.
    State,
}

impl ServeKind {
    /// Every kind, in index order.
    pub const ALL: [ServeKind; 3] = [ServeKind::Log, ServeKind::Leaders, ServeKind::State];

    /// The request's name.
    pub fn name(self) -> &'static str {
        match self {
            ServeKind::Log => "FetchLog",
            ServeKind::Leaders => "FetchLeaders",
            ServeKind::State => "FetchState",
        }
    }
}

/// What serving catch-up requests cost so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// Per [`ServeKind`] index.
    pub kinds: [Served; 3],
    /// Bytes served to each peer.
    pub bytes_per_peer: Vec<u64>,
}

/// The serving side's own state: states kept for catching-up peers, each
/// peer's byte budget and what serving cost.
///
/// Invariants: after each Tick at most [`RECENT_STATES`] states are kept
/// (a catch-up install adds one more until the next is kept), one every
/// [`STATE_EVERY_TICKS`] Ticks; an answer is started only while the asking
/// peer's budget is not empty, and every byte produced is charged to it.
#[derive(Debug)]
pub(super) struct CatchUpServer {
    /// Sequencer state and ordering checkpoint after recent Ticks, by tree
    /// size.
    recent_states: BTreeMap<u64, (SequencerState, Checkpoint)>,
    /// Ticks appended (a state is kept every [`STATE_EVERY_TICKS`]).
    ticks: u64,
    /// Each peer's budget for catch-up answers.
    budget: Vec<ByteBudget>,
    /// What serving catch-up answers cost.
    serving: Serving,
}

impl CatchUpServer {
    /// A server for a cluster of `n`, with a fresh budget per peer.
    pub(super) fn new(n: usize) -> Self {
        CatchUpServer {
            recent_states: BTreeMap::new(),
            ticks: 0,
            budget: vec![ByteBudget::new(SERVE_BYTES_PER_PEER_PER_S, SERVE_BURST_BYTES); n],
            serving: Serving {
                bytes_per_peer: vec![0; n],
                ..Serving::default()
            },
        }
    }

    /// Counts a Tick appended, keeping `state` (the state after it, at log
    /// size `size`) every [`STATE_EVERY_TICKS`] Ticks: one copy every few
    /// Ticks, well within gc_depth, not one per Tick.
    pub(super) fn tick(&mut self, size: u64, state: impl FnOnce() -> (SequencerState, Checkpoint)) {
        self.ticks += 1;
        if self.ticks % STATE_EVERY_TICKS == 0 {
            self.recent_states.insert(size, state());
            while self.recent_states.len() > RECENT_STATES {
                self.recent_states.pop_first();
            }
        }
    }

    /// Keeps the state a catch-up installed at log size `size`.
    pub(super) fn keep_installed(&mut self, size: u64, state: SequencerState, cp: Checkpoint) {
        self.recent_states.insert(size, (state, cp));
    }

    /// Opens an answer of `kind` to `peer`: counts the request, and says
    /// whether the peer's budget allows starting it.
    fn open(&mut self, peer: ReplicaId, kind: ServeKind, now: Micros) -> bool {
        let served = &mut self.serving.kinds[kind as usize];
        served.requests += 1;
        let open = self
            .budget
            .get_mut(peer.index())
            .is_some_and(|b| b.available(now));
        if !open {
            served.refused += 1;
        }
        open
    }

    /// Charges `bytes` of an answer of `kind` to `peer`; `false` once the
    /// budget is spent (stop producing the answer).
    fn charge(&mut self, peer: ReplicaId, kind: ServeKind, bytes: usize) -> bool {
        self.serving.kinds[kind as usize].bytes += bytes as u64;
        if let Some(b) = self.serving.bytes_per_peer.get_mut(peer.index()) {
            *b += bytes as u64;
        }
        self.budget
            .get_mut(peer.index())
            .is_some_and(|b| b.charge(bytes))
    }
}

impl ReplicaCore {
    /// What serving catch-up requests cost so far.
    pub fn serving(&self) -> &Serving {
        &self.server.serving
    }

    fn open_answer(&mut self, peer: ReplicaId, kind: ServeKind) -> bool {
        self.server.open(peer, kind, self.now)
    }

    fn charge(&mut self, peer: ReplicaId, kind: ServeKind, bytes: usize) -> bool {
        self.server.charge(peer, kind, bytes)
    }

    pub(super) fn serve_log(&mut self, to: ReplicaId, from: u64, out: &mut CoreStep) {
        if to.index() >= self.config.broadcast.n || !self.open_answer(to, ServeKind::Log) {
            return;
        }
        // Only entries a signed head covers can be checked by the asker:
        // the page ends at the head, and carries the proof from its end to it.
        let head = self.log.latest_head().filter(|h| from < h.head.tree_size);
        let Some(head) = head else {
            self.cannot_serve(to, ServeKind::Log, out);
            return;
        };
        let size = head.head.tree_size;
        let end = size.min(from.saturating_add(self.log_page() as u64));
        let Ok(proof) = self.log.consistency_proof(end, size) else {
            return;
        };
        let m = PeerMessage::LogRange {
            from,
            entries: self.reads().entries(from, end),
            head: Some(head),
            proof,
        };
        self.send_charged(to, ServeKind::Log, &m, out);
    }

    /// Encodes an answer, charges its bytes and sends it.
    fn send_charged(
        &mut self,
        to: ReplicaId,
        kind: ServeKind,
        m: &PeerMessage,
        out: &mut CoreStep,
    ) {
        let len = self.send_peer(Target::One(to), m, out);
        self.charge(to, kind, len);
    }

    /// Tells a peer its request cannot be served here.
    fn cannot_serve(&mut self, to: ReplicaId, kind: ServeKind, out: &mut CoreStep) {
        let what = match kind {
            ServeKind::Log => wire::Unserved::Log,
            ServeKind::Leaders => wire::Unserved::Leaders,
            ServeKind::State => wire::Unserved::State,
        };
        self.send_charged(to, kind, &PeerMessage::CannotServe(what), out);
    }

    pub(super) fn serve_state(&mut self, to: ReplicaId, at_most: u64, out: &mut CoreStep) {
        if to.index() >= self.config.broadcast.n || !self.open_answer(to, ServeKind::State) {
            return;
        }
        // The state after the log's last Tick is served too when it is
        // asked for, not only the copies kept every few Ticks: a replica
        // that was away while the others could not move on (they wait for
        // it) must be able to reach their very last head — with only an
        // older state its ordering would stay a few waves behind, on
        // vertices the others have already collected, and nobody would
        // move again.
        let len = self.log.len();
        let current = len <= at_most
            && !self.log_ahead
            && self.server.recent_states.range(len..).next().is_none()
            && self.ordering_matches_log();
        let snapshot = if current {
            (
                len,
                wire::StateSnapshot {
                    sequencer: self.sequencer.state().clone(),
                    checkpoint: self.node.checkpoint(),
                },
            )
        } else {
            let found = self.server.recent_states.range(..=at_most).next_back();
            let Some((size, (seq, cp))) = found else {
                self.cannot_serve(to, ServeKind::State, out);
                return;
            };
            (
                *size,
                wire::StateSnapshot {
                    sequencer: seq.clone(),
                    checkpoint: cp.clone(),
                },
            )
        };
        let (size, snapshot) = snapshot;
        let Ok(bytes) = postcard::to_allocvec(&snapshot) else {
            // Our own state failed to encode: a local bug (see `send_peer`).
            self.poison("a state snapshot failed to encode");
            return;
        };
        // The whole answer is charged now: the pages follow.
        self.charge(to, ServeKind::State, bytes.len());
        let page_bytes = self
            .config
            .catchup_page_bytes
            .clamp(1, wire::STATE_PAGE_BYTES);
        let pages = bytes.len().div_ceil(page_bytes).max(1);
        let Ok(pages) = u32::try_from(pages) else {
            return;
        };
        if pages > wire::MAX_STATE_PAGES {
            // Larger than any peer accepts: refusing is the honest answer.
            self.cannot_serve(to, ServeKind::State, out);
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
        if !self.open_answer(to, ServeKind::Leaders) {
            return;
        }
        // Leaders older than gc_depth rounds are gone from the DAG anyway:
        // read back at most that many Ticks, each entry read charged.
        let max_ticks = self.config.broadcast.gc_depth / 4 + 2;
        let mut leaders = Vec::new();
        let mut i = self.log.len();
        let stop = i.saturating_sub(MAX_LEADER_SCAN);
        let mut reached = false;
        let mut room = true;
        while i > stop && (leaders.len() as u64) <= max_ticks && room {
            i -= 1;
            room = self.charge(to, ServeKind::Leaders, ENTRY_COST);
            if let Some(Entry::Tick(t)) = self.reads().entry(i) {
                if t.wave <= from_wave {
                    reached = true;
                    break;
                }
                leaders.push(belfry_broadcast::VertexHash(t.leader));
            }
        }
        if !reached && (i > 0 || from_wave > 0) {
            // Too far back (the asker needs a snapshot), or the budget ran
            // out before the asker's wave was found.
            self.cannot_serve(to, ServeKind::Leaders, out);
            return;
        }
        leaders.reverse();
        let Some(vertices) = self
            .node
            .leader_histories(&leaders, belfry_broadcast::Round(floor))
        else {
            self.cannot_serve(to, ServeKind::Leaders, out);
            return;
        };
        let page_bytes = self
            .config
            .catchup_page_bytes
            .clamp(1, wire::STATE_PAGE_BYTES);
        let mut pages: Vec<Vec<belfry_broadcast::Vertex>> = vec![Vec::new()];
        let mut bytes = 0usize;
        for v in vertices {
            let len = v.canonical_len() + 64;
            if !self.charge(to, ServeKind::Leaders, len) {
                // An incomplete answer orders nothing: refuse instead.
                self.cannot_serve(to, ServeKind::Leaders, out);
                return;
            }
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
        if total > wire::MAX_STATE_PAGES {
            self.cannot_serve(to, ServeKind::Leaders, out);
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
