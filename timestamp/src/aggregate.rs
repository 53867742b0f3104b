//! Aggregated receipts (docs/gateway.md): a gateway collects the digests of
//! one round, builds an RFC 9162 SHA-256 tree over them and has the cluster
//! log only the tree's root. A client's receipt is then a chain: the path
//! from its digest to the round's root (one [`AggregationStep`] per gateway
//! layer, bottom first), then the cluster's ordinary receipt of the topmost
//! root. It proves what an ordinary receipt proves — the digest existed by
//! the cluster's signed time of the root — to anyone holding the trust
//! anchor alone.
//!
//! A gateway tree's leaf is `SHA-256(0x00 || "belfry/aggregate" || digest)`:
//! a log entry starts with its kind byte (0x01 or 0x02), never with `b`, so
//! no gateway leaf is ever a log leaf and no path can be passed off as the
//! other kind. Interior nodes are the log's (`SHA-256(0x01 || l || r)`).
//!
//! One request's digests sit side by side in a round's tree, so a gateway
//! answers them with one *range proof* — the hashes of the subtrees beside
//! the range, O(log n) for the whole request — from which the client
//! derives each digest's own path ([`range_paths`]).

use crate::merkle::{node_hash, root_from_inclusion, split_point, Hash, MerkleTree, ProofError};
use crate::receipt::{hex32, Reader, Receipt, ReceiptError, ReceiptJson, MAGIC, MAX_PROOF_LEN};
use belfry_coin::{sha256, TrustAnchor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The version byte of an aggregated receipt.
pub const AGGREGATED_VERSION: u8 = 2;
/// The domain tag of a gateway tree's leaves.
pub const AGGREGATE_LEAF_TAG: &[u8; 16] = b"belfry/aggregate";
/// Most gateway layers in one receipt (stacked gateways).
pub const MAX_AGGREGATION_STEPS: usize = 8;
/// Most leaves one range proof covers (one request's digests).
pub const MAX_RANGE_LEAVES: usize = 65_536;

/// A gateway tree's leaf hash of `digest`.
pub fn aggregate_leaf_hash(digest: &[u8; 32]) -> Hash {
    sha256(&[&[0x00], AGGREGATE_LEAF_TAG, digest])
}

/// One gateway layer: where the digest below sits in the round's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregationStep {
    /// Its leaf index in the round's tree.
    pub leaf_index: u64,
    /// The round's tree size.
    pub tree_size: u64,
    /// RFC 9162 inclusion proof of the leaf in that tree, leaf side first.
    pub proof: Vec<Hash>,
}

impl AggregationStep {
    /// The round's root this step leads to from `digest`, if the proof fits.
    pub fn root_from(&self, digest: &[u8; 32]) -> Option<Hash> {
        if self.leaf_index >= self.tree_size {
            return None;
        }
        root_from_inclusion(
            &aggregate_leaf_hash(digest),
            self.leaf_index,
            self.tree_size,
            &self.proof,
        )
    }
}

/// A receipt through one or more gateways.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregatedReceipt {
    /// The client's digest.
    pub digest: [u8; 32],
    /// The gateway layers, bottom (the client's gateway) first.
    pub steps: Vec<AggregationStep>,
    /// The cluster's receipt of the topmost round root (shared by every
    /// digest of the round: a client holding a round's receipts keeps it
    /// once).
    pub receipt: Arc<Receipt>,
}

/// What a verified aggregated receipt proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedAggregated {
    /// The client's digest.
    pub digest: [u8; 32],
    /// The digest the cluster logged (the topmost round's root).
    pub logged: [u8; 32],
    /// What the cluster's receipt proves of that root: its log index and the
    /// signed head's time, the time this receipt proves.
    pub cluster: crate::receipt::Verified,
}

