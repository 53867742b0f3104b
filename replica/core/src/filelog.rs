//! The node's [`LogStore`]: log entries, the digest → index lookup and the
//! signed tree heads in a redb database (`<dir>/log.redb`, tables `entries`,
//! `digest_index` and `signed_heads`), tree
//! nodes in per-level files (`<dir>/nodes/`, see [`FileNodes`]), so a replica
//! reads entries, indexes and proofs from disk and keeps only the current
//! batch's appends in memory.
//!
//! Appends are buffered until [`LogStore::sync`]: one redb write transaction
//! (immediate durability, one fsync) plus one sync of the node files — once
//! per step, before its messages are released. The ledger of
//! [`crate::store`] stays the write-ahead record: after a crash this store
//! may be behind it (unsynced appends are lost; the replica re-appends them
//! from the ledger in [`crate::ReplicaCore::restore_with_log`]) or ahead of
//! its last sequencer snapshot ([`FileLog::truncate`] cuts it back).

use belfry_timestamp::checkpoint::WitnessCosignature;
use belfry_timestamp::store::{FileNodes, LogReadError, LogStore, LogWriteError, StoreError};
use belfry_timestamp::{Entry, Hash, MerkleTree, SignedTreeHead};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("digest_index");
const HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("signed_heads");
/// redb's page cache (its default is 1 GiB, which a long log would fill):
/// entries and index rows of the recent past stay cached, older reads go to
/// the file (and the kernel's page cache).
pub const REDB_CACHE_BYTES: usize = 64 << 20;
/// Each witness's last cosignature (docs/checkpoints.md), by its key.
const COSIGNATURES: TableDefinition<&str, &[u8]> = TableDefinition::new("cosignatures");

/// Why the file log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum FileLogError {
    /// The node files.
    #[error(transparent)]
    Nodes(#[from] StoreError),
    /// The database.
    #[error("{path}: {why}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// `log.redb` is damaged: a page fails its checksum and redb could not
    /// repair it, its header is gone, or redb failed reading it.
    #[error("{path}: damaged: {why}")]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A stored entry that does not decode, or a hole in the entries.
    #[error("{path}: entry {index} is missing or corrupt")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Entry index.
        index: u64,
    },
    /// A read failed.
    #[error(transparent)]
    Read(#[from] LogReadError),
}

/// File-backed log (see the module documentation).
pub struct FileLog {
    dir: PathBuf,
    /// Taken only on drop ([`FileLog::db`]).
    db: Option<Database>,
    tree: MerkleTree<FileNodes>,
    /// Entries in the database.
    committed: u64,
    /// Appended since the last sync.
    buffer: Vec<Entry>,
    buffer_index: BTreeMap<[u8; 32], u64>,
    /// Signed heads stored since the last sync.
    head_buffer: BTreeMap<u64, SignedTreeHead>,
    /// The largest signed head, stored or buffered.
    latest: Option<SignedTreeHead>,
    /// Each witness's last cosignature (each stored as it comes).
    cosignatures: BTreeMap<String, WitnessCosignature>,
    /// A sticky write failure.
    error: Option<String>,
    /// Opening found damage that redb repaired ([`FileLog::repaired`]).
    repaired: bool,
    /// Read-only views of the committed tables, opened once per commit
    /// (a read transaction per lookup would cost more than the lookup).
    readers: std::sync::Mutex<Option<Readers>>,
    /// Tests: while set, every read of the database fails.
    #[cfg(test)]
    fail_reads: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type Readers = (
    ReadOnlyTable<u64, &'static [u8]>,
    ReadOnlyTable<&'static [u8], u64>,
    ReadOnlyTable<u64, &'static [u8]>,
);

impl std::fmt::Debug for FileLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLog")
            .field("dir", &self.dir)
            .field("committed", &self.committed)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

/// Opens `log.redb` and checks every page against its checksum before
/// anything is read: redb checks them only when it repairs, so a flipped bit
/// in a file damaged while the node was down would otherwise be read (and
/// served) as an entry, or make redb panic. A panic of redb's on a damaged
/// file is an error naming the file. Returns whether redb repaired it.
fn open_checked(path: &Path, check: bool) -> Result<(Database, bool), FileLogError> {
    let damaged = |why: String| FileLogError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    // An I/O failure is the disk's or the system's, not damage; anything
    // else redb says of a file is.
    let classify = |e: redb::DatabaseError| match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() != std::io::ErrorKind::InvalidData =>
        {
            FileLogError::Db {
                path: path.to_path_buf(),
                why: io.to_string(),
            }
        }
        e @ (redb::DatabaseError::Storage(_) | redb::DatabaseError::RepairAborted) => {
            damaged(e.to_string())
        }
        // Open elsewhere, a file format to upgrade, a lock protocol of
        // another redb: not damage.
        e => FileLogError::Db {
            path: path.to_path_buf(),
            why: e.to_string(),
        },
    };
    guarded(path, "reading", || {
        let mut db = Database::builder()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(classify)?;
        let clean = if check {
            db.check_integrity().map_err(classify)?
        } else {
            true
        };
        let tx = db.begin_write().map_err(db_err(path))?;
        tx.open_table(ENTRIES).map_err(db_err(path))?;
        tx.open_table(INDEX).map_err(db_err(path))?;
        tx.open_table(HEADS).map_err(db_err(path))?;
        tx.open_table(COSIGNATURES).map_err(db_err(path))?;
        tx.commit().map_err(db_err(path))?;
        Ok((db, !clean))
    })
}

