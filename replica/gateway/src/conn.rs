//! Client connections: call streams in, answers back on them, pushes on a
//! stream the gateway opens (the client protocol of `belfry_wire`, as a
//! replica speaks it); `Submit` joins the open round, `Receipts` reads the
//! cache of done rounds.

use crate::round::{ConnId, Refusal};
use crate::{launch, lock, ConnHandle, RoundRanges, Shared, MAX_DIGESTS_PER_SUBMIT};
use belfry_node::frames::{read_frame, FrameWriter, ReadEnd};
use belfry_node::queue::{queue, QueueRx};
use belfry_node::shutdown::{Shutdown, Source};
use belfry_wire::{
    close, ClientError, ClientMessage, ClientRequest, ClientResponse, RequestId,
    MAX_RECEIPTS_PER_ANSWER,
};
use quinn::{Connection, SendStream};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub(crate) async fn accept(shared: Arc<Shared>, endpoint: quinn::Endpoint, source: Source) {
    let slots = Arc::new(Semaphore::new(shared.options.max_clients));
    let next = AtomicU64::new(1);
    let mut shutdown = source.subscribe();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = shutdown.recv() => return,
        };
        let Some(incoming) = incoming else { return };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let id = next.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let shutdown = source.subscribe();
        tokio::spawn(async move {
            let _permit = permit;
            if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(10), incoming).await {
                serve(shared, id, conn, shutdown).await;
            }
        });
    }
}

async fn serve(shared: Arc<Shared>, id: ConnId, conn: Connection, mut shutdown: Shutdown) {
    let (tx, rx) = queue(4_096, shared.options.client_queue_bytes);
    let outstanding = Arc::new(AtomicU64::new(0));
    lock(&shared.conns).insert(
        id,
        ConnHandle {
            pushes: tx,
            conn: conn.clone(),
            outstanding: outstanding.clone(),
        },
    );
    shared.metrics.clients.inc();
    tokio::select! {
        _ = calls(&shared, id, &conn, &outstanding) => {}
        _ = write_pushes(&conn, rx) => {}
        _ = conn.closed() => {}
        _ = shutdown.recv() => conn.close(close::SHUTTING_DOWN.into(), b"gateway shutting down"),
    }
    lock(&shared.conns).remove(&id);
    shared.metrics.clients.dec();
}

async fn write_pushes(conn: &Connection, mut pushes: QueueRx) {
    let mut writer = FrameWriter::new(conn);
    while let Some(frame) = pushes.recv().await {
        if writer.write(frame).await.is_err() {
            return;
        }
    }
}

/// A client's read budget (bytes per second, a second's worth of burst).
struct Budget {
    rate: u64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn take(&mut self, bytes: u64) -> Result<(), u32> {
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 0.0 {
            self.tokens -= bytes as f64;
            Ok(())
        } else {
            Err(((-self.tokens / rate) * 1000.0).ceil().min(60_000.0) as u32)
        }
    }
}

async fn calls(shared: &Arc<Shared>, id: ConnId, conn: &Connection, outstanding: &AtomicU64) {
    let mut budget = Budget {
        rate: shared.options.read_bytes_per_s.max(1),
        tokens: shared.options.read_bytes_per_s as f64,
        at: Instant::now(),
    };
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        loop {
            let frame = match read_frame(&mut recv, &[belfry_wire::CLIENT_FRAME_VERSION]).await {
                Ok(f) => f,
                Err(ReadEnd::Bad(reason, error)) => {
                    let why = match error {
                        Some(e) => format!("bad frame ({reason}): {e}; the call stream is stopped"),
                        None => format!("bad frame ({reason}); the call stream is stopped"),
                    };
                    let _ = recv.stop(close::BAD_FRAME.into());
                    answer(
                        &mut send,
                        0,
                        ClientResponse::Error(ClientError::BadRequest(why)),
                    )
                    .await;
                    let _ = send.finish();
                    break;
                }
                Err(_) => break,
            };
            let (request_id, response) = match belfry_wire::decode_call(&frame) {
                Ok(call) => (
                    call.id,
                    handle(shared, id, call.id, call.request, outstanding, &mut budget),
                ),
                Err(e) => (
                    0,
                    ClientResponse::Error(ClientError::BadRequest(format!(
                        "a frame that does not decode: {e}"
                    ))),
                ),
            };
            if !answer(&mut send, request_id, response).await {
                return;
            }
        }
    }
}

async fn answer(send: &mut SendStream, id: RequestId, response: ClientResponse) -> bool {
    let message = ClientMessage::Answer { id, response };
    match belfry_wire::encode_message(&message) {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "an answer does not encode");
            false
        }
    }
}

