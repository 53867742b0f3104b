//! A participant's ceremony encryption key pair: rows and values are
//! encrypted to it, and its decryption shares back its complaints.

use super::{DkgError, G1_BYTES};
use rand::{CryptoRng, Rng, RngCore};
use std::fmt;
use zeroize::Zeroizing;

/// A participant's public encryption key (a BLS12-381 G1 point, 48 bytes
/// compressed), published in the roster.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncryptionKey(pub(super) blsttc::PublicKey);

impl EncryptionKey {
    /// Parses and validates a compressed G1 point.
    pub fn from_bytes(bytes: [u8; G1_BYTES]) -> Option<EncryptionKey> {
        blsttc::PublicKey::from_bytes(bytes).ok().map(EncryptionKey)
    }

    /// The key of an empty roster slot (a participant excluded before
    /// dealing): a point hashed to G1 from `label`, whose discrete log
    /// nobody knows, so a row or value encrypted to it opens for nobody.
    /// Every dealer computes the same key from the same label.
    pub fn nobody(label: &[u8]) -> EncryptionKey {
        let point = blsttc::G1Projective::hash_to_curve(
            label,
            b"BELFRY-DKG-NOBODY-V1_BLS12381G1_XMD:SHA-256_SSWU_RO_",
            &[],
        );
        EncryptionKey(blsttc::PublicKey::from(point))
    }

    /// The compressed encoding.
    pub fn to_bytes(&self) -> [u8; G1_BYTES] {
        self.0.to_bytes()
    }

    /// The key as a degree-0 public key set, whose one "share" is this key:
    /// blsttc checks and applies decryption shares through a key set.
    pub(super) fn as_set(&self) -> blsttc::PublicKeySet {
        blsttc::PublicKeySet::from(blsttc::poly::Commitment::from(vec![
            blsttc::G1Affine::from(self.0),
        ]))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", hex::encode(&self.to_bytes()[..8]))
    }
}

/// A participant's secret decryption key. Zeroized on drop (blsttc clears
/// the scalar); never printed.
pub struct DecryptionKey(blsttc::SecretKey);

impl DecryptionKey {
    /// A fresh key from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> DecryptionKey {
        DecryptionKey(rng.gen())
    }

    /// From 32 big-endian bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<DecryptionKey, DkgError> {
        blsttc::SecretKey::from_bytes(*bytes)
            .map(DecryptionKey)
            .map_err(|_| DkgError::BadDecryptionKey)
    }

    /// The 32 big-endian bytes, cleared when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Its public key.
    pub fn public(&self) -> EncryptionKey {
        EncryptionKey(self.0.public_key())
    }

    /// Decrypts a ciphertext (checked first), the plaintext cleared on drop.
    pub(super) fn decrypt(&self, ct: &blsttc::Ciphertext) -> Option<Zeroizing<Vec<u8>>> {
        self.0.decrypt(ct).map(Zeroizing::new)
    }

    /// The decryption share `sk · U` of `ct`: publishing it opens that one
    /// ciphertext to everyone, and nothing else.
    pub(super) fn decryption_share(&self, ct: &blsttc::Ciphertext) -> blsttc::DecryptionShare {
        // `from_mut` clears the copy it takes.
        let mut scalar: blsttc::Fr = self.0.clone().into();
        blsttc::SecretKeyShare::from_mut(&mut scalar).decrypt_share_no_verify(ct)
    }
}

impl fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DecryptionKey({:?}, secret: <redacted>)", self.public())
    }
}
