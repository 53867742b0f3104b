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

use crate::admission::{Admission, AdmissionLimits, BeforeHandshake};
use crate::clients::{ClientLimits, ClientShared};
use crate::config::NodeConfig;
use crate::driver::{self, ClientRegistry, Inputs, Router};
use crate::mesh::{Link, LinkShared};
use crate::metrics::Metrics;
use crate::queue::queue;
use crate::shutdown::{Coordinator, Source, Trigger};
use crate::tls;
use belfry_replica::coin::ReplicaId;
use belfry_replica::filelog::{FileLog, FileLogError};
use belfry_replica::host::HostConfig;
use belfry_replica::journal::FileJournal;
use belfry_replica::{CheckpointConfig, Host, ReplicaConfig};
use belfry_wire::close;
use quinn::{Connection, Endpoint, TransportConfig, VarInt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

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
    pub tune: Option<fn(&mut ReplicaConfig)>,
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
    coordinator: Coordinator,
    trigger: Trigger,
    host: std::thread::JoinHandle<Result<(), driver::DriverError>>,
    endpoint: Endpoint,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    tsa_addr: Option<SocketAddr>,
    me: ReplicaId,
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

/// Takes the data directory's exclusive lock (an advisory `flock` on
/// `DIR/LOCK`, released when the file is closed, so also when the process
/// dies): two replicas must never write one journal.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, NodeError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| storage(dir, format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(storage(
            dir,
            format!("{}: cannot lock: {e}", path.display()),
        )),
    }
}

fn storage(dir: &std::path::Path, error: impl ToString) -> NodeError {
    NodeError::Storage {
        dir: dir.to_path_buf(),
        error: error.to_string(),
    }
}

