//! `belfry demo`: a whole cluster in one process — `n` replicas as tasks,
//! talking real QUIC over loopback with mutual TLS, with freshly dealt keys
//! and a temporary data directory — stamps digests through the client
//! library, verifies every receipt offline against the trust anchor alone
//! (after a round trip through its JSON form), checks that every replica
//! holds every entry and that their heads are one history, and reports
//! throughput and submit→receipt latency.

use crate::common::{utc, ExitCode, EXIT_OK};
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions, HeadCache};
use belfry_node::{generate_cluster, ClusterFile, GenerateOptions, NodeOptions, ReplicaFile};
use belfry_replica::clock::{ClockSource, SystemClock};
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::{Entry, Receipt, SignedTreeHead};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// Arguments of `belfry demo`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry demo
  belfry demo --replicas 7 --digests 5000 --json > demo.json

Nothing leaves this machine: the replicas listen on 127.0.0.1, and the keys and
data live in a temporary directory removed at the end.")]
pub struct DemoArgs {
    /// Replicas in the local cluster (n >= 4; f = ⌊(n−1)/3⌋).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Digests to stamp (SHA-256 of the documents "belfry demo document <i>").
    #[arg(long, default_value_t = 1_000)]
    pub digests: usize,
    /// Digests per stamp call.
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Stamp calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Print one JSON object (trust anchor, receipts, figures) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Sequencing policy: lamport or clock.
    #[arg(long, default_value = "lamport")]
    pub policy: String,
    /// Clock-policy bucket width in µs.
    #[arg(long, default_value_t = 1_000)]
    pub granularity_us: u64,
}

/// Most digests a demo stamps (the receipts are all kept in memory).
pub const MAX_DEMO_DIGESTS: usize = 200_000;
/// Most replicas a demo runs (all in this process).
pub const MAX_DEMO_REPLICAS: usize = 16;
/// Most stamp calls in flight.
pub const MAX_DEMO_CONCURRENCY: usize = 256;
/// How long every replica may take to hold every entry after the last
/// receipt.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The demo's `i`-th document's digest: `SHA-256("belfry demo document " ||
/// i as u64 big-endian)`.
pub fn demo_digest(i: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"belfry demo document ");
    h.update(i.to_be_bytes());
    h.finalize().into()
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    if !(4..=MAX_DEMO_REPLICAS).contains(&args.replicas) {
        bail!(
            "--replicas must be between 4 and {MAX_DEMO_REPLICAS}, got {}",
            args.replicas
        );
    }
    if args.digests == 0 || args.digests > MAX_DEMO_DIGESTS {
        bail!(
            "--digests must be between 1 and {MAX_DEMO_DIGESTS}, got {}",
            args.digests
        );
    }
    if args.batch == 0 || args.batch > belfry_client::MAX_DIGESTS_PER_SUBMIT {
        bail!(
            "--batch must be between 1 and {}, got {}",
            belfry_client::MAX_DIGESTS_PER_SUBMIT,
            args.batch
        );
    }
    if args.concurrency == 0 || args.concurrency > MAX_DEMO_CONCURRENCY {
        bail!(
            "--concurrency must be between 1 and {MAX_DEMO_CONCURRENCY}, got {}",
            args.concurrency
        );
    }
    let granularity = if args.policy == "clock" {
        args.granularity_us
    } else {
        0
    };
    let policy = Policy::from_name(&args.policy, granularity).context("--policy")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args, policy))
}

/// Stamping figures.
struct Figures {
    wall: Duration,
    latency_us: hdrhistogram::Histogram<u64>,
}

