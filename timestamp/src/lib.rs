//! The belfry log (docs/design.md §3.7): canonical entries, the RFC 9162 Merkle tree
//! with inclusion and consistency proofs, signed tree heads, receipts in their
//! JSON and binary forms, and offline verification against the trust anchor.
//!
//! # What a receipt proves, and to whom
//!
//! A receipt says: entry `e` is leaf `i` of the log of cluster `C`, and the
//! log's tree head of size `s` with root `r` and time `t` carries the group
//! signature of `C`. Anyone holding only `C`'s group public key (the trust
//! anchor, `belfry1:<96 hex>`) checks it offline: no single replica — in fact
//! no `f` replicas — can produce that signature, and honest replicas sign only
//! the agreed log, so a verified receipt shows the digest was logged, at that
//! position, no later than `t`. Consistency proofs between signed heads show
//! the log only grew.
//!
//! This crate stays light — no tokio, no quinn — so a verifier can link it
//! alone. It needs std; a device without an operating system verifies
//! receipts with `belfry-verify-nostd` (`verify-nostd/`).

#![forbid(unsafe_code)]

pub use belfry_clock as clock;
pub use belfry_coin as coin;

pub mod aggregate;
pub mod checkpoint;
pub mod entry;
pub mod head;
pub mod merkle;
pub mod receipt;
pub mod store;

pub use aggregate::{
    aggregate_leaf_hash, verify_aggregated, AggregatedReceipt, AggregationStep, AnyReceipt,
    VerifiedAggregated,
};
pub use entry::{empty_root, DigestEntry, Entry, EntryError, TickEntry};
pub use head::{SignedTreeHead, TreeHead};
pub use merkle::{
    leaf_hash, node_hash, root_from_inclusion, verify_consistency, verify_inclusion, Hash,
    MemoryNodes, MerkleTree, NodeStore, ProofError,
};
pub use receipt::{verify_receipt, Receipt, ReceiptError, ReceiptJson, Verified};
