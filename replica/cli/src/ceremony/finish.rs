//! `belfry ceremony finish` and `prune`: the qualification over the whole
//! transcript, the outputs (cluster.toml, this operator's replica file, the
//! signed done file) and the check that the done files agree; and, after a
//! refresh's switch, deleting the previous share (docs/keys.md §2, §8).

use super::*;

pub(super) fn finish(a: &FinishArgs) -> anyhow::Result<ExitCode> {
    let c = load(&a.shared, &a.secret, "finish")?;
    let n = c.params.n();
    let q = quorum(n, c.params.f());
    let (deal_messages, deals) = load_deals(&a.shared, &c)?;
    let verifications = files::load_phase(&a.shared, Phase::Verify, &c.roster)?;
    report_phase("verify", &verifications);
    if verifications.by_id.len() < q {
        let missing: Vec<usize> = (0..n)
            .filter(|j| !verifications.by_id.contains_key(j))
            .collect();
        bail!(
            "{} verifications of {n}, {q} needed to finish; missing: {missing:?}",
            verifications.by_id.len()
        );
    }
    println!(
        "checked signatures: {} deals ({} parse), {} verifications",
        deal_messages.by_id.len(),
        deals.len(),
        verifications.by_id.len()
    );
    let transcript = Transcript {
        deals: deal_messages
            .by_id
            .iter()
            .map(|(&d, (b, _))| (d, b.clone()))
            .collect(),
        verifications: verifications
            .by_id
            .iter()
            .map(|(&j, (b, _))| (j, b.clone()))
            .collect(),
        equivocators: deal_messages
            .equivocators
            .keys()
            .chain(verifications.equivocators.keys())
            .copied()
            .collect(),
    };
    let current = c
        .member
        .as_ref()
        .map(|m| (&m.public, m.share()))
        .map(|(p, s)| s.map(|s| (p, s)))
        .transpose()?;
    let outcome = qualify(
        c.params,
        &c.roster.encryption_keys(),
        &transcript,
        current.as_ref().map(|(p, _)| *p),
    )?;
    report_outcome(&outcome, n);
    let share = outcome.secret_share(c.me, &c.decryption, current.as_ref().map(|(_, s)| s))?;
    if current.is_some() {
        println!(
            "checked: the group key is unchanged (every qualified deal shares zero); my new share is my current one plus {} dealers' zero-shares",
            outcome.qualified.len()
        );
    }
    println!(
        "checked: my secret share matches my public key share (from {} qualified deals; rows checked against their commitments)",
        outcome.qualified.len()
    );
    check_no_group_secret()?;
    let (cluster_text, anchor) = cluster_file(&c, &outcome)?;
    let transcript_hash = transcript_hash(&c.roster, &transcript);
    write_outputs(a, &c, &share, &cluster_text)?;
    let mut body = transcript_hash.to_vec();
    body.extend(sha256(&[cluster_text.as_bytes()]));
    body.extend(anchor.to_string().as_bytes());
    let done = files::write_signed(
        &a.shared,
        Phase::Done,
        &c.roster,
        c.me as u16,
        &body,
        &c.signing,
    )?;
    println!("transcript: {}", hex::encode(transcript_hash));
    println!("trust anchor: {anchor}");
    println!(
        "wrote {}  public, signed: add it to the shared directory",
        done.display()
    );
    report_done(&a.shared, &c.roster, &body, n)?;
    println!(
        "Delete {} once every operator's done file agrees: with the shared directory it reopens this replica's share.",
        a.secret.display()
    );
    Ok(EXIT_OK)
}

fn report_outcome(o: &Outcome, n: usize) {
    for fault in &o.faults {
        println!("FAULT: {fault}");
    }
    for (d, why) in &o.excluded {
        println!("excluded dealer {d}: {why}");
    }
    let q: Vec<String> = o.qualified.iter().map(|d| d.to_string()).collect();
    println!(
        "qualified dealers: {} ({} of {n}); {}",
        q.join(", "),
        q.len(),
        if o.public_is_refresh() {
            "each share changes by the sum of their zero-sharings"
        } else {
            "the group key is the sum of their commitments' constant terms"
        }
    );
}

