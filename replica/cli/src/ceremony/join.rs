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
    let bound = match (plan.bindings(&plan_path)?, &a.identity) {
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
            signing_seed = seed;
            println!(
                "checked plan.toml: slot {id} is bound to my key at my address ({mine}); {n} slots bound, each key and address distinct"
            );
            Some((id as u16, mine.address))
        }
        (Some(_), None) => bail!(
            "this plan binds its slots to operators' keys: join with --identity FILE (the file `belfry ceremony identity` made)"
        ),
        (None, Some(_)) => bail!(
            "--identity: this plan binds no slots (it lists no participants); join with --id and --host"
        ),
        (None, None) => None,
    };
    // A new key: a new replica identity made here. A refresh: the member's
    // identity from its files, its note key vouching for the entry.
    let (id, address, certificate, note_seed, tls_key, replica_file) = match &a.config {
        Some(config) => {
            let r = Member::load(config, &plan)?;
            if let Some(refresh) = &plan.refresh {
                outputs::check_switch_ahead(&r, refresh.switch_wave, a.metrics)?;
            }
            let me = &r.cluster.replicas[usize::from(r.file.id)];
            let note_seed = r.note_seed(config)?;
            (
                r.file.id,
                me.address.clone(),
                me.certificate.clone(),
                note_seed,
                Zeroizing::new(String::new()),
                Some(std::path::absolute(config)?.display().to_string()),
            )
        }
        None => {
            if plan.refresh.is_some() {
                bail!(
                    "this plan refreshes a cluster's shares: join with --config replica-<i>.toml"
                );
            }
            let (id, address) = match &bound {
                Some(b) => b.clone(),
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
            (
                id,
                address,
                certificate,
                note_seed,
                Zeroizing::new(tls_key),
                None,
            )
        }
    };
    let entry_path = a.shared.join("roster").join(format!("roster-{id}.toml"));
    for p in [&a.secret, &entry_path] {
        if p.exists() {
            bail!(
                "{} exists: this participant has joined already",
                p.display()
            );
        }
    }
    let mut entry = RosterEntry {
        id,
        plan: hex::encode(plan_hash),
        address: address.clone(),
        certificate,
        note_key: hex::encode(files::public_of(&note_seed)?),
        encryption_key: hex::encode(decryption.public().to_bytes()),
        signing_key: hex::encode(files::public_of(&signing_seed)?),
        signature: String::new(),
        member_signature: None,
    };
    let bytes = entry.signed_bytes(&entry_path)?;
    entry.signature = hex::encode(files::sign(&signing_seed, &bytes)?);
    // A refresh: the member's note key vouches for the entry. A bound
    // plan: the new note key proves it is this participant's, so nobody
    // else can list it (roster.rs).
    if replica_file.is_some() || bound.is_some() {
        entry.member_signature = Some(hex::encode(files::sign(&note_seed, &bytes)?));
    }
    let secret = SecretFile {
        id,
        plan: hex::encode(plan_hash),
        decryption_key: hex::encode(&decryption.to_bytes()[..]),
        signing_seed: hex::encode(&signing_seed[..]),
        note_seed: if replica_file.is_some() {
            String::new()
        } else {
            hex::encode(&note_seed[..])
        },
        tls_key: tls_key.to_string(),
        replica_file: replica_file.clone(),
    };
    if let Some(dir) = a.secret.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    }
    write_file(&a.secret, &Zeroizing::new(toml::to_string(&secret)?), true)?;
    std::fs::create_dir_all(entry_path.parent().unwrap_or(Path::new(".")))?;
    write_file(&entry_path, &toml::to_string(&entry)?, false)?;
    println!(
        "belfry ceremony join: participant {id} of {n} (ceremony {}), replica address {address}",
        plan.ceremony
    );
    println!(
        "checked plan.toml: n = {n}, f = {}, policy {}, genesis time {}",
        params.f(),
        plan.policy,
        plan.genesis_time
    );
    match &replica_file {
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
    Ok(EXIT_OK)
}
