//! Threshold RSA: any f + 1 shares make an ordinary RSA signature; a wrong
//! share is found by its proof; a share never matches another replica's key.

use std::sync::{Arc, OnceLock};

use belfry_tsa::{deal, KeyShare, PublicKey, SignatureShare};
use num_bigint::BigUint;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct Fixture {
    public: Arc<PublicKey>,
    shares: Vec<KeyShare>,
}

/// One 2048-bit key for 7 replicas (f = 2, threshold 3), dealt once.
fn fixture() -> &'static Fixture {
    static KEY: OnceLock<Fixture> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let dealt = deal(&mut rng, 2048, 7, 3, |_| {}).expect("deal");
        let (public, shares) = dealt.key_shares().expect("shares");
        Fixture { public, shares }
    })
}

fn message(seed: u8) -> BigUint {
    let mut bytes = vec![0x00, 0x01];
    bytes.extend(std::iter::repeat_n(0xff, 200));
    bytes.push(0);
    bytes.extend(std::iter::repeat_n(seed, 54));
    BigUint::from_bytes_be(&bytes)
}

fn sign_all(x: &BigUint) -> Vec<SignatureShare> {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    fixture()
        .shares
        .iter()
        .map(|s| s.sign(x, &mut rng).expect("sign"))
        .collect()
}

#[test]
fn the_dealt_key_has_the_asked_size_and_a_threshold_of_f_plus_one() {
    let k = &fixture().public;
    assert_eq!(k.n.bits(), 2048);
    assert_eq!(k.e, 65_537);
    assert_eq!(k.threshold, 3);
    assert_eq!(k.verification_keys.len(), 7);
    k.check().expect("well-formed");
}

#[test]
fn any_threshold_subset_of_shares_makes_the_same_ordinary_rsa_signature() {
    let k = &fixture().public;
    let x = message(1);
    let shares = sign_all(&x);
    let mut signatures = Vec::new();
    for subset in [[0, 1, 2], [4, 5, 6], [6, 0, 3], [1, 5, 2]] {
        let chosen: Vec<&SignatureShare> = subset.iter().map(|&i| &shares[i]).collect();
        let y = k
            .combine(&x, &chosen)
            .expect("combine")
            .expect("valid shares combine");
        assert!(k.verify(&x, &y));
        signatures.push(y);
    }
    // RSA signatures are unique: every subset gives the same y.
    assert!(signatures.windows(2).all(|w| w[0] == w[1]));
    // ... and the signature is checked as any RSA verifier would: y^e = x.
    assert_eq!(signatures[0].modpow(&BigUint::from(65_537u32), &k.n), x);
    // Every honest share's proof verifies.
    for s in &shares {
        assert!(
            k.verify_share(&x, s),
            "replica {}'s honest share",
            s.replica
        );
    }
}

#[test]
fn a_wrong_share_spoils_the_combination_and_its_proof_names_it() {
    let k = &fixture().public;
    let x = message(2);
    let mut shares = sign_all(&x);
    // Replica 1 answers with its share of another message, with a valid proof
    // for that message.
    shares[1] = sign_all(&message(3)).swap_remove(1);
    let chosen: Vec<&SignatureShare> = [0, 1, 2].iter().map(|&i| &shares[i]).collect();
    assert_eq!(k.combine(&x, &chosen).expect("combine"), None);
    let bad: Vec<usize> = shares
        .iter()
        .filter(|s| !k.verify_share(&x, s))
        .map(|s| s.replica)
        .collect();
    assert_eq!(bad, vec![1]);
    // Without it, any three others still sign.
    let chosen: Vec<&SignatureShare> = [0, 2, 3].iter().map(|&i| &shares[i]).collect();
    assert!(k.combine(&x, &chosen).expect("combine").is_some());
}

#[test]
fn a_share_altered_in_any_part_fails_its_proof() {
    let k = &fixture().public;
    let x = message(4);
    let good = sign_all(&x).swap_remove(3);
    let mut value = good.clone();
    value.value += 1u32;
    let mut challenge = good.clone();
    challenge.challenge[0] ^= 1;
    let mut z = good.clone();
    z.z += 1u32;
    let mut other = good.clone();
    other.replica = 4;
    for (what, s) in [
        ("value", value),
        ("challenge", challenge),
        ("z", z),
        ("replica", other),
    ] {
        assert!(!k.verify_share(&x, &s), "altered {what} accepted");
    }
}

#[test]
fn too_few_or_repeated_shares_are_refused_and_a_secret_must_match_its_key() {
    let f = fixture();
    let x = message(5);
    let shares = sign_all(&x);
    assert!(f.public.combine(&x, &[&shares[0], &shares[1]]).is_err());
    assert!(f
        .public
        .combine(&x, &[&shares[0], &shares[0], &shares[1]])
        .is_err());
    // Replica 2's secret offered as replica 3's.
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let dealt = deal(&mut rng, 2048, 7, 3, |_| {}).expect("deal again, same seed");
    assert_eq!(dealt.public, *f.public, "dealing is a function of the seed");
    let err = KeyShare::new(f.public.clone(), 3, &dealt.secrets[2]).expect_err("wrong share");
    assert!(err.to_string().contains("verification key"), "{err}");
}

#[test]
fn moduli_of_odd_sizes_are_refused_not_signed_with() {
    let f = fixture();
    for extra_bits in [1u32, 952] {
        // 2049 and 3000 bits: not a multiple of 128.
        let mut k = (*f.public).clone();
        k.n = (&k.n << extra_bits) + 1u32;
        let err = k.check().expect_err("odd size refused");
        assert!(err.to_string().contains("multiple of 128"), "{err}");
        assert!(KeyShare::new(Arc::new(k), 0, &[1]).is_err());
    }
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    assert!(deal(&mut rng, 2112, 4, 2, |_| {}).is_err());
}
