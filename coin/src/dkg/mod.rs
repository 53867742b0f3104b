//! Distributed key generation: the cluster's threshold key without a
//! trusted dealer (docs/keys.md; `belfry ceremony` drives it with files).
//!
//! # What it guarantees, against whom
//!
//! `n` participants, at most `f` of them Byzantine (`n >= 3f + 1`), end
//! with one group public key, every participant's public key share, and
//! each honest participant with its own secret share of a degree-`f`
//! polynomial — while no process ever holds the group secret: it is the
//! sum of the qualified dealers' secrets, and no code here adds them up.
//! Any `f + 1` shares sign as the cluster, as with the trusted dealer
//! (`crate::deal`), and the outputs are the same types
//! ([`PublicKeys`], [`SecretShare`]), so a cluster made here runs unchanged.
//!
//! # The protocol (joint Feldman with verifiable complaints, after hbbft's `SyncKeyGen`)
//!
//! Every participant `p` has an encryption key ([`EncryptionKey`], a BLS
//! G1 key; blsttc's `PublicKey::encrypt`), fixed with its id in a roster
//! before anything else. Three kinds of message follow, each published to
//! everyone and signed by its author (the signature is the driver's
//! business: every function here takes messages already attributed):
//!
//! 1. **Deal** ([`Deal`]): dealer `d` draws a random symmetric bivariate
//!    polynomial `f_d(x, y)` of degree `f`, publishes its commitment
//!    `C_d` (`g^coefficient` for each coefficient) and, for every
//!    participant `j`, the row `f_d(j + 1, y)` encrypted to `j`.
//! 2. **Verification** ([`Verification`]): participant `j` decrypts its row
//!    of every deal it has and checks it against `C_d` (`C_d.row(j + 1) ==
//!    g^row`). A good row is *acknowledged*: the ack carries, for every
//!    participant `i`, the value `f_d(j + 1, i + 1)` encrypted to `i` (so
//!    a participant whose own row was bad, or who was late, can still
//!    rebuild its value from `f + 1` acks, as in `SyncKeyGen`). A bad row
//!    is *complained about*: the complaint carries `j`'s decryption share
//!    of that ciphertext (`sk_j · U`), which anyone can check against
//!    `j`'s public key with a pairing, and with which anyone can decrypt
//!    the row and see it is bad. A complaint proves itself: the dealer
//!    needs no answer round, and a false complaint convicts its author.
//! 3. **Qualification** ([`qualify`]): a deterministic rule over the
//!    complete set of deals and verifications, which every participant
//!    computes identically from the same messages:
//!    - a dealer is *faulty* if its deal does not parse or verify, if a
//!      valid complaint names it, if it made a false complaint or a
//!      malformed verification, or if it signed two different messages of
//!      one kind (the driver finds those);
//!    - `QUAL` = the dealers that are not faulty and whose deal has at least
//!      `2f + 1` acks from participants that are not faulty (so at least
//!      `f + 1` honest participants hold consistent rows, which fixes the
//!      polynomial and lets everyone rebuild its value);
//!    - `|QUAL| >= f + 1`, so at least one honest dealer is in it and the
//!      group secret is unknown to any `f` participants.
//!
//!    The group key is `Σ_{d ∈ QUAL} C_d(0, 0)`, participant `i`'s public
//!    key share `Σ C_d.row(0)(i + 1)`, and its secret share
//!    `Σ_{d ∈ QUAL} f_d(0, i + 1)` ([`Outcome::secret_share`]).
//!
//! Faults are data ([`Fault`]: who, what, with which evidence), never a
//! reason to stop while enough participants remain: the ceremony completes
//! whenever the honest participants, at least `n − f >= 2f + 1` of them,
//! publish their deals and verifications.
//!
//! **Refresh** ([`Params::refresh`]): the same messages re-share *zero*:
//! each dealer's polynomial has `f_d(0, 0) = 0`, which everyone checks on
//! its commitment (its constant coefficient is the identity). Participant
//! `i`'s new share is its current share plus `Σ_{d ∈ QUAL} f_d(0, i + 1)`,
//! the new public key shares the current commitment plus `Σ C_d.row(0)`:
//! the group key, and every receipt under it, stay; a share from before
//! and one from after lie on different polynomials and do not combine.
//!
//! Joint Feldman lets a rushing adversary bias the group key's
//! distribution somewhat (Gennaro, Jarecki, Krawczyk, Rabin); for
//! threshold BLS signatures that bias does not help forge (docs/keys.md).
//!
//! # Sans-IO
//!
//! No clock, no files, no network; randomness comes from the RNG passed in.
//! Every input is a byte string of a length fixed by `(n, f)`, checked
//! before it is parsed.

mod deal;
mod keys;
mod qualify;
mod verify;

pub use deal::{Deal, DealError};
pub use keys::{DecryptionKey, EncryptionKey};
pub use qualify::{qualify, Exclusion, Fault, FaultKind, Outcome, Transcript};
pub use verify::{Checked, RowFault, Verification, VerificationError};

use crate::dealer::{PublicKeys, SecretShare};

/// Most participants a ceremony takes: a verification carries `n` acks of
/// `n` values each, so its size grows with `n²` (64: about 0.7 MB).
pub const MAX_PARTICIPANTS: usize = 64;

/// Bytes of a compressed G1 point.
const G1_BYTES: usize = 48;
/// Bytes of a compressed G2 point.
const G2_BYTES: usize = 96;
/// Bytes of a scalar.
const FR_BYTES: usize = 32;