impl AggregatedReceipt {
    /// The digest the chain leads to (what the cluster must have logged), or
    /// the first step (from 0) whose proof does not fit.
    pub fn top(&self) -> Result<[u8; 32], ReceiptError> {
        let mut h = self.digest;
        for (i, step) in self.steps.iter().enumerate() {
            h = step
                .root_from(&h)
                .ok_or(ReceiptError::AggregationMismatch { step: i })?;
        }
        Ok(h)
    }

    /// The binary form: `"BLFY" || 0x02 || digest[32] || steps u8 ||
    /// (leaf_index u64 || tree_size u64 || proof_len u8 || proof)* ||` the
    /// cluster receipt's binary form (its own `"BLFY" || 0x01 …`).
    pub fn to_binary(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.steps.len() * 600 + 400);
        b.extend_from_slice(MAGIC);
        b.push(AGGREGATED_VERSION);
        b.extend_from_slice(&self.digest);
        // Checked at construction and parse: at most MAX_AGGREGATION_STEPS.
        b.push(self.steps.len().min(MAX_AGGREGATION_STEPS) as u8);
        for s in self.steps.iter().take(MAX_AGGREGATION_STEPS) {
            b.extend_from_slice(&s.leaf_index.to_be_bytes());
            b.extend_from_slice(&s.tree_size.to_be_bytes());
            b.push(s.proof.len().min(MAX_PROOF_LEN) as u8);
            for h in s.proof.iter().take(MAX_PROOF_LEN) {
                b.extend_from_slice(h);
            }
        }
        b.extend_from_slice(&self.receipt.to_binary());
        b
    }

    /// Parses the binary form; every length and field is checked.
    pub fn from_binary(b: &[u8]) -> Result<AggregatedReceipt, ReceiptError> {
        let mut r = Reader::new(b);
        if r.bytes::<4>()? != *MAGIC {
            return Err(ReceiptError::Malformed(
                "not a belfry receipt (no BLFY magic)".into(),
            ));
        }
        let version = r.bytes::<1>()?[0];
        if version != AGGREGATED_VERSION {
            return Err(ReceiptError::Version(version));
        }
        let digest = r.bytes::<32>()?;
        let count = usize::from(r.bytes::<1>()?[0]);
        if count == 0 || count > MAX_AGGREGATION_STEPS {
            return Err(ReceiptError::Malformed(format!(
                "{count} aggregation steps (1 to {MAX_AGGREGATION_STEPS})"
            )));
        }
        let mut steps = Vec::with_capacity(count);
        for _ in 0..count {
            let leaf_index = u64::from_be_bytes(r.bytes::<8>()?);
            let tree_size = u64::from_be_bytes(r.bytes::<8>()?);
            let len = usize::from(r.bytes::<1>()?[0]);
            if len > MAX_PROOF_LEN {
                return Err(ReceiptError::Malformed(format!(
                    "aggregation proof of {len} hashes (at most {MAX_PROOF_LEN})"
                )));
            }
            let mut proof = Vec::with_capacity(len);
            for _ in 0..len {
                proof.push(r.bytes::<32>()?);
            }
            steps.push(AggregationStep {
                leaf_index,
                tree_size,
                proof,
            });
        }
        let receipt = Arc::new(Receipt::from_binary(r.rest())?);
        Ok(AggregatedReceipt {
            digest,
            steps,
            receipt,
        })
    }

    /// The JSON form (docs/gateway.md; other programs rely on its names).
    pub fn to_json(&self) -> AggregatedJson {
        AggregatedJson {
            version: AGGREGATED_VERSION,
            digest: hex::encode(self.digest),
            aggregation: self
                .steps
                .iter()
                .map(|s| StepJson {
                    leaf_index: s.leaf_index,
                    tree_size: s.tree_size,
                    proof: s.proof.iter().map(hex::encode).collect(),
                })
                .collect(),
            receipt: self.receipt.to_json(),
        }
    }

    /// Reads the JSON form, checking every field (the inner receipt's
    /// `cluster_id` included).
    pub fn from_json(j: &AggregatedJson) -> Result<AggregatedReceipt, ReceiptError> {
        if j.version != AGGREGATED_VERSION {
            return Err(ReceiptError::Version(j.version));
        }
        if j.aggregation.is_empty() || j.aggregation.len() > MAX_AGGREGATION_STEPS {
            return Err(ReceiptError::Malformed(format!(
                "{} aggregation steps (1 to {MAX_AGGREGATION_STEPS})",
                j.aggregation.len()
            )));
        }
        let mut steps = Vec::with_capacity(j.aggregation.len());
        for s in &j.aggregation {
            if s.proof.len() > MAX_PROOF_LEN {
                return Err(ReceiptError::Malformed(format!(
                    "aggregation proof of {} hashes",
                    s.proof.len()
                )));
            }
            steps.push(AggregationStep {
                leaf_index: s.leaf_index,
                tree_size: s.tree_size,
                proof: s
                    .proof
                    .iter()
                    .map(|h| hex32("aggregation proof", h))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(AggregatedReceipt {
            digest: hex32("digest", &j.digest)?,
            steps,
            receipt: Arc::new(Receipt::from_json(&j.receipt)?),
        })
    }
}

/// One gateway layer in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepJson {
    /// Leaf index in the round's tree.
    pub leaf_index: u64,
    /// The round's tree size.
    pub tree_size: u64,
    /// Hex hashes, leaf side first.
    pub proof: Vec<String>,
}

/// The JSON form of an aggregated receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatedJson {
    /// Format version (2).
    pub version: u8,
    /// The client's digest, 64 hex digits.
    pub digest: String,
    /// The gateway layers, bottom first.
    pub aggregation: Vec<StepJson>,
    /// The cluster's receipt of the topmost root (a version-1 receipt).
    pub receipt: ReceiptJson,
}