fn transcript_hash(roster: &Roster, t: &Transcript) -> [u8; 32] {
    let mut b = b"belfry-ceremony-transcript-v1".to_vec();
    b.extend(roster.hash);
    for (kind, map) in [(0u8, &t.deals), (1u8, &t.verifications)] {
        for (id, bytes) in map {
            b.push(kind);
            b.extend((*id as u16).to_be_bytes());
            b.extend(sha256(&[bytes]));
        }
    }
    for id in &t.equivocators {
        b.push(2);
        b.extend((*id as u16).to_be_bytes());
    }
    sha256(&[&b])
}

/// cluster.toml as keygen writes it, from the outcome and the roster; in
/// a refresh, the current one with the new public keys and `[refresh]`.
fn cluster_file(c: &Session, o: &Outcome) -> anyhow::Result<(String, TrustAnchor)> {
    if let (Some(m), Some(r)) = (&c.member, &c.plan.refresh) {
        let mut file = m.cluster.clone();
        file.public_keys = o.public.commitment_hex();
        file.refresh = Some(belfry_node::config::ClusterRefresh {
            switch_wave: r.switch_wave,
            previous_public_keys: m.cluster.public_keys.clone(),
        });
        let (params, public) = file.params(Path::new("cluster.toml"))?;
        file.previous(Path::new("cluster.toml"), &public)?;
        let anchor = TrustAnchor(params.group_public_key);
        if anchor.to_string() != m.cluster.trust_anchor {
            bail!("internal error: the refreshed key's anchor is not the cluster's");
        }
        return Ok((toml::to_string(&file)?, anchor));
    }
    let genesis = belfry_replica::clock::Micros(c.plan.genesis_time);
    let params = ClusterParams::of_keys(&o.public, c.policy, genesis);
    let origin = default_origin(params.cluster_id());
    let replicas = c
        .roster
        .members
        .iter()
        .map(|m| ReplicaEntry {
            id: m.entry.id,
            address: m.entry.address.clone(),
            certificate: m.entry.certificate.clone(),
            note_key: Some(
                VerifierKey {
                    name: origin.clone(),
                    kind: VerifierKind::Ed25519,
                    public: m.note_key,
                }
                .to_string(),
            ),
        })
        .collect();
    let anchor = TrustAnchor(o.public.group_key());
    let file = ClusterFile {
        n: c.plan.n,
        f: c.plan.f,
        trust_anchor: anchor.to_string(),
        public_keys: o.public.commitment_hex(),
        policy: c.policy.name().to_string(),
        granularity_us: c.policy.granularity_us(),
        genesis_time: c.plan.genesis_time,
        origin: None,
        witnesses: Vec::new(),
        refresh: None,
        // No RSA key comes out of a ceremony (docs/rfc3161.md §6).
        tsa: None,
        replicas,
    };
    let text = toml::to_string(&file)?;
    // What a node and a verifier check, without resolving names.
    file.params(Path::new("cluster.toml"))?;
    file.note_keys(Path::new("cluster.toml"), &params)?;
    Ok((text, anchor))
}

