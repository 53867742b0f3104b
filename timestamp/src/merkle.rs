//! The RFC 9162 (Certificate Transparency v2) Merkle tree over log entries,
//! with SHA-256: `leaf = H(0x00 || entry)`, `node = H(0x01 || left || right)`,
//! the empty tree's root `H("")`. It is the tree every CT log uses, so CT's
//! reference vectors apply and transparency-log tools can check its proofs.
//!
//! The tree keeps the hash of every *complete* aligned subtree (level `k`, index
//! `i` covers leaves `[i·2^k, (i+1)·2^k)`), updated in O(log n) per append.
//! Every subtree the RFC's recursive definitions touch is either such a
//! complete subtree or splits into one and a smaller rest, so the root of any
//! earlier size and every inclusion (PATH, §2.1.3.1) and consistency
//! (PROOF/SUBPROOF, §2.1.4.1) proof costs O(log n) stored hashes. Verification
//! (§2.1.3.2, §2.1.4.2) follows the RFC's iterative algorithms step by step.

use belfry_coin::sha256;

/// A 32-byte SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || entry_bytes)`.
pub fn leaf_hash(entry_bytes: &[u8]) -> Hash {
    sha256(&[&[0x00], entry_bytes])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// The largest power of two strictly below `n` (`n >= 2`).
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Where the tree's stored hashes live. The in-memory [`MemoryNodes`] is the
/// default; a file-backed store keeps the same layout on disk.
pub trait NodeStore {
    /// The hash of the complete subtree at `level`, `index`, if stored.
    fn get(&self, level: u32, index: u64) -> Option<Hash>;
    /// Stores it (appends happen in index order per level).
    fn put(&mut self, level: u32, index: u64, hash: Hash);
}

/// Complete-subtree hashes in memory, one vector per level.
#[derive(Clone, Debug, Default)]
pub struct MemoryNodes {
    levels: Vec<Vec<Hash>>,
}

impl NodeStore for MemoryNodes {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
    }

    fn put(&mut self, level: u32, index: u64, hash: Hash) {
        let level = level as usize;
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        let l = &mut self.levels[level];
        match usize::try_from(index) {
            Ok(i) if i == l.len() => l.push(hash),
            Ok(i) if i < l.len() => l[i] = hash,
            _ => {}
        }
    }
}

/// Proof requests that cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Index or size outside the tree.
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// A size beyond the current tree.
    #[error("size {size} exceeds the tree's {have} entries")]
    SizeOutOfRange {
        /// Requested size.
        size: u64,
        /// Current size.
        have: u64,
    },
    /// `first > second` in a consistency request.
    #[error("consistency needs first <= second, got {first} > {second}")]
    Reversed {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// The store lost a hash it should hold (a storage fault).
    #[error("node store is missing level {level} index {index}")]
    MissingNode {
        /// Level.
        level: u32,
        /// Index.
        index: u64,
    },
}

/// An append-only RFC 9162 Merkle tree.
#[derive(Clone, Debug, Default)]
pub struct MerkleTree<S: NodeStore = MemoryNodes> {
    nodes: S,
    size: u64,
}

impl MerkleTree<MemoryNodes> {
    /// An empty in-memory tree.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: NodeStore> MerkleTree<S> {
    /// A tree over an existing store holding `size` leaves.
    pub fn with_store(nodes: S, size: u64) -> Self {
        MerkleTree { nodes, size }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The node store.
    pub fn store(&self) -> &S {
        &self.nodes
    }

    /// The node store, for writing (and to sync it).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.nodes
    }

    /// Gives the node store back.
    pub fn into_store(self) -> S {
        self.nodes
    }