/// Verifies an aggregated receipt offline against the trust anchor alone, in
/// the documented order: anchor, aggregation (the chain from the digest
/// leads to the digest the cluster's receipt logs), then the cluster's
/// receipt (entry, inclusion proof, signature).
pub fn verify_aggregated(
    receipt: &AggregatedReceipt,
    anchor: &TrustAnchor,
) -> Result<VerifiedAggregated, ReceiptError> {
    if receipt.receipt.cluster.group_public_key != anchor.0 {
        return Err(ReceiptError::WrongAnchor {
            expected: anchor.to_string(),
            found: TrustAnchor(receipt.receipt.cluster.group_public_key).to_string(),
        });
    }
    let top = receipt.top()?;
    match receipt.receipt.entry {
        crate::Entry::Digest(d) if d.digest == top => {}
        _ => return Err(ReceiptError::AggregationNotLogged),
    }
    let cluster = crate::receipt::verify_receipt(&receipt.receipt, anchor)?;
    Ok(VerifiedAggregated {
        digest: receipt.digest,
        logged: top,
        cluster,
    })
}

/// A receipt of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum AnyReceipt {
    /// Straight from the cluster (version 1).
    Direct(Receipt),
    /// Through gateways (version 2).
    Aggregated(AggregatedReceipt),
}

impl AnyReceipt {
    /// Parses either binary form (by its version byte).
    pub fn from_binary(b: &[u8]) -> Result<AnyReceipt, ReceiptError> {
        match b.get(4) {
            Some(&AGGREGATED_VERSION) if b.starts_with(MAGIC) => {
                AggregatedReceipt::from_binary(b).map(AnyReceipt::Aggregated)
            }
            _ => Receipt::from_binary(b).map(AnyReceipt::Direct),
        }
    }

    /// Parses either JSON form (by its `version` field).
    pub fn from_json_str(s: &str) -> Result<AnyReceipt, ReceiptError> {
        #[derive(Deserialize)]
        struct Version {
            version: u8,
        }
        let v: Version =
            serde_json::from_str(s).map_err(|e| ReceiptError::Malformed(format!("JSON: {e}")))?;
        if v.version == AGGREGATED_VERSION {
            let j: AggregatedJson = serde_json::from_str(s)
                .map_err(|e| ReceiptError::Malformed(format!("JSON: {e}")))?;
            AggregatedReceipt::from_json(&j).map(AnyReceipt::Aggregated)
        } else {
            Receipt::from_json_str(s).map(AnyReceipt::Direct)
        }
    }

