//! Receipts from `belfry demo` (replicas over real QUIC in one process) and
//! from the in-process simulated cluster, verified by
//! an independent check (`hand/`) written from docs/design.md §3.7 alone: the fields are
//! read from the receipt's JSON text and from its `.belfry` bytes by hand;
//! cluster_id, the entry bytes, the leaf hash, the root from the inclusion
//! proof (RFC 9162 §2.1.3.2) and the STH message are rebuilt with `sha2`
//! directly; and the signature is checked with `blst`'s `min_pk` API under
//! the trust anchor. Nothing of belfry's own verification code is used, so a
//! bug there that also sits in the receipt writer cannot hide.

#![allow(clippy::unwrap_used)]

mod common;
mod hand;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::local::LocalCluster;
use belfry_replica::timestamp::Entry;
use serde_json::Value;
use std::collections::BTreeSet;

use hand::*;

fn run_demo(args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_belfry"))
        .arg("demo")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "belfry demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_receipt_belfry_demo_prints_verifies_by_hand() {
    for (args, n, policy) in [
        (vec!["--digests", "12"], 4, 0u8),
        (
            vec![
                "--digests",
                "9",
                "--replicas",
                "7",
                "--policy",
                "clock",
                "--granularity-us",
                "250",
            ],
            7,
            1,
        ),
    ] {
        let demo = run_demo(&args);
        let anchor = demo["trust_anchor"].as_str().unwrap();
        let receipts = demo["receipts"].as_array().unwrap();
        let digests = num(&demo["digests"]);
        assert_eq!(receipts.len() as u64, digests);
        // One receipt per document the demo stamped, named as the demo names
        // them: the SHA-256 of "belfry demo document " || i (u64, big-endian).
        let documents: BTreeSet<[u8; 32]> = (0..digests)
            .map(|i| sha256(&[b"belfry demo document ", &i.to_be_bytes()]))
            .collect();
        let mut stamped = BTreeSet::new();
        for j in receipts {
            let r = from_json(j);
            assert_eq!((r.n, r.policy), (n, policy));
            assert_eq!(
                hex::encode(cluster_id(&r)),
                demo["cluster_id"].as_str().unwrap()
            );
            verify_by_hand(&r, anchor).unwrap();
            stamped.insert(unhex::<32>(&j["entry"]["digest"]));
        }
        assert_eq!(stamped, documents);
        assert_tampering_is_caught(&from_json(&receipts[0]), anchor);
    }
}

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
        let until = c.now.saturating_add(Micros::from_millis(7));
        c.run_until(until, |_| false);
    }
    let until = c.now.saturating_add(Micros::from_secs(60));
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
