//! The trusted dealer's side of threshold RSA: two safe primes, the secret
//! exponent shared with a polynomial over `Z_{p'q'}`, and the public key
//! with every replica's verification key.

use super::*;

/// Deals a `bits`-bit key for `replicas` replicas, any `threshold` of which
/// sign: two safe primes of `bits / 2` bits (their product exactly `bits`
/// bits), `d = e⁻¹ mod p'q'`, a random polynomial over `Z_{p'q'}` with
/// `f(0) = d`, and a random square `v`. The primes and `d` are dropped (and
/// cleared) before this returns; `progress` is told after each prime.
pub fn deal(
    rng: &mut (impl RngCore + CryptoRng),
    bits: u32,
    replicas: usize,
    threshold: usize,
    progress: impl FnMut(&str),
) -> Result<Dealt, ThresholdError> {
    check_deal(bits, replicas, threshold)?;
    let precision = round_bits(bits);
    let (p, q, n) = safe_primes(rng, bits, progress);
    let mut secrets = share_exponent(rng, p, q, precision, threshold, replicas)?;
    let public = public_key(rng, n, &secrets, precision, threshold)?;
    public.check()?;
    Ok(Dealt {
        public,
        secrets: secrets
            .iter_mut()
            .map(|s| {
                let bytes = Zeroizing::new(s.to_be_bytes().into_vec());
                s.zeroize();
                bytes
            })
            .collect(),
    })
}

/// The modulus size and the threshold are ones a key may have.
fn check_deal(bits: u32, replicas: usize, threshold: usize) -> Result<(), ThresholdError> {
    if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&u64::from(bits)) || bits % 128 != 0 {
        return Err(ThresholdError::Key(format!(
            "{bits}-bit modulus: a multiple of 128 from {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS}"
        )));
    }
    if threshold == 0 || threshold > replicas || replicas as u64 >= u64::from(PUBLIC_EXPONENT) {
        return Err(ThresholdError::Key(format!(
            "threshold {threshold} of {replicas}"
        )));
    }
    Ok(())
}

/// Two distinct safe primes `p`, `q` of `bits / 2` bits whose product `n`
/// has exactly `bits` bits.
fn safe_primes(
    rng: &mut (impl RngCore + CryptoRng),
    bits: u32,
    mut progress: impl FnMut(&str),
) -> (BoxedUint, BoxedUint, BigUint) {
    let half = bits / 2;
    let p: BoxedUint = crypto_primes::generate_safe_prime_with_rng(rng, half);
    progress("first safe prime");
    let (q, n) = loop {
        let q: BoxedUint = crypto_primes::generate_safe_prime_with_rng(rng, half);
        let n = to_big(&p.mul(&q));
        if n.bits() == u64::from(bits) && q != p {
            break (q, n);
        }
    };
    progress("second safe prime");
    (p, q, n)
}

/// Every replica's share `s_i = f(i + 1) mod p'q'` of `d = e⁻¹ mod p'q'`,
/// `f` a random polynomial of degree `threshold − 1` with `f(0) = d`. The
/// primes, `p'q'` and the coefficients are cleared.
fn share_exponent(
    rng: &mut (impl RngCore + CryptoRng),
    mut p: BoxedUint,
    mut q: BoxedUint,
    precision: u32,
    threshold: usize,
    replicas: usize,
) -> Result<Vec<BoxedUint>, ThresholdError> {
    // m = p'q', odd; every secret below is taken modulo m at `precision` bits.
    let mut m = (p.shr(1).mul(&q.shr(1))).widen(precision);
    let (Some(m_odd), Some(m_nz)) = (
        Option::<Odd<BoxedUint>>::from(m.to_odd()),
        Option::<NonZero<BoxedUint>>::from(NonZero::new(m.clone())),
    ) else {
        return Err(ThresholdError::Key("p'q' is even".into()));
    };
    let d = Option::<BoxedUint>::from(
        BoxedUint::from(PUBLIC_EXPONENT)
            .widen(precision)
            .inv_odd_mod(&m_odd),
    )
    .ok_or_else(|| ThresholdError::Key("e not invertible modulo p'q'".into()))?;
    let mut coefficients = vec![d];
    for _ in 1..threshold {
        coefficients.push(BoxedUint::random_mod(rng, &m_nz));
    }
    let secrets = evaluate_shares(&coefficients, &m, precision, replicas)?;
    for c in &mut coefficients {
        c.zeroize();
    }
    // The primes, p'q' and the coefficients (d among them) are cleared;
    // copies the prime search and the arithmetic made on the way (and
    // p'q' as Odd/NonZero) are dropped without clearing.
    p.zeroize();
    q.zeroize();
    m.zeroize();
    Ok(secrets)
}

/// The polynomial with these coefficients (constant first) at `1..=replicas`,
/// modulo `m`.
fn evaluate_shares(
    coefficients: &[BoxedUint],
    m: &BoxedUint,
    precision: u32,
    replicas: usize,
) -> Result<Vec<BoxedUint>, ThresholdError> {
    let wide = precision + 128;
    let Some(m_wide) = Option::<NonZero<BoxedUint>>::from(NonZero::new(m.widen(wide))) else {
        return Err(ThresholdError::Key("p'q' is zero".into()));
    };
    let mut secrets = Vec::with_capacity(replicas);
    for i in 1..=replicas as u32 {
        let i = BoxedUint::from(i).widen(64);
        // Horner's rule: acc = acc·i + c (mod m), at fixed widths.
        let mut acc = BoxedUint::zero_with_precision(precision);
        for c in coefficients.iter().rev() {
            let sum = acc.mul(&i).widen(wide).wrapping_add(&c.widen(wide));
            acc = sum.rem(&m_wide).shorten(precision);
        }
        secrets.push(acc);
    }
    Ok(secrets)
}

/// The public key: `n`, a random square `v` and every `v_i = v^(s_i)`.
fn public_key(
    rng: &mut (impl RngCore + CryptoRng),
    n: BigUint,
    secrets: &[BoxedUint],
    precision: u32,
    threshold: usize,
) -> Result<PublicKey, ThresholdError> {
    let r = loop {
        let r = rng.gen_biguint_below(&n);
        if !r.is_zero() && r.gcd(&n).is_one() {
            break r;
        }
    };
    let v = r.modpow(&BigUint::from(2u32), &n);
    let Some(n_odd) = Option::<Odd<BoxedUint>>::from(from_big(&n, precision)?.to_odd()) else {
        return Err(ThresholdError::Key("even modulus".into()));
    };
    let params = Arc::new(BoxedMontyParams::new(n_odd));
    let v_m = BoxedMontyForm::new_with_arc(from_big(&v, precision)?, params);
    let verification_keys = secrets
        .iter()
        .map(|s| to_big(&v_m.pow(s).retrieve()))
        .collect();
    Ok(PublicKey {
        n,
        e: PUBLIC_EXPONENT,
        v,
        verification_keys,
        threshold,
    })
}
