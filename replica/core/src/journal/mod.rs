//! What a replica persists, and how it gets it back (docs/design.md §3.3, 3.8).
//!
//! # Durability domains, in the order they are made durable
//!
//! 1. **The journal** — one record per turn of the [`crate::host::Host`]
//!    ([`TurnRecord`]): the broadcast node's durable facts (own vertices,
//!    votes, delivered vertices, coins, checkpoints), the log entries the turn
//!    appended, the tree heads it signed and the sequencer's changes, in *one*
//!    checksummed record (split into parts with a continuation flag when it is
//!    large; a turn without its last part is dropped whole). Appended and
//!    synced once per turn, before the turn's messages leave: what a turn
//!    did is durable entirely or not at all, so a restarted replica's node,
//!    sequencer and log always agree.
//! 2. **The log store** — entries, the digest index, tree heads (redb) and
//!    tree nodes (files) of [`crate::filelog::FileLog`], or the simulator's
//!    [`belfry_timestamp::store::MemoryLog`]. Derived from the journal and
//!    synced lazily, after the journal: it is never durably *behind* what the
//!    journal still holds, and may be *ahead* of the journal only by the
//!    turns a crash lost (it is cut back on open; nothing of those turns
//!    was released).
//!
//! # Compaction
//!
//! The journal would grow with the log. Every so often, between two turns,
//! the host syncs the log store and appends a [`Snapshot`]: the broadcast
//! node's live records ([`belfry_broadcast::Node::live_records`]), the whole
//! sequencer state and the log's durable length (`base`). Once the snapshot
//! is durable, everything before it is dropped (whole segment files). A
//! snapshot is built from memory — O(what the replica holds), never a
//! re-read of the journal — and a restart reads one snapshot plus the turns
//! after it: a bounded amount, whatever the log's length.
//!
//! # Recovery
//!
//! The last complete snapshot, then every complete turn after it in order:
//! broadcast records accumulate, log entries from `base` on and heads are
//! collected, sequencer deltas are applied. The log store is then cut back
//! to the journal's length if a crash left it ahead, and topped up from the
//! journal's entries if it is behind ([`crate::ReplicaCore::restore_with_log`]).

use belfry_broadcast::fair::{SequencerDelta, SequencerState};
use belfry_broadcast::Durable;
use belfry_timestamp::store::{SegmentLog, StoreError};
use belfry_timestamp::{Entry, SignedTreeHead};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod file;
pub use file::{read_parts, FileJournal, ReadParts};

/// Segment size of the journal.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Largest part of one journal record on disk: bigger turns and snapshots
/// are split into parts (well under the segment log's record limit).
pub const MAX_PART_BYTES: usize = 4 * 1024 * 1024;

/// One turn's durable effects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// Log index of `entries[0]` (the log's length before the turn).
    pub first: u64,
    /// Log entries appended, in order.
    pub entries: Vec<Entry>,
    /// Tree heads signed (or installed by catch-up).
    pub heads: Vec<SignedTreeHead>,
    /// The broadcast node's durable facts, in the order they were made.
    pub writes: Vec<Durable>,
    /// The sequencer's changes, if a batch was sequenced or a snapshot
    /// installed.
    pub sequencer: Option<SequencerUpdate>,
}

/// How a turn changed the sequencer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SequencerUpdate {
    /// Ordinary sequencing: the changes since the previous turn.
    Delta(Box<SequencerDelta>),
    /// A state installed by catch-up replaces the old one.
    Whole(Box<SequencerState>),
}

impl TurnRecord {
    /// Whether the turn made nothing durable.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.heads.is_empty()
            && self.writes.is_empty()
            && self.sequencer.is_none()
    }
}

/// What a compacted journal starts from (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The log store's durable length when the snapshot was taken: entries
    /// below it are in the log store, not in the journal.
    pub base: u64,
    /// The log's length then (entries from `base` up to it follow here).
    pub log_len: u64,
    /// Entries `base..log_len` (empty when the log store was synced first).
    pub entries: Vec<Entry>,
    /// Signed heads the log store does not hold durably.
    pub heads: Vec<SignedTreeHead>,
    /// The broadcast node's live records.
    pub broadcast: Vec<Durable>,
    /// The sequencer state.
    pub sequencer: Option<SequencerState>,
}

/// A journal record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalRecord {
    /// A turn.
    Turn(TurnRecord),
    /// A compaction point.
    Snapshot(Box<Snapshot>),
}

