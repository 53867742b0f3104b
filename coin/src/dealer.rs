//! The trusted dealer and the key material it hands out.

use crate::{max_faulty, ReplicaId};
use rand::{CryptoRng, RngCore};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Key material that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `n` or `f` out of range.
    #[error("cannot deal keys for n = {n}, f = {f}: need n >= 1 and n >= 3f + 1")]
    BadParameters {
        /// Replicas.
        n: usize,
        /// Fault bound.
        f: usize,
    },
    /// A group public key that is not a valid compressed G1 point.
    #[error("invalid group public key: not a compressed BLS12-381 G1 point")]
    InvalidPublicKey,
    /// A secret key that is not a valid scalar.
    #[error("invalid secret key share: not a canonical BLS12-381 scalar")]
    InvalidSecret,
    /// Hex that does not decode, or has the wrong length.
    #[error("invalid hex for {what}: {detail}")]
    Hex {
        /// What was being decoded.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// A trust anchor without the `belfry1:` prefix.
    #[error("a trust anchor looks like belfry1:<96 hex digits>, got {0:?}")]
    AnchorFormat(String),
    /// A public key set whose threshold does not match `f`.
    #[error("public key set has threshold {found}, expected f = {expected}")]
    ThresholdMismatch {
        /// Declared f.
        expected: usize,
        /// Degree of the commitment.
        found: usize,
    },
}

fn decode_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], KeyError> {
    let bytes = hex::decode(s).map_err(|e| KeyError::Hex {
        what,
        detail: e.to_string(),
    })?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Hex {
        what,
        detail: format!("expected {} bytes, got {}", N, bytes.len()),
    })
}

/// Bytes of a compressed G1 point (a public key, or a commitment coefficient).
const G1_BYTES: usize = 48;

/// The threshold group public key (48-byte compressed G1 point), checked to be
/// a valid point when built.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupPublicKey([u8; 48]);

impl GroupPublicKey {
    /// Parses and validates a compressed G1 point. The last key validated on
    /// this thread is remembered, so that a verifier reading many receipts
    /// of one cluster decompresses and subgroup-checks its key once (~70 µs
    /// each time otherwise).
    pub fn from_bytes(bytes: [u8; 48]) -> Result<Self, KeyError> {
        thread_local! {
            static LAST_VALID: std::cell::Cell<Option<[u8; 48]>> =
                const { std::cell::Cell::new(None) };
        }
        if LAST_VALID.with(|c| c.get()) == Some(bytes) {
            return Ok(GroupPublicKey(bytes));
        }
        blsttc::PublicKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        LAST_VALID.with(|c| c.set(Some(bytes)));
        Ok(GroupPublicKey(bytes))
    }

    /// Parses 96 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        Self::from_bytes(decode_hex("group public key", s)?)
    }

    /// The compressed encoding.
    pub const fn to_bytes(&self) -> [u8; 48] {
        self.0
    }

    /// 96 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The blsttc key, for verification. Infallible: validated at construction.
    pub(crate) fn to_blsttc(self) -> Option<blsttc::PublicKey> {
        blsttc::PublicKey::from_bytes(self.0).ok()
    }

    /// Verifies a plain (group) BLS signature under this key.
    pub fn verify(&self, message: &[u8], signature: &crate::GroupSignature) -> bool {
        let Some(pk) = self.to_blsttc() else {
            return false;
        };
        match blsttc::Signature::from_bytes(signature.0) {
            Ok(sig) => pk.verify(&sig, message),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for GroupPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupPublicKey({})", self.to_hex())
    }
}

impl Serialize for GroupPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            crate::bytes::serialize(&self.0, s)
        }
    }
}

impl<'de> Deserialize<'de> for GroupPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            GroupPublicKey::from_hex(&s).map_err(D::Error::custom)
        } else {
            let b: [u8; 48] = crate::bytes::deserialize(d)?;
            GroupPublicKey::from_bytes(b).map_err(D::Error::custom)
        }
    }
}

/// The trust anchor a verifier holds: the group public key, written
/// `belfry1:<96 hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustAnchor(pub GroupPublicKey);

impl TrustAnchor {
    /// The textual prefix.
    pub const PREFIX: &'static str = "belfry1:";
}

impl fmt::Display for TrustAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.to_hex())
    }
}

impl FromStr for TrustAnchor {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let hex = s
            .trim()
            .strip_prefix(Self::PREFIX)
            .ok_or_else(|| KeyError::AnchorFormat(s.chars().take(120).collect()))?;
        Ok(TrustAnchor(GroupPublicKey::from_hex(hex)?))
    }
}

/// The public half of a dealing: the group key and every replica's public key
/// share, derived once and cached (each derivation costs ~70 µs).
#[derive(Clone)]
pub struct PublicKeys {
    n: u16,
    f: u16,
    set: blsttc::PublicKeySet,
    group: GroupPublicKey,
    shares: Vec<blsttc::PublicKeyShare>,
}

