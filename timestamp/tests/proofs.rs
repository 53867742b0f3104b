//! Merkle proofs against a naive transcription of RFC 9162's recursive
//! definitions, for every tree size up to 300; random sizes whose inclusion
//! and consistency proofs verify and fail for a flipped bit, a wrong index, a
//! wrong size or a cut or padded proof; and receipts that fail exactly the
//! check that was broken.

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

fn tree_of(all: &[Hash]) -> MerkleTree {
    let mut t = MerkleTree::new();
    for l in all {
        t.push(*l);
    }
    t
}

proptest! {
    #[test]
    fn random_size_pairs_prove_consistency_and_reject_tampering(
        a in 1u64..2_000, extra in 0u64..2_000, flip in any::<prop::sample::Index>(), byte in 0usize..32,
        bit in 0u8..8, other in any::<prop::sample::Index>(),
    ) {
        let b = a + extra;
        let all = leaves(b + 1);
        let t = tree_of(&all);
        let (ra, rb) = (t.root_at(a).unwrap(), t.root_at(b).unwrap());
        let p = t.consistency_proof(a, b).unwrap();
        prop_assert!(verify_consistency(a, b, &ra, &rb, &p));
        if !p.is_empty() {
            let mut bad = p.clone();
            let i = flip.index(bad.len());
            bad[i][byte] ^= 1 << bit;
            prop_assert!(!verify_consistency(a, b, &ra, &rb, &bad), "flipped bit accepted");
            prop_assert!(!verify_consistency(a, b, &ra, &rb, &p[..p.len() - 1]), "short proof accepted");
            let mut long = p.clone();
            long.push(p[i]);
            prop_assert!(!verify_consistency(a, b, &ra, &rb, &long), "long proof accepted");
        }
        if a < b {
            prop_assert!(!verify_consistency(a, b, &rb, &rb, &p), "wrong first root accepted");
            prop_assert!(!verify_consistency(a, b, &ra, &ra, &p), "wrong second root accepted");
        }
        // The proof read as one between other sizes, with those sizes' true
        // roots: it fails unless it is that proof too.
        let b2 = 1 + other.index(b as usize + 1) as u64;
        if b2 >= a && b2 != b && t.consistency_proof(a, b2).unwrap() != p {
            prop_assert!(
                !verify_consistency(a, b2, &ra, &t.root_at(b2).unwrap(), &p),
                "PROOF({}, {}) accepted as PROOF({}, {})", a, b, a, b2
            );
        }
        let a2 = 1 + other.index(b as usize) as u64;
        if a2 != a && t.consistency_proof(a2, b).unwrap() != p {
            prop_assert!(
                !verify_consistency(a2, b, &t.root_at(a2).unwrap(), &rb, &p),
                "PROOF({}, {}) accepted as PROOF({}, {})", a, b, a2, b
            );
        }
    }

    #[test]
    fn random_inclusion_proofs_verify_and_reject_tampering(
        size in 1u64..2_000, at in any::<prop::sample::Index>(), other in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(), byte in 0usize..32, bit in 0u8..8,
    ) {
        let all = leaves(size + 1);
        let t = tree_of(&all);
        let m = at.index(size as usize) as u64;
        let leaf = all[m as usize];
        let root = t.root_at(size).unwrap();
        let p = t.inclusion_proof(m, size).unwrap();
        prop_assert!(verify_inclusion(&leaf, m, size, &p, &root));
        // A flipped bit in the proof, or in the leaf.
        if !p.is_empty() {
            let mut bad = p.clone();
            bad[flip.index(p.len())][byte] ^= 1 << bit;
            prop_assert!(!verify_inclusion(&leaf, m, size, &bad, &root), "flipped proof bit accepted");
            prop_assert!(!verify_inclusion(&leaf, m, size, &p[..p.len() - 1], &root), "short proof accepted");
        }
        let mut long = p.clone();
        long.push(root);
        prop_assert!(!verify_inclusion(&leaf, m, size, &long, &root), "long proof accepted");
        let mut bad_leaf = leaf;
        bad_leaf[byte] ^= 1 << bit;
        prop_assert!(!verify_inclusion(&bad_leaf, m, size, &p, &root), "flipped leaf bit accepted");
        // Any other index in the same tree.
        if size > 1 {
            let m2 = (m + 1 + other.index(size as usize - 1) as u64) % size;
            prop_assert!(m2 != m);
            prop_assert!(!verify_inclusion(&leaf, m2, size, &p, &root), "PATH({}, {}) accepted at index {}", m, size, m2);
        }
        // Another size, with that tree's true root: fails unless the proof is
        // that tree's proof too. (Against this tree's root a wrong size can
        // alias — RFC 9162 proofs do not commit to the size, which is why the
        // signed tree head does; see the receipt test below.)
        let size2 = 1 + other.index(size as usize + 1) as u64;
        if size2 != size && (m >= size2 || t.inclusion_proof(m, size2).unwrap() != p) {
            prop_assert!(
                !verify_inclusion(&leaf, m, size2, &p, &t.root_at(size2).unwrap()),
                "PATH({}, {}) accepted for size {}", m, size, size2
            );
        }
        prop_assert!(!verify_inclusion(&leaf, size, size, &p, &root), "index == size accepted");
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
    // Another tree size: either the proof no longer fits or, where the
    // proof's shape aliases, the signed head no longer matches.
    for size in [6, 8, 9] {
        let mut r = good.clone();
        r.tree_size = size;
        assert!(
            matches!(
                verify_receipt(&r, &anchor),
                Err(ReceiptError::InclusionMismatch | ReceiptError::BadSignature)
            ),
            "tree size {size}"
        );
    }
    let mut r = good.clone();
    r.tree_size = 8;
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::BadSignature),
        "PATH(5, 7) has the shape of PATH(5, 8): only the signature catches it"
    );
    let mut r = good.clone();
    r.root[0] ^= 1;
    assert_eq!(
        verify_receipt(&r, &anchor),
        Err(ReceiptError::InclusionMismatch)
    );
    let mut r = good.clone();
    r.inclusion_proof[1][31] ^= 0x80;
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
