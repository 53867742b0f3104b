//! Catch-up (DESIGN.md 3.8).

use super::*;

/// A `State` answer being reassembled: its tree size and the pages so far.
type StatePages = (u64, Vec<Option<Vec<u8>>>);

/// Ordering lag (rounds) beyond which a replica fetches the log it misses.
pub const LAG_ROUNDS: u64 = 12;

/// Log entries a `FetchLeaders` answer reads back at most to find the
/// asker's wave.
pub const MAX_LEADER_SCAN: u64 = 1 << 20;

/// How long a peer's catch-up answers are ignored after one failed to verify.
pub const DISTRUST_FOR: Micros = Micros::from_secs(10);

/// Catch-up answer pages (`LogRange`, `State`, `Leaders`) served to one peer
/// per second at most: a Byzantine peer asking without end gets no more, an
/// honest one catching up fetches ≈ 1 M entries per second.
pub const SERVE_PAGES_PER_S: u64 = 256;

/// A catch-up in progress: entries fetched beyond the local log, verified
/// against `head` before anything is installed.
#[derive(Debug)]
pub(super) struct CatchUp {
    head: SignedTreeHead,
    from: u64,
    entries: Vec<Entry>,
    verified: bool,
    started: Micros,
    /// `State` pages received, per peer: (tree size, pages).
    state_pages: BTreeMap<ReplicaId, StatePages>,
    /// Within `gc_depth`: the wave the `FetchLeaders` asked from, and the
    /// `Leaders` pages received per peer.
    leaders_from: Option<u64>,
    leader_pages: BTreeMap<ReplicaId, LeaderPages>,
}

/// A `Leaders` answer being reassembled.
type LeaderPages = Vec<Option<Vec<belfry_broadcast::Vertex>>>;

/// Catch-up (DESIGN.md 3.8): a replica further behind than the GC depth
/// cannot rebuild the missed DAG from re-sent votes (peers pruned it), so it
/// fetches the log up to a signed tree head — verified by recomputing the root
/// under the group signature, so it knows every logged digest and never logs
/// one twice — and the sequencer state and ordering checkpoint of the latest
/// Tick in it, verified against that Tick's `state_root`; then it installs
/// both and takes recent votes from its peers. Answers from a Byzantine peer
/// fail verification and are dropped; the replica asks again on its next
/// resend timer while it is still behind.
impl ReplicaCore {
    /// Verified log ranges and state snapshots installed so far.
    pub fn catchups_installed(&self) -> u64 {
        self.catchups_installed
    }

    /// Log catch-ups within `gc_depth` that ordered committed leaders from a
    /// peer's vertices (`FetchLeaders`).
    pub fn leader_catchups(&self) -> u64 {
        self.leader_catchups
    }

    /// Whether this replica's ordering lags the cluster by more than three
    /// waves: it then fetches the log range it misses and, within
    /// `gc_depth`, the committed leaders' histories, beyond it a snapshot.
    pub fn is_lagging(&self) -> bool {
        let ordered_to = self.node.last_leader_round().0;
        self.node.cluster_round().0 > ordered_to.saturating_add(LAG_ROUNDS)
    }

    /// Whether this replica is further behind the cluster than the GC depth.
    pub fn is_behind(&self) -> bool {
        let ordered_to = self.node.last_leader_round().0;
        self.node.cluster_round().0
            > ordered_to
                .saturating_add(self.config.broadcast.gc_depth)
                .saturating_add(8)
    }

    pub(super) fn send_peer(&self, to: Target, m: &PeerMessage, out: &mut CoreStep) {
        if let Ok(frame) = wire::encode(m) {
            out.to_peers.push((to, frame));
        }
    }

    pub(super) fn maybe_start_catchup(&mut self, out: &mut CoreStep) {
        let stale = self.catchup.as_ref().is_some_and(|c| {
            self.now.saturating_sub(c.started) > self.config.broadcast.resend_interval
        });
        if stale {
            self.catchup = None;
        }
        if self.catchup.is_none() && self.is_lagging() {
            let from = self.log.len();
            self.send_peer(Target::All, &PeerMessage::FetchLog { from }, out);
            // Marks the request; the first verifiable answer fills it in.
            self.catchup = Some(CatchUp {
                head: SignedTreeHead {
                    head: TreeHead {
                        tree_size: 0,
                        root: [0; 32],
                        time: Micros::ZERO,
                    },
                    signature: belfry_broadcast::coin::GroupSignature([0; 96]),
                },
                from,
                entries: Vec::new(),
                verified: false,
                started: self.now,
                state_pages: BTreeMap::new(),
                leaders_from: None,
                leader_pages: BTreeMap::new(),
            });
        }
    }

