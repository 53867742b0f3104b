//! The catch-up client's own state (docs/design.md §3.8): the catch-up in
//! progress as a typed state machine, the replay a leaders' install checks
//! against, and the bookkeeping that keeps a Byzantine peer from stalling
//! it — the rotation of peers to ask, the smoothed answer time, peers
//! passed over after a timeout and peers distrusted after a bad answer.
//! What the states do with the log, the node and the sequencer is the
//! core's (`catchup.rs`, `install.rs`).

use super::*;
use belfry_timestamp::store::Frontier;

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
    /// Catch-ups given up at [`MAX_CATCHUP_ENTRIES`].
    pub(super) too_far: u64,
    /// Smoothed time a catch-up answer takes.
    rtt: Micros,
    /// Where the rotation of peers to ask stands.
    cursor: usize,
    /// Until when each peer is asked last (it let a request time out).
    passed_over: Vec<Micros>,
    /// Until when each peer's catch-up answers are ignored.
    distrusted: Vec<Micros>,
}

impl CatchUpClient {
    /// No catch-up yet, in a cluster of `n`.
    pub(super) fn new(n: usize) -> Self {
        CatchUpClient {
            run: None,
            replay: None,
            installed: 0,
            leader_catchups: 0,
            timeouts: 0,
            too_far: 0,
            rtt: Micros::from_millis(20),
            cursor: 0,
            passed_over: vec![Micros::ZERO; n],
            distrusted: vec![Micros::ZERO; n],
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

/// A request in flight: to whom (`None`: every peer), and until when.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request {
    pub(super) peer: Option<ReplicaId>,
    pub(super) sent: Micros,
    pub(super) deadline: Micros,
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
    pub(super) from: u64,
    /// Verified entries beyond `from`.
    pub(super) entries: Vec<Entry>,
    /// The tree of the local log followed by `entries`.
    pub(super) frontier: Frontier,
    /// The largest signed head a verified page was checked against, or
    /// that a peer's answer carried: the target.
    pub(super) head: Option<SignedTreeHead>,
    /// The peer whose head is the target.
    pub(super) target_from: Option<ReplicaId>,
    /// Peers that said how far their log is during this fetch (a page with
    /// their signed head, or that they hold nothing beyond it). The range
    /// is installed only once `f + 1` have: at least one honest one, so
    /// the target is at least an honest replica's latest head, for which
    /// honest replicas keep a state — never a head a Byzantine peer picked
    /// because nobody keeps its state any more.
    pub(super) heard: BTreeSet<ReplicaId>,
    pub(super) request: Request,
    pub(super) progress_at: Micros,
}

/// Installing a verified range.
#[derive(Debug)]
pub(super) struct Install {
    pub(super) from: u64,
    pub(super) entries: Vec<Entry>,
    /// The tree of the local log followed by `entries`.
    pub(super) frontier: Frontier,
    pub(super) head: SignedTreeHead,
    /// The peer whose head is `head`.
    pub(super) target_from: Option<ReplicaId>,
    pub(super) by: InstallBy,
    pub(super) request: Request,
    /// Peers asked in this state so far (each at most once per way).
    pub(super) tried: BTreeSet<ReplicaId>,
    /// Pages received, per peer.
    pub(super) pages: BTreeMap<ReplicaId, Pages>,
    pub(super) progress_at: Micros,
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
pub(super) enum Pages {
    Leaders(Vec<Option<Vec<belfry_broadcast::Vertex>>>),
    /// The tree size the state belongs to, and the pages.
    State(u64, Vec<Option<Vec<u8>>>),
}

/// While the leaders a peer sent are replayed: the verified entries the
/// replay must produce, from log index `from`.
#[derive(Debug)]
pub(super) struct Replay {
    pub(super) from: u64,
    pub(super) expected: Vec<Entry>,
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
