//! `ReplicaCore`: one replica as a single sans-IO state machine (docs/design.md
//! sections 2, 3.2, 3.5–3.7). It takes raw frames from peers and clients (and
//! enforces `max_frame` itself, so malformed bytes are an error value), drives
//! the broadcast [`Node`], sequences committed batches with the fair
//! [`Sequencer`], appends digest and Tick entries to the log, exchanges
//! tree-head shares and combines them into signed tree heads, and answers
//! clients. The network driver only moves bytes; the simulator drives this
//! very type.
//!
//! # The pieces
//!
//! `ReplicaCore` routes inputs between the broadcast [`Node`], the
//! [`Sequencer`], the log and its own sub-protocols, each a type of its own
//! with its own state and invariants:
//!
//! - `intake::Intake` — digests reported and not yet logged, and the
//!   re-reports owed for digests seen in other authors' vertices (§3.2);
//! - `heads::HeadSigner` — tree heads being signed and early shares (§3.7);
//! - `client::ClientBook` — what each client waits on, subscribed to, and
//!   its budgets and windows (section 4);
//! - `catchup_client::CatchUpClient` — a lagging replica's catch-up (below);
//! - `serve::CatchUpServer` — states kept for lagging peers and each peer's
//!   serving budget (§3.8, 3.9).
//!
//! # Catch-up (docs/design.md §3.8)
//!
//! Three ways back, cheapest first. Lost messages on a live link are made
//! good by the broadcast node (`FetchVotes`, re-sends). A replica whose
//! ordering lags the cluster by more than [`LAG_ROUNDS`] fetches the log range
//! it misses (`FetchLog`, in pages) and checks it against a signed tree head
//! beyond its log; then, within `gc_depth`, it asks for the committed
//! leaders' causal histories (`FetchLeaders`, answered in pages), takes only
//! vertices those leaders' hashes (from the verified Ticks) reach, verifies
//! each `σ_w`, orders the leaders itself and checks that what it appended is
//! exactly the signed range; beyond `gc_depth` the peers no longer hold that
//! history, so it installs the sequencer state and ordering checkpoint after
//! the range's last Tick (`FetchState`, in pages), checked against that
//! Tick's `state_root`.

