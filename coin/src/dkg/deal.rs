//! A dealer's contribution: the commitment to its bivariate polynomial and
//! every participant's row, encrypted to that participant.
//!
//! Bytes (everything fixed-size for the ceremony's `(n, f)`):
//! `commitment[48 · (f+1)(f+2)/2] || n × (row ciphertext[48 + 96 + 32 (f+1)]
//! || slot proof[96])`, a ciphertext being blsttc's `U[48] || W[96] || V`
//! (V: the row's coefficients, 32 bytes each, big-endian).
//!
//! **Each row is bound to its slot.** blsttc's encryption carries no label,
//! so without more a dealer could copy another dealer's row ciphertext for
//! participant `j` into its own deal's slot `j`: `j` would find the row off
//! the copier's commitment and complain, and the complaint's decryption
//! share would open the *other* dealer's row to everyone — with `f + 1` such
//! rows, that dealer's secret. So each row carries `Z = r · H(label || U)`
//! (`r` the encryption's randomness, `H` hash-to-G2, `label` naming the
//! dealer and the recipient), checked by `e(g1, Z) = e(U, H(label || U))`,
//! as TDH2 binds a ciphertext to its label: making `Z` for another label
//! needs `r`, which only the encrypting dealer has. A copied row fails this
//! check publicly, in parsing — nobody decrypts it or complains about it.

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
    pub(super) dealer: usize,
    pub(super) commitment: blsttc::poly::BivarCommitment,
    pub(super) rows: Vec<blsttc::Ciphertext>,
    /// Each row's slot proof (see the module documentation).
    pub(super) proofs: Vec<blsttc::G2Affine>,
}

/// Bytes of a slot proof (a compressed G2 point).
pub(super) const SLOT_PROOF_BYTES: usize = 96;

/// The hash a row's slot proof is made on: `H("belfry-dkg-row-v1" ||
/// dealer u16 || recipient u16 || U)`.
fn slot_hash(dealer: usize, to: usize, u: &blsttc::G1Affine) -> blsttc::G2Affine {
    let mut msg = b"belfry-dkg-row-v1".to_vec();
    msg.extend_from_slice(&(dealer as u16).to_be_bytes());
    msg.extend_from_slice(&(to as u16).to_be_bytes());
    msg.extend_from_slice(&u.to_compressed());
    blsttc::hash_g2(msg)
}

/// Encrypts `plain` to `key` for slot (`dealer`, `to`), with its slot
/// proof. The encryption's randomness is drawn from a generator seeded here
/// so that it can be drawn again for the proof; that blsttc drew the same
/// one is checked (`U = r · g1`), so a change in blsttc fails loudly.
fn encrypt_row<R: RngCore + CryptoRng>(
    key: &EncryptionKey,
    dealer: usize,
    to: usize,
    plain: &[u8],
    rng: &mut R,
) -> Result<(blsttc::Ciphertext, blsttc::G2Affine), super::DkgError> {
    use blsttc::group::{ff::Field, prime::PrimeCurveAffine, Curve};
    use rand::SeedableRng;
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut seed[..]);
    let mut draw = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let mut again = draw.clone();
    let ct = key.0.encrypt_with_rng(&mut draw, plain);
    let mut r = blsttc::Fr::random(&mut again);
    let u = ct_u(&ct);
    let ok = (blsttc::G1Affine::generator() * r).to_affine() == u;
    let proof = (slot_hash(dealer, to, &u) * r).to_affine();
    r = blsttc::Fr::from(0u64);
    let _ = r;
    if !ok {
        return Err(super::DkgError::Encryption);
    }
    Ok((ct, proof))
}

/// A ciphertext's `U`.
fn ct_u(ct: &blsttc::Ciphertext) -> blsttc::G1Affine {
    let b = ct.to_bytes();
    let mut u = [0u8; super::G1_BYTES];
    u.copy_from_slice(&b[..super::G1_BYTES]);
    // The bytes are the ciphertext's own point: they decode.
    Option::from(blsttc::G1Affine::from_compressed(&u)).unwrap_or_else(|| {
        use blsttc::group::prime::PrimeCurveAffine;
        blsttc::G1Affine::identity()
    })
}

/// Whether `proof` binds `ct` to slot (`dealer`, `to`).
fn slot_proof_holds(
    dealer: usize,
    to: usize,
    ct: &blsttc::Ciphertext,
    proof: &blsttc::G2Affine,
) -> bool {
    use blsttc::group::prime::PrimeCurveAffine;
    let u = ct_u(ct);
    blsttc::blstrs::pairing(&blsttc::G1Affine::generator(), proof)
        == blsttc::blstrs::pairing(&u, &slot_hash(dealer, to, &u))
}

