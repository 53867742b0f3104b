//! RFC 9162 (SHA-256) Merkle hashing and the inclusion-proof fold
//! (§2.1.3.2), walking over a proof's hashes where they lie in the receipt.

use sha2::{Digest, Sha256};

/// The domain tag of a gateway tree's leaves (docs/gateway.md).
const AGGREGATE_LEAF_TAG: &[u8; 16] = b"belfry/aggregate";

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA-256(0x00 || entry)`.
pub(crate) fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    sha256(&[&[0x00], entry])
}

/// A gateway tree's leaf: `SHA-256(0x00 || "belfry/aggregate" || digest)`.
pub(crate) fn aggregate_leaf_hash(digest: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[0x00], AGGREGATE_LEAF_TAG, digest])
}

/// `SHA-256(0x01 || left || right)`.
fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    sha256(&[&[0x01], left, right])
}

/// The root the proof leads to from `leaf` at `index` in a tree of `size`
/// leaves, or `None` if the proof has the wrong shape for `(index, size)`.
/// `proof` is its hashes back to back, 32 bytes each (a shorter tail is no
/// hash and fails).
pub(crate) fn root_from_inclusion(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    proof: &[u8],
) -> Option<[u8; 32]> {
    if index >= size || proof.len() % 32 != 0 {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf;
    for p in proof.chunks_exact(32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162's tree of three leaves: leaf 2's path is one hash, the
    /// root of leaves 0 and 1.
    #[test]
    fn a_last_leaf_of_an_odd_tree_folds_with_one_hash() {
        let leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")];
        let left = node_hash(&leaves[0], &leaves[1]);
        let root = node_hash(&left, &leaves[2]);
        assert_eq!(root_from_inclusion(leaves[2], 2, 3, &left), Some(root));
        let mut path = [0u8; 64];
        path[..32].copy_from_slice(&leaves[1]);
        path[32..].copy_from_slice(&leaves[2]);
        assert_eq!(root_from_inclusion(leaves[0], 0, 3, &path), Some(root));
        assert_eq!(root_from_inclusion(leaves[2], 2, 3, &path), None);
        assert_eq!(root_from_inclusion(leaves[2], 3, 3, &left), None);
        assert_eq!(root_from_inclusion(leaves[2], 2, 3, &left[..31]), None);
    }
}
