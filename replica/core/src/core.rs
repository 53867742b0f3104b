//! `ReplicaCore`: one replica as a single sans-IO state machine (DESIGN.md
//! sections 2, 3.2, 3.5–3.7). It takes raw frames from peers and clients (and
//! enforces `max_frame` itself, so malformed bytes are an error value), drives
//! the broadcast [`Node`], sequences committed batches with the fair
//! [`Sequencer`], appends digest and Tick entries to the log, exchanges
//! tree-head shares and combines them into signed tree heads, and answers
//! clients. The network driver only moves bytes; the simulator drives this
//! very type.
//!
//! # Re-reports (DESIGN.md 3.2)
//!
//! A digest that reached only some replicas must still gather `2f + 1`
//! reports: each replica re-reports not-yet-logged digests it sees in DAG
//! vertices of other authors and has not reported itself. It takes at most
//! `⌈max_reports_per_vertex / n⌉` per source vertex and interleaves the sources
//! round-robin, so one Byzantine author's junk cannot crowd out the others'
//! (or the clients') digests; everything counts against
//! `max_pending_digests`.
//!
//! # Catch-up (DESIGN.md 3.8)
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
    ClusterParams, ReplicaId, ShareFault, SignatureCollector, SignatureShare, SignedMessage,
    ThresholdCrypto,
};
use belfry_broadcast::config::{MAX_DIGESTS_PER_REQUEST, MAX_PENDING_DIGESTS};
use belfry_broadcast::fair::{DigestIndex, Sequencer, SequencerConfig, SequencerState};
use belfry_broadcast::{
    Checkpoint, CommittedBatch, Config, Digest, Durable, Fault, Input, Node, Report, Target,
    TimerKind,
};
use belfry_timestamp::store::{extended_root, LogStore, MemoryLog};
use belfry_timestamp::{DigestEntry, Entry, Receipt, SignedTreeHead, TickEntry, TreeHead};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// A client connection's id, assigned by the driver.
pub type ClientId = u64;

/// Entries returned per `Entries`/`Subscribe` answer.
pub const MAX_ENTRIES_PER_ANSWER: u64 = 4_096;
/// Tree sizes ahead of the local log for which head shares are buffered.
pub const MAX_EARLY_HEAD_SIZES: usize = 64;

/// Configuration of one replica.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The cluster.
    pub cluster: ClusterParams,
    /// The broadcast layer.
    pub broadcast: Config,
    /// The sequencer.
    pub sequencer: SequencerConfig,
    /// See [`MAX_PENDING_DIGESTS`].
    pub max_pending_digests: usize,
    /// See [`MAX_DIGESTS_PER_REQUEST`].
    pub max_digests_per_request: usize,
    /// Adversary hook for the simulator's censoring and withholding
    /// Byzantine replicas: digests it selects are never reported (neither
    /// from clients nor as re-reports), while the replica's chain stays
    /// consistent. Honest replicas leave it `None`.
    pub never_report: Option<fn(&[u8; 32]) -> bool>,
    /// Bytes per page of a `State` or `Leaders` answer (at most
    /// [`wire::STATE_PAGE_BYTES`]; smaller in tests, to exercise paging).
    pub catchup_page_bytes: usize,
}

impl ReplicaConfig {
    /// The defaults for replica `me` of `cluster`.
    pub fn new(me: ReplicaId, cluster: ClusterParams) -> Self {
        let (n, f) = (usize::from(cluster.n), usize::from(cluster.f));
        ReplicaConfig {
            broadcast: Config::new(me, n, f, cluster.cluster_id()),
            sequencer: SequencerConfig::new(n, f, cluster.policy, cluster.genesis_time),
            cluster,
            max_pending_digests: MAX_PENDING_DIGESTS,
            max_digests_per_request: MAX_DIGESTS_PER_REQUEST,
            never_report: None,
            catchup_page_bytes: wire::STATE_PAGE_BYTES,
        }
    }
}

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
    pub const ALL: [CoreTimer; 4] = [
        CoreTimer::Broadcast(TimerKind::RoundInterval),
        CoreTimer::Broadcast(TimerKind::Resend),
        CoreTimer::CatchUp,
        CoreTimer::HeadShares,
    ];

    /// A small number per kind (for traces and tables).
    pub fn index(self) -> usize {
        match self {
            CoreTimer::Broadcast(TimerKind::RoundInterval) => 0,
            CoreTimer::Broadcast(TimerKind::Resend) => 1,
            CoreTimer::CatchUp => 2,
            CoreTimer::HeadShares => 3,
        }
    }
}

