//! Starting a node, step by step: lock and open the data directory into a
//! [`Host`], bind the QUIC endpoint, start a link task per peer, the host
//! thread, the accept loop, and the metrics and RFC 3161 endpoints.

use crate::accept::{accept_loop, Accept};
use crate::admission::{Admission, AdmissionLimits};
use crate::clients::{ClientLimits, ClientShared};
use crate::config::NodeConfig;
use crate::driver::{self, ClientRegistry, Inputs, Router};
use crate::mesh::{Link, LinkShared};
use crate::metrics::Metrics;
use crate::node::{
    NodeError, NodeOptions, RunningNode, CLIENT_QUEUE_FRAMES, INPUT_FRAMES, LOCK_FILE,
    PEER_QUEUE_FRAMES,
};
use crate::queue::{queue, QueueTx};
use crate::shutdown::{Coordinator, Source};
use crate::tls;
use belfry_replica::coin::ReplicaId;
use belfry_replica::filelog::{FileLog, FileLogError};
use belfry_replica::journal::FileJournal;
use belfry_replica::{CheckpointConfig, Host, ReplicaConfig};
use quinn::{Connection, Endpoint, TransportConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// Each replica's certificate by id; none for an absent one (so none it
/// could present is accepted as a peer's, see [`crate::mesh`]).
type Certs = Vec<Option<rustls::pki_types::CertificateDer<'static>>>;

/// Starts a node (within a tokio runtime).
pub async fn start(config: NodeConfig, mut options: NodeOptions) -> Result<RunningNode, NodeError> {
    let me = config.id;
    let metrics = Arc::new(Metrics::new());
    let (host, lock) = open_host(&config, &options)?;
    let certs: Certs = config
        .cluster
        .replicas
        .iter()
        .map(|r| r.as_ref().map(|r| r.certificate.clone()))
        .collect();
    let (endpoint, transport) = bind(&config, &mut options, &certs)?;

    let coordinator = Coordinator::new();
    let source = coordinator.source();
    let (peer_tx, peer_rx) = mpsc::channel(INPUT_FRAMES);
    let (client_tx, client_rx) = mpsc::channel(INPUT_FRAMES);
    let peer_budget = Arc::new(Semaphore::new(options.peer_input_bytes));
    let client_budget = Arc::new(Semaphore::new(options.client_input_bytes));
    let registry: ClientRegistry = Arc::default();

    let shared = LinkShared {
        me,
        endpoint: endpoint.clone(),
        inputs: peer_tx,
        budget: peer_budget.clone(),
        metrics: metrics.clone(),
    };
    let (peer_queues, handoff) = spawn_links(&config, &options, &transport, shared, &source)?;

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

    let (metrics_addr, tsa_addr) = serve_beside(&config, &metrics, &source).await?;
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

/// Locks the data directory and opens the journal and the log into a
/// host for this replica; the lock file is returned to be held as long as
/// the host runs.
fn open_host(
    config: &NodeConfig,
    options: &NodeOptions,
) -> Result<(Host<FileJournal>, std::fs::File), NodeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    // Before anything in the directory is read or cut: the journal's open
    // may truncate a torn tail, which must never race a running replica.
    let lock = lock_data_dir(dir)?;
    let (journal, recovered) = FileJournal::open(dir).map_err(|e| storage(dir, e))?;
    let log =
        FileLog::open_with(&dir.join("log"), config.check_log_on_start).map_err(|e| match e {
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
            FileLogError::Damaged { path, why } => NodeError::LogDamaged {
                dir: dir.clone(),
                path,
                error: why,
            },
            FileLogError::Corrupt { path, index } => NodeError::LogDamaged {
                dir: dir.clone(),
                path,
                error: format!("entry {index} is missing or corrupt"),
            },
            other => storage(dir, other),
        })?;
    if log.repaired() {
        tracing::warn!(
            path = %dir.join("log").join("log.redb").display(),
            "the log database was damaged and redb repaired it to its last commit whose pages \
             all check; what that lost is topped up from the journal (or the start is refused)"
        );
    }
    #[cfg_attr(not(feature = "test-hooks"), allow(unused_mut))]
    let mut replica = replica_config(config, options);
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
    Ok((host, lock))
}

/// The replica's configuration from the node's.
fn replica_config(config: &NodeConfig, options: &NodeOptions) -> ReplicaConfig {
    let mut replica = ReplicaConfig::new(config.id, config.cluster.params);
    // Receipts wait for room rather than overflow a client's push queue
    // (half of it: the other half takes positions, heads and the stream).
    replica.client_push_window = Some((options.client_queue_bytes / 2).max(1) as u64);
    replica.checkpoints = CheckpointConfig {
        origin: config.cluster.notes.origin.clone(),
        signer: config.note_signer.clone(),
        witnesses: config.cluster.notes.witnesses.clone(),
    };
    replica
}

/// Binds the QUIC endpoint (on the socket the options carry, if any),
/// serving the cluster's certificates; returns it with the transport
/// settings links dial with.
fn bind(
    config: &NodeConfig,
    options: &mut NodeOptions,
    certs: &Certs,
) -> Result<(Endpoint, Arc<TransportConfig>), NodeError> {
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(tls::server_config(
        &config.identity,
        certs.iter().flatten().cloned().collect(),
    )?));
    let transport = options.transport.transport();
    server.transport_config(transport.clone());
    let bind_error = |error| NodeError::Bind {
        addr: config.listen.to_string(),
        error,
    };
    let socket = match options.socket.take() {
        Some(s) => s,
        None => std::net::UdpSocket::bind(config.listen).map_err(bind_error)?,
    };
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NodeError::Thread("no async runtime for QUIC".to_string()))?;
    let endpoint = Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(bind_error)?;
    Ok((endpoint, transport))
}

