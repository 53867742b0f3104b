//! belfry-node: a replica on the network (docs/design.md sections 3.1, 3.8, 4).
//!
//! A thin driver around the sans-IO core: the [`Host`](belfry_replica::Host)
//! runs on a thread of its own ([`driver`]); tokio tasks move bytes between
//! it and QUIC connections — to the other replicas ([`mesh`], mutual TLS
//! pinned to the cluster's certificates, [`tls`]) and to clients
//! ([`clients`], the protocol of [`belfry_wire`]). No protocol decision is
//! made here. Around it: the configuration files ([`config`], and
//! [`generate`] to make a test cluster's), Prometheus metrics
//! ([`metrics`]), graceful shutdown ([`shutdown`]) and logging
//! ([`init_tracing`]), and the RFC 3161 endpoint ([`tsa`], a client of the
//! cluster beside the node). [`node::start`] starts one; [`node::run`] runs
//! one until a signal.

#![forbid(unsafe_code)]

mod accept;
mod address;
pub mod admission;
pub mod clients;
pub mod config;
pub mod driver;
pub mod faults;
pub mod frames;
pub mod generate;
pub mod mesh;
pub mod metrics;
pub mod node;
pub mod queue;
pub mod secret;
pub mod shutdown;
mod start;
pub mod tls;
pub mod tsa;

pub use config::{Cluster, ClusterFile, ConfigError, NodeConfig, ReplicaFile};
pub use generate::{generate_cluster, GenerateOptions, Generated};
pub use node::{run, start, NodeError, NodeOptions, RunningNode};

/// Logs to stderr through `tracing`, filtered by `RUST_LOG`: a default
/// level and `target=level` pairs, e.g. `info,belfry_node=debug,quinn=warn`
/// (default `info`; a value that does not parse is reported and `info`
/// used). For binaries; a second call does nothing.
pub fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = Targets::new().with_default(LevelFilter::INFO);
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(s) => match s.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (
                default,
                Some(format!("RUST_LOG={s:?}: {e}; logging at info")),
            ),
        },
        Err(_) => (default, None),
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours on a terminal only: a log file gets plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .try_init();
    if let Some(warning) = bad {
        tracing::warn!("{warning}");
    }
}
