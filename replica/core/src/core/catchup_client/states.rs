//! The catch-up's states: the request in flight, the log fetch, the
//! install and its pages, and the replay a leaders' install is checked
//! against.

use super::*;

/// A request in flight: to whom (`None`: every peer), and until when.
#[derive(Clone, Copy, Debug)]
pub(in crate::core) struct Request {
    pub(in crate::core) peer: Option<ReplicaId>,
    pub(in crate::core) sent: Micros,
    pub(in crate::core) deadline: Micros,
}

/// A catch-up in progress (see the module documentation).
#[derive(Debug)]
pub(in crate::core) enum CatchUp {
    /// Fetching and verifying the log range.
    Log(LogFetch),
    /// The range is verified; fetching what installs it.
    Install(Install),
}

/// Fetching the log range beyond the local log.
#[derive(Debug)]
pub(in crate::core) struct LogFetch {
    /// The local log's length when the fetch began.
    pub(in crate::core) from: u64,
    /// Verified entries beyond `from`.
    pub(in crate::core) entries: Vec<Entry>,
    /// The tree of the local log followed by `entries`.
    pub(in crate::core) frontier: Frontier,
    /// The largest signed head a verified page was checked against, or
    /// that a peer's answer carried: the target.
    pub(in crate::core) head: Option<SignedTreeHead>,
    /// The peer whose head is the target.
    pub(in crate::core) target_from: Option<ReplicaId>,
    /// Peers that said how far their log is during this fetch (a page with
    /// their signed head, or that they hold nothing beyond it). The range
    /// is installed only once `f + 1` have: at least one honest one, so
    /// the target is at least an honest replica's latest head, for which
    /// honest replicas keep a state — never a head a Byzantine peer picked
    /// because nobody keeps its state any more.
    pub(in crate::core) heard: BTreeSet<ReplicaId>,
    pub(in crate::core) request: Request,
    pub(in crate::core) progress_at: Micros,
}

/// Installing a verified range.
#[derive(Debug)]
pub(in crate::core) struct Install {
    pub(in crate::core) from: u64,
    pub(in crate::core) entries: Vec<Entry>,
    /// The tree of the local log followed by `entries`.
    pub(in crate::core) frontier: Frontier,
    pub(in crate::core) head: SignedTreeHead,
    /// The peer whose head is `head`.
    pub(in crate::core) target_from: Option<ReplicaId>,
    pub(in crate::core) by: InstallBy,
    pub(in crate::core) request: Request,
    /// Peers asked in this state so far (each at most once per way).
    pub(in crate::core) tried: BTreeSet<ReplicaId>,
    /// Pages received, per peer.
    pub(in crate::core) pages: BTreeMap<ReplicaId, Pages>,
    pub(in crate::core) progress_at: Micros,
}

/// How a verified range is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::core) enum InstallBy {
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
pub(in crate::core) enum Pages {
    Leaders(Vec<Option<Vec<belfry_broadcast::Vertex>>>),
    /// The tree size the state belongs to, and the pages.
    State(u64, Vec<Option<Vec<u8>>>),
}

/// While the leaders a peer sent are replayed: the verified entries the
/// replay must produce, from log index `from`.
#[derive(Debug)]
pub(in crate::core) struct Replay {
    pub(in crate::core) from: u64,
    pub(in crate::core) expected: Vec<Entry>,
    /// Set at the first produced entry that differs: nothing more is
    /// appended.
    pub(in crate::core) diverged: bool,
}

impl Replay {
    /// Whether the entry the replay produced at `index` is the verified
    /// one (and the replay has not diverged before).
    pub(in crate::core) fn accepts(&mut self, index: u64, entry: &Entry) -> bool {
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