impl PublicKeys {
    fn from_set(n: u16, f: u16, set: blsttc::PublicKeySet) -> Result<Self, KeyError> {
        if set.threshold() != usize::from(f) {
            return Err(KeyError::ThresholdMismatch {
                expected: usize::from(f),
                found: set.threshold(),
            });
        }
        check_parameters(usize::from(n), usize::from(f))?;
        let group = GroupPublicKey(set.public_key().to_bytes());
        let shares = (0..usize::from(n))
            .map(|i| set.public_key_share(i))
            .collect();
        Ok(PublicKeys {
            n,
            f,
            set,
            group,
            shares,
        })
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        usize::from(self.n)
    }

    /// Fault bound (the polynomial degree: `f + 1` shares combine).
    pub fn f(&self) -> usize {
        usize::from(self.f)
    }

    /// The group public key.
    pub fn group_key(&self) -> GroupPublicKey {
        self.group
    }

    /// Replica `id`'s public key share, if `id < n`.
    pub(crate) fn share(&self, id: ReplicaId) -> Option<&blsttc::PublicKeyShare> {
        self.shares.get(id.index())
    }

    pub(crate) fn set(&self) -> &blsttc::PublicKeySet {
        &self.set
    }

    /// The public keys of a summed commitment (the distributed key
    /// generation's outcome, `crate::dkg`), checking its degree is `f`.
    pub(crate) fn from_commitment(
        n: u16,
        f: u16,
        commitment: blsttc::poly::Commitment,
    ) -> Result<Self, KeyError> {
        Self::from_set(n, f, blsttc::PublicKeySet::from(commitment))
    }

    /// The serialized commitment (the public polynomial), hex.
    pub fn commitment_hex(&self) -> String {
        hex::encode(self.set.to_bytes())
    }

    /// Rebuilds the public keys from a commitment, checking its degree is `f`.
    pub fn from_commitment_hex(n: u16, f: u16, commitment: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(commitment).map_err(|e| KeyError::Hex {
            what: "public key commitment",
            detail: e.to_string(),
        })?;
        // blsttc reads whole 48-byte points and drops the rest: bytes left
        // over would be accepted silently, and no point at all gives a
        // polynomial without a degree (its `threshold()` underflows).
        if bytes.is_empty() || bytes.len() % G1_BYTES != 0 {
            return Err(KeyError::Hex {
                what: "public key commitment",
                detail: format!(
                    "{} bytes: need one or more {G1_BYTES}-byte points",
                    bytes.len()
                ),
            });
        }
        let set =
            blsttc::PublicKeySet::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
        Self::from_set(n, f, set)
    }
}

impl fmt::Debug for PublicKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKeys")
            .field("n", &self.n)
            .field("f", &self.f)
            .field("group", &self.group)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct PublicKeysRepr {
    n: u16,
    f: u16,
    commitment: String,
}

impl Serialize for PublicKeys {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PublicKeysRepr {
            n: self.n,
            f: self.f,
            commitment: self.commitment_hex(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = PublicKeysRepr::deserialize(d)?;
        PublicKeys::from_commitment_hex(r.n, r.f, &r.commitment).map_err(D::Error::custom)
    }
}

/// One replica's secret key share. Zeroized on drop (blsttc clears the scalar),
/// never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretShare {
    id: ReplicaId,
    share: blsttc::SecretKeyShare,
}

impl SecretShare {
    /// The replica this share belongs to.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    pub(crate) fn inner(&self) -> &blsttc::SecretKeyShare {
        &self.share
    }

    /// A share from its scalar, which `from_mut` clears (`crate::dkg`).
    pub(crate) fn from_scalar(id: ReplicaId, value: &mut blsttc::Fr) -> Self {
        SecretShare {
            id,
            share: blsttc::SecretKeyShare::from_mut(value),
        }
    }

    /// Its scalar, for a refresh to add to (`crate::dkg`).
    pub(crate) fn scalar(&self) -> blsttc::Fr {
        let bytes = Zeroizing::new(self.share.to_bytes());
        // A share's bytes are a canonical scalar.
        Option::<blsttc::Fr>::from(blsttc::Fr::from_bytes_be(&bytes))
            .unwrap_or(blsttc::Fr::from(0u64))
    }

    /// Rebuilds a share from its replica id and 32 big-endian secret bytes.
    pub fn from_bytes(id: ReplicaId, secret: [u8; 32]) -> Result<Self, KeyError> {
        let share =
            blsttc::SecretKeyShare::from_bytes(secret).map_err(|_| KeyError::InvalidSecret)?;
        Ok(SecretShare { id, share })
    }
}

impl fmt::Debug for SecretShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretShare {{ id: {}, secret: <redacted> }}", self.id)
    }
}

#[derive(Serialize, Deserialize)]
struct SecretShareRepr {
    id: u16,
    secret: String,
}