/// Everything a replica restarts from.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The broadcast node's records, in write order.
    pub broadcast: Vec<Durable>,
    /// Log index of `entries[0]`: the snapshot's `base` (the entries
    /// before it are in the log store).
    pub entries_from: u64,
    /// Log entries from `entries_from` on.
    pub entries: Vec<Entry>,
    /// Signed heads not (durably) in the log store.
    pub heads: Vec<SignedTreeHead>,
    /// The sequencer state.
    pub sequencer: Option<SequencerState>,
    /// Turns replayed after the snapshot.
    pub turns: u64,
    /// Bytes read from storage (0 for the in-memory journal).
    pub bytes_read: u64,
}

impl Recovered {
    /// Number of log entries the journal accounts for.
    pub fn entries_len(&self) -> u64 {
        self.entries_from + self.entries.len() as u64
    }

    /// Whether nothing was ever persisted (a new or wiped replica).
    pub fn is_blank(&self) -> bool {
        self.broadcast.is_empty() && self.entries_len() == 0 && self.sequencer.is_none()
    }
}

/// Why a replica cannot restart from what it has.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record that does not decode.
    #[error("{path}: undecodable journal record #{index}: {why}")]
    Decode {
        /// The journal directory.
        path: PathBuf,
        /// Record number.
        index: u64,
        /// Why.
        why: String,
    },
    /// A turn that does not continue the log where the journal left it.
    #[error("journal turn #{index} starts at log index {first}, the journal is at {at}")]
    Gap {
        /// Record number.
        index: u64,
        /// Where the turn claims to start.
        first: u64,
        /// Where the journal was.
        at: u64,
    },
    /// The persisted state is for another cluster size.
    #[error("persisted sequencer state does not match this cluster's size")]
    ClusterMismatch,
    /// The log store holds entries the journal does not.
    #[error("log store holds {stored} entries, the journal only {ledger}")]
    LogAhead {
        /// Entries in the log store.
        stored: u64,
        /// Entries the journal recovered.
        ledger: u64,
    },
    /// The journal was compacted against a log store that lacks entries
    /// before its base.
    #[error("log store holds {stored} entries, the journal starts at {base}")]
    LogMissing {
        /// Entries in the log store.
        stored: u64,
        /// The journal's base.
        base: u64,
    },
    /// The log store could not be read.
    #[error(transparent)]
    LogRead(#[from] belfry_timestamp::store::LogReadError),
    /// The log store disagrees with the journal at an index.
    #[error("log store and journal differ at entry {0}")]
    LogMismatch(u64),
    /// A persisted tree head that does not match the log or does not verify.
    #[error("persisted tree head of size {0} does not match the log or its signature")]
    BadHead(u64),
}

/// Rebuilds [`Recovered`] from records in journal order: the last snapshot,
/// then the turns after it.
pub fn recover<'a>(
    records: impl IntoIterator<Item = &'a JournalRecord>,
) -> Result<Recovered, RestoreError> {
    let records: Vec<&JournalRecord> = records.into_iter().collect();
    let start = records
        .iter()
        .rposition(|r| matches!(r, JournalRecord::Snapshot(_)));
    let mut out = Recovered::default();
    if let Some(JournalRecord::Snapshot(s)) = start.map(|i| records[i]) {
        out.broadcast.clone_from(&s.broadcast);
        out.entries_from = s.base;
        out.entries.clone_from(&s.entries);
        out.heads.clone_from(&s.heads);
        out.sequencer.clone_from(&s.sequencer);
    }
    let from = start.map_or(0, |i| i + 1);
    for (k, r) in records[from..].iter().enumerate() {
        let JournalRecord::Turn(t) = r else { continue };
        let at = out.entries_len();
        if t.first != at && !t.entries.is_empty() {
            return Err(RestoreError::Gap {
                index: (from + k) as u64,
                first: t.first,
                at,
            });
        }
        out.broadcast.extend(t.writes.iter().cloned());
        out.entries.extend_from_slice(&t.entries);
        out.heads.extend_from_slice(&t.heads);
        match &t.sequencer {
            Some(SequencerUpdate::Whole(s)) => out.sequencer = Some((**s).clone()),
            Some(SequencerUpdate::Delta(d)) => {
                // Before any snapshot the first delta carries every change
                // since genesis, so it applies to an empty state.
                let mut s = out.sequencer.take().unwrap_or_else(SequencerState::empty);
                s.apply((**d).clone());
                out.sequencer = Some(s);
            }
            None => {}
        }
        out.turns += 1;
    }
    let end = out.entries_len();
    out.heads.retain(|h| h.head.tree_size <= end);
    Ok(out)
}

