//! A belfry receipt verifier for devices: `#![no_std]`, on `blst` and `sha2`
//! alone, with no allocation of its own.
//!
//! # What it checks
//!
//! [`verify`] reads a receipt in its binary (`.belfry`) form — version 1, the
//! cluster's receipt of a logged entry, or version 2, an aggregated receipt
//! from a gateway (docs/gateway.md) — and makes the checks of
//! docs/verify-anywhere.md in their order, naming the first that fails
//! ([`Failure::check`]): `format`, `anchor`, `cluster_id` (only when the
//! caller knows the cluster's id: the binary form carries none, the id is
//! computed and signed), `digest` (only when a digest is given),
//! `aggregation` (version 2), `entry`, `inclusion_proof`, `signature`. Its
//! verdicts are `belfry verify`'s: the host tests run every committed vector
//! through both and flip every byte of real receipts.
//!
//! A check that `belfry_timestamp` makes while *reading* a receipt is made
//! while reading here too, so the same check is named: an entry whose kind
//! byte is unknown, which is missing or which sets reserved flag bits fails
//! `entry` even when the key is not the anchor's.
//!
//! # Memory
//!
//! Nothing is copied out of the receipt: the fields are borrowed, the
//! inclusion proofs folded while walking over the borrowed hashes, the
//! gateway steps (at most [`MAX_AGGREGATION_STEPS`]) kept in a fixed array.
//! The parsed receipt is about 380 bytes of stack on x86-64 (borrowed fields and
//! the step array), whatever the proofs' lengths (at most [`MAX_PROOF_LEN`]
//! hashes each); the signed message is 93 bytes. The crate never
//! allocates; `blst` does: it needs the `alloc` crate, and its `min_pk`
//! verify allocates the message and one pairing context (about 3.2 KB) per
//! call and frees both before returning. A device therefore provides a
//! global allocator; `device/` shows one over a fixed 4 KiB arena.
//!
//! # Against whom
//!
//! Nothing in the receipt is trusted: the group key must *be* the trust
//! anchor's, every hash is recomputed, the signed message is rebuilt from
//! the receipt's fields, the public key must be a valid G1 point and the
//! signature a G2 point in the subgroup. The signature is the only thing
//! that binds `tree_size`, `time` and the cluster's parameters.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod bls;
mod failure;
mod format;
mod merkle;

pub use bls::{AnchorError, TrustAnchor};
pub use failure::{Check, Failure};

use format::{AggregationStep, ClusterReceipt, Entry, Receipt};
use sha2::{Digest, Sha256};

/// The version byte of the cluster's own receipt.
pub const VERSION_DIRECT: u8 = 1;
/// An aggregated receipt (through gateways).
pub const VERSION_AGGREGATED: u8 = 2;
/// Longest inclusion proof: 64 levels cover any u64 tree size.
pub const MAX_PROOF_LEN: usize = 64;
/// Most gateway layers in one aggregated receipt.
pub const MAX_AGGREGATION_STEPS: usize = 8;

/// Microseconds since the Unix epoch (belfry's `Micros`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

/// What the caller holds: the trust anchor, and what it knows of the
/// receipt's subject and cluster.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    /// The cluster's trust anchor (its group public key).
    pub anchor: &'a TrustAnchor,
    /// The document's SHA-256, if the receipt must be for it; `None` checks
    /// only that *some* digest was logged (`digest` is skipped).
    pub digest: Option<&'a [u8; 32]>,
    /// The cluster's id, if known (the device was given the cluster's
    /// parameters); `None` skips `cluster_id`, and the id computed from the
    /// receipt is what the signature binds.
    pub cluster_id: Option<&'a [u8; 32]>,
}

/// What a verified receipt proves: the entry was leaf `leaf_index` of the
/// cluster's log of `tree_size` entries, signed at `time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The signed tree head's time: the digest existed by then.
    pub time: Micros,
    /// The signed tree head's size.
    pub tree_size: u64,
    /// The logged entry's index (version 2: the topmost gateway root's).
    pub leaf_index: u64,
    /// The receipt's digest: the client's (version 2) or the logged digest
    /// entry's; `None` for a receipt of a tick entry.
    pub digest: Option<[u8; 32]>,
    /// Gateway layers: 0 for version 1.
    pub gateway_layers: u8,
}

