//! Tree heads and their threshold signatures (docs/design.md §3.7).

use belfry_clock::Micros;
use belfry_coin::{ClusterId, GroupPublicKey, GroupSignature, SignedMessage, TreeHeadMessage};
use serde::{Deserialize, Serialize};

/// A tree head: size, root and the time of the Tick that is its last leaf.
/// Everything in it is fixed by the log, so every honest replica's share signs
/// the same bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeHead {
    /// Number of entries.
    pub tree_size: u64,
    /// RFC 9162 root.
    #[serde(with = "belfry_coin::bytes")]
    pub root: [u8; 32],
    /// The last Tick's time.
    pub time: Micros,
}

impl TreeHead {
    /// The message the shares sign.
    pub fn message(&self, cluster_id: ClusterId) -> TreeHeadMessage {
        TreeHeadMessage {
            cluster_id,
            tree_size: self.tree_size,
            root: self.root,
            time: self.time,
        }
    }
}

/// A tree head with the cluster's group signature on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTreeHead {
    /// The head.
    pub head: TreeHead,
    /// Group signature on `head.message(cluster_id)`.
    pub signature: GroupSignature,
}

impl SignedTreeHead {
    /// Checks the signature under the group key for this cluster.
    pub fn verify(&self, cluster_id: ClusterId, key: &GroupPublicKey) -> bool {
        key.verify(
            &self.head.message(cluster_id).signing_bytes(),
            &self.signature,
        )
    }
}