/// Why a deal does not parse or verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DealError {
    /// Not the length `(n, f)` gives.
    #[error("{got} bytes, expected {expected}")]
    Length {
        /// Bytes given.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A commitment point off the curve.
    #[error("the commitment holds a point that is not on the curve")]
    CommitmentPoint,
    /// A commitment of the wrong degree.
    #[error("the commitment has degree {degree}, not f = {f}")]
    Degree {
        /// Its degree.
        degree: usize,
        /// The fault bound.
        f: usize,
    },
    /// A refresh deal that does not share zero.
    #[error("a refresh deal must share zero: its commitment's constant is not the identity")]
    RefreshNotZero,
    /// A row that is not a valid ciphertext.
    #[error("the row for participant {0} is not a valid ciphertext")]
    BadRow(usize),
    /// A row not bound to this dealer's slot.
    #[error(
        "the row for participant {0} is not bound to this dealer's slot \
         (a row copied from another deal, or a bad slot proof)"
    )]
    NotBound(usize),
}

impl Deal {
    /// Draws a polynomial and deals its rows to `keys` (one per
    /// participant, by id). The polynomial is dropped (and cleared) before
    /// this returns: the dealer keeps nothing it would have to protect.
    pub fn new<R: RngCore + CryptoRng>(
        params: Params,
        dealer: usize,
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
        let mut rows = Vec::with_capacity(keys.len());
        let mut proofs = Vec::with_capacity(keys.len());
        for (j, key) in keys.iter().enumerate() {
            let row = Zeroizing::new((poly.row(j + 1) - constant).to_bytes());
            let (ct, proof) = encrypt_row(key, dealer, j, &row[..], rng)?;
            rows.push(ct);
            proofs.push(proof);
        }
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
        Ok(Deal {
            dealer,
            commitment,
            rows,
            proofs,
        })
    }

    /// The bytes a dealer signs and publishes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.commitment.to_bytes();
        for (ct, proof) in self.rows.iter().zip(&self.proofs) {
            out.extend(ct.to_bytes());
            out.extend(proof.to_compressed());
        }
        out
    }

    /// Parses a deal: exactly the length `(n, f)` gives, a commitment of
    /// whole valid points, and `n` ciphertexts that pass blsttc's check
    /// (a pairing each: one not made by encrypting is refused).
    pub fn from_bytes(params: Params, dealer: usize, bytes: &[u8]) -> Result<Deal, DealError> {
        let c = params.commitment_bytes();
        let r = params.row_ciphertext_bytes() + SLOT_PROOF_BYTES;
        let expected = c + params.n * r;
        if bytes.len() != expected {
            return Err(DealError::Length {
                got: bytes.len(),
                expected,
            });
        }
        let (commitment, rows) = bytes.split_at(c);
        let commitment = blsttc::poly::BivarCommitment::from_bytes(commitment.to_vec())
            .map_err(|_| DealError::CommitmentPoint)?;
        if commitment.degree() != params.f {
            return Err(DealError::Degree {
                degree: commitment.degree(),
                f: params.f,
            });
        }
        if params.refresh && commitment.evaluate(0u64, 0u64).to_compressed() != identity() {
            return Err(DealError::RefreshNotZero);
        }
        let mut cts = Vec::with_capacity(params.n);
        let mut proofs = Vec::with_capacity(params.n);
        for (j, b) in rows.chunks_exact(r).enumerate() {
            let (ct, proof) = b.split_at(r - SLOT_PROOF_BYTES);
            let ct = blsttc::Ciphertext::from_bytes(ct)
                .ok()
                .filter(blsttc::Ciphertext::verify)
                .ok_or(DealError::BadRow(j))?;
            let mut p = [0u8; SLOT_PROOF_BYTES];
            p.copy_from_slice(proof);
            let proof = Option::<blsttc::G2Affine>::from(blsttc::G2Affine::from_compressed(&p))
                .filter(|p| slot_proof_holds(dealer, j, &ct, p))
                .ok_or(DealError::NotBound(j))?;
            cts.push(ct);
            proofs.push(proof);
        }
        Ok(Deal {
            dealer,
            commitment,
            rows: cts,
            proofs,
        })
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
        let bad = Zeroizing::new(blsttc::poly::Poly::random(degree, rng).to_bytes());
        if let Ok((ct, proof)) = encrypt_row(key, self.dealer, to, &bad[..], rng) {
            if let (Some(row), Some(p)) = (self.rows.get_mut(to), self.proofs.get_mut(to)) {
                *row = ct;
                *p = proof;
            }
        }
    }

    /// Puts another deal's row for `to` in this deal's slot `to`, its slot
    /// proof with it: the copying attack the slot proofs defeat (tests).
    #[doc(hidden)]
    pub fn copy_row_from(&mut self, other: &Deal, to: usize) {
        if let (Some(row), Some(p), Some(theirs), Some(their_proof)) = (
            self.rows.get_mut(to),
            self.proofs.get_mut(to),
            other.rows.get(to),
            other.proofs.get(to),
        ) {
            *row = theirs.clone();
            *p = *their_proof;
        }
    }
}
