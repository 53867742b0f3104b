//! What a replica persists, and how it gets it back (DESIGN.md 3.8).
//!
//! Two append-only, checksummed segment logs: the *ledger* (log entries,
//! signed tree heads and the sequencer state after each Tick, in log order) and
//! the *broadcast* records (own vertices, votes, delivered vertices, coins and
//! ordering checkpoints). A step is persisted ledger first, then broadcast,
//! each with one fsync, before its messages are released. So after any crash
//! the ledger is at least as far along as the broadcast node's checkpoint; the
//! node then re-derives the batches the ledger already holds and the replica
//! skips them, and votes are always on disk before they were sent.
//!
//! On recovery the ledger is cut back to its last sequencer snapshot: entries
//! after it belong to a batch whose snapshot never reached the disk, and the
//! node will order that batch again.
//!
//! The ledger is the write-ahead record. What the replica *reads* — entries by
//! index, the digest index, tree nodes for proofs — lives behind
//! [`belfry_timestamp::store::LogStore`]: in memory
//! ([`belfry_timestamp::store::MemoryLog`]) or in redb plus node files
//! ([`crate::filelog::FileLog`], opened with [`FileStore::open_log`], cut back
//! to the ledger and topped up from it on restart).
//!
//! Both logs only grow; [`FileStore::compact`] (and [`MemoryStore::compact`]
//! in the simulator) rewrites them to what a restart reads — the last
//! checkpoint and sequencer snapshot, votes and vertices above the horizon,
//! the log entries and heads — crash-safely, by writing a new log beside the
//! old one and swapping it in. [`FileStore::compact_against`] also drops the
//! entries and heads the replica's file log holds durably: the ledger then
//! starts with a [`LedgerRecord::Base`] and a restart reads only its tail.

use crate::core::CoreStep;
use belfry_broadcast::fair::SequencerState;
use belfry_broadcast::Durable;
use belfry_timestamp::store::{SegmentLog, StoreError};
use belfry_timestamp::{Entry, SignedTreeHead};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Segment size of the replica's logs.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// One ledger record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerRecord {
    /// A log entry (canonical bytes on disk).
    Entry(Entry),
    /// A signed tree head.
    Head(SignedTreeHead),
    /// The sequencer state after the Tick that precedes it.
    Sequencer(Box<SequencerState>),
    /// Only as the first record, after a compaction against a file log:
    /// the entries (and heads) before this log index are in the file log,
    /// not here.
    Base(u64),
}

/// Everything a replica restarts from.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The broadcast node's records, in write order.
    pub broadcast: Vec<Durable>,
    /// Log index of `entries[0]`: 0, or a compacted ledger's base (the
    /// entries before it are in the file log).
    pub entries_from: u64,
    /// Log entries from `entries_from` up to the last sequencer snapshot.
    pub entries: Vec<Entry>,
    /// Signed heads within those entries.
    pub heads: Vec<SignedTreeHead>,
    /// The last sequencer snapshot.
    pub sequencer: Option<SequencerState>,
}

/// Why a replica cannot restart from what it has.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record that does not decode.
    #[error("undecodable {what} record #{index}: {why}")]
    Decode {
        /// Which log.
        what: &'static str,
        /// Record number.
        index: usize,
        /// Why.
        why: String,
    },
    /// The persisted state is for another cluster size.
    #[error("persisted sequencer state does not match this cluster's size")]
    ClusterMismatch,
    /// The log store holds entries the ledger does not.
    #[error("log store holds {stored} entries, the ledger only {ledger}")]
    LogAhead {
        /// Entries in the log store.
        stored: u64,
        /// Entries the ledger recovered.
        ledger: u64,
    },
    /// The ledger was compacted against a file log that lacks entries
    /// before its base.
    #[error("log store holds {stored} entries, the compacted ledger starts at {base}")]
    LogMissing {
        /// Entries in the log store.
        stored: u64,
        /// The ledger's base.
        base: u64,
    },
    /// The log store disagrees with the ledger at an index.
    #[error("log store and ledger differ at entry {0}")]
    LogMismatch(u64),
    /// A persisted tree head that does not match the log or does not verify.
    #[error("persisted tree head of size {0} does not match the log or its signature")]
    BadHead(u64),
}

/// Orders a step's ledger records: entries, each batch's snapshot right after
/// its Tick, then the heads signed in the step.
pub fn ledger_records(step: &CoreStep, log_len_before: u64) -> Vec<LedgerRecord> {
    let mut out = Vec::with_capacity(step.appended.len() + step.snapshots.len() + step.heads.len());
    let mut snapshots = step.snapshots.iter().peekable();
    for (i, e) in step.appended.iter().enumerate() {
        out.push(LedgerRecord::Entry(*e));
        let len = log_len_before + i as u64 + 1;
        while let Some((at, state)) = snapshots.peek() {
            if *at != len {
                break;
            }
            out.push(LedgerRecord::Sequencer(Box::new(state.clone())));
            snapshots.next();
        }
    }
    out.extend(step.heads.iter().map(|h| LedgerRecord::Head(*h)));
    out
}

