//! Catch-up (DESIGN.md 3.8): how a replica whose ordering fell behind gets
//! back, as a typed state machine, against up to `f` Byzantine peers.
//!
//! # The states
//!
//! - [`CatchUp::Log`]: fetch the log range beyond the local log, page by
//!   page. Every `LogRange` page carries the sender's signed tree head and
//!   the consistency proof from the page's end to it; the page is checked on
//!   arrival against the local log's tree extended by the pages so far (a
//!   [`Frontier`]). A page that does not verify is evidence: the sender is
//!   distrusted ([`DISTRUST_FOR`]). A page that verifies is final — signed
//!   heads of one cluster never fork — whoever sent it.
//! - [`CatchUp::Install`]: the whole range up to the largest head seen is
//!   verified; now fetch what installs it. Within `gc_depth` the peers still
//!   hold the committed leaders' histories (`FetchLeaders`): the replica
//!   orders them itself, and every entry this produces is compared with the
//!   verified one *before* it is appended. Beyond `gc_depth`, or when the
//!   replica's own ordering state does not match its log's last Tick (so a
//!   replay could not be right), it fetches the sequencer state and ordering
//!   checkpoint after the range's last Tick (`FetchState`), checked against
//!   that Tick's `state_root`, and installs them with the entries.
//!
//! # Liveness against Byzantine peers
//!
//! Answers are verified, so one honest peer that holds the data is enough.
//! The first log request goes to every peer; every later request goes to
//! one peer with a deadline that follows the observed answer time. A peer
//! that lets a deadline pass — withholding, or just slow: in an asynchronous
//! network the two look alike, so this is suspicion, not evidence — is asked
//! last for [`PASS_OVER_FOR`] and the request moves to the next peer in
//! rotation. A peer whose answer fails verification is not asked at all for
//! [`DISTRUST_FOR`]. A Byzantine peer that answers the first page and
//! withholds the rest therefore costs one deadline, not the catch-up.
//!
//! # What the log holds, not what the node thinks
//!
//! The leaders to replay start after the wave of the local log's last Tick —
//! never the broadcast node's decided wave, which could differ if the
//! node's state and the log disagreed. They cannot disagree after a restart
//! (a turn's entries and the node's checkpoint are one journal record, see
//! [`crate::journal`]), and the replay checks it first anyway: the state root
//! of the node's ordering state and the sequencer must equal the last Tick's.

use super::*;
use belfry_broadcast::coin::Wave;
use belfry_broadcast::VertexHash;
use belfry_timestamp::store::Frontier;

/// Ordering lag (rounds) beyond which a replica fetches the log it misses.
pub const LAG_ROUNDS: u64 = 12;

/// Log entries a `FetchLeaders` answer reads back at most to find the
/// asker's wave.
pub const MAX_LEADER_SCAN: u64 = 1 << 20;

/// How long a peer's catch-up answers are ignored after one failed to verify.
pub const DISTRUST_FOR: Micros = Micros::from_secs(10);

/// How long a peer that let a catch-up request time out is asked last.
pub const PASS_OVER_FOR: Micros = Micros::from_secs(2);

/// Bounds of a catch-up request's deadline; within them it is four times
/// the smoothed answer time.
pub const CATCHUP_TIMEOUT_MIN: Micros = Micros::from_millis(50);
/// See [`CATCHUP_TIMEOUT_MIN`].
pub const CATCHUP_TIMEOUT_MAX: Micros = Micros::from_secs(2);

/// Most log entries one catch-up buffers before it installs them (≈ 1 GiB
/// of entries in memory at the very most). A replica further behind —
/// including a new or wiped one joining a cluster whose log is longer —
/// cannot catch up yet: that needs the verified range streamed into the
/// log store rather than held in memory (counted in
/// `ReplicaCore::catchups_too_far`).
pub const MAX_CATCHUP_ENTRIES: u64 = 1 << 22;

/// A catch-up without progress for this long starts over.
pub const CATCHUP_GIVE_UP: Micros = Micros::from_secs(10);

