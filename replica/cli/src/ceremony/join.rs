//! `belfry ceremony join`: this operator's keys, made here, and its signed
//! roster entry. A bound plan (identity.rs) gives the slot, address and
//! signing key; an unbound one takes `--id` and `--host`; a refresh takes
//! the member's replica file.

use super::*;

pub(super) fn join(a: &JoinArgs) -> anyhow::Result<ExitCode> {
    let plan_path = a.shared.join("plan.toml");
    let (plan, params, _, plan_hash) = Plan::load(&plan_path)?;
    let n = params.n();
    let mut rng = ChaCha20Rng::from_entropy();
    let decryption = DecryptionKey::generate(&mut rng);
    let mut signing_seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut signing_seed[..]);
    // A bound plan: the slot, address and signing key are the identity's.
    let bound = match bound_slot(a, &plan, &plan_path, n)? {
        Some((seed, slot)) => {
            signing_seed = seed;
            Some(slot)
        }
        None => None,
    };
    // A new key: a new replica identity made here. A refresh: the member's
    // identity from its files, its note key vouching for the entry.
    let me = match &a.config {
        Some(config) => refreshing_member(a, config, &plan)?,
        None => new_replica(a, &plan, n, bound.clone(), &mut rng)?,
    };
    let id = me.id;
    let entry_path = a.shared.join("roster").join(format!("roster-{id}.toml"));
    for p in [&a.secret, &entry_path] {
        if p.exists() {
            bail!(
                "{} exists: this participant has joined already",
                p.display()
            );
        }
    }
    let keys = JoinKeys {
        plan_hash: hex::encode(plan_hash),
        decryption: &decryption,
        signing_seed: &signing_seed,
    };
    let entry = roster_entry(&me, &keys, &entry_path, bound.is_some())?;
    let secret = SecretFile {
        id,
        plan: keys.plan_hash.clone(),
        decryption_key: hex::encode(&decryption.to_bytes()[..]),
        signing_seed: hex::encode(&signing_seed[..]),
        note_seed: if me.replica_file.is_some() {
            String::new()
        } else {
            hex::encode(&me.note_seed[..])
        },
        tls_key: me.tls_key.to_string(),
        replica_file: me.replica_file.clone(),
    };
    if let Some(dir) = a.secret.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    write_file(&a.secret, &Zeroizing::new(toml::to_string(&secret)?), true)?;
    std::fs::create_dir_all(entry_path.parent().unwrap_or(Path::new(".")))?;
    write_file(&entry_path, &toml::to_string(&entry)?, false)?;
    print_joined(a, &me, &plan, &params, &entry_path);
    Ok(EXIT_OK)
}

/// This participant's replica as it joins: who it is, and its secrets.
struct Joining {
    /// Its slot.
    id: u16,
    /// Its replica's address, `host:port`.
    address: String,
    /// Its replica's TLS certificate (PEM).
    certificate: String,
    /// Its checkpoint note key's seed.
    note_seed: Zeroizing<[u8; 32]>,
    /// Its TLS key (PEM; empty for a refresh, which keeps its own).
    tls_key: Zeroizing<String>,
    /// A refresh: the member's replica file, absolute.
    replica_file: Option<String>,
}

/// The keys made here and the plan they are for.
struct JoinKeys<'a> {
    /// The plan's hash, hex.
    plan_hash: String,
    /// The ceremony decryption key.
    decryption: &'a DecryptionKey,
    /// The ceremony signing key's seed.
    signing_seed: &'a Zeroizing<[u8; 32]>,
}

/// A slot of the plan: its id and its replica's address.
type Slot = (u16, String);

/// A bound plan: the identity's signing seed, and the slot and address the
/// plan binds to its key. `None` for an unbound plan.
fn bound_slot(
    a: &JoinArgs,
    plan: &Plan,
    plan_path: &Path,
    n: usize,
) -> anyhow::Result<Option<(Zeroizing<[u8; 32]>, Slot)>> {
    match (plan.bindings(plan_path)?, &a.identity) {
        (Some(bindings), Some(path)) => {
            let (seed, mine) = identity::IdentityFile::load(path)?;
            let Some(id) = bindings.iter().position(|b| b.signing_key == mine.signing_key) else {
                bail!(
                    "{}: the plan binds no slot to this identity ({mine}); compare the plan's participants with the line `belfry ceremony identity` prints",
                    plan_path.display()
                );
            };
            if bindings[id].address != mine.address {
                bail!(
                    "{}: slot {id} is bound to this key at {}, but {} says {}",
                    plan_path.display(),
                    bindings[id].address,
                    path.display(),
                    mine.address
                );
            }
            println!(
                "checked plan.toml: slot {id} is bound to my key at my address ({mine}); {n} slots bound, each key and address distinct"
            );
            Ok(Some((seed, (id as u16, mine.address))))
        }
        (Some(_), None) => bail!(
            "this plan binds its slots to operators' keys: join with --identity FILE (the file `belfry ceremony identity` made)"
        ),
        (None, Some(_)) => bail!(
            "--identity: this plan binds no slots (it lists no participants); join with --id and --host"
        ),
        (None, None) => Ok(None),
    }
}

