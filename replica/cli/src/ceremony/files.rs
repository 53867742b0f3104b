//! The ceremony's files: the plan, roster entries, signed phase messages,
//! and each operator's secret ceremony file. Every signed byte string is
//! written by hand (docs/keys.md, "Files"): a domain tag, then fixed-width
//! big-endian integers and length-prefixed strings.

use super::identity::{check_bindings, Binding};
use super::roster::Roster;
use anyhow::{bail, Context};
use belfry_node::generate::write_file;
use belfry_replica::coin::dkg::Params;
use belfry_replica::coin::{sha256, Policy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

pub(super) fn hex_array<const N: usize>(
    path: &Path,
    field: &str,
    s: &str,
) -> anyhow::Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|e| {
        anyhow::anyhow!("{}: {field}: not {} hex digits: {e}", path.display(), 2 * N)
    })?;
    Ok(out)
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
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
    /// A bound new-key plan: per slot, in id order, the participant as
    /// `belfry ceremony identity` prints it (`<signing key>@<address>`).
    /// Only that key speaks for the slot (identity.rs). Empty: unbound,
    /// and then a new key needs every slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<String>,
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
        if !plan.participants.is_empty() {
            if plan.refresh.is_some() {
                bail!(
                    "{}: a refresh binds its slots to the cluster's members; it lists no participants",
                    path.display()
                );
            }
            b.extend(b"participants");
            for p in plan.bindings(path)?.unwrap_or_default() {
                b.extend(p.signing_key);
                put_str(&mut b, &p.address);
            }
        }
        Ok((plan, params, policy, sha256(&[&b])))
    }

    /// A bound plan's participants, checked; none if the plan is unbound.
    pub fn bindings(&self, path: &Path) -> anyhow::Result<Option<Vec<Binding>>> {
        if self.participants.is_empty() {
            return Ok(None);
        }
        check_bindings(path, &self.participants, usize::from(self.n)).map(Some)
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
    /// The roster the hash names: per id, its entry's hash (hex), or empty
    /// for a participant the roster excludes. Checked against `roster`.
    #[serde(default)]
    pub members: Vec<String>,
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
        members: roster.listing(),
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
    /// Every distinct message each author signed (an equivocator's two or
    /// more among them): a transcript agreed elsewhere is found here.
    pub versions: BTreeMap<usize, Vec<Vec<u8>>>,
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
                let versions = out.versions.entry(id).or_default();
                if !versions.contains(&body) {
                    versions.push(body.clone());
                }
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
    let Some(member) = roster.member(usize::from(file.id)) else {
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

pub(super) fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
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

/// Every phase file that parses, unchecked: what roster each names (to
/// find the roster the deals use before any signature can be checked).
pub fn raw_files(shared: &Path, phase: Phase) -> anyhow::Result<Vec<(PathBuf, SignedFile)>> {
    let mut out = Vec::new();
    for path in toml_files(&shared.join(phase.dir()))? {
        if let Ok(file) = toml::from_str::<SignedFile>(&read_bounded(&path)?) {
            out.push((path, file));
        }
    }
    Ok(out)
}
