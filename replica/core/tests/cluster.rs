//! Four `ReplicaCore`s on the in-process network with real threshold BLS:
//! clients send 10,000 digests to all replicas; every replica ends with the
//! same log and the same signed tree heads, and every receipt verifies with
//! only the group public key.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::{verify_consistency, verify_receipt, Entry, Receipt};
use belfry_replica::wire::{
    self, ClientError, ClientMessage, ClientPush, ClientRequest, ClientResponse,
};
use belfry_replica::{CoreInput, CoreStepExt};
use belfry_world::LocalCluster;
use common::GENESIS;
use std::collections::BTreeSet;

fn digests(k: u64) -> Vec<[u8; 32]> {
    common::digests("cluster test", 0, k)
}

fn stamp(c: &mut LocalCluster, ds: &[[u8; 32]]) {
    for chunk in ds.chunks(4_096) {
        c.request_all(7, &ClientRequest::Submit(chunk.to_vec()));
    }
    let until = c.now().saturating_add(Micros::from_secs(60));
    c.run_until(until, |c| {
        (0..c.len()).filter_map(|i| c.core(i)).all(|core| {
            let signed = core.signed_size();
            ds.iter()
                .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
        })
    });
}

#[test]
fn ten_thousand_digests_one_log_one_set_of_heads_every_receipt_verifies() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 3).unwrap();
    let ds = digests(10_000);
    stamp(&mut c, &ds);
    let anchor = c.anchor();
    let cores: Vec<_> = (0..c.len()).filter_map(|i| c.core(i)).collect();
    let log0 = cores[0].log();
    let heads0 = cores[0].heads();
    for core in &cores[1..] {
        let log = core.log();
        let k = log0.len().min(log.len());
        assert_eq!(log0[..k], log[..k]);
        for (size, head) in core.heads() {
            if let Some(h) = heads0.get(&size) {
                assert_eq!(*h, head, "heads at size {size} differ");
            }
        }
    }
    // No digest twice, and every one of them logged.
    let logged: Vec<[u8; 32]> = log0
        .iter()
        .filter_map(|e| match e {
            Entry::Digest(d) => Some(d.digest),
            _ => None,
        })
        .collect();
    let unique: BTreeSet<_> = logged.iter().collect();
    assert_eq!(unique.len(), logged.len());
    assert!(ds.iter().all(|d| unique.contains(d)));
    // Every replica hands out the very same receipt bytes for every digest...
    let receipts: Vec<Vec<u8>> = ds
        .iter()
        .map(|d| cores[0].receipt(d).unwrap().to_binary())
        .collect();
    for core in &cores[1..] {
        for (d, r) in ds.iter().zip(&receipts) {
            assert_eq!(&core.receipt(d).unwrap().to_binary(), r);
        }
    }
    // ...and every one of them verifies against the anchor alone (a pairing
    // each: split over both cores).
    std::thread::scope(|s| {
        for part in receipts.chunks(receipts.len().div_ceil(2)) {
            s.spawn(move || {
                for bytes in part {
                    verify_receipt(&Receipt::from_binary(bytes).unwrap(), &anchor).unwrap();
                }
            });
        }
    });
    // Signed heads are consistent with each other.
    let heads: Vec<_> = cores[0].heads().values().copied().collect();
    assert!(heads.len() >= 2);
    for pair in heads.windows(2) {
        let (a, b) = (pair[0].head, pair[1].head);
        assert!(b.time >= a.time, "tick times are monotone");
        let resp = query(
            &mut c,
            0,
            ClientRequest::Consistency(a.tree_size, b.tree_size),
        );
        let ClientResponse::Consistency(proof) = resp else {
            panic!("{resp:?}")
        };
        assert!(verify_consistency(
            a.tree_size,
            b.tree_size,
            &a.root,
            &b.root,
            &proof
        ));
    }
}

fn query(c: &mut LocalCluster, node: usize, req: ClientRequest) -> ClientResponse {
    query_all(c, node, req).0
}

