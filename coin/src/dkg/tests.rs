use super::*;
use crate::{BlsCrypto, ThresholdCrypto};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeMap;
use std::sync::Arc;

struct Ceremony {
    params: Params,
    secrets: Vec<DecryptionKey>,
    keys: Vec<EncryptionKey>,
    deals: BTreeMap<usize, Deal>,
    rng: ChaCha20Rng,
}

impl Ceremony {
    fn new(n: usize, seed: u64) -> Ceremony {
        Ceremony::with(Params::new(n, crate::max_faulty(n)).unwrap(), seed)
    }

    fn with(params: Params, seed: u64) -> Ceremony {
        let n = params.n();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let secrets: Vec<DecryptionKey> =
            (0..n).map(|_| DecryptionKey::generate(&mut rng)).collect();
        let keys: Vec<EncryptionKey> = secrets.iter().map(DecryptionKey::public).collect();
        let mut deals = BTreeMap::new();
        for d in 0..n {
            deals.insert(d, Deal::new(params, d, &keys, &mut rng).unwrap());
        }
        Ceremony {
            params,
            secrets,
            keys,
            deals,
            rng,
        }
    }

    fn parsed(&self) -> BTreeMap<usize, (Deal, [u8; 32])> {
        self.deals
            .iter()
            .map(|(&d, deal)| (d, (deal.clone(), Deal::hash(&deal.to_bytes()))))
            .collect()
    }

    fn verify(&mut self, j: usize) -> (Verification, Vec<Checked>) {
        let parsed = self.parsed();
        Verification::make(
            self.params,
            j,
            &self.secrets[j],
            &self.keys,
            &parsed,
            &mut self.rng,
        )
    }

    fn transcript(&self, verifications: &BTreeMap<usize, Verification>) -> Transcript {
        Transcript {
            deals: self
                .deals
                .iter()
                .map(|(&d, deal)| (d, deal.to_bytes()))
                .collect(),
            verifications: verifications
                .iter()
                .map(|(&j, v)| (j, v.to_bytes()))
                .collect(),
            equivocators: Default::default(),
        }
    }

    fn all_verify(&mut self) -> BTreeMap<usize, Verification> {
        (0..self.params.n())
            .map(|j| (j, self.verify(j).0))
            .collect()
    }
}

/// Signs with the shares of `signers` and checks the group signature.
fn signs(public: &PublicKeys, shares: &[SecretShare], signers: &[usize]) -> bool {
    let public = Arc::new(public.clone());
    let message = b"a tree head";
    let sigs: Vec<_> = signers
        .iter()
        .map(|&i| {
            let c = BlsCrypto::new(public.clone(), shares[i].clone());
            (shares[i].id(), c.sign_share(message).unwrap())
        })
        .collect();
    let v = BlsCrypto::verifier(public.clone());
    v.combine(message, &sigs)
        .is_ok_and(|sig| v.verify_group(message, &sig))
}

#[test]
fn honest_ceremonies_of_4_and_7_give_one_key_that_any_f_plus_1_shares_sign_with() {
    for (n, seed) in [(4, 1), (7, 2)] {
        let before = crate::group_secrets_made();
        let mut c = Ceremony::new(n, seed);
        let vs = c.all_verify();
        let t = c.transcript(&vs);
        let outcomes: Vec<Outcome> = (0..n)
            .map(|_| qualify(c.params, &c.keys, &t, None).unwrap())
            .collect();
        let o = &outcomes[0];
        assert_eq!(o.qualified.len(), n);
        assert!(o.faults.is_empty());
        for other in &outcomes {
            assert_eq!(other.public.commitment_hex(), o.public.commitment_hex());
        }
        let shares: Vec<SecretShare> = (0..n)
            .map(|i| o.secret_share(i, &c.secrets[i], None).unwrap())
            .collect();
        let f = c.params.f();
        assert!(signs(&o.public, &shares, &(0..=f).collect::<Vec<_>>()));
        assert!(signs(
            &o.public,
            &shares,
            &(n - f - 1..n).collect::<Vec<_>>()
        ));
        // f shares are not enough.
        assert!(!signs(&o.public, &shares, &(0..f).collect::<Vec<_>>()));
        // Nothing on this thread made a group secret; a dealing would have.
        assert_eq!(crate::group_secrets_made(), before);
        let _ = crate::deal(4, 1, &mut ChaCha20Rng::seed_from_u64(0)).unwrap();
        assert_eq!(crate::group_secrets_made(), before + 1);
    }
}