use crate::wire::{self, ClientRequest, ClientResponse, FrameError, PeerMessage};
use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{
    ClusterParams, MessageHash, ReplicaId, ShareFault, ShareFaultKind, SignatureCollector,
    SignatureShare, SignedMessage, ThresholdCrypto, Wave,
};
use belfry_broadcast::config::{MAX_DIGESTS_PER_REQUEST, MAX_PENDING_DIGESTS, MAX_QUEUED_REPORTS};
use belfry_broadcast::fair::{DigestIndex, Sequencer, SequencerConfig, SequencerState};
use belfry_broadcast::{
    Checkpoint, CommittedBatch, Config, Digest, Durable, Fault, Input, Node, NodeStep, Output,
    Report, Target, TimerKind,
};
use belfry_timestamp::checkpoint::{self, NoteSigner, VerifierKey};
use belfry_timestamp::store::{LogReadError, LogStore, MemoryLog};
use belfry_timestamp::{DigestEntry, Entry, Receipt, SignedTreeHead, TickEntry, TreeHead};
pub use client::{
    ClientReads, CLIENT_READ_BURST_BYTES, CLIENT_READ_BYTES_PER_S, MAX_OUTSTANDING_PER_CLIENT,
    MAX_UNLOGGED_PER_CLIENT,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

mod catchup;
mod catchup_client;
mod client;
mod config;
mod drive;
mod faults;
mod heads;
mod install;
mod intake;
mod notes;
mod restore;
mod serve;
mod step;

pub use catchup::{
    CATCHUP_BUFFER_ENTRIES, CATCHUP_GIVE_UP, CATCHUP_TIMEOUT_MAX, CATCHUP_TIMEOUT_MIN,
    DISTRUST_FOR, LAG_ROUNDS, MAX_LEADER_SCAN, PASS_OVER_FOR,
};
use catchup_client::{
    Asks, CatchUp, CatchUpClient, Install, InstallBy, LogFetch, LogPage, Next, PageFor, Pages,
    Poll, Replay, Request,
};
pub use config::{CheckpointConfig, ReplicaConfig};
pub use faults::{
    frame_hash, state_hash, CatchUpFault, CoreFault, HeadShareFault, FRAME_TAG, HEAD_SHARE_TAG,
    STATE_TAG,
};
pub use notes::COSIGNATURE_FUTURE_SLACK_S;
pub use serve::{ServeKind, Serving, SERVE_BURST_BYTES, SERVE_BYTES_PER_PEER_PER_S};
pub use step::{CoreOutput, CoreStep, CoreStepExt, Frame};

/// A client connection's id, assigned by the driver.
pub type ClientId = u64;

/// Entries returned per `Entries`/`Subscribe` answer.
pub const MAX_ENTRIES_PER_ANSWER: u64 = 4_096;
/// Tree sizes ahead of the local log for which head shares are buffered.
pub const MAX_EARLY_HEAD_SIZES: usize = 64;

/// An input to the core.
#[derive(Clone, Debug)]
pub enum CoreInput {
    /// Begin (or resume).
    Start,
    /// A frame from a peer replica.
    Peer {
        /// The authenticated sender.
        from: ReplicaId,
        /// The raw frame.
        frame: Vec<u8>,
    },
    /// A peer's link came back.
    PeerReconnected(ReplicaId),
    /// A frame from a client.
    Client {
        /// Which client.
        client: ClientId,
        /// The raw frame.
        frame: Vec<u8>,
    },
    /// A timer fired.
    Timer(CoreTimer),
    /// A client's connection is gone: forget what it waited on and
    /// subscribed to.
    ClientGone(ClientId),
    /// The driver wrote this many bytes of a client's pushes and answers:
    /// room in its windows ([`ReplicaConfig::client_push_window`]).
    ClientDrained {
        /// Which client.
        client: ClientId,
        /// Push bytes written.
        pushes: u64,
        /// Answer bytes written.
        answers: u64,
    },
}

/// The timers a replica asks its driver for: one deadline per kind (a new
/// deadline replaces the old one; see [`crate::host::TimerTable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CoreTimer {
    /// The broadcast node's timers.
    Broadcast(TimerKind),
    /// A catch-up request's deadline: a peer that has not answered by then
    /// is passed over.
    CatchUp,
    /// Tree heads still unsigned: re-send this replica's shares.
    HeadShares,
}

impl CoreTimer {
    /// Every kind, in a fixed order.
    pub const ALL: [CoreTimer; 5] = [
        CoreTimer::Broadcast(TimerKind::RoundInterval),
        CoreTimer::Broadcast(TimerKind::Resend),
        CoreTimer::Broadcast(TimerKind::Stall),
        CoreTimer::CatchUp,
        CoreTimer::HeadShares,
    ];

    /// A small number per kind (for traces and tables).
    pub fn index(self) -> usize {
        match self {
            CoreTimer::Broadcast(TimerKind::RoundInterval) => 0,
            CoreTimer::Broadcast(TimerKind::Resend) => 1,
            CoreTimer::Broadcast(TimerKind::Stall) => 2,
            CoreTimer::CatchUp => 3,
            CoreTimer::HeadShares => 4,
        }
    }
}

impl DigestIndex for Reads<'_> {
    fn is_logged(&self, digest: &Digest) -> bool {
        self.index_of(&digest.0).is_some()
    }
}

/// The core's reads of its log store. A read that fails stops the replica:
/// the error is kept (the first one), the host refuses to seal the turn
/// ([`crate::host::HostError::LogRead`], naming the file), so nothing of
/// the turn is ever released — and for the rest of that turn the read
/// answers "absent". Never "absent" for a turn that is released: that
/// would let `submit` log a logged digest twice.
#[derive(Clone, Copy)]
pub(crate) struct Reads<'a> {
    log: &'a dyn LogStore,
    failed: &'a std::sync::OnceLock<LogReadError>,
}

impl Reads<'_> {
    fn ok<T: Default>(&self, r: Result<T, LogReadError>) -> T {
        r.unwrap_or_else(|e| {
            // Only the first error is kept; later ones follow from it.
            let _ = self.failed.set(e);
            T::default()
        })
    }

    pub(crate) fn entry(&self, index: u64) -> Option<Entry> {
        self.ok(self.log.entry(index))
    }

    pub(crate) fn index_of(&self, digest: &[u8; 32]) -> Option<u64> {
        self.ok(self.log.index_of(digest))
    }

    pub(crate) fn head_at(&self, size: u64) -> Option<SignedTreeHead> {
        self.ok(self.log.head_at(size))
    }

    pub(crate) fn head_covering(&self, index: u64) -> Option<SignedTreeHead> {
        self.ok(self.log.head_covering(index))
    }

    pub(crate) fn entries(&self, from: u64, to: u64) -> Vec<Entry> {
        self.ok(self.log.entries(from, to))
    }

    pub(crate) fn all_heads(&self) -> Vec<SignedTreeHead> {
        self.ok(self.log.all_heads())
    }
}

