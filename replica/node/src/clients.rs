//! Client connections (docs/design.md section 4; the protocol is in
//! [`belfry_wire`]): a client opens one bidirectional *call stream* at a
//! time and writes [`belfry_wire::ClientCall`] frames on it; its answers
//! come back on the same stream, its pushes on a unidirectional stream the
//! replica opens. This task only moves bytes: frames go to the host as they
//! are, and the host's answers come back through the client's two bounded
//! queues ([`crate::driver::ClientSink`]). A client whose queue overflows
//! is disconnected by the host thread; a bad frame stops its call stream
//! (it may open another), after an answer that says what was wrong
//! (request id 0, [`ClientError::BadRequest`], as the core answers a frame
//! that does not decode). However the connection ends, the core hears
//! [`crate::driver::HostInput::ClientGone`] and forgets the client.

use crate::driver::{ClientRegistry, ClientSink, HostInput};
use crate::frames::{read_frame, FrameWriter, ReadEnd, Written};
use crate::mesh::INPUT_OVERHEAD_BYTES;
use crate::metrics::Metrics;
use crate::queue::{queue, QueueRx};
use crate::shutdown::Shutdown;
use belfry_replica::ClientId;
use belfry_wire::{close, ClientError, ClientMessage, ClientResponse};
use quinn::{Connection, RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex, Semaphore};

/// How long the answer to a bad frame may take to be written (a client
/// that does not read its call stream gets the stream reset instead).
pub const BAD_FRAME_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Per-client send queue limits.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Bytes queued for one client's answers (and, separately, pushes).
    pub queue_bytes: usize,
    /// Frames queued, likewise.
    pub queue_frames: usize,
}

/// What every client connection shares.
#[derive(Debug, Clone)]
pub struct ClientShared {
    /// The host's client input channel.
    pub inputs: mpsc::Sender<HostInput>,
    /// The client input byte budget.
    pub budget: Arc<Semaphore>,
    /// Where the host thread finds the client's queues.
    pub registry: ClientRegistry,
    /// Limits.
    pub limits: ClientLimits,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Serves one client connection until it ends or the node shuts down.
pub async fn serve(shared: ClientShared, id: ClientId, conn: Connection, mut shutdown: Shutdown) {
    // Clients open call streams only; pushes flow the other way.
    conn.set_max_concurrent_uni_streams(0u32.into());
    let (answers_tx, answers_rx) = queue(shared.limits.queue_frames, shared.limits.queue_bytes);
    let (pushes_tx, pushes_rx) = queue(shared.limits.queue_frames, shared.limits.queue_bytes);
    if let Ok(mut r) = shared.registry.lock() {
        r.insert(
            id,
            ClientSink {
                answers: answers_tx,
                pushes: pushes_tx,
                conn: conn.clone(),
            },
        );
    }
    shared.metrics.client_connections.inc();
    let call_send: Arc<Mutex<Option<SendStream>>> = Arc::new(Mutex::new(None));
    tokio::select! {
        _ = accept_calls(&shared, id, &conn, call_send.clone()) => {}
        _ = write_answers(&shared, id, answers_rx, call_send) => {}
        _ = write_pushes(&shared, id, &conn, pushes_rx) => {}
        _ = conn.closed() => {}
        _ = shutdown.recv() => {
            conn.close(close::SHUTTING_DOWN.into(), b"shutting down");
        }
    }
    if let Ok(mut r) = shared.registry.lock() {
        r.remove(&id);
    }
    shared.metrics.client_connections.dec();
    // The core must forget the client even while the node shuts down (the
    // host may still take one more turn).
    let _ = shared.inputs.send(HostInput::ClientGone(id)).await;
}

/// Accepts the client's call streams one after another and forwards their
/// frames; the latest stream's sending half gets the answers.
async fn accept_calls(
    shared: &ClientShared,
    id: ClientId,
    conn: &Connection,
    call_send: Arc<Mutex<Option<SendStream>>>,
) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        *call_send.lock().await = Some(send);
        match read_calls(shared, id, recv).await {
            CallsEnd::HostGone => return,
            // The client finished its side: it may still read answers.
            CallsEnd::Finished => {}
            // The stream is closed both ways, so that the client may open
            // another (it has one at a time): first an answer that says why.
            CallsEnd::Bad(why) => {
                if let Some(send) = call_send.lock().await.take() {
                    answer_bad_frame(send, why).await;
                }
            }
        }
    }
}

enum CallsEnd {
    Finished,
    Bad(String),
    HostGone,
}

