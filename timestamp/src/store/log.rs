//! The log as the replica reads it (docs/design.md section 2): entries by index,
//! the digest → index lookup and the Merkle tree's stored hashes, behind one
//! trait so the same sans-IO replica runs on memory (tests, the simulator)
//! and on files (the node) without holding the whole log in memory.
//!
//! Reads are synchronous lookups into local storage. Appends are buffered:
//! a file-backed implementation makes them durable in [`LogStore::sync`],
//! which the driver calls once per step before it releases that step's
//! messages — the core itself never waits on the disk.

use crate::checkpoint::WitnessCosignature;
use crate::entry::Entry;
use crate::head::SignedTreeHead;
use crate::merkle::{Hash, MemoryNodes, MerkleTree, NodeStore, ProofError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A read from a log store that failed (an I/O or database error, a stored
/// record that does not decode): never "not found" — a replica that took
/// it for absence could log a digest twice. The replica stops.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading {}: {why}", path.display())]
pub struct LogReadError {
    /// The file read.
    pub path: PathBuf,
    /// What failed.
    pub why: String,
}

/// A write to a log store that could not be made durable (a full disk, a
/// failing fsync, a database error). Sticky: once a sync failed, every
/// later one fails too, and the replica stops, as after a crash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("writing {}: {why}", path.display())]
pub struct LogWriteError {
    /// The log's directory or file.
    pub path: PathBuf,
    /// What failed.
    pub why: String,
}

/// Storage of the log, its digest index and its tree nodes.
pub trait LogStore: Send {
    /// Number of entries.
    fn len(&self) -> u64;
    /// Whether the log is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The entry at `index` (`None` past the end).
    fn entry(&self, index: u64) -> Result<Option<Entry>, LogReadError>;
    /// Where a digest was logged, if it was.
    fn index_of(&self, digest: &[u8; 32]) -> Result<Option<u64>, LogReadError>;
    /// Appends an entry (its leaf hash, its tree nodes and, for a digest
    /// entry, its index record).
    fn append(&mut self, entry: &Entry);
    /// The stored complete-subtree hash at (`level`, `index`), as in
    /// [`NodeStore::get`].
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
    /// The first tree-node read that failed, if one did (a node file that
    /// cannot be read): [`LogStore::node`] answered "absent" for it, so the
    /// replica must stop — its host checks this before releasing a turn.
    /// Stores in memory never fail.
    fn read_failure(&self) -> Option<LogReadError> {
        None
    }
    /// `MTH` of the first `size` entries.
    fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        MerkleTree::with_store(Nodes(self), self.len()).root_at(size)
    }
    /// RFC 9162 inclusion proof of `index` in the tree of `size`.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        MerkleTree::with_store(Nodes(self), self.len()).inclusion_proof(index, size)
    }
    /// RFC 9162 consistency proof between two sizes.
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        MerkleTree::with_store(Nodes(self), self.len()).consistency_proof(first, second)
    }
    /// Stores a signed tree head (of a size within the log); idempotent.
    fn put_head(&mut self, sth: &SignedTreeHead);
    /// The signed head of exactly this size.
    fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, LogReadError>;
    /// The smallest signed head that contains entry `index` (size > index):
    /// what a receipt for that entry is made against.
    fn head_covering(&self, index: u64) -> Result<Option<SignedTreeHead>, LogReadError>;
    /// The largest signed head (kept in memory: no read).
    fn latest_head(&self) -> Option<SignedTreeHead>;
    /// Every signed head, by size (inspection and tests: it reads them all).
    fn all_heads(&self) -> Result<Vec<SignedTreeHead>, LogReadError>;
    /// Keeps a witness's cosignature in place of its earlier one (durable
    /// at the next [`LogStore::sync`]).
    fn put_cosignature(&mut self, cosignature: &WitnessCosignature);
    /// The last cosignature of each witness (kept in memory: no read).
    fn cosignatures(&self) -> Vec<WitnessCosignature>;
    /// Makes every append durable (in memory: marks them as such, for the
    /// simulator's crash model). An error is sticky: the replica must stop,
    /// as after a crash.
    fn sync(&mut self) -> Result<(), LogWriteError> {
        Ok(())
    }
    /// Entries made durable by the last [`LogStore::sync`].
    fn durable_len(&self) -> u64 {
        self.len()
    }
    /// Cuts the log back to `len` entries and the heads within them,
    /// durably (after a crash left it ahead of the replica's journal).
    fn truncate(&mut self, len: u64) -> Result<(), LogWriteError>;
    /// The log as a [`MemoryLog`], if it is one (the simulator keeps a
    /// crashed replica's log to restart it from); only with `sim-hooks`.
    #[cfg(feature = "sim-hooks")]
    fn into_memory_log(self: Box<Self>) -> Option<MemoryLog> {
        None
    }

    /// The current root.
    fn root(&self) -> Hash {
        self.root_at(self.len())
            .unwrap_or_else(|_| crate::entry::empty_root())
    }

    /// Entries `from..to` (clamped to the log).
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Entry>, LogReadError> {
        let mut out = Vec::new();
        for i in from..to.min(self.len()) {
            match self.entry(i)? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }
}