/// A problem attributed to a peer or a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreFault {
    /// A broadcast-layer fault.
    Broadcast(Fault),
    /// A frame that could not be accepted.
    Frame {
        /// The sending replica, if a peer.
        replica: Option<ReplicaId>,
        /// The sending client, if a client.
        client: Option<ClientId>,
        /// What was wrong.
        error: FrameError,
    },
    /// A tree-head share that does not verify, or for a size that is no
    /// tree head here.
    HeadShare {
        /// Sender.
        replica: ReplicaId,
        /// The size claimed.
        tree_size: u64,
    },
    /// A catch-up answer that does not verify (a log range against its
    /// signed head, a state snapshot against its Tick): the peer's answers
    /// are ignored for [`DISTRUST_FOR`].
    CatchUp {
        /// The peer.
        replica: ReplicaId,
        /// What failed.
        what: &'static str,
    },
}

/// What one input asks for: `writes`, `appended` and `heads` (and the
/// sequencer's changes, [`ReplicaCore::take_sequencer_update`]) must be
/// durable before the frames are sent and the timers armed. The
/// [`crate::host::Host`] gathers the steps of a turn and does exactly that.
#[derive(Debug, Default)]
#[must_use]
pub struct CoreStep {
    /// Broadcast-layer durable writes.
    pub writes: Vec<Durable>,
    /// Log entries appended, in order.
    pub appended: Vec<Entry>,
    /// Newly signed tree heads.
    pub heads: Vec<SignedTreeHead>,
    /// Frames to peers.
    pub to_peers: Vec<(Target, Vec<u8>)>,
    /// Frames to clients.
    pub to_clients: Vec<(ClientId, Vec<u8>)>,
    /// Timers (local-clock deadlines).
    pub timers: Vec<(Micros, CoreTimer)>,
    /// Faults.
    pub faults: Vec<CoreFault>,
    /// Ready digests held back by the hold-back rule in this step's batches.
    pub held_back: usize,
    /// Which digests were held back.
    pub held: Vec<[u8; 32]>,
}

struct LogIndex<'a>(&'a dyn LogStore);

impl DigestIndex for LogIndex<'_> {
    fn is_logged(&self, digest: &Digest) -> bool {
        self.0.index_of(&digest.0).is_some()
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
    /// Tree heads being signed: the head, its share collector and this
    /// replica's own share (re-sent until the head is complete).
    collectors: BTreeMap<u64, (TreeHead, SignatureCollector, Option<SignatureShare>)>,
    early_shares: BTreeMap<u64, Vec<(ReplicaId, SignatureShare)>>,
    pending: BTreeSet<[u8; 32]>,
    rereport: Vec<VecDeque<[u8; 32]>>,
    waiters: BTreeMap<[u8; 32], Vec<ClientId>>,
    subscribers: BTreeMap<ClientId, u64>,
    /// Sequencer state and ordering checkpoint after the most recent Ticks,
    /// by tree size, to serve catching-up peers.
    recent_states: BTreeMap<u64, (SequencerState, Checkpoint)>,
    catchup: Option<CatchUp>,
    catchups_installed: u64,
    leader_catchups: u64,
    /// Catch-up pages served to each peer in the current second: (start of
    /// the second, pages).
    served: Vec<(Micros, u64)>,
    /// Until when each peer's catch-up answers are ignored.
    distrusted: Vec<Micros>,
    /// Ticks appended (a state is kept every [`STATE_EVERY_TICKS`]).
    ticks: u64,
    /// A catch-up installed a whole sequencer state this turn.
    installed_state: bool,
    /// Faults met while restoring (reported with the first step).
    faults_on_restore: Vec<CoreFault>,
}

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

