//! Threshold RSA after Shoup, "Practical Threshold Signatures" (Eurocrypt
//! 2000): `N = pq` with safe primes `p = 2p' + 1`, `q = 2q' + 1`; the secret
//! exponent `d = e⁻¹ mod m` (`m = p'q'`) is shared with a polynomial of degree
//! `k − 1` over `Z_m`; replica `i` (Shoup index `i + 1`) answers a message `x`
//! with `x_i = x^(2Δ·s_i) mod N` (`Δ = l!`) and a proof that `x_i` used the
//! same exponent as its verification key `v_i = v^(s_i)`; any `k` shares
//! combine by Lagrange in the exponent and one extended-gcd step with `e` into
//! an ordinary RSA signature `y`, `y^e = x mod N`.
//!
//! Secret arithmetic (a share, a proof's commitment and response) runs on
//! `crypto-bigint`'s constant-time integers with a fixed exponent precision;
//! public arithmetic (combining, checking proofs) on `num-bigint`. Dealing is a
//! one-off offline step on the dealer's machine (`belfry keygen`), also on
//! `num-bigint` apart from the safe primes.

use std::sync::Arc;

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, NonZero, Odd, RandomBits, RandomMod};
use num_bigint::{BigInt, BigUint, RandBigInt, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

mod dealing;
pub use dealing::deal;

/// The public exponent every belfry TSA key uses (prime, larger than any
/// cluster, so `gcd(e, 4Δ²) = 1`).
pub const PUBLIC_EXPONENT: u32 = 65_537;
/// Bits of a proof's challenge (Shoup's `L1`).
const CHALLENGE_BITS: u32 = 128;
/// Domain of the proofs' Fiat–Shamir hash.
const PROOF_DOMAIN: &[u8] = b"belfry-tsa-share-proof-v1";
/// Largest modulus accepted from a configuration file.
pub const MAX_MODULUS_BITS: u64 = 8192;
/// Smallest modulus accepted (openssl's default security level refuses less).
pub const MIN_MODULUS_BITS: u64 = 2048;

/// Why a key, a share or a combination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// A key's numbers are malformed.
    #[error("threshold RSA key: {0}")]
    Key(String),
    /// Fewer valid shares than the threshold.
    #[error("{valid} valid signature shares, {needed} needed")]
    TooFewShares {
        /// Valid shares held.
        valid: usize,
        /// The threshold.
        needed: usize,
    },
    /// A share's index is outside the cluster or repeated.
    #[error("signature share from replica {0}: not a member, or given twice")]
    BadIndex(usize),
    /// The message is not an integer in `[1, N)` prime to `N`.
    #[error("the message is not a unit modulo N")]
    BadMessage,
}

/// The cluster's public threshold RSA key: the RSA key every verifier sees
/// (`n`, `e`) and what checking shares needs (`v`, `v_i`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The modulus.
    pub n: BigUint,
    /// The public exponent.
    pub e: u32,
    /// The verification base, a random square modulo `n`.
    pub v: BigUint,
    /// `v^(s_i)` for every replica `i` (index 0 = replica 0).
    pub verification_keys: Vec<BigUint>,
    /// Shares needed to sign (`f + 1`).
    pub threshold: usize,
}

