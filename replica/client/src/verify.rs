//! Receipt verification with a cache of verified signed tree heads.
//!
//! A receipt's only expensive check is the BLS signature on its tree head
//! (two pairings, ≈1.2 ms); the hash path is microseconds. Receipts come in
//! bundles under one head ([`belfry_wire::ReceiptBundle`]), so a client
//! verifies each distinct head once: [`HeadCache`] remembers the heads it
//! has verified, keyed by (anchor, tree-head message, signature) — the
//! exact bytes the pairing checked — and counts the pairings it computes.
//! Everything else is recomputed for every receipt, exactly as
//! [`belfry_timestamp::verify_receipt`] does; a receipt built here also
//! verifies there.

use belfry_timestamp::coin::{ClusterParams, GroupSignature, SignedMessage, TrustAnchor};
use belfry_timestamp::merkle::{leaf_hash, root_from_inclusion};
use belfry_timestamp::{Receipt, SignedTreeHead};
use belfry_wire::{ReceiptBundle, ReceiptItem};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Verified heads remembered (the oldest are forgotten first).
pub const MAX_CACHED_HEADS: usize = 4_096;

/// Why something from a replica does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The head's signature does not verify under the anchor.
    #[error("signed tree head of size {0} does not verify under the trust anchor")]
    BadHead(u64),
    /// An inclusion proof does not lead to the head's root.
    #[error("inclusion proof of leaf {0} does not lead to the head's root")]
    BadProof(u64),
    /// A consistency proof between two heads fails: the log was rewritten
    /// (or the replica lies).
    #[error("heads of sizes {0} and {1} are not consistent")]
    Inconsistent(u64, u64),
    /// Two different heads of one size.
    #[error("two different signed heads of size {0}")]
    Fork(u64),
}

type Key = ([u8; 48], Vec<u8>, [u8; 96]);

#[derive(Debug, Default)]
struct Heads {
    known: BTreeSet<Key>,
    order: VecDeque<Key>,
}

/// Heads verified so far (see the module documentation).
#[derive(Debug, Default)]
pub struct HeadCache {
    heads: Mutex<Heads>,
    pairings: AtomicU64,
}

impl HeadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signature checks computed so far (each costs the pairings).
    pub fn pairings(&self) -> u64 {
        self.pairings.load(Ordering::Relaxed)
    }

    /// Whether `signature` on `message` verifies under `anchor`, computed
    /// once per distinct (anchor, message, signature).
    pub fn verify(&self, anchor: &TrustAnchor, message: &[u8], signature: &GroupSignature) -> bool {
        let key = (anchor.0.to_bytes(), message.to_vec(), signature.0);
        if self.heads.lock().is_ok_and(|h| h.known.contains(&key)) {
            return true;
        }
        self.pairings.fetch_add(1, Ordering::Relaxed);
        if !anchor.0.verify(message, signature) {
            // Failures are not remembered: a replica sending bad heads
            // pays us a pairing each, and gets nothing.
            return false;
        }
        if let Ok(mut h) = self.heads.lock() {
            if h.known.insert(key.clone()) {
                h.order.push_back(key);
                while h.order.len() > MAX_CACHED_HEADS {
                    if let Some(old) = h.order.pop_front() {
                        h.known.remove(&old);
                    }
                }
            }
        }
        true
    }

    /// Checks a signed tree head of `cluster` under `anchor`.
    pub fn verify_head(
        &self,
        cluster: &ClusterParams,
        anchor: &TrustAnchor,
        head: &SignedTreeHead,
    ) -> Result<(), VerifyError> {
        if cluster.group_public_key != anchor.0 {
            return Err(VerifyError::BadHead(head.head.tree_size));
        }
        let message = head.head.message(cluster.cluster_id()).signing_bytes();
        if self.verify(anchor, &message, &head.signature) {
            Ok(())
        } else {
            Err(VerifyError::BadHead(head.head.tree_size))
        }
    }

    /// Verifies a bundle: its head once (cached), then each included
    /// item's hash path; returns the full receipts.
    pub fn verify_bundle(
        &self,
        cluster: &ClusterParams,
        anchor: &TrustAnchor,
        bundle: &ReceiptBundle,
    ) -> Result<Vec<Receipt>, VerifyError> {
        let Some(head) = bundle.head else {
            return Ok(Vec::new());
        };
        self.verify_head(cluster, anchor, &head)?;
        let mut receipts = Vec::new();
        for item in &bundle.items {
            let ReceiptItem::Included {
                entry,
                leaf_index,
                proof,
            } = item
            else {
                continue;
            };
            let leaf = leaf_hash(&entry.to_bytes());
            match root_from_inclusion(&leaf, *leaf_index, head.head.tree_size, proof) {
                Some(root) if root == head.head.root => {}
                _ => return Err(VerifyError::BadProof(*leaf_index)),
            }
            receipts.push(Receipt {
                cluster: *cluster,
                entry: *entry,
                leaf_index: *leaf_index,
                tree_size: head.head.tree_size,
                inclusion_proof: proof.clone(),
                root: head.head.root,
                time: head.head.time,
                signature: head.signature,
            });
        }
        Ok(receipts)
    }

    /// Verifies one receipt (e.g. a `.belfry` answer) with the cache.
    pub fn verify_receipt(
        &self,
        anchor: &TrustAnchor,
        receipt: &Receipt,
    ) -> Result<(), VerifyError> {
        let head = SignedTreeHead {
            head: belfry_timestamp::TreeHead {
                tree_size: receipt.tree_size,
                root: receipt.root,
                time: receipt.time,
            },
            signature: receipt.signature,
        };
        let bundle = ReceiptBundle {
            head: Some(head),
            items: vec![ReceiptItem::Included {
                entry: receipt.entry,
                leaf_index: receipt.leaf_index,
                proof: receipt.inclusion_proof.clone(),
            }],
        };
        self.verify_bundle(&receipt.cluster, anchor, &bundle)
            .map(|_| ())
    }
}
