//! Threshold behaviour of the coin and the collector, with real BLS and the
//! mock: any f + 1 valid shares give the same signature and coin, f shares do
//! not, invalid shares are detected and attributed, leaders are uniform.

#![allow(clippy::unwrap_used)]

use belfry_coin::clock::Micros;
use belfry_coin::{
    deal, BlsCrypto, ClusterId, ClusterParams, CoinMessage, CoinValue, CommonCoin, GroupSignature,
    MockCrypto, Policy, PublicKeys, ReplicaId, SecretShare, ShareFault, ShareFaultKind,
    SignatureCollector, SignatureShare, SignedMessage, ThresholdCrypto, TreeHeadMessage, Wave,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

struct Cluster {
    public: Arc<PublicKeys>,
    secrets: Vec<SecretShare>,
    cluster_id: ClusterId,
}

fn cluster(n: usize, f: usize, seed: u64) -> Cluster {
    let (public, secrets) = deal(n, f, &mut ChaCha20Rng::seed_from_u64(seed)).unwrap();
    let cluster_id = ClusterParams {
        group_public_key: public.group_key(),
        n: n as u16,
        f: f as u16,
        policy: Policy::Lamport,
        genesis_time: Micros(1_763_700_000_000_000),
    }
    .cluster_id();
    Cluster {
        public: Arc::new(public),
        secrets,
        cluster_id,
    }
}

impl Cluster {
    fn crypto(&self, i: usize) -> BlsCrypto {
        BlsCrypto::new(self.public.clone(), self.secrets[i].clone())
    }
    fn share(&self, i: usize, msg: &impl SignedMessage) -> SignatureShare {
        self.crypto(i).sign_share(&msg.signing_bytes()).unwrap()
    }
    fn coin_msg(&self, w: u64) -> CoinMessage {
        CoinMessage {
            cluster_id: self.cluster_id,
            wave: Wave(w),
        }
    }
}

/// All k-subsets of 0..n.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize == k {
            out.push((0..n).filter(|i| mask & (1 << i) != 0).collect());
        }
    }
    out
}

#[test]
fn any_f_plus_one_valid_shares_give_the_same_signature_and_coin() {
    let c = cluster(7, 2, 11);
    let msg = c.coin_msg(3);
    let shares: Vec<_> = (0..7).map(|i| c.share(i, &msg)).collect();
    let verifier = BlsCrypto::verifier(c.public.clone());
    let mut seen = std::collections::BTreeSet::new();
    for subset in subsets(7, 3) {
        let mut coll = SignatureCollector::new(&msg, 7, 2);
        let mut out = None;
        for &i in &subset {
            let step = coll.add(&verifier, ReplicaId(i as u16), shares[i]);
            assert!(step.faults.is_empty());
            out = out.or(step.output.first().copied());
        }
        seen.insert(out.expect("f + 1 shares combine"));
    }
    assert_eq!(seen.len(), 1, "every 3-subset of 7 gives one signature");
    let sig = *seen.iter().next().unwrap();
    assert!(c.public.group_key().verify(&msg.signing_bytes(), &sig));
    // And through the coin: same value from two different share sets.
    let mut a = CommonCoin::new(c.cluster_id, 7, 2);
    let mut b = CommonCoin::new(c.cluster_id, 7, 2);
    let mut coin_a = None;
    let mut coin_b = None;
    for i in [0usize, 1, 2] {
        coin_a = coin_a.or(a
            .handle_share(&verifier, ReplicaId(i as u16), Wave(3), shares[i])
            .output
            .first()
            .copied());
    }
    for i in [6usize, 4, 5] {
        coin_b = coin_b.or(b
            .handle_share(&verifier, ReplicaId(i as u16), Wave(3), shares[i])
            .output
            .first()
            .copied());
    }
    let (coin_a, coin_b) = (coin_a.unwrap(), coin_b.unwrap());
    assert_eq!(coin_a, coin_b);
    assert_eq!(coin_a.value, CoinValue::of(&sig));
}