/// A log store's stored tree hashes, read through [`LogStore::node`], so the
/// proofs are computed once for every store. Only read: the tree built over
/// it is never appended to.
struct Nodes<'a, L: LogStore + ?Sized>(&'a L);

impl<L: LogStore + ?Sized> NodeStore for Nodes<'_, L> {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.0.node(level, index)
    }

    fn put(&mut self, _level: u32, _index: u64, _hash: Hash) {}
}

/// The whole log in memory: for tests, the simulator and small clusters.
/// It also models a durable store for the simulator: [`LogStore::sync`]
/// marks what is durable, and `MemoryLog::lose_unsynced` (with
/// `sim-hooks`) is a crash.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    entries: Vec<Entry>,
    tree: MerkleTree<MemoryNodes>,
    index: BTreeMap<DigestKey, u64>,
    heads: BTreeMap<u64, SignedTreeHead>,
    synced_len: u64,
    unsynced_heads: Vec<u64>,
    cosignatures: BTreeMap<String, WitnessCosignature>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a crash leaves of the log: every append and head since the
    /// last [`LogStore::sync`] is gone (only with `sim-hooks`).
    #[cfg(feature = "sim-hooks")]
    pub fn lose_unsynced(&mut self) {
        for size in std::mem::take(&mut self.unsynced_heads) {
            self.heads.remove(&size);
        }
        self.cut(self.synced_len);
    }

    /// Cuts the log back to `len` entries (and the heads within them).
    pub fn cut(&mut self, len: u64) {
        if len >= self.len() {
            return;
        }
        let Ok(keep) = usize::try_from(len) else {
            return;
        };
        for e in self.entries.drain(keep..) {
            if let Entry::Digest(d) = e {
                self.index.remove(&DigestKey(d.digest));
            }
        }
        self.heads = std::mem::take(&mut self.heads)
            .into_iter()
            .filter(|(size, _)| *size <= len)
            .collect();
        let mut tree = MerkleTree::<MemoryNodes>::default();
        for e in &self.entries {
            tree.push(e.leaf_hash());
        }
        self.tree = tree;
        self.synced_len = self.synced_len.min(len);
    }
}

/// A digest as an index key, compared a word at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DigestKey([u8; 32]);

belfry_coin::hash_ord!(DigestKey);

impl LogStore for MemoryLog {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn entry(&self, index: u64) -> Result<Option<Entry>, LogReadError> {
        Ok(usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied())
    }

    fn index_of(&self, digest: &[u8; 32]) -> Result<Option<u64>, LogReadError> {
        Ok(self.index.get(&DigestKey(*digest)).copied())
    }

    fn append(&mut self, entry: &Entry) {
        if let Entry::Digest(d) = entry {
            self.index
                .insert(DigestKey(d.digest), self.entries.len() as u64);
        }
        self.tree.push(entry.leaf_hash());
        self.entries.push(*entry);
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.tree.node(level, index)
    }

    fn put_head(&mut self, sth: &SignedTreeHead) {
        if self.heads.insert(sth.head.tree_size, *sth).is_none() {
            self.unsynced_heads.push(sth.head.tree_size);
        }
    }

    fn sync(&mut self) -> Result<(), LogWriteError> {
        self.synced_len = self.len();
        self.unsynced_heads.clear();
        Ok(())
    }

    fn durable_len(&self) -> u64 {
        self.synced_len
    }

    fn truncate(&mut self, len: u64) -> Result<(), LogWriteError> {
        self.cut(len);
        Ok(())
    }

    #[cfg(feature = "sim-hooks")]
    fn into_memory_log(self: Box<Self>) -> Option<MemoryLog> {
        Some(*self)
    }

    fn head_at(&self, size: u64) -> Result<Option<SignedTreeHead>, LogReadError> {
        Ok(self.heads.get(&size).copied())
    }

    fn head_covering(&self, index: u64) -> Result<Option<SignedTreeHead>, LogReadError> {
        Ok(self
            .heads
            .range(index.saturating_add(1)..)
            .next()
            .map(|(_, h)| *h))
    }