/// Runs `f` on the database, a panic of redb's (on a file damaged under
/// it) becoming an error that names the file.
fn guarded<T>(
    path: &Path,
    doing: &str,
    f: impl FnOnce() -> Result<T, FileLogError>,
) -> Result<T, FileLogError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(FileLogError::Damaged {
            path: path.to_path_buf(),
            why: format!("redb failed {doing} it: {}", panic_text(&*panic)),
        })
    })
}

/// What a caught panic said.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic")
}

fn db_err<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> FileLogError + '_ {
    move |e| FileLogError::Db {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

impl FileLog {
    /// Opens (or creates) the log in `dir`. The tree is brought in line
    /// with the stored entries (nodes a crash lost are recomputed).
    pub fn open(dir: &Path) -> Result<FileLog, FileLogError> {
        FileLog::open_with(dir, true)
    }

    /// [`FileLog::open`], with the check of every page of `log.redb`
    /// (`check`) or without it (a faster start on a long log: entries and
    /// index rows are still checked as they are read, against the tree).
    pub fn open_with(dir: &Path, check: bool) -> Result<FileLog, FileLogError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("log.redb");
        let (db, repaired) = open_checked(&path, check)?;
        let (cosignatures, committed) = guarded(&path, "reading", || {
            let tx = db.begin_read().map_err(db_err(&path))?;
            let t = tx.open_table(COSIGNATURES).map_err(db_err(&path))?;
            let mut all = BTreeMap::new();
            for item in t.iter().map_err(db_err(&path))? {
                let (k, v) = item.map_err(db_err(&path))?;
                let c: WitnessCosignature =
                    postcard::from_bytes(v.value()).map_err(|e| FileLogError::Db {
                        path: path.clone(),
                        why: format!("cosignature of {}: {e}", k.value()),
                    })?;
                all.insert(k.value().to_string(), c);
            }
            let entries = tx.open_table(ENTRIES).map_err(db_err(&path))?;
            Ok((all, entries.len().map_err(db_err(&path))?))
        })?;
        let mut log = FileLog {
            tree: Self::open_tree(dir, committed)?,
            dir: dir.to_path_buf(),
            db: Some(db),
            committed,
            buffer: Vec::new(),
            buffer_index: BTreeMap::new(),
            head_buffer: BTreeMap::new(),
            latest: None,
            cosignatures,
            error: None,
            repaired,
            readers: std::sync::Mutex::new(None),
            #[cfg(test)]
            fail_reads: Default::default(),
        };
        log.rebuild_tree()?;
        log.latest = log.stored_heads(0, true)?.pop();
        Ok(log)
    }

    /// Whether opening found damage in `log.redb` and redb repaired it
    /// (to its last commit whose pages all check): what it lost, the
    /// replica's restore finds missing and tops up from the journal, or
    /// refuses to start.
    pub fn repaired(&self) -> bool {
        self.repaired
    }

    fn open_tree(dir: &Path, leaves: u64) -> Result<MerkleTree<FileNodes>, FileLogError> {
        let nodes = FileNodes::open(&dir.join("nodes"), leaves)?;
        let stored = nodes.leaves();
        Ok(MerkleTree::with_store(nodes, stored))
    }

    /// Re-pushes the leaves of stored entries the node files lack.
    fn rebuild_tree(&mut self) -> Result<(), FileLogError> {
        while self.tree.size() < self.committed {
            let i = self.tree.size();
            let e = self.stored_entry(i)?.ok_or_else(|| FileLogError::Corrupt {
                path: self.db_path(),
                index: i,
            })?;
            self.tree.push(e.leaf_hash());
        }
        self.tree.store_mut().sync()?;
        Ok(())
    }

    fn db(&self) -> &Database {
        // Cannot fail: `db` is set when the log opens and taken only by
        // `Drop`, after which no method runs. No outside data reaches it.
        #[allow(clippy::expect_used)]
        self.db
            .as_ref()
            .expect("the database is open until the log is dropped")
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join("log.redb")
    }

    /// A write error naming the log's directory (the cause names the file).
    fn write_error(&self, e: &FileLogError) -> LogWriteError {
        LogWriteError {
            path: self.dir.clone(),
            why: e.to_string(),
        }
    }

    /// A read error naming the database file.
    fn read_err<E: std::fmt::Display>(&self) -> impl Fn(E) -> LogReadError + '_ {
        move |e| LogReadError {
            path: self.db_path(),
            why: e.to_string(),
        }
    }

    /// Runs `f` over the committed tables' read-only views, opening them
    /// if a commit dropped them. Every database error is an error, never
    /// an absence.
    fn read<T>(
        &self,
        f: impl FnOnce(&Readers) -> Result<T, LogReadError>,
    ) -> Result<T, LogReadError> {
        #[cfg(test)]
        if self.fail_reads.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(self.read_err()("injected read failure"));
        }
        let mut guard = self
            .readers
            .lock()
            .map_err(|_| self.read_err()("reader lock poisoned"))?;
        let readers = match guard.take() {
            Some(r) => r,
            None => {
                let tx = self.db().begin_read().map_err(self.read_err())?;
                (
                    tx.open_table(ENTRIES).map_err(self.read_err())?,
                    tx.open_table(INDEX).map_err(self.read_err())?,
                    tx.open_table(HEADS).map_err(self.read_err())?,
                )
            }
        };
        // redb may panic on a page damaged after the open's check (or
        // without it): an error naming the file, and the views are
        // dropped, never used again.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&readers))) {
            Ok(out) => {
                *guard = Some(readers);
                out
            }
            Err(panic) => Err(self.read_err()(format!(
                "damaged: redb failed reading it: {}",
                panic_text(&*panic)
            ))),
        }
    }

    fn forget_readers(&mut self) {
        if let Ok(r) = self.readers.get_mut() {
            *r = None;
        }
    }

    fn stored_entry(&self, index: u64) -> Result<Option<Entry>, LogReadError> {
        self.read(|(entries, _, _)| {
            let Some(v) = entries.get(index).map_err(self.read_err())? else {
                return Ok(None);
            };
            Entry::from_bytes(v.value())
                .map(Some)
                .map_err(|e| self.read_err()(format!("entry {index}: {e}")))
        })
    }

    /// A stored entry, checked against its leaf hash in the node files
    /// (which the recovered signed heads' roots were checked against on
    /// open): a damaged entry is an error naming the file, never served.
    fn checked_entry(&self, index: u64) -> Result<Option<Entry>, LogReadError> {
        let Some(e) = self.stored_entry(index)? else {
            if index < self.committed {
                return Err(self.read_err()(format!(
                    "damaged: entry {index} of {} is missing",
                    self.committed
                )));
            }
            return Ok(None);
        };
        match self.tree.node(0, index) {
            Some(leaf) if leaf == e.leaf_hash() => Ok(Some(e)),
            Some(_) => Err(self.read_err()(format!(
                "damaged: entry {index} does not match its leaf hash in {}",
                self.dir.join("nodes").display()
            ))),
            None => Err(self
                .tree
                .store()
                .read_failure()
                .cloned()
                .unwrap_or_else(|| {
                    self.read_err()(format!(
                        "entry {index} has no leaf hash to be checked against"
                    ))
                })),
        }
    }

    fn decode_head(&self, v: &[u8]) -> Result<SignedTreeHead, LogReadError> {
        postcard::from_bytes::<SignedTreeHead>(v)
            .map_err(|e| self.read_err()(format!("signed head: {e}")))
    }

    /// Stored heads of size `>= from`: only the last one if `last`, else
    /// all of them, by size.
    fn stored_heads(&self, from: u64, last: bool) -> Result<Vec<SignedTreeHead>, LogReadError> {
        self.read(|(_, _, heads)| {
            if last {
                return match heads.last().map_err(self.read_err())? {
                    Some((_, v)) => Ok(vec![self.decode_head(v.value())?]),
                    None => Ok(Vec::new()),
                };
            }
            let mut out = Vec::new();
            for item in heads.range(from..).map_err(self.read_err())? {
                let (_, v) = item.map_err(self.read_err())?;
                out.push(self.decode_head(v.value())?);
            }
            Ok(out)
        })
    }

    /// The first stored head of size `>= from`.
    fn first_stored_head(&self, from: u64) -> Result<Option<SignedTreeHead>, LogReadError> {
        self.read(
            |(_, _, heads)| match heads.range(from..).map_err(self.read_err())?.next() {
                Some(item) => {
                    let (_, v) = item.map_err(self.read_err())?;
                    Ok(Some(self.decode_head(v.value())?))
                }
                None => Ok(None),
            },
        )
    }

    /// Entries on disk (appends since the last sync excluded).
    pub fn durable_len(&self) -> u64 {
        self.committed
    }

    /// Cuts the log back to `len` entries (durably): entries a crash left
    /// beyond the ledger's last sequencer snapshot.
    pub fn truncate(&mut self, len: u64) -> Result<(), FileLogError> {
        self.sync_inner()?;
        if len >= self.committed {
            return Ok(());
        }
        let path = self.db_path();
        let committed = self.committed;
        guarded(&path, "writing", || {
            let tx = self.db().begin_write().map_err(db_err(&path))?;
            {
                let mut entries = tx.open_table(ENTRIES).map_err(db_err(&path))?;
                let mut index = tx.open_table(INDEX).map_err(db_err(&path))?;
                let mut heads = tx.open_table(HEADS).map_err(db_err(&path))?;
                heads
                    .retain_in(len.saturating_add(1).., |_, _| false)
                    .map_err(db_err(&path))?;
                for i in len..committed {
                    let removed = entries.remove(i).map_err(db_err(&path))?;
                    if let Some(Ok(Entry::Digest(d))) =
                        removed.map(|v| Entry::from_bytes(v.value()))
                    {
                        index.remove(&d.digest[..]).map_err(db_err(&path))?;
                    }
                }
            }
            tx.commit().map_err(db_err(&path))?;
            Ok(())
        })?;
        self.forget_readers();
        self.committed = len;
        self.latest = self.stored_heads(0, true)?.pop();
        self.tree = Self::open_tree(&self.dir, len)?;
        self.rebuild_tree()
    }

    fn sync_inner(&mut self) -> Result<(), FileLogError> {
        if let Some(e) = &self.error {
            return Err(FileLogError::Db {
                path: self.db_path(),
                why: e.clone(),
            });
        }
        self.tree.store_mut().sync()?;
        if self.buffer.is_empty() && self.head_buffer.is_empty() {
            return Ok(());
        }
        let path = self.db_path();
        guarded(&path, "writing", || {
            let tx = self.db().begin_write().map_err(db_err(&path))?;
            {
                let mut entries = tx.open_table(ENTRIES).map_err(db_err(&path))?;
                let mut index = tx.open_table(INDEX).map_err(db_err(&path))?;
                for (k, e) in self.buffer.iter().enumerate() {
                    let i = self.committed + k as u64;
                    entries
                        .insert(i, &e.to_bytes()[..])
                        .map_err(db_err(&path))?;
                    if let Entry::Digest(d) = e {
                        index.insert(&d.digest[..], i).map_err(db_err(&path))?;
                    }
                }
                let mut heads = tx.open_table(HEADS).map_err(db_err(&path))?;
                for (size, h) in &self.head_buffer {
                    let bytes = postcard::to_allocvec(h).map_err(db_err(&path))?;
                    heads.insert(*size, &bytes[..]).map_err(db_err(&path))?;
                }
            }
            tx.commit().map_err(db_err(&path))?;
            Ok(())
        })?;
        self.forget_readers();
        self.committed += self.buffer.len() as u64;
        self.buffer.clear();
        self.buffer_index.clear();
        self.head_buffer.clear();
        Ok(())
    }
}