/// One replica (see the module documentation).
pub struct ReplicaCore {
    config: ReplicaConfig,
    crypto: Arc<dyn ThresholdCrypto>,
    node: Node,
    sequencer: Sequencer,
    now: Micros,
    /// The log, its digest index and tree nodes, behind the storage trait.
    log: Box<dyn LogStore>,
    /// Digests reported and not yet logged, and re-reports owed.
    intake: intake::Intake,
    /// Tree heads being signed.
    heads: heads::HeadSigner,
    /// What clients wait on and subscribed to.
    clients: client::ClientBook,
    /// Fetching what this replica misses when it lags.
    catchup: CatchUpClient,
    /// Answering peers that lag.
    server: serve::CatchUpServer,
    /// This replica's Ed25519 note signatures of recent heads' checkpoints
    /// (at most [`notes::NOTE_SIGNATURES_KEPT`]), so that asking for a
    /// checkpoint again costs no signing.
    note_signatures: BTreeMap<u64, checkpoint::NoteSignature>,
    /// A catch-up installed a whole sequencer state this turn.
    installed_state: bool,
    /// Faults met while restoring (reported with the first step).
    faults_on_restore: Vec<CoreFault>,
    /// Started with nothing durable: observe from the first `Start`.
    observe_on_start: bool,
    /// Set when the replica found its own state inconsistent (a bug): it
    /// does nothing more, and its host stops it so that it restarts from
    /// its journal.
    poisoned: Option<&'static str>,
    /// Set when a log store read failed (see [`Reads`]): the replica does
    /// nothing more, and its host stops it.
    log_failed: std::sync::OnceLock<LogReadError>,
    /// The log holds verified entries beyond what the ordering state
    /// (sequencer and node checkpoint) has reached: a catch-up range
    /// streamed into the log and not yet installed (see
    /// [`ReplicaCore::log_ahead`]). Derived from the log and the sequencer
    /// state, so it is as durable as they are.
    log_ahead: bool,
}

/// Recent states kept for catching-up peers.
pub const RECENT_STATES: usize = 4;

/// A state is kept for catching-up peers every this many Ticks (4 waves,
/// 16 rounds: the newest is always well within `gc_depth` of the present).
pub const STATE_EVERY_TICKS: u64 = 4;

/// Shares of an incomplete tree head are re-sent this often.
pub const HEAD_RESEND_INTERVAL: Micros = Micros::from_millis(250);

impl std::fmt::Debug for ReplicaCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaCore")
            .field("me", &self.config.broadcast.me)
            .field("log_len", &self.log.len())
            .field("signed_size", &self.signed_size())
            .finish()
    }
}

impl ReplicaCore {
    /// A fresh replica with its log in memory.
    pub fn new(config: ReplicaConfig, crypto: Arc<dyn ThresholdCrypto>) -> Self {
        Self::with_log(config, crypto, Box::new(MemoryLog::new()))
    }

    /// A fresh replica over an (empty) log store of the caller's choosing.
    pub fn with_log(
        config: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        log: Box<dyn LogStore>,
    ) -> Self {
        let n = config.broadcast.n;
        let catchup = CatchUpClient::new(config.broadcast.me, n, config.broadcast.f);
        let clients = client::ClientBook::new(
            config.client_push_window,
            (
                config.client_read_bytes_per_s,
                config.client_read_burst_bytes,
            ),
        );
        ReplicaCore {
            node: Node::new(config.broadcast.clone(), crypto.clone()),
            sequencer: Sequencer::new(config.sequencer.clone()),
            config,
            crypto,
            now: Micros::ZERO,
            log,
            intake: intake::Intake::new(n),
            heads: heads::HeadSigner::default(),
            clients,
            catchup,
            server: serve::CatchUpServer::new(n),
            note_signatures: BTreeMap::new(),
            installed_state: false,
            faults_on_restore: Vec::new(),
            observe_on_start: false,
            poisoned: None,
            log_failed: std::sync::OnceLock::new(),
            log_ahead: false,
        }
    }