    /// The binary form.
    pub fn to_binary(&self) -> Vec<u8> {
        match self {
            AnyReceipt::Direct(r) => r.to_binary(),
            AnyReceipt::Aggregated(a) => a.to_binary(),
        }
    }

    /// The JSON form.
    pub fn to_json_value(&self) -> serde_json::Value {
        let v = match self {
            AnyReceipt::Direct(r) => serde_json::to_value(r.to_json()),
            AnyReceipt::Aggregated(a) => serde_json::to_value(a.to_json()),
        };
        // Plain structs of strings and integers always serialize.
        v.unwrap_or(serde_json::Value::Null)
    }

    /// The client's digest: the logged entry's for a direct receipt (`None`
    /// for a Tick entry).
    pub fn digest(&self) -> Option<[u8; 32]> {
        match self {
            AnyReceipt::Direct(r) => match r.entry {
                crate::Entry::Digest(d) => Some(d.digest),
                crate::Entry::Tick(_) => None,
            },
            AnyReceipt::Aggregated(a) => Some(a.digest),
        }
    }

    /// The cluster's receipt (of the digest, or of the topmost root).
    pub fn cluster_receipt(&self) -> &Receipt {
        match self {
            AnyReceipt::Direct(r) => r,
            AnyReceipt::Aggregated(a) => &a.receipt,
        }
    }

    /// Verifies against the trust anchor: what the cluster's receipt proves.
    pub fn verify(&self, anchor: &TrustAnchor) -> Result<crate::receipt::Verified, ReceiptError> {
        match self {
            AnyReceipt::Direct(r) => crate::receipt::verify_receipt(r, anchor),
            AnyReceipt::Aggregated(a) => verify_aggregated(a, anchor).map(|v| v.cluster),
        }
    }
}

/// The aggregated receipts of `digests`, leaves `[first, …)` of a round's
/// tree of `tree_size` leaves, from their range proof and the receipt of the
/// round's root (`upper`: the cluster's, or an upstream gateway's). Checks
/// that the range leads to the digest `upper` is a receipt of; verifying
/// `upper` itself against the anchor is the caller's (once per round).
pub fn receipts_from_range(
    upper: &AnyReceipt,
    tree_size: u64,
    first: u64,
    digests: &[[u8; 32]],
    proof: &[Hash],
) -> Result<Vec<AggregatedReceipt>, ReceiptError> {
    let leaves: Vec<Hash> = digests.iter().map(aggregate_leaf_hash).collect();
    let (root, paths) = range_paths(tree_size, first, &leaves, proof)
        .map_err(|e| ReceiptError::Malformed(format!("aggregated range: {e}")))?;
    if upper.digest() != Some(root) {
        return Err(ReceiptError::AggregationNotLogged);
    }
    let (above, cluster): (&[AggregationStep], Arc<Receipt>) = match upper {
        AnyReceipt::Direct(r) => (&[], Arc::new(r.clone())),
        AnyReceipt::Aggregated(a) => (&a.steps, a.receipt.clone()),
    };
    if above.len() + 1 > MAX_AGGREGATION_STEPS {
        return Err(ReceiptError::Malformed(format!(
            "more than {MAX_AGGREGATION_STEPS} gateway layers"
        )));
    }
    Ok(digests
        .iter()
        .zip(paths)
        .enumerate()
        .map(|(i, (digest, proof))| {
            let mut steps = Vec::with_capacity(above.len() + 1);
            steps.push(AggregationStep {
                leaf_index: first + i as u64,
                tree_size,
                proof,
            });
            steps.extend_from_slice(above);
            AggregatedReceipt {
                digest: *digest,
                steps,
                receipt: cluster.clone(),
            }
        })
        .collect())
}

