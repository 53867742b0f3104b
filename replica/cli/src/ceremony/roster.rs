//! The roster: who takes part, and with which keys (docs/keys.md §2, §3).
//!
//! Every `roster/*.toml` file is read; an entry is *attributed* to
//! participant `i` when its own signature verifies (and, in a refresh,
//! when replica `i`'s note key from cluster.toml signed it too: nobody
//! else can speak for a member; in a bound plan, when its signing key is
//! the one the plan binds to slot `i`). Everything else proves nothing and
//! is ignored. A participant whose attributed entries are two different ones,
//! or an invalid one, or whose keys or address repeat another's, is
//! excluded — named, with the reason — instead of stopping the ceremony.
//!
//! Which roster is used is agreed through the deals: every phase message
//! names its roster (its hash, and per id the entry hash it includes).
//! A dealer adopts the roster the deals already published name, if any;
//! `verify` and `finish` use the roster at least `n − f` deals name —
//! at most one roster can have them, since an honest dealer deals once and
//! two sets of `n − f` dealers share an honest one.

use super::files::{hex_array, put_str, read_bounded, toml_files, verify};
use super::identity::Binding;
use anyhow::bail;
use belfry_replica::coin::dkg::EncryptionKey;
use belfry_replica::coin::sha256;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `roster/roster-<i>.toml`: one participant's public identity, signed
/// with its own signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// Its id, `0..n`.
    pub id: u16,
    /// The plan's hash (hex).
    pub plan: String,
    /// Its replica's address, `host:port`.
    pub address: String,
    /// Its replica's TLS certificate (PEM).
    pub certificate: String,
    /// Its replica's Ed25519 checkpoint note key (hex).
    pub note_key: String,
    /// Its ceremony encryption key, a BLS12-381 G1 point (hex).
    pub encryption_key: String,
    /// Its ceremony signing key, Ed25519 (hex).
    pub signing_key: String,
    /// Ed25519 over [`RosterEntry::signed_bytes`] (hex).
    pub signature: String,
    /// In a refresh: the same bytes signed with the replica's note key (the
    /// one `cluster.toml` lists), which binds the entry to the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_signature: Option<String>,
}

/// An entry attributed to a participant: checked, or why it is invalid.
type Checked = Result<Member, String>;

/// Each distinct entry attributed to one participant, by hash, with its file.
type Claims = BTreeMap<[u8; 32], (PathBuf, Checked)>;

/// Rosters the deals name, each with how many deals name it; and the
/// rosters named that cannot be rebuilt, with why.
type Named = (Vec<(Roster, usize)>, Vec<String>);

/// A roster entry, checked.
#[derive(Clone, Debug)]
pub struct Member {
    /// The entry as published.
    pub entry: RosterEntry,
    /// Its encryption key.
    pub encryption: EncryptionKey,
    /// Its signing key.
    pub signing: [u8; 32],
    /// Its note key.
    pub note_key: [u8; 32],
    /// The hash of its signed bytes.
    pub hash: [u8; 32],
}

impl RosterEntry {
    /// The bytes its signature covers.
    pub fn signed_bytes(&self, path: &Path) -> anyhow::Result<Vec<u8>> {
        let mut b = b"belfry-ceremony-roster-v1".to_vec();
        b.extend(hex_array::<32>(path, "plan", &self.plan)?);
        b.extend(self.id.to_be_bytes());
        put_str(&mut b, &self.address);
        put_str(&mut b, &self.certificate);
        b.extend(hex_array::<32>(path, "note_key", &self.note_key)?);
        b.extend(hex_array::<48>(
            path,
            "encryption_key",
            &self.encryption_key,
        )?);
        b.extend(hex_array::<32>(path, "signing_key", &self.signing_key)?);
        Ok(b)
    }

