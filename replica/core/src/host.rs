//! The host: one replica's [`ReplicaCore`], its storage and its timers behind
//! one synchronous interface that every driver uses — the simulator's event
//! queue, the in-process cluster and the tokio node. What the simulator
//! checks is therefore exactly what the node runs. The host owns no loop, no
//! thread and no clock: time comes in with every call (the replica's *local*
//! clock), and the driver keeps control of order and time (the simulator
//! stays deterministic).
//!
//! # The driver contract (in the manner of quinn-proto's `Connection`)
//!
//! A *turn* is a group of inputs whose effects are made durable together:
//!
//! 1. [`Host::handle`] for each input of the turn, [`Host::fire`] for each
//!    timer that expired. Nothing leaves the host yet.
//! 2. [`Host::flush`] seals the turn: its one [`TurnRecord`] is appended to
//!    the journal (not yet durable); between turns, a compaction snapshot
//!    may follow it.
//! 3. [`Host::sync`] makes the journal durable (one fsync) and returns the
//!    turn's [`Released`] effects. Now, and only now, the driver sends the
//!    frames, answers the clients and schedules the timer changes.
//!
//! Inputs that arrive between 2 and 3 — while the fsync runs — may be handed
//! to [`Host::handle`] at once: they form the next turn (group commit).
//! [`Host::commit`] is 2 and 3 back to back. An error from either stops the
//! replica: nothing of that turn was released, so nothing it acknowledged is
//! lost.
//!
//! # Timers
//!
//! One deadline per [`CoreTimer`] kind ([`TimerTable`]): arming a kind
//! replaces its deadline and bumps its generation. The driver schedules each
//! [`TimerSet`] it is given and hands it back to [`Host::fire`] when it
//! expires; one that was replaced since, or that belongs to an earlier
//! incarnation of the replica (generations start at `incarnation << 32`),
//! is ignored — so a restart can never multiply timers.
//!
//! # The hooks a simulator needs
//!
//! - *Per-turn checks and report absorption*: [`Released`] carries what the
//!   turn made durable (entries from index `first`, heads, broadcast
//!   records) and the faults it recorded.
//! - *Crash arming*: the journal is the host's type parameter; the
//!   simulator's [`crate::journal::MemoryJournal`] crashes between
//!   [`Host::flush`] and [`Host::sync`] with a torn or lost tail, and
//!   [`Host::into_parts`] returns the journal and the log store a crash
//!   leaves behind.
//! - *Compaction*: automatic by [`HostConfig`], or [`Host::compact`].
//! - *Byzantine twins*: two hosts with one identity, each with its own
//!   journal; nothing in the host prevents it.
//! - *Local clocks*: every `now` is the replica's local time, and timer
//!   deadlines are local times too; the driver converts.

use crate::core::{
    ClientId, CoreFault, CoreInput, CoreOutput, CoreStep, CoreTimer, Frame, ReplicaConfig,
};
use crate::journal::{Journal, JournalRecord, Recovered, RestoreError, Snapshot, TurnRecord};
use crate::ReplicaCore;
use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::ThresholdCrypto;
use belfry_broadcast::{Durable, Target};
use belfry_timestamp::store::{LogStore, StoreError};
use belfry_timestamp::{Entry, SignedTreeHead};
use std::sync::Arc;

/// How often the host compacts its journal and syncs its log store.
#[derive(Clone, Copy, Debug)]
pub struct HostConfig {
    /// Compact after this many turn records since the last snapshot.
    pub compact_after_records: u64,
    /// Compact after this many journal bytes since the last snapshot.
    pub compact_after_bytes: u64,
    /// Sync the log store once this many appended entries are not durable
    /// in it (the journal holds them meanwhile).
    pub log_sync_entries: u64,
}

/// Turn records between compactions, by default.
pub const COMPACT_AFTER_RECORDS: u64 = 50_000;
/// Journal bytes between compactions, by default (a restart reads at most
/// about this much of the journal, plus one snapshot).
pub const COMPACT_AFTER_BYTES: u64 = 64 * 1024 * 1024;
/// Log entries not yet durable in the log store, at most, by default.
pub const LOG_SYNC_ENTRIES: u64 = 16_384;

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            compact_after_records: COMPACT_AFTER_RECORDS,
            compact_after_bytes: COMPACT_AFTER_BYTES,
            log_sync_entries: LOG_SYNC_ENTRIES,
        }
    }
}

