//! A running replica: storage opened, the host thread started, the QUIC
//! endpoint serving peers and clients, the metrics endpoint, and graceful
//! shutdown — the shape of mini-redis's server around the sans-IO core.
//!
//! Threads and tasks, and what bounds each:
//!
//! - the *host thread* (one std thread): the only code that touches the
//!   [`Host`]; see [`crate::driver`];
//! - the *accept loop*: one task; handshakes beyond
//!   [`NodeOptions::max_handshakes`] are refused before they start, clients
//!   beyond [`NodeOptions::max_clients`] (or
//!   [`NodeOptions::max_clients_per_address`] from one address) once their
//!   handshake has said they are clients — peers always keep their links
//!   (see [`crate::admission`]);
//! - one *link task* per peer ([`crate::mesh`]) and, per connection, reader
//!   tasks per stream and writer tasks per send queue;
//! - one *client task* per client connection ([`crate::clients`]);
//! - the *metrics endpoint* task.
//!
//! Memory is bounded by: the input channels (frames) and their byte
//! budgets ([`NodeOptions::peer_input_bytes`],
//! [`NodeOptions::client_input_bytes`]); each peer's send queue
//! ([`NodeOptions::peer_queue_bytes`]); each client's two send queues
//! ([`NodeOptions::client_queue_bytes`]) times the connection limit; one
//! frame being read per stream (≤ `max_frame`, allocated as it arrives); and
//! QUIC's flow-control windows ([`TransportLimits`]).

use crate::config::NodeConfig;
use crate::driver::{self};
use crate::metrics::Metrics;
use crate::shutdown::{Coordinator, Trigger};
use crate::tls;
use belfry_replica::coin::ReplicaId;
use belfry_replica::host::HostConfig;
use belfry_wire::close;
use quinn::{Endpoint, TransportConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Client connections served at once, by default (beyond: refused).
pub const MAX_CLIENTS: usize = 256;
/// Client connections from one IP address, and handshakes in progress from
/// one IP address, by default (beyond: refused).
pub const MAX_CLIENTS_PER_ADDRESS: usize = 16;
/// Handshakes in progress at once, by default (beyond: refused before they
/// start; each peer has one more of its own).
pub const MAX_HANDSHAKES: usize = 64;
/// Bytes queued for one peer, by default (beyond: its frames are dropped).
pub const PEER_QUEUE_BYTES: usize = 32 * 1024 * 1024;
/// Frames queued for one peer, by default.
pub const PEER_QUEUE_FRAMES: usize = 65_536;
/// Bytes queued for one client's answers, and as much for its pushes, by
/// default (beyond: the client is disconnected).
pub const CLIENT_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Frames queued for one client, each way, by default.
pub const CLIENT_QUEUE_FRAMES: usize = 4_096;
/// Bytes of peer frames waiting for the host, by default.
pub const PEER_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of client frames waiting for the host, by default.
pub const CLIENT_INPUT_BYTES: usize = 32 * 1024 * 1024;
/// Input frames waiting for the host, per channel.
pub const INPUT_FRAMES: usize = 16_384;
/// A connection's handshake gets this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for connections to close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// QUIC limits of every connection.
#[derive(Clone, Copy, Debug)]
pub struct TransportLimits {
    /// Unread bytes buffered per stream.
    pub stream_receive_window: u32,
    /// Unread bytes buffered per connection.
    pub receive_window: u32,
    /// Unacknowledged bytes buffered per connection for sending.
    pub send_window: u64,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// A connection silent this long is dead.
    pub idle_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            stream_receive_window: 1024 * 1024,
            receive_window: 4 * 1024 * 1024,
            send_window: 4 * 1024 * 1024,
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

impl TransportLimits {
    /// The quinn transport configuration.
    pub fn transport(&self) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        // Clients: one call stream at a time. Peers: one frame stream each
        // way, and one more when a stopped stream is replaced.
        t.max_concurrent_bidi_streams(1u32.into())
            .max_concurrent_uni_streams(2u32.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.receive_window.into())
            .send_window(self.send_window)
            .keep_alive_interval(Some(self.keep_alive));
        if let Ok(idle) = self.idle_timeout.try_into() {
            t.max_idle_timeout(Some(idle));
        }
        Arc::new(t)
    }
}

/// The node's limits and settings (defaults: the named constants).
#[derive(Debug)]
pub struct NodeOptions {
    /// Client connections at once.
    pub max_clients: usize,
    /// See [`MAX_CLIENTS_PER_ADDRESS`].
    pub max_clients_per_address: usize,
    /// See [`MAX_HANDSHAKES`].
    pub max_handshakes: usize,
    /// See [`PEER_QUEUE_BYTES`].
    pub peer_queue_bytes: usize,
    /// See [`CLIENT_QUEUE_BYTES`].
    pub client_queue_bytes: usize,
    /// See [`PEER_INPUT_BYTES`].
    pub peer_input_bytes: usize,
    /// See [`CLIENT_INPUT_BYTES`].
    pub client_input_bytes: usize,
    /// QUIC limits.
    pub transport: TransportLimits,
    /// The host's storage settings.
    pub host: HostConfig,
    /// Adjusts the replica's configuration (tests: limits); only with the
    /// `test-hooks` feature, which the `belfry` binary never enables.
    #[cfg(feature = "test-hooks")]
    pub tune: Option<fn(&mut belfry_replica::ReplicaConfig)>,
    /// A socket to serve on instead of binding the configured address
    /// (tests bind first, then write the cluster file).
    pub socket: Option<std::net::UdpSocket>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            max_clients: MAX_CLIENTS,
            max_clients_per_address: MAX_CLIENTS_PER_ADDRESS,
            max_handshakes: MAX_HANDSHAKES,
            peer_queue_bytes: PEER_QUEUE_BYTES,
            client_queue_bytes: CLIENT_QUEUE_BYTES,
            peer_input_bytes: PEER_INPUT_BYTES,
            client_input_bytes: CLIENT_INPUT_BYTES,
            transport: TransportLimits::default(),
            host: HostConfig::default(),
            #[cfg(feature = "test-hooks")]
            tune: None,
            socket: None,
        }
    }
}

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Another process (a replica already running) holds the data
    /// directory's lock.
    #[error(
        "data directory {dir} is in use: another process holds its lock ({lock}); \
         stop that replica first, or give this one another data_dir"
    )]
    Locked {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The lock file.
        lock: std::path::PathBuf,
    },
    /// The log store (`log/log.redb`) cannot be opened: it is damaged.
    #[error(
        "{path} is damaged ({error}). It holds data derived from the journal and the peers, \
         but once the journal has been compacted the journal alone cannot rebuild it: \
         move the whole data directory {dir} aside (keep it for inspection) and restart; \
         the replica rejoins as an observer and catches its log up from its peers \
         (docs/storage.md, \"Rejoining after data loss\")"
    )]
    LogDamaged {
        /// The data directory.
        dir: std::path::PathBuf,
        /// The database file.
        path: std::path::PathBuf,
        /// What the database said.
        error: String,
    },
    /// Storage could not be opened or failed (names the file).
    #[error("storage in {dir}: {error}")]
    Storage {
        /// The data directory.
        dir: std::path::PathBuf,
        /// What failed.
        error: String,
    },
    /// The replica stopped on a storage failure.
    #[error(transparent)]
    Driver(#[from] driver::DriverError),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// The host thread could not be started or panicked.
    #[error("host thread: {0}")]
    Thread(String),
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    pub(crate) coordinator: Coordinator,
    pub(crate) trigger: Trigger,
    pub(crate) host: std::thread::JoinHandle<Result<(), driver::DriverError>>,
    pub(crate) endpoint: Endpoint,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) tsa_addr: Option<SocketAddr>,
    pub(crate) me: ReplicaId,
}