#[test]
fn f_shares_do_not_combine() {
    let c = cluster(7, 2, 12);
    let msg = c.coin_msg(1);
    let verifier = BlsCrypto::verifier(c.public.clone());
    let mut coll = SignatureCollector::new(&msg, 7, 2);
    for i in [3usize, 5] {
        let step = coll.add(&verifier, ReplicaId(i as u16), c.share(i, &msg));
        assert!(step.output.is_empty());
    }
    assert_eq!(coll.signature(), None);
    // Nor does interpolating f shares directly.
    let shares = vec![
        (ReplicaId(3), c.share(3, &msg)),
        (ReplicaId(5), c.share(5, &msg)),
    ];
    assert!(verifier.combine(&msg.signing_bytes(), &shares).is_err());
    // A duplicate of the same share does not count twice.
    let step = coll.add(&verifier, ReplicaId(3), c.share(3, &msg));
    assert_eq!(step, Default::default());
    assert_eq!(coll.share_count(), 2);
}

fn invalid_shares_are_attributed(
    crypto_for: impl Fn(usize) -> Box<dyn ThresholdCrypto>,
    cid: ClusterId,
) {
    let (n, f) = (4, 1);
    let coin_msg = CoinMessage {
        cluster_id: cid,
        wave: Wave(9),
    };
    let head_msg = TreeHeadMessage {
        cluster_id: cid,
        tree_size: 10,
        root: [7; 32],
        time: Micros(5),
    };
    let verifier = crypto_for(0);
    // Replica 1 sends a *tree-head* share into the coin collector (a valid
    // signature, wrong message); replica 2 sends garbage; 0 and 3 are honest.
    let wrong_message = crypto_for(1).sign_share(&head_msg.signing_bytes()).unwrap();
    let garbage = SignatureShare([0xab; 96]);
    let mut coll = SignatureCollector::new(&coin_msg, n, f);
    let s1 = coll.add(verifier.as_ref(), ReplicaId(1), wrong_message);
    assert_eq!(s1, Default::default(), "below f + 1 nothing is checked yet");
    let s2 = coll.add(verifier.as_ref(), ReplicaId(2), garbage);
    assert!(s2.output.is_empty());
    assert_eq!(
        s2.faults,
        vec![
            ShareFault {
                replica: ReplicaId(1),
                kind: ShareFaultKind::InvalidShare,
                share: wrong_message,
            },
            ShareFault {
                replica: ReplicaId(2),
                kind: ShareFaultKind::InvalidShare,
                share: garbage,
            },
        ]
    );
    let honest0 = crypto_for(0).sign_share(&coin_msg.signing_bytes()).unwrap();
    let s3 = coll.add(verifier.as_ref(), ReplicaId(0), honest0);
    assert!(s3.output.is_empty(), "one valid share is not enough");
    // The rejected senders cannot get back in with a valid share.
    let late1 = crypto_for(1).sign_share(&coin_msg.signing_bytes()).unwrap();
    assert_eq!(
        coll.add(verifier.as_ref(), ReplicaId(1), late1),
        Default::default()
    );
    let honest3 = crypto_for(3).sign_share(&coin_msg.signing_bytes()).unwrap();
    let s4 = coll.add(verifier.as_ref(), ReplicaId(3), honest3);
    let sig = *s4.output.first().expect("two valid shares combine");
    assert!(s4.faults.is_empty());
    assert!(verifier.verify_group(&coin_msg.signing_bytes(), &sig));
    assert!(!verifier.verify_group(&head_msg.signing_bytes(), &sig));
    // Unknown replica ids are faults too.
    let mut coll = SignatureCollector::new(&coin_msg, n, f);
    let s = coll.add(verifier.as_ref(), ReplicaId(4), garbage);
    assert_eq!(
        s.faults,
        vec![ShareFault {
            replica: ReplicaId(4),
            kind: ShareFaultKind::UnknownReplica,
            share: garbage,
        }]
    );
}

#[test]
fn invalid_and_wrong_message_shares_are_detected_and_attributed_bls() {
    let c = Arc::new(cluster(4, 1, 13));
    let cid = c.cluster_id;
    invalid_shares_are_attributed(move |i| Box::new(c.crypto(i)), cid);
}

#[test]
fn invalid_and_wrong_message_shares_are_detected_and_attributed_mock() {
    let cid = ClusterId([5; 32]);
    invalid_shares_are_attributed(
        |i| Box::new(MockCrypto::new(4, 1, ReplicaId(i as u16), [9; 32])),
        cid,
    );
}