/// The answer to a request and the pushes its step made.
fn query_all(
    c: &mut LocalCluster,
    node: usize,
    req: ClientRequest,
) -> (ClientResponse, Vec<ClientPush>) {
    let _ = c.take_responses();
    c.input(
        node,
        CoreInput::Client {
            client: 99,
            frame: wire::encode(&req).unwrap(),
        },
    );
    let (mut answer, mut pushes) = (None, Vec::new());
    for (_, client, m) in c.take_responses() {
        match m {
            ClientMessage::Answer { id: 0, response } if client == 99 => answer = Some(response),
            ClientMessage::Push { id: 0, push } if client == 99 => pushes.push(push),
            _ => {}
        }
    }
    (answer.unwrap(), pushes)
}

#[test]
fn clients_get_acks_receipts_backpressure_and_clear_errors() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 4).unwrap();
    let ds = digests(20);
    stamp(&mut c, &ds);
    let anchor = c.anchor();
    // A resubmission gets the existing position, not a second entry.
    let (resp, pushes) = query_all(&mut c, 1, ClientRequest::Submit(vec![ds[3]]));
    assert_eq!(
        resp,
        ClientResponse::Accepted {
            accepted: 0,
            duplicates: 1
        }
    );
    assert!(
        matches!(&pushes[0], ClientPush::Ordered(o) if o[0].0 == ds[3]),
        "{pushes:?}"
    );
    // ... and, already signed, its receipt under the latest head.
    assert!(
        matches!(&pushes[1], ClientPush::Signed(b) if b.items.len() == 1 && b.head.is_some()),
        "{pushes:?}"
    );
    let before = c.core(1).unwrap().log().len();
    c.run_until(c.now().saturating_add(Micros::from_millis(200)), |_| false);
    let log = c.core(1).unwrap().log();
    assert_eq!(
        log.iter()
            .filter(|e| matches!(e, Entry::Digest(d) if d.digest == ds[3]))
            .count(),
        1
    );
    assert!(log.len() >= before);
    // Receipts through the client API verify.
    let ClientResponse::Receipt(bytes) = query(&mut c, 2, ClientRequest::Receipt(ds[5])) else {
        panic!()
    };
    verify_receipt(&Receipt::from_binary(&bytes).unwrap(), &anchor).unwrap();
    let ClientResponse::Entries { from, entries } = query(&mut c, 2, ClientRequest::Entries(0, 3))
    else {
        panic!()
    };
    assert_eq!(
        (from, entries.as_slice()),
        (0, &c.core(2).unwrap().log()[..3])
    );
    assert_eq!(
        query(&mut c, 2, ClientRequest::Receipt([0xab; 32])),
        ClientResponse::Error(ClientError::UnknownDigest)
    );
    // Too many digests in one request, and garbage frames, are clear errors.
    let resp = query(&mut c, 0, ClientRequest::Submit(vec![[1; 32]; 4_097]));
    assert!(matches!(resp, ClientResponse::Error(_)));
    let _ = c.take_responses();
    c.input(
        0,
        CoreInput::Client {
            client: 5,
            frame: vec![1, 0, 0, 0, 9, 1, 2],
        },
    );
    let r = c.take_responses();
    assert!(
        matches!(
            &r[..],
            [(
                0,
                5,
                ClientMessage::Answer {
                    response: ClientResponse::Error(ClientError::BadRequest(_)),
                    ..
                }
            )]
        ),
        "{r:?}"
    );
    assert!(!c.faults[0].is_empty());
    // A peer sending garbage is a fault, not a crash.
    c.input(
        1,
        CoreInput::Peer {
            from: belfry_replica::coin::ReplicaId(2),
            frame: vec![0xff; 40],
        },
    );
    assert!(!c.faults[1].is_empty());
}