/// A request in flight: to whom (`None`: every peer), and until when.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    peer: Option<ReplicaId>,
    sent: Micros,
    deadline: Micros,
}

/// A catch-up in progress (see the module documentation).
#[derive(Debug)]
pub(super) enum CatchUp {
    /// Fetching and verifying the log range.
    Log(LogFetch),
    /// The range is verified; fetching what installs it.
    Install(Install),
}

/// Fetching the log range beyond the local log.
#[derive(Debug)]
pub(super) struct LogFetch {
    /// The local log's length when the fetch began.
    from: u64,
    /// Verified entries beyond `from`.
    entries: Vec<Entry>,
    /// The tree of the local log followed by `entries`.
    frontier: Frontier,
    /// The largest signed head a verified page was checked against.
    head: Option<SignedTreeHead>,
    request: Request,
    progress_at: Micros,
}

/// Installing a verified range.
#[derive(Debug)]
pub(super) struct Install {
    from: u64,
    entries: Vec<Entry>,
    head: SignedTreeHead,
    by: InstallBy,
    request: Request,
    /// Peers asked in this state so far (each at most once per way).
    tried: BTreeSet<ReplicaId>,
    /// Pages received, per peer.
    pages: BTreeMap<ReplicaId, Pages>,
    progress_at: Micros,
}

/// How a verified range is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InstallBy {
    /// Replay the committed leaders after the local log's last Tick.
    Leaders {
        /// That Tick's wave.
        from_wave: u64,
    },
    /// Install the state after the range's last Tick.
    State,
}

/// An answer being reassembled from its pages.
#[derive(Debug)]
enum Pages {
    Leaders(Vec<Option<Vec<belfry_broadcast::Vertex>>>),
    /// The tree size the state belongs to, and the pages.
    State(u64, Vec<Option<Vec<u8>>>),
}

/// While the leaders a peer sent are replayed: the verified entries the
/// replay must produce, from log index `from`.
#[derive(Debug)]
pub(super) struct Replay {
    from: u64,
    expected: Vec<Entry>,
    /// Set at the first produced entry that differs: nothing more is
    /// appended.
    pub(super) diverged: bool,
}

