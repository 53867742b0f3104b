//! The belfry log (DESIGN.md 3.7): canonical entries, the RFC 9162 Merkle tree
//! with inclusion and consistency proofs, signed tree heads, receipts in their
//! JSON and binary forms, offline verification against the trust anchor, and
//! append-only log storage.
//!
//! This crate stays light — no tokio, no quinn — so a verifier or an embedded
//! device can link it alone.

#![forbid(unsafe_code)]

pub use belfry_clock as clock;
pub use belfry_coin as coin;