// An edge: the demo measures wall time, and its cluster's genesis is now.
#[allow(clippy::disallowed_methods)]
async fn demo(args: &DemoArgs, policy: Policy) -> anyhow::Result<ExitCode> {
    let total = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let sockets: Vec<std::net::UdpSocket> = (0..args.replicas)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("binding a loopback UDP socket")?;
    let addresses = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let generated = generate_cluster(
        dir.path(),
        &GenerateOptions {
            addresses,
            policy,
            genesis_time: SystemClock.now(),
            seed: None,
            tsa: None,
        },
    )?;
    let cluster = ClusterFile::load(&generated.cluster)?;
    let anchor = cluster.anchor();
    let mut nodes = Vec::with_capacity(args.replicas);
    for (path, socket) in generated.replicas.iter().zip(sockets) {
        let config = ReplicaFile::load(path)?;
        let options = NodeOptions {
            socket: Some(socket),
            ..NodeOptions::default()
        };
        nodes.push(belfry_node::start(config, options).await?);
    }
    let client = Client::new(cluster.client_info(), ClientOptions::default())?;
    let digests: Vec<[u8; 32]> = (0..args.digests as u64).map(demo_digest).collect();
    let stamped = stamp(&client, &digests, args).await;
    let (receipts, figures) = match stamped {
        Ok(x) => x,
        Err(e) => {
            shutdown(nodes).await;
            return Err(e);
        }
    };
    // What a user holds: the JSON form, read back, checked against the
    // anchor alone; each distinct signed head costs one pairing.
    let offline = HeadCache::new();
    for r in &receipts {
        let back = Receipt::from_json_str(&serde_json::to_string(&r.to_json())?)?;
        offline.verify_receipt(&anchor, &back).with_context(|| {
            format!(
                "a receipt does not verify: {}",
                serde_json::to_string(&r.to_json()).unwrap_or_default()
            )
        })?;
    }
    let settled = settle(&client, &receipts).await;
    shutdown(nodes).await;
    let heads = settled?;
    report(
        args,
        &anchor,
        &cluster,
        policy,
        &receipts,
        &figures,
        &offline,
        heads,
        total.elapsed(),
    )?;
    Ok(EXIT_OK)
}

async fn shutdown(nodes: Vec<belfry_node::RunningNode>) {
    for n in nodes {
        let _ = n.shutdown().await;
    }
}