impl Replay {
    /// Whether the entry the replay produced at `index` is the verified
    /// one (and the replay has not diverged before).
    pub(super) fn accepts(&mut self, index: u64, entry: &Entry) -> bool {
        if self.diverged {
            return false;
        }
        let Some(k) = index.checked_sub(self.from) else {
            self.diverged = true;
            return false;
        };
        match usize::try_from(k).ok().and_then(|k| self.expected.get(k)) {
            Some(expected) if expected != entry => {
                self.diverged = true;
                false
            }
            // Within the range and equal, or beyond it: the replica's own
            // ordering going on in the same step, once the range is done.
            _ => true,
        }
    }
}

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

    /// Catch-up requests that timed out (the peer was passed over).
    pub fn catchup_timeouts(&self) -> u64 {
        self.catchup_timeouts
    }

    /// Catch-ups given up because the range exceeded
    /// [`MAX_CATCHUP_ENTRIES`].
    pub fn catchups_too_far(&self) -> u64 {
        self.catchups_too_far
    }

    /// Whether a catch-up is in progress.
    pub fn catching_up(&self) -> bool {
        self.catchup.is_some()
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

    /// The deadline of a request sent now: four times the smoothed answer
    /// time, within bounds.
    fn catchup_deadline(&self) -> Micros {
        let t = Micros(self.catchup_rtt.0.saturating_mul(4))
            .max(CATCHUP_TIMEOUT_MIN)
            .min(CATCHUP_TIMEOUT_MAX);
        self.now.saturating_add(t)
    }

    fn note_answer_time(&mut self, request: &Request, from: ReplicaId) {
        if request.peer == Some(from) || request.peer.is_none() {
            let took = self.now.saturating_sub(request.sent);
            // Exponentially weighted, 1/4 of the new sample.
            self.catchup_rtt = Micros((self.catchup_rtt.0 * 3 + took.0) / 4);
        }
    }

    /// The next peer to ask, in rotation: never this replica or a
    /// distrusted peer, a passed-over one only if nobody else is left,
    /// and none of `skip` unless every other peer is in it.
    fn next_peer(&mut self, skip: &BTreeSet<ReplicaId>) -> Option<ReplicaId> {
        let n = self.config.broadcast.n;
        let me = self.config.broadcast.me;
        let mut fallback = None;
        for k in 1..=n {
            let p = ReplicaId(((self.catchup_cursor + k) % n) as u16);
            if p == me || self.distrusts(p) {
                continue;
            }
            let passed = self
                .passed_over
                .get(p.index())
                .is_some_and(|until| self.now < *until);
            if passed || skip.contains(&p) {
                fallback = fallback.or(Some(p));
                continue;
            }
            self.catchup_cursor = p.index();
            return Some(p);
        }
        if let Some(p) = fallback {
            self.catchup_cursor = p.index();
        }
        fallback
    }

    fn arm_catchup_timer(&self, deadline: Micros, out: &mut CoreStep) {
        out.timers.push((deadline, CoreTimer::CatchUp));
    }

    /// Starts a catch-up when the replica lags; moves a running one on
    /// when its request timed out; drops one the replica's own ordering
    /// overtook or that made no progress for [`CATCHUP_GIVE_UP`].
    pub(super) fn maybe_start_catchup(&mut self, out: &mut CoreStep) {
        let (from, deadline, progress_at) = match &self.catchup {
            Some(CatchUp::Log(f)) => (f.from, f.request.deadline, f.progress_at),
            Some(CatchUp::Install(i)) => (i.from, i.request.deadline, i.progress_at),
            None => {
                if self.is_lagging() {
                    self.start_log_fetch(out);
                }
                return;
            }
        };
        if self.log.len() != from || self.now.saturating_sub(progress_at) > CATCHUP_GIVE_UP {
            // Our own ordering appended entries meanwhile (installing now
            // would log them twice), or nobody could serve us: start over.
            self.catchup = None;
            if self.is_lagging() {
                self.start_log_fetch(out);
            }
            return;
        }
        if self.now >= deadline {
            self.on_catchup_timeout(out);
        }
    }

    fn start_log_fetch(&mut self, out: &mut CoreStep) {
        let from = self.log.len();
        let Some(frontier) = Frontier::of(&*self.log) else {
            return;
        };
        // The first request goes to everyone: whoever holds the range
        // answers, and the fastest verified page wins.
        self.send_peer(Target::All, &PeerMessage::FetchLog { from }, out);
        let deadline = self.catchup_deadline();
        self.catchup = Some(CatchUp::Log(LogFetch {
            from,
            entries: Vec::new(),
            frontier,
            head: None,
            request: Request {
                peer: None,
                sent: self.now,
                deadline,
            },
            progress_at: self.now,
        }));
        self.arm_catchup_timer(deadline, out);
    }

    /// The request in flight timed out: pass its peer over and ask the next.
    fn on_catchup_timeout(&mut self, out: &mut CoreStep) {
        let timed_out = match &self.catchup {
            Some(CatchUp::Log(f)) => f.request.peer,
            Some(CatchUp::Install(i)) => i.request.peer,
            None => return,
        };
        if let Some(p) = timed_out {
            self.catchup_timeouts += 1;
            if let Some(t) = self.passed_over.get_mut(p.index()) {
                *t = self.now.saturating_add(PASS_OVER_FOR);
            }
        }
        match self.catchup.take() {
            Some(CatchUp::Log(f)) => self.request_page(f, out),
            Some(CatchUp::Install(i)) => self.request_install(i, out),
            None => {}
        }
    }

    /// Asks the next peer for the next page of the range.
    fn request_page(&mut self, mut f: LogFetch, out: &mut CoreStep) {
        let next = f.from + f.entries.len() as u64;
        let skip = f.request.peer.into_iter().collect();
        let peer = self.next_peer(&skip);
        if let Some(p) = peer {
            self.send_peer(Target::One(p), &PeerMessage::FetchLog { from: next }, out);
        }
        f.request = Request {
            peer,
            sent: self.now,
            deadline: self.catchup_deadline(),
        };
        self.arm_catchup_timer(f.request.deadline, out);
        self.catchup = Some(CatchUp::Log(f));
    }

    /// A page of the log range: checked on arrival, then either the next
    /// page is asked for or the verified range goes on to be installed.
    pub(super) fn on_log_range(
        &mut self,
        from_peer: ReplicaId,
        from: u64,
        entries: Vec<Entry>,
        head: Option<SignedTreeHead>,
        proof: Vec<belfry_timestamp::Hash>,
        out: &mut CoreStep,
    ) {
        if self.distrusts(from_peer) {
            return;
        }
        let Some(CatchUp::Log(f)) = &self.catchup else {
            return;
        };
        let next = f.from + f.entries.len() as u64;
        let asked = f.request.peer.is_none_or(|p| p == from_peer);
        if from != next || entries.is_empty() || !asked {
            // Another peer's copy of a page already taken, a peer that holds
            // nothing beyond what we have, or a page nobody asked it for
            // (answering unasked must not take the request over).
            return;
        }
        if f.entries.len() as u64 + entries.len() as u64 > MAX_CATCHUP_ENTRIES {
            // A local limit, not the peer's fault: give up; see
            // MAX_CATCHUP_ENTRIES.
            self.catchup = None;
            self.catchups_too_far += 1;
            return;
        }
        let Some(CatchUp::Log(mut f)) = self.catchup.take() else {
            return;
        };
        let ok = head.filter(|h| self.head_signed(h)).and_then(|h| {
            let end = next + entries.len() as u64;
            // An honest page is as long as a page may be, or ends at the
            // head it comes with: a short one is withholding.
            let full = entries.len() >= wire::MAX_LOG_PAGE || end == h.head.tree_size;
            if h.head.tree_size < end || !full {
                return None;
            }
            let mut frontier = f.frontier.clone();
            for e in &entries {
                frontier.push(e.leaf_hash());
            }
            let consistent = if end == h.head.tree_size {
                proof.is_empty() && frontier.root() == h.head.root
            } else {
                belfry_timestamp::verify_consistency(
                    end,
                    h.head.tree_size,
                    &frontier.root(),
                    &h.head.root,
                    &proof,
                )
            };
            consistent.then_some((h, frontier))
        });
        let Some((h, frontier)) = ok else {
            self.distrust(from_peer, "log range does not match its signed head", out);
            // Ask someone else for the same page at once.
            f.request.peer = Some(from_peer);
            self.request_page(f, out);
            return;
        };
        self.note_answer_time(&f.request, from_peer);
        f.entries.extend(entries);
        f.frontier = frontier;
        f.progress_at = self.now;
        if f.head
            .is_none_or(|old| old.head.tree_size < h.head.tree_size)
        {
            f.head = Some(h);
        }
        let target = f.head.map_or(0, |h| h.head.tree_size);
        if f.frontier.size() < target {
            // The next page from the next peer in rotation, with a
            // deadline: a slow or withholding peer serves at most its share
            // of the pages, and the request moves on if it withholds.
            let skip = BTreeSet::new();
            let peer = self.next_peer(&skip).unwrap_or(from_peer);
            let m = PeerMessage::FetchLog {
                from: f.frontier.size(),
            };
            self.send_peer(Target::One(peer), &m, out);
            f.request = Request {
                peer: Some(peer),
                sent: self.now,
                deadline: self.catchup_deadline(),
            };
            self.arm_catchup_timer(f.request.deadline, out);
            self.catchup = Some(CatchUp::Log(f));
            return;
        }
        let Some(head) = f.head else { return };
        self.begin_install(f.from, f.entries, head, out);
    }

    /// The wave and state root of the local log's last Tick (the log always
    /// ends with a Tick: a batch is appended whole).
    fn last_tick(&self) -> Option<TickEntry> {
        let len = self.log.len();
        match self.log.entry(len.checked_sub(1)?) {
            Some(Entry::Tick(t)) => Some(t),
            _ => None,
        }
    }

    /// Whether the node's ordering state and the sequencer are the state
    /// the log's last Tick committed to: only then can replaying the
    /// following leaders produce the following entries.
    fn ordering_matches_log(&self) -> bool {
        let order = self.node.checkpoint().commitment();
        match self.last_tick() {
            Some(t) => {
                t.wave == self.node.last_decided_wave().0
                    && self.sequencer.state_root(&order) == t.state_root
            }
            None => self.node.last_decided_wave().0 == 0,
        }
    }

    fn begin_install(
        &mut self,
        from: u64,
        entries: Vec<Entry>,
        head: SignedTreeHead,
        out: &mut CoreStep,
    ) {
        let by = if !self.is_behind() && self.ordering_matches_log() {
            InstallBy::Leaders {
                from_wave: self.last_tick().map_or(0, |t| t.wave),
            }
        } else {
            InstallBy::State
        };
        let install = Install {
            from,
            entries,
            head,
            by,
            request: Request {
                peer: None,
                sent: self.now,
                deadline: self.now,
            },
            tried: BTreeSet::new(),
            pages: BTreeMap::new(),
            progress_at: self.now,
        };
        self.request_install(install, out);
    }

    /// Asks the next untried peer for the leaders' histories or the state;
    /// when every peer was tried one way, the other way; when both failed,
    /// the catch-up starts over.
    fn request_install(&mut self, mut i: Install, out: &mut CoreStep) {
        // Whatever a peer asked before sent is dropped: only the next
        // one's answer is kept.
        i.pages.clear();
        let mut peer = self.next_peer(&i.tried);
        if peer.is_none_or(|p| i.tried.contains(&p)) {
            // Every peer we may ask was asked this way.
            match i.by {
                InstallBy::Leaders { .. } => {
                    i.by = InstallBy::State;
                    i.tried.clear();
                    i.pages.clear();
                    peer = self.next_peer(&i.tried);
                }
                InstallBy::State => {
                    // Nobody holds a state for this range any more (peers
                    // keep recent ones only): fetch the log afresh, up to
                    // a newer head.
                    self.catchup = None;
                    self.maybe_start_catchup(out);
                    return;
                }
            }
        }
        if let Some(p) = peer {
            i.tried.insert(p);
            let m = match i.by {
                InstallBy::Leaders { from_wave } => PeerMessage::FetchLeaders {
                    from_wave,
                    floor: self.node.dag().horizon().0,
                },
                InstallBy::State => PeerMessage::FetchState {
                    at_most: i.head.head.tree_size,
                },
            };
            self.send_peer(Target::One(p), &m, out);
        }
        i.request = Request {
            peer,
            sent: self.now,
            deadline: self.catchup_deadline(),
        };
        self.arm_catchup_timer(i.request.deadline, out);
        self.catchup = Some(CatchUp::Install(i));
    }

    /// Takes one page of an install answer from a peer that was asked;
    /// returns the install state and the peer's whole answer once complete.
    fn take_page(
        &mut self,
        from_peer: ReplicaId,
        pages: u32,
        page: u32,
        fill: impl FnOnce(&mut Pages, usize),
        fresh: impl Fn(usize) -> Pages,
        fits: impl Fn(&Pages) -> bool,
    ) -> Option<(Install, Pages)> {
        if self.distrusts(from_peer) {
            return None;
        }
        let Some(CatchUp::Install(i)) = self.catchup.as_mut() else {
            return None;
        };
        let shaped = (1..=wire::MAX_STATE_PAGES).contains(&pages) && page < pages;
        if !shaped || i.request.peer != Some(from_peer) {
            // Pages only from the peer asked now: one that was passed over
            // cannot make this replica keep its half answer.
            return None;
        }
        let total = pages as usize;
        let slot = i.pages.entry(from_peer).or_insert_with(|| fresh(total));
        if !fits(slot) {
            // A new answer from this peer replaces an unfinished one.
            *slot = fresh(total);
        }
        fill(slot, page as usize);
        let complete = match slot {
            Pages::Leaders(p) => p.iter().all(Option::is_some),
            Pages::State(_, p) => p.iter().all(Option::is_some),
        };
        if !complete {
            return None;
        }
        let whole = i.pages.remove(&from_peer)?;
        match self.catchup.take() {
            Some(CatchUp::Install(i)) => Some((i, whole)),
            other => {
                self.catchup = other;
                None
            }
        }
    }

    /// Collects a peer's `Leaders` pages; once complete, replays them.
    pub(super) fn on_leaders_page(
        &mut self,
        from_peer: ReplicaId,
        from_wave: u64,
        page: u32,
        pages: u32,
        vertices: Vec<belfry_broadcast::Vertex>,
        out: &mut CoreStep,
    ) {
        let wanted = matches!(
            &self.catchup,
            Some(CatchUp::Install(Install { by: InstallBy::Leaders { from_wave: w }, .. })) if *w == from_wave
        );
        if !wanted {
            return;
        }
        let total = pages as usize;
        let taken = self.take_page(
            from_peer,
            pages,
            page,
            |slot, k| {
                if let Pages::Leaders(p) = slot {
                    if let Some(s) = p.get_mut(k) {
                        s.get_or_insert(vertices);
                    }
                }
            },
            |n| Pages::Leaders(vec![None; n]),
            |slot| matches!(slot, Pages::Leaders(p) if p.len() == total),
        );
        let Some((i, Pages::Leaders(parts))) = taken else {
            return;
        };
        self.note_answer_time(&i.request, from_peer);
        let vertices: Vec<belfry_broadcast::Vertex> =
            parts.into_iter().flatten().flatten().collect();
        self.replay_leaders(from_peer, from_wave, i, vertices, out);
    }

    /// Orders the verified range's leaders from a peer's vertices, each
    /// produced entry checked against the verified one before it is
    /// appended (see [`Replay`]).
    fn replay_leaders(
        &mut self,
        from_peer: ReplicaId,
        from_wave: u64,
        i: Install,
        vertices: Vec<belfry_broadcast::Vertex>,
        out: &mut CoreStep,
    ) {
        if self.log.len() != i.from || !self.ordering_matches_log() {
            // The log moved, or the state a replay starts from is not the
            // one the log committed to: install a snapshot instead.
            let mut i = i;
            i.by = InstallBy::State;
            i.tried.clear();
            self.request_install(i, out);
            return;
        }
        let leaders: Vec<(Wave, belfry_broadcast::coin::GroupSignature, VertexHash)> = i
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Tick(t) if t.wave > from_wave => {
                    Some((Wave(t.wave), t.coin_sig, VertexHash(t.leader)))
                }
                _ => None,
            })
            .collect();
        self.replay = Some(Replay {
            from: i.from,
            expected: i.entries.clone(),
            diverged: false,
        });
        self.drive(
            Input::InstallLeaders {
                from: from_peer,
                leaders,
                vertices,
            },
            out,
        );
        let replay = self.replay.take();
        if replay.is_some_and(|r| r.diverged) {
            // Ordering is deterministic and its starting state was checked:
            // this is a local bug. The turn must not be released; the host
            // restarts the replica from its journal.
            self.poison("replayed leaders produced entries other than the signed range");
            return;
        }
        let have = self.log.len();
        if have == i.from {
            // The answer ordered nothing: the peer forged or withheld the
            // history, or — far likelier — its GC horizon is above the
            // vertices this replica lacks (every honest peer's is, once
            // this replica's own DAG is gone, as after installing a state).
            // A verified state serves either way.
            let mut i = i;
            i.by = InstallBy::State;
            i.tried.clear();
            i.pages.clear();
            self.request_install(i, out);
            return;
        }
        self.leader_catchups += 1;
        let size = i.head.head.tree_size;
        if have >= size
            && self.log.head_at(size).is_none()
            && self.log.root_at(size).is_ok_and(|r| r == i.head.head.root)
        {
            self.log.put_head(&i.head);
            out.heads.push(i.head);
        }
        // A partial replay (the peer held only some of the histories)
        // leaves the rest to the next catch-up, from the new log length.
    }

    /// Collects the pages of a peer's `State` answer; a complete answer is
    /// decoded and checked against its Tick.
    pub(super) fn on_state_page(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        page: u32,
        pages: u32,
        bytes: Vec<u8>,
        out: &mut CoreStep,
    ) {
        let wanted = match &self.catchup {
            Some(CatchUp::Install(i)) => {
                i.by == InstallBy::State
                    && tree_size > i.from
                    && tree_size <= i.head.head.tree_size
                    && bytes.len() <= wire::STATE_PAGE_BYTES
            }
            _ => false,
        };
        if !wanted {
            return;
        }
        let total = pages as usize;
        let taken = self.take_page(
            from_peer,
            pages,
            page,
            |slot, k| {
                if let Pages::State(_, p) = slot {
                    if let Some(s) = p.get_mut(k) {
                        s.get_or_insert(bytes);
                    }
                }
            },
            |n| Pages::State(tree_size, vec![None; n]),
            |slot| matches!(slot, Pages::State(size, p) if *size == tree_size && p.len() == total),
        );
        let Some((i, Pages::State(_, parts))) = taken else {
            return;
        };
        self.note_answer_time(&i.request, from_peer);
        let whole: Vec<u8> = parts.into_iter().flatten().flatten().collect();
        match postcard::from_bytes::<wire::StateSnapshot>(&whole) {
            Ok(s) => self.install_state(from_peer, tree_size, s.sequencer, s.checkpoint, i, out),
            Err(_) => {
                self.distrust(from_peer, "state snapshot does not decode", out);
                self.request_install(i, out);
            }
        }
    }

    fn install_state(
        &mut self,
        from_peer: ReplicaId,
        tree_size: u64,
        state: SequencerState,
        checkpoint: Checkpoint,
        i: Install,
        out: &mut CoreStep,
    ) {
        if self.log.len() != i.from {
            // Our own ordering appended entries since the range was fetched:
            // installing it now would log them twice. Start afresh later.
            return;
        }
        let tick = usize::try_from(tree_size - i.from - 1)
            .ok()
            .and_then(|k| i.entries.get(k));
        let Some(Entry::Tick(tick)) = tick.copied() else {
            self.distrust(
                from_peer,
                "state snapshot for a size that ends in no Tick",
                out,
            );
            self.request_install(i, out);
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
            self.request_install(i, out);
            return;
        }
        let Some(restored) = Sequencer::restore(self.config.sequencer.clone(), state.clone())
        else {
            return;
        };
        let keep = (tree_size - i.from) as usize;
        for e in i.entries.into_iter().take(keep) {
            self.append(e, out);
        }
        if i.head.head.tree_size == tree_size {
            self.log.put_head(&i.head);
            out.heads.push(i.head);
        }
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

    /// A peer says it cannot serve what it was asked (the leaders' histories
    /// fell below its horizon, no recent state is old enough): ask the next
    /// one at once instead of waiting for the deadline.
    pub(super) fn on_cannot_serve(&mut self, from_peer: ReplicaId, out: &mut CoreStep) {
        let asked = match &self.catchup {
            Some(CatchUp::Install(i)) => i.request.peer == Some(from_peer),
            Some(CatchUp::Log(f)) => f.request.peer == Some(from_peer),
            None => false,
        };
        if !asked {
            return;
        }
        // Move on at once — but no faster than one request per
        // CATCHUP_TIMEOUT_MIN, so that replicas that all lag (and all say
        // they cannot serve) do not ask each other at network speed.
        let soon = match &mut self.catchup {
            Some(CatchUp::Log(f)) => &mut f.request,
            Some(CatchUp::Install(i)) => &mut i.request,
            None => return,
        };
        let earliest = soon.sent.saturating_add(CATCHUP_TIMEOUT_MIN);
        if self.now < earliest {
            soon.deadline = earliest;
            self.arm_catchup_timer(earliest, out);
            return;
        }
        match self.catchup.take() {
            Some(CatchUp::Log(f)) => self.request_page(f, out),
            Some(CatchUp::Install(i)) => self.request_install(i, out),
            None => {}
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
}
