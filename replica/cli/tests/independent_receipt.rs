//! Receipts from `belfry demo` (replicas over real QUIC in one process) and
//! from the in-process simulated cluster, verified by
//! an independent check written here from docs/design.md §3.7 alone: the fields are
//! read from the receipt's JSON text and from its `.belfry` bytes by hand;
//! cluster_id, the entry bytes, the leaf hash, the root from the inclusion
//! proof (RFC 9162 §2.1.3.2) and the STH message are rebuilt with `sha2`
//! directly; and the signature is checked with `blst`'s `min_pk` API under
//! the trust anchor. Nothing of belfry's own verification code is used, so a
//! bug there that also sits in the receipt writer cannot hide.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::local::LocalCluster;
use belfry_replica::timestamp::Entry;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The IETF BLS ciphersuite (signatures in G2, keys in G1).
const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// A receipt's fields, as a verifier that knows only docs/design.md §3.7 reads them.
#[derive(Debug, PartialEq, Eq, Clone)]
struct HandReceipt {
    group_public_key: [u8; 48],
    n: u16,
    f: u16,
    policy: u8,
    granularity_us: u64,
    genesis_time: u64,
    /// The entry's canonical bytes, built by hand from its fields.
    entry: Vec<u8>,
    leaf_index: u64,
    tree_size: u64,
    inclusion_proof: Vec<[u8; 32]>,
    root: [u8; 32],
    time: u64,
    signature: [u8; 96],
}

fn unhex<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// `0x01 || digest[32] || witnessed_at u64 || key u64 || witnesses u16 ||
/// flags u8` or `0x02 || wave u64 || time u64 || coin_sig[96] || leader[32] ||
/// state_root[32] || prev_root[32] || batch_len u32`.
fn entry_bytes_by_hand(e: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    match e["kind"].as_str().unwrap() {
        "digest" => {
            b.push(0x01);
            b.extend(unhex::<32>(&e["digest"]));
            b.extend(num(&e["witnessed_at"]).to_be_bytes());
            b.extend(num(&e["key"]).to_be_bytes());
            b.extend(u16::try_from(num(&e["witnesses"])).unwrap().to_be_bytes());
            b.push(u8::from(e["late"].as_bool().unwrap()));
        }
        "tick" => {
            b.push(0x02);
            b.extend(num(&e["wave"]).to_be_bytes());
            b.extend(num(&e["time"]).to_be_bytes());
            b.extend(unhex::<96>(&e["coin_sig"]));
            b.extend(unhex::<32>(&e["leader"]));
            b.extend(unhex::<32>(&e["state_root"]));
            b.extend(unhex::<32>(&e["prev_root"]));
            b.extend(u32::try_from(num(&e["batch_len"])).unwrap().to_be_bytes());
        }
        other => panic!("unknown entry kind {other}"),
    }
    b
}

