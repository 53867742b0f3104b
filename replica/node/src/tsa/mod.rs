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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use belfry_client::{Client, ClientOptions, Fanout};
use belfry_replica::coin::TrustAnchor;
use belfry_replica::timestamp::{verify_receipt, Entry, Receipt};
use belfry_tsa::{Failure, Prepared, Rejection, SignatureShare};
use num_bigint::BigUint;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use self::config::{TsaCluster, TsaNode};
use crate::metrics::{Metrics, PeerLabel, ReasonLabel};
use crate::shutdown::Shutdown;

/// The path peers ask for shares on.
pub const SHARE_PATH: &str = "/belfry/tsa-share";
/// The magic of share requests and answers (ours; docs/rfc3161.md §5).
const SHARE_MAGIC: &[u8; 4] = b"BTS1";
/// Longest share request: a 16 KiB request and a receipt (64 proof steps).
const MAX_SHARE_REQUEST: usize = 16 * 1024 + 4 * 1024;
/// Longest share answer: an 8192-bit share and response.
const MAX_SHARE_ANSWER: usize = 4 * 1024;
/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// Share computations waiting or running at once; more get 503.
const MAX_SIGNING_QUEUE: usize = 64;
/// Share computations running at once (each takes one core for ~20 ms).
const SIGNING_THREADS: usize = 2;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cluster may take to log and sign a request's imprint.
const STAMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to answer for a share.
const SHARE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the shares asked before asking one more peer.
const SHARE_HEDGE: Duration = Duration::from_millis(500);