    /// Whose entry this is: `Err` if it proves nothing about anyone (it
    /// does not parse, its signature fails, it is another plan's, or in a
    /// refresh the member's note key did not sign it); else its id, its
    /// hash, and the checked member or why the entry is invalid.
    fn attribute(
        self,
        path: &Path,
        plan_hash: &[u8; 32],
        n: usize,
        cluster: Option<&belfry_node::ClusterFile>,
        bound: Option<&[Binding]>,
    ) -> Result<(usize, [u8; 32], Checked), String> {
        let e = |x: anyhow::Error| format!("{x:#}");
        let bytes = self.signed_bytes(path).map_err(e)?;
        let signing: [u8; 32] = hex_array(path, "signing_key", &self.signing_key).map_err(e)?;
        let signature: [u8; 64] = hex_array(path, "signature", &self.signature).map_err(e)?;
        if !verify(&signing, &bytes, &signature) {
            return Err("its signature does not verify under its own signing key".into());
        }
        if hex_array::<32>(path, "plan", &self.plan).map_err(e)? != *plan_hash {
            return Err(format!("made for another plan ({})", self.plan));
        }
        let id = usize::from(self.id);
        if id >= n {
            return Err(format!("id {id} is not below n = {n}"));
        }
        let binding = bound.and_then(|b| b.get(id));
        if binding.is_some_and(|b| b.signing_key != signing) {
            return Err(format!(
                "not signed with the key the plan binds to slot {id}"
            ));
        }
        let note_key: [u8; 32] = hex_array(path, "note_key", &self.note_key).map_err(e)?;
        if let Some(cluster) = cluster {
            // Only the member's note key speaks for the member.
            let listed = cluster
                .replicas
                .get(id)
                .and_then(|r| r.note_key.as_deref())
                .and_then(|k| belfry_replica::timestamp::checkpoint::VerifierKey::parse(k).ok())
                .map(|k| k.public);
            let member: Option<[u8; 64]> = self
                .member_signature
                .as_deref()
                .and_then(|s| hex_array(path, "member_signature", s).ok());
            let vouched = listed
                .zip(member)
                .is_some_and(|(k, s)| verify(&k, &bytes, &s));
            if !vouched {
                return Err(format!(
                    "not signed with replica {id}'s note key from cluster.toml"
                ));
            }
        }
        let hash = sha256(&[&bytes]);
        let checked = match binding {
            Some(b) => self
                .check_bound(path, b, &note_key, &bytes)
                .and_then(|e| e.check(path, note_key, signing, hash, cluster)),
            None => self.check(path, note_key, signing, hash, cluster),
        };
        Ok((id, hash, checked))
    }

    /// In a bound plan, what keeps anyone from listing another's identity
    /// (which would get both excluded): the address is the one the plan
    /// binds to the slot, the note key signed the entry (only its holder
    /// can), and the certificate names this slot's replica (a copied one
    /// names another; making one needs the copied key's holder). The
    /// signing key is the plan's already.
    fn check_bound(
        self,
        path: &Path,
        b: &Binding,
        note_key: &[u8; 32],
        bytes: &[u8],
    ) -> Result<RosterEntry, String> {
        if self.address != b.address {
            return Err(format!(
                "its address {} is not {}, which the plan binds to slot {}",
                self.address, b.address, self.id
            ));
        }
        let proof: Option<[u8; 64]> = self
            .member_signature
            .as_deref()
            .and_then(|s| hex_array(path, "member_signature", s).ok());
        if !proof.is_some_and(|s| verify(note_key, bytes, &s)) {
            return Err("its note key did not sign it (member_signature)".into());
        }
        let name = belfry_node::tls::server_name(self.id);
        let names = belfry_node::tls::certificate_names(&self.certificate)
            .map_err(|e| format!("its certificate: {e}"))?;
        if names != [name.clone()] {
            return Err(format!(
                "its certificate names {names:?}, not only {name:?}"
            ));
        }
        Ok(self)
    }

    /// The entry's content, once it is known whose it is.
    fn check(
        self,
        path: &Path,
        note_key: [u8; 32],
        signing: [u8; 32],
        hash: [u8; 32],
        cluster: Option<&belfry_node::ClusterFile>,
    ) -> Result<Member, String> {
        belfry_node::config::check_address(&self.address)
            .map_err(|e| format!("its address: {e}"))?;
        belfry_node::tls::cert_from_pem("certificate", &self.certificate)
            .map_err(|e| format!("{e}"))?;
        let encryption = hex_array(path, "encryption_key", &self.encryption_key)
            .ok()
            .and_then(EncryptionKey::from_bytes)
            .ok_or("its encryption_key is not a G1 point")?;
        if let Some(r) = cluster.and_then(|c| c.replicas.get(usize::from(self.id))) {
            if r.address != self.address || r.certificate != self.certificate {
                return Err(format!(
                    "not the address and certificate cluster.toml lists for replica {}",
                    self.id
                ));
            }
        }
        Ok(Member {
            hash,
            entry: self,
            encryption,
            signing,
            note_key,
        })
    }
}

/// Everything in `roster/`, attributed.
pub struct RosterView {
    n: usize,
    plan_hash: [u8; 32],
    /// A bound plan (identity.rs).
    bound: bool,
    /// By id: each distinct entry attributed to it, checked or not.
    claims: BTreeMap<usize, Claims>,
    /// Files that prove nothing about anyone, and why.
    pub ignored: Vec<(PathBuf, String)>,
}