    /// The log store (the host syncs it and compacts the journal against
    /// it; the core only reads and appends).
    pub fn log_store_mut(&mut self) -> &mut dyn LogStore {
        &mut *self.log
    }

    /// The log store, given up (a stopped replica's).
    pub fn into_log(self) -> Box<dyn LogStore> {
        self.log
    }

    /// The log store, for reading.
    pub fn log_store(&self) -> &dyn LogStore {
        &*self.log
    }

    /// The sequencer's changes since the last call, for the turn's
    /// durable record: the whole state after a catch-up installed one,
    /// else a delta if a batch was sequenced.
    pub fn take_sequencer_update(&mut self) -> Option<crate::journal::SequencerUpdate> {
        if std::mem::take(&mut self.installed_state) {
            let _ = self.sequencer.take_delta();
            return Some(crate::journal::SequencerUpdate::Whole(Box::new(
                self.sequencer.state().clone(),
            )));
        }
        self.sequencer
            .has_delta()
            .then(|| crate::journal::SequencerUpdate::Delta(Box::new(self.sequencer.take_delta())))
    }

    /// The whole sequencer state (for a journal snapshot).
    pub fn sequencer_state(&self) -> &SequencerState {
        self.sequencer.state()
    }

    /// The whole log, read from storage (tests and inspection; large logs
    /// should use [`ReplicaCore::log_len`] and [`ReplicaCore::entry`]).
    pub fn log(&self) -> Vec<Entry> {
        self.reads().entries(0, self.log.len())
    }

    /// Number of log entries.
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    /// The log entry at `index`.
    pub fn entry(&self, index: u64) -> Option<Entry> {
        self.reads().entry(index)
    }

    /// Makes the log's appends durable (file-backed stores); the driver
    /// calls it once per step before releasing the step's messages.
    pub fn sync_log(&mut self) -> Result<(), belfry_timestamp::store::LogWriteError> {
        self.log.sync()
    }

    /// Every signed tree head, by size, read from the log store
    /// (inspection and tests).
    pub fn heads(&self) -> BTreeMap<u64, SignedTreeHead> {
        self.reads()
            .all_heads()
            .into_iter()
            .map(|h| (h.head.tree_size, h))
            .collect()
    }

    /// The latest signed tree head.
    pub fn latest_head(&self) -> Option<SignedTreeHead> {
        self.log.latest_head()
    }

    /// The broadcast node (for inspection).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The log index of a digest, if logged.
    pub fn leaf_index(&self, digest: &[u8; 32]) -> Option<u64> {
        self.reads().index_of(digest)
    }

    /// The size of the latest signed tree head (0 before the first).
    pub fn signed_size(&self) -> u64 {
        self.log.latest_head().map_or(0, |h| h.head.tree_size)
    }

    /// Digests reported and not yet logged.
    pub fn pending_len(&self) -> usize {
        self.intake.len()
    }

    /// Digests reported again after a state install dropped the own
    /// vertices that carried them.
    pub fn reports_again(&self) -> u64 {
        self.intake.reports_again
    }

    /// Digests reported because the sequencer awaited them: past the late
    /// deadline, holding the order back, not reported by this replica
    /// (docs/design.md §3.5).
    pub fn reports_awaited(&self) -> u64 {
        self.intake.reports_awaited
    }

    /// Where digests wait (metrics): reports queued for this replica's
    /// coming vertices, digests pending in the sequencer, of those the ones
    /// only this replica and at most `f − 1` others reported (its weak
    /// quota's use), and reports the sequencer did not count because their
    /// author was at its weak quota (running total, all authors).
    pub fn intake_load(&self) -> (usize, usize, usize, u64) {
        let me = self.config.broadcast.me.index();
        (
            self.node.queued_reports(),
            self.sequencer.pending_len(),
            self.sequencer
                .weak_per_author()
                .get(me)
                .copied()
                .unwrap_or(0),
            self.sequencer.over_quota(),
        )
    }

    /// Marks a replica that starts with nothing durable (new, or its data
    /// was lost): it observes from its first `Start` until it is past every
    /// round it may have signed in, unless the config says otherwise.
    pub fn start_blank(&mut self) {
        #[cfg(feature = "sim-hooks")]
        let observe = self.config.rejoin_as_observer;
        #[cfg(not(feature = "sim-hooks"))]
        let observe = true;
        self.observe_on_start = observe;
    }