/// The range proof of leaves `[first, first + count)` in the first `size`
/// leaves of `tree`: the hash of every maximal subtree of the RFC 9162
/// recursion that lies wholly outside the range, in depth-first,
/// left-to-right order.
pub fn range_proof(
    tree: &MerkleTree,
    size: u64,
    first: u64,
    count: u64,
) -> Result<Vec<Hash>, ProofError> {
    let end = first.saturating_add(count);
    if count == 0 || end > size || size > tree.size() {
        return Err(ProofError::IndexOutOfRange { index: end, size });
    }
    let mut out = Vec::new();
    range_outside(tree, 0, size, first, end, &mut out)?;
    Ok(out)
}

fn range_outside(
    tree: &MerkleTree,
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    if hi <= a || lo >= b {
        out.push(tree.subtree(lo, hi)?);
    } else if !(a <= lo && hi <= b) {
        let k = split_point(hi - lo);
        range_outside(tree, lo, lo + k, a, b, out)?;
        range_outside(tree, lo + k, hi, a, b, out)?;
    }
    Ok(())
}

/// Why a range proof does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The range is empty, too long or not inside the tree.
    #[error("leaves [{first}, {first} + {count}) are not a range of a tree of size {size}")]
    Bounds {
        /// First leaf.
        first: u64,
        /// Leaves.
        count: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has too few or too many hashes.
    #[error("the range proof has the wrong number of hashes")]
    Length,
}