impl RosterView {
    /// Reads every `roster/*.toml`. `cluster`: in a refresh, the cluster
    /// whose members alone may take part.
    pub fn gather(
        shared: &Path,
        plan_hash: &[u8; 32],
        n: usize,
        cluster: Option<&belfry_node::ClusterFile>,
        bound: Option<&[Binding]>,
    ) -> anyhow::Result<RosterView> {
        let mut view = RosterView {
            n,
            plan_hash: *plan_hash,
            bound: bound.is_some(),
            claims: BTreeMap::new(),
            ignored: Vec::new(),
        };
        for path in toml_files(&shared.join("roster"))? {
            let parsed = toml::from_str::<RosterEntry>(&read_bounded(&path)?)
                .map_err(|e| e.to_string())
                .and_then(|entry| entry.attribute(&path, plan_hash, n, cluster, bound));
            match parsed {
                Ok((id, hash, checked)) => {
                    view.claims
                        .entry(id)
                        .or_default()
                        .entry(hash)
                        .or_insert((path, checked));
                }
                Err(why) => view.ignored.push((path, why)),
            }
        }
        Ok(view)
    }

    /// The roster this participant would propose: every participant with
    /// exactly one valid entry whose keys, address and certificate no
    /// other participant uses. The others, and why, as faults; the ids
    /// without any entry yet.
    pub fn settle(&self) -> (Roster, BTreeMap<usize, String>, Vec<usize>) {
        let mut members: Vec<Option<Member>> = vec![None; self.n];
        let mut excluded = BTreeMap::new();
        let mut missing = Vec::new();
        for (id, slot) in members.iter_mut().enumerate() {
            let Some(claims) = self.claims.get(&id) else {
                missing.push(id);
                continue;
            };
            let mut it = claims.values();
            match (it.next(), it.next()) {
                (Some((path, _)), Some((other, _))) => {
                    excluded.insert(
                        id,
                        format!(
                            "participant {id} signed two different roster entries, {} and {}",
                            path.display(),
                            other.display()
                        ),
                    );
                }
                (Some((path, Err(why))), None) => {
                    excluded.insert(
                        id,
                        format!(
                            "participant {id}'s roster entry {} is invalid: {why}",
                            path.display()
                        ),
                    );
                }
                (Some((_, Ok(m))), None) => *slot = Some(m.clone()),
                (None, _) => missing.push(id),
            }
        }
        for (id, why) in duplicates(&members, self.bound) {
            members[id] = None;
            excluded.insert(id, why);
        }
        (Roster::new(self.plan_hash, members), excluded, missing)
    }

    /// The roster a phase file names by its listing, if every entry it
    /// lists is here, attributed and valid.
    pub fn roster_of(&self, listing: &[String]) -> Result<Roster, String> {
        if listing.len() != self.n {
            return Err(format!("lists {} entries, n = {}", listing.len(), self.n));
        }
        let mut members = Vec::with_capacity(self.n);
        for (id, h) in listing.iter().enumerate() {
            if h.is_empty() {
                members.push(None);
                continue;
            }
            let hash: [u8; 32] =
                hex_array(Path::new("members"), "members", h).map_err(|e| format!("{e:#}"))?;
            match self.claims.get(&id).and_then(|c| c.get(&hash)) {
                Some((_, Ok(m))) => members.push(Some(m.clone())),
                Some((path, Err(why))) => {
                    return Err(format!("names {}, which is invalid: {why}", path.display()))
                }
                None => return Err(format!("names an entry of participant {id} not in roster/")),
            }
        }
        if let Some((_, why)) = duplicates(&members, self.bound).into_iter().next() {
            return Err(why);
        }
        Ok(Roster::new(self.plan_hash, members))
    }
}

/// The participants whose address, certificate or keys another uses, and
/// why: all of them are excluded (which one copied cannot be told).
///
/// In a bound plan no valid entry can repeat another's address, signing
/// key, note key or certificate (`check_bound`), and an encryption key is
/// not checked: a participant listing another's gets rows only that other
/// one could open — it excludes itself in effect (it cannot verify or
/// take a share), while the other, which only ever decrypts its own slot,
/// loses nothing. Excluding both would let one Byzantine participant
/// remove an honest one.
fn duplicates(members: &[Option<Member>], bound: bool) -> BTreeMap<usize, String> {
    type Key = fn(&Member) -> Vec<u8>;
    let kinds: [(&str, Key); 5] = [
        ("address", |m| m.entry.address.as_bytes().to_vec()),
        ("certificate", |m| m.entry.certificate.as_bytes().to_vec()),
        ("encryption key", |m| m.encryption.to_bytes().to_vec()),
        ("signing key", |m| m.signing.to_vec()),
        ("note key", |m| m.note_key.to_vec()),
    ];
    let mut out = BTreeMap::new();
    for (what, key) in kinds {
        if bound && what == "encryption key" {
            continue;
        }
        let mut by_value: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
        for (id, m) in members.iter().enumerate() {
            if let Some(m) = m {
                by_value.entry(key(m)).or_default().push(id);
            }
        }
        for ids in by_value.values().filter(|ids| ids.len() > 1) {
            for &id in ids {
                out.entry(id).or_insert_with(|| {
                    format!("participants {ids:?} publish the same {what}: none of them is used")
                });
            }
        }
    }
    out
}

