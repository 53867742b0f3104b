//! An offline bulk loader: a replica's data directory holding a log of `N`
//! synthetic entries, durably, as if the replica had logged them itself and
//! compacted its journal right after — so that catch-up of long logs can be
//! measured and tested without ordering millions of digests first.
//!
//! What it writes, where `belfry node` opens it (`open_host` in
//! `replica/node/src/start.rs`): the log store in `<data_dir>/log/`
//! ([`FileLog`]: entries appended, then [`LogStore::sync`]) and one journal
//! snapshot in `<data_dir>/journal/` ([`FileJournal`]): `base = log_len =
//! N`, no entries, heads or broadcast records, and the sequencer's initial
//! state under the replica's own sequencer configuration (n, f, policy,
//! genesis from `cluster.toml`). A replica opened on it is not blank
//! (`Recovered::is_blank` is false: the journal accounts for `N` entries),
//! so it starts as a member, not as an observer, with a log of `N` entries
//! and the ordering state of a cluster that has decided no wave yet.
//!
//! The log is `N` entries: distinct digests (`SHA3` of a seed and the
//! index) and, every [`TICK_EVERY`] entries and as the last entry, a Tick
//! of **wave 0**. Wave 0 is what makes the log agree with that ordering
//! state: a replica whose last Tick's wave exceeds its sequencer's last
//! wave takes its log as ahead of its ordering state, while here the
//! cluster goes on to order waves 1, 2, … after the bulk log. Each Tick's
//! `state_root` is the root of the initial state under the node's initial
//! ordering checkpoint, and its `prev_root` the log's root before it, so
//! the last Tick is one a replica's own ordering could have written: a
//! loaded replica's `ordering_matches_log` holds, and the state after it is
//! the one every loaded replica serves.
//!
//! The one way a bulk log differs from a real one: its ordering state is
//! the initial one, which an empty log has too. A replica with an empty
//! data directory must join only once the loaded replicas' DAGs are past
//! [`PAST_GC_ROUND`], as they are in any cluster that logged a long log.
//!
//! The journal and log hold nothing replica-specific (no id, key or
//! address), so one loaded directory is copied into the other replicas'
//! ([`copy`]) rather than built again: building takes minutes for 10⁷
//! entries (the file log appends about 50,000 entries a second).
//!
//! Test and benchmark code only, never part of the `belfry` binary. It
//! depends on nothing of the bench crate: `replica/cli/tests/catchup.rs`
//! compiles this file too (`#[path]`), to run against the `belfry` binary
//! cargo builds for that package.

use anyhow::{bail, ensure, Context};
use belfry_replica::broadcast::fair::Sequencer;
use belfry_replica::broadcast::Node;
use belfry_replica::coin::{sha3, GroupSignature};
use belfry_replica::filelog::FileLog;
use belfry_replica::journal::{FileJournal, Journal, JournalRecord, Snapshot};
use belfry_replica::timestamp::store::LogStore;
use belfry_replica::timestamp::{DigestEntry, Entry, TickEntry};
use belfry_replica::ReplicaConfig;
use std::path::{Path, PathBuf};

/// A Tick closes every this many entries (and the log).
pub const TICK_EVERY: u64 = 1_000;

/// The log store is synced every this many entries while loading (each
/// sync is one redb write transaction; its buffer is held in memory).
pub const SYNC_EVERY: u64 = 100_000;

/// The most entries one load writes: far beyond any catch-up to measure
/// (2³² — the index is a `u64`, but a test or benchmark asking for more is
/// a mistake).
pub const MAX_ENTRIES: u64 = 1 << 32;

/// A replica with an empty data directory may join a cluster of loaded
/// replicas only once all their DAGs are past this round, so that the
/// vertices of the first waves are below their GC horizon (`GC_DEPTH`
/// rounds under the last ordered leader), as in any cluster that has
/// logged a long log. Before, the empty replica can fetch those vertices
/// and order waves 1, 2, … itself — into its empty log, at index 0, where
/// the others logged them after the bulk log (the bulk log's ordering
/// state is the initial one: nothing tells it apart from an empty log) —
/// and then no catch-up answer verifies against its log again.
pub const PAST_GC_ROUND: u64 = 2
    * (belfry_replica::broadcast::config::GC_DEPTH
        + belfry_replica::broadcast::config::ROUND_WINDOW);

/// The directories of a data directory that [`load`] writes and [`copy`]
/// copies (`LOCK`, made by a running node, is neither).
pub const LOADED_DIRS: [&str; 2] = ["log", "journal"];

/// What [`load`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Entries in the log.
    pub entries: u64,
    /// The log's root at `entries`.
    pub root: [u8; 32],
    /// Every Tick's `state_root`: the initial state's.
    pub state_root: [u8; 32],
}