/// From the leaf hashes of `[first, first + leaves.len())`, their range
/// proof in a tree of `size` leaves: the root the proof leads to and each
/// leaf's own inclusion proof (leaf side first), as a gateway's client
/// derives its receipts. Whether the root is right is for the caller to
/// check (against the root's cluster receipt).
pub fn range_paths(
    size: u64,
    first: u64,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<(Hash, Vec<Vec<Hash>>), RangeError> {
    let count = leaves.len() as u64;
    let end = first.saturating_add(count);
    if leaves.is_empty() || leaves.len() > MAX_RANGE_LEAVES || end > size {
        return Err(RangeError::Bounds { first, count, size });
    }
    // Pass 1: every node the recursion visits, in pre-order, with its hash
    // and how many visited nodes its subtree holds (itself included).
    let mut nodes: Vec<(Hash, u32)> = Vec::with_capacity(leaves.len() * 2 + 128);
    let mut given = proof.iter();
    range_root(0, size, first, end, leaves, &mut given, &mut nodes)?;
    if given.next().is_some() {
        return Err(RangeError::Length);
    }
    let root = nodes.first().map(|n| n.0).ok_or(RangeError::Length)?;
    // Pass 2: the same walk, carrying the siblings from the root down; at
    // each leaf of the range they are its path (root side first).
    let mut paths = Vec::with_capacity(leaves.len());
    let mut stack = Vec::with_capacity(64);
    range_walk(0, size, first, end, 0, &nodes, &mut stack, &mut paths);
    Ok((root, paths))
}

/// Pass 1 of [`range_paths`]: visits `[lo, hi)` in pre-order, recording
/// each node's hash and subtree count; returns the node's hash.
fn range_root(
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    leaves: &[Hash],
    given: &mut std::slice::Iter<'_, Hash>,
    nodes: &mut Vec<(Hash, u32)>,
) -> Result<Hash, RangeError> {
    let at = nodes.len();
    nodes.push(([0; 32], 1));
    let h = if hi <= a || lo >= b {
        *given.next().ok_or(RangeError::Length)?
    } else if hi - lo == 1 {
        // Inside the range: lo is in [a, b).
        leaves[(lo - a) as usize]
    } else {
        let k = split_point(hi - lo);
        let left = range_root(lo, lo + k, a, b, leaves, given, nodes)?;
        let right = range_root(lo + k, hi, a, b, leaves, given, nodes)?;
        node_hash(&left, &right)
    };
    let count = (nodes.len() - at) as u32;
    nodes[at] = (h, count);
    Ok(h)
}

/// Pass 2 of [`range_paths`]: node `at` covers `[lo, hi)`; `stack` holds
/// the siblings from the root down to it.
#[allow(clippy::too_many_arguments)]
fn range_walk(
    lo: u64,
    hi: u64,
    a: u64,
    b: u64,
    at: usize,
    nodes: &[(Hash, u32)],
    stack: &mut Vec<Hash>,
    paths: &mut Vec<Vec<Hash>>,
) {
    if hi <= a || lo >= b {
        return;
    }
    if hi - lo == 1 {
        paths.push(stack.iter().rev().copied().collect());
        return;
    }
    let k = split_point(hi - lo);
    let left = at + 1;
    let right = left + nodes[left].1 as usize;
    stack.push(nodes[right].0);
    range_walk(lo, lo + k, a, b, left, nodes, stack, paths);
    stack.pop();
    stack.push(nodes[left].0);
    range_walk(lo + k, hi, a, b, right, nodes, stack, paths);
    stack.pop();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> (MerkleTree, Vec<[u8; 32]>) {
        let mut t = MerkleTree::new();
        let mut ds = Vec::new();
        for i in 0..n {
            let d = sha256(&[&i.to_be_bytes()]);
            t.push(aggregate_leaf_hash(&d));
            ds.push(d);
        }
        (t, ds)
    }

    #[test]
    fn range_paths_equal_the_trees_own_inclusion_proofs() {
        for size in [1u64, 2, 3, 5, 7, 8, 13, 64, 100] {
            let (t, ds) = tree(size);
            for first in 0..size {
                for count in 1..=(size - first).min(9) {
                    let proof = range_proof(&t, size, first, count).expect("range proof");
                    assert!(proof.len() <= 2 * 64, "size {size}: {} hashes", proof.len());
                    let leaves: Vec<Hash> = ds[first as usize..(first + count) as usize]
                        .iter()
                        .map(aggregate_leaf_hash)
                        .collect();
                    let (root, paths) =
                        range_paths(size, first, &leaves, &proof).expect("paths fit");
                    assert_eq!(root, t.root(), "size {size} range {first}+{count}");
                    for (i, path) in paths.iter().enumerate() {
                        let m = first + i as u64;
                        assert_eq!(
                            path,
                            &t.inclusion_proof(m, size).expect("proof"),
                            "size {size} leaf {m}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_changed_hash_or_length_changes_the_root_or_fails() {
        let (t, ds) = tree(37);
        let proof = range_proof(&t, 37, 10, 5).expect("range proof");
        let leaves: Vec<Hash> = ds[10..15].iter().map(aggregate_leaf_hash).collect();
        let mut bad = proof.clone();
        bad[0][3] ^= 1;
        let (root, _) = range_paths(37, 10, &leaves, &bad).expect("fits");
        assert_ne!(root, t.root());
        let mut longer = proof.clone();
        longer.push([0; 32]);
        assert_eq!(
            range_paths(37, 10, &leaves, &longer),
            Err(RangeError::Length)
        );
        assert_eq!(
            range_paths(37, 10, &leaves, &proof[1..]),
            Err(RangeError::Length)
        );
        assert!(matches!(
            range_paths(37, 35, &leaves, &proof),
            Err(RangeError::Bounds { .. })
        ));
        assert!(matches!(
            range_paths(37, 0, &[], &proof),
            Err(RangeError::Bounds { .. })
        ));
    }

    #[test]
    fn a_gateway_leaf_is_never_a_log_leaf() {
        let d = [7u8; 32];
        assert_ne!(aggregate_leaf_hash(&d), crate::merkle::leaf_hash(&d));
        // A log entry's first byte is its kind (0x01, 0x02); the tag's is 'b'.
        assert_eq!(AGGREGATE_LEAF_TAG[0], b'b');
    }
}
