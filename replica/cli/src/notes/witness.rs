//! `belfry witness`: a key of its own, and cosignatures (C2SP
//! `tlog-cosignature` v1) only of checkpoints it proved consistent with
//! what it cosigned before.

use super::*;

/// Runs `belfry witness`.
pub fn run_witness(args: &WitnessArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        WitnessCommand::Keygen(a) => keygen(a),
        WitnessCommand::Cosign(a) => cosign(a),
    }
}

fn keygen(args: &WitnessKeygenArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() {
        bail!("{}: exists; not overwritten", args.out.display());
    }
    // Created here, exclusively: two keygens racing cannot both write it.
    create_secret_new(&args.out)?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut seed[..]);
    let signer = NoteSigner::from_seed(&args.name, VerifierKind::Cosignature, &seed)
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let file = WitnessKeyFile {
        name: args.name.clone(),
        seed: hex::encode(&seed[..]),
    };
    write_file(&args.out, &toml::to_string(&file)?, true)?;
    eprintln!(
        "wrote {} (secret, mode 0600); list this verifier key in cluster.toml's witnesses:",
        args.out.display()
    );
    println!("{}", signer.verifier());
    Ok(EXIT_OK)
}

fn load_witness_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let file: WitnessKeyFile =
        toml::from_str(&text).with_context(|| format!("{}: not a witness key", path.display()))?;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(file.seed.trim(), &mut seed[..])
        .with_context(|| format!("{}: seed is not 64 hex digits", path.display()))?;
    NoteSigner::from_seed(&file.name, VerifierKind::Cosignature, &seed)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn cosign(args: &WitnessCosignArgs) -> anyhow::Result<ExitCode> {
    let cluster = load_cluster(&args.cluster)?;
    let key = load_witness_key(&args.key)?;
    // One witness process per state: two cosigning from the same old state
    // could each sign a different view.
    let lock_path = args.state.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| lock_path.display().to_string())?;
    if lock.try_lock().is_err() {
        bail!(
            "{}: another belfry witness holds this state's lock",
            lock_path.display()
        );
    }
    let runtime = client_runtime()?;
    runtime.block_on(async {
        let client = client(&cluster)?;
        loop {
            let done = cosign_once(&client, &cluster, &key, &args.state).await;
            let Some(every) = args.interval else {
                client.disconnect_all().await;
                return done;
            };
            if let Err(e) = done {
                eprintln!("belfry witness: {e:#}");
            }
            tokio::time::sleep(Duration::from_secs(every.max(1))).await;
        }
    })
}

/// One round of a witness: the latest checkpoint, proved consistent with
/// the last cosigned, cosigned, given to every replica, remembered.
pub async fn cosign_once(
    client: &Client,
    cluster: &Cluster,
    key: &NoteSigner,
    state_path: &Path,
) -> anyhow::Result<ExitCode> {
    let ck = cluster_key(cluster);
    let previous = load_state(state_path, cluster, &ck)?;
    let new = one_view(client, cluster).await?;
    if let Some(old) = &previous {
        prove_extends(client, old, &new).await?;
    }
    // A witness is a driver, not protocol code: its cosignature says when.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    // The cosignature goes on the cluster's note alone: replicas add their
    // own lines when they serve it.
    let mut note = ck.note(&new);
    note.add(key.cosign(&note.text, now));
    let text = note.encode();
    // Remembered before it leaves: a witness that crashed after giving out
    // a cosignature must still refuse every view inconsistent with it.
    save_state(state_path, cluster, &ck, &new)?;
    let mut kept = 0;
    let mut answers = Vec::new();
    for r in 0..client.replicas() {
        match client.cosign(r, text.clone()).await {
            Ok(stored) => {
                kept += 1;
                answers.push(format!("replica {r}: kept ({stored} new)"));
            }
            Err(e) => answers.push(format!("replica {r}: {e}")),
        }
    }
    eprintln!(
        "{}: cosigned tree size {} (signed {}){}; {}",
        key.verifier().name,
        new.head.tree_size,
        utc(new.head.time),
        match &previous {
            Some(o) => format!(", proved consistent with size {}", o.head.tree_size),
            None => ", the first checkpoint this witness cosigns".to_string(),
        },
        answers.join("; ")
    );
    if kept == 0 {
        return Err(Failed("no replica kept the cosignature".to_string()).into());
    }
    Ok(EXIT_OK)
}

/// The head this witness cosigned last, from its state file (none yet if
/// there is no file).
fn load_state(
    state_path: &Path,
    cluster: &Cluster,
    ck: &ClusterKey<'_>,
) -> anyhow::Result<Option<SignedTreeHead>> {
    match std::fs::read_to_string(state_path) {
        Ok(text) => {
            let state: WitnessState = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a witness state", state_path.display()))?;
            if state.origin != cluster.notes.origin {
                bail!(
                    "{}: the state of another log ({})",
                    state_path.display(),
                    state.origin
                );
            }
            let note = Note::parse(state.checkpoint.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", state_path.display()))?;
            Ok(Some(ck.open(&note).map_err(|e| {
                anyhow::anyhow!("{}: {e}", state_path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| state_path.display().to_string()),
    }
}

/// The cluster's largest checkpoint, which every replica must show as one
/// view of the log.
async fn one_view(client: &Client, cluster: &Cluster) -> anyhow::Result<SignedTreeHead> {
    let m = merged_checkpoint(client, cluster, 0, None)
        .await
        .map_err(Failed)?;
    if !m.split_views.is_empty() {
        for e in &m.split_views {
            eprintln!("SPLIT VIEW evidence:\n{e}");
        }
        return Err(Failed(
            "the replicas show two views of the log (evidence above): not cosigned".to_string(),
        )
        .into());
    }
    Ok(m.head)
}

/// Some replica proves `new` consistent with the `old` head this witness
/// cosigned.
async fn prove_extends(
    client: &Client,
    old: &SignedTreeHead,
    new: &SignedTreeHead,
) -> anyhow::Result<()> {
    if new.head.tree_size < old.head.tree_size {
        return Err(Failed(format!(
            "the cluster's largest checkpoint (size {}) is smaller than the one this witness cosigned (size {}): not cosigned",
            new.head.tree_size, old.head.tree_size
        ))
        .into());
    }
    let mut why = Vec::new();
    for r in 0..client.replicas() {
        match client.consistency(r, old, new).await {
            Ok(()) => return Ok(()),
            Err(e) => why.push(format!("replica {r}: {e}")),
        }
    }
    Err(Failed(format!(
        "no replica proved size {} consistent with the cosigned size {}: not cosigned ({})",
        new.head.tree_size,
        old.head.tree_size,
        why.join("; ")
    ))
    .into())
}

/// Writes the witness state durably: a temporary file renamed over the
/// state, then the directory synced.
fn save_state(
    state_path: &Path,
    cluster: &Cluster,
    ck: &ClusterKey<'_>,
    new: &SignedTreeHead,
) -> anyhow::Result<()> {
    let state = WitnessState {
        origin: cluster.notes.origin.clone(),
        checkpoint: ck.note(new).encode(),
    };
    let tmp = state_path.with_extension("tmp");
    write_file(&tmp, &serde_json::to_string_pretty(&state)?, false)?;
    std::fs::rename(&tmp, state_path).with_context(|| state_path.display().to_string())?;
    // The rename is durable only once the directory is.
    let dir = match state_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: syncing the directory", dir.display()))?;
    Ok(())
}
