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
//! # Any length, in bounded memory
//!
//! While more than [`ReplicaConfig::catchup_buffer_entries`] entries lie
//! between a verified page and the target, the page and what was held
//! before it are appended to the log at once (`stream_if_far`): verified
//! entries are final. The log is then ahead of the ordering state
//! ([`ReplicaCore::log_ahead`]) until a state is installed: the replica's
//! own ordering appends nothing meanwhile, a catch-up runs from the log's
//! end whether or not the replica lags (also after a restart, which derives
//! `log_ahead` from the log and the sequencer state), and the range is
//! installed by a state — one not older than what the replica's own
//! ordering decided meanwhile.
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

/// Most verified log entries a catch-up holds in memory by default
/// ([`ReplicaConfig::catchup_buffer_entries`]). While more than this lies
/// between a verified page and the range's target, the page — and what was
/// held before it — is appended to the log at once (*streamed*); only the
/// last stretch before the target is held, to be installed with a state or
/// checked against a replay. A catch-up of any length therefore holds at
/// most this many entries and one page (≈ 8 MiB at the default).
pub const CATCHUP_BUFFER_ENTRIES: u64 = 1 << 16;

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

    /// Verified entries a catch-up appended to the log before installing
    /// a state (streamed; see [`CATCHUP_BUFFER_ENTRIES`]).
    pub fn catchup_streamed(&self) -> u64 {
        self.catchup.streamed
    }

    /// The most verified entries a catch-up held in memory at once.
    pub fn catchup_buffered_peak(&self) -> u64 {
        self.catchup.buffered_peak
    }

    /// Batches the replica's own ordering committed while its log was
    /// ahead of its ordering state, and that were therefore not logged
    /// (the log already holds, or will hold, what they produce).
    pub fn batches_behind_log(&self) -> u64 {
        self.catchup.behind_log
    }

    /// Whether the log holds verified entries that the ordering state has
    /// not reached: a catch-up streamed them (or a restart came in the
    /// middle of one) and has not installed the state after them yet.
    /// Meanwhile the replica's own ordering appends nothing — what it
    /// orders is in the log already or must come after the streamed range
    /// — and signs no head; the catch-up goes on until a state is
    /// installed (docs/storage.md, "The log ahead of the ordering state").
    pub fn log_ahead(&self) -> bool {
        self.log_ahead
    }

    /// Computes [`ReplicaCore::log_ahead`] from the log's last entry and
    /// the sequencer's last wave: a log that ends inside a batch, or with
    /// a Tick of a wave the sequencer has not sequenced, is ahead.
    pub(super) fn compute_log_ahead(&self) -> bool {
        let Some(last) = self.log.len().checked_sub(1) else {
            return false;
        };
        match self.reads().entry(last) {
            Some(Entry::Tick(t)) => Wave(t.wave) > self.sequencer.last_wave(),
            _ => true,
        }
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

    pub(super) fn arm_catchup_timer(&self, deadline: Micros, out: &mut CoreStep) {
        out.timer(deadline, CoreTimer::CatchUp);
    }

    /// Does what a catch-up transition asks: sends its request, then arms
    /// the catch-up timer.
    fn ask(&mut self, asks: Asks, out: &mut CoreStep) {
        if let Some((to, m)) = asks.send {
            self.send_peer(to, &m, out);
        }
        if let Some(deadline) = asks.timer {
            self.arm_catchup_timer(deadline, out);
        }
    }

    /// Goes where a catch-up transition leads.
    fn go(&mut self, next: Next, out: &mut CoreStep) {
        match next {
            Next::Ask(asks) => self.ask(asks, out),
            Next::Install(f) => self.install_fetched(f, out),
        }
    }

    /// Entries per `LogRange` page ([`ReplicaConfig::catchup_log_page`],
    /// at most [`wire::MAX_LOG_PAGE`]).
    pub(super) fn log_page(&self) -> usize {
        self.config.catchup_log_page.clamp(1, wire::MAX_LOG_PAGE)
    }

    /// The node's GC horizon, which a `FetchLeaders` request carries.
    fn floor(&self) -> u64 {
        self.node.dag().horizon().0
    }

    /// Starts a catch-up when the replica lags; moves a running one on
    /// when its request timed out; drops one the replica's own ordering
    /// overtook or that made no progress for [`CATCHUP_GIVE_UP`].
    pub(super) fn maybe_start_catchup(&mut self, out: &mut CoreStep) {
        match self.catchup.poll(self.log.len(), self.now) {
            Poll::Idle if self.is_lagging() || self.log_ahead => self.start_log_fetch(out),
            Poll::Idle | Poll::Waiting => {}
            Poll::TimedOut => self.on_catchup_timeout(out),
        }
    }

    pub(super) fn start_log_fetch(&mut self, out: &mut CoreStep) {
        let Some(frontier) = Frontier::of(&*self.log) else {
            return;
        };
        let asks = self.catchup.start(self.log.len(), frontier, self.now);
        self.ask(asks, out);
    }

    /// The request in flight timed out: pass its peer over and ask the next.
    pub(super) fn on_catchup_timeout(&mut self, out: &mut CoreStep) {
        let next = self.catchup.time_out(self.floor(), self.now);
        self.go(next, out);
    }

    /// Asks the next peer for the next page of the range.
    pub(super) fn request_page(&mut self, f: LogFetch, out: &mut CoreStep) {
        let asks = self.catchup.request_page(f, self.now);
        self.ask(asks, out);
    }

    /// Asks the next peer for what installs the verified range (see
    /// [`CatchUpClient::request_install`]).
    pub(super) fn request_install(&mut self, i: Install, out: &mut CoreStep) {
        let asks = self.catchup.request_install(i, self.floor(), self.now);
        self.ask(asks, out);
    }

    /// A page of the log range (`frame`, the answer as received, names it
    /// in a fault): checked on arrival, then either the next page is asked
    /// for or the verified range goes on to be installed.
    pub(super) fn on_log_range(
        &mut self,
        from_peer: ReplicaId,
        page: LogPage,
        frame: &[u8],
        out: &mut CoreStep,
    ) {
        let f = match self.catchup.take_log_page(from_peer, &page, self.now) {
            PageFor::Nobody => return,
            PageFor::HeadOnly => {
                // Another peer's copy of a page already taken, a peer that
                // holds nothing beyond what we have, or a page nobody asked
                // it for (answering unasked must not take the request
                // over) — but its head still says how far that peer's log
                // is.
                self.hear_head(from_peer, page.head, frame, out);
                return;
            }
            PageFor::Fetch(f) => *f,
        };
        match self.verify_page(&f, &page) {
            Some((head, frontier)) => {
                let mut f = f;
                let entries = self.stream_if_far(&mut f, &head, page.entries, out);
                let next = self
                    .catchup
                    .accept_page(f, from_peer, entries, head, frontier, self.now);
                self.go(next, out);
            }
            None => {
                let answer = frame_hash(frame);
                self.distrust(from_peer, CatchUpFault::LogRangeMismatch, answer, out);
                // Ask someone else for the same page at once.
                let mut f = f;
                f.request.peer = Some(from_peer);
                self.request_page(f, out);
            }
        }
    }

    /// A verified page, and what the fetch held before it, are appended to
    /// the log at once while more than
    /// [`ReplicaConfig::catchup_buffer_entries`] entries lie between the
    /// page's end and the target (`head`, if larger than the old one); and
    /// whatever would make the fetch hold more than that many is appended
    /// too, oldest first (after a target that moved on, or a fetch that
    /// went on beyond an install nobody served). Streamed entries are
    /// final — consistent with a signed head — so the log may hold them
    /// before the state that follows them is installed (the replica's own
    /// ordering then waits; see [`ReplicaCore::log_ahead`]). Returns the
    /// entries still to be held.
    fn stream_if_far(
        &mut self,
        f: &mut LogFetch,
        head: &SignedTreeHead,
        page: Vec<Entry>,
        out: &mut CoreStep,
    ) -> Vec<Entry> {
        let target = f
            .head
            .map_or(0, |h| h.head.tree_size)
            .max(head.head.tree_size);
        let held = f.entries.len() + page.len();
        let end = f.from + held as u64;
        let buffer = usize::try_from(self.config.catchup_buffer_entries).unwrap_or(usize::MAX);
        let far = target.saturating_sub(end) > self.config.catchup_buffer_entries;
        let stream = if far {
            held
        } else {
            held.saturating_sub(buffer)
        };
        if stream == 0 || self.log.len() != f.from {
            return page;
        }
        let mut all = std::mem::take(&mut f.entries);
        all.extend(page);
        let keep = all.split_off(stream);
        for e in all {
            self.append(e, out);
        }
        f.from = self.log.len();
        self.catchup.streamed += stream as u64;
        self.log_ahead = true;
        keep
    }

    /// The page's signed head and the tree the page extends the fetched
    /// range to, if the page verifies: its head is signed, it is as long
    /// as a page may be or ends at that head (a short one is withholding),
    /// and the consistency proof takes the extended tree to the head.
    fn verify_page(&self, f: &LogFetch, page: &LogPage) -> Option<(SignedTreeHead, Frontier)> {
        let h = page.head.filter(|h| self.head_signed(h))?;
        let entries = &page.entries;
        let end = page.from + entries.len() as u64;
        let full = entries.len() >= self.log_page() || end == h.head.tree_size;
        if h.head.tree_size < end || !full {
            return None;
        }
        let mut frontier = f.frontier.clone();
        for e in entries {
            frontier.push(e.leaf_hash());
        }
        let consistent = if end == h.head.tree_size {
            page.proof.is_empty() && frontier.root() == h.head.root
        } else {
            belfry_timestamp::verify_consistency(
                end,
                h.head.tree_size,
                &frontier.root(),
                &h.head.root,
                &page.proof,
            )
        };
        consistent.then_some((h, frontier))
    }

    /// A peer's answer that adds no page still tells how far its log is:
    /// a signed head beyond the target raises the target (its signature
    /// checked first); any answer counts the peer as heard.
    fn hear_head(
        &mut self,
        peer: ReplicaId,
        head: Option<SignedTreeHead>,
        frame: &[u8],
        out: &mut CoreStep,
    ) {
        let Some(raises) = self.catchup.raising(head) else {
            return;
        };
        if let Some(h) = &raises {
            if !self.head_signed(h) {
                self.distrust(peer, CatchUpFault::UnsignedHead, frame_hash(frame), out);
                return;
            }
        }
        let next = self.catchup.heard(peer, raises, self.now);
        self.go(next, out);
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

    /// A peer says it cannot serve what it was asked: ask the next one
    /// (see [`CatchUpClient::cannot_serve`]).
    pub(super) fn on_cannot_serve(&mut self, from_peer: ReplicaId, out: &mut CoreStep) {
        let next = self.catchup.cannot_serve(from_peer, self.floor(), self.now);
        self.go(next, out);
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
