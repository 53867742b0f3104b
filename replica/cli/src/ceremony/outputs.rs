//! What `finish` writes once the result is agreed: `cluster.toml` and this
//! operator's replica file; `prune` after a refresh's switch; and the check
//! that a refresh's switch wave is still ahead of the replica.

use super::*;
use belfry_node::secret;

/// cluster.toml as keygen writes it, from the outcome and the roster; in
/// a refresh, the current one with the new public keys and `[refresh]`.
pub(super) fn cluster_file(c: &Session, o: &Outcome) -> anyhow::Result<(String, TrustAnchor)> {
    if let (Some(m), Some(r)) = (&c.member, &c.plan.refresh) {
        let mut file = m.cluster.clone();
        file.public_keys = o.public.commitment_hex();
        // Every earlier epoch stays: a replica restarting or catching up
        // from before an earlier switch needs its keys (docs/keys.md §8).
        let earlier = match &m.cluster.refresh {
            Some(last) => {
                let mut e = last.earlier.clone();
                e.push(belfry_node::config::EarlierRefresh {
                    switch_wave: last.switch_wave,
                    previous_public_keys: last.previous_public_keys.clone(),
                });
                e
            }
            None => Vec::new(),
        };
        file.refresh = Some(belfry_node::config::ClusterRefresh {
            switch_wave: r.switch_wave,
            previous_public_keys: m.cluster.public_keys.clone(),
            earlier,
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
    // A slot the roster excludes (a bound plan) is listed absent: no
    // address, certificate or note key; nobody holds its share, and the
    // cluster runs without it, one of its f faults.
    let replicas = c
        .roster
        .members
        .iter()
        .enumerate()
        .map(|(id, m)| match m {
            Some(m) => ReplicaEntry {
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
                absent: false,
            },
            None => ReplicaEntry {
                id: id as u16,
                address: String::new(),
                certificate: String::new(),
                note_key: None,
                absent: true,
            },
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

pub(super) fn write_outputs(
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
    let sealer = Sealer::for_outputs(a, c)?;
    let secret_share = sealer.seal(&hex_share)?;
    let file = match &c.member {
        Some(m) => refreshed_file(a, m, secret_share, &sealer)?,
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
            peer_addresses: Default::default(),
            check_log_on_start: None,
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
        if sealer.pass.is_some() {
            ", shares sealed with the passphrase"
        } else {
            ""
        }
    );
    Ok(())
}

/// Seals shares with the operator's passphrase, or leaves them plain.
struct Sealer {
    /// The passphrase, when the shares are sealed.
    pass: Option<secret::Passphrase>,
}

impl Sealer {
    /// Sealing when asked (`--seal`) or when the refreshed replica's share
    /// is sealed: a refresh keeps a sealed share sealed, and seals the
    /// previous one along with the new one.
    fn for_outputs(a: &FinishArgs, c: &Session) -> anyhow::Result<Sealer> {
        let seal = a.seal
            || c.member
                .as_ref()
                .is_some_and(|m| secret::is_sealed(&m.file.secret_share));
        let pass = if seal {
            Some(secret::passphrase_from_env()?.context(
                "sealing the share (--seal, or the refreshed replica's share is sealed): set \
                 BELFRY_PASSPHRASE_FILE to a file holding the passphrase (mode 0600), or BELFRY_PASSPHRASE",
            )?)
        } else {
            None
        };
        Ok(Sealer { pass })
    }

    /// `plain` sealed, or as it is.
    fn seal(&self, plain: &str) -> anyhow::Result<String> {
        match &self.pass {
            Some(p) => secret::seal(plain, p, secret::SEAL_LOG_N)
                .map_err(|e| anyhow::anyhow!("sealing the share: {e}")),
            None => Ok(plain.to_string()),
        }
    }
}

/// A refresh: the member's replica file with the new share, the current
/// one kept (sealed) as the previous share, and its data where it is.
fn refreshed_file(
    a: &FinishArgs,
    m: &Member,
    secret_share: String,
    sealer: &Sealer,
) -> anyhow::Result<ReplicaFile> {
    let mut file = m.file.clone();
    file.previous_share = Some(if secret::is_sealed(&m.file.secret_share) {
        m.file.secret_share.clone()
    } else {
        sealer.seal(&m.file.secret_share)?
    });
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
    Ok(file)
}

/// Refuses a refresh whose switch wave this replica has reached already:
/// its operator could no longer install the files before the switch.
/// The wave comes from what the operator can see: the running node's
/// metrics (`metrics`, or the replica file's), or, when the node is
/// stopped, its journal.
pub(super) fn check_switch_ahead(
    m: &Member,
    switch_wave: u64,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let (wave, source) = replica_wave(m, metrics)?;
    if wave >= switch_wave {
        bail!(
            "the refresh switches at wave {switch_wave}, and replica {} is at wave {wave} already ({source}): \
             the new shares could not be installed before the switch; plan a new refresh with a later --switch-wave",
            m.file.id
        );
    }
    println!(
        "checked: replica {} is at wave {wave} ({source}), before the switch wave {switch_wave} ({} to go)",
        m.file.id,
        switch_wave - wave
    );
    Ok(())
}

/// The wave replica `m` has reached, and where that was read.
fn replica_wave(
    m: &Member,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<(u64, String)> {
    let base = m.path.parent().unwrap_or(Path::new("."));
    let dir = base.join(&m.file.data_dir);
    if !dir.join("journal").exists() {
        return Ok((0, format!("{} holds no journal yet", dir.display())));
    }
    let lock_path = dir.join(belfry_node::node::LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("{}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {
            // Stopped: its journal says how far it got (held under the
            // lock, as the node reads it).
            let (_, recovered) = belfry_replica::journal::FileJournal::open(&dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            let wave = recovered.sequencer.map_or(0, |s| s.last_wave().0);
            Ok((wave, format!("its journal in {}", dir.display())))
        }
        Err(_) => {
            let file_metrics = m
                .file
                .metrics
                .as_deref()
                .and_then(|s| s.parse::<std::net::SocketAddr>().ok());
            let Some(addr) = metrics.or(file_metrics) else {
                bail!(
                    "{} is locked: replica {} is running; give --metrics ADDR (its Prometheus address, \
                     as `belfry node --metrics`) so that the switch wave can be checked against its wave",
                    dir.display(),
                    m.file.id
                );
            };
            Ok((scrape_wave(addr)?, format!("its metrics on {addr}")))
        }
    }
}

/// `belfry_wave` from a node's Prometheus text.
fn scrape_wave(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(5);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("the metrics on {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: belfry\r\nconnection: close\r\n\r\n")
        .with_context(|| format!("the metrics on {addr}"))?;
    let mut body = String::new();
    s.take(4 << 20)
        .read_to_string(&mut body)
        .with_context(|| format!("the metrics on {addr}"))?;
    body.lines()
        .find_map(|l| l.strip_prefix("belfry_wave ")?.trim().parse::<f64>().ok())
        .map(|w| w as u64)
        .ok_or_else(|| {
            anyhow::anyhow!("the metrics on {addr} have no belfry_wave: not a belfry node")
        })
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
