//! The qualification rule over a complete transcript, and the outcome it
//! gives: the same public keys for everyone, and each participant's own
//! secret share.

use super::verify::{open_row, row_from_plaintext, Judgement, VerificationError};
use super::DealError;
use super::{
    public_keys, secret_share, Deal, DkgError, EncryptionKey, Params, RowFault, Verification,
};
use crate::dealer::{PublicKeys, SecretShare};
use blsttc::group::Group;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Every message of a ceremony, each already checked to come from its
/// author (the driver checks signatures). A participant that signed two
/// different messages of one kind is listed in `equivocators`, and neither
/// of those messages is here.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// Each dealer's deal, as its bytes.
    pub deals: BTreeMap<usize, Vec<u8>>,
    /// Each participant's verification, as its bytes.
    pub verifications: BTreeMap<usize, Vec<u8>>,
    /// Participants that signed two different messages of one kind.
    pub equivocators: BTreeSet<usize>,
}

/// What a participant did wrong, with what evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Signed two different deals or two different verifications.
    Equivocation,
    /// Its deal does not parse or verify.
    BadDeal(DealError),
    /// Its verification does not parse.
    BadVerification(VerificationError),
    /// Its row for `complainant` is bad, as `complainant`'s verified
    /// decryption share shows.
    BadRow {
        /// Who complained.
        complainant: usize,
        /// What is wrong with the row.
        fault: RowFault,
    },
    /// It complained about `dealer`, but the row its decryption share opens
    /// is good (or the share is not its own).
    FalseComplaint {
        /// Whom it accused.
        dealer: usize,
    },
}

/// A fault: who, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The participant at fault.
    pub participant: usize,
    /// What it did.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.participant;
        match &self.kind {
            FaultKind::Equivocation => write!(
                f,
                "participant {p} signed two different messages of one kind"
            ),
            FaultKind::BadDeal(why) => write!(f, "participant {p}'s deal is invalid: {why}"),
            FaultKind::BadVerification(why) => {
                write!(f, "participant {p}'s verification is invalid: {why}")
            }
            FaultKind::BadRow { complainant, fault } => write!(
                f,
                "participant {p} dealt a bad row to participant {complainant} ({fault}; \
                 proven by {complainant}'s decryption share)"
            ),
            FaultKind::FalseComplaint { dealer } => write!(
                f,
                "participant {p} complained falsely about dealer {dealer} (the row its \
                 decryption share opens is good, or the share is not its own)"
            ),
        }
    }
}

/// Why a participant's deal is not in the qualified set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// It is at fault (see the faults).
    Faulty,
    /// No deal from it.
    NoDeal,
    /// Too few participants acknowledged its deal.
    TooFewAcks {
        /// Acks from participants not at fault.
        acks: usize,
        /// 2f + 1.
        needed: usize,
    },
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Faulty => f.write_str("at fault"),
            Exclusion::NoDeal => f.write_str("no deal"),
            Exclusion::TooFewAcks { acks, needed } => {
                write!(f, "{acks} acks, {needed} needed")
            }
        }
    }
}

/// The ceremony's result, the same for everyone who computes it from the
/// same transcript.
#[derive(Clone, Debug)]
pub struct Outcome {
    params: Params,
    /// The qualified dealers.
    pub qualified: BTreeSet<usize>,
    /// Every fault found, in participant order.
    pub faults: Vec<Fault>,
    /// Every dealer not qualified, and why.
    pub excluded: BTreeMap<usize, Exclusion>,
    /// The group key and every public key share.
    pub public: PublicKeys,
    deals: BTreeMap<usize, Deal>,
    /// By qualified dealer: each acknowledging participant's values.
    acks: BTreeMap<usize, Acks>,
}

/// Applies the qualification rule (module doc) to a transcript. A refresh
/// takes the public keys it refreshes (`previous`), a generation none.
pub fn qualify(
    params: Params,
    keys: &[EncryptionKey],
    transcript: &Transcript,
    previous: Option<&PublicKeys>,
) -> Result<Outcome, DkgError> {
    if previous.is_some() != params.refresh {
        return Err(DkgError::Previous);
    }
    if keys.len() != params.n {
        return Err(DkgError::KeyCount {
            n: params.n,
            got: keys.len(),
        });
    }
    let mut faults: Vec<Fault> = transcript
        .equivocators
        .iter()
        .map(|&p| Fault {
            participant: p,
            kind: FaultKind::Equivocation,
        })
        .collect();
    let deals = parse_deals(params, transcript, &mut faults);
    let verifications = parse_verifications(params, transcript, &mut faults);
    judge_complaints(params, keys, &deals, &verifications, &mut faults);
    faults.sort_by_key(|f| f.participant);
    faults.dedup();
    let faulty: BTreeSet<usize> = faults.iter().map(|f| f.participant).collect();
    let Selection {
        qualified,
        excluded,
        acks,
    } = select_dealers(params, &deals, &verifications, &faulty);
    if qualified.len() < params.f + 1 {
        return Err(DkgError::TooFewQualified {
            qualified: qualified.len(),
            which: format!("{qualified:?}"),
            needed: params.f + 1,
        });
    }
    let deals: BTreeMap<usize, Deal> = deals
        .into_iter()
        .filter(|(d, _)| qualified.contains(d))
        .map(|(d, (deal, _))| (d, deal))
        .collect();
    let public = group_public_keys(params, &deals, previous)?;
    Ok(Outcome {
        params,
        public,
        qualified,
        faults,
        excluded,
        deals,
        acks,
    })
}