#[test]
fn pending_digests_beyond_the_limit_get_backpressure() {
    use belfry_replica::coin::{deal, BlsCrypto, ClusterParams, ReplicaId, ThresholdCrypto};
    use belfry_replica::{ReplicaConfig, ReplicaCore};
    use rand::SeedableRng;
    use std::sync::Arc;
    let (public, secrets) = deal(4, 1, &mut rand_chacha::ChaCha20Rng::seed_from_u64(9)).unwrap();
    let public = Arc::new(public);
    let cluster = ClusterParams::of_keys(&public, Policy::Lamport, GENESIS);
    let mut config = ReplicaConfig::new(ReplicaId(0), cluster);
    config.max_pending_digests = 10;
    let crypto: Arc<dyn ThresholdCrypto> = Arc::new(BlsCrypto::new(public, secrets[0].clone()));
    let mut core = ReplicaCore::new(config, crypto);
    let submit = |core: &mut ReplicaCore, ds: Vec<[u8; 32]>| {
        let step = core.handle(
            GENESIS,
            CoreInput::Client {
                client: 1,
                frame: wire::encode(&ClientRequest::Submit(ds)).unwrap(),
            },
        );
        let response = step
            .to_clients()
            .map(|(_, f)| wire::decode_message(f).unwrap())
            .find_map(|m| match m {
                ClientMessage::Answer { response, .. } => Some(response),
                ClientMessage::Push { .. } => None,
            })
            .unwrap();
        response
    };
    assert_eq!(
        submit(&mut core, digests(8)),
        ClientResponse::Accepted {
            accepted: 8,
            duplicates: 0
        }
    );
    assert_eq!(
        submit(&mut core, digests(8)),
        ClientResponse::Accepted {
            accepted: 0,
            duplicates: 8
        }
    );
    assert_eq!(
        submit(&mut core, digests(20)),
        ClientResponse::Error(ClientError::Backpressure {
            pending: 10,
            taken: 10
        })
    );
    assert_eq!(
        core.pending_len(),
        10,
        "memory bounded by max_pending_digests"
    );
}

/// A client's disconnect reaches the core, which forgets what it waited on
/// and subscribed to; a client gets no more than its outstanding limit.
#[test]
fn a_gone_client_is_forgotten_and_each_client_is_limited() {
    use belfry_replica::coin::{deal, BlsCrypto, ClusterParams, ReplicaId, ThresholdCrypto};
    use belfry_replica::{ReplicaConfig, ReplicaCore};
    use rand::SeedableRng;
    use std::sync::Arc;
    let (public, secrets) = deal(4, 1, &mut rand_chacha::ChaCha20Rng::seed_from_u64(9)).unwrap();
    let public = Arc::new(public);
    let cluster = ClusterParams::of_keys(&public, Policy::Lamport, GENESIS);
    let mut config = ReplicaConfig::new(ReplicaId(0), cluster);
    config.max_outstanding_per_client = 5;
    let crypto: Arc<dyn ThresholdCrypto> = Arc::new(BlsCrypto::new(public, secrets[0].clone()));
    let mut core = ReplicaCore::new(config, crypto);
    let ask = |core: &mut ReplicaCore, client: u64, request: ClientRequest| {
        let frame = wire::encode_call(&wire::ClientCall { id: 42, request }).unwrap();
        let step = core.handle(GENESIS, CoreInput::Client { client, frame });
        let response = step
            .to_clients()
            .map(|(_, f)| wire::decode_message(f).unwrap())
            .find_map(|m| match m {
                ClientMessage::Answer { id: 42, response } => Some(response),
                _ => None,
            })
            .unwrap();
        response
    };
    assert_eq!(
        ask(&mut core, 1, ClientRequest::Submit(digests(8))),
        ClientResponse::Error(ClientError::ClientLimit {
            outstanding: 5,
            limit: 5,
            taken: 5
        })
    );
    // Another client waits on the same digests (within its own limit).
    assert_eq!(
        ask(&mut core, 2, ClientRequest::Submit(digests(3))),
        ClientResponse::Accepted {
            accepted: 0,
            duplicates: 3
        }
    );
    let _ = ask(&mut core, 1, ClientRequest::Subscribe(0));
    let _ = ask(&mut core, 1, ClientRequest::SignedHeads);
    assert_eq!(core.client_load(), (2, 8));
    let _ = core.handle(GENESIS, CoreInput::ClientGone(1));
    assert_eq!(core.client_load(), (1, 3));
    let _ = core.handle(GENESIS, CoreInput::ClientGone(2));
    assert_eq!(core.client_load(), (0, 0));
    // The digests stay pending: a client leaving withdraws nothing.
    assert_eq!(core.pending_len(), 5);
}