impl Serialize for SecretShare {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let secret = Zeroizing::new(hex::encode(Zeroizing::new(self.share.to_bytes())));
        SecretShareRepr {
            id: self.id.0,
            secret: secret.to_string(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretShare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = SecretShareRepr::deserialize(d)?;
        let secret = Zeroizing::new(r.secret);
        let bytes = Zeroizing::new(
            decode_hex::<32>("secret key share", &secret).map_err(D::Error::custom)?,
        );
        SecretShare::from_bytes(ReplicaId(r.id), *bytes).map_err(D::Error::custom)
    }
}

fn check_parameters(n: usize, f: usize) -> Result<(), KeyError> {
    if n == 0 || n > usize::from(u16::MAX) || f > max_faulty(n) {
        return Err(KeyError::BadParameters { n, f });
    }
    Ok(())
}

thread_local! {
    /// Group secrets this thread made: every dealing holds one.
    static GROUP_SECRETS_MADE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many group secret keys this thread has constructed: one per
/// dealing ([`deal`], [`deal_with_secret`]), the only code here that makes
/// one. The distributed key generation (`crate::dkg`) never does, and
/// `belfry ceremony` asserts this stays 0 on the thread that ran it before
/// it writes anything (docs/keys.md says what that proves and what not).
pub fn group_secrets_made() -> u64 {
    GROUP_SECRETS_MADE.with(std::cell::Cell::get)
}

fn split(
    poly: blsttc::poly::Poly,
    n: usize,
    f: usize,
) -> Result<(PublicKeys, Vec<SecretShare>), KeyError> {
    // The polynomial's constant term is the group secret.
    GROUP_SECRETS_MADE.with(|c| c.set(c.get().saturating_add(1)));
    let sks = blsttc::SecretKeySet::from(poly);
    // Checked above: n and f fit in u16.
    let (n16, f16) = (n as u16, f as u16);
    let public = PublicKeys::from_set(n16, f16, sks.public_keys())?;
    let secrets = (0..n)
        .map(|i| SecretShare {
            id: ReplicaId(i as u16),
            share: sks.secret_key_share(i),
        })
        .collect();
    Ok((public, secrets))
}

/// Deals a fresh key set for `n` replicas tolerating `f` faults (`f + 1` shares
/// combine) from the given RNG. The dealer sees the group secret: this is the
/// trusted-dealer setup of docs/design.md §3.1, for tests, the simulator and
/// `belfry demo`; a cluster run by several parties makes its keys with the
/// distributed key generation (`crate::dkg`, `belfry ceremony`, docs/keys.md).
pub fn deal<R: RngCore + CryptoRng>(
    n: usize,
    f: usize,
    rng: &mut R,
) -> Result<(PublicKeys, Vec<SecretShare>), KeyError> {
    check_parameters(n, f)?;
    let poly = blsttc::poly::Poly::try_random(f, rng).map_err(|_| KeyError::InvalidSecret)?;
    split(poly, n, f)
}

/// Deals shares of a *given* group secret (32 big-endian bytes): used to
/// reproduce the independent test vectors, whose group key is fixed.
pub fn deal_with_secret<R: RngCore + CryptoRng>(
    secret: &[u8; 32],
    n: usize,
    f: usize,
    rng: &mut R,
) -> Result<(PublicKeys, Vec<SecretShare>), KeyError> {
    check_parameters(n, f)?;
    let sk = blsttc::SecretKey::from_bytes(*secret).map_err(|_| KeyError::InvalidSecret)?;
    let target: blsttc::Fr = sk.into();
    let poly = blsttc::poly::Poly::try_random(f, rng).map_err(|_| KeyError::InvalidSecret)?;
    let constant = poly.evaluate(0u64);
    let poly = poly - constant + target;
    split(poly, n, f)
}

/// Signs `message` with the group key the way a cluster does: shares from the
/// first `f + 1` of `secrets`, combined. For tools and tests that hold the
/// dealt secrets (a cluster never has them in one place).
pub fn threshold_sign(
    public: &std::sync::Arc<PublicKeys>,
    secrets: &[SecretShare],
    message: &[u8],
) -> Result<crate::GroupSignature, crate::CryptoError> {
    use crate::ThresholdCrypto;
    let shares = secrets
        .iter()
        .take(public.f() + 1)
        .map(|s| {
            let signer = crate::BlsCrypto::new(public.clone(), s.clone());
            Ok((s.id(), signer.sign_share(message)?))
        })
        .collect::<Result<Vec<_>, crate::CryptoError>>()?;
    crate::BlsCrypto::verifier(public.clone()).combine(message, &shares)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_valid_key_does_not_let_an_invalid_one_through() {
        let good = blsttc::SecretKey::from_bytes([7u8; 32])
            .expect("a scalar below the order")
            .public_key()
            .to_bytes();
        assert!(GroupPublicKey::from_bytes(good).is_ok());
        assert!(GroupPublicKey::from_bytes(good).is_ok(), "remembered");
        let mut bad = good;
        bad[47] ^= 1;
        // Not on the curve, or not in the subgroup: refused though a valid
        // key was just remembered.
        assert_eq!(
            GroupPublicKey::from_bytes(bad).map(|k| k.to_bytes()),
            Err(KeyError::InvalidPublicKey)
        );
        assert_eq!(
            GroupPublicKey::from_bytes([0u8; 48]).map(|k| k.to_bytes()),
            Err(KeyError::InvalidPublicKey)
        );
        assert!(GroupPublicKey::from_bytes(good).is_ok());
    }
}