/// Stamps `digests` in calls of `--batch`, `--concurrency` at once, and
/// times each call from submission to its last verified receipt.
#[allow(clippy::disallowed_methods)]
async fn stamp(
    client: &Client,
    digests: &[[u8; 32]],
    args: &DemoArgs,
) -> anyhow::Result<(Vec<Receipt>, Figures)> {
    let mut latency_us = hdrhistogram::Histogram::<u64>::new(3).context("histogram")?;
    let start = Instant::now();
    let mut calls = digests.chunks(args.batch).enumerate();
    let mut running = tokio::task::JoinSet::new();
    let mut out: Vec<Option<Vec<Receipt>>> = vec![None; digests.len().div_ceil(args.batch)];
    let mut last_report = Instant::now();
    let mut done = 0usize;
    loop {
        while running.len() < args.concurrency {
            let Some((k, chunk)) = calls.next() else {
                break;
            };
            let (client, chunk) = (client.clone(), chunk.to_vec());
            running.spawn(async move {
                let t = Instant::now();
                let r = client.stamp(&chunk).await;
                (k, t.elapsed(), r)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (k, took, receipts) = joined.context("a stamping task")?;
        let receipts = receipts.context("stamping")?;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        latency_us
            .record_n(us, receipts.len() as u64)
            .context("recording a latency")?;
        done += receipts.len();
        out[k] = Some(receipts);
        if !args.json && last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("… {done} of {} digests stamped", digests.len());
            last_report = Instant::now();
        }
    }
    let wall = start.elapsed();
    let receipts: Vec<Receipt> = out.into_iter().flatten().flatten().collect();
    if receipts.len() != digests.len() {
        bail!("{} receipts for {} digests", receipts.len(), digests.len());
    }
    Ok((receipts, Figures { wall, latency_us }))
}

/// Waits until every replica proves every digest (each replica's receipt
/// bundles verify under its own signed head), then checks that every
/// replica's latest head is consistent with the largest. Returns the
/// replicas' heads' sizes.
/// Waits until every replica's signed head covers every receipt's entry,
/// then checks that every replica's head, and every head a receipt was
/// signed under, is one history with the largest (consistency proofs):
/// then every replica holds every stamped entry, at the index its receipt
/// names — proved with one consistency proof per distinct head instead of
/// fetching every receipt back from every replica.
async fn settle(client: &Client, receipts: &[Receipt]) -> anyhow::Result<Vec<u64>> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let needed = receipts.iter().map(|r| r.leaf_index + 1).max().unwrap_or(0);
    for r in 0..client.replicas() {
        loop {
            let size = match client.tree_head(r).await {
                Ok(Some(h)) => h.head.tree_size,
                _ => 0,
            };
            if size >= needed {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "replica {r}'s signed head covers {size} of the {needed} entries the receipts name after {} s",
                    SETTLE_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut heads = Vec::new();
    for r in 0..client.replicas() {
        match client.tree_head(r).await? {
            Some(h) => heads.push((r, h)),
            None => bail!("replica {r} has no signed tree head"),
        }
    }
    let Some((lr, largest)) = heads.iter().max_by_key(|(_, h)| h.head.tree_size).copied() else {
        bail!("no replica");
    };
    for (r, h) in &heads {
        client
            .consistency(lr, h, &largest)
            .await
            .with_context(|| format!("replica {r}'s head against replica {lr}'s"))?;
    }
    let mut receipt_heads = std::collections::BTreeMap::new();
    for r in receipts {
        receipt_heads.entry(r.tree_size).or_insert(SignedTreeHead {
            head: belfry_replica::timestamp::TreeHead {
                tree_size: r.tree_size,
                root: r.root,
                time: r.time,
            },
            signature: r.signature,
        });
    }
    for h in receipt_heads.values() {
        client.consistency(lr, h, &largest).await.with_context(|| {
            format!(
                "the head of size {} a receipt was signed under, against replica {lr}'s",
                h.head.tree_size
            )
        })?;
    }
    Ok(heads.iter().map(|(_, h)| h.head.tree_size).collect())
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &DemoArgs,
    anchor: &belfry_replica::coin::TrustAnchor,
    cluster: &belfry_node::Cluster,
    policy: Policy,
    receipts: &[Receipt],
    figures: &Figures,
    offline: &HeadCache,
    heads: Vec<u64>,
    total: Duration,
) -> anyhow::Result<()> {
    let h = &figures.latency_us;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    let throughput = receipts.len() as f64 / figures.wall.as_secs_f64().max(1e-9);
    let signed_heads: std::collections::BTreeSet<u64> =
        receipts.iter().map(|r| r.tree_size).collect();
    let f = cluster.params.f;
    if args.json {
        let out = serde_json::json!({
            "trust_anchor": anchor.to_string(),
            "cluster_id": hex::encode(cluster.params.cluster_id().0),
            "replicas": args.replicas,
            "f": f,
            "policy": policy.name(),
            "transport": "QUIC on loopback, one process",
            "digests": receipts.len(),
            "batch": args.batch,
            "concurrency": args.concurrency,
            "throughput_digests_per_s": throughput,
            "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": h.max() as f64 / 1_000.0 },
            "receipt_heads": signed_heads.len(),
            "offline_pairings": offline.pairings(),
            "replica_tree_sizes": heads,
            "all_verified": true,
            "stamp_ms": figures.wall.as_secs_f64() * 1_000.0,
            "wall_ms": total.as_secs_f64() * 1_000.0,
            "receipts": receipts.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "belfry demo: {} replicas (f = {f}) as tasks in this process, real QUIC on 127.0.0.1, policy {}, threshold BLS",
        args.replicas,
        policy.name()
    );
    println!("trust anchor: {anchor}");
    println!(
        "stamped {} digests in {:.2} s: {:.0} digests/s ({} per call, {} calls in flight)",
        receipts.len(),
        figures.wall.as_secs_f64(),
        throughput,
        args.batch,
        args.concurrency
    );
    println!(
        "submit -> verified receipt: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        h.max() as f64 / 1_000.0
    );
    println!(
        "all {} receipts verified offline against the trust anchor alone: {} signed tree heads, {} pairings",
        receipts.len(),
        signed_heads.len(),
        offline.pairings()
    );
    println!(
        "every replica holds every entry: their latest heads (sizes {}) and the heads the receipts were signed under are one history",
        heads
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(first) = receipts.first() {
        if let Entry::Digest(e) = first.entry {
            println!(
                "first receipt: digest {}…, leaf {} of tree size {}, {} witnesses, signed {}",
                &hex::encode(e.digest)[..16],
                first.leaf_index,
                first.tree_size,
                e.witnesses,
                utc(first.time)
            );
        }
    }
    println!("total wall time {:.2} s", total.as_secs_f64());
    Ok(())
}