/// A refresh: the member's identity from its replica file.
fn refreshing_member(a: &JoinArgs, config: &Path, plan: &Plan) -> anyhow::Result<Joining> {
    let r = Member::load(config, plan)?;
    if let Some(refresh) = &plan.refresh {
        outputs::check_switch_ahead(&r, refresh.switch_wave, a.metrics)?;
    }
    let me = &r.cluster.replicas[usize::from(r.file.id)];
    let note_seed = r.note_seed(config)?;
    Ok(Joining {
        id: r.file.id,
        address: me.address.clone(),
        certificate: me.certificate.clone(),
        note_seed,
        tls_key: Zeroizing::new(String::new()),
        replica_file: Some(std::path::absolute(config)?.display().to_string()),
    })
}

/// A new key: a new replica identity made here, in the bound slot or the
/// one `--id` and `--host` give.
fn new_replica(
    a: &JoinArgs,
    plan: &Plan,
    n: usize,
    bound: Option<Slot>,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<Joining> {
    if plan.refresh.is_some() {
        bail!("this plan refreshes a cluster's shares: join with --config replica-<i>.toml");
    }
    let (id, address) = match bound {
        Some(b) => b,
        None => {
            let id = a.id.unwrap_or(u16::MAX);
            if usize::from(id) >= n {
                bail!("--id {id}: ids are 0..{} in this plan", n - 1);
            }
            let host = a.host.clone().unwrap_or_default();
            let address = crate::keygen::addresses(
                1,
                std::slice::from_ref(&host),
                crate::keygen::DEFAULT_BASE_PORT,
            )?
            .remove(0);
            (id, address)
        }
    };
    let mut note_seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut note_seed[..]);
    let (certificate, tls_key) = belfry_node::tls::generate_identity(id)?;
    Ok(Joining {
        id,
        address,
        certificate,
        note_seed,
        tls_key: Zeroizing::new(tls_key),
        replica_file: None,
    })
}

/// This participant's roster entry, signed with its ceremony signing key
/// (and, for a refresh or a bound plan, its note key).
fn roster_entry(
    me: &Joining,
    keys: &JoinKeys<'_>,
    entry_path: &Path,
    bound: bool,
) -> anyhow::Result<RosterEntry> {
    let mut entry = RosterEntry {
        id: me.id,
        plan: keys.plan_hash.clone(),
        address: me.address.clone(),
        certificate: me.certificate.clone(),
        note_key: hex::encode(files::public_of(&me.note_seed)?),
        encryption_key: hex::encode(keys.decryption.public().to_bytes()),
        signing_key: hex::encode(files::public_of(keys.signing_seed)?),
        signature: String::new(),
        member_signature: None,
    };
    let bytes = entry.signed_bytes(entry_path)?;
    entry.signature = hex::encode(files::sign(keys.signing_seed, &bytes)?);
    // A refresh: the member's note key vouches for the entry. A bound
    // plan: the new note key proves it is this participant's, so nobody
    // else can list it (roster.rs).
    if me.replica_file.is_some() || bound {
        entry.member_signature = Some(hex::encode(files::sign(&me.note_seed, &bytes)?));
    }
    Ok(entry)
}

/// What `join` made and checked, and where it wrote it.
fn print_joined(a: &JoinArgs, me: &Joining, plan: &Plan, params: &Params, entry_path: &Path) {
    let (id, n) = (me.id, params.n());
    println!(
        "belfry ceremony join: participant {id} of {n} (ceremony {}), replica address {}",
        plan.ceremony, me.address
    );
    println!(
        "checked plan.toml: n = {n}, f = {}, policy {}, genesis time {}",
        params.f(),
        plan.policy,
        plan.genesis_time
    );
    match &me.replica_file {
        Some(f) => println!(
            "checked {f}: replica {id} of the cluster being refreshed (its share is that cluster's); \
             made here: a ceremony encryption key (BLS12-381) and signing key (Ed25519); the entry is also signed with the replica's note key"
        ),
        None => println!(
            "made here: a TLS certificate and key, a checkpoint note key, a ceremony encryption key (BLS12-381) and signing key (Ed25519)"
        ),
    }
    println!(
        "wrote {}  SECRET (mode 0600): stays on this machine",
        a.secret.display()
    );
    println!(
        "wrote {}  public, signed: add it to the shared directory",
        entry_path.display()
    );
}
