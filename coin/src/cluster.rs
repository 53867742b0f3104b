use crate::dealer::GroupPublicKey;
use crate::sha256;
use belfry_clock::Micros;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of a cluster: a hash binding its group key, size, fault bound,
/// sequencing policy and genesis time (docs/design.md §3.7), so a signature made for
/// one cluster configuration never verifies for another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub [u8; 32]);

impl fmt::Debug for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterId({})", hex::encode(self.0))
    }
}

/// The sequencing policy (docs/design.md §3.5): what a report's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Policy {
    /// The report's vertex round (the default).
    Lamport,
    /// The report's `recv_time`, compared in buckets of `granularity_us` (>= 1).
    Clock {
        /// Bucket width in µs.
        granularity_us: u64,
    },
}

/// A policy that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The byte is neither 0 (lamport) nor 1 (clock).
    #[error("unknown policy byte {0} (expected 0 = lamport or 1 = clock)")]
    UnknownByte(u8),
    /// `clock` with granularity 0.
    #[error("the clock policy needs a granularity of at least 1 µs")]
    ZeroGranularity,
    /// `lamport` with a non-zero granularity.
    #[error("the lamport policy takes granularity 0, got {0}")]
    LamportGranularity(u64),
    /// A name other than `lamport` or `clock`.
    #[error("unknown policy {0:?} (expected lamport or clock)")]
    UnknownName(String),
}

impl Policy {
    /// The policy byte of the cluster id: 0 lamport, 1 clock.
    pub const fn byte(self) -> u8 {
        match self {
            Policy::Lamport => 0,
            Policy::Clock { .. } => 1,
        }
    }

    /// The granularity field: 0 for lamport.
    pub const fn granularity_us(self) -> u64 {
        match self {
            Policy::Lamport => 0,
            Policy::Clock { granularity_us } => granularity_us,
        }
    }

    /// The name used in receipts and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Policy::Lamport => "lamport",
            Policy::Clock { .. } => "clock",
        }
    }

    /// Rebuilds a policy from its byte and granularity, checking both.
    pub fn from_parts(byte: u8, granularity_us: u64) -> Result<Policy, PolicyError> {
        match byte {
            0 if granularity_us == 0 => Ok(Policy::Lamport),
            0 => Err(PolicyError::LamportGranularity(granularity_us)),
            1 if granularity_us == 0 => Err(PolicyError::ZeroGranularity),
            1 => Ok(Policy::Clock { granularity_us }),
            other => Err(PolicyError::UnknownByte(other)),
        }
    }

    /// Rebuilds a policy from its name and granularity.
    pub fn from_name(name: &str, granularity_us: u64) -> Result<Policy, PolicyError> {
        match name {
            "lamport" => Self::from_parts(0, granularity_us),
            "clock" => Self::from_parts(1, granularity_us),
            other => Err(PolicyError::UnknownName(other.to_string())),
        }
    }
}

/// Everything a cluster's id binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterParams {
    /// The threshold group public key (the trust anchor).
    pub group_public_key: GroupPublicKey,
    /// Number of replicas.
    pub n: u16,
    /// Byzantine replicas tolerated.
    pub f: u16,
    /// Sequencing policy.
    pub policy: Policy,
    /// The cluster's genesis time: the first tick's lower bound.
    pub genesis_time: Micros,
}

impl ClusterParams {
    /// The parameters of the cluster a dealing was made for.
    pub fn of_keys(keys: &crate::PublicKeys, policy: Policy, genesis_time: Micros) -> Self {
        ClusterParams {
            group_public_key: keys.group_key(),
            // A dealing checks n <= u16::MAX and f <= ⌊(n−1)/3⌋.
            n: keys.n() as u16,
            f: keys.f() as u16,
            policy,
            genesis_time,
        }
    }

    /// `SHA-256("belfry-cluster-v1" || group_public_key[48] || n u16 || f u16
    /// || policy u8 || granularity_us u64 || genesis_time u64)`: SHA-256
    /// because receipt verifiers recompute it (docs/design.md §3.7).
    pub fn cluster_id(&self) -> ClusterId {
        ClusterId(sha256(&[
            b"belfry-cluster-v1",
            &self.group_public_key.to_bytes(),
            &self.n.to_be_bytes(),
            &self.f.to_be_bytes(),
            &[self.policy.byte()],
            &self.policy.granularity_us().to_be_bytes(),
            &self.genesis_time.0.to_be_bytes(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_parts_are_checked() {
        assert_eq!(Policy::from_parts(0, 0), Ok(Policy::Lamport));
        assert_eq!(
            Policy::from_parts(1, 500),
            Ok(Policy::Clock {
                granularity_us: 500
            })
        );
        assert_eq!(Policy::from_parts(1, 0), Err(PolicyError::ZeroGranularity));
        assert_eq!(
            Policy::from_parts(0, 3),
            Err(PolicyError::LamportGranularity(3))
        );
        assert_eq!(Policy::from_parts(7, 0), Err(PolicyError::UnknownByte(7)));
        assert!(Policy::from_name("fifo", 0).is_err());
    }
}
