//! The simulator's shared verifications give every replica the answer its
//! own BLS instance would give, and compute each one once.

#![allow(clippy::unwrap_used)]

use belfry_replica::coin::{deal, BlsCrypto, ReplicaId, SignatureShare, ThresholdCrypto};
use belfry_sim::shared::{SharedCrypto, Verifications};
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

#[test]
fn shared_answers_equal_own_answers_and_are_computed_once() {
    let (n, f) = (4, 1);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let (public, secrets) = deal(n, f, &mut rng).unwrap();
    let public = Arc::new(public);
    let own: Vec<Arc<dyn ThresholdCrypto>> = secrets
        .into_iter()
        .map(|s| Arc::new(BlsCrypto::new(public.clone(), s)) as _)
        .collect();
    let memory = Arc::new(Mutex::new(Verifications::default()));
    let shared: Vec<SharedCrypto> = own
        .iter()
        .map(|c| SharedCrypto::new(c.clone(), memory.clone()))
        .collect();

    let message = b"belfry shared verification test";
    let s0 = shared[0].sign_share(message).unwrap();
    let s1 = shared[1].sign_share(message).unwrap();
    assert_eq!(
        s0,
        own[0].sign_share(message).unwrap(),
        "signing is each replica's own"
    );
    let shares = [(ReplicaId(0), s0), (ReplicaId(1), s1)];
    let group = shared[2].combine(message, &shares).unwrap();
    assert_eq!(group, own[2].combine(message, &shares).unwrap());
    let computed = memory.lock().unwrap().computed;
    for c in &shared {
        assert!(c.verify_group(message, &group));
        assert!(c.verify_share(ReplicaId(1), message, &s1));
        assert_eq!(c.combine(message, &shares).unwrap(), group);
    }
    let m = memory.lock().unwrap();
    // One group check and one share check computed; the rest remembered.
    assert_eq!(m.computed, computed + 2);
    assert_eq!(m.reused, 4 * 3 - 2);
    drop(m);

    // Wrong answers are remembered as wrong, per question: a share under the
    // wrong sender, a corrupted share, a signature on another message.
    let mut bad = s1.0;
    bad[5] ^= 1;
    let bad = SignatureShare(bad);
    for c in &shared {
        assert!(!c.verify_share(ReplicaId(2), message, &s1));
        assert!(!c.verify_share(ReplicaId(1), message, &bad));
        assert!(!c.verify_group(b"another message", &group));
        assert!(c.verify_share(ReplicaId(1), message, &s1));
    }
    let spoiled = shared[3].combine(message, &[(ReplicaId(0), s0), (ReplicaId(1), bad)]);
    assert_eq!(
        spoiled,
        own[3].combine(message, &[(ReplicaId(0), s0), (ReplicaId(1), bad)])
    );
    if let Ok(sig) = spoiled {
        assert!(!shared[0].verify_group(message, &sig));
    }
}