impl RunningNode {
    /// The address the RFC 3161 endpoint serves on, if any.
    pub fn tsa_addr(&self) -> Option<SocketAddr> {
        self.tsa_addr
    }

    /// The address the metrics endpoint serves on, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The address the QUIC endpoint serves on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Starts a graceful shutdown from elsewhere (a signal handler).
    pub fn trigger(&self) -> Trigger {
        self.trigger.clone()
    }

    /// Runs until SIGINT or SIGTERM (or a storage failure), then shuts down
    /// gracefully.
    pub async fn run_until_signal(self) -> Result<(), NodeError> {
        wait_for_signal(&self).await;
        self.shutdown().await
    }

    /// Whether the host thread has stopped (on its own: a storage failure).
    pub fn host_stopped(&self) -> bool {
        self.host.is_finished()
    }

    /// Shuts down gracefully: the host finishes its turn (synced) and
    /// stops; every connection is closed with
    /// [`belfry_wire::close::SHUTTING_DOWN`] and the reason "shutting
    /// down". Returns the host's error if it had stopped on one.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.coordinator.shutdown().await;
        self.endpoint
            .close(close::SHUTTING_DOWN.into(), b"shutting down");
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.endpoint.wait_idle()).await;
        let host = self.host;
        let joined = tokio::task::spawn_blocking(move || host.join())
            .await
            .map_err(|e| NodeError::Thread(e.to_string()))?;
        tracing::info!(replica = %self.me, "node stopped");
        match joined {
            Ok(result) => Ok(result?),
            Err(_) => Err(NodeError::Thread("the host thread panicked".to_string())),
        }
    }
}

/// The data directory's lock file.
pub const LOCK_FILE: &str = "LOCK";

pub use crate::start::start;

/// Runs a node until SIGINT or SIGTERM (or a storage failure), then shuts
/// it down gracefully.
pub async fn run(config: NodeConfig, options: NodeOptions) -> Result<(), NodeError> {
    start(config, options).await?.run_until_signal().await
}

async fn wait_for_signal(node: &RunningNode) {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let stopped = async {
        while !node.host_stopped() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = stopped => tracing::error!("the replica stopped on its own"),
    }
}
