//! `testdata/vectors/signing.json` (computed by an independent implementation)
//! reproduced byte for byte, and the combined signatures checked through blst's
//! own `min_pk` API — a code path independent of blsttc. The hashes the file
//! names (`cluster_id_hash`, `coin.value_hash`, `tie.hash`) are also recomputed
//! with `sha2` and `sha3` directly, beside belfry's own functions; every
//! object's key set is asserted, so a field added to the file fails here until
//! a test checks it.

#![allow(clippy::unwrap_used)]

use belfry_coin::clock::Micros;
use belfry_coin::{
    deal_with_secret, BlsCrypto, ClusterParams, CoinMessage, CoinValue, GroupPublicKey,
    GroupSignature, Policy, ReplicaId, SignedMessage, ThresholdCrypto, TreeHeadMessage,
    TrustAnchor, Wave,
};
use rand::SeedableRng;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

const SIGNING: &str = include_str!("../../testdata/vectors/signing.json");

fn vectors() -> Value {
    serde_json::from_str(SIGNING).expect("signing.json parses")
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

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn params(v: &Value) -> ClusterParams {
    let c = &v["cluster"];
    ClusterParams {
        group_public_key: GroupPublicKey::from_hex(v["group_public_key"].as_str().unwrap())
            .unwrap(),
        n: c["n"].as_u64().unwrap() as u16,
        f: c["f"].as_u64().unwrap() as u16,
        policy: Policy::from_name(
            c["policy"].as_str().unwrap(),
            c["granularity_us"].as_u64().unwrap(),
        )
        .unwrap(),
        genesis_time: Micros(c["genesis_time"].as_u64().unwrap()),
    }
}

fn sth_message(v: &Value) -> TreeHeadMessage {
    TreeHeadMessage {
        cluster_id: params(v).cluster_id(),
        tree_size: v["sth"]["tree_size"].as_u64().unwrap(),
        root: hex32(&v["sth"]["root"]),
        time: Micros(v["sth"]["time"].as_u64().unwrap()),
    }
}

fn coin_message(v: &Value) -> CoinMessage {
    CoinMessage {
        cluster_id: params(v).cluster_id(),
        wave: Wave(v["coin"]["wave"].as_u64().unwrap()),
    }
}

/// Deals shares of the vectors' secret for (n, f) and combines shares of the
/// given replicas on `message`.
fn combine_from_shares(n: usize, f: usize, signers: &[u16], message: &[u8]) -> GroupSignature {
    let v = vectors();
    let secret = hex32(&v["secret_key"]);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(n as u64 * 1000 + f as u64);
    let (public, secrets) = deal_with_secret(&secret, n, f, &mut rng).unwrap();
    let public = Arc::new(public);
    assert_eq!(
        public.group_key().to_hex(),
        v["group_public_key"].as_str().unwrap()
    );
    let shares: Vec<_> = signers
        .iter()
        .map(|&i| {
            let c = BlsCrypto::new(public.clone(), secrets[i as usize].clone());
            (ReplicaId(i), c.sign_share(message).unwrap())
        })
        .collect();
    let verifier = BlsCrypto::verifier(public);
    for (id, s) in &shares {
        assert!(verifier.verify_share(*id, message, s));
    }
    verifier.combine(message, &shares).unwrap()
}

#[test]
fn group_key_and_trust_anchor_match_the_vectors() {
    let v = vectors();
    let sk = blsttc::SecretKey::from_bytes(hex32(&v["secret_key"])).unwrap();
    assert_eq!(
        hex::encode(sk.public_key().to_bytes()),
        v["group_public_key"].as_str().unwrap()
    );
    let anchor: TrustAnchor = v["trust_anchor"].as_str().unwrap().parse().unwrap();
    assert_eq!(anchor.to_string(), v["trust_anchor"].as_str().unwrap());
    assert_eq!(anchor.0.to_hex(), v["group_public_key"].as_str().unwrap());
}

#[test]
fn the_vector_file_has_exactly_the_fields_these_tests_check() {
    let v = vectors();
    keys(
        &v,
        &[
            "about",
            "secret_key",
            "group_public_key",
            "trust_anchor",
            "cluster",
            "cluster_id",
            "sth",
            "coin",
            "tie",
            "cluster_id_hash",
        ],
        "signing.json",
    );
    assert!(v["about"]
        .as_str()
        .unwrap()
        .contains("BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_"));
    keys(
        &v["cluster"],
        &["n", "f", "policy", "granularity_us", "genesis_time"],
        "cluster",
    );
    keys(
        &v["sth"],
        &["tree_size", "root", "time", "message", "signature"],
        "sth",
    );
    keys(
        &v["coin"],
        &[
            "wave",
            "message",
            "signature",
            "value",
            "value_hash",
            "leader",
            "leader_for_n",
            "note",
        ],
        "coin",
    );
    keys(&v["tie"], &["coin", "digest", "tie", "hash"], "tie");
}

#[test]
fn cluster_id_matches_the_vectors() {
    let v = vectors();
    assert_eq!(
        hex::encode(params(&v).cluster_id().0),
        v["cluster_id"].as_str().unwrap()
    );
    // The file says which hash: SHA-256, recomputed here with `sha2` directly
    // from the layout of docs/design.md §3.7.
    assert_eq!(v["cluster_id_hash"].as_str().unwrap(), "SHA-256");
    let c = &v["cluster"];
    let mut bytes = b"belfry-cluster-v1".to_vec();
    bytes.extend(hex::decode(v["group_public_key"].as_str().unwrap()).unwrap());
    bytes.extend(
        u16::try_from(c["n"].as_u64().unwrap())
            .unwrap()
            .to_be_bytes(),
    );
    bytes.extend(
        u16::try_from(c["f"].as_u64().unwrap())
            .unwrap()
            .to_be_bytes(),
    );
    assert_eq!(c["policy"].as_str().unwrap(), "lamport");
    bytes.push(0);
    bytes.extend(c["granularity_us"].as_u64().unwrap().to_be_bytes());
    bytes.extend(c["genesis_time"].as_u64().unwrap().to_be_bytes());
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        v["cluster_id"].as_str().unwrap()
    );
}