fn handle(
    shared: &Arc<Shared>,
    conn: ConnId,
    request_id: RequestId,
    request: ClientRequest,
    outstanding: &AtomicU64,
    budget: &mut Budget,
) -> ClientResponse {
    match request {
        ClientRequest::Submit(digests) => submit(shared, conn, request_id, &digests, outstanding),
        ClientRequest::Receipts(digests) => receipts(shared, digests, budget),
        _ => ClientResponse::Error(ClientError::BadRequest(
            "a gateway answers Submit and Receipts only: ask a replica of the cluster for heads, proofs and entries".to_string(),
        )),
    }
}

/// Admits a client's digests to the open round, within the per-submit and
/// per-client limits; launches the round if admitting them closed it.
fn submit(
    shared: &Arc<Shared>,
    conn: ConnId,
    request_id: RequestId,
    digests: &[[u8; 32]],
    outstanding: &AtomicU64,
) -> ClientResponse {
    let m = &shared.metrics;
    let k = digests.len();
    if k > MAX_DIGESTS_PER_SUBMIT {
        m.refused.inc_by(k as u64);
        return ClientResponse::Error(ClientError::TooLarge {
            items: k as u64,
            limit: MAX_DIGESTS_PER_SUBMIT as u64,
        });
    }
    if k == 0 {
        return ClientResponse::Accepted {
            accepted: 0,
            duplicates: 0,
        };
    }
    let limit = shared.options.max_outstanding_per_client;
    let now = outstanding.load(Ordering::Acquire);
    if now + k as u64 > limit {
        m.refused.inc_by(k as u64);
        return ClientResponse::Error(ClientError::ClientLimit {
            outstanding: now,
            limit,
            taken: 0,
        });
    }
    let admitted = lock(&shared.rounds).admit(conn, request_id, digests);
    match admitted {
        Err(Refusal::Busy { pending }) => {
            m.refused.inc_by(k as u64);
            ClientResponse::Error(ClientError::Backpressure { pending, taken: 0 })
        }
        Ok(closed) => {
            outstanding.fetch_add(k as u64, Ordering::AcqRel);
            m.digests.inc_by(k as u64);
            {
                let mut opened = lock(&shared.opened_at);
                if closed.is_some() || opened.is_none() {
                    *opened = Some(Instant::now());
                }
            }
            if let Some(c) = closed {
                launch(shared, c, true);
            }
            ClientResponse::Accepted {
                accepted: k as u32,
                duplicates: 0,
            }
        }
    }
}

/// The aggregated receipts of the digests the gateway logged, one bundle
/// per round, within the client's read budget.
fn receipts(shared: &Arc<Shared>, digests: Vec<[u8; 32]>, budget: &mut Budget) -> ClientResponse {
    if digests.len() > MAX_RECEIPTS_PER_ANSWER {
        return ClientResponse::Error(ClientError::TooLarge {
            items: digests.len() as u64,
            limit: MAX_RECEIPTS_PER_ANSWER as u64,
        });
    }
    // The budget is charged by what an answer of this size costs at
    // most (a digest and a path's worth of hashes each).
    if let Err(retry_after_ms) = budget.take(digests.len() as u64 * 64 + 1_024) {
        shared.metrics.rate_limited.inc();
        return ClientResponse::Error(ClientError::RateLimited { retry_after_ms });
    }
    let mut rounds = lock(&shared.rounds);
    let mut by_round: BTreeMap<u64, RoundRanges> = BTreeMap::new();
    for d in digests {
        if let Some((round, leaf)) = rounds.lookup(&d) {
            by_round
                .entry(round.no)
                .or_insert_with(|| (round.clone(), Vec::new()))
                .1
                .push((leaf, 1));
        }
    }
    drop(rounds);
    ClientResponse::Aggregated(
        by_round
            .into_values()
            .map(|(round, leaves)| round.bundle(&leaf_ranges(leaves)))
            .collect(),
    )
}

/// A round's leaves as ranges `(first, count)`: side-by-side leaves share
/// one range proof.
fn leaf_ranges(mut leaves: Vec<(u64, u32)>) -> Vec<(u64, u32)> {
    leaves.sort_unstable();
    leaves.dedup();
    let mut ranges: Vec<(u64, u32)> = Vec::new();
    for (leaf, _) in leaves {
        match ranges.last_mut() {
            Some((first, count)) if *first + u64::from(*count) == leaf => *count += 1,
            _ => ranges.push((leaf, 1)),
        }
    }
    ranges
}
