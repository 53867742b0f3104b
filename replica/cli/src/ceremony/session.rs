//! What every step after `join` loads first: the plan, this operator's
//! secrets, in a refresh this replica's current files, and the roster
//! (chosen as `roster.rs` explains).

use super::files::{self, Plan, SecretFile};
use super::roster::{self, Roster, RosterView};
use anyhow::bail;
use belfry_node::config::{ClusterFile, ReplicaFile};
use belfry_replica::coin::dkg::{DecryptionKey, Params};
use belfry_replica::coin::{quorum, Policy};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A replica of the cluster being refreshed: its replica file and the
/// cluster file beside it, checked against the plan.
pub(super) struct Member {
    pub(super) file: ReplicaFile,
    pub(super) path: PathBuf,
    pub(super) cluster: ClusterFile,
    pub(super) cluster_path: PathBuf,
    pub(super) public: belfry_replica::coin::PublicKeys,
}

impl Member {
    pub(super) fn load(config: &Path, plan: &Plan) -> anyhow::Result<Member> {
        let Some(refresh) = &plan.refresh else {
            bail!(
                "--config is for a refresh; this plan makes a new key (join with --id and --host)"
            );
        };
        let text = belfry_node::secret::read_secret_file(config)?;
        let file: ReplicaFile =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        let cluster_path = config
            .parent()
            .unwrap_or(Path::new("."))
            .join(&file.cluster);
        let cluster = ClusterFile::read(&cluster_path)?;
        let (_, public) = cluster.params(&cluster_path)?;
        if cluster.public_keys != refresh.public_keys
            || usize::from(file.id) >= cluster.replicas.len()
        {
            bail!(
                "{}: not the cluster this plan refreshes (its public_keys differ)",
                cluster_path.display()
            );
        }
        if file.previous_share.is_some() {
            bail!(
                "{}: holds the previous share of an earlier refresh: once the cluster is past that switch, `belfry ceremony prune` it first",
                config.display()
            );
        }
        Ok(Member {
            path: config.to_path_buf(),
            public: (*public).clone(),
            file,
            cluster,
            cluster_path,
        })
    }

    pub(super) fn note_seed(&self, config: &Path) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(self.file.note_seed.as_deref().unwrap_or("").trim(), &mut seed[..])
            .map_err(|_| anyhow::anyhow!("{}: a refresh needs the replica's note_seed (64 hex digits): its note key vouches for its roster entry", config.display()))?;
        Ok(seed)
    }

    /// The current secret share (a sealed one needs the passphrase).
    pub(super) fn share(&self) -> anyhow::Result<belfry_replica::coin::SecretShare> {
        let hex_share = belfry_node::secret::share_hex(&self.path, &self.file.secret_share)?;
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_share.as_str(), &mut bytes[..])
            .map_err(|e| anyhow::anyhow!("{}: secret_share: {e}", self.path.display()))?;
        Ok(belfry_replica::coin::SecretShare::from_bytes(
            belfry_replica::coin::ReplicaId(self.file.id),
            *bytes,
        )?)
    }
}

/// What every later step loads first: the plan, the complete roster, this
/// operator's secrets.
pub(super) struct Session {
    pub(super) plan: Plan,
    pub(super) params: Params,
    pub(super) policy: Policy,
    pub(super) roster: Roster,
    pub(super) secret: SecretFile,
    pub(super) me: usize,
    pub(super) decryption: DecryptionKey,
    pub(super) signing: Zeroizing<[u8; 32]>,
    /// In a refresh: this replica's current files.
    pub(super) member: Option<Member>,
}

/// The randomness of a step, derived from this participant's signing seed,
/// the roster and what the step reads: running a step again on the same
/// inputs publishes the same bytes, never a second, different message
/// (which would be equivocation).
pub(super) fn step_rng(c: &Session, step: &[u8], inputs: &[&[u8]]) -> ChaCha20Rng {
    let mut parts: Vec<&[u8]> = vec![
        b"belfry-ceremony-rng-v1",
        step,
        &c.signing[..],
        &c.roster.hash,
    ];
    parts.extend_from_slice(inputs);
    let seed = Zeroizing::new(belfry_replica::coin::sha256(&parts));
    ChaCha20Rng::from_seed(*seed)
}

/// How a step finds its roster.
#[derive(Clone, Copy, Debug)]
pub(super) enum RosterFrom {
    /// `deal`: the roster the deals already published name, else this
    /// participant's own settling of the entries (waiting for missing
    /// ones unless `without_missing`).
    Propose {
        /// Go on without participants that have no entry yet.
        without_missing: bool,
    },
    /// `verify`, `finish`: the roster at least `n − f` deals name.
    Deals,
}

