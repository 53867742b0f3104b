//! The catch-up client's own state (docs/design.md §3.8): the catch-up in
//! progress as a typed state machine, the replay a leaders' install checks
//! against, and the bookkeeping that keeps a Byzantine peer from stalling
//! it — the rotation of peers to ask, the smoothed answer time, peers
//! passed over after a timeout and peers distrusted after a bad answer.
//!
//! The client's transitions — start, poll, time out, ask the next peer,
//! move on after a verified page or an answer, take an install's pages —
//! are its own methods here: they read and change only this state and say
//! what to send ([`Asks`]). What needs the rest of the replica is the
//! core's (`catchup.rs`, `install.rs`): verifying a page against the log's
//! tree and a head's signature, choosing how a verified range is
//! installed, and installing it into the log, the node and the sequencer.

use super::*;
use belfry_timestamp::store::Frontier;

mod states;
mod transitions;

pub(super) use states::{CatchUp, Install, InstallBy, LogFetch, Pages, Replay, Request};

/// What a replica's catch-up holds between steps.
///
/// Invariants: at most one catch-up runs (`run`); a request's deadline is
/// four times the smoothed answer time within
/// [`CATCHUP_TIMEOUT_MIN`]..=[`CATCHUP_TIMEOUT_MAX`]; this replica and a
/// distrusted peer are never asked.
#[derive(Debug)]
pub(super) struct CatchUpClient {
    /// The catch-up in progress.
    pub(super) run: Option<CatchUp>,
    /// While a peer's leaders are replayed: what the replay must produce.
    pub(super) replay: Option<Replay>,
    /// Verified ranges and states installed.
    pub(super) installed: u64,
    /// Catch-ups that replayed committed leaders.
    pub(super) leader_catchups: u64,
    /// Requests that timed out.
    pub(super) timeouts: u64,
    /// Verified entries appended to the log before their state was
    /// installed (see [`CATCHUP_BUFFER_ENTRIES`]).
    pub(super) streamed: u64,
    /// The most verified entries held in memory at once.
    pub(super) buffered_peak: u64,
    /// Batches of the replica's own ordering not logged because the log
    /// was ahead of the ordering state.
    pub(super) behind_log: u64,
    /// Smoothed time a catch-up answer takes.
    rtt: Micros,
    /// Where the rotation of peers to ask stands.
    cursor: usize,
    /// Until when each peer is asked last (it let a request time out).
    passed_over: Vec<Micros>,
    /// Until when each peer's catch-up answers are ignored.
    distrusted: Vec<Micros>,
    /// This replica (never asked).
    me: ReplicaId,
    /// The most Byzantine peers: a range is installed once `f + 1` peers
    /// said how far they are.
    f: usize,
}

/// What a catch-up transition asks the core to do, in this order: send a
/// request, then arm the catch-up timer.
#[derive(Debug, Default)]
#[must_use]
pub(super) struct Asks {
    pub(super) send: Option<(Target, PeerMessage)>,
    pub(super) timer: Option<Micros>,
}

/// Where a catch-up goes after a transition.
#[derive(Debug)]
#[must_use]
pub(super) enum Next {
    /// On with the requests.
    Ask(Asks),
    /// The range is verified up to its target: the core chooses how to
    /// install it (`ReplicaCore::begin_install`), then asks for it
    /// ([`CatchUpClient::request_install`]).
    Install(LogFetch),
}

/// A `LogRange` answer as received.
#[derive(Debug)]
pub(super) struct LogPage {
    /// The log index of its first entry.
    pub(super) from: u64,
    pub(super) entries: Vec<Entry>,
    /// The sender's signed tree head, which the page is checked against.
    pub(super) head: Option<SignedTreeHead>,
    /// The consistency proof from the page's end to `head`.
    pub(super) proof: Vec<belfry_timestamp::Hash>,
}

