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

    /// The remembered answer to `key` in the table `table` picks, or the
    /// one `compute` gives (then remembered). The lock is not held while
    /// computing.
    fn recall<K: Ord, V: Clone>(
        &self,
        table: fn(&mut Verifications) -> &mut BTreeMap<K, V>,
        key: K,
        compute: impl FnOnce() -> V,
    ) -> V {
        let known = table(&mut self.memory()).get(&key).cloned();
        if let Some(v) = known {
            self.memory().reused += 1;
            return v;
        }
        let v = compute();
        let mut m = self.memory();
        m.computed += 1;
        let t = table(&mut m);
        if t.len() >= MAX_REMEMBERED {
            t.clear();
        }
        t.insert(key, v.clone());
        v
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
        self.recall(
            |m| &mut m.shares,
            key,
            || self.inner.verify_share(from, message, share),
        )
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
        self.recall(
            |m| &mut m.combined,
            key,
            || self.inner.combine(message, shares),
        )
    }

    fn verify_group(&self, message: &[u8], signature: &GroupSignature) -> bool {
        let key = (sha3(&[message]), signature.0);
        self.recall(
            |m| &mut m.groups,
            key,
            || self.inner.verify_group(message, signature),
        )
    }

    // The simulator's keys are never refreshed (one key epoch): the cache
    // above is keyed by message, not by epoch.
    fn for_wave(&self, _wave: belfry_replica::coin::Wave) -> &dyn ThresholdCrypto {
        self
    }
}