/// Rebuilds [`Recovered`] from the two record streams.
pub fn recover(ledger: &[LedgerRecord], broadcast: Vec<Durable>) -> Recovered {
    let mut entries = Vec::new();
    let mut heads = Vec::new();
    let mut sequencer = None;
    let mut entries_from = 0;
    let mut keep = 0;
    for r in ledger {
        match r {
            LedgerRecord::Entry(e) => entries.push(*e),
            LedgerRecord::Head(h) => heads.push(*h),
            LedgerRecord::Sequencer(s) => {
                sequencer = Some((**s).clone());
                keep = entries.len();
            }
            LedgerRecord::Base(b) if entries.is_empty() => {
                entries_from = *b;
            }
            // A base anywhere else is not something this code writes.
            LedgerRecord::Base(_) => {}
        }
    }
    entries.truncate(keep);
    let end = entries_from + keep as u64;
    heads.retain(|h| h.head.tree_size <= end);
    Recovered {
        broadcast,
        entries_from,
        entries,
        heads,
        sequencer,
    }
}

/// A replica's persistence: in memory for tests and the simulator, files in
/// the node.
pub trait ReplicaStore {
    /// Persists a step (ledger first, then broadcast records), durably.
    fn persist(&mut self, step: &CoreStep, log_len_before: u64) -> Result<(), StoreError>;
}

/// In-memory storage for tests and the simulator, with crash faults: a crash
/// can be armed to strike in the middle of a later `persist`, after a given
/// number of records reached the store, as a power cut between writes would.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// Durable ledger records.
    pub ledger: Vec<LedgerRecord>,
    /// Durable broadcast records.
    pub broadcast: Vec<Durable>,
    /// Records that will still be written before the armed crash strikes.
    pub crash_after_records: Option<usize>,
    /// Whether the armed crash has struck (the replica must be stopped).
    pub crashed: bool,
}

impl Recovered {
    /// Number of recovered log entries.
    pub fn entries_len(&self) -> u64 {
        self.entries_from + self.entries.len() as u64
    }
}

impl MemoryStore {
    /// Drops the broadcast records a restart no longer reads (see
    /// [`belfry_broadcast::Node::restore`]): every checkpoint but the last;
    /// votes, delivered vertices and own vertices below the last
    /// checkpoint's horizon — but the latest own vertex and the latest one
    /// with reports, which fix the round and the receive-time floor it
    /// resumes from; coins of decided waves; and every sequencer snapshot in
    /// the ledger but the last. What a restart rebuilds is the same; memory
    /// grows with the log only. Returns the records dropped.
    pub fn compact(&mut self, gc_depth: u64) -> usize {
        let last_snapshot = self
            .ledger
            .iter()
            .rposition(|r| matches!(r, LedgerRecord::Sequencer(_)));
        let ledger_before = self.ledger.len();
        let mut k = 0usize;
        self.ledger.retain(|r| {
            let at = k;
            k += 1;
            !matches!(r, LedgerRecord::Sequencer(_)) || Some(at) == last_snapshot
        });
        let ledger_dropped = ledger_before - self.ledger.len();
        let Some(cp) = self.broadcast.iter().rev().find_map(|r| match r {
            Durable::Checkpoint(cp) => Some(cp.clone()),
            _ => None,
        }) else {
            return ledger_dropped;
        };
        let horizon = cp.horizon(gc_depth);
        let latest_own = self
            .broadcast
            .iter()
            .rposition(|r| matches!(r, Durable::OwnVertex(_)));
        let latest_with_reports = self
            .broadcast
            .iter()
            .rposition(|r| matches!(r, Durable::OwnVertex(v) if !v.reports.is_empty()));
        let last_cp = self
            .broadcast
            .iter()
            .rposition(|r| matches!(r, Durable::Checkpoint(_)));
        let before = self.broadcast.len();
        let mut k = 0usize;
        self.broadcast.retain(|r| {
            let at = k;
            k += 1;
            match r {
                Durable::Checkpoint(_) => Some(at) == last_cp,
                Durable::OwnVertex(v) => {
                    v.round >= horizon || Some(at) == latest_own || Some(at) == latest_with_reports
                }
                Durable::Vote { round, .. } => *round >= horizon,
                Durable::Delivered(v) => v.round >= horizon,
                Durable::Coin(c) => c.wave > cp.last_decided_wave,
            }
        });
        ledger_dropped + before - self.broadcast.len()
    }

