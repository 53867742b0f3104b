//! `testdata/vectors/merkle_sha256.json` and `receipt.json` (computed by an
//! independent implementation) reproduced byte for byte: every entry's fields,
//! canonical bytes and leaf hash, the root of every prefix, every inclusion and
//! consistency proof up to size 20, Certificate Transparency's reference
//! leaves and roots, and the receipt in both forms.
//!
//! Every object's key set is asserted exactly, so a field added to the vectors
//! fails here until a test checks it — nothing is skipped silently.

#![allow(clippy::unwrap_used)]

use belfry_timestamp::clock::Micros;
use belfry_timestamp::coin::{
    ClusterParams, CoinMessage, GroupPublicKey, Policy, SignedMessage, TrustAnchor, Wave,
};
use belfry_timestamp::store::FileNodes;
use belfry_timestamp::{
    empty_root, leaf_hash, verify_consistency, verify_inclusion, verify_receipt, Entry, Hash,
    MerkleTree, NodeStore, Receipt, ReceiptJson,
};
use serde_json::Value;
use std::collections::BTreeSet;

const MERKLE: &str = include_str!("../../testdata/vectors/merkle_sha256.json");
const RECEIPT: &str = include_str!("../../testdata/vectors/receipt.json");
const SIGNING: &str = include_str!("../../testdata/vectors/signing.json");

/// The root of CT's reference tree of 8 leaves, as published with the
/// Certificate Transparency tests (RFC 6962): a guard that the copied vector
/// file still holds the published value, not only a self-consistent one.
const CT_REFERENCE_ROOT_8: &str =
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Asserts that `v` is an object with exactly these keys.
fn keys(v: &Value, expected: &[&str], what: &str) {
    let have: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = expected.iter().copied().collect();
    assert_eq!(
        have, want,
        "{what}: every field is checked, none is missing"
    );
}

fn h(v: &Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn proof(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(h).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// The vector entries' canonical bytes, as the file gives them.
fn entry_bytes(v: &Value) -> Vec<Vec<u8>> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| hex::decode(e["bytes"].as_str().unwrap()).unwrap())
        .collect()
}

/// A vector entry's fields (without its expected bytes and leaf hash) as an
/// entry.
fn entry_of(e: &Value) -> Entry {
    let mut fields = e.clone();
    let obj = fields.as_object_mut().unwrap();
    obj.remove("bytes");
    obj.remove("leaf_hash");
    serde_json::from_value(fields).unwrap()
}

fn memory_tree(v: &Value) -> MerkleTree {
    let mut t = MerkleTree::new();
    for b in entry_bytes(v) {
        t.push(leaf_hash(&b));
    }
    t
}

/// Checks every root, inclusion proof and consistency proof of the vectors
/// against `t` (a tree over the 20 vector entries, in memory or on disk).
fn check_tree_against_vectors<S: NodeStore>(t: &MerkleTree<S>, v: &Value) {
    assert_eq!(t.size(), 20);
    for r in v["trees"].as_array().unwrap() {
        let size = u(&r["size"]);
        assert_eq!(
            t.root_at(size).unwrap(),
            h(&r["root"]),
            "root of size {size}"
        );
    }
    for c in v["inclusion"].as_array().unwrap() {
        let (index, size) = (u(&c["index"]), u(&c["size"]));
        assert_eq!(
            t.inclusion_proof(index, size).unwrap(),
            proof(&c["proof"]),
            "PATH({index}, {size})"
        );
    }
    for c in v["consistency"].as_array().unwrap() {
        let (a, b) = (u(&c["first"]), u(&c["second"]));
        assert_eq!(
            t.consistency_proof(a, b).unwrap(),
            proof(&c["proof"]),
            "PROOF({a}, {b})"
        );
    }
}

