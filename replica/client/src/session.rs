//! One replica's connection, as the client library sees it: connected on
//! first use and again after a loss; calls with ids matched to their
//! answers; pushes routed by the id of the request that asked for them.
//!
//! Per connection: a call stream (bidirectional; our calls out, answers
//! in, read by one task) and the replica's push stream (read by another
//! task). When the connection ends every call waiting on it fails and every
//! push receiver sees its end, so the caller knows to resume.

use crate::tls;
use crate::Error;
use belfry_wire::{
    close, decode_message, encode_call, read_header, ClientCall, ClientError, ClientMessage,
    ClientPush, ClientRequest, ClientResponse, RequestId, CLIENT_FRAME_VERSION, FRAME_HEADER,
};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Calls waiting for their answers on one connection, at most.
pub const MAX_IN_FLIGHT: usize = 1_024;
/// Pushes buffered per subscription before the push reader waits (and QUIC
/// flow control slows the replica, which disconnects us if we stay slow).
pub const PUSH_BUFFER: usize = 256;

/// Times a read refused for the replica's rate limit is sent again.
pub const RATE_RETRIES: u32 = 5;

/// The longest wait before sending a rate-limited read again.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(2);

type Pending = Arc<Mutex<BTreeMap<RequestId, oneshot::Sender<ClientResponse>>>>;
type Subs = Arc<Mutex<BTreeMap<RequestId, mpsc::Sender<ClientPush>>>>;

#[derive(Debug)]
struct Live {
    conn: Connection,
    send: tokio::sync::Mutex<SendStream>,
    pending: Pending,
    subs: Subs,
    in_flight: Arc<Semaphore>,
}

/// A replica's session.
#[derive(Debug)]
pub struct Session {
    /// The replica's index.
    pub replica: usize,
    address: SocketAddr,
    endpoint: Endpoint,
    config: quinn::ClientConfig,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
    next_id: AtomicU64,
    timeout: Duration,
}

impl Session {
    /// A session (not connected yet).
    pub fn new(
        replica: usize,
        address: SocketAddr,
        endpoint: Endpoint,
        config: quinn::ClientConfig,
        timeout: Duration,
    ) -> Self {
        Session {
            replica,
            address,
            endpoint,
            config,
            live: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
            timeout,
        }
    }

    /// Whether a connection is up now, or being made (never waits: a
    /// connection attempt to a dead replica can take its whole timeout).
    pub fn is_connected(&self) -> bool {
        match self.live.try_lock() {
            Ok(live) => live
                .as_ref()
                .is_some_and(|l| l.conn.close_reason().is_none()),
            Err(_) => true,
        }
    }

    /// Closes the connection (tests force a reconnect with this).
    pub async fn disconnect(&self) {
        if let Some(l) = self.live.lock().await.take() {
            l.conn.close(close::DONE.into(), b"client closed");
        }
    }

    async fn live(&self) -> Result<Arc<Live>, Error> {
        let mut guard = self.live.lock().await;
        if let Some(l) = guard.as_ref() {
            if l.conn.close_reason().is_none() {
                return Ok(l.clone());
            }
        }
        *guard = None;
        let replica = self.replica;
        let connecting = self
            .endpoint
            .connect_with(
                self.config.clone(),
                self.address,
                &tls::server_name(replica as u16),
            )
            .map_err(|e| Error::Connect {
                replica,
                error: e.to_string(),
            })?;
        let conn = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| Error::Connect {
                replica,
                error: "timed out".to_string(),
            })?
            .map_err(|e| Error::Connect {
                replica,
                error: e.to_string(),
            })?;
        let (send, recv) = conn.open_bi().await.map_err(|e| lost(replica, &e))?;
        let live = Arc::new(Live {
            conn: conn.clone(),
            send: tokio::sync::Mutex::new(send),
            pending: Arc::default(),
            subs: Arc::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        });
        tokio::spawn(read_answers(recv, live.pending.clone(), conn.clone()));
        tokio::spawn(read_pushes(conn, live.subs.clone()));
        *guard = Some(live.clone());
        Ok(live)
    }

    /// Sends a request and waits for its answer.
    pub async fn call(&self, request: ClientRequest) -> Result<ClientResponse, Error> {
        self.call_inner(request, None).await.map(|(r, _)| r)
    }

    /// Sends a request whose pushes the caller wants: the answer, and a
    /// receiver of the pushes (it ends with the connection; dropping it
    /// unregisters the request).
    pub async fn call_with_pushes(
        &self,
        request: ClientRequest,
    ) -> Result<(ClientResponse, Pushes), Error> {
        let (tx, rx) = mpsc::channel(PUSH_BUFFER);
        let (r, (id, subs)) = self.call_inner(request, Some(tx)).await?;
        Ok((r, Pushes { rx, id, subs }))
    }

    /// Sends a request; a read the replica refused for its rate limit is
    /// sent again once the replica says it may be (a few times, each wait
    /// at most [`MAX_RATE_WAIT`]).
    async fn call_inner(
        &self,
        request: ClientRequest,
        pushes: Option<mpsc::Sender<ClientPush>>,
    ) -> Result<(ClientResponse, (RequestId, Subs)), Error> {
        let mut tries = 0;
        loop {
            let answer = self.call_once(request.clone(), pushes.clone()).await?;
            match answer.0 {
                ClientResponse::Error(ClientError::RateLimited { retry_after_ms })
                    if tries < RATE_RETRIES =>
                {
                    tries += 1;
                    // The replica registered nothing for the refused call.
                    let (id, subs) = &answer.1;
                    if let Ok(mut s) = subs.lock() {
                        s.remove(id);
                    }
                    let wait = Duration::from_millis(u64::from(retry_after_ms)).min(MAX_RATE_WAIT);
                    tokio::time::sleep(wait).await;
                }
                _ => return Ok(answer),
            }
        }
    }

    async fn call_once(
        &self,
        request: ClientRequest,
        pushes: Option<mpsc::Sender<ClientPush>>,
    ) -> Result<(ClientResponse, (RequestId, Subs)), Error> {
        let replica = self.replica;
        let live = self.live().await?;
        let _permit = live
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::ConnectionLost { replica })?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame =
            encode_call(&ClientCall { id, request }).map_err(|e| Error::Protocol(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = live.pending.lock() {
            p.insert(id, tx);
        }
        let registered = pushes.is_some();
        if let (Some(p), Ok(mut subs)) = (pushes, live.subs.lock()) {
            subs.insert(id, p);
        }
        let forget = |live: &Live| {
            if let Ok(mut p) = live.pending.lock() {
                p.remove(&id);
            }
            if registered {
                if let Ok(mut s) = live.subs.lock() {
                    s.remove(&id);
                }
            }
        };
        let written = tokio::time::timeout(self.timeout, async {
            live.send.lock().await.write_all(&frame).await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            forget(&live);
            return Err(closed_error(replica, &live.conn));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(response)) => Ok((response, (id, live.subs.clone()))),
            Ok(Err(_)) => {
                forget(&live);
                Err(closed_error(replica, &live.conn))
            }
            Err(_) => {
                forget(&live);
                Err(Error::RequestTimeout { replica })
            }
        }
    }
}

