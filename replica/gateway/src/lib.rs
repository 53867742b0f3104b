//! belfry-gateway: an aggregation gateway (docs/gateway.md).
//!
//! Clients speak to it the client protocol they speak to a replica
//! (`Submit`, `Receipts`, over QUIC with the client ALPN). It collects the
//! digests of one round ([`round`]), builds an RFC 9162 tree over them, has
//! the cluster log only the tree's root — through the client library with
//! its fan-out and retries, or through another gateway (stacking) — and when
//! the root's receipt comes back pushes every request its digests' range
//! proof and that receipt (`ClientPush::Aggregated`), from which the client
//! derives one aggregated receipt per digest and verifies it against the
//! trust anchor.
//!
//! A gateway holds nothing durable a client needs: a client whose gateway
//! dies submits again (here or elsewhere). It cannot forge or backdate a
//! receipt (the root is in the cluster's signed log); it can delay or drop
//! a request and it orders the digests within a round.

#![forbid(unsafe_code)]
// A driver, not protocol code (docs/design.md section 2): it reads the
// clock for its rounds and looks digests up in hash maps whose order never
// reaches an output.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod conn;
pub mod metrics;
pub mod round;

use belfry_client::{Client, GatewayClient};
use belfry_node::queue::QueueTx;
use belfry_node::shutdown::{Coordinator, Shutdown};
use belfry_node::tls::Identity;
use belfry_wire::{close, AggregatedBundle, ClientMessage, ClientPush, RequestId};
use bytes::Bytes;
pub use metrics::Metrics;
use quinn::Connection;
use round::{ClosedRound, ConnId, RoundLimits, Rounds};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Digests in one `Submit`, at most (as a replica's).
pub const MAX_DIGESTS_PER_SUBMIT: usize = belfry_client::MAX_DIGESTS_PER_SUBMIT;
/// How long the gateway waits before asking upstream again for a root whose
/// stamp failed.
pub const UPSTREAM_RETRY: Duration = Duration::from_millis(500);

/// Settings of a gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// Where to listen (QUIC).
    pub listen: SocketAddr,
    /// A round's length: a round with digests closes this long after it
    /// opened.
    pub round: Duration,
    /// Round limits (size, rounds in flight, cache).
    pub limits: RoundLimits,
    /// Digests one connection may have waiting for receipts.
    pub max_outstanding_per_client: u64,
    /// Bytes of `Receipts` answers per client per second (a budget as a
    /// replica's; beyond it `RateLimited`).
    pub read_bytes_per_s: u64,
    /// Connections at once.
    pub max_clients: usize,
    /// Bytes of pushes queued for one client; a client that lets more pile
    /// up is disconnected (`TOO_SLOW`) and polls or submits again.
    pub client_queue_bytes: usize,
    /// The Prometheus endpoint, if any.
    pub metrics: Option<SocketAddr>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            listen: (std::net::Ipv4Addr::LOCALHOST, 0).into(),
            round: Duration::from_millis(20),
            limits: RoundLimits {
                max_round: 65_536,
                max_in_flight: 256,
                cache_digests: 1 << 20,
            },
            max_outstanding_per_client: 1 << 20,
            read_bytes_per_s: 8 << 20,
            max_clients: 4_096,
            client_queue_bytes: 64 << 20,
            metrics: None,
        }
    }
}

/// Where roots go.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// The cluster, through the client library.
    Cluster(Client),
    /// Another gateway.
    Gateway(GatewayClient),
}