#[test]
fn the_vector_files_have_exactly_the_fields_these_tests_check() {
    let m = json(MERKLE);
    keys(
        &m,
        &[
            "about",
            "entries",
            "trees",
            "inclusion",
            "consistency",
            "rfc6962_reference",
        ],
        "merkle_sha256.json",
    );
    assert!(m["about"].as_str().unwrap().contains("SHA-256"));
    keys(
        &m["rfc6962_reference"],
        &["leaves", "roots"],
        "rfc6962_reference",
    );
    let r = json(RECEIPT);
    keys(
        &r,
        &["about", "trust_anchor", "json", "binary_hex"],
        "receipt.json",
    );
    keys(
        &r["json"],
        &[
            "version",
            "cluster",
            "cluster_id",
            "entry",
            "leaf_index",
            "tree_size",
            "inclusion_proof",
            "root",
            "time",
            "signature",
        ],
        "receipt.json json",
    );
    keys(
        &r["json"]["cluster"],
        &[
            "group_public_key",
            "n",
            "f",
            "policy",
            "granularity_us",
            "genesis_time",
        ],
        "receipt.json json.cluster",
    );
}

#[test]
fn entries_encode_to_the_vector_bytes_and_leaf_hashes() {
    let v = json(MERKLE);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 20);
    let (mut digests, mut ticks) = (0, 0);
    for (i, e) in entries.iter().enumerate() {
        let mut fields = e.clone();
        let obj = fields.as_object_mut().unwrap();
        let bytes = hex::decode(obj.remove("bytes").unwrap().as_str().unwrap()).unwrap();
        let leaf = h(&obj.remove("leaf_hash").unwrap());
        match obj["kind"].as_str().unwrap() {
            "digest" => {
                digests += 1;
                keys(
                    &fields,
                    &["kind", "digest", "witnessed_at", "key", "witnesses", "late"],
                    "digest entry",
                );
            }
            "tick" => {
                ticks += 1;
                keys(
                    &fields,
                    &[
                        "kind",
                        "wave",
                        "time",
                        "coin_sig",
                        "leader",
                        "state_root",
                        "prev_root",
                        "batch_len",
                    ],
                    "tick entry",
                );
            }
            other => panic!("entry {i}: unknown kind {other}"),
        }
        // The fields parse as an entry, which encodes to exactly the vector's
        // bytes, parses back from them, and writes the same JSON fields.
        let entry: Entry = serde_json::from_value(fields.clone()).unwrap();
        assert_eq!(entry.to_bytes(), bytes, "entry {i} bytes");
        assert_eq!(Entry::from_bytes(&bytes).unwrap(), entry, "entry {i} parse");
        assert_eq!(
            serde_json::to_value(entry).unwrap(),
            fields,
            "entry {i} JSON"
        );
        assert_eq!(entry.leaf_hash(), leaf, "entry {i} leaf hash");
        assert_eq!(leaf_hash(&bytes), leaf, "entry {i} leaf hash of the bytes");
    }
    assert_eq!((digests, ticks), (16, 4));
}

/// Each Tick's `prev_root` is the root of the entries before it, and its
/// `coin_sig` is the real coin signature of its wave under signing.json's key.
#[test]
fn ticks_carry_the_previous_root_and_the_real_coin_signature() {
    let v = json(MERKLE);
    let s = json(SIGNING);
    let t = memory_tree(&v);
    let key = GroupPublicKey::from_hex(s["group_public_key"].as_str().unwrap()).unwrap();
    let c = &s["cluster"];
    let cluster_id = ClusterParams {
        group_public_key: key,
        n: u16::try_from(u(&c["n"])).unwrap(),
        f: u16::try_from(u(&c["f"])).unwrap(),
        policy: Policy::from_name(c["policy"].as_str().unwrap(), u(&c["granularity_us"])).unwrap(),
        genesis_time: Micros(u(&c["genesis_time"])),
    }
    .cluster_id();
    assert_eq!(hex::encode(cluster_id.0), s["cluster_id"].as_str().unwrap());
    let mut ticks = 0;
    for (i, e) in v["entries"].as_array().unwrap().iter().enumerate() {
        let Entry::Tick(tick) = entry_of(e) else {
            continue;
        };
        ticks += 1;
        assert_eq!(tick.prev_root, t.root_at(i as u64).unwrap(), "entry {i}");
        let message = CoinMessage {
            cluster_id,
            wave: Wave(tick.wave),
        };
        assert!(
            key.verify(&message.signing_bytes(), &tick.coin_sig),
            "entry {i}: coin signature of wave {}",
            tick.wave
        );
    }
    assert_eq!(ticks, 4);
}

