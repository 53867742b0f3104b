//! Why a receipt does not verify: each [`Failure`] names its [`Check`], the
//! names `belfry verify` and the JavaScript verifier print.

use core::fmt;

/// The checks, in the order they are made (docs/verify-anywhere.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The bytes are a receipt.
    Format,
    /// The receipt's group key is the trust anchor.
    Anchor,
    /// The cluster's id is the one expected.
    ClusterId,
    /// The receipt is for the expected digest.
    Digest,
    /// Version 2: the gateway chain leads to the logged digest.
    Aggregation,
    /// The entry's bytes are canonical.
    Entry,
    /// The inclusion proof leads from the entry to the root.
    InclusionProof,
    /// The tree head is signed under the anchor.
    Signature,
}

impl Check {
    /// The check's name as the documentation and `belfry verify` print it.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Format => "format",
            Check::Anchor => "anchor",
            Check::ClusterId => "cluster_id",
            Check::Digest => "digest",
            Check::Aggregation => "aggregation",
            Check::Entry => "entry",
            Check::InclusionProof => "inclusion_proof",
            Check::Signature => "signature",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first check a receipt fails, with what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// `format`: the bytes end `needed` bytes short of a field at `offset`.
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// Its width.
        needed: usize,
    },
    /// `format`: not starting with `BLFY`.
    NoMagic,
    /// `format`: a version other than 1 or 2 (an inner receipt: other than 1).
    Version(u8),
    /// `format`: the group public key is not a compressed G1 point in the
    /// subgroup.
    PublicKey,
    /// `format`: a policy byte other than 0 (lamport, granularity 0) or 1
    /// (clock, granularity positive).
    Policy {
        /// The policy byte.
        byte: u8,
        /// The granularity field, µs.
        granularity_us: u64,
    },
    /// `format`: a proof longer than 64 hashes.
    ProofTooLong(u8),
    /// `format`: an aggregated receipt with no step or more than 8.
    StepCount(u8),
    /// `format`: bytes after the signature.
    TrailingBytes(usize),
    /// `anchor`: the receipt's group key is not the anchor.
    WrongAnchor,
    /// `cluster_id`: the receipt's cluster parameters compute to another id
    /// than the one expected.
    ClusterIdMismatch,
    /// `digest`: the receipt is for another digest.
    DigestMismatch,
    /// `digest`: a version-1 receipt of a tick entry, not of a digest.
    TickEntry,
    /// `aggregation`: gateway step `step` (from 0, the client's gateway)
    /// has an index outside its round or a proof of the wrong length.
    AggregationStep {
        /// Which step.
        step: u8,
    },
    /// `aggregation`: the chain leads to a root that is not the digest the
    /// cluster's receipt logs.
    AggregationNotLogged,
    /// `entry`: no entry where one starts.
    EntryMissing,
    /// `entry`: a kind byte other than 0x01 (digest) or 0x02 (tick).
    EntryKind(u8),
    /// `entry`: a digest entry's flags use bits other than bit 0.
    EntryFlags(u8),
    /// `inclusion_proof`: the leaf index is not below the tree size.
    LeafIndexOutOfRange {
        /// The receipt's leaf index.
        leaf_index: u64,
        /// The receipt's tree size.
        tree_size: u64,
    },
    /// `inclusion_proof`: the proof does not lead from the entry to the root.
    InclusionMismatch,
    /// `signature`: the tree head's signature does not verify under the
    /// anchor (or is not a G2 point in the subgroup).
    BadSignature,
}

impl Failure {
    /// The check that failed.
    pub const fn check(&self) -> Check {
        match self {
            Failure::Truncated { .. }
            | Failure::NoMagic
            | Failure::Version(_)
            | Failure::PublicKey
            | Failure::Policy { .. }
            | Failure::ProofTooLong(_)
            | Failure::StepCount(_)
            | Failure::TrailingBytes(_) => Check::Format,
            Failure::WrongAnchor => Check::Anchor,
            Failure::ClusterIdMismatch => Check::ClusterId,
            Failure::DigestMismatch | Failure::TickEntry => Check::Digest,
            Failure::AggregationStep { .. } | Failure::AggregationNotLogged => Check::Aggregation,
            Failure::EntryMissing | Failure::EntryKind(_) | Failure::EntryFlags(_) => Check::Entry,
            Failure::LeafIndexOutOfRange { .. } | Failure::InclusionMismatch => {
                Check::InclusionProof
            }
            Failure::BadSignature => Check::Signature,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} check: ", self.check())?;
        match self {
            Failure::Truncated { offset, needed } => {
                write!(f, "truncated: {needed} bytes needed at offset {offset}")
            }
            Failure::NoMagic => f.write_str("not a belfry receipt (no BLFY magic)"),
            Failure::Version(v) => write!(f, "unsupported receipt version {v}"),
            Failure::PublicKey => f.write_str("the group public key is not a valid G1 point"),
            Failure::Policy {
                byte,
                granularity_us,
            } => write!(
                f,
                "policy byte {byte} with granularity {granularity_us} µs is not lamport (0, 0) or clock (1, > 0)"
            ),
            Failure::ProofTooLong(n) => write!(f, "a proof of {n} hashes (at most 64)"),
            Failure::StepCount(n) => write!(f, "{n} aggregation steps (1 to 8)"),
            Failure::TrailingBytes(n) => write!(f, "{n} trailing bytes after the signature"),
            Failure::WrongAnchor => f.write_str("the receipt is signed for another group key than the trust anchor"),
            Failure::ClusterIdMismatch => f.write_str("the receipt's cluster parameters are not the expected cluster's"),
            Failure::DigestMismatch => f.write_str("the receipt is for another digest"),
            Failure::TickEntry => f.write_str("the receipt is for a tick entry, not a digest"),
            Failure::AggregationStep { step } => write!(
                f,
                "step {step}: the path does not fit its tree (leaf index or proof length)"
            ),
            Failure::AggregationNotLogged => f.write_str(
                "the chain from the digest does not lead to the digest the cluster logged",
            ),
            Failure::EntryMissing => f.write_str("no entry"),
            Failure::EntryKind(k) => write!(
                f,
                "unknown entry kind 0x{k:02x} (expected 0x01 digest or 0x02 tick)"
            ),
            Failure::EntryFlags(b) => write!(f, "digest entry flags 0x{b:02x} use reserved bits"),
            Failure::LeafIndexOutOfRange {
                leaf_index,
                tree_size,
            } => write!(f, "leaf index {leaf_index} is not in a tree of size {tree_size}"),
            Failure::InclusionMismatch => {
                f.write_str("the inclusion proof does not lead from the entry to the root")
            }
            Failure::BadSignature => {
                f.write_str("the tree head signature does not verify under the trust anchor")
            }
        }
    }
}