impl Upstream {
    /// The binary receipt of `root` (version 1 from the cluster, 2 from a
    /// gateway), verified by the client library.
    async fn stamp(&self, root: [u8; 32]) -> Result<Vec<u8>, belfry_client::Error> {
        let missing = || belfry_client::Error::Protocol("no receipt for the root".to_string());
        match self {
            Upstream::Cluster(c) => c
                .stamp(&[root])
                .await?
                .first()
                .map(|r| r.to_binary())
                .ok_or_else(missing),
            Upstream::Gateway(g) => g
                .stamp(&[root])
                .await?
                .first()
                .map(|r| r.to_binary())
                .ok_or_else(missing),
        }
    }
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listening socket.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// TLS setup.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A done round and ranges `(first leaf, count)` of it.
pub(crate) type RoundRanges = (Arc<round::DoneRound>, Vec<(u64, u32)>);

pub(crate) struct ConnHandle {
    pushes: QueueTx,
    conn: Connection,
    outstanding: Arc<AtomicU64>,
}

pub(crate) struct Shared {
    options: GatewayOptions,
    upstream: Upstream,
    rounds: Mutex<Rounds>,
    opened_at: Mutex<Option<Instant>>,
    conns: Mutex<HashMap<ConnId, ConnHandle>>,
    metrics: Metrics,
}

/// A running gateway.
pub struct RunningGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    coordinator: Coordinator,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningGateway {
    /// Its metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops: connections are closed with `SHUTTING_DOWN` (clients submit
    /// elsewhere or again), then every task ends.
    pub async fn shutdown(self) {
        self.endpoint
            .close(close::SHUTTING_DOWN.into(), b"gateway shutting down");
        self.coordinator.shutdown().await;
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        #[cfg(unix)]
        {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        self.shutdown().await;
    }
}

/// Starts a gateway (within a tokio runtime): its QUIC endpoint with
/// `identity` (a fresh self-signed one when `None`), its round clock and,
/// if asked, its metrics endpoint.
pub async fn start(
    options: GatewayOptions,
    upstream: Upstream,
    identity: Option<Identity>,
) -> Result<RunningGateway, GatewayError> {
    let identity = match identity {
        Some(i) => i,
        None => {
            let (cert, key) = belfry_node::tls::generate_identity(0)
                .map_err(|e| GatewayError::Tls(e.to_string()))?;
            let cert = belfry_node::tls::cert_from_pem("gateway certificate", &cert)
                .map_err(|e| GatewayError::Tls(e.to_string()))?;
            Identity::new(cert, &key).map_err(|e| GatewayError::Tls(e.to_string()))?
        }
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(belfry_node::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| GatewayError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert.clone()], identity.key.clone_key())
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![belfry_wire::CLIENT_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        Duration::from_secs(30)
            .try_into()
            .map_err(|_| GatewayError::Tls("idle timeout".into()))?,
    ));
    // Clients open call streams only; pushes flow on streams we open.
    transport.max_concurrent_uni_streams(0u32.into());
    server.transport_config(Arc::new(transport));
    let endpoint =
        quinn::Endpoint::server(server, options.listen).map_err(|error| GatewayError::Listen {
            addr: options.listen,
            error,
        })?;
    let addr = endpoint
        .local_addr()
        .map_err(|error| GatewayError::Listen {
            addr: options.listen,
            error,
        })?;
    let shared = Arc::new(Shared {
        rounds: Mutex::new(Rounds::new(options.limits)),
        opened_at: Mutex::new(None),
        conns: Mutex::new(HashMap::new()),
        metrics: Metrics::new(),
        options: options.clone(),
        upstream,
    });
    let coordinator = Coordinator::new();
    tokio::spawn(conn::accept(
        shared.clone(),
        endpoint.clone(),
        coordinator.source(),
    ));
    tokio::spawn(clock(shared.clone(), coordinator.subscribe()));
    if let Some(maddr) = options.metrics {
        let listener = belfry_node::metrics::bind(maddr)
            .await
            .map_err(|error| GatewayError::Listen { addr: maddr, error })?;
        let s = shared.clone();
        tokio::spawn(belfry_node::metrics::serve_with(
            listener,
            move || s.metrics.encode(),
            coordinator.subscribe(),
        ));
    }
    tracing::info!(%addr, round_ms = options.round.as_millis() as u64, "gateway listening");
    Ok(RunningGateway {
        addr,
        shared,
        endpoint,
        coordinator,
    })
}

/// Closes the open round every `round` after it opened.
async fn clock(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let tick = (shared.options.round / 4).max(Duration::from_millis(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.recv() => return,
        }
        let due = lock(&shared.opened_at).is_some_and(|t| t.elapsed() >= shared.options.round);
        if due {
            let closed = {
                let mut opened = lock(&shared.opened_at);
                *opened = None;
                lock(&shared.rounds).close()
            };
            if let Some(c) = closed {
                launch(&shared, c, false);
            }
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks is a bug in this crate; the
    // state stays usable (every update is one statement).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends a closed round's root upstream (again and again until it has a
/// receipt), then answers its waiters.
pub(crate) fn launch(shared: &Arc<Shared>, round: ClosedRound, full: bool) {
    let m = &shared.metrics;
    m.rounds.inc();
    if full {
        m.rounds_full.inc();
    }
    m.round_size.observe(round.digests.len() as f64);
    m.rounds_in_flight.inc();
    let shared = shared.clone();
    let opened = Instant::now();
    tokio::spawn(async move {
        let round = round.build();
        let upper = loop {
            let started = Instant::now();
            match shared.upstream.stamp(round.root).await {
                Ok(upper) => {
                    shared
                        .metrics
                        .upstream_latency
                        .observe(started.elapsed().as_secs_f64());
                    break upper;
                }
                Err(error) => {
                    shared.metrics.upstream_failures.inc();
                    tracing::warn!(round = round.no, %error, "upstream stamp of a round's root failed; retrying");
                    tokio::time::sleep(UPSTREAM_RETRY).await;
                }
            }
        };
        let (done, waiters) = lock(&shared.rounds).finish(round, upper);
        shared.metrics.rounds_in_flight.dec();
        let conns = lock(&shared.conns);
        for w in waiters {
            let Some(c) = conns.get(&w.conn) else {
                continue;
            };
            let bundle = done.bundle(&[(w.first, w.count)]);
            c.outstanding
                .fetch_sub(u64::from(w.count), Ordering::AcqRel);
            push(&shared.metrics, c, w.request, bundle);
        }
        drop(conns);
        shared
            .metrics
            .round_latency
            .observe(opened.elapsed().as_secs_f64());
    });
}

fn push(metrics: &Metrics, c: &ConnHandle, request: RequestId, bundle: AggregatedBundle) {
    let message = ClientMessage::Push {
        id: request,
        push: ClientPush::Aggregated(bundle),
    };
    let Ok(frame) = belfry_wire::encode_message(&message) else {
        // A bundle of one request is far below the frame limit; a failure
        // here is a bug, and the client polls.
        tracing::error!("an aggregated push does not encode");
        return;
    };
    if c.pushes.try_push(Bytes::from(frame)).is_err() {
        metrics.too_slow.inc();
        c.conn
            .close(close::TOO_SLOW.into(), b"pushes not read: too slow");
    }
}