#[test]
fn sth_message_and_signature_match_the_vectors() {
    let v = vectors();
    let msg = sth_message(&v).signing_bytes();
    assert_eq!(hex::encode(&msg), v["sth"]["message"].as_str().unwrap());
    let sk = blsttc::SecretKey::from_bytes(hex32(&v["secret_key"])).unwrap();
    let direct = hex::encode(sk.sign(&msg).to_bytes());
    assert_eq!(direct, v["sth"]["signature"].as_str().unwrap());
    // Combined from threshold shares of the same secret, any f + 1 of them.
    for (n, f, signers) in [
        (4, 1, vec![0u16, 3]),
        (7, 2, vec![1, 4, 6]),
        (10, 3, vec![9, 0, 5, 2]),
    ] {
        let sig = combine_from_shares(n, f, &signers, &msg);
        assert_eq!(
            sig.to_hex(),
            v["sth"]["signature"].as_str().unwrap(),
            "n={n}"
        );
    }
}

#[test]
fn coin_message_signature_value_and_leaders_match_the_vectors() {
    let v = vectors();
    let msg = coin_message(&v).signing_bytes();
    assert_eq!(hex::encode(&msg), v["coin"]["message"].as_str().unwrap());
    let sk = blsttc::SecretKey::from_bytes(hex32(&v["secret_key"])).unwrap();
    assert_eq!(
        hex::encode(sk.sign(&msg).to_bytes()),
        v["coin"]["signature"].as_str().unwrap()
    );
    let sig = combine_from_shares(4, 1, &[2, 1], &msg);
    assert_eq!(sig.to_hex(), v["coin"]["signature"].as_str().unwrap());
    let value = CoinValue::of(&sig);
    assert_eq!(hex::encode(value.0), v["coin"]["value"].as_str().unwrap());
    // The coin value stays SHA3-256 of the signature (protocol-internal).
    assert_eq!(
        v["coin"]["value_hash"].as_str().unwrap(),
        "SHA3-256 of the signature"
    );
    use sha3::Digest;
    assert_eq!(sha3::Sha3_256::digest(sig.0).as_slice(), value.0);
    assert_eq!(
        v["coin"]["note"].as_str().unwrap(),
        "leader = u64::from_be_bytes(value[0..8]) mod n"
    );
    let first8 = u64::from_be_bytes(value.0[..8].try_into().unwrap());
    assert_eq!(
        u64::from(value.leader(4).0),
        v["coin"]["leader"].as_u64().unwrap()
    );
    let leaders = v["coin"]["leader_for_n"].as_object().unwrap();
    assert_eq!(leaders.len(), 5);
    let mut ns: Vec<usize> = leaders.keys().map(|n| n.parse().unwrap()).collect();
    ns.sort_unstable();
    assert_eq!(ns, [4, 5, 7, 10, 16]);
    for (n, leader) in leaders {
        let n: usize = n.parse().unwrap();
        assert_eq!(
            u64::from(value.leader(n).0),
            leader.as_u64().unwrap(),
            "n={n}"
        );
        assert_eq!(first8 % n as u64, leader.as_u64().unwrap(), "n={n}");
    }
}

#[test]
fn tie_hash_matches_the_vectors() {
    let v = vectors();
    let coin = CoinValue(hex32(&v["tie"]["coin"]));
    let tie = coin.tie(&hex32(&v["tie"]["digest"]));
    assert_eq!(hex::encode(tie), v["tie"]["tie"].as_str().unwrap());
    // The tie-break's coin is the coin vector's value, and the hash stays
    // SHA3-256 (protocol-internal), recomputed here with `sha3` directly.
    assert_eq!(v["tie"]["coin"], v["coin"]["value"]);
    assert_eq!(
        v["tie"]["hash"].as_str().unwrap(),
        "SHA3-256(\"belfry-tie-v1\" || coin || digest)"
    );
    use sha3::Digest;
    let mut h = sha3::Sha3_256::new();
    h.update(b"belfry-tie-v1");
    h.update(coin.0);
    h.update(hex32(&v["tie"]["digest"]));
    assert_eq!(h.finalize().as_slice(), tie);
}

#[test]
fn combined_signatures_verify_as_plain_ietf_bls_through_blst() {
    use blst::min_pk::{PublicKey, Signature};
    use blst::BLST_ERROR;
    const DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";
    let v = vectors();
    let pk = PublicKey::from_bytes(&hex::decode(v["group_public_key"].as_str().unwrap()).unwrap())
        .unwrap();
    for msg in [
        sth_message(&v).signing_bytes(),
        coin_message(&v).signing_bytes(),
    ] {
        let sig = combine_from_shares(7, 2, &[0, 2, 5], &msg);
        let sig = Signature::from_bytes(&sig.0).unwrap();
        assert_eq!(
            sig.verify(true, &msg, DST, &[], &pk, true),
            BLST_ERROR::BLST_SUCCESS
        );
        // And the independent path rejects a different message.
        let mut other = msg.clone();
        *other.last_mut().unwrap() ^= 1;
        assert_ne!(
            sig.verify(true, &other, DST, &[], &pk, true),
            BLST_ERROR::BLST_SUCCESS
        );
    }
}
