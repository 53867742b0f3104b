use crate::crypto::{CryptoError, GroupSignature, SignatureShare, ThresholdCrypto};
use crate::{sha3, ReplicaId};
use std::collections::BTreeSet;

/// A cheap stand-in for threshold BLS, for large simulations
/// (`belfry-sim --mock-crypto`): shares and group signatures are SHA3 expansions
/// of a cluster key, the replica id and the message. It is *not* secure — anyone
/// who knows the cluster key can forge — but it keeps every behaviour the
/// protocol relies on: shares verify only for their replica and message, `f`
/// shares cannot combine, an invalid share spoils the combined signature (so the
/// optimistic-combine fallback runs), and the group signature is unique per
/// message.
#[derive(Clone, Debug)]
pub struct MockCrypto {
    n: usize,
    f: usize,
    id: Option<ReplicaId>,
    key: [u8; 32],
}

impl MockCrypto {
    /// Replica `id`'s instance in a cluster keyed by `key`.
    pub fn new(n: usize, f: usize, id: ReplicaId, key: [u8; 32]) -> Self {
        MockCrypto {
            n,
            f,
            id: Some(id),
            key,
        }
    }

    /// A verifier-only instance.
    pub fn verifier(n: usize, f: usize, key: [u8; 32]) -> Self {
        MockCrypto {
            n,
            f,
            id: None,
            key,
        }
    }

    /// One SHA3 per value, widened to the 96 bytes of a BLS signature: the
    /// first 32 bytes decide equality, the rest are the same hash under fixed
    /// masks (a mock need not look random there, and the simulator signs and
    /// checks shares hundreds of times per simulated second).
    fn expand(&self, tag: &[u8], who: &[u8], message: &[u8]) -> [u8; 96] {
        let h = sha3(&[tag, &self.key, who, message]);
        let mut out = [0u8; 96];
        for (i, chunk) in out.chunks_mut(32).enumerate() {
            for (o, b) in chunk.iter_mut().zip(h.iter()) {
                *o = b ^ (0x5a * i as u8);
            }
        }
        out
    }

    fn share_for(&self, id: ReplicaId, message: &[u8]) -> SignatureShare {
        SignatureShare(self.expand(b"belfry-mock-share", &id.0.to_be_bytes(), message))
    }

    fn group_for(&self, message: &[u8]) -> GroupSignature {
        GroupSignature(self.expand(b"belfry-mock-group", &[], message))
    }
}

impl ThresholdCrypto for MockCrypto {
    fn n(&self) -> usize {
        self.n
    }

    fn f(&self) -> usize {
        self.f
    }

    fn sign_share(&self, message: &[u8]) -> Result<SignatureShare, CryptoError> {
        let id = self.id.ok_or(CryptoError::NoSecret)?;
        Ok(self.share_for(id, message))
    }

    fn verify_share(&self, from: ReplicaId, message: &[u8], share: &SignatureShare) -> bool {
        from.index() < self.n && self.share_for(from, message) == *share
    }

    fn combine(
        &self,
        message: &[u8],
        shares: &[(ReplicaId, SignatureShare)],
    ) -> Result<GroupSignature, CryptoError> {
        let needed = self.f + 1;
        let distinct: BTreeSet<ReplicaId> = shares.iter().map(|(id, _)| *id).collect();
        if distinct.len() < needed || distinct.len() != shares.len() {
            return Err(CryptoError::NotEnoughShares {
                needed,
                got: distinct.len(),
            });
        }
        if let Some((id, _)) = shares.iter().find(|(id, _)| id.index() >= self.n) {
            return Err(CryptoError::UnknownReplica(*id));
        }
        if shares
            .iter()
            .all(|(id, s)| self.verify_share(*id, message, s))
        {
            Ok(self.group_for(message))
        } else {
            // Like a real interpolation over a bad share: some value that does
            // not verify.
            let mut spoiled = [0u8; 96];
            for (_, s) in shares {
                for (o, b) in spoiled.iter_mut().zip(s.0.iter()) {
                    *o ^= b;
                }
            }
            spoiled[0] ^= 0xff;
            Ok(GroupSignature(spoiled))
        }
    }

    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool {
        self.group_for(message) == *signature
    }

    fn for_wave(&self, _wave: crate::Wave) -> &dyn ThresholdCrypto {
        self
    }
}
