//! The in-process cluster's receipts verified by the independent check of
//! `replica/cli/tests/hand/` (written from docs/design.md §3.7 alone, with
//! `sha2` and `blst` directly), in both their forms. It sits here, not with
//! the `belfry demo` check in `replica/cli/tests/independent_receipt.rs`,
//! so that the `belfry` binary's crate does not depend on `belfry-world`.

#![allow(clippy::unwrap_used)]

#[path = "../../replica/cli/tests/common/mod.rs"]
mod common;
#[path = "../../replica/cli/tests/hand/mod.rs"]
mod hand;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::Entry;
use belfry_world::LocalCluster;
use std::collections::BTreeSet;

use hand::*;

/// The cluster `belfry demo` runs, driven directly: a digest's receipt and a
/// Tick's, each read from both of its forms by hand — the forms hold the same
/// fields — and verified by hand.
#[test]
fn local_cluster_receipts_verify_by_hand_in_both_forms() {
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, common::GENESIS, 11).unwrap();
    let ds = common::digests("independent receipt", 0, 30);
    for chunk in ds.chunks(8) {
        c.request_all(
            3,
            &belfry_replica::wire::ClientRequest::Submit(chunk.to_vec()),
        );
        let until = c.now().saturating_add(Micros::from_millis(7));
        c.run_until(until, |_| false);
    }
    let until = c.now().saturating_add(Micros::from_secs(60));
    c.run_until(until, |c| {
        (0..c.len()).filter_map(|i| c.core(i)).all(|core| {
            let signed = core.signed_size();
            ds.iter()
                .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
        })
    });
    let anchor = c.anchor().to_string();
    let core = c.core(0).unwrap();
    let log = core.log();
    let tick = log
        .iter()
        .position(|e| matches!(e, Entry::Tick(_)))
        .unwrap() as u64;
    let mut checked = 0;
    for receipt in ds
        .iter()
        .map(|d| core.receipt(d).unwrap())
        .chain([core.receipt_at(tick).unwrap()])
    {
        let json = serde_json::to_value(receipt.to_json()).unwrap();
        let by_json = from_json(&json);
        let by_binary = from_binary(&receipt.to_binary());
        assert_eq!(by_json, by_binary);
        verify_by_hand(&by_json, &anchor).unwrap();
        // The signed head the replica holds for that size has that root.
        assert_eq!(core.heads()[&by_json.tree_size].head.root, by_json.root);
        assert_tampering_is_caught(&by_json, &anchor);
        checked += 1;
    }
    assert_eq!(checked, ds.len() + 1);
    // Receipts in more than one tree, with proofs that are not all of one shape.
    let sizes: BTreeSet<u64> = ds
        .iter()
        .map(|d| core.receipt(d).unwrap().tree_size)
        .collect();
    assert!(sizes.len() >= 2, "receipts under {sizes:?}");
}