#[test]
fn conflicting_second_share_is_reported() {
    let c = cluster(4, 1, 14);
    let msg = c.coin_msg(2);
    let v = BlsCrypto::verifier(c.public.clone());
    let mut coll = SignatureCollector::new(&msg, 4, 1);
    let _ = coll.add(&v, ReplicaId(0), c.share(0, &msg));
    let s = coll.add(&v, ReplicaId(0), SignatureShare([1; 96]));
    assert_eq!(
        s.faults,
        vec![ShareFault {
            replica: ReplicaId(0),
            kind: ShareFaultKind::ConflictingShare,
            share: SignatureShare([1; 96]),
        }]
    );
}

#[test]
fn mock_crypto_behaves_like_a_threshold_scheme() {
    let key = [3u8; 32];
    let msg = b"belfry-coin-v1 test".to_vec();
    let signers: Vec<_> = (0..4)
        .map(|i| MockCrypto::new(4, 1, ReplicaId(i), key))
        .collect();
    let shares: Vec<_> = signers
        .iter()
        .map(|c| c.sign_share(&msg).unwrap())
        .collect();
    let v = MockCrypto::verifier(4, 1, key);
    assert!(v.verify_share(ReplicaId(2), &msg, &shares[2]));
    assert!(
        !v.verify_share(ReplicaId(1), &msg, &shares[2]),
        "a share is bound to its signer"
    );
    assert!(v.combine(&msg, &[(ReplicaId(0), shares[0])]).is_err());
    let a = v
        .combine(
            &msg,
            &[(ReplicaId(0), shares[0]), (ReplicaId(3), shares[3])],
        )
        .unwrap();
    let b = v
        .combine(
            &msg,
            &[(ReplicaId(1), shares[1]), (ReplicaId(2), shares[2])],
        )
        .unwrap();
    assert_eq!(a, b);
    assert!(v.verify_group(&msg, &a));
    let spoiled = v
        .combine(
            &msg,
            &[(ReplicaId(0), shares[0]), (ReplicaId(1), shares[3])],
        )
        .unwrap();
    assert!(!v.verify_group(&msg, &spoiled));
    assert!(MockCrypto::verifier(4, 1, key).sign_share(&msg).is_err());
}

/// χ² of leader counts over 10,000 waves against the uniform distribution.
/// The coin of each wave is the group signature on its coin message (equal to
/// the combination of any f + 1 shares, tested above), so it is computed with
/// one signature per wave.
#[test]
fn leader_choice_is_uniform_over_10000_waves() {
    let secret = blsttc::SecretKeySet::random(1, &mut ChaCha20Rng::seed_from_u64(99)).secret_key();
    let cid = ClusterId([0x42; 32]);
    for n in [4usize, 7] {
        let mut counts = vec![0u64; n];
        let waves = 10_000u64;
        for w in 1..=waves {
            let msg = CoinMessage {
                cluster_id: cid,
                wave: Wave(w),
            }
            .signing_bytes();
            let sig = GroupSignature(secret.sign(&msg).to_bytes());
            counts[CoinValue::of(&sig).leader(n).index()] += 1;
        }
        let expected = waves as f64 / n as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // p = 0.001 critical values: df 3 → 16.27, df 6 → 22.46.
        let critical = if n == 4 { 16.27 } else { 22.46 };
        assert!(chi2 < critical, "n={n} counts {counts:?} chi2 {chi2}");
        assert!(counts.iter().all(|&c| c > 0));
    }
}

#[test]
fn coin_from_signature_checks_it() {
    let c = cluster(4, 1, 15);
    let v = BlsCrypto::verifier(c.public.clone());
    let msg = c.coin_msg(4);
    let shares = vec![
        (ReplicaId(0), c.share(0, &msg)),
        (ReplicaId(1), c.share(1, &msg)),
    ];
    let sig = v.combine(&msg.signing_bytes(), &shares).unwrap();
    let coin = belfry_coin::Coin::from_signature(&v, c.cluster_id, Wave(4), sig).unwrap();
    assert_eq!(coin.value, CoinValue::of(&sig));
    assert!(belfry_coin::Coin::from_signature(&v, c.cluster_id, Wave(5), sig).is_none());
}