    fn latest_head(&self) -> Option<SignedTreeHead> {
        self.heads.values().next_back().copied()
    }

    fn all_heads(&self) -> Result<Vec<SignedTreeHead>, LogReadError> {
        Ok(self.heads.values().copied().collect())
    }

    fn put_cosignature(&mut self, cosignature: &WitnessCosignature) {
        self.cosignatures
            .insert(cosignature.witness.clone(), cosignature.clone());
    }

    fn cosignatures(&self) -> Vec<WitnessCosignature> {
        self.cosignatures.values().cloned().collect()
    }
}

/// A read-only view of a log's tree with extra leaves appended in memory:
/// the root a log *would* have after appending, at O(k log n) cost and
/// without copying the stored tree (used to verify fetched log ranges).
pub struct Overlay<'a> {
    base: &'a dyn LogStore,
    extra: BTreeMap<(u32, u64), Hash>,
}

impl NodeStore for Overlay<'_> {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.extra
            .get(&(level, index))
            .copied()
            .or_else(|| self.base.node(level, index))
    }

    fn put(&mut self, level: u32, index: u64, hash: Hash) {
        self.extra.insert((level, index), hash);
    }
}

/// The right edge of a log's tree: the roots of its perfect subtrees, the
/// largest first — enough to append leaves and compute the root (RFC 9162
/// §2.1.1's split always cuts off the largest perfect subtree on the left)
/// without the rest of the tree. Catch-up verifies page after page of a
/// fetched range with it at O(log n) per entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)`, levels strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of `base` (reads one stored node per set bit of its
    /// size); `None` if a node is missing.
    pub fn of(base: &dyn LogStore) -> Option<Frontier> {
        let size = base.len();
        let mut peaks = Vec::new();
        let mut offset = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                peaks.push((level, base.node(level, offset >> level)?));
                offset += 1u64 << level;
            }
        }
        Some(Frontier { size, peaks })
    }

    /// Leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut cur = (0u32, leaf);
        while let Some(&(level, left)) = self.peaks.last() {
            if level != cur.0 {
                break;
            }
            self.peaks.pop();
            cur = (level + 1, crate::merkle::node_hash(&left, &cur.1));
        }
        self.peaks.push(cur);
        self.size += 1;
    }

    /// The root of the covered leaves.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return crate::entry::empty_root();
        };
        for (_, left) in iter {
            acc = crate::merkle::node_hash(left, &acc);
        }
        acc
    }
}

/// The root of `base` extended by `leaves`.
pub fn extended_root(base: &dyn LogStore, leaves: impl IntoIterator<Item = Hash>) -> Hash {
    let mut tree = MerkleTree::with_store(
        Overlay {
            base,
            extra: BTreeMap::new(),
        },
        base.len(),
    );
    for leaf in leaves {
        tree.push(leaf);
    }
    tree.root()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Micros;
    use crate::entry::DigestEntry;

    fn digest(i: u64) -> Entry {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&i.to_be_bytes());
        Entry::Digest(DigestEntry {
            digest: d,
            witnessed_at: Micros(i),
            key: i,
            witnesses: 3,
            late: false,
        })
    }

    #[test]
    fn the_frontier_root_equals_the_root_after_appending() {
        let mut log = MemoryLog::new();
        for size in 0..70u64 {
            let Some(mut f) = Frontier::of(&log) else {
                panic!("the memory log holds every node");
            };
            assert_eq!(f.root(), log.root(), "size {size}");
            for k in 0..5 {
                f.push(digest(1_000 + size * 10 + k).leaf_hash());
            }
            let mut grown = log.clone();
            for k in 0..5 {
                grown.append(&digest(1_000 + size * 10 + k));
            }
            assert_eq!(f.root(), grown.root(), "size {size} + 5");
            assert_eq!(f.size(), grown.len());
            log.append(&digest(size));
        }
    }

    #[test]
    fn the_overlay_root_equals_the_root_after_appending() {
        for base_len in [0u64, 1, 2, 3, 7, 8, 13, 64, 100] {
            for extra in [0u64, 1, 2, 5, 9, 31] {
                let mut log = MemoryLog::new();
                for i in 0..base_len {
                    log.append(&digest(i));
                }
                let more: Vec<Entry> = (base_len..base_len + extra).map(digest).collect();
                let predicted = extended_root(&log, more.iter().map(Entry::leaf_hash));
                for e in &more {
                    log.append(e);
                }
                assert_eq!(predicted, log.root(), "{base_len} + {extra}");
                assert_eq!(
                    log.index_of(&[0u8; 32]).ok().flatten().is_some(),
                    base_len + extra > 0
                );
            }
        }
    }
}
