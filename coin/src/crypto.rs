use crate::{ReplicaId, Wave};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A replica's signature share on a message: 96 bytes (a compressed G2 point
/// for BLS). Carried as bytes so a malformed share from the network is a value
/// to reject, not a decode panic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignatureShare(#[serde(with = "crate::bytes")] pub [u8; 96]);

/// A threshold group signature: a plain BLS signature under the group key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupSignature(#[serde(with = "crate::bytes")] pub [u8; 96]);

impl fmt::Debug for SignatureShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureShare({}…)", hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for GroupSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupSignature({}…)", hex::encode(&self.0[..8]))
    }
}

impl GroupSignature {
    /// 192 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A threshold operation that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// This instance holds no secret share (a verifier-only instance).
    #[error("no secret key share: this instance can only verify")]
    NoSecret,
    /// Fewer than `f + 1` distinct shares.
    #[error("need {needed} distinct shares to combine, got {got}")]
    NotEnoughShares {
        /// f + 1.
        needed: usize,
        /// Distinct shares given.
        got: usize,
    },
    /// A share that is not a valid encoding.
    #[error("share from {0} is not a valid compressed G2 point")]
    MalformedShare(ReplicaId),
    /// A share from a replica id outside `0..n`.
    #[error("share from unknown replica {0}")]
    UnknownReplica(ReplicaId),
}

/// The threshold-signature operations the protocol needs (docs/design.md section
/// 2): real BLS in the node, a cheap mock in large simulations. Both reject
/// invalid shares, so the protocol's fault handling is exercised either way.
pub trait ThresholdCrypto: Send + Sync + fmt::Debug {
    /// Number of replicas.
    fn n(&self) -> usize;
    /// Fault bound; `f + 1` shares combine.
    fn f(&self) -> usize;
    /// Signs `message` with this replica's own share.
    fn sign_share(&self, message: &[u8]) -> Result<SignatureShare, CryptoError>;
    /// Checks `share` is replica `from`'s share on `message`.
    fn verify_share(&self, from: ReplicaId, message: &[u8], share: &SignatureShare) -> bool;
    /// Interpolates `f + 1` or more shares (from distinct replicas) into a group
    /// signature, *without* checking them: an invalid share yields a signature
    /// that fails [`ThresholdCrypto::verify_group`].
    fn combine(
        &self,
        message: &[u8],
        shares: &[(ReplicaId, SignatureShare)],
    ) -> Result<GroupSignature, CryptoError>;
    /// Checks a group signature on `message`.
    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool;
    /// The keys that sign and check shares of wave `wave`'s messages — its
    /// coin, and the tree head that ends at its Tick. After a refresh of the
    /// shares (docs/keys.md §8) the waves before the agreed switch use the
    /// previous shares and the later ones the new; the group key is the
    /// same for both. Without a refresh: `self`.
    fn for_wave(&self, wave: Wave) -> &dyn ThresholdCrypto;
}

/// The keys of a cluster whose shares were refreshed: `previous` for the
/// waves before `switch`, `current` from `switch` on (docs/keys.md §8).
/// Used without [`ThresholdCrypto::for_wave`] it is `current`: a path that
/// forgot to name its wave signs with the newer share, never a stale one.
#[derive(Debug)]
pub struct RefreshedCrypto {
    previous: std::sync::Arc<dyn ThresholdCrypto>,
    current: std::sync::Arc<dyn ThresholdCrypto>,
    switch: Wave,
}

impl RefreshedCrypto {
    /// Both key sets, and the first wave of the current one. `previous`
    /// may be verifier-only (its share deleted): then this replica signs
    /// nothing before `switch`.
    pub fn new(
        previous: std::sync::Arc<dyn ThresholdCrypto>,
        current: std::sync::Arc<dyn ThresholdCrypto>,
        switch: Wave,
    ) -> Self {
        debug_assert_eq!((previous.n(), previous.f()), (current.n(), current.f()));
        RefreshedCrypto {
            previous,
            current,
            switch,
        }
    }

    /// The first wave signed with the current shares.
    pub fn switch(&self) -> Wave {
        self.switch
    }
}

impl ThresholdCrypto for RefreshedCrypto {
    fn n(&self) -> usize {
        self.current.n()
    }

    fn f(&self) -> usize {
        self.current.f()
    }

    fn sign_share(&self, message: &[u8]) -> Result<SignatureShare, CryptoError> {
        self.current.sign_share(message)
    }

    fn verify_share(&self, from: ReplicaId, message: &[u8], share: &SignatureShare) -> bool {
        self.current.verify_share(from, message, share)
    }

    fn combine(
        &self,
        message: &[u8],
        shares: &[(ReplicaId, SignatureShare)],
    ) -> Result<GroupSignature, CryptoError> {
        self.current.combine(message, shares)
    }

    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool {
        self.current.verify_group(message, signature)
    }

    fn for_wave(&self, wave: Wave) -> &dyn ThresholdCrypto {
        if wave < self.switch {
            // The previous keys may themselves be refreshed ones.
            self.previous.for_wave(wave)
        } else {
            self.current.as_ref()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{deal, BlsCrypto};
    use rand::SeedableRng;
    use std::sync::Arc;

    #[test]
    fn refreshes_nest_so_that_every_wave_finds_its_epochs_keys() {
        // Three epochs (independent keys stand in for refreshed ones): the
        // first until wave 10, the second until wave 20, the third after.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let epochs: Vec<Arc<BlsCrypto>> = (0..3)
            .map(|_| {
                let (public, shares) = deal(4, 1, &mut rng).unwrap();
                Arc::new(BlsCrypto::new(Arc::new(public), shares[0].clone()))
            })
            .collect();
        let inner: Arc<dyn ThresholdCrypto> = Arc::new(RefreshedCrypto::new(
            epochs[0].clone(),
            epochs[1].clone(),
            Wave(10),
        ));
        let all = RefreshedCrypto::new(inner, epochs[2].clone(), Wave(20));
        let message = b"a head";
        for (wave, epoch) in [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (u64::MAX, 2)] {
            let keys = all.for_wave(Wave(wave));
            let share = keys.sign_share(message).unwrap();
            for (other, crypto) in epochs.iter().enumerate() {
                assert_eq!(
                    crypto.verify_share(ReplicaId(0), message, &share),
                    other == epoch,
                    "wave {wave}: signed with epoch {epoch}'s share?"
                );
            }
        }
    }
}
