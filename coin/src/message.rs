use crate::cluster::ClusterId;
use belfry_clock::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A wave of the DAG: rounds `4w − 3 ..= 4w` (docs/design.md §3.4). Waves start at 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Wave(pub u64);

impl fmt::Display for Wave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "w{}", self.0)
    }
}

/// A message that threshold shares sign: its canonical bytes begin with a
/// domain tag of its own, so a signature over one kind can never be read as a
/// signature over another.
pub trait SignedMessage {
    /// The ASCII domain tag the canonical bytes start with.
    const DOMAIN: &'static [u8];
    /// The exact bytes that are signed.
    fn signing_bytes(&self) -> Vec<u8>;
}

/// The common-coin message of wave `w`:
/// `"belfry-coin-v1" || cluster_id[32] || w u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CoinMessage {
    /// The cluster the coin belongs to.
    pub cluster_id: ClusterId,
    /// The wave.
    pub wave: Wave,
}

impl SignedMessage for CoinMessage {
    const DOMAIN: &'static [u8] = b"belfry-coin-v1";
    fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::DOMAIN.len() + 32 + 8);
        b.extend_from_slice(Self::DOMAIN);
        b.extend_from_slice(&self.cluster_id.0);
        b.extend_from_slice(&self.wave.0.to_be_bytes());
        b
    }
}

/// The signed tree head message:
/// `"belfry-sth-v1" || cluster_id[32] || tree_size u64 || root[32] || time u64`
/// (docs/design.md §3.7; `time` is the time of the Tick that is the tree's last leaf).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeHeadMessage {
    /// The cluster whose log this is.
    pub cluster_id: ClusterId,
    /// Number of entries in the tree.
    pub tree_size: u64,
    /// RFC 9162 root over those entries.
    pub root: [u8; 32],
    /// The time of the Tick entry that ends the tree.
    pub time: Micros,
}

impl SignedMessage for TreeHeadMessage {
    const DOMAIN: &'static [u8] = b"belfry-sth-v1";
    fn signing_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::DOMAIN.len() + 32 + 8 + 32 + 8);
        b.extend_from_slice(Self::DOMAIN);
        b.extend_from_slice(&self.cluster_id.0);
        b.extend_from_slice(&self.tree_size.to_be_bytes());
        b.extend_from_slice(&self.root);
        b.extend_from_slice(&self.time.0.to_be_bytes());
        b
    }
}