pub(super) fn load(
    shared: &Path,
    secret_path: &Path,
    step: &str,
    from: RosterFrom,
) -> anyhow::Result<Session> {
    let (plan, params, policy, plan_hash) = Plan::load(&shared.join("plan.toml"))?;
    let secret = SecretFile::load(secret_path)?;
    if secret.plan != hex::encode(plan_hash) {
        bail!(
            "{}: made for another plan than {}",
            secret_path.display(),
            shared.join("plan.toml").display()
        );
    }
    let member = load_member(&secret, secret_path, &plan)?;
    let n = params.n();
    let q = quorum(n, params.f());
    let me = usize::from(secret.id);
    println!(
        "belfry ceremony {step}: participant {me} of {n} (f = {}, ceremony {})",
        params.f(),
        plan.ceremony
    );
    let bindings = plan.bindings(&shared.join("plan.toml"))?;
    let view = RosterView::gather(
        shared,
        &plan_hash,
        n,
        member.as_ref().map(|m| &m.cluster),
        bindings.as_deref(),
    )?;
    for (path, why) in &view.ignored {
        println!(
            "ignored {}: {why} (proves nothing about anyone)",
            path.display()
        );
    }
    let (roster, excluded) = settle_roster(shared, step, from, &view, n, q)?;
    roster::check_usable(&roster, q, plan.refresh.is_some() || bindings.is_some())?;
    let decryption = DecryptionKey::from_bytes(&*secret.seed(secret_path, "decryption_key")?)?;
    let signing = secret.seed(secret_path, "signing_seed")?;
    let Some(mine) = roster.member(me) else {
        bail!(
            "participant {me} is not in the roster{}: it takes no further part, and its replica gets no share",
            excluded.get(&me).map(|w| format!(" ({w})")).unwrap_or_default()
        );
    };
    if mine.encryption != decryption.public() || mine.signing != files::public_of(&signing)? {
        bail!(
            "{}: its keys are not participant {me}'s in the roster",
            secret_path.display()
        );
    }
    report_roster(&roster, n, me, bindings.is_some(), member.as_ref());
    Ok(Session {
        plan,
        params,
        policy,
        roster,
        secret,
        me,
        decryption,
        signing,
        member,
    })
}

/// In a refresh, the member's replica file the secret file names, which
/// must be the same participant's.
fn load_member(
    secret: &SecretFile,
    secret_path: &Path,
    plan: &Plan,
) -> anyhow::Result<Option<Member>> {
    match &secret.replica_file {
        Some(f) => {
            let m = Member::load(Path::new(f), plan)?;
            if m.file.id != secret.id {
                bail!(
                    "{f}: replica {}, but {} is participant {}'s",
                    m.file.id,
                    secret_path.display(),
                    secret.id
                );
            }
            Ok(Some(m))
        }
        None if plan.refresh.is_some() => {
            bail!(
                "{}: made by a join without --config, for a refresh plan",
                secret_path.display()
            )
        }
        None => Ok(None),
    }
}

/// The roster this step works with (`from`), and why each participant left
/// out of it was excluded.
fn settle_roster(
    shared: &Path,
    step: &str,
    from: RosterFrom,
    view: &RosterView,
    n: usize,
    q: usize,
) -> anyhow::Result<(Roster, std::collections::BTreeMap<usize, String>)> {
    let (proposed, excluded, missing) = view.settle();
    let (named, problems) = roster::named_by_deals(shared, view)?;
    for p in &problems {
        println!("ignored: {p}");
    }
    let roster = match (from, named.first()) {
        (RosterFrom::Propose { .. }, Some((r, count))) => {
            println!(
                "adopting the roster {count} published deal(s) name ({})",
                hex::encode(r.hash)
            );
            r.clone()
        }
        (RosterFrom::Propose { without_missing }, None) => {
            if !missing.is_empty() && !without_missing {
                bail!(
                    "{}: no roster entry yet from participant(s) {missing:?} (have {} of {n}); \
                     wait for them, or deal --without-missing to go on without them \
                     (at least n − f = {q} participants needed)",
                    shared.join("roster").display(),
                    n - missing.len()
                );
            }
            proposed
        }
        (RosterFrom::Deals, Some((r, count))) if *count >= q => r.clone(),
        (RosterFrom::Deals, best) => bail!(
            "{} deals name one roster, n − f = {q} needed before {step}",
            best.map_or(0, |(_, c)| *c)
        ),
    };
    for id in roster.absent() {
        let why = excluded.get(&id).cloned().unwrap_or_else(|| {
            format!("participant {id} had no roster entry when the roster was settled")
        });
        println!("EXCLUDED from the roster: {why}; participant {id} deals nothing, verifies nothing and gets no share");
    }
    Ok((roster, excluded))
}

/// What was checked of the roster, the plan's bindings and a refresh's
/// members.
fn report_roster(roster: &Roster, n: usize, me: usize, bound: bool, member: Option<&Member>) {
    println!(
        "checked roster: {} of {n} participants, each entry signed by its own key and naming this plan; \
         addresses, certificates and keys all distinct; my keys are entry {me}'s",
        roster.present().len()
    );
    if bound {
        println!(
            "checked: a bound plan: every roster entry is signed by the key the plan binds to its slot, \
             lists the slot's address and a certificate naming its replica, and is signed by its note key"
        );
    }
    if let Some(m) = member {
        println!(
            "checked: a refresh of the cluster in {}: every roster entry is the replica it lists under its id, signed with that replica's note key",
            m.cluster_path.display()
        );
    }
    println!("roster hash: {}", hex::encode(roster.hash));
}