/// Starts a node (within a tokio runtime).
pub async fn start(config: NodeConfig, mut options: NodeOptions) -> Result<RunningNode, NodeError> {
    let me = config.id;
    let n = config.cluster.replicas.len();
    let metrics = Arc::new(Metrics::new());
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    // Before anything in the directory is read or cut: the journal's open
    // may truncate a torn tail, which must never race a running replica.
    let lock = lock_data_dir(dir)?;
    let (journal, recovered) = FileJournal::open(dir).map_err(|e| storage(dir, e))?;
    let log = FileLog::open(&dir.join("log")).map_err(|e| match e {
        // redb says "DB corrupted: …" of a damaged file, "Not a redb
        // database" of one whose header is gone.
        FileLogError::Db { path, why }
            if why.contains("corrupted") || why.contains("Not a redb database") =>
        {
            NodeError::LogDamaged {
                dir: dir.clone(),
                path,
                error: why,
            }
        }
        FileLogError::Corrupt { path, index } => NodeError::LogDamaged {
            dir: dir.clone(),
            path,
            error: format!("entry {index} is missing or corrupt"),
        },
        other => storage(dir, other),
    })?;
    let mut replica = ReplicaConfig::new(me, config.cluster.params);
    // Receipts wait for room rather than overflow a client's push queue
    // (half of it: the other half takes positions, heads and the stream).
    replica.client_push_window = Some((options.client_queue_bytes / 2).max(1) as u64);
    replica.checkpoints = CheckpointConfig {
        origin: config.cluster.notes.origin.clone(),
        signer: config.note_signer.clone(),
        witnesses: config.cluster.notes.witnesses.clone(),
    };
    #[cfg(feature = "test-hooks")]
    if let Some(tune) = options.tune {
        tune(&mut replica);
    }
    // Timers live in this process only: no timer of an earlier run can
    // fire, so one incarnation number serves every start.
    let host = Host::open(
        replica,
        config.crypto.clone(),
        journal,
        recovered,
        Box::new(log),
        options.host,
        1,
    )
    .map_err(|e| storage(dir, e))?;

    // By id; an absent replica has no certificate, so none it could
    // present is accepted as a peer's (crate::mesh).
    let certs: Vec<_> = config
        .cluster
        .replicas
        .iter()
        .map(|r| r.as_ref().map(|r| r.certificate.clone()))
        .collect();
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(
        &config.identity,
        certs.iter().flatten().cloned().collect(),
    )?));
    let transport = options.transport.transport();
    server.transport_config(transport.clone());
    let socket = match options.socket.take() {
        Some(s) => s,
        None => std::net::UdpSocket::bind(config.listen).map_err(|error| NodeError::Bind {
            addr: config.listen.to_string(),
            error,
        })?,
    };
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NodeError::Thread("no async runtime for QUIC".to_string()))?;
    let endpoint = Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(|error| NodeError::Bind {
        addr: config.listen.to_string(),
        error,
    })?;

    let coordinator = Coordinator::new();
    let source = coordinator.source();
    let (peer_tx, peer_rx) = mpsc::channel(INPUT_FRAMES);
    let (client_tx, client_rx) = mpsc::channel(INPUT_FRAMES);
    let peer_budget = Arc::new(Semaphore::new(options.peer_input_bytes));
    let client_budget = Arc::new(Semaphore::new(options.client_input_bytes));
    let registry: ClientRegistry = Arc::default();

    // Peer links.
    let shared = LinkShared {
        me,
        endpoint: endpoint.clone(),
        inputs: peer_tx,
        budget: peer_budget.clone(),
        metrics: metrics.clone(),
    };
    let mut peer_queues = vec![None; n];
    let mut handoff = vec![None; n];
    for (p, entry) in crate::mesh::peers(&config.cluster.replicas, me) {
        let (tx, rx) = queue(PEER_QUEUE_FRAMES, options.peer_queue_bytes);
        peer_queues[p] = Some(tx);
        let peer = ReplicaId(p as u16);
        let (dial, accepted) = if me.index() < p {
            let crypto = tls::client_config(
                entry.certificate.clone(),
                Some(config.identity.pair()),
                belfry_wire::PEER_ALPN,
            )?;
            let mut c = quinn::ClientConfig::new(Arc::new(crypto));
            c.transport_config(transport.clone());
            (Some(c), None)
        } else {
            let (htx, hrx) = mpsc::channel(1);
            handoff[p] = Some(htx);
            (None, Some(hrx))
        };
        let link = Link {
            peer,
            address: entry.address,
            dial,
            queue: rx,
            accepted,
            next: None,
        };
        tokio::spawn(crate::mesh::run_link(
            shared.clone(),
            link,
            source.subscribe(),
        ));
    }

    // The host thread.
    let router = Router {
        me,
        peers: peer_queues,
        clients: registry.clone(),
        metrics: metrics.clone(),
        budgets: vec![
            (
                "peer-input".to_string(),
                peer_budget,
                options.peer_input_bytes,
            ),
            (
                "client-input".to_string(),
                client_budget.clone(),
                options.client_input_bytes,
            ),
        ],
    };
    let inputs = Inputs {
        peers: peer_rx,
        clients: client_rx,
    };
    let host_shutdown = source.subscribe();
    let host = std::thread::Builder::new()
        .name(format!("belfry-host-{}", me.0))
        .spawn(move || {
            // The lock is held as long as the host uses the storage.
            let _lock = lock;
            driver::run(host, inputs, router, host_shutdown)
        })
        .map_err(|e| NodeError::Thread(e.to_string()))?;

    // Clients and the accept loop.
    let clients = ClientShared {
        inputs: client_tx,
        budget: client_budget,
        registry,
        limits: ClientLimits {
            queue_bytes: options.client_queue_bytes,
            queue_frames: CLIENT_QUEUE_FRAMES,
        },
        metrics: metrics.clone(),
    };
    let peer_addresses = config
        .cluster
        .replicas
        .iter()
        .enumerate()
        .map(|(p, r)| r.as_ref().filter(|_| p != me.index()).map(|r| r.address))
        .collect();
    let admission = Admission::new(
        AdmissionLimits {
            max_handshakes: options.max_handshakes,
            max_clients: options.max_clients,
            max_clients_per_address: options.max_clients_per_address,
        },
        peer_addresses,
    );
    let accept = Accept {
        me,
        certs,
        handoff,
        clients,
        admission,
        next_client: Arc::new(AtomicU64::new(1)),
        metrics: metrics.clone(),
        source: source.clone(),
    };
    tokio::spawn(accept_loop(endpoint.clone(), accept, source.subscribe()));

    let mut metrics_addr = None;
    if let Some(addr) = config.metrics {
        let listener = crate::metrics::bind(addr)
            .await
            .map_err(|error| NodeError::Bind {
                addr: addr.to_string(),
                error,
            })?;
        metrics_addr = listener.local_addr().ok();
        tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            source.subscribe(),
        ));
    }
    let mut tsa_addr = None;
    if let (Some(node_tsa), Some(_)) = (&config.tsa, &config.cluster.tsa) {
        let addr = node_tsa.listen;
        let listener = crate::tsa::bind(addr)
            .await
            .map_err(|error| NodeError::Bind {
                addr: addr.to_string(),
                error,
            })?;
        tsa_addr = listener.local_addr().ok();
        crate::tsa::spawn(listener, &config, metrics.clone(), source.subscribe()).map_err(
            |error| NodeError::Bind {
                addr: addr.to_string(),
                error: std::io::Error::other(error),
            },
        )?;
        tracing::info!(replica = %me, addr = ?tsa_addr, "RFC 3161 endpoint started");
    }
    drop(source);
    tracing::info!(replica = %me, addr = ?endpoint.local_addr().ok(), "node started");
    Ok(RunningNode {
        trigger: coordinator.trigger(),
        coordinator,
        host,
        endpoint,
        metrics,
        metrics_addr,
        tsa_addr,
        me,
    })
}

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

