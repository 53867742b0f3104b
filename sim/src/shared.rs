//! Real threshold BLS for the simulated replicas, with the verification work
//! shared among them.
//!
//! In a cluster every replica checks the same group signatures (each wave's
//! coin, each tree head) and often the same shares; in one simulator process
//! that is the same pairing computed `n` times. Verifying, combining and
//! checking are pure functions of their inputs and the cluster's public key
//! set, so [`SharedCrypto`] remembers each answer for the run and gives it to
//! the next replica that asks the same question. Every replica still calls
//! the crypto exactly as the node does and gets exactly the answer it would
//! have computed — an invalid share or signature is remembered as invalid —
//! so no run changes, only its wall time. Signing is never shared: each
//! replica signs with its own secret share.

use belfry_replica::coin::{
    sha3, CryptoError, GroupSignature, ReplicaId, SignatureShare, ThresholdCrypto,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Beyond this many remembered answers of one kind, the memory starts over
/// (a question is asked by the `n` replicas within a few rounds, so only
/// recent answers are ever reused).
const MAX_REMEMBERED: usize = 1 << 16;

type MessageKey = [u8; 32];
type Shares = Vec<(u16, [u8; 96])>;

/// What has been verified so far in this run, shared by every replica's
/// [`SharedCrypto`].
#[derive(Debug, Default)]
pub struct Verifications {
    groups: BTreeMap<(MessageKey, [u8; 96]), bool>,
    shares: BTreeMap<(u16, MessageKey, [u8; 96]), bool>,
    combined: BTreeMap<(MessageKey, Shares), Result<GroupSignature, CryptoError>>,
    /// Answers given from memory rather than computed.
    pub reused: u64,
    /// Answers computed.
    pub computed: u64,
}

fn remember<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_REMEMBERED {
        map.clear();
    }
    map.insert(key, value);
}

/// One replica's crypto: its own instance for signing, the run's shared
/// memory for everything else.
pub struct SharedCrypto {
    inner: Arc<dyn ThresholdCrypto>,
    memory: Arc<Mutex<Verifications>>,
}

impl fmt::Debug for SharedCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCrypto")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl SharedCrypto {
    /// Wraps one replica's crypto; every replica of a run gets the same
    /// `memory`.
    pub fn new(inner: Arc<dyn ThresholdCrypto>, memory: Arc<Mutex<Verifications>>) -> Self {
        SharedCrypto { inner, memory }
    }

    fn memory(&self) -> MutexGuard<'_, Verifications> {
        // The simulator is single-threaded; a poisoned lock can only follow
        // a panic that already ended the run, and its data is still sound.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ThresholdCrypto for SharedCrypto {
    fn n(&self) -> usize {
        self.inner.n()
    }

    fn f(&self) -> usize {
        self.inner.f()
    }

    fn sign_share(&self, message: &[u8]) -> Result<SignatureShare, CryptoError> {
        self.inner.sign_share(message)
    }

    fn verify_share(&self, from: ReplicaId, message: &[u8], share: &SignatureShare) -> bool {
        let key = (from.0, sha3(&[message]), share.0);
        let known = self.memory().shares.get(&key).copied();
        if let Some(ok) = known {
            self.memory().reused += 1;
            return ok;
        }
        let ok = self.inner.verify_share(from, message, share);
        let mut m = self.memory();
        m.computed += 1;
        remember(&mut m.shares, key, ok);
        ok
    }

    fn combine(
        &self,
        message: &[u8],
        shares: &[(ReplicaId, SignatureShare)],
    ) -> Result<GroupSignature, CryptoError> {
        let key = (
            sha3(&[message]),
            shares.iter().map(|(id, s)| (id.0, s.0)).collect::<Shares>(),
        );
        let known = self.memory().combined.get(&key).cloned();
        if let Some(r) = known {
            self.memory().reused += 1;
            return r;
        }
        let r = self.inner.combine(message, shares);
        let mut m = self.memory();
        m.computed += 1;
        remember(&mut m.combined, key, r.clone());
        r
    }

    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool {
        let key = (sha3(&[message]), signature.0);
        let known = self.memory().groups.get(&key).copied();
        if let Some(ok) = known {
            self.memory().reused += 1;
            return ok;
        }
        let ok = self.inner.verify_group(message, signature);
        let mut m = self.memory();
        m.computed += 1;
        remember(&mut m.groups, key, ok);
        ok
    }
}