/// Everything the endpoint holds.
struct State {
    id: usize,
    cluster: TsaCluster,
    node: TsaNode,
    anchor: TrustAnchor,
    client: Client,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
    signing_queue: Arc<Semaphore>,
    signing: Arc<Semaphore>,
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
    let state = Arc::new(State {
        id,
        cluster,
        node,
        anchor,
        client,
        metrics,
        connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        signing_queue: Arc::new(Semaphore::new(MAX_SIGNING_QUEUE)),
        signing: Arc::new(Semaphore::new(SIGNING_THREADS)),
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.recv() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Ok(permit) = state.connections.clone().try_acquire_owned() else {
                continue; // dropped: closed at once
            };
            let state = state.clone();
            tokio::spawn(async move {
                serve_one(&state, stream).await;
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
        return match share(state, &req.body).await {
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
            tracing::info!(failure = ?rejection.failure, reason = %rejection.text, "RFC 3161 request rejected");
            rejection.response()
        }
    };
    http::respond(&mut stream, 200, "application/timestamp-reply", &answer).await
}

fn reject(failure: Failure, text: impl Into<String>) -> Rejection {
    Rejection {
        failure,
        text: text.into(),
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
        .map_err(|e| {
            reject(
                Failure::SystemFailure,
                format!("the cluster did not log the imprint: {e}"),
            )
        })?;
    let receipt = receipts
        .into_iter()
        .next()
        .ok_or_else(|| reject(Failure::SystemFailure, "no receipt"))?;
    let Entry::Digest(entry) = receipt.entry else {
        return Err(reject(
            Failure::SystemFailure,
            "the receipt is not of a digest entry",
        ));
    };
    if entry.digest != request.log_digest() {
        return Err(reject(
            Failure::SystemFailure,
            "the receipt is of another digest",
        ));
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
    let mut body = SHARE_MAGIC.to_vec();
    body.extend_from_slice(&(request_der.len() as u32).to_be_bytes());
    body.extend_from_slice(request_der);
    body.extend_from_slice(&receipt.to_binary());
    let body = Arc::new(body);
    let mut tasks = tokio::task::JoinSet::new();
    {
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
    // Ask f peers first (with this replica's share, f + 1), starting at a
    // peer that moves with the serial number so the load spreads; one more
    // peer for each failure, bad share or hedge interval without enough.
    let n = state.cluster.addresses.len();
    let offset = (receipt.leaf_index % n as u64) as usize;
    let mut peers = (0..n)
        .map(|k| (state.id + 1 + offset + k) % n)
        .filter(|j| *j != state.id)
        .collect::<Vec<_>>()
        .into_iter();
    let ask = |tasks: &mut tokio::task::JoinSet<Result<(usize, SignatureShare), String>>,
               j: usize| {
        let address = state.cluster.addresses[j].clone();
        let body = body.clone();
        tasks.spawn(async move {
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
            decode_share(&answer)
                .map(|s| (j, s))
                .map_err(|e| format!("replica {j}: {e}"))
        });
    };
    for j in peers.by_ref().take(public.threshold.saturating_sub(1)) {
        ask(&mut tasks, j);
    }
    let k = public.threshold;
    let mut held: Vec<SignatureShare> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(j) => j,
                None => match peers.next() {
                    // Everyone asked so far answered or failed: ask another.
                    Some(j) => {
                        ask(&mut tasks, j);
                        continue;
                    }
                    None => break,
                },
            },
            _ = tokio::time::sleep(SHARE_HEDGE) => {
                if let Some(j) = peers.next() {
                    ask(&mut tasks, j);
                }
                continue;
            }
        };
        match joined {
            Ok(Ok((j, share))) if share.replica == j => held.push(share),
            Ok(Ok((j, share))) => {
                failures.push(format!("replica {j} answered as replica {}", share.replica));
                state
                    .metrics
                    .tsa_share_faults
                    .get_or_create(&PeerLabel {
                        peer: j.to_string(),
                    })
                    .inc();
            }
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
        if held.len() + tasks.len() < k {
            if let Some(j) = peers.next() {
                ask(&mut tasks, j);
            }
        }
        if held.len() < k {
            continue;
        }
        let refs: Vec<&SignatureShare> = held.iter().take(k).collect();
        if let Ok(Some(y)) = public.combine(&prepared.message, &refs) {
            tasks.abort_all();
            return Ok(y);
        }
        // Some share is wrong: the proofs say which.
        let message = prepared.message.clone();
        let checked = public.clone();
        let candidates = std::mem::take(&mut held);
        let (good, bad) = tokio::task::spawn_blocking(move || {
            candidates
                .into_iter()
                .partition::<Vec<_>, _>(|s| checked.verify_share(&message, s))
        })
        .await
        .map_err(|e| reject(Failure::SystemFailure, e.to_string()))?;
        for s in bad {
            tracing::warn!(
                peer = s.replica,
                "RFC 3161: a signature share whose proof fails; dropped"
            );
            state
                .metrics
                .tsa_share_faults
                .get_or_create(&PeerLabel {
                    peer: s.replica.to_string(),
                })
                .inc();
            failures.push(format!("replica {}: invalid signature share", s.replica));
        }
        held = good;
        for j in peers
            .by_ref()
            .take(k.saturating_sub(held.len() + tasks.len()))
        {
            ask(&mut tasks, j);
        }
    }
    Err(reject(
        Failure::SystemFailure,
        format!(
            "{} valid signature shares of {k} needed ({})",
            held.len(),
            failures.join("; ")
        ),
    ))
}

/// A peer's request for this replica's share.
async fn share(state: &State, body: &[u8]) -> Result<Vec<u8>, (u16, String)> {
    let bad = |m: String| (400u16, m);
    let rest = body
        .strip_prefix(SHARE_MAGIC.as_slice())
        .ok_or_else(|| bad("not a share request".into()))?;
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("truncated".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(bad("truncated request".into()));
    }
    let (request_der, receipt_bytes) = rest.split_at(len);
    let authority = state.cluster.authority.clone();
    let request = authority
        .request(request_der)
        .map_err(|r| bad(format!("request: {}", r.text)))?;
    let receipt = Receipt::from_binary(receipt_bytes).map_err(|e| bad(format!("receipt: {e}")))?;
    let Ok(queued) = state.signing_queue.clone().try_acquire_owned() else {
        return Err((503, "busy signing; try later".into()));
    };
    let running = state
        .signing
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| (503, e.to_string()))?;
    let anchor = state.anchor;
    let key = state.node.share.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let verified = verify_receipt(&receipt, &anchor).map_err(|e| format!("receipt: {e}"))?;
        let Entry::Digest(entry) = verified.entry else {
            return Err("the receipt is not of a digest entry".into());
        };
        if entry.digest != request.log_digest() {
            return Err("the receipt is of another digest than the request's".into());
        }
        let prepared = authority
            .prepare(&request, verified.leaf_index, entry.witnessed_at.0)
            .map_err(|r| r.text)?;
        let share = key
            .sign(&prepared.message, &mut rand::rngs::OsRng)
            .map_err(|e| e.to_string())?;
        Ok(encode_share(&share))
    })
    .await
    .map_err(|e| (503, e.to_string()))?;
    drop((running, queued));
    state.metrics.tsa_shares_signed.inc();
    answer.map_err(bad)
}

/// `BTS1 ‖ replica u16 ‖ len u16 ‖ value ‖ challenge[16] ‖ len u16 ‖ z`.
fn encode_share(s: &SignatureShare) -> Vec<u8> {
    let value = s.value.to_bytes_be();
    let z = s.z.to_bytes_be();
    let mut out = SHARE_MAGIC.to_vec();
    out.extend_from_slice(&(s.replica as u16).to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    out.extend_from_slice(&s.challenge);
    out.extend_from_slice(&(z.len() as u16).to_be_bytes());
    out.extend_from_slice(&z);
    out
}

fn decode_share(b: &[u8]) -> Result<SignatureShare, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("truncated share".into());
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    fn u16_of(b: &mut &[u8]) -> Result<usize, String> {
        let x = take(b, 2)?;
        Ok(usize::from(u16::from_be_bytes([x[0], x[1]])))
    }
    let mut b = b
        .strip_prefix(SHARE_MAGIC.as_slice())
        .ok_or("not a share")?;
    let replica = u16_of(&mut b)?;
    let len = u16_of(&mut b)?;
    let value = BigUint::from_bytes_be(take(&mut b, len)?);
    let mut challenge = [0u8; 16];
    challenge.copy_from_slice(take(&mut b, 16)?);
    let len = u16_of(&mut b)?;
    let z = BigUint::from_bytes_be(take(&mut b, len)?);
    if !b.is_empty() {
        return Err("bytes after the share".into());
    }
    Ok(SignatureShare {
        replica,
        value,
        challenge,
        z,
    })
}