/// Verifies a binary receipt against what the caller expects, making the
/// documented checks in order; the first that fails is returned.
pub fn verify(receipt: &[u8], expected: &Expected<'_>) -> Result<Verified, Failure> {
    let parsed = format::parse(receipt, expected.anchor.as_bytes())?;
    let cluster = parsed.cluster_receipt();
    if cluster.group_public_key != expected.anchor.as_bytes() {
        return Err(Failure::WrongAnchor);
    }
    let cluster_id = cluster_id(cluster);
    if expected.cluster_id.is_some_and(|id| *id != cluster_id) {
        return Err(Failure::ClusterIdMismatch);
    }
    if let Some(want) = expected.digest {
        check_digest(&parsed, want)?;
    }
    if let Receipt::Aggregated(a) = &parsed {
        let top = aggregation_top(a.digest, a.steps())?;
        if cluster.entry.digest() != Some(&top) {
            return Err(Failure::AggregationNotLogged);
        }
    }
    // The entry's canonical bytes were checked while reading (`entry`).
    if cluster.leaf_index >= cluster.tree_size {
        return Err(Failure::LeafIndexOutOfRange {
            leaf_index: cluster.leaf_index,
            tree_size: cluster.tree_size,
        });
    }
    let leaf = merkle::leaf_hash(cluster.entry.bytes());
    match merkle::root_from_inclusion(leaf, cluster.leaf_index, cluster.tree_size, cluster.proof) {
        Some(root) if root == *cluster.root => {}
        _ => return Err(Failure::InclusionMismatch),
    }
    let message = tree_head_message(&cluster_id, cluster);
    if !expected.anchor.verifies(&message, cluster.signature) {
        return Err(Failure::BadSignature);
    }
    Ok(Verified {
        time: Micros(cluster.time),
        tree_size: cluster.tree_size,
        leaf_index: cluster.leaf_index,
        digest: match &parsed {
            Receipt::Direct(r) => r.entry.digest().copied(),
            Receipt::Aggregated(a) => Some(*a.digest),
        },
        gateway_layers: match &parsed {
            Receipt::Direct(_) => 0,
            // At most MAX_AGGREGATION_STEPS (8), checked while reading.
            Receipt::Aggregated(a) => a.steps().len() as u8,
        },
    })
}

/// `digest`: version 1, the entry is a digest entry for `want`; version 2,
/// the receipt's own digest is `want`.
fn check_digest(receipt: &Receipt<'_>, want: &[u8; 32]) -> Result<(), Failure> {
    match receipt {
        Receipt::Aggregated(a) if a.digest == want => Ok(()),
        Receipt::Aggregated(_) => Err(Failure::DigestMismatch),
        Receipt::Direct(r) => match r.entry {
            Entry::Digest(_) if r.entry.digest() == Some(want) => Ok(()),
            Entry::Digest(_) => Err(Failure::DigestMismatch),
            Entry::Tick(_) => Err(Failure::TickEntry),
        },
    }
}

/// `aggregation`: the digest the chain of gateway steps leads to, bottom
/// step first, or the first step (from 0) whose path does not fit.
fn aggregation_top(digest: &[u8; 32], steps: &[AggregationStep<'_>]) -> Result<[u8; 32], Failure> {
    let mut h = *digest;
    for (i, step) in steps.iter().enumerate() {
        let step_failed = Failure::AggregationStep {
            // At most MAX_AGGREGATION_STEPS (8), checked while reading.
            step: i as u8,
        };
        if step.leaf_index >= step.tree_size {
            return Err(step_failed);
        }
        h = merkle::root_from_inclusion(
            merkle::aggregate_leaf_hash(&h),
            step.leaf_index,
            step.tree_size,
            step.proof,
        )
        .ok_or(step_failed)?;
    }
    Ok(h)
}

/// `cluster_id = SHA-256("belfry-cluster-v1" || group_public_key[48] || n u16
/// || f u16 || policy u8 || granularity_us u64 || genesis_time u64)`.
fn cluster_id(r: &ClusterReceipt<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"belfry-cluster-v1");
    h.update(r.group_public_key);
    h.update(r.n.to_be_bytes());
    h.update(r.f.to_be_bytes());
    h.update([r.policy]);
    h.update(r.granularity_us.to_be_bytes());
    h.update(r.genesis_time_us.to_be_bytes());
    h.finalize().into()
}

/// The domain of the signed tree head message.
const STH_DOMAIN: &[u8; 13] = b"belfry-sth-v1";
/// `"belfry-sth-v1" || cluster_id[32] || tree_size u64 || root[32] || time u64`.
const STH_MESSAGE_LEN: usize = STH_DOMAIN.len() + 32 + 8 + 32 + 8;

fn tree_head_message(cluster_id: &[u8; 32], receipt: &ClusterReceipt<'_>) -> [u8; STH_MESSAGE_LEN] {
    let mut m = [0u8; STH_MESSAGE_LEN];
    let parts: [&[u8]; 5] = [
        STH_DOMAIN,
        cluster_id,
        &receipt.tree_size.to_be_bytes(),
        receipt.root,
        &receipt.time.to_be_bytes(),
    ];
    let mut at = 0;
    for p in parts {
        m[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    debug_assert_eq!(at, STH_MESSAGE_LEN);
    m
}
