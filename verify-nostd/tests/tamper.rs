//! Tampered receipts: every byte of real receipts flipped, every
//! truncation, a byte appended. This verifier and belfry's must agree on
//! each: both accept, or both reject naming the same check.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// A receipt to tamper with: its bytes, anchor and the digest it is for.
struct Case {
    name: String,
    bytes: Vec<u8>,
    anchor: String,
    digest: Option<[u8; 32]>,
}

fn cases() -> Vec<Case> {
    let r = json(RECEIPT);
    let anchor = r["trust_anchor"].as_str().unwrap().to_string();
    let mut cases = vec![Case {
        name: "receipt.json (digest entry)".into(),
        bytes: unhex(&r["binary_hex"]),
        anchor: anchor.clone(),
        digest: digest(&r["json"]["entry"]["digest"]),
    }];
    let merkle = json(MERKLE);
    let tick = merkle["entries"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["kind"] == "tick")
        .expect("a tick entry in the vector");
    cases.push(Case {
        name: format!("tick entry {tick}"),
        bytes: receipt_of_entry(tick as u64),
        anchor,
        digest: None,
    });
    let a = json(AGGREGATED);
    for p in a["positive"].as_array().unwrap().iter().take(2) {
        cases.push(Case {
            name: p["name"].as_str().unwrap().to_string(),
            bytes: unhex(&p["binary_hex"]),
            anchor: p["trust_anchor"].as_str().unwrap().to_string(),
            digest: digest(&p["document_digest"]),
        });
    }
    cases
}

/// Both verifiers on `bytes`, with and without the digest; returns the
/// verdict with it.
fn agree(case: &Case, bytes: &[u8], what: &str) -> Verdict {
    let a = anchor(&case.anchor);
    for d in [case.digest.as_ref(), None] {
        let (theirs, mine) = (reference(bytes, &case.anchor, d), ours(bytes, &a, d));
        assert_eq!(
            mine,
            theirs,
            "{}: {what}, digest given: {}",
            case.name,
            d.is_some()
        );
    }
    ours(bytes, &a, case.digest.as_ref())
}

#[test]
fn every_flipped_byte_gets_belfrys_verdict() {
    for case in cases() {
        assert!(matches!(
            agree(&case, &case.bytes, "as is"),
            Verdict::Ok(..)
        ));
        let mut failed = std::collections::BTreeMap::<&str, usize>::new();
        for at in 0..case.bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = case.bytes.clone();
                b[at] ^= mask;
                let verdict = agree(&case, &b, &format!("byte {at} ^ {mask:#04x}"));
                *failed.entry(verdict.failed().unwrap_or("ok")).or_default() += 1;
            }
        }
        eprintln!("{}: {failed:?}", case.name);
        for check in ["format", "entry", "inclusion_proof", "signature"] {
            assert!(
                failed.contains_key(check),
                "{}: no {check} failure",
                case.name
            );
        }
    }
}

#[test]
fn every_truncation_and_an_appended_byte_get_belfrys_verdict() {
    for case in cases() {
        for len in 0..case.bytes.len() {
            let verdict = agree(&case, &case.bytes[..len], &format!("first {len} bytes"));
            assert!(verdict.failed().is_some(), "{}: {len} bytes", case.name);
        }
        let mut longer = case.bytes.clone();
        longer.push(0);
        assert_eq!(
            agree(&case, &longer, "a byte appended"),
            Verdict::Failed("format")
        );
    }
}

/// The key's sign bit flipped: the negated key, a valid point that is not
/// the anchor.
#[test]
fn a_negated_key_fails_anchor_in_both() {
    for case in cases().into_iter().filter(|c| c.bytes[4] == 1) {
        let mut b = case.bytes.clone();
        b[5] ^= 0x20;
        assert_eq!(agree(&case, &b, "key negated"), Verdict::Failed("anchor"));
    }
}

#[test]
fn a_wrong_anchor_fails_anchor_in_both() {
    let a = json(AGGREGATED);
    let other = a["other_trust_anchor"].as_str().unwrap().to_string();
    for case in cases() {
        let wrong = Case {
            anchor: other.clone(),
            ..case
        };
        assert_eq!(
            agree(&wrong, &wrong.bytes, "other anchor"),
            Verdict::Failed("anchor")
        );
    }
}