/// The roster a ceremony uses: by id, the participant's checked entry, or
/// none for one that is excluded (its rows and values go to a key nobody
/// holds; it gets no share).
#[derive(Clone, Debug)]
pub struct Roster {
    /// By id.
    pub members: Vec<Option<Member>>,
    /// The hash every later message names.
    pub hash: [u8; 32],
    plan_hash: [u8; 32],
}

impl Roster {
    fn new(plan_hash: [u8; 32], members: Vec<Option<Member>>) -> Roster {
        let mut b = b"belfry-ceremony-roster-set-v2".to_vec();
        b.extend(plan_hash);
        for m in &members {
            match m {
                Some(m) => {
                    b.push(1);
                    b.extend(m.hash);
                }
                None => b.push(0),
            }
        }
        Roster {
            hash: sha256(&[&b]),
            members,
            plan_hash,
        }
    }

    /// Participant `id`'s entry, if the roster includes it.
    pub fn member(&self, id: usize) -> Option<&Member> {
        self.members.get(id).and_then(Option::as_ref)
    }

    /// The ids the roster includes.
    pub fn present(&self) -> BTreeSet<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_some())
            .collect()
    }

    /// The ids it excludes.
    pub fn absent(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].is_none())
            .collect()
    }

    /// Per id, the entry's hash (hex), or empty: what phase files carry.
    pub fn listing(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.as_ref().map(|m| hex::encode(m.hash)).unwrap_or_default())
            .collect()
    }

    /// Every participant's encryption key, by id; an excluded one's is a
    /// key nobody holds.
    pub fn encryption_keys(&self) -> Vec<EncryptionKey> {
        self.members
            .iter()
            .enumerate()
            .map(|(id, m)| match m {
                Some(m) => m.encryption,
                None => {
                    let mut label = b"belfry-ceremony-nobody-v1".to_vec();
                    label.extend(self.plan_hash);
                    label.extend((id as u16).to_be_bytes());
                    EncryptionKey::nobody(&label)
                }
            })
            .collect()
    }
}

/// The roster that the deals in the shared directory name and how many
/// validly signed deals name it, the most-named first (ties: lowest hash);
/// rosters the deals name that cannot be rebuilt here, with why.
pub fn named_by_deals(shared: &Path, view: &RosterView) -> anyhow::Result<Named> {
    let mut listings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, file) in super::files::raw_files(shared, super::files::Phase::Deal)? {
        listings.entry(file.roster.clone()).or_insert(file.members);
    }
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (hash, listing) in listings {
        match view.roster_of(&listing) {
            Ok(r) if hex::encode(r.hash) == hash.trim() => {
                let deals = super::files::load_phase(shared, super::files::Phase::Deal, &r)?;
                let count = deals.by_id.len() + deals.equivocators.len();
                if count > 0 {
                    found.push((r, count));
                }
            }
            Ok(_) => problems.push(format!(
                "deals name roster {hash} with a listing that does not hash to it"
            )),
            Err(why) => problems.push(format!("deals name roster {hash}, which {why}")),
        }
    }
    found.sort_by(|(a, ca), (b, cb)| cb.cmp(ca).then(a.hash.cmp(&b.hash)));
    Ok((found, problems))
}

/// Refuses a roster that cannot make a cluster: fewer than `n − f`
/// participants, or (a new key from an unbound plan) any participant
/// excluded. `bound`: a refresh, or a plan that binds its slots: only
/// slot i's holder can contest slot i, so an excluded slot is its own
/// holder's doing, and cluster.toml lists it absent.
pub fn check_usable(roster: &Roster, quorum: usize, bound: bool) -> anyhow::Result<()> {
    let present = roster.present().len();
    if present < quorum {
        bail!(
            "the roster has {present} participants, at least n − f = {quorum} needed; excluded: {:?}",
            roster.absent()
        );
    }
    if !bound && present < roster.members.len() {
        bail!(
            "a new key from an unbound plan needs every participant in the roster (anyone who can \
             write the shared directory can contest an unbound slot): excluded {:?}; start again \
             with a new plan, bound with --participants (belfry ceremony identity)",
            roster.absent()
        );
    }
    Ok(())
}