/// A ceremony that cannot go on, or a message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkgError {
    /// `n` or `f` out of range.
    #[error("a ceremony needs 4 <= n <= {MAX_PARTICIPANTS} and n >= 3f + 1 with f >= 1, got n = {n}, f = {f}")]
    BadParameters {
        /// Participants.
        n: usize,
        /// Fault bound.
        f: usize,
    },
    /// An encryption key that is not a valid G1 point.
    #[error("participant {0}'s encryption key is not a compressed BLS12-381 G1 point")]
    BadEncryptionKey(usize),
    /// A secret key that is not a valid scalar.
    #[error("the decryption key is not a canonical BLS12-381 scalar")]
    BadDecryptionKey,
    /// blsttc's encryption did not draw the randomness it was expected to
    /// (a changed blsttc): no slot proof can be made.
    #[error("encrypting a row: blsttc drew other randomness than expected; no slot proof")]
    Encryption,
    /// Not one encryption key per participant.
    #[error("{got} encryption keys for {n} participants")]
    KeyCount {
        /// Participants.
        n: usize,
        /// Keys given.
        got: usize,
    },
    /// Too few dealers qualified.
    #[error("only {qualified} dealers qualified ({which}); at least f + 1 = {needed} are needed")]
    TooFewQualified {
        /// How many.
        qualified: usize,
        /// Which ones.
        which: String,
        /// f + 1.
        needed: usize,
    },
    /// A refresh needs the key it refreshes, and a generation has none.
    #[error("a refresh needs the current public keys and this participant's current share; a key generation takes neither")]
    Previous,
    /// The refreshed keys' group key is not the current one (a bug: every
    /// qualified deal was checked to share zero).
    #[error("the refreshed group key differs from the current one")]
    GroupKeyChanged,
    /// The qualified dealers' commitments sum to a polynomial of the wrong
    /// degree (negligibly likely unless dealers collude in the exponent).
    #[error("the combined commitment has degree {found}, not f = {expected}")]
    Degree {
        /// f.
        expected: usize,
        /// What came out.
        found: usize,
    },
    /// This participant cannot rebuild its share from a qualified deal.
    #[error("cannot rebuild this participant's value from dealer {dealer}: its own row is bad and only {valid} of the acks' values are valid, {needed} needed")]
    ShareUnavailable {
        /// The dealer.
        dealer: usize,
        /// Valid values found.
        valid: usize,
        /// f + 1.
        needed: usize,
    },
    /// The share built does not match the public key share (a bug, or
    /// inputs that are not the transcript the outcome was built from).
    #[error("the secret share built does not match participant {0}'s public key share")]
    ShareMismatch(usize),
}

/// The ceremony's size: `n` participants, polynomials of degree `f`; and
/// whether it makes a new key or refreshes the shares of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    n: usize,
    f: usize,
    refresh: bool,
}

impl Params {
    /// A key generation. Checks `4 <= n <= MAX_PARTICIPANTS`, `1 <= f`
    /// and `n >= 3f + 1`.
    pub fn new(n: usize, f: usize) -> Result<Params, DkgError> {
        if !(4..=MAX_PARTICIPANTS).contains(&n) || f == 0 || f > crate::max_faulty(n) {
            return Err(DkgError::BadParameters { n, f });
        }
        Ok(Params {
            n,
            f,
            refresh: false,
        })
    }

    /// A proactive refresh of an existing key's shares (docs/keys.md §8):
    /// every dealer shares zero (`f_d(0, 0) = 0`, checked on its
    /// commitment), so the shares change and the group key does not.
    pub fn refresh(n: usize, f: usize) -> Result<Params, DkgError> {
        Ok(Params {
            refresh: true,
            ..Params::new(n, f)?
        })
    }

    /// Whether this is a refresh.
    pub fn is_refresh(&self) -> bool {
        self.refresh
    }

    /// Participants.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Polynomial degree and fault bound.
    pub fn f(&self) -> usize {
        self.f
    }

    /// Acks a deal needs to qualify: `2f + 1`, so that `f + 1` of them come
    /// from honest participants, whatever `n` is. (Not the quorum `n − f`:
    /// what matters here is the count of honest rows, not intersection.)
    pub fn acks_needed(&self) -> usize {
        2 * self.f + 1
    }

    /// Bytes of a bivariate commitment of degree `f`.
    fn commitment_bytes(&self) -> usize {
        (self.f + 1) * (self.f + 2) / 2 * G1_BYTES
    }

    /// Bytes of an encrypted row (a degree-`f` polynomial).
    fn row_ciphertext_bytes(&self) -> usize {
        G1_BYTES + G2_BYTES + (self.f + 1) * FR_BYTES
    }

    /// Bytes of an encrypted value (one scalar).
    fn value_ciphertext_bytes(&self) -> usize {
        G1_BYTES + G2_BYTES + FR_BYTES
    }
}

/// Builds the public keys from a summed commitment (crate-internal: only
/// the qualification rule does).
fn public_keys(
    params: Params,
    commitment: blsttc::poly::Commitment,
) -> Result<PublicKeys, DkgError> {
    let found = commitment.degree();
    if found != params.f {
        return Err(DkgError::Degree {
            expected: params.f,
            found,
        });
    }
    // n and f were checked by Params: they fit u16.
    PublicKeys::from_commitment(params.n as u16, params.f as u16, commitment).map_err(|_| {
        DkgError::Degree {
            expected: params.f,
            found,
        }
    })
}

/// A secret share from its scalar, which is cleared.
fn secret_share(id: usize, value: &mut blsttc::Fr) -> SecretShare {
    SecretShare::from_scalar(crate::ReplicaId(id as u16), value)
}

#[cfg(test)]
mod tests;