#[test]
fn a_bad_row_is_proven_by_its_recipient_and_excludes_its_dealer() {
    let mut c = Ceremony::new(4, 3);
    let key = c.keys[1];
    let mut rng = ChaCha20Rng::seed_from_u64(30);
    c.deals.get_mut(&3).unwrap().spoil_row(1, &key, 1, &mut rng);
    let (v1, checked) = c.verify(1);
    assert_eq!(
        checked[3],
        Checked {
            dealer: 3,
            fault: Some(RowFault::NotOnCommitment)
        }
    );
    let mut vs = c.all_verify();
    vs.insert(1, v1);
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    assert_eq!(
        o.faults,
        vec![Fault {
            participant: 3,
            kind: FaultKind::BadRow {
                complainant: 1,
                fault: RowFault::NotOnCommitment
            }
        }]
    );
    assert_eq!(o.excluded.get(&3), Some(&Exclusion::Faulty));
    assert_eq!(
        o.qualified.iter().copied().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    // Everyone, the cheater too, still holds a share of the new key.
    let shares: Vec<SecretShare> = (0..4)
        .map(|i| o.secret_share(i, &c.secrets[i], None).unwrap())
        .collect();
    assert!(signs(&o.public, &shares, &[1, 3]));
}

#[test]
fn a_false_complaint_convicts_its_author() {
    let mut c = Ceremony::new(4, 4);
    let mut vs = c.all_verify();
    let deal0 = c.deals[&0].clone();
    vs.get_mut(&2)
        .unwrap()
        .falsely_complain(0, &deal0, 2, &c.secrets[2]);
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    assert_eq!(
        o.faults,
        vec![Fault {
            participant: 2,
            kind: FaultKind::FalseComplaint { dealer: 0 }
        }]
    );
    // Dealer 0 keeps 3 acks (from 0, 1 and 3): 2f + 1.
    assert_eq!(
        o.qualified.iter().copied().collect::<Vec<_>>(),
        vec![0, 1, 3]
    );
    // A complaint carrying someone else's decryption share is false too.
    let mut vs = c.all_verify();
    vs.get_mut(&2)
        .unwrap()
        .falsely_complain(1, &c.deals[&1].clone(), 3, &c.secrets[3]);
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    assert_eq!(o.faults[0].participant, 2);
}

#[test]
fn a_participant_without_a_good_row_or_a_verification_rebuilds_its_value_from_acks() {
    let mut c = Ceremony::new(4, 5);
    let key = c.keys[2];
    let mut rng = ChaCha20Rng::seed_from_u64(50);
    c.deals.get_mut(&0).unwrap().spoil_row(2, &key, 1, &mut rng);
    // Participant 2 is late: no verification from it, so no complaint.
    let mut vs = c.all_verify();
    vs.remove(&2);
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    assert_eq!(o.qualified.len(), 4, "{:?}", o.excluded);
    let shares: Vec<SecretShare> = (0..4)
        .map(|i| o.secret_share(i, &c.secrets[i], None).unwrap())
        .collect();
    assert!(signs(&o.public, &shares, &[2, 3]));
}

#[test]
fn deals_that_do_not_parse_and_deals_few_acknowledged_are_excluded() {
    let mut c = Ceremony::new(4, 6);
    let vs = c.all_verify();
    let mut t = c.transcript(&vs);
    // Cut short, and a commitment of the wrong degree.
    t.deals.get_mut(&1).unwrap().pop();
    let low = Params::new(4, 0).ok();
    assert!(low.is_none(), "f = 0 is no ceremony");
    let o = qualify(c.params, &c.keys, &t, None).unwrap();
    assert!(matches!(o.faults[0].kind, FaultKind::BadDeal(_)));
    assert_eq!(o.faults[0].participant, 1);
    // A deal only two participants saw.
    let mut vs = c.all_verify();
    for j in [0, 1] {
        vs.get_mut(&j).unwrap().entries.remove(&2);
    }
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    assert_eq!(
        o.excluded.get(&2),
        Some(&Exclusion::TooFewAcks { acks: 2, needed: 3 })
    );
    assert!(o.faults.is_empty(), "a late dealer is not blamed");
    // Equivocators' messages are left out by the driver and named here.
    let vs = c.all_verify();
    let mut t = c.transcript(&vs);
    t.deals.remove(&3);
    t.equivocators.insert(3);
    let o = qualify(c.params, &c.keys, &t, None).unwrap();
    assert_eq!(o.faults[0].kind, FaultKind::Equivocation);
    assert_eq!(o.excluded.get(&3), Some(&Exclusion::Faulty));
    // Fewer than f + 1 qualified dealers: no key.
    let vs = c.all_verify();
    let mut t = c.transcript(&vs);
    t.deals.retain(|&d, _| d == 0);
    assert!(matches!(
        qualify(c.params, &c.keys, &t, None),
        Err(DkgError::TooFewQualified { .. })
    ));
}

#[test]
fn messages_round_trip_and_garbage_is_refused() {
    let mut c = Ceremony::new(4, 7);
    let (v, _) = c.verify(0);
    let bytes = v.to_bytes();
    assert_eq!(
        Verification::from_bytes(c.params, &bytes)
            .unwrap()
            .to_bytes(),
        bytes
    );
    for cut in [0, 1, 2, 40, bytes.len() - 1] {
        assert!(Verification::from_bytes(c.params, &bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Verification::from_bytes(c.params, &longer).is_err());
    let deal = c.deals[&0].to_bytes();
    assert_eq!(
        Deal::from_bytes(c.params, 0, &deal).unwrap().to_bytes(),
        deal
    );
    let mut flipped = deal.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(Deal::from_bytes(c.params, 0, &flipped).is_err());
    assert!(Deal::from_bytes(c.params, 0, &deal[..100]).is_err());
}

/// The module's own code names none of the dealer's ways to a group
/// secret. (What this proves: no call to them and no `SecretKeySet` here.
/// What it does not: that no other arithmetic could sum the dealers'
/// secrets — the review of `qualify.rs`, which adds only `f_d(0, i + 1)`,
/// and the counter test above cover that.)
#[test]
fn the_dkg_code_never_names_the_dealer_or_a_group_secret() {
    for (name, src) in [
        ("mod.rs", include_str!("mod.rs")),
        ("keys.rs", include_str!("keys.rs")),
        ("deal.rs", include_str!("deal.rs")),
        ("verify.rs", include_str!("verify.rs")),
        ("qualify.rs", include_str!("qualify.rs")),
    ] {
        for banned in [
            "SecretKeySet",
            "deal_with_secret",
            "dealer::deal",
            "crate::deal(",
            "secret_key()",
            "threshold_sign",
        ] {
            assert!(!src.contains(banned), "{name} names {banned}");
        }
    }
}

#[test]
fn a_refresh_keeps_the_group_key_and_old_and_new_shares_do_not_combine() {
    let mut c = Ceremony::new(4, 8);
    let vs = c.all_verify();
    let o = qualify(c.params, &c.keys, &c.transcript(&vs), None).unwrap();
    let old: Vec<SecretShare> = (0..4)
        .map(|i| o.secret_share(i, &c.secrets[i], None).unwrap())
        .collect();
    // The refresh: fresh ceremony keys, one dealer cheating participant 0.
    let mut r = Ceremony::with(Params::refresh(4, 1).unwrap(), 9);
    let key = r.keys[0];
    let mut rng = ChaCha20Rng::seed_from_u64(90);
    r.deals.get_mut(&2).unwrap().spoil_row(0, &key, 1, &mut rng);
    let vs = r.all_verify();
    let t = r.transcript(&vs);
    assert!(matches!(
        qualify(r.params, &r.keys, &t, None),
        Err(DkgError::Previous)
    ));
    let ro = qualify(r.params, &r.keys, &t, Some(&o.public)).unwrap();
    assert_eq!(ro.faults[0].participant, 2);
    assert_eq!(ro.public.group_key(), o.public.group_key());
    assert_ne!(ro.public.commitment_hex(), o.public.commitment_hex());
    let new: Vec<SecretShare> = (0..4)
        .map(|i| ro.secret_share(i, &r.secrets[i], Some(&old[i])).unwrap())
        .collect();
    for i in 0..4 {
        assert_ne!(old[i], new[i], "share {i} changed");
    }
    assert!(signs(&o.public, &old, &[2, 3]));
    assert!(signs(&ro.public, &new, &[0, 3]));
    // One share from before and one from after make no signature, under
    // either set of public key shares.
    let mixed = vec![old[0].clone(), new[1].clone()];
    assert!(!signs(&ro.public, &mixed, &[0, 1]));
    assert!(!signs(&o.public, &mixed, &[0, 1]));
    // A deal that does not share zero is refused in a refresh.
    let generation = c.deals[&0].to_bytes();
    assert_eq!(
        Deal::from_bytes(r.params, 0, &generation).unwrap_err(),
        DealError::RefreshNotZero
    );
}

/// The copying attack (a Byzantine dealer puts honest dealers' row
/// ciphertexts in its own slots, so that each recipient's complaint opens
/// an honest row to everyone): the copied rows fail their slot proofs in
/// parsing, publicly — the copier is a bad dealer, and no honest
/// participant decrypts or complains about anything, so no decryption
/// share of an honest dealer's row is ever published.
#[test]
fn a_row_copied_from_another_deal_is_refused_before_anyone_decrypts_it() {
    let mut c = Ceremony::new(4, 5);
    // Dealer 3 copies dealer h's row for j into its slot j, a different
    // honest h for each j (what would open f + 1 rows of each).
    let honest = c.deals.clone();
    for (j, h) in [(0usize, 1usize), (1, 2), (2, 0)] {
        c.deals.get_mut(&3).unwrap().copy_row_from(&honest[&h], j);
    }
    let bytes = c.deals[&3].to_bytes();
    let why = Deal::from_bytes(c.params, 3, &bytes).unwrap_err();
    assert!(matches!(why, DealError::NotBound(_)), "{why}");
    // Honest deals parse; a deal presented as another dealer's does not.
    for d in 0..3 {
        let b = c.deals[&d].to_bytes();
        assert!(Deal::from_bytes(c.params, d, &b).is_ok());
        assert!(Deal::from_bytes(c.params, (d + 1) % 4, &b).is_err());
    }
    // In the qualification, the copier is a bad dealer and nobody
    // complains: no decryption share is in any verification.
    let transcript_deals: BTreeMap<usize, Vec<u8>> = c
        .deals
        .iter()
        .map(|(&d, deal)| (d, deal.to_bytes()))
        .collect();
    let parsed: BTreeMap<usize, (Deal, [u8; 32])> = transcript_deals
        .iter()
        .filter_map(|(&d, b)| {
            Deal::from_bytes(c.params, d, b)
                .ok()
                .map(|x| (d, (x, Deal::hash(b))))
        })
        .collect();
    assert_eq!(parsed.len(), 3, "the copier's deal is not taken");
    let mut vs = BTreeMap::new();
    for j in 0..4 {
        let (v, checked) =
            Verification::make(c.params, j, &c.secrets[j], &c.keys, &parsed, &mut c.rng);
        assert!(checked.iter().all(|k| k.fault.is_none()), "{checked:?}");
        vs.insert(j, v);
    }
    let mut t = c.transcript(&vs);
    t.deals = transcript_deals;
    let o = qualify(c.params, &c.keys, &t, None).unwrap();
    assert!(
        o.faults
            .iter()
            .any(|f| f.participant == 3 && matches!(f.kind, FaultKind::BadDeal(_))),
        "{:?}",
        o.faults
    );
    assert!(
        o.faults.iter().all(|f| f.participant == 3),
        "{:?}",
        o.faults
    );
}

#[test]
fn a_participant_excluded_from_the_roster_gets_no_share_and_the_others_complete_without_it() {
    // Slot 3's key is one nobody holds: its rows and values open for nobody.
    let params = Params::new(4, 1).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let secrets: Vec<DecryptionKey> = (0..3).map(|_| DecryptionKey::generate(&mut rng)).collect();
    let mut keys: Vec<EncryptionKey> = secrets.iter().map(DecryptionKey::public).collect();
    keys.push(EncryptionKey::nobody(b"slot 3"));
    assert_eq!(EncryptionKey::nobody(b"slot 3"), keys[3]);
    assert_ne!(EncryptionKey::nobody(b"slot 2"), keys[3]);
    let deals: BTreeMap<usize, Deal> = (0..3)
        .map(|d| (d, Deal::new(params, d, &keys, &mut rng).unwrap()))
        .collect();
    let parsed: BTreeMap<usize, (Deal, [u8; 32])> = deals
        .iter()
        .map(|(&d, deal)| (d, (deal.clone(), Deal::hash(&deal.to_bytes()))))
        .collect();
    let verifications: BTreeMap<usize, Vec<u8>> = (0..3)
        .map(|j| {
            let (v, checked) = Verification::make(params, j, &secrets[j], &keys, &parsed, &mut rng);
            assert!(checked.iter().all(|c| c.fault.is_none()));
            (j, v.to_bytes())
        })
        .collect();
    let t = Transcript {
        deals: deals
            .iter()
            .map(|(&d, deal)| (d, deal.to_bytes()))
            .collect(),
        verifications,
        equivocators: Default::default(),
    };
    let o = qualify(params, &keys, &t, None).unwrap();
    assert_eq!(
        o.qualified.iter().copied().collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(o.excluded.get(&3), Some(&Exclusion::NoDeal));
    let mut shares: Vec<SecretShare> = (0..3)
        .map(|i| o.secret_share(i, &secrets[i], None).unwrap())
        .collect();
    // Slot 3's public key share is defined; no key opens its share.
    assert!(o.public.share(crate::ReplicaId(3)).is_some());
    assert!(o.secret_share(3, &secrets[0], None).is_err());
    assert!(signs(&o.public, &shares, &[0, 2]));
    shares.truncate(1);
    assert!(!signs(&o.public, &shares, &[0]));
}