/// Each acknowledging participant's values for one deal.
type Acks = Vec<(usize, Vec<blsttc::Ciphertext>)>;

/// The deals that parse and verify, with their hashes; a fault for each
/// that does not.
fn parse_deals(
    params: Params,
    transcript: &Transcript,
    faults: &mut Vec<Fault>,
) -> BTreeMap<usize, (Deal, [u8; 32])> {
    let mut deals = BTreeMap::new();
    for (&d, bytes) in transcript.deals.iter().filter(|(&d, _)| d < params.n) {
        match Deal::from_bytes(params, d, bytes) {
            Ok(deal) => {
                deals.insert(d, (deal, Deal::hash(bytes)));
            }
            Err(why) => faults.push(Fault {
                participant: d,
                kind: FaultKind::BadDeal(why),
            }),
        }
    }
    deals
}

/// The verifications that parse; a fault for each that does not.
fn parse_verifications(
    params: Params,
    transcript: &Transcript,
    faults: &mut Vec<Fault>,
) -> BTreeMap<usize, Verification> {
    let mut verifications = BTreeMap::new();
    for (&j, bytes) in transcript
        .verifications
        .iter()
        .filter(|(&j, _)| j < params.n)
    {
        match Verification::from_bytes(params, bytes) {
            Ok(v) => {
                verifications.insert(j, v);
            }
            Err(why) => faults.push(Fault {
                participant: j,
                kind: FaultKind::BadVerification(why),
            }),
        }
    }
    verifications
}

/// A fault for every complaint about a deal in the transcript.
fn judge_complaints(
    params: Params,
    keys: &[EncryptionKey],
    deals: &BTreeMap<usize, (Deal, [u8; 32])>,
    verifications: &BTreeMap<usize, Verification>,
    faults: &mut Vec<Fault>,
) {
    // Complaints prove themselves either way: against the dealer or
    // against the complainant. Entries about a deal other than the one in
    // the transcript are about nothing here, and ignored.
    for (&j, v) in verifications {
        for (&d, (hash, judgement)) in &v.entries {
            let (Judgement::Complaint(share), Some((deal, h))) = (judgement, deals.get(&d)) else {
                continue;
            };
            if h != hash {
                continue;
            }
            faults.push(judge_complaint(params, keys, deal, d, j, share));
        }
    }
}

/// Which dealers qualify, why the others do not, and the acks of those that
/// do.
struct Selection {
    /// The qualified dealers.
    qualified: BTreeSet<usize>,
    /// Every dealer not qualified, and why.
    excluded: BTreeMap<usize, Exclusion>,
    /// By qualified dealer: each acknowledging participant's values.
    acks: BTreeMap<usize, Acks>,
}

/// Qualifies every dealer not at fault whose deal enough participants not
/// at fault acknowledged.
fn select_dealers(
    params: Params,
    deals: &BTreeMap<usize, (Deal, [u8; 32])>,
    verifications: &BTreeMap<usize, Verification>,
    faulty: &BTreeSet<usize>,
) -> Selection {
    let needed = params.acks_needed();
    let mut qualified = BTreeSet::new();
    let mut excluded = BTreeMap::new();
    let mut acks = BTreeMap::new();
    for d in 0..params.n {
        let Some((_, hash)) = deals.get(&d).filter(|_| !faulty.contains(&d)) else {
            let why = if faulty.contains(&d) {
                Exclusion::Faulty
            } else {
                Exclusion::NoDeal
            };
            excluded.insert(d, why);
            continue;
        };
        let ackers: Acks = verifications
            .iter()
            .filter(|(j, _)| !faulty.contains(j))
            .filter_map(|(&j, v)| match v.entries.get(&d) {
                Some((h, Judgement::Ack(values))) if h == hash => Some((j, values.clone())),
                _ => None,
            })
            .collect();
        if ackers.len() < needed {
            excluded.insert(
                d,
                Exclusion::TooFewAcks {
                    acks: ackers.len(),
                    needed,
                },
            );
            continue;
        }
        qualified.insert(d);
        acks.insert(d, ackers);
    }
    Selection {
        qualified,
        excluded,
        acks,
    }
}