    /// Charges `pages` to `peer`'s serving budget of the current second;
    /// `false` (answer nothing) when it is spent.
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
        let len = self.log.len();
        if from >= len || to.index() >= self.config.broadcast.n {
            return;
        }
        if !self.take_serve_budget(to, 1) {
            return;
        }
        let end = len.min(from.saturating_add(wire::MAX_LOG_PAGE as u64));
        let m = PeerMessage::LogRange {
            from,
            entries: self.log.entries(from, end),
            head: self.log.latest_head(),
        };
        self.send_peer(Target::One(to), &m, out);
    }

    pub(super) fn serve_state(&mut self, to: ReplicaId, at_most: u64, out: &mut CoreStep) {
        let Some((size, (seq, cp))) = self.recent_states.range(..=at_most).next_back() else {
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

    /// Records a bad catch-up answer: a fault, and the peer's catch-up
    /// answers are ignored for [`DISTRUST_FOR`], so a Byzantine peer that
    /// always answers first cannot keep a replica from catching up.
    pub(super) fn distrust(&mut self, peer: ReplicaId, what: &'static str, out: &mut CoreStep) {
        out.faults.push(CoreFault::CatchUp {
            replica: peer,
            what,
        });
        if let Some(t) = self.distrusted.get_mut(peer.index()) {
            *t = self.now.saturating_add(DISTRUST_FOR);
        }
    }

    pub(super) fn distrusts(&self, peer: ReplicaId) -> bool {
        self.distrusted
            .get(peer.index())
            .is_some_and(|until| self.now < *until)
    }

    /// Collects the pages of a peer's `State` answer; a complete answer is
    /// decoded and checked like any other. Pages nobody asked for, or that
    /// do not fit the first page's shape, are dropped.
    pub(super) fn on_state_page(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        page: u32,
        pages: u32,
        bytes: Vec<u8>,
        out: &mut CoreStep,
    ) {
        if self.distrusts(from_peer) {
            return;
        }
        let Some(c) = self.catchup.as_mut() else {
            return;
        };
        let shaped = (1..=wire::MAX_STATE_PAGES).contains(&pages)
            && page < pages
            && bytes.len() <= wire::STATE_PAGE_BYTES;
        if !c.verified || !shaped || tree_size <= c.from || tree_size > c.head.head.tree_size {
            return;
        }
        let slot = c
            .state_pages
            .entry(from_peer)
            .or_insert_with(|| (tree_size, vec![None; pages as usize]));
        if slot.0 != tree_size || slot.1.len() != pages as usize {
            // A new answer from this peer replaces an unfinished one.
            *slot = (tree_size, vec![None; pages as usize]);
        }
        slot.1[page as usize].get_or_insert(bytes);
        if slot.1.iter().any(Option::is_none) {
            return;
        }
        let Some((_, parts)) = c.state_pages.remove(&from_peer) else {
            return;
        };
        let whole: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        match postcard::from_bytes::<wire::StateSnapshot>(&whole) {
            Ok(s) => self.on_state(from_peer, tree_size, s.sequencer, s.checkpoint, out),
            Err(_) => self.distrust(from_peer, "state snapshot does not decode", out),
        }
    }

    pub(super) fn on_log_range(
        &mut self,
        from_peer: ReplicaId,
        from: u64,
        entries: Vec<Entry>,
        head: Option<SignedTreeHead>,
        out: &mut CoreStep,
    ) {
        if self.distrusts(from_peer) {
            return;
        }
        let signed = head.filter(|h| self.head_signed(h));
        let Some(c) = self.catchup.as_mut() else {
            return;
        };
        if c.verified {
            return;
        }
        // The first page fixes the head to verify against: a signed one,
        // beyond the local log.
        if c.entries.is_empty() {
            let Some(h) = signed else { return };
            if h.head.tree_size <= c.from {
                return;
            }
            c.head = h;
        }
        if from != c.from + c.entries.len() as u64 || entries.is_empty() {
            return;
        }
        if self.log.len() != c.from {
            // Our own ordering moved on meanwhile: start afresh later.
            self.catchup = None;
            return;
        }
        let want = c.head.head.tree_size;
        let room = want.saturating_sub(from) as usize;
        c.entries.extend(entries.into_iter().take(room));
        let have = c.from + c.entries.len() as u64;
        if have < want {
            let m = PeerMessage::FetchLog { from: have };
            self.send_peer(Target::One(from_peer), &m, out);
            return;
        }
        // Verify: the local log followed by the fetched entries has the
        // signed root. The local log is thereby checked to be a prefix too.
        if extended_root(&*self.log, c.entries.iter().map(Entry::leaf_hash)) != c.head.head.root {
            self.catchup = None;
            self.distrust(from_peer, "log range does not match its signed head", out);
            return;
        }
        c.verified = true;
        if self.is_behind() {
            let m = PeerMessage::FetchState { at_most: want };
            self.send_peer(Target::All, &m, out);
        } else {
            // Within gc_depth the peers still hold the committed leaders'
            // histories: replay ordering rather than install a snapshot.
            let from_wave = self.node.last_decided_wave().0;
            let floor = self.node.dag().horizon().0;
            if let Some(c) = self.catchup.as_mut() {
                c.leaders_from = Some(from_wave);
            }
            let m = PeerMessage::FetchLeaders { from_wave, floor };
            self.send_peer(Target::All, &m, out);
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
            return; // too far back: the asker needs a snapshot
        }
        if !reached && from_wave > 0 {
            return;
        }
        leaders.reverse();
        let Some(vertices) = self
            .node
            .leader_histories(&leaders, belfry_broadcast::Round(floor))
        else {
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

    /// Collects a peer's `Leaders` pages; once complete, orders the
    /// verified log range's leaders from them and checks that the entries
    /// this produces are exactly the verified ones.
    pub(super) fn on_leaders_page(
        &mut self,
        from_peer: ReplicaId,
        from_wave: u64,
        page: u32,
        pages: u32,
        vertices: Vec<belfry_broadcast::Vertex>,
        out: &mut CoreStep,
    ) {
        if self.distrusts(from_peer) {
            return;
        }
        let Some(c) = self.catchup.as_mut() else {
            return;
        };
        let shaped = (1..=wire::MAX_STATE_PAGES).contains(&pages) && page < pages;
        if !c.verified || c.leaders_from != Some(from_wave) || !shaped {
            return;
        }
        let slot = c
            .leader_pages
            .entry(from_peer)
            .or_insert_with(|| vec![None; pages as usize]);
        if slot.len() != pages as usize {
            *slot = vec![None; pages as usize];
        }
        slot[page as usize].get_or_insert(vertices);
        if slot.iter().any(Option::is_none) {
            return;
        }
        let Some(parts) = c.leader_pages.remove(&from_peer) else {
            return;
        };
        let Some(c) = self.catchup.take() else {
            return;
        };
        if self.log.len() != c.from {
            return; // the log moved on meanwhile; a later catch-up starts afresh
        }
        let leaders: Vec<_> = c
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Tick(t) if t.wave > from_wave => Some((
                    belfry_broadcast::coin::Wave(t.wave),
                    t.coin_sig,
                    belfry_broadcast::VertexHash(t.leader),
                )),
                _ => None,
            })
            .collect();
        let vertices: Vec<belfry_broadcast::Vertex> =
            parts.into_iter().flatten().flatten().collect();
        self.drive(
            Input::InstallLeaders {
                from: from_peer,
                leaders,
                vertices,
            },
            out,
        );
        let have = self.log.len();
        let produced = self.log.entries(c.from, have.min(c.head.head.tree_size));
        let expected = &c.entries[..produced.len().min(c.entries.len())];
        if produced.as_slice() != expected {
            // The replayed ordering disagrees with the signed log: a local
            // bug (ordering is deterministic), reported loudly; the
            // simulator's agreement check turns it into a violation.
            out.faults.push(CoreFault::CatchUp {
                replica: self.config.broadcast.me,
                what: "replayed leaders produced entries other than the signed range",
            });
            return;
        }
        if have == c.from {
            // This peer's answer ordered nothing (it lacked or forged the
            // history): keep waiting for the other peers' answers.
            self.catchup = Some(c);
            return;
        }
        self.leader_catchups += 1;
        let size = c.head.head.tree_size;
        if have >= size
            && self.log.head_at(size).is_none()
            && self.log.root_at(size).is_ok_and(|r| r == c.head.head.root)
        {
            self.log.put_head(&c.head);
            out.heads.push(c.head);
        }
    }

    pub(super) fn on_state(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        state: SequencerState,
        checkpoint: Checkpoint,
        out: &mut CoreStep,
    ) {
        let Some(c) = self.catchup.as_ref() else {
            return;
        };
        if !c.verified || tree_size <= c.from || tree_size > c.head.head.tree_size {
            return;
        }
        if self.log.len() != c.from {
            // Our own ordering appended entries since the range was fetched:
            // installing it now would log them twice. Start afresh later.
            self.catchup = None;
            return;
        }
        let Some(Entry::Tick(tick)) = c.entries.get((tree_size - c.from - 1) as usize).copied()
        else {
            return;
        };
        let order_state = checkpoint.commitment();
        let valid = state.last_wave().0 == tick.wave
            && state.order_state() == order_state
            && checkpoint.last_decided_wave.0 == tick.wave
            && Sequencer::restore(self.config.sequencer.clone(), state.clone())
                .is_some_and(|s| s.state_root(&order_state) == tick.state_root);
        if !valid {
            self.distrust(from_peer, "state snapshot does not match its Tick", out);
            return;
        }
        let Some(c) = self.catchup.take() else {
            return;
        };
        let keep = (tree_size - c.from) as usize;
        for e in c.entries.into_iter().take(keep) {
            self.append(e, out);
        }
        if c.head.head.tree_size == tree_size {
            self.log.put_head(&c.head);
            out.heads.push(c.head);
        }
        let Some(restored) = Sequencer::restore(self.config.sequencer.clone(), state.clone())
        else {
            return;
        };
        self.sequencer = restored;
        self.catchups_installed += 1;
        self.installed_state = true;
        self.recent_states
            .insert(tree_size, (state, checkpoint.clone()));
        // Digests now logged are no longer ours to report.
        let log = &self.log;
        self.pending.retain(|d| log.index_of(d).is_none());
        self.drive(Input::InstallCheckpoint(checkpoint), out);
        for p in 0..self.config.broadcast.n {
            let p = ReplicaId(p as u16);
            if p != self.config.broadcast.me {
                self.drive(Input::PeerReconnected(p), out);
            }
        }
    }
}