    /// Whether the replica observes (see [`ReplicaCore::start_blank`]).
    pub fn observing(&self) -> bool {
        self.node.observing()
    }

    /// Why the replica stopped itself, if it found its own state
    /// inconsistent (see [`crate::host::HostError::Poisoned`]).
    pub fn poisoned(&self) -> Option<&'static str> {
        self.poisoned
    }

    fn poison(&mut self, why: &'static str) {
        self.poisoned.get_or_insert(why);
    }

    /// The log store read that failed, if one did (see
    /// [`crate::host::HostError::LogRead`]).
    pub fn log_failed(&self) -> Option<&LogReadError> {
        self.log_failed.get()
    }

    /// Reads of the log store (see [`Reads`]).
    pub(crate) fn reads(&self) -> Reads<'_> {
        Reads {
            log: &*self.log,
            failed: &self.log_failed,
        }
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Micros, input: CoreInput) -> CoreStep {
        self.now = self.now.max(now);
        let mut out = CoreStep::default();
        if self.poisoned.is_some() || self.log_failed.get().is_some() {
            return out;
        }
        let from_peer = matches!(input, CoreInput::Peer { .. });
        match input {
            CoreInput::Start => {
                out.faults.append(&mut self.faults_on_restore);
                if std::mem::take(&mut self.observe_on_start) {
                    self.drive(Input::Observe, &mut out);
                }
                self.drive(Input::Start, &mut out);
                self.resend_head_shares(&mut out);
            }
            CoreInput::Timer(CoreTimer::Broadcast(k)) => {
                self.maybe_start_catchup(&mut out);
                self.drive(Input::Timer(k), &mut out)
            }
            CoreInput::Timer(CoreTimer::CatchUp) => self.maybe_start_catchup(&mut out),
            CoreInput::Timer(CoreTimer::HeadShares) => self.resend_head_shares(&mut out),
            CoreInput::PeerReconnected(p) => self.drive(Input::PeerReconnected(p), &mut out),
            CoreInput::Peer { from, frame } => match wire::decode::<PeerMessage>(&frame) {
                Ok(PeerMessage::Broadcast(message)) => {
                    self.drive(Input::Message { from, message }, &mut out)
                }
                Ok(PeerMessage::HeadShare { tree_size, share }) => {
                    self.on_head_share(from, tree_size, share, &mut out)
                }
                Ok(PeerMessage::FetchLog { from: index }) => self.serve_log(from, index, &mut out),
                Ok(PeerMessage::FetchState { at_most }) => {
                    self.serve_state(from, at_most, &mut out)
                }
                Ok(PeerMessage::LogRange {
                    from: index,
                    entries,
                    head,
                    proof,
                }) => {
                    let page = LogPage {
                        from: index,
                        entries,
                        head,
                        proof,
                    };
                    self.on_log_range(from, page, &frame, &mut out)
                }
                Ok(PeerMessage::State {
                    tree_size,
                    page,
                    pages,
                    bytes,
                }) => self.on_state_page(from, tree_size, page, pages, bytes, &mut out),
                Ok(PeerMessage::FetchLeaders { from_wave, floor }) => {
                    self.serve_leaders(from, from_wave, floor, &mut out)
                }
                Ok(PeerMessage::Leaders {
                    from_wave,
                    page,
                    pages,
                    vertices,
                }) => self.on_leaders_page(from, from_wave, page, pages, vertices, &mut out),
                Ok(PeerMessage::CannotServe(_)) => self.on_cannot_serve(from, &mut out),
                Err(error) => out.faults.push(CoreFault::Frame {
                    replica: Some(from),
                    client: None,
                    error,
                    frame: frame_hash(&frame),
                }),
            },
            CoreInput::Client { client, frame } => self.on_client_frame(client, &frame, &mut out),
            CoreInput::ClientGone(client) => self.forget_client(client),
            CoreInput::ClientDrained {
                client,
                pushes,
                answers,
            } => self.client_drained(client, pushes, answers),
        }
        if from_peer {
            // Peers' rounds are how a lagging replica learns it lags.
            self.maybe_start_catchup(&mut out);
        }
        self.flush_rereports(&mut out);
        self.serve_clients(&mut out);
        out
    }
}
