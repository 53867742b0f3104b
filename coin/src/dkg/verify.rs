//! A participant's verdict on every deal it has: an ack (with the values it
//! owes everyone) or a complaint (with the decryption share that proves it).
//!
//! Bytes: `count u16 || count × entry`, entries in increasing dealer order,
//! an entry being `dealer u16 || deal_hash[32] || kind u8` followed by
//! `n × value ciphertext[48 + 96 + 32]` for an ack (kind 0) or a
//! decryption share `[48]` for a complaint (kind 1). Integers big-endian.

use super::{Deal, DecryptionKey, EncryptionKey, Params, FR_BYTES, G1_BYTES};
use rand::{CryptoRng, RngCore};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const ACK: u8 = 0;
const COMPLAINT: u8 = 1;

/// What is wrong with a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFault {
    /// The ciphertext does not decrypt.
    Undecryptable,
    /// The plaintext is not `f + 1` canonical scalars.
    NotAPolynomial,
    /// The polynomial is not the commitment's row for this participant.
    NotOnCommitment,
}

impl std::fmt::Display for RowFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowFault::Undecryptable => "the row does not decrypt",
            RowFault::NotAPolynomial => "the row is not a polynomial of degree f",
            RowFault::NotOnCommitment => "the row does not match the dealer's commitment",
        })
    }
}

/// One participant's verdict on one deal.
#[derive(Clone, Debug)]
pub(super) enum Judgement {
    /// The row matched: `values[i]` is `f_d(j + 1, i + 1)` encrypted to `i`.
    Ack(Vec<blsttc::Ciphertext>),
    /// The row did not: the decryption share that opens it.
    Complaint(blsttc::DecryptionShare),
}

/// A participant's verification of the deals it had.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// By dealer: the deal's hash and the verdict.
    pub(super) entries: BTreeMap<usize, ([u8; 32], Judgement)>,
}

/// What a participant found, for the driver to print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The dealer.
    pub dealer: usize,
    /// `None`: the row matched the commitment and was acknowledged.
    pub fault: Option<RowFault>,
}

/// Opens participant `me`'s row of `deal` and checks it against the
/// commitment.
pub(super) fn open_row(
    params: Params,
    deal: &Deal,
    me: usize,
    key: &DecryptionKey,
) -> Result<blsttc::poly::Poly, RowFault> {
    let ct = deal.rows.get(me).ok_or(RowFault::Undecryptable)?;
    let plain = key.decrypt(ct).ok_or(RowFault::Undecryptable)?;
    row_from_plaintext(params, deal, me, &plain)
}

/// Parses a decrypted row and checks it is the commitment's row `me + 1`.
pub(super) fn row_from_plaintext(
    params: Params,
    deal: &Deal,
    me: usize,
    plain: &[u8],
) -> Result<blsttc::poly::Poly, RowFault> {
    if plain.len() != (params.f + 1) * FR_BYTES {
        return Err(RowFault::NotAPolynomial);
    }
    let row =
        blsttc::poly::Poly::from_bytes(plain.to_vec()).map_err(|_| RowFault::NotAPolynomial)?;
    if row.commitment() != deal.commitment.row(me + 1) {
        return Err(RowFault::NotOnCommitment);
    }
    Ok(row)
}

impl Verification {
    /// Participant `me` verifies `deals` (by dealer: the deal and its
    /// hash), acknowledging good rows and complaining about bad ones.
    pub fn make<R: RngCore + CryptoRng>(
        params: Params,
        me: usize,
        key: &DecryptionKey,
        keys: &[EncryptionKey],
        deals: &BTreeMap<usize, (Deal, [u8; 32])>,
        rng: &mut R,
    ) -> (Verification, Vec<Checked>) {
        let mut v = Verification::default();
        let mut checked = Vec::with_capacity(deals.len());
        for (&dealer, (deal, hash)) in deals {
            let judgement = match open_row(params, deal, me, key) {
                Ok(row) => {
                    checked.push(Checked {
                        dealer,
                        fault: None,
                    });
                    Judgement::Ack(
                        keys.iter()
                            .enumerate()
                            .map(|(i, k)| {
                                let bytes = Zeroizing::new(row.evaluate(i + 1).to_bytes_be());
                                k.0.encrypt_with_rng(rng, &bytes[..])
                            })
                            .collect(),
                    )
                }
                Err(fault) => {
                    checked.push(Checked {
                        dealer,
                        fault: Some(fault),
                    });
                    match deal.rows.get(me) {
                        Some(ct) => Judgement::Complaint(key.decryption_share(ct)),
                        None => continue,
                    }
                }
            };
            v.entries.insert(dealer, (*hash, judgement));
        }
        (v, checked)
    }

    /// Replaces the verdict on `dealer` with a complaint although its row
    /// was good: what a participant trying to exclude an honest dealer
    /// publishes (tests and `belfry ceremony verify --byzantine`).
    #[doc(hidden)]
    pub fn falsely_complain(&mut self, dealer: usize, deal: &Deal, me: usize, key: &DecryptionKey) {
        if let (Some(entry), Some(ct)) = (self.entries.get_mut(&dealer), deal.rows.get(me)) {
            entry.1 = Judgement::Complaint(key.decryption_share(ct));
        }
    }