/// The public keys: the sum of the qualified deals' commitments (onto the
/// refreshed keys, whose group key must not change).
fn group_public_keys(
    params: Params,
    deals: &BTreeMap<usize, Deal>,
    previous: Option<&PublicKeys>,
) -> Result<PublicKeys, DkgError> {
    let mut sum = match previous {
        Some(p) => blsttc::poly::Commitment::from_bytes(p.set().to_bytes())
            .map_err(|_| DkgError::Previous)?,
        None => blsttc::poly::Commitment::from(Vec::<blsttc::G1Affine>::new()),
    };
    for deal in deals.values() {
        sum += deal.commitment.row(0);
    }
    let public = public_keys(params, sum)?;
    if previous.is_some_and(|p| p.group_key() != public.group_key()) {
        return Err(DkgError::GroupKeyChanged);
    }
    Ok(public)
}

/// Whether participant `j`'s complaint about dealer `d` holds: its
/// decryption share must be `j`'s (a pairing check against `j`'s key), and
/// the row it opens must be bad.
fn judge_complaint(
    params: Params,
    keys: &[EncryptionKey],
    deal: &Deal,
    d: usize,
    j: usize,
    share: &blsttc::DecryptionShare,
) -> Fault {
    let false_complaint = Fault {
        participant: j,
        kind: FaultKind::FalseComplaint { dealer: d },
    };
    let (Some(ct), Some(key)) = (deal.rows.get(j), keys.get(j)) else {
        return false_complaint;
    };
    let set = key.as_set();
    if !set
        .public_key_share(0usize)
        .verify_decryption_share(share, ct)
    {
        return false_complaint;
    }
    let Ok(plain) = set.decrypt([(0usize, share)], ct) else {
        return false_complaint;
    };
    let plain = zeroize::Zeroizing::new(plain);
    match row_from_plaintext(params, deal, j, &plain) {
        Ok(_) => false_complaint,
        Err(fault) => Fault {
            participant: d,
            kind: FaultKind::BadRow {
                complainant: j,
                fault,
            },
        },
    }
}

impl Outcome {
    /// Participant `me`'s secret share: `Σ_{d ∈ QUAL} f_d(0, me + 1)`, from
    /// its own row of each qualified deal, or, where that row is bad, from
    /// `f + 1` acks' values that match the commitment. Checked against
    /// `me`'s public key share before it is returned. A refresh adds
    /// `me`'s current share (`previous`).
    pub fn secret_share(
        &self,
        me: usize,
        key: &super::DecryptionKey,
        previous: Option<&SecretShare>,
    ) -> Result<SecretShare, DkgError> {
        if previous.is_some() != self.params.refresh {
            return Err(DkgError::Previous);
        }
        let mut sum = previous.map_or(blsttc::Fr::from(0u64), SecretShare::scalar);
        for (&d, deal) in &self.deals {
            sum += match open_row(self.params, deal, me, key) {
                Ok(row) => row.evaluate(0u64),
                Err(_) => self.rebuild_value(d, deal, me, key)?,
            };
        }
        let share = secret_share(me, &mut sum);
        let mine = self.public.share(crate::ReplicaId(me as u16));
        if mine != Some(&share.inner().public_key_share()) {
            return Err(DkgError::ShareMismatch(me));
        }
        Ok(share)
    }

    /// `f_d(0, me + 1)` from the values the acks owe `me`: each is
    /// `f_d(j + 1, me + 1)`, checked against the commitment, and `f + 1`
    /// of them interpolate the row at 0.
    fn rebuild_value(
        &self,
        d: usize,
        deal: &Deal,
        me: usize,
        key: &super::DecryptionKey,
    ) -> Result<blsttc::Fr, DkgError> {
        let needed = self.params.f + 1;
        let mut samples: Vec<(blsttc::Fr, blsttc::Fr)> = Vec::with_capacity(needed);
        for (j, values) in self.acks.get(&d).into_iter().flatten() {
            let Some(plain) = values.get(me).and_then(|ct| key.decrypt(ct)) else {
                continue;
            };
            let Ok(bytes) = <[u8; 32]>::try_from(&plain[..]) else {
                continue;
            };
            let Some(value) = Option::<blsttc::Fr>::from(blsttc::Fr::from_bytes_be(&bytes)) else {
                continue;
            };
            let expected = deal.commitment.evaluate(me + 1, j + 1);
            if blsttc::G1Projective::generator() * value != blsttc::G1Projective::from(expected) {
                continue;
            }
            samples.push((blsttc::Fr::from((j + 1) as u64), value));
            if samples.len() == needed {
                let row =
                    blsttc::poly::Poly::interpolate(samples.iter().copied()).map_err(|_| {
                        DkgError::ShareUnavailable {
                            dealer: d,
                            valid: needed,
                            needed,
                        }
                    })?;
                return Ok(row.evaluate(0u64));
            }
        }
        Err(DkgError::ShareUnavailable {
            dealer: d,
            valid: samples.len(),
            needed,
        })
    }

    /// Whether this outcome refreshes an existing key.
    pub fn public_is_refresh(&self) -> bool {
        self.params.refresh
    }

    /// The dealers whose deals went into the key, as ids.
    pub fn qualified(&self) -> &BTreeSet<usize> {
        &self.qualified
    }
}
