use crate::crypto::{CryptoError, GroupSignature, SignatureShare, ThresholdCrypto};
use crate::dealer::{PublicKeys, SecretShare};
use crate::ReplicaId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Threshold BLS through blsttc (on blst), IETF ciphersuite
/// `BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`.
#[derive(Clone, Debug)]
pub struct BlsCrypto {
    public: Arc<PublicKeys>,
    secret: Option<SecretShare>,
}

impl BlsCrypto {
    /// A replica's instance: it can sign its own shares.
    pub fn new(public: Arc<PublicKeys>, secret: SecretShare) -> Self {
        BlsCrypto {
            public,
            secret: Some(secret),
        }
    }

    /// A verifier-only instance.
    pub fn verifier(public: Arc<PublicKeys>) -> Self {
        BlsCrypto {
            public,
            secret: None,
        }
    }

    /// The public keys this instance verifies against.
    pub fn public(&self) -> &PublicKeys {
        &self.public
    }
}

impl ThresholdCrypto for BlsCrypto {
    fn n(&self) -> usize {
        self.public.n()
    }

    fn f(&self) -> usize {
        self.public.f()
    }

    fn sign_share(&self, message: &[u8]) -> Result<SignatureShare, CryptoError> {
        let secret = self.secret.as_ref().ok_or(CryptoError::NoSecret)?;
        Ok(SignatureShare(secret.inner().sign(message).to_bytes()))
    }

    fn verify_share(&self, from: ReplicaId, message: &[u8], share: &SignatureShare) -> bool {
        let Some(pk) = self.public.share(from) else {
            return false;
        };
        match blsttc::SignatureShare::from_bytes(share.0) {
            Ok(s) => pk.verify(&s, message),
            Err(_) => false,
        }
    }

    fn combine(
        &self,
        _message: &[u8],
        shares: &[(ReplicaId, SignatureShare)],
    ) -> Result<GroupSignature, CryptoError> {
        let needed = self.f() + 1;
        let distinct: BTreeSet<ReplicaId> = shares.iter().map(|(id, _)| *id).collect();
        if distinct.len() < needed || distinct.len() != shares.len() {
            return Err(CryptoError::NotEnoughShares {
                needed,
                got: distinct.len(),
            });
        }
        let mut decoded = Vec::with_capacity(shares.len());
        for (id, share) in shares {
            if id.index() >= self.n() {
                return Err(CryptoError::UnknownReplica(*id));
            }
            let s = blsttc::SignatureShare::from_bytes(share.0)
                .map_err(|_| CryptoError::MalformedShare(*id))?;
            decoded.push((id.index(), s));
        }
        let sig = self
            .public
            .set()
            .combine_signatures(decoded.iter().map(|(i, s)| (*i, s)))
            .map_err(|_| CryptoError::NotEnoughShares {
                needed,
                got: shares.len(),
            })?;
        Ok(GroupSignature(sig.to_bytes()))
    }

    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool {
        self.public.group_key().verify(message, signature)
    }

    fn for_wave(&self, _wave: crate::Wave) -> &dyn ThresholdCrypto {
        self
    }
}
