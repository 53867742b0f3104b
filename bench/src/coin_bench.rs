//! Micro benchmark of the threshold coin (issue: foundation): share sign, share
//! verify, optimistic combine through the `SignatureCollector` (f + 1 shares,
//! one group verification) for n = 4/f = 1 and n = 16/f = 5, and the coin value
//! and leader from a group signature. The baseline, measured in the same run, is
//! a plain single-key BLS signature with the same ciphersuite: the ratios show
//! what the threshold layer costs on top of BLS itself.

use crate::report::{measure, peak_rss_kib, summarise, OpReport};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{
    deal, BlsCrypto, ClusterParams, CoinMessage, CoinValue, Policy, ReplicaId, SignatureCollector,
    SignedMessage, ThresholdCrypto, Wave,
};
use rand::SeedableRng;
use serde::Serialize;
use std::sync::Arc;

/// The whole report.
#[derive(Debug, Serialize)]
pub struct CoinBenchReport {
    /// Iterations per operation.
    pub iterations: u64,
    /// One row per operation.
    pub operations: Vec<OpReport>,
    /// Peak RSS of the benchmark process.
    pub peak_rss_kib: Option<u64>,
}

/// Runs the benchmark.
pub fn run(iterations: u64) -> anyhow::Result<CoinBenchReport> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let mut rows = Vec::new();
    let base = baseline(iterations, &mut rng, &mut rows);
    for (n, f) in [(4usize, 1usize), (16, 5)] {
        threshold_rows(n, f, iterations, &base, &mut rng, &mut rows)?;
    }
    coin_value_row(iterations, base.sign_ns, &mut rng, &mut rows)?;
    Ok(CoinBenchReport {
        iterations,
        operations: rows,
        peak_rss_kib: peak_rss_kib(),
    })
}

/// The baseline's mean times, ns.
struct Baseline {
    /// A plain BLS signature.
    sign_ns: f64,
    /// A plain BLS verification.
    verify_ns: f64,
}

/// Baseline: plain BLS sign and verify under one key; their rows.
fn baseline(
    iterations: u64,
    rng: &mut rand_chacha::ChaCha20Rng,
    rows: &mut Vec<OpReport>,
) -> Baseline {
    let plain = blsttc::SecretKeySet::random(0, rng).secret_key();
    let plain_pk = plain.public_key();
    let probe = b"belfry-coin-v1 baseline message of typical length 54 b".to_vec();
    let sign_base = measure(iterations, || {
        std::hint::black_box(plain.sign(&probe));
    });
    let sig = plain.sign(&probe);
    let verify_base = measure(iterations, || {
        std::hint::black_box(plain_pk.verify(&sig, &probe));
    });
    let base_sign_ns = sign_base.mean();
    let base_verify_ns = verify_base.mean();
    rows.push(summarise(
        "baseline: plain BLS sign",
        &sign_base,
        base_sign_ns,
    ));
    rows.push(summarise(
        "baseline: plain BLS verify",
        &verify_base,
        base_verify_ns,
    ));
    Baseline {
        sign_ns: base_sign_ns,
        verify_ns: base_verify_ns,
    }
}

/// Share sign, share verify and optimistic combine for `n` replicas, `f`
/// faulty; their rows.
fn threshold_rows(
    n: usize,
    f: usize,
    iterations: u64,
    base: &Baseline,
    rng: &mut rand_chacha::ChaCha20Rng,
    rows: &mut Vec<OpReport>,
) -> anyhow::Result<()> {
    let (public, secrets) = deal(n, f, rng)?;
    let public = Arc::new(public);
    let cluster_id = ClusterParams {
        group_public_key: public.group_key(),
        n: n as u16,
        f: f as u16,
        policy: Policy::Lamport,
        genesis_time: Micros(1_763_700_000_000_000),
    }
    .cluster_id();
    let signers: Vec<BlsCrypto> = secrets
        .iter()
        .map(|s| BlsCrypto::new(public.clone(), s.clone()))
        .collect();
    let verifier = BlsCrypto::verifier(public.clone());
    let msg = CoinMessage {
        cluster_id,
        wave: Wave(1),
    };
    let bytes = msg.signing_bytes();

    let h = measure(iterations, || {
        std::hint::black_box(signers[0].sign_share(&bytes).ok());
    });
    rows.push(summarise(&format!("share sign (n={n})"), &h, base.sign_ns));

    let share = signers[1].sign_share(&bytes)?;
    let h = measure(iterations, || {
        std::hint::black_box(verifier.verify_share(ReplicaId(1), &bytes, &share));
    });
    rows.push(summarise(
        &format!("share verify (n={n})"),
        &h,
        base.verify_ns,
    ));

    let shares: Vec<_> = (0..=f)
        .map(|i| Ok((ReplicaId(i as u16), signers[i].sign_share(&bytes)?)))
        .collect::<Result<_, belfry_replica::coin::CryptoError>>()?;
    let h = measure(iterations, || {
        let mut c = SignatureCollector::new(&msg, n, f);
        let mut out = None;
        for (id, s) in &shares {
            out = out.or(c.add(&verifier, *id, *s).output.first().copied());
        }
        assert!(out.is_some(), "valid shares combine");
    });
    rows.push(summarise(
        &format!("optimistic combine f+1={} + verify (n={n})", f + 1),
        &h,
        base.verify_ns,
    ));
    Ok(())
}

/// The coin value and leader from a group signature; its row.
fn coin_value_row(
    iterations: u64,
    base_sign_ns: f64,
    rng: &mut rand_chacha::ChaCha20Rng,
    rows: &mut Vec<OpReport>,
) -> anyhow::Result<()> {
    let group_sig = {
        let (public, secrets) = deal(4, 1, rng)?;
        let c = BlsCrypto::new(Arc::new(public), secrets[0].clone());
        let s0 = c.sign_share(b"x")?;
        let s1 =
            BlsCrypto::new(Arc::new(c.public().clone()), secrets[1].clone()).sign_share(b"x")?;
        c.combine(b"x", &[(ReplicaId(0), s0), (ReplicaId(1), s1)])?
    };
    let h = measure(iterations.saturating_mul(100), || {
        let v = CoinValue::of(std::hint::black_box(&group_sig));
        std::hint::black_box(v.leader(16));
    });
    rows.push(summarise("coin value + leader", &h, base_sign_ns));
    Ok(())
}
