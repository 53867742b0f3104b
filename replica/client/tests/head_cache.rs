//! The head cache: verifying N receipts under one signed head costs one
//! pairing (counted), however often they are verified; a forged head costs
//! a pairing and is refused; a bad hash path is refused without one. The
//! receipts built from a bundle verify with the standalone verifier too.

#![allow(clippy::unwrap_used)]

use belfry_client::{HeadCache, VerifyError};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{Policy, TrustAnchor};
use belfry_replica::timestamp::verify_receipt;
use belfry_replica::wire::{
    ClientMessage, ClientRequest, ClientResponse, ReceiptBundle, ReceiptItem,
};
use belfry_replica::CoreInput;
use belfry_world::LocalCluster;

const GENESIS: Micros = Micros(1_763_700_000_000_000);
const N: usize = 500;

fn bundle_of(n: usize) -> (LocalCluster, ReceiptBundle) {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 5).unwrap();
    let ds: Vec<[u8; 32]> = (0..n as u64)
        .map(|i| {
            let mut d = [7u8; 32];
            d[24..].copy_from_slice(&i.to_be_bytes());
            d
        })
        .collect();
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    let until = c.now().saturating_add(Micros::from_secs(60));
    c.run_until(until, |c| c.stamped(0, &ds));
    let _ = c.take_responses();
    let frame = belfry_replica::wire::encode(&ClientRequest::Receipts(ds)).unwrap();
    c.input(0, CoreInput::Client { client: 9, frame });
    let bundle = c
        .take_responses()
        .into_iter()
        .find_map(|(_, client, m)| match m {
            ClientMessage::Answer {
                response: ClientResponse::Receipts(b),
                ..
            } if client == 9 => Some(b),
            _ => None,
        })
        .unwrap();
    (c, bundle)
}

#[test]
fn n_receipts_under_one_head_cost_one_pairing() {
    let (c, bundle) = bundle_of(N);
    let anchor = TrustAnchor(c.cluster.group_public_key);
    let cache = HeadCache::new();
    assert!(bundle.head.is_some());
    assert_eq!(bundle.items.len(), N);

    let receipts = cache.verify_bundle(&c.cluster, &anchor, &bundle).unwrap();
    assert_eq!(receipts.len(), N);
    assert_eq!(cache.pairings(), 1, "one pairing for {N} receipts");
    // Each receipt again, one by one: the head is known, no new pairing.
    for r in &receipts {
        cache.verify_receipt(&anchor, r).unwrap();
    }
    assert_eq!(cache.pairings(), 1);
    // The standalone verifier agrees (it pays a pairing each; a few suffice).
    for r in receipts.iter().step_by(100) {
        verify_receipt(r, &anchor).unwrap();
    }

    // A forged signature costs one pairing and is refused.
    let mut forged = bundle.clone();
    if let Some(h) = forged.head.as_mut() {
        h.signature.0[5] ^= 1;
    }
    assert!(cache.verify_bundle(&c.cluster, &anchor, &forged).is_err());
    assert_eq!(cache.pairings(), 2);
    // A wrong hash path under the known head is refused without one.
    let mut bent = bundle.clone();
    if let Some(ReceiptItem::Included { proof, .. }) = bent.items.get_mut(3) {
        proof[0][0] ^= 1;
    }
    assert!(matches!(
        cache.verify_bundle(&c.cluster, &anchor, &bent),
        Err(VerifyError::BadProof(_))
    ));
    assert_eq!(cache.pairings(), 2);
    // Another anchor is another key: nothing verifies under it.
    let (other, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 6).unwrap();
    let wrong = TrustAnchor(other.cluster.group_public_key);
    assert!(cache.verify_bundle(&c.cluster, &wrong, &bundle).is_err());
}