impl PublicKey {
    /// Checks the key's form: sizes, an odd modulus, `e` prime to `4Δ²`,
    /// `v` and every `v_i` units below `n`, `1 ≤ threshold ≤ replicas`.
    pub fn check(&self) -> Result<(), ThresholdError> {
        let bits = self.n.bits();
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits)
            || bits % 128 != 0
            || self.n.is_even()
        {
            return Err(ThresholdError::Key(format!(
                "modulus of {bits} bits (odd, a multiple of 128 bits from {MIN_MODULUS_BITS} to {MAX_MODULUS_BITS} needed)"
            )));
        }
        let l = self.verification_keys.len();
        if l == 0 || self.threshold == 0 || self.threshold > l {
            return Err(ThresholdError::Key(format!(
                "threshold {} of {l} replicas",
                self.threshold
            )));
        }
        if self.e < 3 || self.e % 2 == 0 || u64::from(self.e) <= l as u64 {
            return Err(ThresholdError::Key(format!(
                "public exponent {} (an odd prime above the number of replicas needed)",
                self.e
            )));
        }
        let e = BigUint::from(self.e);
        if !(self.four_delta_sq()).gcd(&e).is_one() {
            return Err(ThresholdError::Key(
                "public exponent shares a factor with 4Δ²".into(),
            ));
        }
        for (i, k) in std::iter::once(&self.v)
            .chain(&self.verification_keys)
            .enumerate()
        {
            if k.is_zero() || k >= &self.n || !k.gcd(&self.n).is_one() {
                return Err(ThresholdError::Key(format!(
                    "verification key {i} is not a unit modulo N"
                )));
            }
        }
        Ok(())
    }

    /// Replicas holding a share.
    pub fn replicas(&self) -> usize {
        self.verification_keys.len()
    }

    /// Bytes of the modulus (and of a signature).
    pub fn modulus_len(&self) -> usize {
        (self.n.bits() as usize).div_ceil(8)
    }

    /// `Δ = l!`.
    pub fn delta(&self) -> BigUint {
        (1..=self.replicas() as u64).map(BigUint::from).product()
    }

    fn four_delta_sq(&self) -> BigUint {
        let d = self.delta();
        &d * &d * 4u32
    }

    /// Checks an ordinary RSA signature: `y^e = x mod N`.
    pub fn verify(&self, x: &BigUint, y: &BigUint) -> bool {
        y < &self.n && &y.modpow(&BigUint::from(self.e), &self.n) == x
    }

    /// Checks one share's proof (public arithmetic; used only to find the
    /// culprit when a combination fails).
    pub fn verify_share(&self, x: &BigUint, share: &SignatureShare) -> bool {
        let Some(vk) = self.verification_keys.get(share.replica) else {
            return false;
        };
        let n = &self.n;
        if share.value.is_zero() || &share.value >= n || share.z.bits() > self.response_bits() {
            return false;
        }
        let Some(x_tilde) = self.x_tilde(x) else {
            return false;
        };
        let c = BigUint::from_bytes_be(&share.challenge);
        let x_i_sq = share.value.modpow(&BigUint::from(2u32), n);
        let (Some(vk_inv), Some(xi_inv)) = (vk.modinv(n), x_i_sq.modinv(n)) else {
            return false;
        };
        let v_commit = self.v.modpow(&share.z, n) * vk_inv.modpow(&c, n) % n;
        let x_commit = x_tilde.modpow(&share.z, n) * xi_inv.modpow(&c, n) % n;
        challenge(n, &self.v, &x_tilde, vk, &x_i_sq, &v_commit, &x_commit) == share.challenge
    }

    /// Combines `threshold` shares of `x` into `y` with `y^e = x mod N`, or
    /// `None` when they do not (some share is wrong: check proofs to learn
    /// which). Shares past the threshold are ignored.
    pub fn combine(
        &self,
        x: &BigUint,
        shares: &[&SignatureShare],
    ) -> Result<Option<BigUint>, ThresholdError> {
        let n = &self.n;
        if x.is_zero() || x >= n || !x.gcd(n).is_one() {
            return Err(ThresholdError::BadMessage);
        }
        if shares.len() < self.threshold {
            return Err(ThresholdError::TooFewShares {
                valid: shares.len(),
                needed: self.threshold,
            });
        }
        let used = &shares[..self.threshold];
        let mut seen = vec![false; self.replicas()];
        for s in used {
            match seen.get_mut(s.replica) {
                Some(flag) if !*flag => *flag = true,
                _ => return Err(ThresholdError::BadIndex(s.replica)),
            }
        }
        let delta = BigInt::from_biguint(Sign::Plus, self.delta());
        let mut w = BigUint::one();
        for s in used {
            let j = s.replica as i64 + 1;
            let mut num = delta.clone();
            let mut den = BigInt::one();
            for t in used {
                let jj = t.replica as i64 + 1;
                if jj != j {
                    num *= jj;
                    den *= jj - j;
                }
            }
            // Δ makes every coefficient an integer (Shoup, Lemma 1).
            let lambda = num / den;
            match signed_pow(&s.value, &(lambda * 2i32), n) {
                Some(term) => w = w * term % n,
                None => return Ok(None),
            }
        }
        // a·4Δ² + b·e = 1
        let e_prime = BigInt::from_biguint(Sign::Plus, self.four_delta_sq());
        let e = BigInt::from(self.e);
        let g = e_prime.extended_gcd(&e);
        if !g.gcd.is_one() {
            return Err(ThresholdError::Key(
                "public exponent shares a factor with 4Δ²".into(),
            ));
        }
        let y = signed_pow(&w, &g.x, n)
            .zip(signed_pow(x, &g.y, n))
            .map(|(a, b)| a * b % n);
        Ok(y.filter(|y| self.verify(x, y)))
    }

    fn x_tilde(&self, x: &BigUint) -> Option<BigUint> {
        if x.is_zero() || x >= &self.n {
            return None;
        }
        Some(x.modpow(&(self.delta() * 4u32), &self.n))
    }

    /// Largest bit length of an honest proof's response `z = s_i·c + r`.
    fn response_bits(&self) -> u64 {
        self.n.bits() + 2 * u64::from(CHALLENGE_BITS) + 1
    }
}