/// Reads the JSON form; also checks that its `cluster_id` claim is the one
/// its cluster description computes to.
fn from_json(j: &Value) -> HandReceipt {
    assert_eq!(num(&j["version"]), 1);
    let c = &j["cluster"];
    let policy = match c["policy"].as_str().unwrap() {
        "lamport" => 0,
        "clock" => 1,
        other => panic!("unknown policy {other}"),
    };
    let r = HandReceipt {
        group_public_key: unhex(&c["group_public_key"]),
        n: u16::try_from(num(&c["n"])).unwrap(),
        f: u16::try_from(num(&c["f"])).unwrap(),
        policy,
        granularity_us: num(&c["granularity_us"]),
        genesis_time: num(&c["genesis_time"]),
        entry: entry_bytes_by_hand(&j["entry"]),
        leaf_index: num(&j["leaf_index"]),
        tree_size: num(&j["tree_size"]),
        inclusion_proof: j["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(unhex)
            .collect(),
        root: unhex(&j["root"]),
        time: num(&j["time"]),
        signature: unhex(&j["signature"]),
    };
    assert_eq!(
        hex::encode(cluster_id(&r)),
        j["cluster_id"].as_str().unwrap(),
        "the JSON's cluster_id is its cluster's"
    );
    r
}

/// Reads the binary form: `"BLFY" || version u8 || group_public_key[48] || n
/// u16 || f u16 || policy u8 || granularity_us u64 || genesis_time u64 ||
/// entry || leaf_index u64 || tree_size u64 || proof_len u8 || proof || root[32]
/// || time u64 || signature[96]`.
fn from_binary(b: &[u8]) -> HandReceipt {
    let mut rest = b;
    let mut take = |n: usize| {
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    let u16_at = |s: &[u8]| u16::from_be_bytes(s.try_into().unwrap());
    let u64_at = |s: &[u8]| u64::from_be_bytes(s.try_into().unwrap());
    assert_eq!(take(4), b"BLFY");
    assert_eq!(take(1), [1]);
    let group_public_key = take(48).try_into().unwrap();
    let n = u16_at(take(2));
    let f = u16_at(take(2));
    let policy = take(1)[0];
    let granularity_us = u64_at(take(8));
    let genesis_time = u64_at(take(8));
    let kind = take(1)[0];
    let mut entry = vec![kind];
    entry.extend(take(match kind {
        0x01 => 32 + 8 + 8 + 2 + 1,
        0x02 => 8 + 8 + 96 + 32 + 32 + 32 + 4,
        other => panic!("unknown entry kind {other}"),
    }));
    let leaf_index = u64_at(take(8));
    let tree_size = u64_at(take(8));
    let proof_len = take(1)[0];
    let inclusion_proof = (0..proof_len)
        .map(|_| take(32).try_into().unwrap())
        .collect();
    let root = take(32).try_into().unwrap();
    let time = u64_at(take(8));
    let signature = take(96).try_into().unwrap();
    assert!(rest.is_empty(), "nothing after the signature");
    HandReceipt {
        group_public_key,
        n,
        f,
        policy,
        granularity_us,
        genesis_time,
        entry,
        leaf_index,
        tree_size,
        inclusion_proof,
        root,
        time,
        signature,
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA-256("belfry-cluster-v1" || group_public_key[48] || n u16 || f u16 ||
/// policy u8 || granularity_us u64 || genesis_time u64)`.
fn cluster_id(r: &HandReceipt) -> [u8; 32] {
    sha256(&[
        b"belfry-cluster-v1",
        &r.group_public_key,
        &r.n.to_be_bytes(),
        &r.f.to_be_bytes(),
        &[r.policy],
        &r.granularity_us.to_be_bytes(),
        &r.genesis_time.to_be_bytes(),
    ])
}

/// RFC 9162 §2.1.3.2, step by step: the root the proof leads to from `leaf`
/// at `index` in a tree of `size`, or `None` where the proof does not fit.
fn root_from_proof(leaf: [u8; 32], index: u64, size: u64, proof: &[[u8; 32]]) -> Option<[u8; 32]> {
    if index >= size {
        return None;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = sha256(&[&[0x01], p, &r]);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = sha256(&[&[0x01], &r, p]);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// The whole check of docs/design.md §3.7 against the anchor `belfry1:<96 hex>`.
fn verify_by_hand(r: &HandReceipt, anchor: &str) -> Result<(), &'static str> {
    let key = anchor
        .strip_prefix("belfry1:")
        .and_then(|h| hex::decode(h).ok())
        .ok_or("anchor is not belfry1:<hex>")?;
    if key != r.group_public_key {
        return Err("the receipt's group key is not the anchor");
    }
    let leaf = sha256(&[&[0x00], &r.entry]);
    if root_from_proof(leaf, r.leaf_index, r.tree_size, &r.inclusion_proof) != Some(r.root) {
        return Err("the inclusion proof does not lead to the root");
    }
    let mut message = b"belfry-sth-v1".to_vec();
    message.extend(cluster_id(r));
    message.extend(r.tree_size.to_be_bytes());
    message.extend(r.root);
    message.extend(r.time.to_be_bytes());
    let pk = blst::min_pk::PublicKey::key_validate(&key).map_err(|_| "anchor is not a G1 key")?;
    let sig =
        blst::min_pk::Signature::from_bytes(&r.signature).map_err(|_| "signature not in G2")?;
    match sig.verify(true, &message, DST, &[], &pk, true) {
        blst::BLST_ERROR::BLST_SUCCESS => Ok(()),
        _ => Err("the signature does not verify"),
    }
}

/// The tamperings a verifier must catch, each caught by the hand check (so
/// the check above is not one that accepts everything).
fn assert_tampering_is_caught(good: &HandReceipt, anchor: &str) {
    let mut r = good.clone();
    r.entry[5] ^= 1;
    assert!(verify_by_hand(&r, anchor).is_err(), "changed entry");
    let mut r = good.clone();
    r.time -= 1;
    assert!(verify_by_hand(&r, anchor).is_err(), "backdated head");
    let mut r = good.clone();
    r.n += 1;
    assert!(verify_by_hand(&r, anchor).is_err(), "another cluster id");
    let mut r = good.clone();
    r.leaf_index ^= 1;
    assert!(verify_by_hand(&r, anchor).is_err(), "another leaf");
    if let Some(first) = good.inclusion_proof.first() {
        let mut r = good.clone();
        r.inclusion_proof[0] = sha256(&[first]);
        assert!(verify_by_hand(&r, anchor).is_err(), "changed proof");
    }
    let other_key = "belfry1:".to_string() + &"a".repeat(96);
    assert!(verify_by_hand(good, &other_key).is_err(), "another anchor");
}

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
