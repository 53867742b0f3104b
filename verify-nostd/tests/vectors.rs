//! Every binary receipt among the committed vectors verifies, or fails at
//! the check the vector names, with belfry's verdict.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_verify_nostd::{verify, Check, Expected, Failure, Micros, TrustAnchor, Verified};
use common::*;

fn expect_ok(bytes: &[u8], anchor: &TrustAnchor, digest: Option<&[u8; 32]>) -> Verified {
    let expected = Expected {
        anchor,
        digest,
        cluster_id: None,
    };
    verify(bytes, &expected).expect("the vector verifies")
}

#[test]
fn the_committed_receipt_verifies_with_its_time_size_and_index() {
    let v = json(RECEIPT);
    let bytes = unhex(&v["binary_hex"]);
    let a = anchor(v["trust_anchor"].as_str().unwrap());
    let d = digest(&v["json"]["entry"]["digest"]).unwrap();
    for given in [None, Some(&d)] {
        let got = expect_ok(&bytes, &a, given);
        assert_eq!(
            got,
            Verified {
                time: Micros(v["json"]["time"].as_u64().unwrap()),
                tree_size: 20,
                leaf_index: 17,
                digest: Some(d),
                gateway_layers: 0,
            }
        );
    }
    let other = [0x55; 32];
    let expected = Expected {
        anchor: &a,
        digest: Some(&other),
        cluster_id: None,
    };
    assert_eq!(verify(&bytes, &expected), Err(Failure::DigestMismatch));
}

#[test]
fn a_known_cluster_id_is_checked_after_the_anchor() {
    let v = json(RECEIPT);
    let bytes = unhex(&v["binary_hex"]);
    let a = anchor(v["trust_anchor"].as_str().unwrap());
    let id: [u8; 32] = unhex(&v["json"]["cluster_id"]).try_into().unwrap();
    let mut expected = Expected {
        anchor: &a,
        digest: None,
        cluster_id: Some(&id),
    };
    assert_eq!(verify(&bytes, &expected).map(|v| v.leaf_index), Ok(17));
    let mut other = id;
    other[0] ^= 1;
    expected.cluster_id = Some(&other);
    assert_eq!(verify(&bytes, &expected), Err(Failure::ClusterIdMismatch));
    // n changed (offset 4 + 1 + 48): the receipt's id is no longer the cluster's.
    let mut changed = bytes.clone();
    changed[53] ^= 1;
    expected.cluster_id = Some(&id);
    assert_eq!(
        verify(&changed, &expected).map_err(|f| f.check()),
        Err(Check::ClusterId)
    );
}

#[test]
fn receipts_of_tick_entries_verify_and_are_no_digest() {
    let v = json(RECEIPT);
    let a = anchor(v["trust_anchor"].as_str().unwrap());
    let merkle = json(MERKLE);
    let entries = merkle["entries"].as_array().unwrap();
    let mut ticks = 0;
    for (i, e) in entries.iter().enumerate() {
        let bytes = receipt_of_entry(i as u64);
        let got = expect_ok(&bytes, &a, None);
        assert_eq!((got.leaf_index, got.tree_size), (i as u64, 20));
        if e["kind"] == "tick" {
            ticks += 1;
            assert_eq!(got.digest, None);
            let any = [0u8; 32];
            let expected = Expected {
                anchor: &a,
                digest: Some(&any),
                cluster_id: None,
            };
            assert_eq!(verify(&bytes, &expected), Err(Failure::TickEntry));
        } else {
            assert_eq!(got.digest, digest(&e["digest"]));
        }
    }
    assert!(ticks > 0, "the vector has tick entries");
}

#[test]
fn every_positive_aggregated_vector_verifies_as_expected() {
    let v = json(AGGREGATED);
    for case in v["positive"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let bytes = unhex(&case["binary_hex"]);
        let anchor_text = case["trust_anchor"].as_str().unwrap();
        let a = anchor(anchor_text);
        let d = digest(&case["document_digest"]);
        let got = expect_ok(&bytes, &a, d.as_ref());
        let e = &case["expect"];
        assert_eq!(
            (
                got.time.0,
                got.tree_size,
                got.leaf_index,
                u64::from(got.gateway_layers)
            ),
            (
                e["time"].as_u64().unwrap(),
                e["tree_size"].as_u64().unwrap(),
                e["leaf_index"].as_u64().unwrap(),
                e["gateway_layers"].as_u64().unwrap()
            ),
            "{name}"
        );
        assert_eq!(got.digest, digest(&e["digest"]), "{name}");
        assert_eq!(
            reference(&bytes, anchor_text, d.as_ref()),
            ours(&bytes, &a, d.as_ref()),
            "{name}"
        );
    }
}

#[test]
fn every_negative_aggregated_vector_fails_at_its_check() {
    let v = json(AGGREGATED);
    let mut binary = 0;
    for case in v["negative"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Some(hex) = case.get("binary_hex").filter(|h| !h.is_null()) else {
            continue;
        };
        binary += 1;
        let bytes = unhex(hex);
        let anchor_text = case["trust_anchor"].as_str().unwrap();
        let a = anchor(anchor_text);
        let d = digest(&case["document_digest"]);
        let want = case["expected_check"].as_str().unwrap();
        assert_eq!(ours(&bytes, &a, d.as_ref()).failed(), Some(want), "{name}");
        assert_eq!(
            reference(&bytes, anchor_text, d.as_ref()).failed(),
            Some(want),
            "{name}"
        );
    }
    assert!(binary >= 20, "{binary} binary negative vectors");
}

#[test]
fn anchors_read_only_as_belfry1_and_a_valid_key() {
    let v = json(RECEIPT);
    let text = v["trust_anchor"].as_str().unwrap();
    let a = anchor(text);
    assert_eq!(format!("{a:?}"), text);
    assert!(TrustAnchor::parse(&text.to_uppercase().replace("BELFRY1", "belfry1")).is_ok());
    assert!(TrustAnchor::parse(&text[8..]).is_err());
    assert!(TrustAnchor::parse(&text[..text.len() - 2]).is_err());
    let mut infinity = [0u8; 48];
    infinity[0] = 0xc0;
    assert!(TrustAnchor::from_bytes(infinity).is_err());
    // x = 0x1fff…ff is not below the field's modulus.
    let mut not_a_point = [0xff; 48];
    not_a_point[0] = 0x9f;
    assert!(TrustAnchor::from_bytes(not_a_point).is_err());
}