#[test]
fn secrets_are_never_shown_by_debug_and_round_trip_through_serde() {
    let c = cluster(4, 1, 16);
    let secret_hex = serde_json::to_value(&c.secrets[2]).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = format!("{:?}", c.secrets[2]);
    assert!(
        !shown.contains(&secret_hex) && shown.contains("redacted"),
        "{shown}"
    );
    let back: SecretShare =
        serde_json::from_str(&serde_json::to_string(&c.secrets[2]).unwrap()).unwrap();
    assert_eq!(back, c.secrets[2]);
    let public_json = serde_json::to_string(c.public.as_ref()).unwrap();
    let public: PublicKeys = serde_json::from_str(&public_json).unwrap();
    assert_eq!(public.group_key(), c.public.group_key());
    // A share made with the deserialized secret verifies under the deserialized keys.
    let crypto = BlsCrypto::new(Arc::new(public), back);
    let msg = c.coin_msg(1).signing_bytes();
    let s = crypto.sign_share(&msg).unwrap();
    assert!(crypto.verify_share(ReplicaId(2), &msg, &s));
    assert!(!crypto.verify_share(ReplicaId(1), &msg, &s));
    // Corrupt key material is an error, not a panic.
    assert!(serde_json::from_str::<SecretShare>(r#"{"id":0,"secret":"zz"}"#).is_err());
    assert!(serde_json::from_str::<PublicKeys>(r#"{"n":4,"f":1,"commitment":"00"}"#).is_err());
    assert!(
        deal(3, 1, &mut ChaCha20Rng::seed_from_u64(1)).is_err(),
        "n = 3 cannot tolerate f = 1"
    );
}

/// Golden values for a fixed dealer seed, committed in
/// `testdata/golden_coin.json`: a change to dealing, hashing or encodings that
/// would silently change every cluster's keys fails here.
#[test]
fn fixed_seed_dealing_matches_the_committed_golden_values() {
    let c = cluster(4, 1, 2026);
    let v = BlsCrypto::verifier(c.public.clone());
    let coin_msg = c.coin_msg(1);
    let coin_sig = v
        .combine(
            &coin_msg.signing_bytes(),
            &[
                (ReplicaId(0), c.share(0, &coin_msg)),
                (ReplicaId(1), c.share(1, &coin_msg)),
            ],
        )
        .unwrap();
    let head = TreeHeadMessage {
        cluster_id: c.cluster_id,
        tree_size: 3,
        root: [0x11; 32],
        time: Micros(1_763_700_000_500_000),
    };
    let head_sig = v
        .combine(
            &head.signing_bytes(),
            &[
                (ReplicaId(2), c.share(2, &head)),
                (ReplicaId(3), c.share(3, &head)),
            ],
        )
        .unwrap();
    let actual = serde_json::json!({
        "seed": 2026, "n": 4, "f": 1,
        "group_public_key": c.public.group_key().to_hex(),
        "cluster_id": hex::encode(c.cluster_id.0),
        "coin_wave_1_value": hex::encode(CoinValue::of(&coin_sig).0),
        "tree_head_signature": head_sig.to_hex(),
    });
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/golden_coin.json")).unwrap();
    assert_eq!(
        actual,
        golden,
        "actual: {}",
        serde_json::to_string_pretty(&actual).unwrap()
    );
}

/// Found by the `config` fuzz target (issue #23 §2): blsttc reads a
/// commitment in whole 48-byte points and drops what is left, so a
/// `public_keys` shorter than one point became a polynomial without a degree
/// (`threshold()` underflowed: a panic with overflow checks, a nonsense
/// `ThresholdMismatch` without), and bytes after the last point were accepted
/// silently. Both are refused as malformed hex now.
#[test]
fn a_commitment_not_made_of_whole_points_is_refused() {
    let (public, _) = deal(4, 1, &mut ChaCha20Rng::seed_from_u64(23)).unwrap();
    let good = public.commitment_hex();
    assert!(PublicKeys::from_commitment_hex(4, 1, &good).is_ok());
    for bad in [
        String::new(),
        good[..56].to_string(),
        format!("{good}00"),
        good[..good.len() - 2].to_string(),
    ] {
        let err = PublicKeys::from_commitment_hex(4, 1, &bad).err();
        assert!(
            matches!(
                err,
                Some(belfry_coin::KeyError::Hex {
                    what: "public key commitment",
                    ..
                })
            ),
            "{} hex digits: {err:?}",
            bad.len()
        );
    }
}
