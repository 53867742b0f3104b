//! `belfry gateway`: an aggregation gateway in front of a cluster (or of
//! another gateway) until SIGINT or SIGTERM (docs/gateway.md).

use crate::common::{load_cluster, ExitCode, EXIT_OK};
use anyhow::{bail, Context};
use belfry_client::{Client, ClientOptions, Fanout, GatewayClient, GatewayEndpoint};
use belfry_gateway::round::RoundLimits;
use belfry_gateway::{GatewayOptions, Upstream};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Worker threads of the gateway's runtime.
pub const GATEWAY_WORKER_THREADS: usize = 2;
/// How long one upstream stamp of a root may take before it is tried again.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Arguments of `belfry gateway`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  belfry gateway --cluster cluster.toml --listen 0.0.0.0:7400
      clients: belfry stamp --cluster cluster.toml --gateway gw.example:7400 FILE
  belfry gateway --cluster cluster.toml --listen 0.0.0.0:7401 --upstream gw.example:7400
      a second layer: its rounds' roots go to the first gateway
  belfry gateway --cluster cluster.toml --listen 0.0.0.0:7400 --metrics 127.0.0.1:9200

One line on stdout once it listens: `belfry gateway: listening on ADDR …`.
Nothing it holds is durable: clients whose gateway stops submit again.")]
pub struct GatewayArgs {
    /// The cluster's public file, cluster.toml (its replicas, and the anchor receipts must verify against).
    #[arg(long)]
    pub cluster: PathBuf,
    /// Where to listen for clients (QUIC, UDP), HOST:PORT; port 0 picks one.
    #[arg(long)]
    pub listen: SocketAddr,
    /// A round's length in milliseconds: each round's digests become one digest in the cluster's log.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub round_ms: u64,
    /// Most digests in one round (it closes early when full).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_round: u64,
    /// Most rounds waiting for their root's receipt; beyond, clients are told to back off.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_rounds_in_flight: u64,
    /// Digests of past rounds kept to answer receipt polls (about 180 bytes each).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(0..=1 << 26))]
    pub cache_digests: u64,
    /// Send roots to this gateway (HOST:PORT) instead of the cluster: stacked gateways.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The upstream gateway's certificate (PEM) to pin.
    #[arg(long, requires = "upstream")]
    pub upstream_cert: Option<PathBuf>,
    /// Replicas each root is sent to: all, f+1 or one.
    #[arg(long, default_value = "all", value_parser = ["all", "f+1", "one"])]
    pub fanout: String,
    /// This gateway's TLS certificate (PEM); with --key. Default: a fresh self-signed one.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// This gateway's TLS private key (PEM); with --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
}

/// Runs `belfry gateway`.
pub fn run(args: &GatewayArgs) -> anyhow::Result<ExitCode> {
    let cluster = load_cluster(&args.cluster)?;
    let identity = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let cert =
                std::fs::read_to_string(c).with_context(|| format!("--cert {}", c.display()))?;
            let key =
                std::fs::read_to_string(k).with_context(|| format!("--key {}", k.display()))?;
            let cert = belfry_node::tls::cert_from_pem("--cert", &cert)?;
            Some(belfry_node::tls::Identity::new(cert, &key)?)
        }
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    let options = GatewayOptions {
        listen: args.listen,
        round: Duration::from_millis(args.round_ms),
        limits: RoundLimits {
            max_round: args.max_round as usize,
            max_in_flight: args.max_rounds_in_flight as usize,
            cache_digests: args.cache_digests as usize,
        },
        metrics: args.metrics,
        ..GatewayOptions::default()
    };
    let client_options = ClientOptions {
        fanout: match args.fanout.as_str() {
            "f+1" => Fanout::FPlusOne,
            "one" => Fanout::One,
            _ => Fanout::All,
        },
        stamp_timeout: UPSTREAM_TIMEOUT,
        ..ClientOptions::default()
    };
    let upstream_gateway = match &args.upstream {
        Some(u) => {
            let address = belfry_node::config::resolve_address(u)
                .map_err(|e| anyhow::anyhow!("--upstream {u}: {e}"))?;
            let certificate = match &args.upstream_cert {
                Some(p) => {
                    let pem = std::fs::read_to_string(p)
                        .with_context(|| format!("--upstream-cert {}", p.display()))?;
                    Some(belfry_node::tls::cert_from_pem("--upstream-cert", &pem)?)
                }
                None => None,
            };
            Some(GatewayEndpoint {
                address,
                certificate,
            })
        }
        None => None,
    };
    belfry_node::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(GATEWAY_WORKER_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let upstream = match upstream_gateway {
            Some(endpoint) => Upstream::Gateway(GatewayClient::new(
                endpoint,
                cluster.params,
                client_options,
            )?),
            None => Upstream::Cluster(Client::new(cluster.client_info(), client_options)?),
        };
        let via = match &args.upstream {
            Some(u) => format!("gateway {u}"),
            None => format!("the cluster's {} replicas", cluster.params.n),
        };
        let gateway = belfry_gateway::start(options, upstream, identity).await?;
        println!(
            "belfry gateway: listening on {} (UDP), rounds of {} ms, roots to {via}{}",
            gateway.addr,
            args.round_ms,
            match args.metrics {
                Some(m) => format!(", metrics on http://{m}/metrics"),
                None => String::new(),
            }
        );
        gateway.run_until_signal().await;
        anyhow::Ok(())
    })?;
    Ok(EXIT_OK)
}