/// `base^exp mod n` for a signed exponent (a negative one inverts the base).
fn signed_pow(base: &BigUint, exp: &BigInt, n: &BigUint) -> Option<BigUint> {
    if exp.is_negative() {
        Some(base.modinv(n)?.modpow(exp.magnitude(), n))
    } else {
        Some(base.modpow(exp.magnitude(), n))
    }
}

fn challenge(
    n: &BigUint,
    v: &BigUint,
    x_tilde: &BigUint,
    vk: &BigUint,
    x_i_sq: &BigUint,
    v_commit: &BigUint,
    x_commit: &BigUint,
) -> [u8; 16] {
    let width = (n.bits() as usize).div_ceil(8);
    let mut h = Sha256::new();
    h.update(PROOF_DOMAIN);
    for value in [n, v, x_tilde, vk, x_i_sq, v_commit, x_commit] {
        let bytes = value.to_bytes_be();
        let mut padded = vec![0u8; width.saturating_sub(bytes.len())];
        padded.extend_from_slice(&bytes);
        h.update((padded.len() as u32).to_be_bytes());
        h.update(&padded);
    }
    let out = h.finalize();
    let mut c = [0u8; 16];
    c.copy_from_slice(&out[..16]);
    c
}

/// One replica's signature share with its proof of correctness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureShare {
    /// The replica (0-based; Shoup's index is `replica + 1`).
    pub replica: usize,
    /// `x^(2Δ·s_i) mod N`.
    pub value: BigUint,
    /// The proof's challenge `c`.
    pub challenge: [u8; 16],
    /// The proof's response `z = s_i·c + r`.
    pub z: BigUint,
}

/// One replica's secret share, ready to sign: `s_i` and `2Δ·s_i` at fixed
/// precision, and the modulus in Montgomery form.
pub struct KeyShare {
    replica: usize,
    s: BoxedUint,
    exponent: BoxedUint,
    params: Arc<BoxedMontyParams>,
    public: Arc<PublicKey>,
}

impl std::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyShare(replica {}, secret elided)", self.replica)
    }
}

impl Drop for KeyShare {
    fn drop(&mut self) {
        self.s.zeroize();
        self.exponent.zeroize();
    }
}

impl KeyShare {
    /// The share of `replica` from its secret `s_i` (big-endian), checked
    /// against the public verification key `v^(s_i)`.
    pub fn new(
        public: Arc<PublicKey>,
        replica: usize,
        secret: &[u8],
    ) -> Result<KeyShare, ThresholdError> {
        public.check()?;
        let Some(vk) = public.verification_keys.get(replica) else {
            return Err(ThresholdError::BadIndex(replica));
        };
        let n_bits = public.n.bits() as u32;
        let precision = round_bits(n_bits);
        if secret.len() > (precision / 8) as usize {
            return Err(ThresholdError::Key(
                "secret share larger than the modulus".into(),
            ));
        }
        let s = from_bytes(secret, precision)?;
        let modulus = from_big(&public.n, precision)?;
        let Some(odd) = Option::<Odd<BoxedUint>>::from(modulus.to_odd()) else {
            return Err(ThresholdError::Key("even modulus".into()));
        };
        let params = Arc::new(BoxedMontyParams::new(odd));
        let v_m = BoxedMontyForm::new_with_arc(from_big(&public.v, precision)?, params.clone());
        if &to_big(&v_m.pow(&s).retrieve()) != vk {
            return Err(ThresholdError::Key(format!(
                "secret share does not match replica {replica}'s verification key"
            )));
        }
        // 2Δ·s_i at the product's own width (the sum of both widths: fixed
        // by the key, not by the secret).
        let two_delta = public.delta() * 2u32;
        let exponent = s.mul(&from_big(&two_delta, round_bits(two_delta.bits() as u32))?);
        Ok(KeyShare {
            replica,
            s,
            exponent,
            params,
            public,
        })
    }

    /// The replica this share belongs to.
    pub fn replica(&self) -> usize {
        self.replica
    }

    /// The public key.
    pub fn public(&self) -> &Arc<PublicKey> {
        &self.public
    }