struct Accept {
    me: ReplicaId,
    /// Each replica's certificate by id; none for an absent one.
    certs: Vec<Option<rustls::pki_types::CertificateDer<'static>>>,
    handoff: Vec<Option<mpsc::Sender<Connection>>>,
    clients: ClientShared,
    admission: Admission,
    next_client: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    source: Source,
}

async fn accept_loop(endpoint: Endpoint, accept: Accept, mut shutdown: crate::shutdown::Shutdown) {
    let accept = Arc::new(accept);
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.recv() => return,
        };
        let Some(incoming) = incoming else { return };
        let slot = match accept.admission.before_handshake(
            incoming.remote_address(),
            incoming.remote_address_validated(),
            incoming.may_retry(),
        ) {
            BeforeHandshake::Admit(slot) => slot,
            BeforeHandshake::Retry => {
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            BeforeHandshake::Refuse(reason) => {
                accept.metrics.refuse(reason);
                incoming.refuse();
                continue;
            }
        };
        let accept = accept.clone();
        let task_shutdown = accept.source.subscribe();
        tokio::spawn(async move {
            let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "handshake failed");
                    accept.metrics.refuse("handshake");
                    return;
                }
                Err(_) => {
                    accept.metrics.refuse("handshake_timeout");
                    return;
                }
            };
            // The handshake is over: peers need no slot of their own (the
            // mesh keeps at most two connections per peer), clients take one.
            drop(slot);
            classify(&accept, conn, task_shutdown).await;
        });
    }
}

async fn classify(accept: &Accept, conn: Connection, shutdown: crate::shutdown::Shutdown) {
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        Some(a) if a == belfry_wire::PEER_ALPN => {
            let presented = conn
                .peer_identity()
                .and_then(|i| {
                    i.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                        .ok()
                })
                .and_then(|certs| certs.first().cloned());
            let peer = presented.and_then(|c| crate::mesh::peer_of(&accept.certs, &c));
            match peer {
                Some(p) if p < accept.me.index() => {
                    conn.set_max_concurrent_bi_streams(VarInt::from_u32(0));
                    let sent = accept.handoff[p].as_ref().map(|h| h.try_send(conn.clone()));
                    if !matches!(sent, Some(Ok(()))) {
                        accept.metrics.refuse("peer_busy");
                        conn.close(close::BUSY.into(), b"a connection is being set up");
                    }
                }
                Some(_) => {
                    accept.metrics.refuse("peer_wrong_direction");
                    conn.close(
                        close::REFUSED.into(),
                        b"the lower replica id dials the higher",
                    );
                }
                None => {
                    accept.metrics.refuse("peer_unknown_certificate");
                    conn.close(close::REFUSED.into(), b"not a replica of this cluster");
                }
            }
        }
        Some(a) if a == belfry_wire::CLIENT_ALPN => {
            let slot = match accept.admission.client(conn.remote_address()) {
                Ok(slot) => slot,
                Err(reason) => {
                    accept.metrics.refuse(reason);
                    let limits = accept.admission.limits();
                    let why = if reason == "per_address" {
                        format!(
                            "too many connections from this address (at most {}): close one first",
                            limits.max_clients_per_address
                        )
                    } else {
                        format!(
                            "the replica serves its limit of {} clients: retry later or ask another replica",
                            limits.max_clients
                        )
                    };
                    conn.close(close::BUSY.into(), why.as_bytes());
                    return;
                }
            };
            let id = accept.next_client.fetch_add(1, Ordering::Relaxed);
            crate::clients::serve(accept.clients.clone(), id, conn, shutdown).await;
            drop(slot);
        }
        _ => {
            accept.metrics.refuse("alpn");
            conn.close(close::REFUSED.into(), b"unknown protocol");
        }
    }
}
