//! The ceremony's files: the plan, roster entries, signed phase messages,
//! and each operator's secret ceremony file. Every signed byte string is
//! written by hand (docs/keys.md, "Files"): a domain tag, then fixed-width
//! big-endian integers and length-prefixed strings.

use anyhow::{bail, Context};
use belfry_node::generate::write_file;
use belfry_replica::coin::dkg::{EncryptionKey, Params};
use belfry_replica::coin::{sha256, Policy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The largest ceremony file read (a verification of 64 participants is
/// about 1.4 MB of hex).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// The most files one phase directory may hold: a few per participant
/// (an equivocator's second file is kept as evidence).
pub const MAX_FILES_PER_PHASE: usize = 4 * belfry_replica::coin::dkg::MAX_PARTICIPANTS;

/// The phases whose messages are signed files in a directory of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Each dealer's deal.
    Deal,
    /// Each participant's verification (acks and complaints).
    Verify,
    /// Each participant's record of the result it computed.
    Done,
}

impl Phase {
    /// The directory name under the shared directory.
    pub fn dir(self) -> &'static str {
        match self {
            Phase::Deal => "deal",
            Phase::Verify => "verify",
            Phase::Done => "done",
        }
    }

    fn tag(self) -> &'static [u8] {
        match self {
            Phase::Deal => b"belfry-ceremony-deal-v1",
            Phase::Verify => b"belfry-ceremony-verify-v1",
            Phase::Done => b"belfry-ceremony-done-v1",
        }
    }
}

/// Reads a public ceremony file, at most [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut s = String::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut s)
        .with_context(|| format!("{}", path.display()))?;
    if s.len() as u64 > MAX_FILE_BYTES {
        bail!("{}: larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    Ok(s)
}

fn hex_array<const N: usize>(path: &Path, field: &str, s: &str) -> anyhow::Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|e| {
        anyhow::anyhow!("{}: {field}: not {} hex digits: {e}", path.display(), 2 * N)
    })?;
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u32).to_be_bytes());
    out.extend(s.as_bytes());
}

/// `plan.toml`: what the cluster will be. Anyone writes it; every roster
/// entry names its hash, so every operator agrees to the same plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// 32 random hex digits naming this ceremony (no message of another
    /// ceremony is valid in this one).
    pub ceremony: String,
    /// Participants (replicas).
    pub n: u16,
    /// Byzantine participants tolerated.
    pub f: u16,
    /// `lamport` or `clock`.
    pub policy: String,
    /// The clock policy's bucket width (0 under lamport).
    pub granularity_us: u64,
    /// The cluster's genesis time, µs since the UNIX epoch.
    pub genesis_time: u64,
    /// A refresh of an existing cluster's shares, instead of a new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<PlanRefresh>,
}

/// `[refresh]` in `plan.toml` (docs/keys.md §8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRefresh {
    /// The public key shares being refreshed (the cluster's `public_keys`).
    pub public_keys: String,
    /// The first wave signed with the refreshed shares.
    pub switch_wave: u64,
}

