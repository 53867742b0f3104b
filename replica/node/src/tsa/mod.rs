//! The RFC 3161 endpoint every replica serves (docs/rfc3161.md): `POST` a
//! DER `TimeStampReq` (`application/timestamp-query`) and get a
//! `TimeStampResp` whose token no single replica could have signed.
//!
//! The replica that takes a request submits the request's log digest (its
//! SHA-256 imprint bound to its nonce, `belfry_tsa::token::log_digest`) to
//! the fair order through the client library, like any client, and waits for
//! the receipt; the token's serial number is the entry's log index and its
//! genTime the entry's witnessed time. It then asks every peer for a
//! signature share (`POST /belfry/tsa-share` with the request and the
//! receipt): a peer checks the receipt against the trust anchor alone,
//! rebuilds the same `TSTInfo`, and signs its share with a proof. The first
//! `f + 1` shares are combined and checked as any RSA verifier would
//! (`y^e = x`); only when that fails are the proofs checked, the faulty
//! replica named (log and `belfry_tsa_share_faults_total{peer}`) and its
//! share dropped. Nothing here is protocol state: it is a client of the
//! cluster, next to the node.

pub mod config;
pub mod http;
mod peers;
pub mod share;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use belfry_client::{Client, ClientOptions, Fanout};
use belfry_replica::coin::{ClusterParams, TrustAnchor};
use belfry_replica::timestamp::{Entry, Receipt};
use belfry_tsa::{Failure, Prepared, Rejection, SignatureShare};
use num_bigint::BigUint;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use self::config::{TsaCluster, TsaNode};
use crate::metrics::{Metrics, PeerLabel, ReasonLabel};
use crate::shutdown::Shutdown;

/// The path peers ask for shares on.
pub const SHARE_PATH: &str = "/belfry/tsa-share";
/// Longest share request: a 16 KiB request and a receipt (64 proof steps).
const MAX_SHARE_REQUEST: usize = 16 * 1024 + 4 * 1024;
/// Longest share answer: an 8192-bit share and response.
const MAX_SHARE_ANSWER: usize = 4 * 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Connections from one address at once.
const MAX_CONNECTIONS_PER_IP: usize = 32;
/// Share computations waiting or running at once; more get 503.
const MAX_SIGNING_QUEUE: usize = 64;
/// How long a client may take to send its request (20 KiB at most).
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the cluster may take to log and sign a request's imprint.
const STAMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to answer for a share.
const SHARE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the shares asked before asking one more peer.
const SHARE_HEDGE: Duration = Duration::from_millis(500);
/// The most a request may take, from read to answer.
const TOKEN_DEADLINE: Duration = Duration::from_secs(45);
/// What a client is told when the cluster could not issue its token (the
/// reason goes to this replica's log, not to whoever asked).
const NOT_NOW: &str = "the cluster could not issue the token now; try again";

/// Share computations running at once (each takes one core for ~15 ms at
/// 2048 bits): every core but one, which the node keeps.
fn signing_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

/// Everything the endpoint holds.
struct State {
    id: usize,
    cluster: TsaCluster,
    node: TsaNode,
    params: ClusterParams,
    anchor: TrustAnchor,
    client: Client,
    metrics: Arc<Metrics>,
    auth: peers::PeerAuth,
    shares: share::AnswerCache,
    connections: Arc<Semaphore>,
    per_ip: Mutex<BTreeMap<IpAddr, usize>>,
    signing_queue: Arc<Semaphore>,
    signing: Arc<Semaphore>,
}

/// One of an address's connections, given back on drop.
struct IpSlot<'a> {
    state: &'a State,
    ip: IpAddr,
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut per_ip = self.state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = per_ip.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl State {
    fn ip_slot(&self, ip: IpAddr) -> Option<IpSlot<'_>> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let c = per_ip.entry(ip).or_insert(0);
        if *c >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *c += 1;
        Some(IpSlot { state: self, ip })
    }
}