/// A replica's journal: records appended and made durable separately, so
/// a driver can group inputs into one turn and the simulator can crash a
/// replica between the two.
pub trait Journal: Send {
    /// Appends a record; it is durable only after [`Journal::sync`].
    fn append(&mut self, record: JournalRecord) -> Result<(), StoreError>;
    /// Makes every appended record durable (one fsync), then drops what a
    /// durable snapshot made unnecessary.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Records appended since the last snapshot (the compaction trigger).
    fn records_since_snapshot(&self) -> u64;
    /// Bytes appended since the last snapshot (0 where not known).
    fn bytes_since_snapshot(&self) -> u64;
    /// The journal as a [`MemoryJournal`], if it is one (the in-process
    /// cluster keeps a crashed replica's journal to restart it from); only
    /// with `sim-hooks`.
    #[cfg(feature = "sim-hooks")]
    fn into_memory(self: Box<Self>) -> Option<MemoryJournal> {
        None
    }
}

impl Journal for Box<dyn Journal> {
    fn append(&mut self, record: JournalRecord) -> Result<(), StoreError> {
        (**self).append(record)
    }
    fn sync(&mut self) -> Result<(), StoreError> {
        (**self).sync()
    }
    fn records_since_snapshot(&self) -> u64 {
        (**self).records_since_snapshot()
    }
    fn bytes_since_snapshot(&self) -> u64 {
        (**self).bytes_since_snapshot()
    }
    #[cfg(feature = "sim-hooks")]
    fn into_memory(self: Box<Self>) -> Option<MemoryJournal> {
        (*self).into_memory()
    }
}

/// How an armed crash strikes an in-memory journal (only with `sim-hooks`).
#[cfg(feature = "sim-hooks")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every record not yet synced is lost.
    LoseUnsynced,
    /// The first `k` unsynced records reached the disk; the next one was
    /// torn (cut on open, so lost too).
    Torn {
        /// Unsynced records that survive.
        survive: usize,
    },
}

/// The journal in memory, for tests and the simulator: typed records (no
/// encoding), with the crash model of a real disk — an unsynced tail is
/// lost, and a crash can tear a record (a torn record is cut on open, as
/// [`SegmentLog`] does).
#[derive(Clone, Debug, Default)]
pub struct MemoryJournal {
    /// Durable records, from the last durable snapshot on.
    durable: Vec<JournalRecord>,
    /// Appended, not yet synced.
    unsynced: Vec<JournalRecord>,
    since_snapshot: u64,
    /// Records dropped by compaction so far.
    pub compacted: u64,
    /// Records lost or torn by crashes so far.
    pub lost: u64,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a restart reads.
    pub fn recover(&self) -> Result<Recovered, RestoreError> {
        recover(&self.durable)
    }

    /// A crash: the unsynced tail is lost, in whole or from a torn record on
    /// (only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    pub fn crash(&mut self, mode: CrashMode) {
        let survive = match mode {
            CrashMode::LoseUnsynced => 0,
            CrashMode::Torn { survive } => survive.min(self.unsynced.len()),
        };
        let tail = std::mem::take(&mut self.unsynced);
        self.lost += (tail.len() - survive) as u64;
        let kept: Vec<JournalRecord> = tail.into_iter().take(survive).collect();
        self.settle(kept);
    }

    /// Records not yet synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// The last turn appended and not yet synced.
    pub fn last_unsynced_turn(&self) -> Option<&TurnRecord> {
        self.unsynced.iter().rev().find_map(|r| match r {
            JournalRecord::Turn(t) => Some(t),
            JournalRecord::Snapshot(_) => None,
        })
    }

    /// The durable records (from the last durable snapshot on).
    pub fn durable(&self) -> &[JournalRecord] {
        &self.durable
    }

    /// Wipes everything (a lost disk; only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    pub fn wipe(&mut self) {
        *self = MemoryJournal::default();
    }

    /// Moves records to the durable part and drops what precedes the last
    /// durable snapshot.
    fn settle(&mut self, records: Vec<JournalRecord>) {
        self.durable.extend(records);
        if let Some(i) = self
            .durable
            .iter()
            .rposition(|r| matches!(r, JournalRecord::Snapshot(_)))
        {
            if i > 0 {
                self.compacted += i as u64;
                self.durable.drain(..i);
            }
        }
    }
}

impl Journal for MemoryJournal {
    fn append(&mut self, record: JournalRecord) -> Result<(), StoreError> {
        if matches!(record, JournalRecord::Snapshot(_)) {
            self.since_snapshot = 0;
        } else {
            self.since_snapshot += 1;
        }
        self.unsynced.push(record);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let records = std::mem::take(&mut self.unsynced);
        self.settle(records);
        Ok(())
    }

    fn records_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    fn bytes_since_snapshot(&self) -> u64 {
        0
    }

    #[cfg(feature = "sim-hooks")]
    fn into_memory(self: Box<Self>) -> Option<MemoryJournal> {
        Some(*self)
    }
}