/// Recent states kept for catching-up peers.
pub const RECENT_STATES: usize = 4;

/// A state is kept for catching-up peers every this many Ticks (4 waves,
/// 16 rounds: the newest is always well within `gc_depth` of the present).
pub const STATE_EVERY_TICKS: u64 = 4;

/// Shares of an incomplete tree head are re-sent this often.
pub const HEAD_RESEND_INTERVAL: Micros = Micros::from_millis(250);

/// A catch-up in progress: entries fetched beyond the local log, verified
/// against `head` before anything is installed.
#[derive(Debug)]
struct CatchUp {
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
        ReplicaCore {
            node: Node::new(config.broadcast.clone(), crypto.clone()),
            sequencer: Sequencer::new(config.sequencer.clone()),
            config,
            crypto,
            now: Micros::ZERO,
            log,
            collectors: BTreeMap::new(),
            early_shares: BTreeMap::new(),
            pending: BTreeSet::new(),
            rereport: vec![VecDeque::new(); n],
            waiters: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            recent_states: BTreeMap::new(),
            catchup: None,
            catchups_installed: 0,
            leader_catchups: 0,
            served: vec![(Micros::ZERO, 0); n],
            distrusted: vec![Micros::ZERO; n],
            ticks: 0,
            installed_state: false,
            faults_on_restore: Vec::new(),
        }
    }

    /// Rebuilds a replica from what it persisted (see [`crate::store`]),
    /// with its log in memory.
    pub fn restore(
        config: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        recovered: crate::journal::Recovered,
    ) -> Result<Self, crate::journal::RestoreError> {
        Self::restore_with_log(config, crypto, recovered, Box::new(MemoryLog::new()))
    }

    /// Rebuilds a replica over a log store that already holds a prefix of
    /// the recovered entries (a file log synced less often than the
    /// ledger, or not at all): the rest are appended to it. A store holding
    /// entries the ledger does not is refused (its opener must cut it back
    /// to the recovered length first).
    pub fn restore_with_log(
        config: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        recovered: crate::journal::Recovered,
        log: Box<dyn LogStore>,
    ) -> Result<Self, crate::journal::RestoreError> {
        let stored = log.len();
        if stored > recovered.entries_len() {
            return Err(crate::journal::RestoreError::LogAhead {
                stored,
                ledger: recovered.entries_len(),
            });
        }
        if stored < recovered.entries_from {
            // A compacted ledger names entries only the file log held.
            return Err(crate::journal::RestoreError::LogMissing {
                stored,
                base: recovered.entries_from,
            });
        }
        let mut core = ReplicaCore::with_log(config.clone(), crypto.clone(), log);
        core.node = Node::restore(config.broadcast.clone(), crypto, &recovered.broadcast);
        if let Some(state) = recovered.sequencer {
            core.sequencer = Sequencer::restore(config.sequencer.clone(), state)
                .ok_or(crate::journal::RestoreError::ClusterMismatch)?;
        }
        // The stored prefix must be the ledger's. Below the largest signed
        // head within it, that head's root check (next) covers the stored
        // tree without reading every entry back (redb checksums its own
        // pages); the entries above it are compared one by one.
        let covered = recovered
            .heads
            .iter()
            .map(|h| h.head.tree_size)
            .filter(|s| *s <= stored)
            .max()
            .unwrap_or(0);
        for (k, entry) in recovered.entries.iter().enumerate() {
            let i = recovered.entries_from + k as u64;
            if i >= stored {
                core.log.append(entry);
            } else if i >= covered && core.log.entry(i).as_ref() != Some(entry) {
                return Err(crate::journal::RestoreError::LogMismatch(i));
            }
        }
        // Heads from the journal were verified before they were written
        // (and the journal is checksummed): each is checked against the
        // log's root, and only the latest signature again.
        let latest = recovered.heads.iter().map(|h| h.head.tree_size).max();
        for sth in recovered.heads {
            let consistent = core
                .log
                .root_at(sth.head.tree_size)
                .is_ok_and(|r| r == sth.head.root);
            let checked = Some(sth.head.tree_size) != latest || core.head_signed(&sth);
            if !consistent || !checked {
                return Err(crate::journal::RestoreError::BadHead(sth.head.tree_size));
            }
            core.log.put_head(&sth);
        }
        // The head of the last Tick, if it was still being signed when the
        // replica stopped: sign it again; the share goes out on `Start` and
        // is re-sent until the head is complete.
        let last_tick = core.log.len();
        if last_tick > core.signed_size() && core.log_has_tick_at(last_tick) {
            if let Some(Entry::Tick(t)) = core.log.entry(last_tick - 1) {
                let head = TreeHead {
                    tree_size: last_tick,
                    root: core.log.root(),
                    time: t.time,
                };
                let mut quiet = CoreStep::default();
                core.start_head(head, &mut quiet);
                core.faults_on_restore = quiet.faults;
            }
        }
        Ok(core)
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
            .then(|| crate::journal::SequencerUpdate::Delta(self.sequencer.take_delta()))
    }

    /// The whole sequencer state (for a journal snapshot).
    pub fn sequencer_state(&self) -> &SequencerState {
        self.sequencer.state()
    }

    /// Re-sends this replica's shares of the tree heads still being signed
    /// (a head whose shares a crash or a lossy link lost would otherwise
    /// never complete), and asks to be called again while any is open.
    fn resend_head_shares(&mut self, out: &mut CoreStep) {
        for (size, (_, _, own)) in &self.collectors {
            if let Some(share) = own {
                if let Ok(frame) = wire::encode(&PeerMessage::HeadShare {
                    tree_size: *size,
                    share: *share,
                }) {
                    out.to_peers.push((Target::All, frame));
                }
            }
        }
        self.arm_head_timer(out);
    }

    /// Arms the head-share timer for a head that just started (the
    /// collector is not in the table yet).
    fn arm_head_timer_now(&self, out: &mut CoreStep) {
        let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
        out.timers.push((at, CoreTimer::HeadShares));
    }

    fn arm_head_timer(&self, out: &mut CoreStep) {
        if !self.collectors.is_empty() {
            let at = self.now.saturating_add(HEAD_RESEND_INTERVAL);
            out.timers.push((at, CoreTimer::HeadShares));
        }
    }

    /// Whether a tree head carries the cluster's group signature (checked
    /// through the crypto trait, so mock-crypto clusters work too).
    fn head_signed(&self, sth: &SignedTreeHead) -> bool {
        let message = sth.head.message(self.config.cluster.cluster_id());
        self.crypto
            .verify_group(&message.signing_bytes(), &sth.signature)
    }

    /// The whole log, read from storage (tests and inspection; large logs
    /// should use [`ReplicaCore::log_len`] and [`ReplicaCore::entry`]).
    pub fn log(&self) -> Vec<Entry> {
        self.log.entries(0, self.log.len())
    }

    /// Number of log entries.
    pub fn log_len(&self) -> u64 {
        self.log.len()
    }

    /// The log entry at `index`.
    pub fn entry(&self, index: u64) -> Option<Entry> {
        self.log.entry(index)
    }

    /// Makes the log's appends durable (file-backed stores); the driver
    /// calls it once per step before releasing the step's messages.
    pub fn sync_log(&mut self) -> Result<(), String> {
        self.log.sync()
    }

    /// Every signed tree head, by size, read from the log store
    /// (inspection and tests).
    pub fn heads(&self) -> BTreeMap<u64, SignedTreeHead> {
        self.log
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
        self.log.index_of(digest)
    }

    /// The size of the latest signed tree head (0 before the first).
    pub fn signed_size(&self) -> u64 {
        self.log.latest_head().map_or(0, |h| h.head.tree_size)
    }

    /// Digests reported and not yet logged.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, now: Micros, input: CoreInput) -> CoreStep {
        self.now = self.now.max(now);
        let mut out = CoreStep::default();
        let from_peer = matches!(input, CoreInput::Peer { .. });
        match input {
            CoreInput::Start => {
                out.faults.append(&mut self.faults_on_restore);
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
                }) => self.on_log_range(from, index, entries, head, &mut out),
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
                Err(error) => out.faults.push(CoreFault::Frame {
                    replica: Some(from),
                    client: None,
                    error,
                }),
            },
            CoreInput::Client { client, frame } => match wire::decode::<ClientRequest>(&frame) {
                Ok(request) => self.on_client(client, request, &mut out),
                Err(error) => {
                    respond(&mut out, client, &ClientResponse::Error(error.to_string()));
                    out.faults.push(CoreFault::Frame {
                        replica: None,
                        client: Some(client),
                        error,
                    });
                }
            },
        }
        if from_peer {
            // Peers' rounds are how a lagging replica learns it lags.
            self.maybe_start_catchup(&mut out);
        }
        self.flush_rereports(&mut out);
        out
    }

    fn drive(&mut self, mut input: Input, out: &mut CoreStep) {
        if let (Input::Propose(reports), Some(skip)) = (&mut input, self.config.never_report) {
            reports.retain(|r| !skip(&r.digest.0));
        }
        let step = self.node.handle(self.now, input);
        for w in &step.writes {
            if let Durable::Delivered(v) = w {
                if v.author != self.config.broadcast.me {
                    self.scan_for_rereports(v);
                }
            }
        }
        if out.writes.is_empty() {
            out.writes = step.writes;
        } else {
            out.writes.extend(step.writes);
        }
        out.to_peers.reserve(step.messages.len());
        for m in step.messages {
            // Vertices are bounded well under max_frame; an oversized one
            // would be a local bug, and is dropped rather than sent.
            if let Ok(frame) = wire::encode(&PeerMessage::Broadcast(m.message)) {
                out.to_peers.push((m.to, frame));
            }
        }
        out.timers.extend(
            step.timers
                .into_iter()
                .map(|(at, k)| (at, CoreTimer::Broadcast(k))),
        );
        out.faults
            .extend(step.faults.into_iter().map(CoreFault::Broadcast));
        for batch in &step.batches {
            self.append_batch(batch, out);
        }
    }

    fn scan_for_rereports(&mut self, v: &belfry_broadcast::Vertex) {
        let n = self.config.broadcast.n.max(1);
        let cap = self.config.broadcast.max_reports_per_vertex.div_ceil(n);
        let mut taken = 0;
        for r in &v.reports {
            if taken >= cap || self.pending.len() >= self.config.max_pending_digests {
                break;
            }
            let d = r.digest.0;
            if self.pending.contains(&d) || self.log.index_of(&d).is_some() {
                continue;
            }
            self.pending.insert(d);
            if let Some(q) = self.rereport.get_mut(v.author.index()) {
                q.push_back(d);
            }
            taken += 1;
        }
    }

    fn flush_rereports(&mut self, out: &mut CoreStep) {
        let mut reports = Vec::new();
        loop {
            let mut any = false;
            for q in &mut self.rereport {
                if let Some(d) = q.pop_front() {
                    reports.push(Report {
                        digest: Digest(d),
                        recv_time: self.now,
                    });
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        if !reports.is_empty() {
            self.drive(Input::Propose(reports), out);
        }
    }

    fn append(&mut self, entry: Entry, out: &mut CoreStep) {
        let index = self.log.len();
        self.log.append(&entry);
        if let Entry::Digest(d) = &entry {
            self.pending.remove(&d.digest);
            for client in self.waiters.remove(&d.digest).unwrap_or_default() {
                respond(
                    out,
                    client,
                    &ClientResponse::Ordered {
                        digest: d.digest,
                        index,
                    },
                );
            }
        }
        out.appended.push(entry);
    }

    fn append_batch(&mut self, batch: &CommittedBatch, out: &mut CoreStep) {
        // After a restart the node may re-derive batches the log already
        // holds (the log is made durable before the node's checkpoint).
        if batch.wave <= self.sequencer.last_wave() {
            return;
        }
        let sb = self.sequencer.sequence(batch, &LogIndex(&*self.log));
        out.held_back += sb.held_back;
        out.held.extend(sb.held.iter().map(|d| d.0));
        out.faults
            .extend(sb.faults.into_iter().map(CoreFault::Broadcast));
        let first = self.log.len();
        for r in &sb.records {
            self.append(
                Entry::Digest(DigestEntry {
                    digest: r.digest.0,
                    witnessed_at: r.witnessed_at,
                    key: r.key,
                    witnesses: r.witnesses,
                    late: r.late,
                }),
                out,
            );
        }
        let tick = TickEntry {
            wave: sb.tick.wave.0,
            time: sb.tick.time,
            coin_sig: sb.tick.coin_sig,
            leader: sb.tick.leader.0,
            state_root: sb.tick.state_root,
            prev_root: self.log.root(),
            batch_len: sb.records.len() as u32,
        };
        self.append(Entry::Tick(tick), out);
        // Catching-up peers are served the state after a recent Tick: one
        // copy every few Ticks (well within gc_depth), not one per Tick.
        self.ticks += 1;
        if self.ticks % STATE_EVERY_TICKS == 0 {
            self.recent_states.insert(
                self.log.len(),
                (self.sequencer.state().clone(), batch.order.clone()),
            );
            while self.recent_states.len() > RECENT_STATES {
                self.recent_states.pop_first();
            }
        }
        let head = TreeHead {
            tree_size: self.log.len(),
            root: self.log.root(),
            time: tick.time,
        };
        self.start_head(head, out);
        self.push_to_subscribers(first, out);
    }

    fn start_head(&mut self, head: TreeHead, out: &mut CoreStep) {
        let cid = self.config.cluster.cluster_id();
        let message = head.message(cid);
        let (n, f) = (self.config.broadcast.n, self.config.broadcast.f);
        let mut collector = SignatureCollector::new(&message, n, f);
        let me = self.config.broadcast.me;
        let mut shares = self
            .early_shares
            .remove(&head.tree_size)
            .unwrap_or_default();
        if let Ok(own) = self.crypto.sign_share(&message.signing_bytes()) {
            shares.insert(0, (me, own));
            if let Ok(frame) = wire::encode(&PeerMessage::HeadShare {
                tree_size: head.tree_size,
                share: own,
            }) {
                out.to_peers.push((Target::All, frame));
            }
        }
        let own = shares.first().filter(|(r, _)| *r == me).map(|(_, s)| *s);
        let mut signed = None;
        for (from, share) in shares {
            let step = collector.add(self.crypto.as_ref(), from, share);
            self.head_faults(head.tree_size, step.faults, out);
            signed = signed.or(step.signature);
        }
        match signed {
            Some(signature) => self.finish_head(head, signature, out),
            None => {
                if self.collectors.is_empty() {
                    self.arm_head_timer_now(out);
                }
                self.collectors
                    .insert(head.tree_size, (head, collector, own));
            }
        }
        // Older heads that never completed are not waited for forever.
        while self.collectors.len() > MAX_EARLY_HEAD_SIZES {
            self.collectors.pop_first();
        }
        self.early_shares = self.early_shares.split_off(&(head.tree_size + 1));
    }

    fn head_faults(&mut self, tree_size: u64, faults: Vec<ShareFault>, out: &mut CoreStep) {
        for f in faults {
            out.faults.push(CoreFault::HeadShare {
                replica: f.replica,
                tree_size,
            });
        }
    }

    fn finish_head(
        &mut self,
        head: TreeHead,
        signature: belfry_broadcast::coin::GroupSignature,
        out: &mut CoreStep,
    ) {
        let sth = SignedTreeHead { head, signature };
        self.log.put_head(&sth);
        self.collectors.remove(&head.tree_size);
        out.heads.push(sth);
    }

    fn on_head_share(
        &mut self,
        from: ReplicaId,
        tree_size: u64,
        share: SignatureShare,
        out: &mut CoreStep,
    ) {
        if from.index() >= self.config.broadcast.n || self.log.head_at(tree_size).is_some() {
            return;
        }
        if let Some((head, collector, _)) = self.collectors.get_mut(&tree_size) {
            let head = *head;
            let step = collector.add(self.crypto.as_ref(), from, share);
            self.head_faults(tree_size, step.faults, out);
            if let Some(sig) = step.signature {
                self.finish_head(head, sig, out);
            }
            return;
        }
        let len = self.log.len();
        if tree_size <= len {
            // A size this replica has passed without a Tick ending there, or
            // one whose collector was dropped: nothing to sign it against.
            if !self.log_has_tick_at(tree_size) {
                out.faults.push(CoreFault::HeadShare {
                    replica: from,
                    tree_size,
                });
            }
            return;
        }
        if self.early_shares.len() >= MAX_EARLY_HEAD_SIZES
            && !self.early_shares.contains_key(&tree_size)
        {
            return;
        }
        let buffered = self.early_shares.entry(tree_size).or_default();
        if buffered.len() < self.config.broadcast.n && !buffered.iter().any(|(r, _)| *r == from) {
            buffered.push((from, share));
        }
    }

    fn log_has_tick_at(&self, tree_size: u64) -> bool {
        tree_size > 0
            && self
                .log
                .entry(tree_size - 1)
                .is_some_and(|e| matches!(e, Entry::Tick(_)))
    }

    /// The receipt of the entry at `index`, from the first signed head that
    /// contains it.
    pub fn receipt_at(&self, index: u64) -> Option<Receipt> {
        let sth = self.log.head_covering(index)?;
        let entry = self.log.entry(index)?;
        let proof = self.log.inclusion_proof(index, sth.head.tree_size).ok()?;
        Some(Receipt {
            cluster: self.config.cluster,
            entry,
            leaf_index: index,
            tree_size: sth.head.tree_size,
            inclusion_proof: proof,
            root: sth.head.root,
            time: sth.head.time,
            signature: sth.signature,
        })
    }

    /// The receipt of a digest, if logged and covered by a signed head.
    pub fn receipt(&self, digest: &[u8; 32]) -> Option<Receipt> {
        self.log.index_of(digest).and_then(|i| self.receipt_at(i))
    }

    fn on_client(&mut self, client: ClientId, request: ClientRequest, out: &mut CoreStep) {
        let reply = match request {
            ClientRequest::Submit(digests) => self.submit(client, digests, out),
            ClientRequest::Receipt(d) => match self.receipt(&d) {
                Some(r) => ClientResponse::receipt(&r),
                None if self.pending.contains(&d) || self.log.index_of(&d).is_some() => {
                    ClientResponse::NotYet
                }
                None => ClientResponse::Unknown,
            },
            ClientRequest::TreeHead => ClientResponse::TreeHead(self.log.latest_head()),
            ClientRequest::Consistency(a, b) => match self.log.consistency_proof(a, b) {
                Ok(p) => ClientResponse::Consistency(p),
                Err(e) => ClientResponse::Error(e.to_string()),
            },
            ClientRequest::Entries(from, to) => self.entries(from, to),
            ClientRequest::Subscribe(from) => {
                self.subscribers.insert(client, from);
                self.entries(from, from.saturating_add(MAX_ENTRIES_PER_ANSWER))
            }
        };
        respond(out, client, &reply);
    }

    fn entries(&self, from: u64, to: u64) -> ClientResponse {
        let len = self.log.len();
        if from > to {
            return ClientResponse::Error(format!("empty range {from}..{to}"));
        }
        let to = to.min(len).min(from.saturating_add(MAX_ENTRIES_PER_ANSWER));
        let from = from.min(to);
        ClientResponse::Entries {
            from,
            entries: self.log.entries(from, to),
        }
    }

    fn push_to_subscribers(&mut self, first: u64, out: &mut CoreStep) {
        let len = self.log.len();
        let subs: Vec<(ClientId, u64)> = self.subscribers.iter().map(|(c, f)| (*c, *f)).collect();
        for (client, from) in subs {
            let start = from.max(first);
            if start < len {
                let reply = self.entries(start, len);
                respond(out, client, &reply);
            }
            self.subscribers.insert(client, len.max(from));
        }
    }

    fn submit(
        &mut self,
        client: ClientId,
        digests: Vec<[u8; 32]>,
        out: &mut CoreStep,
    ) -> ClientResponse {
        if digests.len() > self.config.max_digests_per_request {
            return ClientResponse::Error(format!(
                "{} digests in one request, limit {}",
                digests.len(),
                self.config.max_digests_per_request
            ));
        }
        let (mut accepted, mut duplicates) = (0u32, 0u32);
        let mut reports = Vec::new();
        for d in digests {
            if let Some(index) = self.log.index_of(&d) {
                duplicates += 1;
                respond(out, client, &ClientResponse::Ordered { digest: d, index });
                continue;
            }
            if self.pending.contains(&d) {
                duplicates += 1;
                let w = self.waiters.entry(d).or_default();
                if !w.contains(&client) {
                    w.push(client);
                }
                continue;
            }
            if self.pending.len() >= self.config.max_pending_digests {
                if !reports.is_empty() {
                    self.drive(Input::Propose(reports), out);
                }
                return ClientResponse::Backpressure {
                    pending: self.pending.len() as u64,
                };
            }
            self.pending.insert(d);
            self.waiters.entry(d).or_default().push(client);
            reports.push(Report {
                digest: Digest(d),
                recv_time: self.now,
            });
            accepted += 1;
        }
        if !reports.is_empty() {
            self.drive(Input::Propose(reports), out);
        }
        ClientResponse::Accepted {
            accepted,
            duplicates,
        }
    }
}

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

    fn send_peer(&self, to: Target, m: &PeerMessage, out: &mut CoreStep) {
        if let Ok(frame) = wire::encode(m) {
            out.to_peers.push((to, frame));
        }
    }

    fn maybe_start_catchup(&mut self, out: &mut CoreStep) {
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
    fn take_serve_budget(&mut self, peer: ReplicaId, pages: u64) -> bool {
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

    fn serve_log(&mut self, to: ReplicaId, from: u64, out: &mut CoreStep) {
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

    fn serve_state(&mut self, to: ReplicaId, at_most: u64, out: &mut CoreStep) {
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
    fn distrust(&mut self, peer: ReplicaId, what: &'static str, out: &mut CoreStep) {
        out.faults.push(CoreFault::CatchUp {
            replica: peer,
            what,
        });
        if let Some(t) = self.distrusted.get_mut(peer.index()) {
            *t = self.now.saturating_add(DISTRUST_FOR);
        }
    }

    fn distrusts(&self, peer: ReplicaId) -> bool {
        self.distrusted
            .get(peer.index())
            .is_some_and(|until| self.now < *until)
    }

    /// Collects the pages of a peer's `State` answer; a complete answer is
    /// decoded and checked like any other. Pages nobody asked for, or that
    /// do not fit the first page's shape, are dropped.
    fn on_state_page(
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

    fn on_log_range(
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
    fn serve_leaders(&mut self, to: ReplicaId, from_wave: u64, floor: u64, out: &mut CoreStep) {
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
    fn on_leaders_page(
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

    fn on_state(
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

fn respond(out: &mut CoreStep, client: ClientId, reply: &ClientResponse) {
    match wire::encode(reply) {
        Ok(frame) => out.to_clients.push((client, frame)),
        Err(e) => {
            if let Ok(frame) = wire::encode(&ClientResponse::Error(e.to_string())) {
                out.to_clients.push((client, frame));
            }
        }
    }
}
