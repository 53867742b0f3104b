//! `testdata/vectors/merkle_sha3.json` and `receipt.json` (from an independent
//! implementation) reproduced byte for byte.

#![allow(clippy::unwrap_used)]

use belfry_timestamp::coin::TrustAnchor;
use belfry_timestamp::{
    empty_root, verify_consistency, verify_inclusion, verify_receipt, Entry, MerkleTree, Receipt,
    ReceiptJson,
};
use serde_json::Value;

const MERKLE: &str = include_str!("../../testdata/vectors/merkle_sha3.json");
const RECEIPT: &str = include_str!("../../testdata/vectors/receipt.json");

fn h(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn proof(v: &Value) -> Vec<[u8; 32]> {
    v.as_array().unwrap().iter().map(h).collect()
}

fn tree() -> (Value, MerkleTree) {
    let v: Value = serde_json::from_str(MERKLE).unwrap();
    let mut t = MerkleTree::new();
    for e in v["entries"].as_array().unwrap() {
        let bytes = hex::decode(e["bytes"].as_str().unwrap()).unwrap();
        t.push(belfry_timestamp::leaf_hash(&bytes));
    }
    (v, t)
}

#[test]
fn entries_encode_to_the_vector_bytes_and_leaf_hashes() {
    let v: Value = serde_json::from_str(MERKLE).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 20);
    let mut ticks = 0;
    for e in entries {
        // The JSON fields (minus the expected bytes/hash) parse as an entry...
        let mut fields = e.clone();
        let obj = fields.as_object_mut().unwrap();
        let bytes = obj.remove("bytes").unwrap();
        let leaf = obj.remove("leaf_hash").unwrap();
        let entry: Entry = serde_json::from_value(fields).unwrap();
        ticks += usize::from(matches!(entry, Entry::Tick(_)));
        // ...encode to exactly the vector's bytes, and hash to its leaf.
        assert_eq!(hex::encode(entry.to_bytes()), bytes.as_str().unwrap());
        assert_eq!(entry.leaf_hash(), h(&leaf));
        assert_eq!(Entry::from_bytes(&entry.to_bytes()).unwrap(), entry);
    }
    assert!(ticks > 0, "the vectors include tick entries");
}

#[test]
fn roots_of_every_prefix_match_the_vectors() {
    let (v, t) = tree();
    for r in v["trees"].as_array().unwrap() {
        let size = r["size"].as_u64().unwrap();
        assert_eq!(t.root_at(size).unwrap(), h(&r["root"]), "size {size}");
    }
    assert_eq!(t.root_at(0).unwrap(), empty_root());
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let (v, t) = tree();
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 210);
    for c in cases {
        let (index, size) = (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap());
        let expected = proof(&c["proof"]);
        assert_eq!(
            t.inclusion_proof(index, size).unwrap(),
            expected,
            "PATH({index}, {size})"
        );
        let root = t.root_at(size).unwrap();
        assert!(verify_inclusion(
            &t.leaf(index).unwrap(),
            index,
            size,
            &expected,
            &root
        ));
    }
}

#[test]
fn consistency_proofs_match_and_verify() {
    let (v, t) = tree();
    for c in v["consistency"].as_array().unwrap() {
        let (a, b) = (c["first"].as_u64().unwrap(), c["second"].as_u64().unwrap());
        let expected = proof(&c["proof"]);
        assert_eq!(
            t.consistency_proof(a, b).unwrap(),
            expected,
            "PROOF({a}, {b})"
        );
        assert!(verify_consistency(
            a,
            b,
            &t.root_at(a).unwrap(),
            &t.root_at(b).unwrap(),
            &expected
        ));
    }
}

#[test]
fn the_receipt_vector_round_trips_between_json_and_binary_and_verifies() {
    let v: Value = serde_json::from_str(RECEIPT).unwrap();
    let json: ReceiptJson = serde_json::from_value(v["json"].clone()).unwrap();
    let from_json = Receipt::from_json(&json).unwrap();
    let binary = hex::decode(v["binary_hex"].as_str().unwrap()).unwrap();
    let from_binary = Receipt::from_binary(&binary).unwrap();
    assert_eq!(from_json, from_binary);
    assert_eq!(from_json.to_binary(), binary, "binary form byte for byte");
    assert_eq!(
        serde_json::to_value(from_binary.to_json()).unwrap(),
        v["json"],
        "JSON field for field"
    );
    let anchor: TrustAnchor = v["trust_anchor"].as_str().unwrap().parse().unwrap();
    let verified = verify_receipt(&from_json, &anchor).unwrap();
    assert_eq!(verified.leaf_index, 17);
    assert_eq!(verified.tree_size, 20);
    // The receipt's entry is entry 17 of the Merkle vectors.
    let (_, t) = tree();
    assert_eq!(from_json.entry.leaf_hash(), t.leaf(17).unwrap());
}
