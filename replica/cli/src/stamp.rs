//! `belfry stamp`: timestamps files (their SHA-256) or bare digests. It
//! waits for receipts that verify against the cluster's trust anchor and
//! writes each as it arrives (`FILE.belfry`, or `DIR/<64 hex>.belfry` for a
//! bare digest), so whatever `stamp` reports done is on disk. A digest
//! already in the log gets its existing receipt — under the first signed
//! head that contains it, the earliest time the cluster can prove — and is
//! not logged again.

use crate::common::{
    client_runtime, digest_reader, file_digest, load_cluster, parse_digest,
    receipt_path_for_digest, receipt_path_for_file, utc, write_receipt, ExitCode, Failed, EXIT_OK,
};
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions, Fanout, GatewayClient, GatewayEndpoint};
use belfry_replica::timestamp::{AnyReceipt, Entry, Receipt};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Digests per stamp call: one receipt bundle's worth.
pub const STAMP_CHUNK: usize = belfry_replica::wire::MAX_RECEIPTS_PER_ANSWER;
/// Stamp calls in flight at once.
pub const STAMP_CONCURRENCY: usize = 4;
/// Targets from which on a progress bar is shown (on a terminal).
pub const PROGRESS_MIN: usize = 16;
/// Targets from which on the per-target lines give way to a summary.
pub const LIST_MAX: usize = 20;
/// How long the look-up of already-logged digests may take before the
/// digests are simply submitted (a replica that is down would hold it up
/// for its whole connection timeout).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Receipt look-ups in flight per replica.
pub const LOOKUPS_IN_FLIGHT: usize = 64;
/// Most targets one command stamps.
pub const MAX_TARGETS: usize = 1_000_000;

/// Arguments of `belfry stamp`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry stamp --cluster cluster.toml contract.pdf
      writes contract.pdf.belfry (the digest is the SHA-256 of the file's content)
  belfry stamp --cluster cluster.toml --out receipts/ *.pdf
  belfry stamp --cluster cluster.toml --digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      writes ./9f86…0a08.belfry
  tar c docs | belfry stamp --cluster cluster.toml --json -
      stamps standard input's content, prints {\"receipts\": [...]}
  belfry stamp --cluster cluster.toml --gateway gw.example:7400 contract.pdf
      through an aggregation gateway: an aggregated receipt (version 2)

Exit 0 when every receipt was received and verified; 1 when not (it says how
many replicas answered; receipts already received are written); 2 on a usage,
configuration or I/O error.")]
pub struct StampArgs {
    /// The cluster's public file, cluster.toml.
    #[arg(long)]
    pub cluster: PathBuf,
    /// Files to stamp; `-` stamps standard input's content.
    #[arg(required_unless_present = "digest", conflicts_with = "digest")]
    pub files: Vec<PathBuf>,
    /// Digests (64 hex digits, SHA-256 or any 32 bytes) to stamp instead of files.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub digest: Vec<String>,
    /// Write receipts into this directory (default: next to each file; the current directory for digests).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print {"receipts": [...]} (docs/design.md §3.7 JSON form) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Replicas each digest is sent to: all (fastest, uncensorable), f+1, or one (more on failover).
    #[arg(long, default_value = "all", value_parser = ["all", "f+1", "one"])]
    pub fanout: String,
    /// Seconds to wait for a batch's receipts before giving up (at least 1).
    #[arg(long, default_value_t = 60, value_parser = parse_timeout)]
    pub timeout: u64,
    /// Stamp through this aggregation gateway (HOST:PORT) instead of the replicas: receipts are aggregated (docs/gateway.md) and verify against the same anchor.
    #[arg(long, conflicts_with = "fanout")]
    pub gateway: Option<String>,
    /// The gateway's certificate (PEM) to pin; without it any certificate is accepted (its receipts are verified against the anchor all the same).
    #[arg(long, requires = "gateway")]
    pub gateway_cert: Option<PathBuf>,
}

/// `--timeout`: whole seconds, at least 1 (0 would give up before any
/// replica could answer).
fn parse_timeout(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => {
            Err("0 seconds would give up before any replica answers: give 1 or more".to_string())
        }
        Ok(t) => Ok(t),
        Err(e) => Err(format!("{s:?} is not a whole number of seconds: {e}")),
    }
}