/// Binds the endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoint on `listener` until `shutdown` fires.
pub fn spawn(
    listener: TcpListener,
    config: &crate::config::NodeConfig,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) -> Result<(), String> {
    let (Some(node), Some(cluster)) = (config.tsa.clone(), config.cluster.tsa.clone()) else {
        return Err("no RFC 3161 authority configured".into());
    };
    let id = config.id.index();
    let anchor = config.cluster.anchor();
    let client_cluster = config.cluster.client_info();
    let options = ClientOptions {
        fanout: Fanout::FPlusOne,
        first_replica: Some(id),
        stamp_timeout: STAMP_TIMEOUT,
        ..ClientOptions::default()
    };
    let client = Client::new(client_cluster, options).map_err(|e| e.to_string())?;
    let auth = peers::PeerAuth::new(&config.identity, &config.cluster.replicas)?;
    let state = Arc::new(State {
        id,
        cluster,
        node,
        params: config.cluster.params,
        anchor,
        client,
        metrics,
        auth,
        shares: share::AnswerCache::default(),
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        per_ip: Mutex::new(BTreeMap::new()),
        signing_queue: Arc::new(Semaphore::new(MAX_SIGNING_QUEUE)),
        signing: Arc::new(Semaphore::new(signing_threads())),
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.recv() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "RFC 3161 endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = state.connections.clone().try_acquire_owned() else {
                continue; // dropped: closed at once
            };
            let state = state.clone();
            tokio::spawn(async move {
                if let Some(_slot) = state.ip_slot(peer.ip()) {
                    let _ = tokio::time::timeout(TOKEN_DEADLINE, serve_one(&state, stream)).await;
                }
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn serve_one(state: &State, mut stream: TcpStream) {
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        http::read_request(&mut stream, MAX_SHARE_REQUEST),
    )
    .await;
    let req = match read {
        Ok(Ok(req)) => req,
        Ok(Err(http::ReadError::TooLarge(_))) => {
            return http::respond(&mut stream, 413, "text/plain", b"request too large\n").await
        }
        Ok(Err(http::ReadError::NoLength)) => {
            return http::respond(&mut stream, 411, "text/plain", b"Content-Length required\n")
                .await
        }
        Ok(Err(e)) => {
            let text = format!("{e}\n");
            return http::respond(&mut stream, 400, "text/plain", text.as_bytes()).await;
        }
        Err(_) => return,
    };
    if req.method != "POST" {
        return http::respond(&mut stream, 405, "text/plain", b"POST a TimeStampReq\n").await;
    }
    if req.path == SHARE_PATH {
        return match share::answer(state, &req.body).await {
            Ok(body) => http::respond(&mut stream, 200, "application/octet-stream", &body).await,
            Err((status, text)) => {
                http::respond(
                    &mut stream,
                    status,
                    "text/plain",
                    format!("{text}\n").as_bytes(),
                )
                .await
            }
        };
    }
    if req.content_type != "application/timestamp-query" {
        return http::respond(
            &mut stream,
            415,
            "text/plain",
            b"send application/timestamp-query\n",
        )
        .await;
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the endpoint's own latency metric, outside the protocol"
    )]
    let started = std::time::Instant::now();
    let answer = match token(state, &req.body).await {
        Ok(resp) => {
            state.metrics.tsa_tokens.inc();
            state
                .metrics
                .tsa_token_seconds
                .observe(started.elapsed().as_secs_f64());
            resp
        }
        Err(rejection) => {
            state
                .metrics
                .tsa_rejections
                .get_or_create(&ReasonLabel {
                    reason: format!("{:?}", rejection.failure),
                })
                .inc();
            tracing::debug!(failure = ?rejection.failure, reason = %rejection.text, "RFC 3161 request rejected");
            rejection.response()
        }
    };
    http::respond(&mut stream, 200, "application/timestamp-reply", &answer).await
}

/// `systemFailure` for the client, with the reason in this replica's log.
fn not_now(reason: String) -> Rejection {
    tracing::warn!(%reason, "RFC 3161: no token");
    Rejection {
        failure: Failure::SystemFailure,
        text: NOT_NOW.into(),
    }
}

/// A request to a token: stamp the imprint, prepare, gather shares, combine.
async fn token(state: &State, request_der: &[u8]) -> Result<Vec<u8>, Rejection> {
    let authority = &state.cluster.authority;
    let request = authority.request(request_der)?;
    let receipts = state
        .client
        .stamp(&[request.log_digest()])
        .await
        .map_err(|e| not_now(format!("the cluster did not log the request: {e}")))?;
    let receipt = receipts
        .into_iter()
        .next()
        .ok_or_else(|| not_now("no receipt".into()))?;
    let Entry::Digest(entry) = receipt.entry else {
        return Err(not_now("the receipt is not of a digest entry".into()));
    };
    if entry.digest != request.log_digest() {
        return Err(not_now("the receipt is of another digest".into()));
    }
    let prepared = authority.prepare(&request, receipt.leaf_index, entry.witnessed_at.0)?;
    let y = gather(state, &prepared, request_der, &receipt).await?;
    authority.response(&prepared, &y, request.cert_req)
}

/// This replica's share and every peer's, until `f + 1` combine.
async fn gather(
    state: &State,
    prepared: &Prepared,
    request_der: &[u8],
    receipt: &Receipt,
) -> Result<BigUint, Rejection> {
    let public = state.cluster.authority.public().clone();
    let body =
        Arc::new(share::request_body(state, request_der, &receipt.to_binary()).map_err(not_now)?);
    let mut g = Gathering {
        state,
        body,
        tasks: tokio::task::JoinSet::new(),
        peers: peer_order(state, receipt.leaf_index),
        held: Vec::new(),
        proven: std::collections::BTreeSet::new(),
        failures: Vec::new(),
    };
    sign_own_share(state, prepared, &mut g.tasks);
    // Ask f peers first (with this replica's share, f + 1), starting at a
    // peer that moves with the serial number so the load spreads; one more
    // peer for each failure, bad share or hedge interval without enough.
    g.ask_more(public.threshold.saturating_sub(1));
    let k = public.threshold;
    loop {
        let joined = tokio::select! {
            joined = g.tasks.join_next() => match joined {
                Some(j) => j,
                None => {
                    // Everyone asked so far answered or failed: ask another.
                    if g.ask_more(1) {
                        continue;
                    }
                    break;
                }
            },
            _ = tokio::time::sleep(SHARE_HEDGE) => {
                g.ask_more(1);
                continue;
            }
        };
        g.take_answer(joined);
        if g.held.len() + g.tasks.len() < k {
            g.ask_more(1);
        }
        if g.held.len() < k {
            continue;
        }
        let refs: Vec<&SignatureShare> = g.held.iter().take(k).collect();
        if let Ok(Some(y)) = public.combine(&prepared.message, &refs) {
            g.tasks.abort_all();
            return Ok(y);
        }
        g.drop_bad_shares(&public, prepared).await?;
        g.ask_more(k.saturating_sub(g.held.len() + g.tasks.len()));
    }
    Err(not_now(format!(
        "{} valid signature shares of {k} needed ({})",
        g.held.len(),
        g.failures.join("; ")
    )))
}

/// The share computations and requests in flight: who answered, with what.
type ShareTasks = tokio::task::JoinSet<Result<(usize, SignatureShare), String>>;

/// Signs this replica's own share on the blocking pool, within the signing
/// limit.
fn sign_own_share(state: &State, prepared: &Prepared, tasks: &mut ShareTasks) {
    let share = state.node.share.clone();
    let message = prepared.message.clone();
    let signing = state.signing.clone();
    let id = state.id;
    tasks.spawn(async move {
        let _permit = signing.acquire_owned().await.map_err(|e| e.to_string())?;
        let signed =
            tokio::task::spawn_blocking(move || share.sign(&message, &mut rand::rngs::OsRng))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string());
        signed.map(|s| (id, s))
    });
    state.metrics.tsa_shares_signed.inc();
}

/// The peers to ask, in order: every other replica, starting at one that
/// moves with the serial number.
fn peer_order(state: &State, leaf_index: u64) -> std::vec::IntoIter<usize> {
    let n = state.cluster.addresses.len();
    let offset = (leaf_index % n as u64) as usize;
    (0..n)
        .map(|k| (state.id + 1 + offset + k) % n)
        .filter(|j| *j != state.id)
        .collect::<Vec<_>>()
        .into_iter()
}

/// One token's gathering of signature shares.
struct Gathering<'a> {
    /// The replica's state.
    state: &'a State,
    /// The share request every peer is sent.
    body: Arc<Vec<u8>>,
    /// The shares asked for and not yet answered.
    tasks: ShareTasks,
    /// The peers not yet asked, in order.
    peers: std::vec::IntoIter<usize>,
    /// Shares answered and not known to be bad.
    held: Vec<SignatureShare>,
    /// The replicas whose held share's proof was checked and holds.
    proven: std::collections::BTreeSet<usize>,
    /// Why shares were missing or bad, for the rejection.
    failures: Vec<String>,
}