/// redb commits when its database is dropped, and may panic there on a file
/// damaged under it: closing never takes the process down.
impl Drop for FileLog {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
        }
    }
}

impl LogStore for FileLog {
    fn len(&self) -> u64 {
        self.committed + self.buffer.len() as u64
    }

    fn entry(&self, index: u64) -> Result<Option<Entry>, LogReadError> {
        if index >= self.committed {
            return Ok(usize::try_from(index - self.committed)
                .ok()
                .and_then(|k| self.buffer.get(k))
                .copied());
        }
        self.checked_entry(index)
    }

    fn index_of(&self, digest: &[u8; 32]) -> Result<Option<u64>, LogReadError> {
        if let Some(i) = self.buffer_index.get(digest) {
            return Ok(Some(*i));
        }
        let found = self.read(|(_, index, _)| {
            Ok(index
                .get(&digest[..])
                .map_err(self.read_err())?
                .map(|v| v.value()))
        })?;
        // A row of the index is checked against the entry it names (a
        // found digest is the rare case: a resubmission).
        if let Some(i) = found {
            match self.checked_entry(i)? {
                Some(Entry::Digest(d)) if d.digest == *digest => {}
                _ => {
                    return Err(self.read_err()(format!(
                        "damaged: its digest index names entry {i}, which does not hold that digest"
                    )))
                }
            }
        }
        Ok(found)
    }