    /// Appends a leaf hash; O(log n).
    pub fn push(&mut self, leaf: Hash) {
        let index = self.size;
        self.nodes.put(0, index, leaf);
        let (mut level, mut i, mut h) = (0u32, index, leaf);
        // Each time the new leaf completes a pair, store the parent.
        while i % 2 == 1 {
            let Some(left) = self.nodes.get(level, i - 1) else {
                break;
            };
            h = node_hash(&left, &h);
            level += 1;
            i /= 2;
            self.nodes.put(level, i, h);
        }
        self.size += 1;
    }

    /// The stored complete-subtree hash at (`level`, `index`).
    pub fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.nodes.get(level, index)
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        (index < self.size)
            .then(|| self.nodes.get(0, index))
            .flatten()
    }

    /// `MTH(D[lo..hi])` for a range the RFC's recursion produces (an aligned
    /// complete subtree, or one split at the largest power of two below its
    /// size, recursively), within the current size.
    pub fn subtree(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        if lo >= hi || hi > self.size {
            return Err(ProofError::SizeOutOfRange {
                size: hi,
                have: self.size,
            });
        }
        self.subtree_unchecked(lo, hi)
    }

    fn subtree_unchecked(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo % n == 0 {
            let level = n.trailing_zeros();
            return self
                .nodes
                .get(level, lo >> level)
                .ok_or(ProofError::MissingNode {
                    level,
                    index: lo >> level,
                });
        }
        let k = split_point(n);
        Ok(node_hash(
            &self.subtree_unchecked(lo, lo + k)?,
            &self.subtree_unchecked(lo + k, hi)?,
        ))
    }

    /// The root of the first `size` leaves (any size up to the current one).
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        if size > self.size {
            return Err(ProofError::SizeOutOfRange {
                size,
                have: self.size,
            });
        }
        if size == 0 {
            return Ok(crate::entry::empty_root());
        }
        self.subtree(0, size)
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.root_at(self.size)
            .unwrap_or_else(|_| crate::entry::empty_root())
    }

    /// `PATH(index, D[size])` (RFC 9162 §2.1.3.1), leaf-side first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        if size > self.size {
            return Err(ProofError::SizeOutOfRange {
                size,
                have: self.size,
            });
        }
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut out = Vec::new();
        self.path(index, 0, size, &mut out)?;
        Ok(out)
    }

    fn path(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
        let n = hi - lo;
        if n <= 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < k {
            self.path(m, lo, lo + k, out)?;
            out.push(self.subtree(lo + k, hi)?);
        } else {
            self.path(m - k, lo + k, hi, out)?;
            out.push(self.subtree(lo, lo + k)?);
        }
        Ok(())
    }

    /// `PROOF(first, D[second])` (RFC 9162 §2.1.4.1). Empty when `first` is 0
    /// or equals `second`.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
        if second > self.size {
            return Err(ProofError::SizeOutOfRange {
                size: second,
                have: self.size,
            });
        }
        if first > second {
            return Err(ProofError::Reversed { first, second });
        }
        let mut out = Vec::new();
        if first > 0 {
            self.subproof(first, 0, second, true, &mut out)?;
        }
        Ok(out)
    }

    fn subproof(
        &self,
        m: u64,
        lo: u64,
        hi: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), ProofError> {
        let n = hi - lo;
        if m == n {
            if !complete {
                out.push(self.subtree(lo, hi)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, lo, lo + k, complete, out)?;
            out.push(self.subtree(lo + k, hi)?);
        } else {
            self.subproof(m - k, lo + k, hi, false, out)?;
            out.push(self.subtree(lo, lo + k)?);
        }
        Ok(())
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` is entry
/// `index` of the tree of `size` entries whose root is `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(leaf, index, size, proof).is_some_and(|r| r == *root)
}

/// The root an inclusion proof leads to, or `None` if the proof has the
/// wrong shape for `(index, size)`.
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2): the tree of `second`
/// entries with root `second_root` extends the tree of `first` entries with
/// root `first_root`. The proof from size 0 is empty and always valid; equal
/// sizes need an empty proof and equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == 0 {
        return proof.is_empty();
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *first_root && sr == *second_root && snode == 0
}
