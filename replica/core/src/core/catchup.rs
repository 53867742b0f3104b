//! Catch-up (docs/design.md §3.8): how a replica whose ordering fell behind gets
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

impl ReplicaCore {
    /// Verified log ranges and state snapshots installed so far.
    pub fn catchups_installed(&self) -> u64 {
        self.catchup.installed
    }

    /// Log catch-ups within `gc_depth` that ordered committed leaders from a
    /// peer's vertices (`FetchLeaders`).
    pub fn leader_catchups(&self) -> u64 {
        self.catchup.leader_catchups
    }

    /// Catch-up requests that timed out (the peer was passed over).
    pub fn catchup_timeouts(&self) -> u64 {
        self.catchup.timeouts
    }

    /// Catch-ups given up because the range exceeded
    /// [`MAX_CATCHUP_ENTRIES`].
    pub fn catchups_too_far(&self) -> u64 {
        self.catchup.too_far
    }

    /// Whether a catch-up is in progress.
    pub fn catching_up(&self) -> bool {
        self.catchup.run.is_some()
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

    /// Encodes a message for peers and sends it; its size in bytes.
    ///
    /// Every peer message is bounded well under `max_frame` by its page
    /// limits, so a frame that fails to encode is a local bug: the replica
    /// stops with an error ([`crate::host::HostError::Poisoned`]) rather
    /// than drop the message and go on without it.
    pub(super) fn send_peer(&mut self, to: Target, m: &PeerMessage, out: &mut CoreStep) -> usize {
        let encoded = wire::encode(m).map(|frame| Frame::Peer(to, frame));
        self.send_frame(encoded, "a message to peers failed to encode", out)
    }

    /// Sends an encoded frame and returns its size; a frame that failed to
    /// encode poisons the replica with `why` (see `send_peer`).
    pub(super) fn send_frame(
        &mut self,
        encoded: Result<Frame, FrameError>,
        why: &'static str,
        out: &mut CoreStep,
    ) -> usize {
        match encoded {
            Ok(frame) => {
                let len = match &frame {
                    Frame::Peer(_, b) | Frame::Client(_, b) => b.len(),
                };
                out.send(frame);
                len
            }
            Err(_) => {
                self.poison(why);
                0
            }
        }
    }

    pub(super) fn arm_catchup_timer(&self, deadline: Micros, out: &mut CoreStep) {
        out.timer(deadline, CoreTimer::CatchUp);
    }

    /// Starts a catch-up when the replica lags; moves a running one on
    /// when its request timed out; drops one the replica's own ordering
    /// overtook or that made no progress for [`CATCHUP_GIVE_UP`].
    pub(super) fn maybe_start_catchup(&mut self, out: &mut CoreStep) {
        let (from, deadline, progress_at) = match &self.catchup.run {
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
            self.catchup.run = None;
            if self.is_lagging() {
                self.start_log_fetch(out);
            }
            return;
        }
        if self.now >= deadline {
            self.on_catchup_timeout(out);
        }
    }

    pub(super) fn start_log_fetch(&mut self, out: &mut CoreStep) {
        let from = self.log.len();
        let Some(frontier) = Frontier::of(&*self.log) else {
            return;
        };
        // The first request goes to everyone: whoever holds the range
        // answers, and the fastest verified page wins.
        self.send_peer(Target::All, &PeerMessage::FetchLog { from }, out);
        let deadline = self.catchup.deadline(self.now);
        self.catchup.run = Some(CatchUp::Log(LogFetch {
            from,
            entries: Vec::new(),
            frontier,
            head: None,
            target_from: None,
            heard: BTreeSet::new(),
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
    pub(super) fn on_catchup_timeout(&mut self, out: &mut CoreStep) {
        let timed_out = match &self.catchup.run {
            Some(CatchUp::Log(f)) => f.request.peer,
            Some(CatchUp::Install(i)) => i.request.peer,
            None => return,
        };
        if let Some(p) = timed_out {
            self.catchup.timeouts += 1;
            self.catchup.pass_over(p, self.now);
        }
        match self.catchup.run.take() {
            Some(CatchUp::Log(f))
                if f.head
                    .is_some_and(|h| f.frontier.size() >= h.head.tree_size) =>
            {
                // Fewer than f + 1 peers said how far they are before the
                // deadline (some are down): install what is verified.
                self.install_fetched(f, out);
            }
            Some(CatchUp::Log(f)) => self.request_page(f, out),
            Some(CatchUp::Install(i)) => self.request_install(i, out),
            None => debug_assert!(false, "a timed-out catch-up is still running"),
        }
    }

    /// Asks the next peer for the next page of the range.
    pub(super) fn request_page(&mut self, mut f: LogFetch, out: &mut CoreStep) {
        let next = f.from + f.entries.len() as u64;
        let skip = f.request.peer.into_iter().collect();
        let peer = self
            .catchup
            .next_peer(self.config.broadcast.me, self.now, &skip);
        if let Some(p) = peer {
            self.send_peer(Target::One(p), &PeerMessage::FetchLog { from: next }, out);
        }
        f.request = Request {
            peer,
            sent: self.now,
            deadline: self.catchup.deadline(self.now),
        };
        self.arm_catchup_timer(f.request.deadline, out);
        self.catchup.run = Some(CatchUp::Log(f));
    }

    /// A page of the log range (`frame`, the answer as received, names it
    /// in a fault): checked on arrival, then either the next page is asked
    /// for or the verified range goes on to be installed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_log_range(
        &mut self,
        from_peer: ReplicaId,
        from: u64,
        entries: Vec<Entry>,
        head: Option<SignedTreeHead>,
        proof: Vec<belfry_timestamp::Hash>,
        frame: &[u8],
        out: &mut CoreStep,
    ) {
        if self.catchup.distrusts(from_peer, self.now) {
            return;
        }
        let Some(CatchUp::Log(f)) = &self.catchup.run else {
            return;
        };
        let next = f.from + f.entries.len() as u64;
        let asked = f.request.peer.is_none_or(|p| p == from_peer);
        if from != next || entries.is_empty() || !asked {
            // Another peer's copy of a page already taken, a peer that holds
            // nothing beyond what we have, or a page nobody asked it for
            // (answering unasked must not take the request over) — but its
            // head still says how far that peer's log is.
            self.hear_head(from_peer, head, frame, out);
            return;
        }
        if f.entries.len() as u64 + entries.len() as u64 > MAX_CATCHUP_ENTRIES {
            // A local limit, not the peer's fault: give up; see
            // MAX_CATCHUP_ENTRIES.
            self.catchup.run = None;
            self.catchup.too_far += 1;
            return;
        }
        let Some(CatchUp::Log(mut f)) = self.catchup.run.take() else {
            debug_assert!(false, "the log fetch matched above is still running");
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
            self.distrust(
                from_peer,
                CatchUpFault::LogRangeMismatch,
                frame_hash(frame),
                out,
            );
            // Ask someone else for the same page at once.
            f.request.peer = Some(from_peer);
            self.request_page(f, out);
            return;
        };
        self.catchup
            .note_answer_time(&f.request, from_peer, self.now);
        f.entries.extend(entries);
        f.frontier = frontier;
        f.progress_at = self.now;
        f.heard.insert(from_peer);
        if f.head
            .is_none_or(|old| old.head.tree_size < h.head.tree_size)
        {
            f.head = Some(h);
            f.target_from = Some(from_peer);
        }
        self.advance_log_fetch(f, from_peer, out);
    }

    /// After a verified page: the next page while the range is short of
    /// its target; at the target, the install once `f + 1` peers have said
    /// how far they are (else everyone is asked what lies beyond it).
    fn advance_log_fetch(&mut self, mut f: LogFetch, last: ReplicaId, out: &mut CoreStep) {
        let target = f.head.map_or(0, |h| h.head.tree_size);
        if f.frontier.size() < target {
            // The next page from the next peer in rotation, with a
            // deadline: a slow or withholding peer serves at most its share
            // of the pages, and the request moves on if it withholds.
            let skip = BTreeSet::new();
            let peer = self
                .catchup
                .next_peer(self.config.broadcast.me, self.now, &skip)
                .unwrap_or(last);
            let m = PeerMessage::FetchLog {
                from: f.frontier.size(),
            };
            self.send_peer(Target::One(peer), &m, out);
            f.request = Request {
                peer: Some(peer),
                sent: self.now,
                deadline: self.catchup.deadline(self.now),
            };
            self.arm_catchup_timer(f.request.deadline, out);
            self.catchup.run = Some(CatchUp::Log(f));
            return;
        }
        if f.heard.len() > self.config.broadcast.f {
            self.install_fetched(f, out);
            return;
        }
        if f.request.peer.is_some() {
            // Ask everyone what lies beyond the target: an honest peer with
            // a newer head sends the next page, one without says so.
            self.send_peer(
                Target::All,
                &PeerMessage::FetchLog {
                    from: f.frontier.size(),
                },
                out,
            );
            f.request = Request {
                peer: None,
                sent: self.now,
                deadline: self.catchup.deadline(self.now),
            };
            self.arm_catchup_timer(f.request.deadline, out);
        }
        // Else the request to everyone is out: their answers will come.
        self.catchup.run = Some(CatchUp::Log(f));
    }

    /// A peer's answer that adds no page still tells how far its log is:
    /// a signed head beyond the target raises the target (checked first);
    /// any answer counts the peer as heard.
    fn hear_head(
        &mut self,
        peer: ReplicaId,
        head: Option<SignedTreeHead>,
        frame: &[u8],
        out: &mut CoreStep,
    ) {
        let Some(CatchUp::Log(f)) = &self.catchup.run else {
            return;
        };
        let target = f.head.map_or(0, |h| h.head.tree_size);
        let raises = head.filter(|h| h.head.tree_size > target.max(f.from));
        if let Some(h) = raises {
            if !self.head_signed(&h) {
                self.distrust(peer, CatchUpFault::UnsignedHead, frame_hash(frame), out);
                return;
            }
        }
        let Some(CatchUp::Log(mut f)) = self.catchup.run.take() else {
            debug_assert!(false, "the log fetch matched above is still running");
            return;
        };
        if let Some(h) = raises {
            f.head = Some(h);
            f.target_from = Some(peer);
        }
        f.heard.insert(peer);
        if f.request.peer.is_none() && f.head.is_some() {
            // Nothing asked of one peer is in flight: move on from here.
            self.advance_log_fetch(f, peer, out);
        } else {
            self.catchup.run = Some(CatchUp::Log(f));
        }
    }

    /// The range is verified up to its target: install it.
    fn install_fetched(&mut self, f: LogFetch, out: &mut CoreStep) {
        let Some(head) = f.head else {
            // Both callers check first: a verified page or an answer set
            // the target.
            debug_assert!(false, "a log range is installed only with a target head");
            self.catchup.run = Some(CatchUp::Log(f));
            return;
        };
        self.begin_install(f.from, f.entries, f.frontier, head, f.target_from, out);
    }

    /// No peer keeps a state for the range's target any more (peers keep
    /// recent ones only — or a Byzantine peer picked a target nobody can
    /// serve): the verified range is final, so keep it and fetch on to a
    /// newer head. The peer whose head the target was is asked last for a
    /// while: its answers led nowhere.
    pub(super) fn fetch_beyond(&mut self, i: Install, out: &mut CoreStep) {
        if let Some(p) = i.target_from {
            self.catchup.pass_over(p, self.now);
        }
        let next = i.frontier.size();
        self.send_peer(Target::All, &PeerMessage::FetchLog { from: next }, out);
        let deadline = self.catchup.deadline(self.now);
        self.catchup.run = Some(CatchUp::Log(LogFetch {
            from: i.from,
            entries: i.entries,
            frontier: i.frontier,
            head: Some(i.head),
            target_from: i.target_from,
            heard: BTreeSet::new(),
            request: Request {
                peer: None,
                sent: self.now,
                deadline,
            },
            progress_at: i.progress_at,
        }));
        self.arm_catchup_timer(deadline, out);
    }

    /// A peer says it cannot serve what it was asked (the leaders' histories
    /// fell below its horizon, no recent state is old enough): ask the next
    /// one at once instead of waiting for the deadline.
    pub(super) fn on_cannot_serve(&mut self, from_peer: ReplicaId, frame: &[u8], out: &mut CoreStep) {
        let asked = match &self.catchup.run {
            Some(CatchUp::Install(i)) => i.request.peer == Some(from_peer),
            Some(CatchUp::Log(f)) => f.request.peer == Some(from_peer),
            None => false,
        };
        if !asked {
            if matches!(&self.catchup.run, Some(CatchUp::Log(f)) if f.request.peer.is_none()) {
                // An answer to the request to everyone: this peer holds
                // nothing beyond what we have.
                self.hear_head(from_peer, None, frame, out);
            }
            return;
        }
        // Move on at once — but no faster than one request per
        // CATCHUP_TIMEOUT_MIN, so that replicas that all lag (and all say
        // they cannot serve) do not ask each other at network speed.
        let soon = match &mut self.catchup.run {
            Some(CatchUp::Log(f)) => &mut f.request,
            Some(CatchUp::Install(i)) => &mut i.request,
            None => {
                debug_assert!(false, "a catch-up that asked the peer is running");
                return;
            }
        };
        let earliest = soon.sent.saturating_add(CATCHUP_TIMEOUT_MIN);
        if self.now < earliest {
            soon.deadline = earliest;
            self.arm_catchup_timer(earliest, out);
            return;
        }
        match self.catchup.run.take() {
            Some(CatchUp::Log(f)) => self.request_page(f, out),
            Some(CatchUp::Install(i)) => self.request_install(i, out),
            None => debug_assert!(false, "a catch-up that asked the peer is running"),
        }
    }

    /// Records a bad catch-up answer: a fault, and the peer's catch-up
    /// answers are ignored for [`DISTRUST_FOR`], so a Byzantine peer that
    /// always answers first cannot keep a replica from catching up.
    pub(super) fn distrust(
        &mut self,
        peer: ReplicaId,
        what: CatchUpFault,
        answer: MessageHash,
        out: &mut CoreStep,
    ) {
        out.faults.push(CoreFault::CatchUp {
            replica: peer,
            what,
            answer,
        });
        self.catchup.distrust(peer, self.now);
    }
}