#[test]
fn roots_of_every_prefix_match_the_vectors() {
    let v = json(MERKLE);
    let trees = v["trees"].as_array().unwrap();
    assert_eq!(trees.len(), 21);
    for (size, r) in trees.iter().enumerate() {
        keys(r, &["size", "root"], "trees[]");
        assert_eq!(u(&r["size"]), size as u64, "sizes 0..=20 in order");
    }
    // The empty tree's root is SHA-256("") (RFC 9162 §2.1.1).
    assert_eq!(h(&trees[0]["root"]), empty_root());
    // Grown one leaf at a time, the current root is the vector's at each size.
    let mut t = MerkleTree::new();
    assert_eq!(t.root(), h(&trees[0]["root"]));
    for (i, b) in entry_bytes(&v).iter().enumerate() {
        t.push(leaf_hash(b));
        assert_eq!(t.root(), h(&trees[i + 1]["root"]), "size {}", i + 1);
    }
    // And every earlier size from the full tree.
    for (size, r) in trees.iter().enumerate() {
        assert_eq!(t.root_at(size as u64).unwrap(), h(&r["root"]));
    }
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let v = json(MERKLE);
    let t = memory_tree(&v);
    let leaves: Vec<Hash> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| h(&e["leaf_hash"]))
        .collect();
    let roots: Vec<Hash> = v["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| h(&r["root"]))
        .collect();
    let cases = v["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 210);
    let mut seen = BTreeSet::new();
    for c in cases {
        keys(c, &["index", "size", "proof"], "inclusion[]");
        let (index, size) = (u(&c["index"]), u(&c["size"]));
        assert!(seen.insert((index, size)), "PATH({index}, {size}) twice");
        let expected = proof(&c["proof"]);
        assert_eq!(
            t.inclusion_proof(index, size).unwrap(),
            expected,
            "PATH({index}, {size})"
        );
        // The vector's proof leads from the vector's leaf to the vector's root.
        assert!(verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &expected,
            &roots[size as usize]
        ));
    }
    let all: BTreeSet<(u64, u64)> = (1..=20u64)
        .flat_map(|size| (0..size).map(move |index| (index, size)))
        .collect();
    assert_eq!(seen, all, "every (index, size) up to size 20");
}