    /// The bytes a participant signs and publishes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend((self.entries.len() as u16).to_be_bytes());
        for (&dealer, (hash, judgement)) in &self.entries {
            out.extend((dealer as u16).to_be_bytes());
            out.extend(hash);
            match judgement {
                Judgement::Ack(values) => {
                    out.push(ACK);
                    for ct in values {
                        out.extend(ct.to_bytes());
                    }
                }
                Judgement::Complaint(share) => {
                    out.push(COMPLAINT);
                    out.extend(share.to_bytes());
                }
            }
        }
        out
    }

    /// Parses a verification: at most `n` entries, dealers below `n` in
    /// increasing order, every length as `(n, f)` gives, every point valid.
    /// Ack values are checked only by their recipients (they are
    /// encrypted), so a bad one costs its recipient one value of `2f + 1`.
    pub fn from_bytes(params: Params, bytes: &[u8]) -> Result<Verification, VerificationError> {
        let mut rest = bytes;
        let count = usize::from(u16::from_be_bytes(take::<2>(&mut rest)?));
        if count > params.n {
            return Err(VerificationError::TooManyEntries {
                count,
                dealers: params.n,
            });
        }
        let mut v = Verification::default();
        for _ in 0..count {
            let dealer = usize::from(u16::from_be_bytes(take::<2>(&mut rest)?));
            if dealer >= params.n {
                return Err(VerificationError::NotADealer(dealer));
            }
            if v.entries
                .keys()
                .next_back()
                .is_some_and(|&last| last >= dealer)
            {
                return Err(VerificationError::OutOfOrder(dealer));
            }
            let hash = take::<32>(&mut rest)?;
            let judgement = match take::<1>(&mut rest)?[0] {
                ACK => {
                    let size = params.value_ciphertext_bytes();
                    let mut values = Vec::with_capacity(params.n);
                    for i in 0..params.n {
                        let b = take_slice(&mut rest, size)?;
                        values.push(blsttc::Ciphertext::from_bytes(b).map_err(|_| {
                            VerificationError::BadValue {
                                dealer,
                                participant: i,
                            }
                        })?);
                    }
                    Judgement::Ack(values)
                }
                COMPLAINT => {
                    let b = take::<G1_BYTES>(&mut rest)?;
                    Judgement::Complaint(
                        blsttc::DecryptionShare::from_bytes(b)
                            .map_err(|_| VerificationError::BadDecryptionShare(dealer))?,
                    )
                }
                k => return Err(VerificationError::UnknownKind { dealer, kind: k }),
            };
            v.entries.insert(dealer, (hash, judgement));
        }
        if !rest.is_empty() {
            return Err(VerificationError::Trailing(rest.len()));
        }
        Ok(v)
    }

    /// The dealers this verification complains about.
    pub fn complaints(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .filter(|(_, (_, j))| matches!(j, Judgement::Complaint(_)))
            .map(|(&d, _)| d)
    }

    /// The dealers this verification acknowledges.
    pub fn acks(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .filter(|(_, (_, j))| matches!(j, Judgement::Ack(_)))
            .map(|(&d, _)| d)
    }
}

/// Why a verification does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerificationError {
    /// More entries than dealers.
    #[error("{count} entries for {dealers} dealers")]
    TooManyEntries {
        /// Entries claimed.
        count: usize,
        /// Dealers (participants).
        dealers: usize,
    },
    /// An entry for someone who is not a participant.
    #[error("an entry for dealer {0}, not a participant")]
    NotADealer(usize),
    /// Entries not in increasing dealer order.
    #[error("dealer {0}: entries out of order or repeated")]
    OutOfOrder(usize),
    /// An acknowledged value that is not a ciphertext.
    #[error("dealer {dealer}: the value for participant {participant} is not a ciphertext")]
    BadValue {
        /// The dealer.
        dealer: usize,
        /// Whose value.
        participant: usize,
    },
    /// A complaint whose decryption share is not a G1 point.
    #[error("dealer {0}: the decryption share is not a G1 point")]
    BadDecryptionShare(usize),
    /// An entry of unknown kind.
    #[error("dealer {dealer}: unknown entry kind {kind}")]
    UnknownKind {
        /// The dealer.
        dealer: usize,
        /// The kind byte.
        kind: u8,
    },
    /// Bytes after the last entry.
    #[error("{0} bytes after the last entry")]
    Trailing(usize),
    /// The bytes end within an entry.
    #[error("cut short")]
    CutShort,
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], VerificationError> {
    let b = take_slice(rest, N)?;
    let mut out = [0u8; N];
    out.copy_from_slice(b);
    Ok(out)
}

fn take_slice<'a>(rest: &mut &'a [u8], k: usize) -> Result<&'a [u8], VerificationError> {
    if rest.len() < k {
        return Err(VerificationError::CutShort);
    }
    let (head, tail) = rest.split_at(k);
    *rest = tail;
    Ok(head)
}