/// What a bad frame's answer says.
fn bad_frame_text(reason: &str, error: Option<&belfry_wire::FrameError>) -> String {
    match (reason, error) {
        (_, Some(e)) => format!("bad frame ({reason}): {e}; the call stream is stopped"),
        ("half_frame", None) => {
            "bad frame (half_frame): the stream ended inside a frame; the call stream is stopped"
                .to_string()
        }
        (_, None) => format!("bad frame ({reason}); the call stream is stopped"),
    }
}

/// Answers a bad frame on the call stream (request id 0) and finishes the
/// stream; resets it with [`close::BAD_FRAME`] if the answer cannot be
/// written in time.
async fn answer_bad_frame(mut send: SendStream, why: String) {
    let message = ClientMessage::Answer {
        id: 0,
        response: ClientResponse::Error(ClientError::BadRequest(why)),
    };
    let written = match belfry_wire::encode_message(&message) {
        Ok(frame) => matches!(
            tokio::time::timeout(BAD_FRAME_ANSWER_TIMEOUT, send.write_all(&frame)).await,
            Ok(Ok(()))
        ),
        Err(_) => false,
    };
    if !written || send.finish().is_err() {
        let _ = send.reset(close::BAD_FRAME.into());
    }
}

/// Forwards one call stream's frames.
async fn read_calls(shared: &ClientShared, id: ClientId, mut recv: RecvStream) -> CallsEnd {
    loop {
        let frame = match read_frame(&mut recv, &[belfry_wire::CLIENT_FRAME_VERSION]).await {
            Ok(f) => f,
            Err(ReadEnd::Bad(reason, error)) => {
                shared.metrics.bad_frame(reason);
                tracing::debug!(
                    client = id,
                    reason,
                    ?error,
                    "bad frame from a client: stream stopped"
                );
                let _ = recv.stop(close::BAD_FRAME.into());
                return CallsEnd::Bad(bad_frame_text(reason, error.as_ref()));
            }
            Err(_) => return CallsEnd::Finished,
        };
        shared.metrics.client_bytes_in.inc_by(frame.len() as u64);
        let cost = (frame.len() + INPUT_OVERHEAD_BYTES) as u32;
        let Ok(permit) = shared.budget.clone().acquire_many_owned(cost).await else {
            return CallsEnd::HostGone;
        };
        let input = HostInput::Client {
            client: id,
            frame,
            permit,
        };
        if shared.inputs.send(input).await.is_err() {
            return CallsEnd::HostGone;
        }
    }
}

async fn write_answers(
    shared: &ClientShared,
    id: ClientId,
    mut answers: QueueRx,
    call_send: Arc<Mutex<Option<SendStream>>>,
) {
    let mut written = 0u64;
    while let Some(frame) = answers.recv().await {
        let len = frame.len() as u64;
        {
            let mut guard = call_send.lock().await;
            if let Some(send) = guard.as_mut() {
                match send.write_chunk(frame).await {
                    Ok(()) => {
                        shared.metrics.client_bytes_out.inc_by(len);
                    }
                    // The client stopped its call stream: answers for it
                    // are dropped until it opens another.
                    Err(quinn::WriteError::Stopped(_)) | Err(quinn::WriteError::ClosedStream) => {
                        *guard = None;
                    }
                    Err(_) => return,
                }
            }
        }
        // Written or dropped, the answer leaves the client's window.
        written += len;
        if written >= DRAIN_REPORT_BYTES || answers.is_empty() {
            let input = HostInput::ClientDrained {
                client: id,
                pushes: 0,
                answers: std::mem::take(&mut written),
            };
            if shared.inputs.send(input).await.is_err() {
                return;
            }
        }
    }
}

/// The host hears how many push bytes were written once this many have
/// been, or the queue ran empty: the client's push window
/// ([`belfry_replica::ReplicaConfig::client_push_window`]) opens by as much.
pub const DRAIN_REPORT_BYTES: u64 = 256 * 1024;

async fn write_pushes(shared: &ClientShared, id: ClientId, conn: &Connection, mut pushes: QueueRx) {
    let mut writer = FrameWriter::new(conn);
    let mut written = 0u64;
    while let Some(frame) = pushes.recv().await {
        let len = frame.len() as u64;
        match writer.write(frame).await {
            Ok(Written::Sent) => {
                shared.metrics.client_bytes_out.inc_by(len);
            }
            Ok(Written::Stopped) => {}
            Err(()) => return,
        }
        // A frame the client stopped reading is gone all the same: it
        // leaves the window too.
        written += len;
        if written >= DRAIN_REPORT_BYTES || pushes.is_empty() {
            let input = HostInput::ClientDrained {
                client: id,
                pushes: std::mem::take(&mut written),
                answers: 0,
            };
            if shared.inputs.send(input).await.is_err() {
                return;
            }
        }
    }
}