/// The pushes of one request. Dropping it forgets the request here (the
/// replica forgets it when the connection ends).
#[derive(Debug)]
pub struct Pushes {
    rx: mpsc::Receiver<ClientPush>,
    id: RequestId,
    subs: Subs,
}

impl Pushes {
    /// The next push; `None` once the connection has ended.
    pub async fn recv(&mut self) -> Option<ClientPush> {
        self.rx.recv().await
    }
}

/// Forwards the pushes of a stamp's calls to `events`, each mapped by
/// `pick` (pushes it maps to `None` are skipped), until every stream has
/// ended or the stamp is over. Returns whether a stream ended because its
/// connection did (the stamp then resubmits there), not because the stamp's
/// receiver is gone.
pub async fn forward_pushes<E: Send + 'static>(
    streams: Vec<Pushes>,
    events: mpsc::Sender<E>,
    pick: impl Fn(ClientPush) -> Option<E> + Clone + Send + 'static,
) -> bool {
    let mut forwarders = tokio::task::JoinSet::new();
    for mut pushes in streams {
        let events = events.clone();
        let pick = pick.clone();
        forwarders.spawn(async move {
            loop {
                tokio::select! {
                    push = pushes.recv() => match push {
                        Some(p) => {
                            if let Some(e) = pick(p) {
                                if events.send(e).await.is_err() {
                                    return false;
                                }
                            }
                        }
                        None => return true,
                    },
                    _ = events.closed() => return false,
                }
            }
        });
    }
    while let Some(ended) = forwarders.join_next().await {
        if ended.unwrap_or(false) {
            return true;
        }
    }
    false
}

impl Drop for Pushes {
    fn drop(&mut self) {
        if let Ok(mut s) = self.subs.lock() {
            s.remove(&self.id);
        }
    }
}

fn lost(replica: usize, e: &quinn::ConnectionError) -> Error {
    match e {
        quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == close::SHUTTING_DOWN.into() =>
        {
            Error::ShuttingDown { replica }
        }
        _ => Error::ConnectionLost { replica },
    }
}

fn closed_error(replica: usize, conn: &Connection) -> Error {
    match conn.close_reason() {
        Some(e) => lost(replica, &e),
        None => Error::ConnectionLost { replica },
    }
}

/// Reads one frame of a replica's stream (version 2), header checked first.
async fn read_message(recv: &mut RecvStream) -> Option<ClientMessage> {
    let mut header = [0u8; FRAME_HEADER];
    recv.read_exact(&mut header).await.ok()?;
    let (version, len) = read_header(header).ok()?;
    if version != CLIENT_FRAME_VERSION {
        return None;
    }
    let mut frame = vec![0u8; FRAME_HEADER + len];
    frame[..FRAME_HEADER].copy_from_slice(&header);
    recv.read_exact(&mut frame[FRAME_HEADER..]).await.ok()?;
    decode_message(&frame).ok()
}

async fn read_answers(mut recv: RecvStream, pending: Pending, conn: Connection) {
    while let Some(m) = read_message(&mut recv).await {
        if let ClientMessage::Answer { id, response } = m {
            let waiter = pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(w) = waiter {
                let _ = w.send(response);
            }
        }
    }
    // The answer stream is gone: so is the connection, for us.
    conn.close(close::DONE.into(), b"call stream ended");
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

async fn read_pushes(conn: Connection, subs: Subs) {
    while let Ok(mut recv) = conn.accept_uni().await {
        while let Some(m) = read_message(&mut recv).await {
            if let ClientMessage::Push { id, push } = m {
                let sub = subs.lock().ok().and_then(|s| s.get(&id).cloned());
                if let Some(tx) = sub {
                    // Never wait on one subscriber: the push stream carries
                    // every request's pushes, so a subscriber that does not
                    // read would hold up everyone's receipts. One that has
                    // fallen PUSH_BUFFER pushes behind (or left) is cut
                    // off: its stream ends, and it asks again (`stamp`
                    // polls and resubmits, the streams resume).
                    if tx.try_send(push).is_err() {
                        if let Ok(mut s) = subs.lock() {
                            s.remove(&id);
                        }
                    }
                }
            }
        }
    }
    if let Ok(mut s) = subs.lock() {
        s.clear();
    }
}
