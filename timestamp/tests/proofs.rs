//! Merkle proofs against a naive transcription of RFC 9162's recursive
//! definitions, for every tree size up to 300 and random size pairs, and
//! receipts that fail exactly the check that was broken.

#![allow(clippy::unwrap_used)]

use belfry_timestamp::clock::Micros;
use belfry_timestamp::coin::{
    deal, threshold_sign, ClusterParams, Policy, SignedMessage, TrustAnchor,
};
use belfry_timestamp::{
    leaf_hash, node_hash, verify_consistency, verify_inclusion, verify_receipt, DigestEntry, Entry,
    Hash, MerkleTree, Receipt, ReceiptError, TreeHead,
};
use proptest::prelude::*;
use rand::SeedableRng;
use std::sync::Arc;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH, straight from RFC 9162 §2.1.1.
fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => belfry_timestamp::empty_root(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// PATH, §2.1.3.1.
fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF, §2.1.4.1.
fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

#[test]
fn every_size_up_to_300_matches_the_rfc_definitions() {
    let all = leaves(300);
    let mut t = MerkleTree::new();
    assert_eq!(t.root(), belfry_timestamp::empty_root());
    for n in 1..=300u64 {
        t.push(all[n as usize - 1]);
        let d = &all[..n as usize];
        let root = mth(d);
        assert_eq!(t.root(), root, "root of {n}");
        for m in 0..n {
            let p = t.inclusion_proof(m, n).unwrap();
            assert_eq!(p, path(m as usize, d), "PATH({m}, {n})");
            assert!(verify_inclusion(&d[m as usize], m, n, &p, &root));
        }
        // Consistency from every earlier size, the empty tree and n itself.
        for m in 0..=n {
            let p = t.consistency_proof(m, n).unwrap();
            let expected = if m == 0 {
                vec![]
            } else {
                subproof(m as usize, d, true)
            };
            assert_eq!(p, expected, "PROOF({m}, {n})");
            assert!(
                verify_consistency(m, n, &mth(&d[..m as usize]), &root, &p),
                "verify PROOF({m}, {n})"
            );
        }
    }
}

proptest! {
    #[test]
    fn random_size_pairs_prove_consistency_and_reject_tampering(
        a in 1u64..2_000, extra in 0u64..2_000, flip in any::<prop::sample::Index>(), byte in 0usize..32,
    ) {
        let b = a + extra;
        let all = leaves(b);
        let mut t = MerkleTree::new();
        for l in &all { t.push(*l); }
        let (ra, rb) = (t.root_at(a).unwrap(), t.root_at(b).unwrap());
        let p = t.consistency_proof(a, b).unwrap();
        prop_assert!(verify_consistency(a, b, &ra, &rb, &p));
        if !p.is_empty() {
            let mut bad = p.clone();
            let i = flip.index(bad.len());
            bad[i][byte] ^= 1;
            prop_assert!(!verify_consistency(a, b, &ra, &rb, &bad));
            prop_assert!(!verify_consistency(a, b, &ra, &rb, &p[..p.len() - 1]));
        }
        if a < b {
            prop_assert!(!verify_consistency(a, b, &rb, &rb, &p), "wrong first root accepted");
        }
        let m = flip.index(b as usize) as u64;
        let ip = t.inclusion_proof(m, b).unwrap();
        prop_assert!(verify_inclusion(&all[m as usize], m, b, &ip, &rb));
        prop_assert!(!verify_inclusion(&all[m as usize], (m + 1) % b.max(2), b, &ip, &rb) || b == 1);
    }
}

#[test]
fn out_of_range_requests_are_errors_not_panics() {
    let mut t = MerkleTree::new();
    for l in leaves(5) {
        t.push(l);
    }
    assert!(t.inclusion_proof(5, 5).is_err());
    assert!(t.inclusion_proof(0, 6).is_err());
    assert!(t.consistency_proof(4, 3).is_err());
    assert!(t.consistency_proof(1, 9).is_err());
    assert!(t.root_at(6).is_err());
    assert!(!verify_inclusion(&[0; 32], 3, 3, &[], &[0; 32]));
    assert!(
        verify_consistency(0, 5, &[9; 32], &t.root(), &[]),
        "the proof from size 0 is empty and valid"
    );
    assert!(!verify_consistency(
        3,
        3,
        &t.root_at(3).unwrap(),
        &t.root_at(4).unwrap(),
        &[]
    ));
}

/// A real receipt from a 4-replica key set, and every tampering caught.
#[test]
fn tampered_receipts_fail_the_check_that_was_broken() {
    let (public, secrets) = deal(4, 1, &mut rand_chacha::ChaCha20Rng::seed_from_u64(3)).unwrap();
    let public = Arc::new(public);
    let cluster = ClusterParams::of_keys(&public, Policy::Lamport, Micros(1_763_700_000_000_000));
    let entries: Vec<Entry> = (0..7u8)
        .map(|i| {
            Entry::Digest(DigestEntry {
                digest: [i; 32],
                witnessed_at: Micros(10 + u64::from(i)),
                key: 3,
                witnesses: 3,
                late: false,
            })
        })
        .collect();
    let mut t = MerkleTree::new();
    for e in &entries {
        t.push(e.leaf_hash());
    }
    let head = TreeHead {
        tree_size: 7,
        root: t.root(),
        time: Micros(99),
    };
    let msg = head.message(cluster.cluster_id()).signing_bytes();
    let signature = threshold_sign(&public, &secrets, &msg).unwrap();
    let good = Receipt {
        cluster,
        entry: entries[5],
        leaf_index: 5,
        tree_size: 7,
        inclusion_proof: t.inclusion_proof(5, 7).unwrap(),
        root: t.root(),
        time: Micros(99),
        signature,
    };
    let anchor = TrustAnchor(public.group_key());
    verify_receipt(&good, &anchor).unwrap();
    assert_eq!(Receipt::from_binary(&good.to_binary()).unwrap(), good);
    let json = serde_json::to_string(&good.to_json()).unwrap();
    assert_eq!(Receipt::from_json_str(&json).unwrap(), good);

    let mut r = good.clone();
    r.entry = entries[4];
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::InclusionMismatch)
    );
    let mut r = good.clone();
    r.leaf_index = 4;
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::InclusionMismatch)
    );
    let mut r = good.clone();
    r.time = Micros(98);
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::BadSignature),
        "backdated head"
    );
    let mut r = good.clone();
    r.cluster.policy = Policy::Clock { granularity_us: 1 };
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::BadSignature),
        "another cluster id"
    );
    let mut r = good.clone();
    r.leaf_index = 7;
    assert!(matches!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::IndexOutOfRange { .. })
    ));
    // A receipt that brings its own key proves nothing.
    let (other, other_secrets) =
        deal(4, 1, &mut rand_chacha::ChaCha20Rng::seed_from_u64(4)).unwrap();
    let mut r = good.clone();
    r.cluster.group_public_key = other.group_key();
    let own_msg = r.tree_head_message().signing_bytes();
    let other = Arc::new(other);
    r.signature = threshold_sign(&other, &other_secrets[1..], &own_msg).unwrap();
    verify_receipt(&r, &TrustAnchor(other.group_key())).unwrap();
    assert!(matches!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::WrongAnchor { .. })
    ));
    // JSON whose cluster_id lies about its cluster.
    let mut j = good.to_json();
    j.cluster_id = hex::encode([0u8; 32]);
    assert!(matches!(
        Receipt::from_json(&j),
        Err(ReceiptError::ClusterIdMismatch { .. })
    ));
}

#[test]
fn corrupt_binary_receipts_are_clear_errors() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/vectors/receipt.json")).unwrap();
    let good = hex::decode(v["binary_hex"].as_str().unwrap()).unwrap();
    // Every truncation is an error, never a panic.
    for cut in 0..good.len() {
        assert!(Receipt::from_binary(&good[..cut]).is_err(), "cut at {cut}");
    }
    let mut extra = good.clone();
    extra.push(0);
    assert!(matches!(
        Receipt::from_binary(&extra),
        Err(ReceiptError::Malformed(_))
    ));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(matches!(
        Receipt::from_binary(&magic),
        Err(ReceiptError::Malformed(_))
    ));
    let mut version = good.clone();
    version[4] = 9;
    assert_eq!(
        Receipt::from_binary(&version),
        Err(ReceiptError::Version(9))
    );
    // Every single-byte corruption is either rejected or changes the receipt.
    let original = Receipt::from_binary(&good).unwrap();
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0x40;
        if let Ok(r) = Receipt::from_binary(&b) {
            assert_ne!(r, original, "byte {i}");
        }
    }
}
