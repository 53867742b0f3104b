//! A cluster whose shares were refreshed (docs/keys.md §8) switches at the
//! agreed wave: coin and head shares of earlier waves are made and checked
//! with the previous shares, later ones with the new. A replica that signs
//! past the switch with its stale share is caught by the others — and only
//! past the switch; one whose shares are right is never blamed.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::broadcast::FaultKind;
use belfry_replica::coin::dkg::{
    qualify, Deal, DecryptionKey, EncryptionKey, Params, Transcript, Verification,
};
use belfry_replica::coin::{
    deal, BlsCrypto, ClusterParams, Policy, PublicKeys, RefreshedCrypto, ReplicaId, SecretShare,
    ThresholdCrypto, Wave,
};
use belfry_replica::timestamp::Entry;
use belfry_replica::{CoreFault, ReplicaConfig};
use belfry_world::LocalCluster;
use common::GENESIS;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A dealt key, and a refresh of its shares by the DKG's zero-sharing.
fn refreshed(n: usize, f: usize) -> (PublicKeys, Vec<SecretShare>, PublicKeys, Vec<SecretShare>) {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let (old_public, old) = deal(n, f, &mut rng).unwrap();
    let params = Params::refresh(n, f).unwrap();
    let secrets: Vec<DecryptionKey> = (0..n).map(|_| DecryptionKey::generate(&mut rng)).collect();
    let keys: Vec<EncryptionKey> = secrets.iter().map(DecryptionKey::public).collect();
    let deals: BTreeMap<usize, (Deal, [u8; 32])> = (0..n)
        .map(|d| {
            let deal = Deal::new(params, d, &keys, &mut rng).unwrap();
            let hash = Deal::hash(&deal.to_bytes());
            (d, (deal, hash))
        })
        .collect();
    let transcript = Transcript {
        deals: deals.iter().map(|(&d, (x, _))| (d, x.to_bytes())).collect(),
        verifications: (0..n)
            .map(|j| {
                let (v, _) = Verification::make(params, j, &secrets[j], &keys, &deals, &mut rng);
                (j, v.to_bytes())
            })
            .collect(),
        equivocators: Default::default(),
    };
    let outcome = qualify(params, &keys, &transcript, Some(&old_public)).unwrap();
    let new: Vec<SecretShare> = (0..n)
        .map(|i| outcome.secret_share(i, &secrets[i], Some(&old[i])).unwrap())
        .collect();
    (old_public, old, outcome.public.clone(), new)
}

/// Runs a 4-replica cluster switching at `switch`; replica 3 keeps signing
/// with its old share after the switch when `stale`. Returns the cluster.
fn run(switch: Wave, stale: bool) -> LocalCluster {
    let (n, f) = (4, 1);
    let (old_public, old, new_public, new) = refreshed(n, f);
    assert_eq!(old_public.group_key(), new_public.group_key());
    let (old_public, new_public) = (Arc::new(old_public), Arc::new(new_public));
    let cluster = ClusterParams::of_keys(&new_public, Policy::Lamport, GENESIS);
    let crypto: Vec<Arc<dyn ThresholdCrypto>> = (0..n)
        .map(|i| {
            let previous = Arc::new(BlsCrypto::new(old_public.clone(), old[i].clone()));
            let share = if stale && i == 3 { &old[i] } else { &new[i] };
            let current = Arc::new(BlsCrypto::new(new_public.clone(), share.clone()));
            Arc::new(RefreshedCrypto::new(previous, current, switch)) as Arc<dyn ThresholdCrypto>
        })
        .collect();
    let configs = (0..n)
        .map(|i| ReplicaConfig::new(ReplicaId(i as u16), cluster))
        .collect();
    let mut c = LocalCluster::new(cluster, configs, crypto, 5);
    let until = c
        .now()
        .saturating_add(belfry_replica::clock::Micros::from_secs(60));
    c.run_until(until, |c| {
        (0..4).all(|i| {
            c.core(i)
                .is_some_and(|core| last_tick_wave(core) > switch.0 + 4)
        })
    });
    for i in 0..4 {
        let core = c.core(i).unwrap();
        assert!(
            last_tick_wave(core) > switch.0 + 4,
            "replica {i} did not pass the switch"
        );
        // Every head it holds carries the one group key's signature.
        for sth in core.heads().values() {
            let message = sth.head.message(cluster.cluster_id());
            assert!(new_public.group_key().verify(
                &belfry_replica::coin::SignedMessage::signing_bytes(&message),
                &sth.signature
            ));
        }
    }
    c
}

fn last_tick_wave(core: &belfry_replica::ReplicaCore) -> u64 {
    core.log()
        .iter()
        .rev()
        .find_map(|e| match e {
            Entry::Tick(t) => Some(t.wave),
            _ => None,
        })
        .unwrap_or(0)
}

/// The waves of the share faults each replica counted against replica 3
/// (coin shares carry their wave; a head share's wave is its Tick's).
fn waves_blamed_on_3(c: &LocalCluster) -> Vec<u64> {
    let mut waves = Vec::new();
    for i in 0..3 {
        let log = c.core(i).unwrap().log();
        for fault in &c.faults[i] {
            match fault {
                CoreFault::Broadcast(f) if f.replica == ReplicaId(3) => {
                    if let FaultKind::BadCoinShare { wave, .. } = f.kind {
                        waves.push(wave.0);
                    }
                }
                CoreFault::HeadShare {
                    replica: ReplicaId(3),
                    tree_size,
                    ..
                } => {
                    if let Some(Entry::Tick(t)) = log.get(*tree_size as usize - 1) {
                        waves.push(t.wave);
                    }
                }
                _ => {}
            }
        }
    }
    waves
}

#[test]
fn a_refreshed_cluster_switches_shares_at_the_agreed_wave() {
    let switch = Wave(6);
    let honest = run(switch, false);
    for i in 0..4 {
        assert!(
            honest.faults[i].is_empty(),
            "replica {i} counted faults in an honest refresh: {:?}",
            honest.faults[i]
        );
    }
    // A replica signing past the switch with its stale share is caught,
    // and only for waves from the switch on.
    let stale = run(switch, true);
    let waves = waves_blamed_on_3(&stale);
    assert!(!waves.is_empty(), "nobody caught the stale share");
    assert!(
        waves.iter().all(|&w| w >= switch.0),
        "blamed before the switch: {waves:?}"
    );
}