    fn append(&mut self, entry: &Entry) {
        let i = self.len();
        if let Entry::Digest(d) = entry {
            self.buffer_index.insert(d.digest, i);
        }
        self.tree.push(entry.leaf_hash());
        self.buffer.push(*entry);
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.tree.node(level, index)
    }

    fn read_failure(&self) -> Option<LogReadError> {
        self.tree.store().read_failure().cloned()
    }

    fn put_head(&mut self, sth: &SignedTreeHead) {
        let size = sth.head.tree_size;
        match self.head_at(size) {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.head_buffer.insert(size, *sth);
            }
            // Sticky: the next sync fails and stops the replica.
            Err(e) => {
                self.error.get_or_insert_with(|| e.to_string());
            }
        }
        if self.latest.is_none_or(|l| l.head.tree_size < size) {
            self.latest = Some(*sth);
        }
    }

    fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, LogReadError> {
        if let Some(h) = self.head_buffer.get(&size) {
            return Ok(Some(*h));
        }
        Ok(self
            .first_stored_head(size)?
            .filter(|h| h.head.tree_size == size))
    }

    fn head_covering(&self, index: u64) -> Result<Option<SignedTreeHead>, LogReadError> {
        let from = index.saturating_add(1);
        let buffered = self.head_buffer.range(from..).next().map(|(_, h)| *h);
        let stored = self.first_stored_head(from)?;
        Ok(match (buffered, stored) {
            (Some(a), Some(b)) => Some(if a.head.tree_size < b.head.tree_size {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        })
    }

    fn latest_head(&self) -> Option<SignedTreeHead> {
        self.latest
    }

    fn all_heads(&self) -> Result<Vec<SignedTreeHead>, LogReadError> {
        let mut all: BTreeMap<u64, SignedTreeHead> = self
            .stored_heads(0, false)?
            .into_iter()
            .map(|h| (h.head.tree_size, h))
            .collect();
        all.extend(self.head_buffer.iter().map(|(k, v)| (*k, *v)));
        Ok(all.into_values().collect())
    }

    fn put_cosignature(&mut self, cosignature: &WitnessCosignature) {
        // Durable at once, in a transaction of its own: cosignatures are
        // rare (one per witness per cosigning), and a replica that told a
        // witness it kept one must still hold it after a crash. A failure
        // is sticky, as a failed sync is: the replica stops.
        let path = self.db_path();
        let written = guarded(&path, "writing", || {
            let bytes = postcard::to_allocvec(cosignature).map_err(db_err(&path))?;
            let tx = self.db().begin_write().map_err(db_err(&path))?;
            {
                let mut t = tx.open_table(COSIGNATURES).map_err(db_err(&path))?;
                t.insert(cosignature.witness.as_str(), &bytes[..])
                    .map_err(db_err(&path))?;
            }
            tx.commit().map_err(db_err(&path))?;
            Ok(())
        });
        match written {
            Ok(()) => {
                self.cosignatures
                    .insert(cosignature.witness.clone(), cosignature.clone());
            }
            Err(e) => {
                if self.error.is_none() {
                    self.error = Some(format!("storing a cosignature: {e}"));
                }
            }
        }
    }

    fn cosignatures(&self) -> Vec<WitnessCosignature> {
        self.cosignatures.values().cloned().collect()
    }

    fn durable_len(&self) -> u64 {
        self.committed
    }

    fn truncate(&mut self, len: u64) -> Result<(), LogWriteError> {
        FileLog::truncate(self, len).map_err(|e| self.write_error(&e))
    }

    fn sync(&mut self) -> Result<(), LogWriteError> {
        let r = self.sync_inner().map_err(|e| self.write_error(&e));
        if let Err(e) = &r {
            self.error.get_or_insert_with(|| e.why.clone());
        }
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::{Host, HostConfig, HostError};
    use crate::journal::MemoryJournal;
    use crate::wire::{encode_call, ClientCall, ClientRequest};
    use crate::{CoreInput, ReplicaConfig};
    use belfry_broadcast::clock::Micros;
    use belfry_broadcast::coin::{deal, BlsCrypto, ClusterParams, Policy};
    use belfry_timestamp::DigestEntry;
    use rand::SeedableRng;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn digest_entry(d: [u8; 32]) -> Entry {
        Entry::Digest(DigestEntry {
            digest: d,
            witnessed_at: Micros(1),
            key: 1,
            witnesses: 3,
            late: false,
        })
    }

    #[test]
    fn an_injected_read_failure_is_an_error_naming_the_file_not_an_absence() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = FileLog::open(dir.path()).unwrap();
        let d = [9u8; 32];
        log.append(&digest_entry(d));
        LogStore::sync(&mut log).unwrap();
        assert_eq!(log.index_of(&d).unwrap(), Some(0));
        log.fail_reads.store(true, Ordering::Relaxed);
        let e = log.index_of(&d).unwrap_err();
        assert!(e.to_string().contains("log.redb"), "{e}");
        assert!(log.entry(0).is_err());
        assert!(log.head_at(1).is_err());
        assert!(log.head_covering(0).is_err());
        assert!(log.all_heads().is_err());
        log.fail_reads.store(false, Ordering::Relaxed);
        assert_eq!(log.index_of(&d).unwrap(), Some(0));
    }

    #[test]
    fn a_read_failure_stops_the_replica_with_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLog::open(dir.path()).unwrap();
        let fail = log.fail_reads.clone();
        let (public, mut secrets) =
            deal(4, 1, &mut rand_chacha::ChaCha20Rng::seed_from_u64(3)).unwrap();
        let public = Arc::new(public);
        let genesis = Micros(1_763_700_000_000_000);
        let cluster = ClusterParams::of_keys(&public, Policy::Lamport, genesis);
        let config = ReplicaConfig::new(belfry_broadcast::coin::ReplicaId(0), cluster);
        let crypto = Arc::new(BlsCrypto::new(public.clone(), secrets.remove(0)));
        let journal = MemoryJournal::new();
        let recovered = journal.recover().unwrap();
        let mut host = Host::open(
            config,
            crypto,
            journal,
            recovered,
            Box::new(log),
            HostConfig::default(),
            1,
        )
        .unwrap();
        host.handle(genesis, CoreInput::Start);
        host.commit().unwrap();
        // Whether the digest is logged cannot be read: the replica must not
        // take that for "not logged" and report it again.
        fail.store(true, Ordering::Relaxed);
        let frame = encode_call(&ClientCall {
            id: 1,
            request: ClientRequest::Submit(vec![[7u8; 32]]),
        })
        .unwrap();
        host.handle(genesis, CoreInput::Client { client: 1, frame });
        match host.flush() {
            Err(HostError::LogRead(e)) => {
                assert!(e.to_string().contains("log.redb"), "{e}");
            }
            other => panic!("expected a log read error, got {other:?}"),
        }
    }
}