/// Why a host stopped. The replica must not go on: the turn in progress was
/// not released.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The journal could not be written or synced (the error names the
    /// file: a full disk, a failing fsync).
    #[error("journal: {0}")]
    Journal(#[from] StoreError),
    /// The log store could not be synced or cut back (the error names
    /// the log).
    #[error("log store: {0}")]
    LogStore(#[from] belfry_timestamp::store::LogWriteError),
    /// The log store could not be opened.
    #[error("log store: {0}")]
    LogOpen(#[from] crate::filelog::FileLogError),
    /// The replica cannot be rebuilt from what it persisted.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// A read of the log store failed (the error names the file): the
    /// replica stops rather than take it for "not logged".
    #[error("log store: {0}")]
    LogRead(#[from] belfry_timestamp::store::LogReadError),
    /// A driver broke the contract (flushed twice without a sync).
    #[error("driver error: {0}")]
    Driver(&'static str),
    /// The replica found its own state inconsistent (a bug, never a peer's
    /// doing): the turn is not written, and the replica must restart from
    /// its journal.
    #[error("replica state inconsistent, restart it from its journal: {0}")]
    Poisoned(&'static str),
}

/// A timer the driver must schedule: fire `timer` with `generation` at the
/// local time `deadline`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerSet {
    /// Which timer.
    pub timer: CoreTimer,
    /// When (local time).
    pub deadline: Micros,
    /// Hand this back to [`Host::fire`].
    pub generation: u64,
}

/// One deadline per timer kind, with generations (see the module
/// documentation).
#[derive(Clone, Debug)]
pub struct TimerTable {
    current: [Option<(Micros, u64)>; CoreTimer::ALL.len()],
    next: u64,
}

impl TimerTable {
    /// An empty table whose generations start at `incarnation << 32`.
    pub fn new(incarnation: u64) -> Self {
        TimerTable {
            current: [None; CoreTimer::ALL.len()],
            next: incarnation << 32,
        }
    }

    /// Sets (or replaces) the deadline of `timer`.
    pub fn arm(&mut self, timer: CoreTimer, deadline: Micros) -> TimerSet {
        self.next += 1;
        self.current[timer.index()] = Some((deadline, self.next));
        TimerSet {
            timer,
            deadline,
            generation: self.next,
        }
    }

    /// Whether `generation` is `timer`'s current one; if so the timer is
    /// consumed.
    pub fn take(&mut self, timer: CoreTimer, generation: u64) -> bool {
        let slot = &mut self.current[timer.index()];
        if slot.is_some_and(|(_, g)| g == generation) {
            *slot = None;
            return true;
        }
        false
    }

    /// The armed deadline of `timer`, if any.
    pub fn deadline(&self, timer: CoreTimer) -> Option<Micros> {
        self.current[timer.index()].map(|(d, _)| d)
    }
}

/// What a turn produced, released once its record is durable.
#[derive(Debug, Default)]
pub struct Released {
    /// Frames to peers.
    pub to_peers: Vec<(Target, Vec<u8>)>,
    /// Frames to clients.
    pub to_clients: Vec<(ClientId, Vec<u8>)>,
    /// Timers to schedule (the latest per kind armed in the turn).
    pub timers: Vec<TimerSet>,
    /// Faults the turn recorded.
    pub faults: Vec<CoreFault>,
    /// Log index of `appended[0]`.
    pub first: u64,
    /// Log entries the turn appended.
    pub appended: Vec<Entry>,
    /// Tree heads the turn signed or installed.
    pub heads: Vec<SignedTreeHead>,
    /// The broadcast node's durable records of the turn.
    pub writes: Vec<Durable>,
    /// Ready digests the turn's batches held back (for the simulator's M7;
    /// only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    pub held: Vec<[u8; 32]>,
    /// How many (with repeats across batches; likewise).
    #[cfg(feature = "sim-hooks")]
    pub held_back: usize,
}

impl Released {
    /// Whether the turn produced nothing at all.
    pub fn is_empty(&self) -> bool {
        self.to_peers.is_empty()
            && self.to_clients.is_empty()
            && self.timers.is_empty()
            && self.faults.is_empty()
            && self.appended.is_empty()
            && self.heads.is_empty()
            && self.writes.is_empty()
    }
}

/// Counters of the host's storage work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Turns sealed.
    pub turns: u64,
    /// Journal syncs.
    pub syncs: u64,
    /// Compaction snapshots written.
    pub snapshots: u64,
    /// Log-store syncs.
    pub log_syncs: u64,
    /// Inputs handled.
    pub inputs: u64,
    /// Timers fired (current ones), by [`CoreTimer::index`].
    pub fired: [u64; CoreTimer::ALL.len()],
    /// Stale timers ignored (replaced since, or of an earlier incarnation).
    pub stale_timers: u64,
}

/// One replica with its storage and timers (see the module documentation).
pub struct Host<J: Journal> {
    core: ReplicaCore,
    journal: J,
    config: HostConfig,
    timers: TimerTable,
    open: Released,
    /// Whether the open turn has any input in it.
    open_inputs: u64,
    flushed: Option<Released>,
    /// Records appended to the journal and not yet synced.
    unsynced: bool,
    stats: HostStats,
}

impl<J: Journal> std::fmt::Debug for Host<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("core", &self.core)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<J: Journal> Host<J> {
    /// A host for a replica rebuilt from what `journal` held (`recovered`,
    /// from the journal's open) over `log` — cut back if a crash left it
    /// ahead of the journal, topped up if it is behind. A replica with
    /// nothing persisted starts afresh. `incarnation` counts the replica's
    /// starts (it keeps timers of earlier incarnations from firing).
    pub fn open(
        replica: ReplicaConfig,
        crypto: Arc<dyn ThresholdCrypto>,
        journal: J,
        recovered: Recovered,
        mut log: Box<dyn LogStore>,
        config: HostConfig,
        incarnation: u64,
    ) -> Result<Self, HostError> {
        if log.len() > recovered.entries_len() {
            // Log-store syncs are never ahead of the journal's, but a crash
            // between them can leave turns the journal lost: nothing of
            // those turns was released.
            log.truncate(recovered.entries_len())
                .map_err(HostError::LogStore)?;
        }
        let core = if recovered.is_blank() && log.is_empty() {
            let mut core = ReplicaCore::with_log(replica, crypto, log);
            core.start_blank();
            core
        } else {
            ReplicaCore::restore_with_log(replica, crypto, recovered, log)?
        };
        Ok(Host {
            core,
            journal,
            config,
            timers: TimerTable::new(incarnation),
            open: Released::default(),
            open_inputs: 0,
            flushed: None,
            unsynced: false,
            stats: HostStats::default(),
        })
    }

    /// The core (for reading: the log, receipts, the node's state).
    pub fn core(&self) -> &ReplicaCore {
        &self.core
    }

    /// Storage counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The journal.
    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// The timer table.
    pub fn timers(&self) -> &TimerTable {
        &self.timers
    }

    /// Whether a sealed turn awaits [`Host::sync`].
    pub fn sync_pending(&self) -> bool {
        self.flushed.is_some()
    }

    /// Whether the open turn holds anything to flush.
    pub fn turn_open(&self) -> bool {
        self.open_inputs > 0
    }

    /// The journal and log store a stop leaves behind (a crash in the
    /// simulator, a shutdown in tests).
    pub fn into_parts(self) -> (J, Box<dyn LogStore>) {
        (self.journal, self.core.into_log())
    }

    /// Hands one input to the core; its effects join the open turn.
    pub fn handle(&mut self, now: Micros, input: CoreInput) {
        self.stats.inputs += 1;
        self.open_inputs += 1;
        if self.open.appended.is_empty() {
            self.open.first = self.core.log_len();
        }
        let step = self.core.handle(now, input);
        self.absorb(step);
    }

    /// A timer expired: handled like an input if it is still current.
    /// Returns whether it was.
    pub fn fire(&mut self, now: Micros, timer: TimerSet) -> bool {
        if !self.timers.take(timer.timer, timer.generation) {
            self.stats.stale_timers += 1;
            return false;
        }
        self.stats.fired[timer.timer.index()] += 1;
        self.handle(now, CoreInput::Timer(timer.timer));
        true
    }

    /// Takes one step into the open turn, by kind.
    fn absorb(&mut self, step: CoreStep) {
        let t = &mut self.open;
        for o in step.output {
            match o {
                CoreOutput::Write(d) => t.writes.push(d),
                CoreOutput::Appended(e) => t.appended.push(e),
                CoreOutput::Head(h) => t.heads.push(h),
                CoreOutput::Timer(deadline, timer) => {
                    let set = self.timers.arm(timer, deadline);
                    t.timers.retain(|s| s.timer != timer);
                    t.timers.push(set);
                }
                #[cfg(feature = "sim-hooks")]
                CoreOutput::HeldBack(held) => {
                    t.held_back += held.len();
                    t.held.extend(held);
                }
            }
        }
        for f in step.messages {
            match f {
                Frame::Peer(to, frame) => t.to_peers.push((to, frame)),
                Frame::Client(client, frame) => t.to_clients.push((client, frame)),
            }
        }
        append(&mut t.faults, step.faults);
    }

    /// Seals the open turn: its record goes to the journal (not yet
    /// durable), and a compaction snapshot after it when one is due.
    /// Returns whether [`Host::sync`] has anything to make durable.
    pub fn flush(&mut self) -> Result<bool, HostError> {
        if self.flushed.is_some() {
            return Err(HostError::Driver(
                "flush before the previous turn was synced",
            ));
        }
        if let Some(why) = self.core.poisoned() {
            return Err(HostError::Poisoned(why));
        }
        if let Some(e) = self.core.log_failed() {
            return Err(HostError::LogRead(e.clone()));
        }
        if let Some(e) = self.core.log_store().read_failure() {
            return Err(HostError::LogRead(e));
        }
        let turn = std::mem::take(&mut self.open);
        self.open_inputs = 0;
        let record = TurnRecord {
            first: turn.first,
            entries: turn.appended.clone(),
            heads: turn.heads.clone(),
            writes: turn.writes.clone(),
            sequencer: self.core.take_sequencer_update(),
        };
        if !record.is_empty() {
            self.journal.append(JournalRecord::Turn(record))?;
            self.unsynced = true;
            self.stats.turns += 1;
        }
        if self.compaction_due() {
            self.compact()?;
        }
        self.flushed = Some(turn);
        Ok(self.unsynced)
    }

    /// Makes the sealed turn durable and releases it (see the module
    /// documentation); keeps the log store's unsynced tail bounded.
    pub fn sync(&mut self) -> Result<Released, HostError> {
        let released = self.flushed.take().unwrap_or_default();
        if std::mem::take(&mut self.unsynced) {
            self.journal.sync()?;
            self.stats.syncs += 1;
        }
        let log = self.core.log_store();
        if log.len().saturating_sub(log.durable_len()) >= self.config.log_sync_entries {
            self.sync_log()?;
        }
        Ok(released)
    }

    /// [`Host::flush`] and [`Host::sync`] back to back.
    pub fn commit(&mut self) -> Result<Released, HostError> {
        self.flush()?;
        self.sync()
    }

    fn sync_log(&mut self) -> Result<(), HostError> {
        self.core
            .log_store_mut()
            .sync()
            .map_err(HostError::LogStore)?;
        self.stats.log_syncs += 1;
        Ok(())
    }

    fn compaction_due(&self) -> bool {
        self.journal.records_since_snapshot() >= self.config.compact_after_records
            || self.journal.bytes_since_snapshot() >= self.config.compact_after_bytes
    }

    /// Appends a snapshot of what a restart needs (see
    /// [`crate::journal`]), after syncing the log store so that the
    /// snapshot need not carry any entry. Call between turns only (after
    /// [`Host::flush`], before the next [`Host::handle`]); it is durable
    /// with the next sync.
    pub fn compact(&mut self) -> Result<(), HostError> {
        self.sync_log()?;
        let log = self.core.log_store();
        let (base, log_len) = (log.durable_len(), log.len());
        let snapshot = Snapshot {
            base,
            log_len,
            entries: log.entries(base, log_len)?,
            heads: Vec::new(),
            broadcast: self.core.node().live_records(),
            sequencer: Some(self.core.sequencer_state().clone()),
        };
        self.journal
            .append(JournalRecord::Snapshot(Box::new(snapshot)))?;
        self.unsynced = true;
        self.stats.snapshots += 1;
        Ok(())
    }
}

fn append<T>(into: &mut Vec<T>, mut from: Vec<T>) {
    if into.is_empty() {
        *into = from;
    } else {
        into.append(&mut from);
    }
}