impl Plan {
    /// Reads and checks `plan.toml`.
    pub fn load(path: &Path) -> anyhow::Result<(Plan, Params, Policy, [u8; 32])> {
        let plan: Plan = toml::from_str(&read_bounded(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let (n, f) = (usize::from(plan.n), usize::from(plan.f));
        let params = match plan.refresh {
            Some(_) => Params::refresh(n, f),
            None => Params::new(n, f),
        }
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let policy = Policy::from_name(&plan.policy, plan.granularity_us)
            .map_err(|e| anyhow::anyhow!("{}: policy: {e}", path.display()))?;
        let nonce: [u8; 16] = hex_array(path, "ceremony", &plan.ceremony)?;
        let mut b = b"belfry-ceremony-plan-v1".to_vec();
        b.extend(nonce);
        b.extend(plan.n.to_be_bytes());
        b.extend(plan.f.to_be_bytes());
        put_str(&mut b, policy.name());
        b.extend(plan.granularity_us.to_be_bytes());
        b.extend(plan.genesis_time.to_be_bytes());
        if let Some(r) = &plan.refresh {
            b.extend(b"refresh");
            put_str(&mut b, &r.public_keys);
            b.extend(r.switch_wave.to_be_bytes());
        }
        Ok((plan, params, policy, sha256(&[&b])))
    }
}

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

    /// Checks the entry's form and signature (not yet against the others);
    /// in a refresh, also that it is the member `cluster` lists under its id.
    fn check(
        self,
        path: &Path,
        plan_hash: &[u8; 32],
        cluster: Option<&belfry_node::ClusterFile>,
    ) -> anyhow::Result<Member> {
        let p = path.display();
        if hex_array::<32>(path, "plan", &self.plan)? != *plan_hash {
            bail!(
                "{p}: made for another plan (its plan hash is {})",
                self.plan
            );
        }
        belfry_node::config::check_address(&self.address)
            .map_err(|e| anyhow::anyhow!("{p}: address: {e}"))?;
        belfry_node::tls::cert_from_pem("certificate", &self.certificate)
            .map_err(|e| anyhow::anyhow!("{p}: {e}"))?;
        let encryption =
            EncryptionKey::from_bytes(hex_array(path, "encryption_key", &self.encryption_key)?)
                .ok_or_else(|| anyhow::anyhow!("{p}: encryption_key is not a G1 point"))?;
        let signing: [u8; 32] = hex_array(path, "signing_key", &self.signing_key)?;
        let note_key: [u8; 32] = hex_array(path, "note_key", &self.note_key)?;
        let bytes = self.signed_bytes(path)?;
        let signature: [u8; 64] = hex_array(path, "signature", &self.signature)?;
        if !verify(&signing, &bytes, &signature) {
            bail!("{p}: the signature does not verify under the entry's own signing key");
        }
        if let Some(cluster) = cluster {
            let Some(r) = cluster.replicas.get(usize::from(self.id)) else {
                bail!("{p}: id {} is not a replica of the cluster", self.id);
            };
            let listed = r
                .note_key
                .as_deref()
                .and_then(|k| belfry_replica::timestamp::checkpoint::VerifierKey::parse(k).ok())
                .map(|k| k.public);
            let member: [u8; 64] = hex_array(
                path,
                "member_signature",
                self.member_signature.as_deref().unwrap_or(""),
            )?;
            if r.address != self.address
                || r.certificate != self.certificate
                || listed != Some(note_key)
                || !verify(&note_key, &bytes, &member)
            {
                bail!(
                    "{p}: not replica {}'s entry: a refresh entry has the address, certificate and note key cluster.toml lists, and is signed with that note key",
                    self.id
                );
            }
        }
        Ok(Member {
            hash: sha256(&[&bytes]),
            entry: self,
            encryption,
            signing,
            note_key,
        })
    }
}

/// The complete roster: every participant, in id order.
#[derive(Clone, Debug)]
pub struct Roster {
    /// By id.
    pub members: Vec<Member>,
    /// The hash every later message names.
    pub hash: [u8; 32],
}

impl Roster {
    /// Reads every `roster/*.toml`, checks each entry and the whole: one
    /// entry per id `0..n`, no address, certificate or key used twice.
    pub fn load(
        shared: &Path,
        plan_hash: &[u8; 32],
        n: usize,
        cluster: Option<&belfry_node::ClusterFile>,
    ) -> anyhow::Result<Roster> {
        let dir = shared.join("roster");
        let mut by_id: BTreeMap<u16, (PathBuf, Member)> = BTreeMap::new();
        for path in toml_files(&dir)? {
            let entry: RosterEntry = toml::from_str(&read_bounded(&path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let member = entry.check(&path, plan_hash, cluster)?;
            let id = member.entry.id;
            if usize::from(id) >= n {
                bail!("{}: id {id} is not below n = {n}", path.display());
            }
            if let Some((other, m)) = by_id.get(&id) {
                if m.hash != member.hash {
                    bail!(
                        "participant {id} signed two different roster entries, {} and {}: \
                         the roster must be settled before anyone deals",
                        other.display(),
                        path.display()
                    );
                }
                continue;
            }
            by_id.insert(id, (path, member));
        }
        let missing: Vec<usize> = (0..n)
            .filter(|i| !by_id.contains_key(&(*i as u16)))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{}: no roster entry yet from participant(s) {missing:?} (have {} of {n}); every participant must join before dealing",
                dir.display(),
                by_id.len()
            );
        }
        let members: Vec<Member> = by_id.into_values().map(|(_, m)| m).collect();
        let distinct = |what: &str, key: &dyn Fn(&Member) -> Vec<u8>| -> anyhow::Result<()> {
            let set: BTreeSet<Vec<u8>> = members.iter().map(key).collect();
            if set.len() != members.len() {
                bail!("the roster repeats a {what}: every participant needs its own");
            }
            Ok(())
        };
        distinct("address", &|m| m.entry.address.as_bytes().to_vec())?;
        distinct("certificate", &|m| m.entry.certificate.as_bytes().to_vec())?;
        distinct("encryption key", &|m| m.encryption.to_bytes().to_vec())?;
        distinct("signing key", &|m| m.signing.to_vec())?;
        distinct("note key", &|m| m.note_key.to_vec())?;
        let mut b = b"belfry-ceremony-roster-set-v1".to_vec();
        b.extend(plan_hash);
        for m in &members {
            b.extend(m.hash);
        }
        Ok(Roster {
            hash: sha256(&[&b]),
            members,
        })
    }

