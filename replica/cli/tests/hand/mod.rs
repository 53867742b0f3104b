//! A receipt verifier written from docs/design.md §3.7 and docs/gateway.md
//! alone, for the tests: the fields are read from the JSON text and the
//! `.belfry` bytes by hand; hashes with `sha2`, the signature with `blst`.
//! Nothing of belfry's own verification code is used.

#![allow(dead_code, clippy::unwrap_used)]

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The IETF BLS ciphersuite (signatures in G2, keys in G1).
pub const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// A receipt's fields, as a verifier that knows only docs/design.md §3.7 reads them.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct HandReceipt {
    pub group_public_key: [u8; 48],
    pub n: u16,
    pub f: u16,
    pub policy: u8,
    pub granularity_us: u64,
    pub genesis_time: u64,
    /// The entry's canonical bytes, built by hand from its fields.
    pub entry: Vec<u8>,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub inclusion_proof: Vec<[u8; 32]>,
    pub root: [u8; 32],
    pub time: u64,
    pub signature: [u8; 96],
}

pub fn unhex<const N: usize>(v: &Value) -> [u8; N] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

pub fn num(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

/// `0x01 || digest[32] || witnessed_at u64 || key u64 || witnesses u16 ||
/// flags u8` or `0x02 || wave u64 || time u64 || coin_sig[96] || leader[32] ||
/// state_root[32] || prev_root[32] || batch_len u32`.
pub fn entry_bytes_by_hand(e: &Value) -> Vec<u8> {
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
pub fn from_json(j: &Value) -> HandReceipt {
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
pub fn from_binary(b: &[u8]) -> HandReceipt {
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

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA-256("belfry-cluster-v1" || group_public_key[48] || n u16 || f u16 ||
/// policy u8 || granularity_us u64 || genesis_time u64)`.
pub fn cluster_id(r: &HandReceipt) -> [u8; 32] {
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
pub fn root_from_proof(
    leaf: [u8; 32],
    index: u64,
    size: u64,
    proof: &[[u8; 32]],
) -> Option<[u8; 32]> {
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
pub fn verify_by_hand(r: &HandReceipt, anchor: &str) -> Result<(), &'static str> {
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
pub fn assert_tampering_is_caught(good: &HandReceipt, anchor: &str) {
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

/// A version-2 (aggregated) receipt as docs/gateway.md describes it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct HandAggregated {
    pub digest: [u8; 32],
    /// `(leaf_index, tree_size, proof)`, bottom first.
    pub steps: Vec<(u64, u64, Vec<[u8; 32]>)>,
    pub inner: HandReceipt,
}

/// `"BLFY" || 0x02 || digest[32] || steps u8 || (leaf_index u64 || tree_size
/// u64 || proof_len u8 || proof)* || inner receipt (binary, version 1)`.
pub fn aggregated_from_binary(b: &[u8]) -> HandAggregated {
    assert_eq!(&b[..4], b"BLFY");
    assert_eq!(b[4], 2);
    let digest: [u8; 32] = b[5..37].try_into().unwrap();
    let count = b[37] as usize;
    assert!((1..=8).contains(&count));
    let mut at = 38;
    let mut steps = Vec::new();
    for _ in 0..count {
        let leaf_index = u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
        let tree_size = u64::from_be_bytes(b[at + 8..at + 16].try_into().unwrap());
        let len = b[at + 16] as usize;
        at += 17;
        let proof = (0..len)
            .map(|i| b[at + 32 * i..at + 32 * (i + 1)].try_into().unwrap())
            .collect();
        at += 32 * len;
        steps.push((leaf_index, tree_size, proof));
    }
    HandAggregated {
        digest,
        steps,
        inner: from_binary(&b[at..]),
    }
}

/// The JSON form: `{"version": 2, "digest", "aggregation": [{"leaf_index",
/// "tree_size", "proof"}], "receipt": {version 1}}`.
pub fn aggregated_from_json(j: &Value) -> HandAggregated {
    assert_eq!(num(&j["version"]), 2);
    HandAggregated {
        digest: unhex(&j["digest"]),
        steps: j["aggregation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    num(&s["leaf_index"]),
                    num(&s["tree_size"]),
                    s["proof"].as_array().unwrap().iter().map(unhex).collect(),
                )
            })
            .collect(),
        inner: from_json(&j["receipt"]),
    }
}

/// docs/gateway.md's check: the chain from the digest through every round
/// leads to the digest the inner receipt's entry logs; then the inner
/// receipt as any other.
pub fn verify_aggregated_by_hand(a: &HandAggregated, anchor: &str) -> Result<(), &'static str> {
    let mut h = a.digest;
    for (index, size, proof) in &a.steps {
        let leaf = sha256(&[&[0x00], b"belfry/aggregate", &h]);
        h = root_from_proof(leaf, *index, *size, proof).ok_or("a step's path does not fit")?;
    }
    if a.inner.entry[0] != 0x01 || a.inner.entry[1..33] != h {
        return Err("the chain does not lead to the digest the cluster logged");
    }
    verify_by_hand(&a.inner, anchor)
}