    /// What a restart finds.
    pub fn recover(&self) -> Recovered {
        recover(&self.ledger, self.broadcast.clone())
    }
}

impl ReplicaStore for MemoryStore {
    fn persist(&mut self, step: &CoreStep, log_len_before: u64) -> Result<(), StoreError> {
        if self.crashed {
            return Ok(());
        }
        // Ledger first, then broadcast records — the order the file store
        // syncs in; an armed crash cuts the sequence anywhere.
        for r in ledger_records(step, log_len_before) {
            if !self.take_budget() {
                return Ok(());
            }
            self.ledger.push(r);
        }
        for w in &step.writes {
            if !self.take_budget() {
                return Ok(());
            }
            self.broadcast.push(w.clone());
        }
        Ok(())
    }
}

impl MemoryStore {
    fn take_budget(&mut self) -> bool {
        match self.crash_after_records.as_mut() {
            Some(0) => {
                self.crashed = true;
                self.crash_after_records = None;
                false
            }
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }
}

/// Files: `<dir>/ledger/*.seg` and `<dir>/broadcast/*.seg`.
#[derive(Debug)]
pub struct FileStore {
    ledger: SegmentLog,
    broadcast: SegmentLog,
}

impl FileStore {
    /// Opens (or creates) the store and reads back what it holds, recovering
    /// from torn tails.
    pub fn open(dir: &Path) -> Result<(FileStore, Recovered), RestoreError> {
        for name in ["ledger", "broadcast"] {
            finish_rewrite(dir, name)?;
        }
        let (ledger, l) = SegmentLog::open(&dir.join("ledger"), SEGMENT_BYTES)?;
        let (broadcast, b) = SegmentLog::open(&dir.join("broadcast"), SEGMENT_BYTES)?;
        let ledger_records = decode_all::<LedgerRecord>("ledger", &l.records)?;
        let broadcast_records = decode_all::<Durable>("broadcast", &b.records)?;
        let recovered = recover(&ledger_records, broadcast_records);
        Ok((FileStore { ledger, broadcast }, recovered))
    }

    /// Rewrites both logs to what a restart reads (see
    /// [`MemoryStore::compact`]) and reopens them. Each log is written
    /// whole to `<name>.next` and synced, then swapped in by two renames;
    /// [`FileStore::open`] finishes or discards a swap a crash interrupted,
    /// so the store is always either the old logs or the new ones. Returns
    /// the reopened store and the records dropped.
    pub fn compact(self, dir: &Path, gc_depth: u64) -> Result<(FileStore, usize), RestoreError> {
        self.compact_with(dir, gc_depth, None)
    }

    /// Like [`FileStore::compact`], and also drops from the ledger the
    /// entries — and the heads — the replica's file log already holds
    /// durably (up to the last sequencer snapshot): the ledger then starts
    /// with a [`LedgerRecord::Base`], and a restart reads only its tail and
    /// re-verifies only the heads after it. The file log must be synced.
    pub fn compact_against(
        self,
        dir: &Path,
        gc_depth: u64,
        log: &crate::filelog::FileLog,
    ) -> Result<(FileStore, usize), RestoreError> {
        self.compact_with(dir, gc_depth, Some(log))
    }

    fn compact_with(
        self,
        dir: &Path,
        gc_depth: u64,
        log: Option<&crate::filelog::FileLog>,
    ) -> Result<(FileStore, usize), RestoreError> {
        drop(self);
        let (_, l) = SegmentLog::open(&dir.join("ledger"), SEGMENT_BYTES)?;
        let (_, b) = SegmentLog::open(&dir.join("broadcast"), SEGMENT_BYTES)?;
        let mut mem = MemoryStore {
            ledger: decode_all::<LedgerRecord>("ledger", &l.records)?,
            broadcast: decode_all::<Durable>("broadcast", &b.records)?,
            ..MemoryStore::default()
        };
        drop((l, b));
        let mut dropped = mem.compact(gc_depth);
        if let Some(log) = log {
            let before = mem.ledger.len();
            mem.ledger = rebase(std::mem::take(&mut mem.ledger), log);
            dropped += before.saturating_sub(mem.ledger.len());
        }
        if dropped > 0 {
            let ledger: Vec<Vec<u8>> = mem.ledger.iter().map(encode).collect::<Result<_, _>>()?;
            let broadcast: Vec<Vec<u8>> =
                mem.broadcast.iter().map(encode).collect::<Result<_, _>>()?;
            for (name, records) in [("ledger", ledger), ("broadcast", broadcast)] {
                rewrite(dir, name, &records)?;
            }
        }
        let (store, _) = FileStore::open(dir)?;
        Ok((store, dropped))
    }

