//! The aggregated-receipt vectors of `testdata/vectors/aggregated.json`
//! (computed by an independent Python implementation, `aggregated.py`):
//! belfry reads both forms of every positive case into the same receipt,
//! writes them back byte for byte, and verifies them with the figures the
//! vectors state; `belfry verify` names the expected check for every
//! negative case, in each form the case comes in.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use belfry_replica::coin::TrustAnchor;
use belfry_replica::timestamp::{verify_aggregated, AnyReceipt, Entry};
use procs::{belfry, code, stdout};
use serde_json::Value;

const VECTORS: &str = include_str!("../../../testdata/vectors/aggregated.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

/// `belfry verify --json` of one receipt file (against a document digest,
/// or alone): its JSON line.
fn verify(dir: &std::path::Path, name: &str, bytes: &[u8], anchor: &str, digest: &Value) -> Value {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let mut args = vec![
        "verify",
        "--anchor",
        anchor,
        "--json",
        "--receipt",
        path.to_str().unwrap(),
    ];
    if let Some(d) = digest.as_str() {
        args.extend(["--digest", d]);
    }
    let out = belfry(&args);
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let ok = v["ok"].as_bool().unwrap();
    assert_eq!(code(&out), if ok { 0 } else { 1 }, "{name}: {v}");
    v
}

fn forms(case: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    if let Some(j) = case.get("json").filter(|j| !j.is_null()) {
        out.push(("json", j.to_string().into_bytes()));
    }
    if let Some(b) = case.get("binary_hex").and_then(Value::as_str) {
        out.push(("binary", hex::decode(b).unwrap()));
    }
    assert!(
        !out.is_empty(),
        "a case without a receipt: {}",
        case["name"]
    );
    out
}

#[test]
fn positive_vectors_round_trip_and_verify_with_the_stated_figures() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let cases = v["positive"].as_array().unwrap();
    assert!(cases.len() >= 3);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let anchor_text = case["trust_anchor"].as_str().unwrap();
        let anchor: TrustAnchor = anchor_text.parse().unwrap();
        let expect = &case["expect"];
        let binary = hex::decode(case["binary_hex"].as_str().unwrap()).unwrap();
        let from_binary = AnyReceipt::from_binary(&binary).unwrap();
        let from_json = AnyReceipt::from_json_str(&case["json"].to_string()).unwrap();
        assert_eq!(from_binary, from_json, "{name}: both forms are one receipt");
        assert_eq!(
            from_json.to_binary(),
            binary,
            "{name}: written back exactly"
        );
        assert_eq!(from_binary.to_json_value(), case["json"], "{name}: JSON");
        let AnyReceipt::Aggregated(a) = &from_binary else {
            panic!("{name}: not a version-2 receipt");
        };
        let verified = verify_aggregated(a, &anchor).unwrap();
        assert_eq!(
            hex::encode(verified.digest),
            expect["digest"].as_str().unwrap()
        );
        assert_eq!(
            hex::encode(verified.logged),
            expect["logged_digest"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            a.steps.len() as u64,
            expect["gateway_layers"].as_u64().unwrap()
        );
        assert_eq!(
            verified.cluster.leaf_index,
            expect["leaf_index"].as_u64().unwrap()
        );
        assert_eq!(
            verified.cluster.tree_size,
            expect["tree_size"].as_u64().unwrap()
        );
        assert_eq!(verified.cluster.time.0, expect["time"].as_u64().unwrap());
        assert!(
            matches!(verified.cluster.entry, Entry::Digest(d) if hex::encode(d.digest) == expect["logged_digest"].as_str().unwrap())
        );
        for (form, bytes) in forms(case) {
            let out = verify(
                dir.path(),
                &format!("{name}.{form}"),
                &bytes,
                anchor_text,
                &case["document_digest"],
            );
            assert_eq!(out["ok"], true, "{name} ({form}): {out}");
            assert_eq!(out["gateway_layers"], expect["gateway_layers"], "{name}");
            assert_eq!(out["time"], expect["time"], "{name}");
            assert_eq!(out["time_utc"], expect["time_utc"], "{name}");
        }
    }
}

#[test]
fn negative_vectors_fail_with_the_expected_check_named() {
    let v = vectors();
    let dir = tempfile::tempdir().unwrap();
    let cases = v["negative"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expected = case["expected_check"].as_str().unwrap();
        for (form, bytes) in forms(case) {
            let out = verify(
                dir.path(),
                &format!("{name}.{form}"),
                &bytes,
                case["trust_anchor"].as_str().unwrap(),
                &case["document_digest"],
            );
            assert_eq!(out["ok"], false, "{name} ({form}) verified: {out}");
            assert_eq!(
                out["check_failed"].as_str(),
                Some(expected),
                "{name} ({form}): {out}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "{checked} negative receipts");
}
