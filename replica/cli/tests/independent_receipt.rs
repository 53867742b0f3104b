//! Receipts from `belfry demo` (replicas over real QUIC in one process),
//! verified by an independent check (`hand/`) written from docs/design.md §3.7 alone: the fields are
//! read from the receipt's JSON text and from its `.belfry` bytes by hand;
//! cluster_id, the entry bytes, the leaf hash, the root from the inclusion
//! proof (RFC 9162 §2.1.3.2) and the STH message are rebuilt with `sha2`
//! directly; and the signature is checked with `blst`'s `min_pk` API under
//! the trust anchor. Nothing of belfry's own verification code is used, so a
//! bug there that also sits in the receipt writer cannot hide. The same
//! check of the in-process cluster's receipts is in
//! `world/tests/independent_receipt.rs` (the `belfry` binary's crate does not
//! depend on `belfry-world`, not even for its tests).

#![allow(clippy::unwrap_used)]

mod common;
mod hand;

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
