//! `belfry node`: runs one replica from its `replica-<i>.toml` until SIGINT
//! or SIGTERM (a graceful shutdown: the turn in progress is made durable,
//! connections are closed with a reason), or until its storage fails.

use crate::common::{ExitCode, EXIT_OK};
use anyhow::Context;
use belfry_node::{NodeOptions, ReplicaFile};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Worker threads of the node's runtime (the host runs on a thread of its
/// own besides).
pub const NODE_WORKER_THREADS: usize = 2;

/// Arguments of `belfry node`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry node --config cluster/replica-0.toml
  belfry node --config /etc/belfry/replica-2.toml --metrics 127.0.0.1:9100
      then: curl -s http://127.0.0.1:9100/metrics

Logs go to stderr (RUST_LOG=info,belfry_node=debug for more). SIGINT or SIGTERM
stops the replica gracefully; a restart resumes from its data directory.")]
pub struct NodeArgs {
    /// The replica's secret file, replica-<i>.toml (mode 0600; cluster.toml is found from it).
    #[arg(long)]
    pub config: PathBuf,
    /// Serve Prometheus metrics on this address (overrides the file's `metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
}

/// Runs `belfry node`.
pub fn run(args: &NodeArgs) -> anyhow::Result<ExitCode> {
    let mut config = ReplicaFile::load(&args.config)?;
    if let Some(m) = args.metrics {
        config.metrics = Some(m);
    }
    belfry_node::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(NODE_WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let node = belfry_node::start(config.clone(), NodeOptions::default()).await?;
        // Only now: the data directory is locked, storage open, the port bound.
        announce(&config, &node);
        node.run_until_signal().await
    })?;
    Ok(EXIT_OK)
}

/// One line on stderr once the replica runs: which replica, where, with
/// what data.
fn announce(config: &belfry_node::NodeConfig, node: &belfry_node::RunningNode) {
    let c = &config.cluster;
    eprintln!(
        "belfry node: replica {} of {} (f = {}), cluster {}, listening on {} (UDP), data in {}{}",
        config.id.0,
        c.params.n,
        c.params.f,
        hex::encode(c.params.cluster_id().0),
        node.local_addr().unwrap_or(config.listen),
        config.data_dir.display(),
        match node.metrics_addr().or(config.metrics) {
            Some(m) => format!(", metrics on http://{m}/metrics"),
            None => String::new(),
        }
    );
}