/// One thing to stamp.
struct Target {
    /// How the user named it.
    label: String,
    digest: [u8; 32],
    receipt_path: PathBuf,
}

fn targets(args: &StampArgs) -> anyhow::Result<Vec<Target>> {
    let out = args.out.as_deref();
    let count = args.files.len() + args.digest.len();
    if count > MAX_TARGETS {
        bail!("{count} targets: one command stamps at most {MAX_TARGETS}");
    }
    let mut targets = Vec::with_capacity(count);
    for d in &args.digest {
        let digest = parse_digest(d).with_context(|| "--digest")?;
        targets.push(Target {
            label: hex::encode(digest),
            digest,
            receipt_path: receipt_path_for_digest(&digest, out),
        });
    }
    let bar = progress(args.files.len(), "hashing");
    let mut stdin_seen = false;
    for f in &args.files {
        if f.as_os_str() == "-" {
            if std::mem::replace(&mut stdin_seen, true) {
                bail!("`-` (standard input) given twice");
            }
            let digest =
                digest_reader(&mut std::io::stdin().lock()).context("reading standard input")?;
            targets.push(Target {
                label: "standard input".to_string(),
                digest,
                receipt_path: receipt_path_for_digest(&digest, out),
            });
        } else {
            if f.is_dir() {
                bail!("{} is a directory: stamp its files", f.display());
            }
            targets.push(Target {
                label: f.display().to_string(),
                digest: file_digest(f)?,
                receipt_path: receipt_path_for_file(f, out),
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Two different contents must not share a receipt file (a/x and b/x
    // with --out).
    let mut by_path: BTreeMap<&Path, &Target> = BTreeMap::new();
    for t in &targets {
        if let Some(other) = by_path.insert(&t.receipt_path, t) {
            if other.digest != t.digest {
                bail!(
                    "{} and {} would both write {}: stamp them with different --out directories",
                    other.label,
                    t.label,
                    t.receipt_path.display()
                );
            }
        }
    }
    Ok(targets)
}

fn progress(len: usize, what: &'static str) -> indicatif::ProgressBar {
    if len < PROGRESS_MIN {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:9} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

/// Runs `belfry stamp`.
pub fn run(args: &StampArgs) -> anyhow::Result<ExitCode> {
    let cluster = load_cluster(&args.cluster)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("--out {}", dir.display()))?;
    }
    let targets = targets(args)?;
    let fanout = match args.fanout.as_str() {
        "f+1" => Fanout::FPlusOne,
        "one" => Fanout::One,
        _ => Fanout::All,
    };
    let options = ClientOptions {
        fanout,
        stamp_timeout: Duration::from_secs(args.timeout),
        ..ClientOptions::default()
    };
    let q = usize::from(cluster.params.n - cluster.params.f);
    let gateway = match &args.gateway {
        Some(g) => Some(gateway_endpoint(g, args.gateway_cert.as_deref())?),
        None => None,
    };
    let runtime = client_runtime()?;
    let outcome = runtime.block_on(async {
        match gateway {
            Some(endpoint) => {
                let gw = GatewayClient::new(endpoint, cluster.params, options)?;
                stamp_all_via(&gw, &targets).await
            }
            None => {
                let client = Client::new(cluster.client_info(), options)?;
                stamp_all(&client, q, &targets).await
            }
        }
    });
    let (got, existing, failure) = outcome?;
    report(args, &cluster.anchor(), &targets, &got, &existing)?;
    match failure {
        None => Ok(EXIT_OK),
        Some(e) => Err(Failed(format!(
            "{} of {} digests stamped (their receipts are written): {e}",
            got.len(),
            distinct(&targets).len()
        ))
        .into()),
    }
}

/// `--gateway HOST:PORT` and `--gateway-cert PEM`.
fn gateway_endpoint(address: &str, cert: Option<&Path>) -> anyhow::Result<GatewayEndpoint> {
    let address = belfry_node::config::resolve_address(address)
        .map_err(|e| anyhow::anyhow!("--gateway {address}: {e}"))?;
    let certificate = match cert {
        Some(p) => {
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("--gateway-cert {}", p.display()))?;
            Some(
                belfry_client::tls::cert_from_pem("--gateway-cert", &pem)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        None => None,
    };
    Ok(GatewayEndpoint {
        address,
        certificate,
    })
}

/// Stamps every target's digest through a gateway, writing each aggregated
/// receipt as it comes.
async fn stamp_all_via(gw: &GatewayClient, targets: &[Target]) -> anyhow::Result<Stamped> {
    let digests: Vec<[u8; 32]> = distinct(targets).into_iter().collect();
    let mut paths: BTreeMap<[u8; 32], Vec<&Path>> = BTreeMap::new();
    for t in targets {
        paths.entry(t.digest).or_default().push(&t.receipt_path);
    }
    let bar = progress(digests.len(), "stamping");
    let mut got = BTreeMap::new();
    let mut chunks = digests.chunks(STAMP_CHUNK);
    let mut running = tokio::task::JoinSet::new();
    let mut failure = None;
    loop {
        while running.len() < STAMP_CONCURRENCY && failure.is_none() {
            let Some(chunk) = chunks.next() else { break };
            let (gw, chunk) = (gw.clone(), chunk.to_vec());
            running.spawn(async move { gw.stamp(&chunk).await });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(receipts)) => {
                for r in receipts {
                    let digest = r.digest;
                    let any = AnyReceipt::Aggregated(r);
                    for p in paths.get(&digest).into_iter().flatten() {
                        write_receipt(p, &any)?;
                    }
                    got.insert(digest, any);
                    bar.inc(1);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => bail!("a stamping task failed: {e}"),
        }
    }
    bar.finish_and_clear();
    Ok((got, BTreeSet::new(), failure))
}

fn distinct(targets: &[Target]) -> BTreeSet<[u8; 32]> {
    targets.iter().map(|t| t.digest).collect()
}

type Stamped = (
    BTreeMap<[u8; 32], AnyReceipt>,
    BTreeSet<[u8; 32]>,
    Option<belfry_client::Error>,
);

/// Stamps every target's digest, writing each receipt as it comes: returns
/// the receipts, the digests that were already logged, and the error that
/// stopped it, if any.
async fn stamp_all(client: &Client, q: usize, targets: &[Target]) -> anyhow::Result<Stamped> {
    let digests: Vec<[u8; 32]> = distinct(targets).into_iter().collect();
    let mut paths: BTreeMap<[u8; 32], Vec<&Path>> = BTreeMap::new();
    for t in targets {
        paths.entry(t.digest).or_default().push(&t.receipt_path);
    }
    let write = |r: &Receipt| -> anyhow::Result<()> {
        if let Entry::Digest(d) = r.entry {
            let any = AnyReceipt::Direct(r.clone());
            for p in paths.get(&d.digest).into_iter().flatten() {
                write_receipt(p, &any)?;
            }
        }
        Ok(())
    };
    let existing = lookup_existing(client, q, &digests).await;
    let mut got = BTreeMap::new();
    for r in existing.values() {
        write(r)?;
    }
    let existing_set: BTreeSet<[u8; 32]> = existing.keys().copied().collect();
    got.extend(
        existing
            .into_iter()
            .map(|(d, r)| (d, AnyReceipt::Direct(r))),
    );
    let todo: Vec<[u8; 32]> = digests
        .iter()
        .filter(|d| !got.contains_key(*d))
        .copied()
        .collect();
    let bar = progress(digests.len(), "stamping");
    bar.inc(got.len() as u64);
    let mut chunks = todo.chunks(STAMP_CHUNK);
    let mut running = tokio::task::JoinSet::new();
    let mut failure = None;
    loop {
        while running.len() < STAMP_CONCURRENCY && failure.is_none() {
            let Some(chunk) = chunks.next() else { break };
            let (client, chunk) = (client.clone(), chunk.to_vec());
            running.spawn(async move { client.stamp(&chunk).await });
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(receipts)) => {
                for r in receipts {
                    write(&r)?;
                    if let Entry::Digest(d) = r.entry {
                        got.insert(d.digest, AnyReceipt::Direct(r));
                    }
                    bar.inc(1);
                }
            }
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(e) => bail!("a stamping task failed: {e}"),
        }
    }
    bar.finish_and_clear();
    Ok((got, existing_set, failure))
}

/// Receipts of digests the cluster has already logged, each under the first
/// signed head that contains it: every replica is asked at once, and the
/// answers of a quorum (or whatever came within [`LOOKUP_TIMEOUT`]) are
/// used; where replicas differ, the earliest head wins.
async fn lookup_existing(
    client: &Client,
    q: usize,
    digests: &[[u8; 32]],
) -> BTreeMap<[u8; 32], Receipt> {
    let n = client.replicas();
    let (tx, mut rx) = tokio::sync::mpsc::channel(n.max(1));
    let mut tasks = tokio::task::JoinSet::new();
    for replica in 0..n {
        let (client, digests, tx) = (client.clone(), digests.to_vec(), tx.clone());
        tasks.spawn(async move {
            let found = existing_at(&client, replica, &digests).await;
            let _ = tx.send(found).await;
        });
    }
    drop(tx);
    let mut best: BTreeMap<[u8; 32], Receipt> = BTreeMap::new();
    let mut answered = 0;
    let deadline = tokio::time::Instant::now() + LOOKUP_TIMEOUT;
    while answered < q {
        let Ok(Some(found)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        let Some(found) = found else { continue };
        answered += 1;
        for r in found {
            let Entry::Digest(d) = r.entry else { continue };
            let better = best
                .get(&d.digest)
                .is_none_or(|b| r.tree_size < b.tree_size);
            if better {
                best.insert(d.digest, r);
            }
        }
    }
    tasks.abort_all();
    best
}

/// What one replica has of `digests`: `None` if it could not be asked.
async fn existing_at(
    client: &Client,
    replica: usize,
    digests: &[[u8; 32]],
) -> Option<Vec<Receipt>> {
    // One bundle per 1,024 digests tells which are logged; only those are
    // asked for one by one (their first signed head).
    let logged = client.receipts(replica, digests).await.ok()?;
    let mut out = Vec::with_capacity(logged.len());
    for chunk in logged.chunks(LOOKUPS_IN_FLIGHT) {
        let mut asks = tokio::task::JoinSet::new();
        for r in chunk.iter().cloned() {
            let client = client.clone();
            asks.spawn(async move {
                let first = match r.entry {
                    Entry::Digest(d) => client.receipt(replica, &d.digest).await.ok().flatten(),
                    Entry::Tick(_) => None,
                };
                first.unwrap_or(r)
            });
        }
        while let Some(r) = asks.join_next().await {
            out.push(r.ok()?);
        }
    }
    Some(out)
}

fn report(
    args: &StampArgs,
    anchor: &belfry_replica::coin::TrustAnchor,
    targets: &[Target],
    got: &BTreeMap<[u8; 32], AnyReceipt>,
    existing: &BTreeSet<[u8; 32]>,
) -> anyhow::Result<()> {
    if args.json {
        let receipts: Vec<_> = targets
            .iter()
            .filter_map(|t| got.get(&t.digest))
            .map(|r| r.to_json_value())
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "receipts": receipts }))?
        );
        return Ok(());
    }
    if targets.len() <= LIST_MAX {
        for t in targets {
            let Some(any) = got.get(&t.digest) else {
                println!("MISSING {}: no receipt", t.label);
                continue;
            };
            let r = any.cluster_receipt();
            println!(
                "stamped {}: leaf {} of tree size {}{}, signed at {}{} -> {}",
                t.label,
                r.leaf_index,
                r.tree_size,
                match any {
                    AnyReceipt::Direct(_) => "",
                    AnyReceipt::Aggregated(_) => " (through the gateway: its round's root)",
                },
                utc(r.time),
                if existing.contains(&t.digest) {
                    " (already logged: its existing receipt)"
                } else {
                    ""
                },
                t.receipt_path.display()
            );
        }
    }
    let heads: BTreeSet<u64> = got
        .values()
        .map(|r| r.cluster_receipt().tree_size)
        .collect();
    let d = distinct(targets).len();
    println!(
        "{} of {d} digests stamped ({} already logged) under {} signed tree head{}; every receipt verified against {anchor}",
        got.len(),
        existing.len(),
        heads.len(),
        if heads.len() == 1 { "" } else { "s" },
    );
    Ok(())
}