#[test]
fn consistency_proofs_match_and_verify() {
    let v = json(MERKLE);
    let t = memory_tree(&v);
    let roots: Vec<Hash> = v["trees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| h(&r["root"]))
        .collect();
    let cases = v["consistency"].as_array().unwrap();
    assert_eq!(cases.len(), 210);
    let mut seen = BTreeSet::new();
    for c in cases {
        keys(c, &["first", "second", "proof"], "consistency[]");
        let (a, b) = (u(&c["first"]), u(&c["second"]));
        assert!(seen.insert((a, b)), "PROOF({a}, {b}) twice");
        let expected = proof(&c["proof"]);
        assert_eq!(
            t.consistency_proof(a, b).unwrap(),
            expected,
            "PROOF({a}, {b})"
        );
        assert!(verify_consistency(
            a,
            b,
            &roots[a as usize],
            &roots[b as usize],
            &expected
        ));
    }
    let all: BTreeSet<(u64, u64)> = (1..=20u64)
        .flat_map(|second| (1..=second).map(move |first| (first, second)))
        .collect();
    assert_eq!(
        seen, all,
        "every (first, second) with 1 <= first <= second <= 20"
    );
}

/// The file-backed node store is the same tree: all roots and proofs again,
/// before and after reopening its files.
#[test]
fn the_file_backed_tree_reproduces_the_vectors() {
    let v = json(MERKLE);
    let dir = tempfile::tempdir().unwrap();
    let mut t = MerkleTree::with_store(FileNodes::open(dir.path(), 0).unwrap(), 0);
    for b in entry_bytes(&v) {
        t.push(leaf_hash(&b));
    }
    t.store_mut().sync().unwrap();
    check_tree_against_vectors(&t, &v);
    drop(t);
    let store = FileNodes::open(dir.path(), 20).unwrap();
    assert_eq!(store.leaves(), 20);
    let reopened = MerkleTree::with_store(store, 20);
    check_tree_against_vectors(&reopened, &v);
    check_tree_against_vectors(&memory_tree(&v), &v);
}

#[test]
fn the_certificate_transparency_reference_tree_is_reproduced() {
    let v = json(MERKLE);
    let reference = &v["rfc6962_reference"];
    let leaves: Vec<Vec<u8>> = reference["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(leaves.len(), 8);
    assert!(leaves[0].is_empty(), "CT's first reference leaf is empty");
    let roots = reference["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 9);
    let mut t = MerkleTree::new();
    for l in &leaves {
        t.push(leaf_hash(l));
    }
    for (size, r) in roots.iter().enumerate() {
        keys(r, &["size", "root"], "rfc6962_reference.roots[]");
        assert_eq!(u(&r["size"]), size as u64, "sizes 0..=8 in order");
        assert_eq!(
            t.root_at(size as u64).unwrap(),
            h(&r["root"]),
            "size {size}"
        );
    }
    assert_eq!(roots[8]["root"].as_str().unwrap(), CT_REFERENCE_ROOT_8);
    assert_eq!(hex::encode(t.root()), CT_REFERENCE_ROOT_8);
}

#[test]
fn the_receipt_vector_round_trips_between_json_and_binary_and_verifies() {
    let v = json(RECEIPT);
    let m = json(MERKLE);
    let s = json(SIGNING);
    let json_form: ReceiptJson = serde_json::from_value(v["json"].clone()).unwrap();
    let from_json = Receipt::from_json(&json_form).unwrap();
    let binary = hex::decode(v["binary_hex"].as_str().unwrap()).unwrap();
    let from_binary = Receipt::from_binary(&binary).unwrap();
    // Both forms hold the same receipt and each writes the other byte for byte.
    assert_eq!(from_json, from_binary);
    assert_eq!(from_json.to_binary(), binary, "binary form byte for byte");
    assert_eq!(
        serde_json::to_value(from_binary.to_json()).unwrap(),
        v["json"],
        "JSON field for field"
    );
    let text = serde_json::to_string(&from_binary.to_json()).unwrap();
    assert_eq!(Receipt::from_json_str(&text).unwrap(), from_binary);
    // The anchor is signing.json's, and the receipt verifies against it.
    let anchor_text = v["trust_anchor"].as_str().unwrap();
    assert_eq!(anchor_text, s["trust_anchor"].as_str().unwrap());
    let anchor: TrustAnchor = anchor_text.parse().unwrap();
    assert_eq!(anchor.to_string(), anchor_text);
    let verified = verify_receipt(&from_json, &anchor).unwrap();
    // It is entry 17 of the Merkle vectors under the size-20 signed head of
    // signing.json.
    let e17 = &m["entries"][17];
    assert_eq!(
        hex::encode(verified.entry.to_bytes()),
        e17["bytes"].as_str().unwrap()
    );
    assert_eq!(verified.entry.leaf_hash(), h(&e17["leaf_hash"]));
    assert_eq!(verified.leaf_index, 17);
    assert_eq!(verified.tree_size, 20);
    assert_eq!(verified.time, Micros(u(&s["sth"]["time"])));
    let path_17_20 = m["inclusion"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| u(&c["index"]) == 17 && u(&c["size"]) == 20)
        .unwrap();
    assert_eq!(from_json.inclusion_proof, proof(&path_17_20["proof"]));
    assert_eq!(from_json.root, h(&m["trees"][20]["root"]));
    assert_eq!(from_json.root, h(&s["sth"]["root"]));
    assert_eq!(u(&s["sth"]["tree_size"]), 20);
    assert_eq!(
        hex::encode(from_json.cluster_id().0),
        s["cluster_id"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(from_json.tree_head_message().signing_bytes()),
        s["sth"]["message"].as_str().unwrap()
    );
    assert_eq!(
        from_json.signature.to_hex(),
        s["sth"]["signature"].as_str().unwrap()
    );
}