/// Each peer's send queue (by id) and, for the peers that dial us, the
/// channel the accept loop hands their connections to.
type Links = (Vec<Option<QueueTx>>, Vec<Option<mpsc::Sender<Connection>>>);

/// Starts one link task per peer: this replica dials the peers of higher
/// id and is dialled by the others (their connections come through the
/// accept loop).
fn spawn_links(
    config: &NodeConfig,
    options: &NodeOptions,
    transport: &Arc<TransportConfig>,
    shared: LinkShared,
    source: &Source,
) -> Result<Links, NodeError> {
    let me = config.id;
    let n = config.cluster.replicas.len();
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
            address: config
                .peer_addresses
                .get(&peer)
                .copied()
                .unwrap_or(entry.address),
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
    Ok((peer_queues, handoff))
}

/// Starts the endpoints beside the replica: metrics, and the RFC 3161
/// authority where the cluster has one; returns their bound addresses.
async fn serve_beside(
    config: &NodeConfig,
    metrics: &Arc<Metrics>,
    source: &Source,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>), NodeError> {
    let bind_error = |addr: SocketAddr| {
        move |error| NodeError::Bind {
            addr: addr.to_string(),
            error,
        }
    };
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics {
        let listener = crate::metrics::bind(addr).await.map_err(bind_error(addr))?;
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
        let listener = crate::tsa::bind(addr).await.map_err(bind_error(addr))?;
        tsa_addr = listener.local_addr().ok();
        crate::tsa::spawn(listener, config, metrics.clone(), source.subscribe())
            .map_err(|error| bind_error(addr)(std::io::Error::other(error)))?;
        tracing::info!(replica = %config.id, addr = ?tsa_addr, "RFC 3161 endpoint started");
    }
    Ok((metrics_addr, tsa_addr))
}

/// Takes the data directory's exclusive lock (an advisory `flock` on
/// `DIR/LOCK`, released when the file is closed, so also when the process
/// dies): two replicas must never write one journal.
fn lock_data_dir(dir: &Path) -> Result<std::fs::File, NodeError> {
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

fn storage(dir: &Path, error: impl ToString) -> NodeError {
    NodeError::Storage {
        dir: dir.to_path_buf(),
        error: error.to_string(),
    }
}
