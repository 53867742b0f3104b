//! `belfry demo`: an in-process cluster with real threshold BLS keys stamps
//! digests, and every receipt is verified offline against the trust anchor
//! alone.

use anyhow::{bail, Context};
use belfry_replica::clock::{ClockSource, Micros, SystemClock};
use belfry_replica::coin::{sha3, Policy};
use belfry_replica::local::LocalCluster;
use belfry_replica::timestamp::{verify_receipt, Entry, Receipt};
use belfry_replica::wire::ClientRequest;
use std::time::Instant;

/// Arguments of `belfry demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Replicas in the local cluster (n >= 4; f = ⌊(n−1)/3⌋).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Digests to stamp.
    #[arg(long, default_value_t = 100)]
    pub digests: usize,
    /// Print one JSON object (trust anchor, receipts, figures) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Seed of the key dealing and the simulated network.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sequencing policy: lamport or clock.
    #[arg(long, default_value = "lamport")]
    pub policy: String,
    /// Clock-policy bucket width in µs.
    #[arg(long, default_value_t = 1_000)]
    pub granularity_us: u64,
}

/// Most digests a demo stamps (the receipts are all kept in memory).
pub const MAX_DEMO_DIGESTS: usize = 200_000;
/// Simulated time allowed for stamping.
const DEMO_LIMIT: Micros = Micros::from_secs(300);

/// Runs the demo.
// An edge: the demo reports wall time and progress, and its cluster's genesis
// is now; the replicas inside still get simulated time only.
#[allow(clippy::disallowed_methods)]
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !(4..=64).contains(&args.replicas) {
        bail!("--replicas must be between 4 and 64, got {}", args.replicas);
    }
    if args.digests == 0 || args.digests > MAX_DEMO_DIGESTS {
        bail!(
            "--digests must be between 1 and {MAX_DEMO_DIGESTS}, got {}",
            args.digests
        );
    }
    let granularity = if args.policy == "clock" {
        args.granularity_us
    } else {
        0
    };
    let policy = Policy::from_name(&args.policy, granularity).context("--policy")?;
    let wall = Instant::now();
    let genesis = SystemClock.now();
    let (mut cluster, _public) = LocalCluster::with_bls(args.replicas, policy, genesis, args.seed)
        .context("dealing keys")?;
    let anchor = cluster.anchor();
    let digests: Vec<[u8; 32]> = (0..args.digests as u64)
        .map(|i| sha3(&[b"belfry demo document ", &i.to_be_bytes()]))
        .collect();
    for chunk in digests.chunks(belfry_replica::broadcast::config::MAX_DIGESTS_PER_REQUEST) {
        cluster.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
    }
    let mut remaining = digests.clone();
    let limit = genesis.saturating_add(DEMO_LIMIT);
    let mut last_report = Instant::now();
    while !remaining.is_empty() {
        if cluster.now >= limit {
            bail!(
                "the cluster stamped {} of {} digests within {} s of simulated time",
                digests.len() - remaining.len(),
                digests.len(),
                DEMO_LIMIT.0 / 1_000_000
            );
        }
        let next = cluster.now.saturating_add(Micros::from_millis(5));
        cluster.run_until(next, |_| false);
        let Some(core) = cluster.core(0) else {
            bail!("replica 0 stopped");
        };
        let signed = core.signed_size();
        remaining.retain(|d| core.leaf_index(d).is_none_or(|i| i >= signed));
        if !args.json && last_report.elapsed().as_secs() >= 2 {
            eprintln!(
                "… {} of {} digests stamped",
                digests.len() - remaining.len(),
                digests.len()
            );
            last_report = Instant::now();
        }
    }
    let _ = cluster.take_responses();
    let Some(core) = cluster.core(0) else {
        bail!("replica 0 stopped");
    };
    // Every replica holds the same log and the same signed heads.
    cluster.check_agreement().map_err(anyhow::Error::msg)?;
    let mut receipts = Vec::with_capacity(digests.len());
    for d in &digests {
        let r = core.receipt(d).context("a stamped digest has no receipt")?;
        // Verify what a user would hold: the JSON form, read back, against the anchor.
        let text = serde_json::to_string(&r.to_json())?;
        let back = Receipt::from_json_str(&text)?;
        verify_receipt(&back, &anchor)
            .with_context(|| format!("receipt of {} does not verify", hex::encode(d)))?;
        receipts.push(r);
    }
    let waves = core
        .log()
        .iter()
        .filter(|e| matches!(e, Entry::Tick(_)))
        .count();
    let simulated_ms = cluster.now.saturating_sub(genesis).as_millis_f64();
    let wall_ms = wall.elapsed().as_secs_f64() * 1_000.0;
    if args.json {
        let out = serde_json::json!({
            "trust_anchor": anchor.to_string(),
            "cluster_id": hex::encode(cluster.cluster.cluster_id().0),
            "replicas": args.replicas,
            "f": cluster.cluster.f,
            "policy": policy.name(),
            "digests": digests.len(),
            "log_entries": core.log_len(),
            "ticks": waves,
            "signed_tree_heads": core.heads().len(),
            "all_verified": true,
            "simulated_ms": simulated_ms,
            "wall_ms": wall_ms,
            "receipts": receipts.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let first = &receipts[0];
        println!(
            "belfry demo: {} replicas (f = {}), policy {}, real threshold BLS",
            args.replicas,
            cluster.cluster.f,
            policy.name()
        );
        println!("trust anchor: {anchor}");
        println!(
            "stamped {} digests: {} log entries in {} ticks, {} signed tree heads",
            digests.len(),
            core.log_len(),
            waves,
            core.heads().len()
        );
        println!(
            "all {} receipts verified offline against the trust anchor alone",
            receipts.len()
        );
        if let Entry::Digest(e) = first.entry {
            println!(
                "first receipt: digest {}…, leaf {} of tree size {}, key {}, {} witnesses, signed at {} µs",
                &hex::encode(e.digest)[..16],
                first.leaf_index,
                first.tree_size,
                e.key,
                e.witnesses,
                first.time.0
            );
        }
        println!("simulated time {simulated_ms:.1} ms, wall time {wall_ms:.0} ms");
    }
    Ok(())
}