    /// Opens the replica's file-backed log (`<dir>/log`, see
    /// [`crate::filelog`]) for [`crate::ReplicaCore::restore_with_log`],
    /// cut back to the entries the ledger recovered.
    pub fn open_log(
        dir: &Path,
        recovered: &Recovered,
    ) -> Result<crate::filelog::FileLog, crate::filelog::FileLogError> {
        let mut log = crate::filelog::FileLog::open(&dir.join("log"))?;
        log.truncate(recovered.entries_len())?;
        Ok(log)
    }
}

/// The ledger without the entries before `cut` and the heads the file log
/// holds up to it, where `cut` is the file log's durable length, at most the
/// last sequencer snapshot's position: it starts with `Base(cut)`.
fn rebase(ledger: Vec<LedgerRecord>, log: &crate::filelog::FileLog) -> Vec<LedgerRecord> {
    let base0 = match ledger.first() {
        Some(LedgerRecord::Base(b)) => *b,
        _ => 0,
    };
    let mut n = 0u64;
    let mut keep_abs = base0;
    for r in &ledger {
        match r {
            LedgerRecord::Entry(_) => n += 1,
            LedgerRecord::Sequencer(_) => keep_abs = base0 + n,
            _ => {}
        }
    }
    let cut = log.durable_len().min(keep_abs).max(base0);
    let mut out = Vec::with_capacity(ledger.len());
    out.push(LedgerRecord::Base(cut));
    let mut i = base0;
    for r in ledger {
        match r {
            LedgerRecord::Entry(e) => {
                if i >= cut {
                    out.push(LedgerRecord::Entry(e));
                }
                i += 1;
            }
            LedgerRecord::Head(h) => {
                let held = h.head.tree_size <= cut
                    && belfry_timestamp::store::LogStore::head_at(log, h.head.tree_size) == Some(h);
                if !held {
                    out.push(LedgerRecord::Head(h));
                }
            }
            LedgerRecord::Base(_) => {}
            other @ LedgerRecord::Sequencer(_) => out.push(other),
        }
    }
    out
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a directory's entries (created, renamed files) durable.
fn sync_dir(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_error(path))
}

/// Writes `records` as log `name` in `<dir>/<name>.next`, syncs it, and
/// swaps it in: `name` → `name.old`, `name.next` → `name`, then drops
/// `name.old`.
fn rewrite(dir: &Path, name: &str, records: &[Vec<u8>]) -> Result<(), StoreError> {
    let cur = dir.join(name);
    let next = dir.join(format!("{name}.next"));
    let old = dir.join(format!("{name}.old"));
    if next.exists() {
        std::fs::remove_dir_all(&next).map_err(io_error(&next))?;
    }
    {
        let (mut log, _) = SegmentLog::open(&next, SEGMENT_BYTES)?;
        for r in records {
            log.append(r)?;
        }
        log.sync()?;
    }
    sync_dir(&next)?;
    sync_dir(dir)?;
    std::fs::rename(&cur, &old).map_err(io_error(&cur))?;
    std::fs::rename(&next, &cur).map_err(io_error(&next))?;
    sync_dir(dir)?;
    std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
    sync_dir(dir)
}

/// Finishes or discards a rewrite of log `name` a crash interrupted: a
/// `name.next` written while `name` still stands is discarded (it may be
/// incomplete); once `name` was moved to `name.old`, `name.next` is
/// complete and takes its place; a leftover `name.old` goes.
fn finish_rewrite(dir: &Path, name: &str) -> Result<(), StoreError> {
    let cur = dir.join(name);
    let next = dir.join(format!("{name}.next"));
    let old = dir.join(format!("{name}.old"));
    if !cur.exists() && old.exists() {
        let from = if next.exists() { &next } else { &old };
        std::fs::rename(from, &cur).map_err(io_error(from))?;
        sync_dir(dir)?;
    }
    for leftover in [&next, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(io_error(leftover))?;
        }
    }
    Ok(())
}

fn decode_all<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    records: &[Vec<u8>],
) -> Result<Vec<T>, RestoreError> {
    records
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            postcard::from_bytes::<T>(bytes).map_err(|e| RestoreError::Decode {
                what,
                index,
                why: e.to_string(),
            })
        })
        .collect()
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(v).map_err(|e| StoreError::Corrupt {
        path: std::path::PathBuf::new(),
        offset: 0,
        why: format!("cannot encode a record: {e}"),
    })
}

impl ReplicaStore for FileStore {
    fn persist(&mut self, step: &CoreStep, log_len_before: u64) -> Result<(), StoreError> {
        let records = ledger_records(step, log_len_before);
        if !records.is_empty() {
            for r in &records {
                self.ledger.append(&encode(r)?)?;
            }
            self.ledger.sync()?;
        }
        if !step.writes.is_empty() {
            for w in &step.writes {
                self.broadcast.append(&encode(w)?)?;
            }
            self.broadcast.sync()?;
        }
        Ok(())
    }
}