/// Whom a log page is for ([`CatchUpClient::take_log_page`]).
#[derive(Debug)]
pub(super) enum PageFor {
    /// Nobody: no log range is fetched, its sender is distrusted, or the
    /// fetch was given up.
    Nobody,
    /// Not the page the fetch needs, or not from the peer asked: only its
    /// head is heard.
    HeadOnly,
    /// The fetch, taken out to verify the page against.
    Fetch(Box<LogFetch>),
}

/// What the catch-up client's poll found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Poll {
    /// No catch-up runs (or the one running went stale and was dropped):
    /// start one if the replica lags.
    Idle,
    /// The request in flight timed out.
    TimedOut,
    /// The request in flight has time left.
    Waiting,
}

impl CatchUpClient {
    /// No catch-up yet, for replica `me` of a cluster of `n` with at most
    /// `f` Byzantine.
    pub(super) fn new(me: ReplicaId, n: usize, f: usize) -> Self {
        CatchUpClient {
            run: None,
            replay: None,
            installed: 0,
            leader_catchups: 0,
            timeouts: 0,
            streamed: 0,
            buffered_peak: 0,
            behind_log: 0,
            rtt: Micros::from_millis(20),
            cursor: 0,
            passed_over: vec![Micros::ZERO; n],
            distrusted: vec![Micros::ZERO; n],
            me,
            f,
        }
    }

    /// The deadline of a request sent at `now`: four times the smoothed
    /// answer time, within bounds.
    pub(super) fn deadline(&self, now: Micros) -> Micros {
        let t = Micros(self.rtt.0.saturating_mul(4))
            .max(CATCHUP_TIMEOUT_MIN)
            .min(CATCHUP_TIMEOUT_MAX);
        now.saturating_add(t)
    }

    /// Takes the answer time of `request` (answered by `from` at `now`)
    /// into the smoothed answer time.
    pub(super) fn note_answer_time(&mut self, request: &Request, from: ReplicaId, now: Micros) {
        if request.peer == Some(from) || request.peer.is_none() {
            let took = now.saturating_sub(request.sent);
            // Exponentially weighted, 1/4 of the new sample.
            self.rtt = Micros((self.rtt.0 * 3 + took.0) / 4);
        }
    }

    /// The next peer to ask, in rotation: never `me` or a distrusted
    /// peer, a passed-over one only if nobody else is left, and none of
    /// `skip` unless every other peer is in it.
    pub(super) fn next_peer(
        &mut self,
        me: ReplicaId,
        now: Micros,
        skip: &BTreeSet<ReplicaId>,
    ) -> Option<ReplicaId> {
        let n = self.passed_over.len();
        let mut fallback = None;
        for k in 1..=n {
            let p = ReplicaId(((self.cursor + k) % n) as u16);
            if p == me || self.distrusts(p, now) {
                continue;
            }
            let passed = self
                .passed_over
                .get(p.index())
                .is_some_and(|until| now < *until);
            if passed || skip.contains(&p) {
                fallback = fallback.or(Some(p));
                continue;
            }
            self.cursor = p.index();
            return Some(p);
        }
        if let Some(p) = fallback {
            self.cursor = p.index();
        }
        fallback
    }

    /// `peer` let a request time out, or its answers led nowhere: it is
    /// asked last for [`PASS_OVER_FOR`] from `now`.
    pub(super) fn pass_over(&mut self, peer: ReplicaId, now: Micros) {
        if let Some(t) = self.passed_over.get_mut(peer.index()) {
            *t = now.saturating_add(PASS_OVER_FOR);
        }
    }

    /// `peer` answered something that failed verification: its answers
    /// are ignored for [`DISTRUST_FOR`].
    pub(super) fn distrust(&mut self, peer: ReplicaId, now: Micros) {
        if let Some(t) = self.distrusted.get_mut(peer.index()) {
            *t = now.saturating_add(DISTRUST_FOR);
        }
    }

    /// Whether `peer`'s answers are ignored at `now`.
    pub(super) fn distrusts(&self, peer: ReplicaId, now: Micros) -> bool {
        self.distrusted
            .get(peer.index())
            .is_some_and(|until| now < *until)
    }
}
