//! Threshold BLS for belfry: the trusted dealer, signature shares, the
//! [`SignatureCollector`] that combines them, the [`CommonCoin`] that elects wave
//! leaders, and the typed messages that every share signs.
//!
//! # Scheme
//!
//! BLS12-381 with public keys in G1 (48 bytes compressed) and signatures in G2
//! (96 bytes compressed), ciphersuite `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`
//! (the IETF standard, so any standard BLS library verifies a belfry group
//! signature). The key is a degree-`f` polynomial whose constant term is the
//! group secret; replica `i` holds its value at `i + 1`. It comes from the
//! distributed key generation ([`dkg`], `belfry ceremony`), where no process
//! ever holds the group secret, or, for tests and demos, from a dealer
//! ([`deal`], `belfry keygen`) that draws the polynomial itself.
//! Any `f + 1` valid shares on one message interpolate to the group signature on
//! it, which is deterministic — so every honest replica obtains the *same* bytes,
//! and no `f` replicas (the most that may be Byzantine) can produce it alone.
//!
//! # Domain separation
//!
//! Every signed byte string starts with its own ASCII tag ([`CoinMessage`]:
//! `belfry-coin-v1`, [`TreeHeadMessage`]: `belfry-sth-v1`) and names the
//! cluster. A [`SignatureCollector`] is bound to one message, so a coin share fed
//! to a tree-head collector fails verification and is reported as a fault
//! instead of being combined.
//!
//! # The coin
//!
//! `coin_w = SHA3-256(σ_w)` where `σ_w` is the group signature on the wave-`w`
//! coin message; the leader is `u64::from_be_bytes(coin_w[0..8]) mod n`. Before
//! `f + 1` replicas release their shares nobody — not even `f` colluding
//! replicas — can predict `σ_w`, and once it exists it is unique: the coin is
//! unpredictable and unbiasable (docs/design.md §3.4).
//!
//! # Sans-IO
//!
//! All operations sit behind [`ThresholdCrypto`] with two implementations:
//! [`BlsCrypto`] (blsttc on blst) and `MockCrypto`, a cheap hash-based double
//! for large simulations that still rejects invalid shares (only with the
//! `sim-hooks` feature, which the `belfry` binary never enables). Nothing here reads a
//! clock or an unseeded RNG: the dealer takes the RNG it should use.

#![forbid(unsafe_code)]

pub use belfry_clock as clock;
pub use belfry_step as step;

mod bls;
pub mod bytes;
mod cluster;
mod coin;
mod collector;
mod crypto;
mod dealer;
pub mod dkg;
mod message;
#[cfg(feature = "sim-hooks")]
mod mock;

pub use bls::BlsCrypto;
pub use cluster::{ClusterId, ClusterParams, Policy, PolicyError};
pub use coin::{Coin, CoinStep, CoinValue, CommonCoin};
pub use collector::{CollectStep, ShareFault, ShareFaultKind, SignatureCollector};
pub use crypto::{CryptoError, GroupSignature, RefreshedCrypto, SignatureShare, ThresholdCrypto};
pub use dealer::{
    deal, deal_with_secret, group_secrets_made, threshold_sign, GroupPublicKey, KeyError,
    PublicKeys, SecretShare, TrustAnchor,
};
pub use message::{CoinMessage, SignedMessage, TreeHeadMessage, Wave};
#[cfg(feature = "sim-hooks")]
pub use mock::MockCrypto;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica's index in the cluster, `0..n`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ReplicaId(pub u16);

impl ReplicaId {
    /// The id as an index into per-replica arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// The most Byzantine replicas a cluster of `n` tolerates: `⌊(n − 1) / 3⌋`.
pub const fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// The quorum `Q = n − f` (docs/design.md §3.1 — never written `2f + 1`).
pub const fn quorum(n: usize, f: usize) -> usize {
    n.saturating_sub(f)
}

/// Orders two 32-byte hashes exactly as `[u8; 32]`'s `Ord` does
/// (lexicographically), a word at a time: sorted maps keyed by digests and
/// vertex hashes compare keys millions of times per simulated minute, and
/// this stays inline where the array comparison calls `memcmp`.
#[inline]
pub fn cmp_hash(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let x = u64::from_be_bytes(x.try_into().unwrap_or([0; 8]));
        let y = u64::from_be_bytes(y.try_into().unwrap_or([0; 8]));
        match x.cmp(&y) {
            std::cmp::Ordering::Equal => {}
            other => return other,
        }
    }
    std::cmp::Ordering::Equal
}

/// Implements `Ord` and `PartialOrd` for a newtype over `[u8; 32]` (field
/// `.0`) through [`cmp_hash`]: the same order as the array's, inline.
#[macro_export]
macro_rules! hash_ord {
    ($t:ty) => {
        impl Ord for $t {
            #[inline]
            fn cmp(&self, other: &Self) -> ::std::cmp::Ordering {
                $crate::cmp_hash(&self.0, &other.0)
            }
        }

        impl PartialOrd for $t {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<::std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}

/// SHA-256 of the concatenation of `parts`: the hash of everything a receipt
/// verifier recomputes — the log tree and `cluster_id` (docs/design.md §3.7) — so
/// CT's RFC 6962 tooling and browsers' WebCrypto can check belfry's proofs.
/// `sha2` selects the CPU's SHA extensions at run time where they exist.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA3-256 of the concatenation of `parts`: the protocol-internal hash
/// (vertex hashes, coin value, tie-break, state commitments), which no
/// receipt verifier computes.
pub fn sha3(parts: &[&[u8]]) -> [u8; 32] {
    use sha3::Digest;
    let mut h = sha3::Sha3_256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The hash by which a fault names the message it rejects (docs/design.md
/// §3.3): SHA3-256 under an ASCII tag of the layer that defines the
/// message — a broadcast message, a peer frame, a tree-head share — so an
/// operator can match a logged fault to the bytes a peer sent.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageHash(pub [u8; 32]);

impl MessageHash {
    /// SHA3-256 of `tag` followed by `parts`.
    pub fn of(tag: &[u8], parts: &[&[u8]]) -> MessageHash {
        use sha3::Digest;
        let mut h = sha3::Sha3_256::new();
        h.update(tag);
        for p in parts {
            h.update(p);
        }
        MessageHash(h.finalize().into())
    }
}

impl std::fmt::Debug for MessageHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageHash({})", hex::encode(&self.0[..8]))
    }
}

impl std::fmt::Display for MessageHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
