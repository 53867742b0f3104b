//! A dealer's contribution: the commitment to its bivariate polynomial and
//! every participant's row, encrypted to that participant.
//!
//! Bytes (everything fixed-size for the ceremony's `(n, f)`):
//! `commitment[48 · (f+1)(f+2)/2] || n × row ciphertext[48 + 96 + 32 (f+1)]`,
//! a ciphertext being blsttc's `U[48] || W[96] || V` (V: the row's
//! coefficients, 32 bytes each, big-endian).

use super::{EncryptionKey, Params};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

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
        let rows = keys
            .iter()
            .enumerate()
            .map(|(j, key)| {
                let row = Zeroizing::new(poly.row(j + 1).to_bytes());
                key.0.encrypt_with_rng(rng, &row[..])
            })
            .collect();
        Ok(Deal {
            commitment: poly.commitment(),
            rows,
        })
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