    /// Signs `x` (a PKCS#1 v1.5 encoded message as an integer below `N`):
    /// the share `x^(2Δ·s_i)` and its proof, both computed in constant time
    /// with respect to the secret.
    pub fn sign(
        &self,
        x: &BigUint,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<SignatureShare, ThresholdError> {
        let public = &*self.public;
        let n = &public.n;
        if x.is_zero() || x >= n || !x.gcd(n).is_one() {
            return Err(ThresholdError::BadMessage);
        }
        let precision = self.params.bits_precision();
        let x_m = BoxedMontyForm::new_with_arc(from_big(x, precision)?, self.params.clone());
        let value = to_big(&x_m.pow(&self.exponent).retrieve());
        let x_tilde = public.x_tilde(x).ok_or(ThresholdError::BadMessage)?;
        let r_bits = public.n.bits() as u32 + 2 * CHALLENGE_BITS;
        let r_precision = round_bits(r_bits + 64);
        let mut r = BoxedUint::random_bits_with_precision(rng, r_bits, r_precision);
        let v_m =
            BoxedMontyForm::new_with_arc(from_big(&public.v, precision)?, self.params.clone());
        let xt_m =
            BoxedMontyForm::new_with_arc(from_big(&x_tilde, precision)?, self.params.clone());
        let v_commit = to_big(&v_m.pow(&r).retrieve());
        let x_commit = to_big(&xt_m.pow(&r).retrieve());
        let x_i_sq = value.modpow(&BigUint::from(2u32), n);
        let vk = &public.verification_keys[self.replica];
        let c = challenge(n, &public.v, &x_tilde, vk, &x_i_sq, &v_commit, &x_commit);
        let c_big = BoxedUint::from_be_slice(&c, 128)
            .map_err(|_| ThresholdError::Key("challenge width".into()))?;
        // z = s·c + r at one fixed width (no secret-dependent length).
        let product = Zeroizing::new(self.s.mul(&c_big));
        let sc = Zeroizing::new(product.widen(r_precision));
        let z = sc.wrapping_add(&r);
        r.zeroize();
        Ok(SignatureShare {
            replica: self.replica,
            value,
            challenge: c,
            z: to_big(&z),
        })
    }
}

fn round_bits(bits: u32) -> u32 {
    bits.div_ceil(64) * 64
}

fn from_big(x: &BigUint, precision: u32) -> Result<BoxedUint, ThresholdError> {
    from_bytes(&x.to_bytes_be(), precision)
}

/// A big-endian integer at `precision` bits (a whole number of limbs), or
/// an error when it does not fit.
fn from_bytes(bytes: &[u8], precision: u32) -> Result<BoxedUint, ThresholdError> {
    let width = (precision / 8) as usize;
    let significant = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
    if significant.len() > width {
        return Err(ThresholdError::Key(format!(
            "a {}-byte value where at most {width} fit",
            significant.len()
        )));
    }
    let mut padded = Zeroizing::new(vec![0u8; width - significant.len()]);
    padded.extend_from_slice(significant);
    BoxedUint::from_be_slice(&padded, precision)
        .map_err(|e| ThresholdError::Key(format!("integer width: {e}")))
}

fn to_big(x: &BoxedUint) -> BigUint {
    BigUint::from_bytes_be(&x.to_be_bytes())
}

/// A freshly dealt key: the public part and every replica's secret `s_i`
/// (big-endian), in replica order.
pub struct Dealt {
    /// The public key.
    pub public: PublicKey,
    /// `s_i` for each replica.
    pub secrets: Vec<Zeroizing<Vec<u8>>>,
}

/// Signs `x` with each of `shares` (distinct replicas, at least the
/// threshold) and combines them into the RSA signature — for whoever holds
/// several shares at once: the dealer signing the certificate, tests,
/// benchmarks. A running cluster never does; its replicas sign one each.
pub fn sign_with(
    shares: &[&KeyShare],
    x: &BigUint,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<BigUint, ThresholdError> {
    let public =
        shares
            .first()
            .map(|s| s.public().clone())
            .ok_or(ThresholdError::TooFewShares {
                valid: 0,
                needed: 1,
            })?;
    let signed = shares
        .iter()
        .map(|s| s.sign(x, rng))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&SignatureShare> = signed.iter().collect();
    public
        .combine(x, &refs)?
        .ok_or_else(|| ThresholdError::Key("the shares do not combine".into()))
}

impl Dealt {
    /// Every replica's share, ready to sign, and the public key they share
    /// (for the dealer's own use: the certificate, tests, benchmarks).
    pub fn key_shares(&self) -> Result<(Arc<PublicKey>, Vec<KeyShare>), ThresholdError> {
        let public = Arc::new(self.public.clone());
        let shares = self
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| KeyShare::new(public.clone(), i, s))
            .collect::<Result<_, _>>()?;
        Ok((public, shares))
    }
}