    /// Every participant's encryption key, by id.
    pub fn encryption_keys(&self) -> Vec<EncryptionKey> {
        self.members.iter().map(|m| m.encryption).collect()
    }
}

/// The `*.toml` files of a directory, sorted, at most
/// [`MAX_FILES_PER_PHASE`]; none if it does not exist.
pub fn toml_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}", dir.display())),
    };
    let mut files = Vec::new();
    // Every entry counts (not only `.toml` files), and only plain files are
    // read: a link in a shared directory could point at a local secret.
    for (seen, e) in rd.enumerate() {
        if seen > 4 * MAX_FILES_PER_PHASE {
            bail!(
                "{}: more than {} entries: not a ceremony directory",
                dir.display(),
                4 * MAX_FILES_PER_PHASE
            );
        }
        let e = e.with_context(|| format!("{}", dir.display()))?;
        let path = e.path();
        let plain = e.file_type().is_ok_and(|t| t.is_file());
        if path.extension().is_some_and(|x| x == "toml") && plain {
            files.push(path);
            if files.len() > MAX_FILES_PER_PHASE {
                bail!(
                    "{}: more than {MAX_FILES_PER_PHASE} files: not a ceremony directory",
                    dir.display()
                );
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A signed phase message, as a file: `deal/`, `verify/`, `done/`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedFile {
    /// The author.
    pub id: u16,
    /// The roster hash (hex).
    pub roster: String,
    /// The message (hex).
    pub body: String,
    /// Ed25519 over `tag || roster || id || body` (hex).
    pub signature: String,
}

fn signed_bytes(phase: Phase, roster: &[u8; 32], id: u16, body: &[u8]) -> Vec<u8> {
    let mut b = phase.tag().to_vec();
    b.extend(roster);
    b.extend(id.to_be_bytes());
    b.extend(body);
    b
}

/// Writes `shared/<phase>/<phase>-<id>.toml`, signed; refuses to replace an
/// existing one (a second, different message would be equivocation).
pub fn write_signed(
    shared: &Path,
    phase: Phase,
    roster: &Roster,
    id: u16,
    body: &[u8],
    seed: &[u8; 32],
) -> anyhow::Result<PathBuf> {
    let dir = shared.join(phase.dir());
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let path = dir.join(format!("{}-{id}.toml", phase.dir()));
    if path.exists() {
        bail!(
            "{} exists: this participant already published its {} message (running the \
             step again on the same inputs would write the same bytes; on other inputs, a \
             second, different message is equivocation and gets this participant excluded)",
            path.display(),
            phase.dir()
        );
    }
    let signature = sign(seed, &signed_bytes(phase, &roster.hash, id, body))?;
    let file = SignedFile {
        id,
        roster: hex::encode(roster.hash),
        body: hex::encode(body),
        signature: hex::encode(signature),
    };
    write_file(&path, &toml::to_string(&file)?, false)?;
    Ok(path)
}

/// One phase's messages: by author, the body and the file it came from.
#[derive(Debug, Default)]
pub struct PhaseMessages {
    /// Each author's one message.
    pub by_id: BTreeMap<usize, (Vec<u8>, PathBuf)>,
    /// Authors that signed two different messages, with both files.
    pub equivocators: BTreeMap<usize, (PathBuf, PathBuf)>,
    /// Files that are not valid messages of this roster, and why.
    pub ignored: Vec<(PathBuf, String)>,
}

/// Reads every signed message of a phase, checking each signature against
/// its author's roster key. A file whose signature fails proves nothing
/// about anyone and is ignored (and listed).
pub fn load_phase(shared: &Path, phase: Phase, roster: &Roster) -> anyhow::Result<PhaseMessages> {
    let mut out = PhaseMessages::default();
    for path in toml_files(&shared.join(phase.dir()))? {
        match read_signed(&path, phase, roster) {
            Ok((id, body)) => {
                if out.equivocators.contains_key(&id) {
                    continue;
                }
                if let Some((other, first)) = out.by_id.get(&id) {
                    if *other != body {
                        out.equivocators.insert(id, (first.clone(), path));
                        out.by_id.remove(&id);
                    }
                    continue;
                }
                out.by_id.insert(id, (body, path));
            }
            Err(why) => out.ignored.push((path, format!("{why:#}"))),
        }
    }
    Ok(out)
}

fn read_signed(path: &Path, phase: Phase, roster: &Roster) -> anyhow::Result<(usize, Vec<u8>)> {
    let file: SignedFile =
        toml::from_str(&read_bounded(path)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let r: [u8; 32] = hex_array(path, "roster", &file.roster)?;
    if r != roster.hash {
        bail!("made for another roster");
    }
    let Some(member) = roster.members.get(usize::from(file.id)) else {
        bail!("id {} is not in the roster", file.id);
    };
    let body = hex::decode(file.body.trim()).map_err(|e| anyhow::anyhow!("body: {e}"))?;
    let signature: [u8; 64] = hex_array(path, "signature", &file.signature)?;
    if !verify(
        &member.signing,
        &signed_bytes(phase, &roster.hash, file.id, &body),
        &signature,
    ) {
        bail!("the signature is not participant {}'s", file.id);
    }
    Ok((usize::from(file.id), body))
}

/// Signs with an Ed25519 seed.
pub fn sign(seed: &[u8; 32], message: &[u8]) -> anyhow::Result<[u8; 64]> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| anyhow::anyhow!("the signing seed is not an Ed25519 seed"))?;
    let mut out = [0u8; 64];
    out.copy_from_slice(pair.sign(message).as_ref());
    Ok(out)
}

/// The Ed25519 public key of a seed.
pub fn public_of(seed: &[u8; 32]) -> anyhow::Result<[u8; 32]> {
    use ring::signature::KeyPair;
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .map_err(|_| anyhow::anyhow!("the seed is not an Ed25519 seed"))?;
    let mut out = [0u8; 32];
    out.copy_from_slice(pair.public_key().as_ref());
    Ok(out)
}

fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(message, signature)
        .is_ok()
}

/// `ceremony-<i>.toml` (mode 0600): one operator's ceremony secrets and its
/// replica's keys until the ceremony writes `replica-<i>.toml`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// The participant.
    pub id: u16,
    /// The plan's hash (hex).
    pub plan: String,
    /// The ceremony decryption key (hex): it opens this participant's rows,
    /// so it is as secret as the share until the ceremony is done.
    pub decryption_key: String,
    /// The Ed25519 seed signing this participant's ceremony messages (hex).
    pub signing_seed: String,
    /// The replica's Ed25519 checkpoint note seed (hex).
    pub note_seed: String,
    /// The replica's TLS private key (PEM; empty in a refresh, where it
    /// stays in the replica file).
    pub tls_key: String,
    /// In a refresh: the replica file whose share is refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_file: Option<String>,
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.decryption_key.zeroize();
        self.signing_seed.zeroize();
        self.note_seed.zeroize();
        self.tls_key.zeroize();
    }
}

impl SecretFile {
    /// Reads it, refusing a file group or others may read.
    pub fn load(path: &Path) -> anyhow::Result<SecretFile> {
        let text = belfry_node::secret::read_secret_file(path)?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// A 32-byte secret field.
    pub fn seed(&self, path: &Path, field: &str) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let value = match field {
            "decryption_key" => &self.decryption_key,
            "signing_seed" => &self.signing_seed,
            _ => &self.note_seed,
        };
        Ok(Zeroizing::new(hex_array(path, field, value)?))
    }
}
