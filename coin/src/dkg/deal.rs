//! A dealer's contribution: the commitment to its bivariate polynomial and
//! every participant's row, encrypted to that participant.
//!
//! Bytes (everything fixed-size for the ceremony's `(n, f)`):
//! `commitment[48 · (f+1)(f+2)/2] || n × row ciphertext[48 + 96 + 32 (f+1)]`,
//! a ciphertext being blsttc's `U[48] || W[96] || V` (V: the row's
//! coefficients, 32 bytes each, big-endian).

use super::{EncryptionKey, Params, G1_BYTES};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

/// The compressed encoding of G1's identity.
fn identity() -> [u8; G1_BYTES] {
    use blsttc::group::prime::PrimeCurveAffine;
    blsttc::G1Affine::identity().to_compressed()
}

/// One dealer's deal, parsed and checked: a commitment of degree `f` and `n`
/// well-formed ciphertexts.
#[derive(Clone, Debug)]
pub struct Deal {
    pub(super) commitment: blsttc::poly::BivarCommitment,
    pub(super) rows: Vec<blsttc::Ciphertext>,
}

impl Deal {
    /// Draws a polynomial and deals its rows to `keys` (one per
    /// participant, by id). The polynomial is dropped (and cleared) before
    /// this returns: the dealer keeps nothing it would have to protect.
    pub fn new<R: RngCore + CryptoRng>(
        params: Params,
        keys: &[EncryptionKey],
        rng: &mut R,
    ) -> Result<Deal, super::DkgError> {
        if keys.len() != params.n {
            return Err(super::DkgError::KeyCount {
                n: params.n,
                got: keys.len(),
            });
        }
        let poly = blsttc::poly::BivarPoly::random(params.f, rng);
        // A refresh shares zero: every row less the constant term, and the
        // commitment's constant coefficient the identity.
        let constant = if params.refresh {
            poly.evaluate(0u64, 0u64)
        } else {
            blsttc::Fr::from(0u64)
        };
        let rows = keys
            .iter()
            .enumerate()
            .map(|(j, key)| {
                let row = Zeroizing::new((poly.row(j + 1) - constant).to_bytes());
                key.0.encrypt_with_rng(rng, &row[..])
            })
            .collect();
        let mut commitment = poly.commitment();
        if params.refresh {
            let mut bytes = commitment.to_bytes();
            bytes[..G1_BYTES].copy_from_slice(&identity());
            commitment = blsttc::poly::BivarCommitment::from_bytes(bytes).map_err(|_| {
                super::DkgError::Degree {
                    expected: params.f,
                    found: 0,
                }
            })?;
        }
        Ok(Deal { commitment, rows })
    }

    /// The bytes a dealer signs and publishes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.commitment.to_bytes();
        for ct in &self.rows {
            out.extend(ct.to_bytes());
        }
        out
    }

    /// Parses a deal: exactly the length `(n, f)` gives, a commitment of
    /// whole valid points, and `n` ciphertexts that pass blsttc's check
    /// (a pairing each: one not made by encrypting is refused).
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<Deal, String> {
        let c = params.commitment_bytes();
        let r = params.row_ciphertext_bytes();
        let expected = c + params.n * r;
        if bytes.len() != expected {
            return Err(format!("{} bytes, expected {expected}", bytes.len()));
        }
        let (commitment, rows) = bytes.split_at(c);
        let commitment = blsttc::poly::BivarCommitment::from_bytes(commitment.to_vec())
            .map_err(|_| "the commitment holds a point that is not on the curve".to_string())?;
        if commitment.degree() != params.f {
            return Err(format!(
                "the commitment has degree {}, not f = {}",
                commitment.degree(),
                params.f
            ));
        }
        if params.refresh && commitment.evaluate(0u64, 0u64).to_compressed() != identity() {
            return Err(
                "a refresh deal must share zero: its commitment's constant is not the identity"
                    .to_string(),
            );
        }
        let rows = rows
            .chunks_exact(r)
            .enumerate()
            .map(|(j, b)| {
                blsttc::Ciphertext::from_bytes(b)
                    .ok()
                    .filter(blsttc::Ciphertext::verify)
                    .ok_or_else(|| format!("the row for participant {j} is not a valid ciphertext"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Deal { commitment, rows })
    }

    /// The deal's hash, which verifications name:
    /// `SHA-256("belfry-dkg-deal-v1" || bytes)`.
    pub fn hash(bytes: &[u8]) -> [u8; 32] {
        crate::sha256(&[b"belfry-dkg-deal-v1", bytes])
    }

    /// Replaces participant `to`'s row with a well-formed encryption of a
    /// polynomial that is not on the commitment: what a cheating dealer
    /// sends. For tests, and for `belfry ceremony deal --byzantine`, which
    /// shows a ceremony excluding its author (any operator can run a
    /// modified program; this knob gives nobody anything new).
    #[doc(hidden)]
    pub fn spoil_row<R: RngCore + CryptoRng>(
        &mut self,
        to: usize,
        key: &EncryptionKey,
        degree: usize,
        rng: &mut R,
    ) {
        if let Some(row) = self.rows.get_mut(to) {
            let bad = Zeroizing::new(blsttc::poly::Poly::random(degree, rng).to_bytes());
            *row = key.0.encrypt_with_rng(rng, &bad[..]);
        }
    }
}