impl Gathering<'_> {
    /// Asks up to `count` more peers for their shares; whether any was asked.
    fn ask_more(&mut self, count: usize) -> bool {
        let next: Vec<usize> = self.peers.by_ref().take(count).collect();
        for &j in &next {
            self.ask(j);
        }
        !next.is_empty()
    }

    /// Asks peer `j` for its share.
    fn ask(&mut self, j: usize) {
        let address = self.state.cluster.addresses[j].clone();
        let body = self.body.clone();
        self.tasks.spawn(async move {
            let addr = crate::address::resolve_address(&address)?;
            let (status, answer) = http::post(
                addr,
                SHARE_PATH,
                "application/octet-stream",
                &body,
                MAX_SHARE_ANSWER,
                SHARE_TIMEOUT,
            )
            .await?;
            if status != 200 {
                return Err(format!(
                    "replica {j}: HTTP {status}: {}",
                    String::from_utf8_lossy(&answer).trim()
                ));
            }
            share::decode(&answer)
                .map(|s| (j, s))
                .map_err(|e| format!("replica {j}: {e}"))
        });
    }

    /// Holds an answered share, or records why there is none.
    fn take_answer(
        &mut self,
        joined: Result<Result<(usize, SignatureShare), String>, tokio::task::JoinError>,
    ) {
        match joined {
            Ok(Ok((j, share))) if share.replica == j => self.held.push(share),
            Ok(Ok((j, share))) => {
                self.failures
                    .push(format!("replica {j} answered as replica {}", share.replica));
                self.state
                    .metrics
                    .tsa_share_faults
                    .get_or_create(&PeerLabel {
                        peer: j.to_string(),
                    })
                    .inc();
            }
            Ok(Err(e)) => self.failures.push(e),
            Err(e) => self.failures.push(e.to_string()),
        }
    }

    /// Some held share is wrong: checks the proofs of those not checked
    /// yet and drops (and counts) the bad ones.
    async fn drop_bad_shares(
        &mut self,
        public: &Arc<belfry_tsa::PublicKey>,
        prepared: &Prepared,
    ) -> Result<(), Rejection> {
        // The proofs say which (each share's once).
        let message = prepared.message.clone();
        let checked = public.clone();
        let (known, unproven): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|s| self.proven.contains(&s.replica));
        let _permit = self
            .state
            .signing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| not_now(e.to_string()))?;
        let (good, bad) = tokio::task::spawn_blocking(move || {
            unproven
                .into_iter()
                .partition::<Vec<_>, _>(|s| checked.verify_share(&message, s))
        })
        .await
        .map_err(|e| not_now(e.to_string()))?;
        self.proven.extend(good.iter().map(|s| s.replica));
        for s in bad {
            tracing::warn!(
                peer = s.replica,
                "RFC 3161: a signature share whose proof fails; dropped"
            );
            self.state
                .metrics
                .tsa_share_faults
                .get_or_create(&PeerLabel {
                    peer: s.replica.to_string(),
                })
                .inc();
            self.failures
                .push(format!("replica {}: invalid signature share", s.replica));
        }
        self.held = known.into_iter().chain(good).collect();
        Ok(())
    }
}