/// The `index`-th bulk digest of `seed`.
pub fn digest(seed: u64, index: u64) -> [u8; 32] {
    sha3(&[b"belfry-bulk", &seed.to_be_bytes(), &index.to_be_bytes()])
}

/// Writes a log of `entries` entries (digests of `seed`) and its journal
/// snapshot into the data directory of the replica configured by
/// `replica_toml` (a `replica-<i>.toml` of `belfry keygen`), durably;
/// `progress` is told the entries written after each sync. The directory
/// must hold no log or journal yet.
pub fn load(
    replica_toml: &Path,
    entries: u64,
    seed: u64,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<Loaded> {
    ensure!(
        (1..=MAX_ENTRIES).contains(&entries),
        "a bulk log holds 1 to {MAX_ENTRIES} entries, not {entries}"
    );
    let node = belfry_node::ReplicaFile::load(replica_toml)
        .with_context(|| format!("loading {}", replica_toml.display()))?;
    let dir = &node.data_dir;
    refuse_existing(dir)?;
    // The ordering state a replica of this cluster starts from: the
    // sequencer under the node's own configuration, and the broadcast
    // node's initial checkpoint (what `Host::open` restores from the
    // snapshot below).
    let replica = ReplicaConfig::new(node.id, node.cluster.params);
    let checkpoint = Node::new(replica.broadcast.clone(), node.crypto.clone()).checkpoint();
    let sequencer = Sequencer::new(replica.sequencer.clone());
    let state_root = sequencer.state_root(&checkpoint.commitment());
    let time = node.cluster.params.genesis_time;

    let log_dir = dir.join("log");
    let mut log = FileLog::open(&log_dir).with_context(|| format!("{}", log_dir.display()))?;
    let mut batch_len = 0u32;
    for i in 0..entries {
        let entry = if i % TICK_EVERY == TICK_EVERY - 1 || i + 1 == entries {
            let tick = TickEntry {
                wave: 0,
                time,
                coin_sig: GroupSignature([0; 96]),
                leader: [0; 32],
                state_root,
                prev_root: log.root(),
                batch_len,
            };
            batch_len = 0;
            Entry::Tick(tick)
        } else {
            batch_len += 1;
            Entry::Digest(DigestEntry {
                digest: digest(seed, i),
                witnessed_at: time,
                key: i,
                witnesses: 1,
                late: false,
            })
        };
        log.append(&entry);
        if (i + 1) % SYNC_EVERY == 0 {
            LogStore::sync(&mut log).with_context(|| format!("{}", log_dir.display()))?;
            progress(i + 1);
        }
    }
    LogStore::sync(&mut log).with_context(|| format!("{}", log_dir.display()))?;
    progress(entries);
    ensure!(
        log.len() == entries,
        "{}: {} entries after loading {entries}",
        log_dir.display(),
        log.len()
    );
    let root = log.root();
    drop(log);

    let (mut journal, recovered) =
        FileJournal::open(dir).with_context(|| format!("{}/journal", dir.display()))?;
    ensure!(recovered.is_blank(), "{}: a journal exists", dir.display());
    journal.append(JournalRecord::Snapshot(Box::new(Snapshot {
        base: entries,
        log_len: entries,
        entries: Vec::new(),
        heads: Vec::new(),
        broadcast: Vec::new(),
        sequencer: Some(sequencer.state().clone()),
    })))?;
    journal.sync()?;
    Ok(Loaded {
        data_dir: dir.clone(),
        entries,
        root,
        state_root,
    })
}

/// Refuses a data directory that already holds a log or a journal.
fn refuse_existing(dir: &Path) -> anyhow::Result<()> {
    for sub in LOADED_DIRS {
        let path = dir.join(sub);
        let used = std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_some());
        if used {
            bail!(
                "{} is not empty: bulk loading needs an unused data directory",
                path.display()
            );
        }
    }
    Ok(())
}

/// Copies a loaded data directory's log and journal into another replica's
/// data directory (created if needed, without a log or journal yet), each
/// file synced; returns the bytes copied.
pub fn copy(from: &Path, to: &Path) -> anyhow::Result<u64> {
    refuse_existing(to)?;
    let mut bytes = 0;
    for sub in LOADED_DIRS {
        bytes += copy_tree(&from.join(sub), &to.join(sub))?;
    }
    sync_dir(to)?;
    Ok(bytes)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut bytes = 0;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else {
            bytes += std::fs::copy(&src, &dst)
                .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", dst.display()))?;
        }
    }
    sync_dir(to)?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Bytes of the files under `dir`, recursively.
pub fn tree_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => tree_bytes(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