fn write_outputs(
    a: &FinishArgs,
    c: &Session,
    share: &belfry_replica::coin::SecretShare,
    cluster_text: &str,
) -> anyhow::Result<()> {
    let cluster_path = a.out.join("cluster.toml");
    let replica_path = a.out.join(format!("replica-{}.toml", c.me));
    for p in [&cluster_path, &replica_path] {
        if p.exists() {
            bail!(
                "{} exists: finish never overwrites a cluster's files; choose a new --out",
                p.display()
            );
        }
    }
    // The share's serde form is `{ id, secret }`, the secret in hex.
    let value = toml::Value::try_from(share)?;
    let hex_share = Zeroizing::new(
        value
            .get("secret")
            .and_then(|s| s.as_str())
            .context("a secret share without its secret")?
            .to_string(),
    );
    let secret_share = if a.seal {
        let pass = belfry_node::secret::passphrase_from_env()?.context(
            "--seal: set BELFRY_PASSPHRASE_FILE to a file holding the passphrase (mode 0600), or BELFRY_PASSPHRASE",
        )?;
        belfry_node::secret::seal(&hex_share, &pass, belfry_node::secret::SEAL_LOG_N)
            .map_err(|e| anyhow::anyhow!("sealing the share: {e}"))?
    } else {
        hex_share.to_string()
    };
    let file = match &c.member {
        Some(m) => {
            let mut file = m.file.clone();
            file.previous_share = Some(m.file.secret_share.clone());
            file.secret_share = secret_share;
            file.cluster = "cluster.toml".to_string();
            // The data stays where it is: named absolutely unless the new
            // file goes beside the old one.
            let base = m.path.parent().unwrap_or(Path::new("."));
            if std::path::absolute(base)? != std::path::absolute(&a.out)? {
                file.data_dir = std::path::absolute(base.join(&m.file.data_dir))?
                    .display()
                    .to_string();
            }
            file
        }
        None => ReplicaFile {
            id: c.me as u16,
            cluster: "cluster.toml".to_string(),
            secret_share,
            tls_key: c.secret.tls_key.clone(),
            note_seed: Some(c.secret.note_seed.clone()),
            previous_share: None,
            data_dir: format!("data-{}", c.me),
            listen: None,
            metrics: None,
            tsa_share: None,
            tsa_listen: None,
        },
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    write_file(&cluster_path, cluster_text, false)?;
    write_file(
        &replica_path,
        &Zeroizing::new(toml::to_string(&file)?),
        true,
    )?;
    println!(
        "wrote {}  public: the same for every operator (compare the done files)",
        cluster_path.display()
    );
    println!(
        "wrote {}  SECRET (mode 0600{}): this replica's share, TLS key and note seed",
        replica_path.display(),
        if a.seal {
            ", share sealed with the passphrase"
        } else {
            ""
        }
    );
    Ok(())
}

/// Prints how the done files so far compare with this one.
fn report_done(shared: &Path, roster: &Roster, mine: &[u8], n: usize) -> anyhow::Result<()> {
    let done = files::load_phase(shared, Phase::Done, roster)?;
    report_phase("done", &done);
    let agree: Vec<usize> = done
        .by_id
        .iter()
        .filter(|(_, (b, _))| b == mine)
        .map(|(&i, _)| i)
        .collect();
    let differ: Vec<usize> = done
        .by_id
        .iter()
        .filter(|(_, (b, _))| b != mine)
        .map(|(&i, _)| i)
        .collect();
    println!(
        "done files: {} of {n} so far; agreeing with this one: {agree:?}{}",
        done.by_id.len(),
        if differ.is_empty() {
            String::new()
        } else {
            format!("; DIFFERENT (computed from other files): {differ:?} — gather every file into one directory and compare")
        }
    );
    Ok(())
}

pub(super) fn prune(a: &PruneArgs) -> anyhow::Result<ExitCode> {
    let path = &a.config;
    let text = belfry_node::secret::read_secret_file(path)?;
    let mut file: ReplicaFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if file.previous_share.is_none() {
        bail!("{}: holds no previous share", path.display());
    }
    file.previous_share = None;
    let out = Zeroizing::new(toml::to_string(&file)?);
    let tmp = path.with_extension("toml.tmp");
    write_file(&tmp, &out, true)?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    println!(
        "pruned {}: its previous share is deleted; this replica now signs only with its refreshed share \
         (restart the node to drop it from memory)",
        path.display()
    );
    Ok(EXIT_OK)
}
