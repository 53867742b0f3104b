//! belfry-client: the async client library (docs/design.md section 4).
//!
//! A [`Client`] talks QUIC to the replicas of one cluster, pinning each
//! replica's certificate from the cluster description ([`ClusterInfo`]).
//!
//! - [`Client::stamp`] submits digests to every replica by default (to
//!   f + 1, or to one, by [`Fanout`]), takes for each digest the first
//!   receipt that verifies — from whichever replica — resubmits after a
//!   lost connection, fails over to more replicas when the ones asked stay
//!   silent, polls for receipts whose push was lost, and on a timeout says
//!   how many replicas answered.
//! - Receipts arrive in bundles under one signed head; each distinct head
//!   is verified once ([`verify::HeadCache`]), so a batch of receipts costs
//!   one pairing instead of one each.
//! - [`Client::subscribe`] follows the ordered log from an index, resuming
//!   after a disconnect (on the same or another replica) without gaps or
//!   duplicates; [`Client::heads`] follows the signed tree heads, each
//!   verified and checked consistent with the one before.
//!
//! Nothing a replica says is trusted beyond what verifies against the
//! trust anchor, except the entries of the ordered stream (which a consumer
//! can audit against signed heads with [`Client::consistency`]).

#![forbid(unsafe_code)]

pub mod gateway;
pub mod session;
mod stream;
mod targets;
pub mod tls;
pub mod verify;

use belfry_timestamp::coin::{ClusterParams, TrustAnchor};
use belfry_timestamp::{verify_consistency, Entry, Receipt, SignedTreeHead};
use belfry_wire::{
    ClientPush, ClientRequest, ClientResponse, ReceiptBundle, MAX_RECEIPTS_PER_ANSWER,
};
pub use gateway::{GatewayClient, GatewayEndpoint};
use rand::Rng;
use rustls::pki_types::CertificateDer;
use session::Session;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
pub use stream::{HeadStream, Subscription};
use targets::{present, targets};
use tokio::sync::mpsc;
pub use verify::{HeadCache, VerifyError};

/// Digests per `Submit` request (the replicas' `max_digests_per_request`).
pub const MAX_DIGESTS_PER_SUBMIT: usize = 4_096;
/// Entries asked for per `Entries` request while catching up.
pub const ENTRIES_PAGE: u64 = 4_096;
/// Ordered-stream entries buffered for the consumer.
pub const STREAM_BUFFER: usize = 16_384;
/// Heads buffered for the consumer.
pub const HEADS_BUFFER: usize = 64;

/// One replica's address and certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaEndpoint {
    /// Where it listens (QUIC).
    pub address: SocketAddr,
    /// Its certificate (DER), pinned.
    pub certificate: CertificateDer<'static>,
}

/// What a client needs to know of a cluster (from `cluster.toml`).
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    /// The parameters receipts bind (the group key is the trust anchor).
    pub params: ClusterParams,
    /// The replicas, by id; none for one the cluster runs without
    /// (`absent = true` in cluster.toml), which is never asked.
    pub replicas: Vec<Option<ReplicaEndpoint>>,
}

/// How many replicas each digest is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// Every replica (the default: the fastest receipt, and no replica
    /// can censor).
    All,
    /// f + 1 replicas (at least one honest), more on failover.
    FPlusOne,
    /// One replica, more on failover.
    One,
}

/// Settings of a client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// See [`Fanout`].
    pub fanout: Fanout,
    /// The replica to ask first (a nearby one); by default a random one,
    /// so that clients spread their load.
    pub first_replica: Option<usize>,
    /// How long [`Client::stamp`] waits for all receipts.
    pub stamp_timeout: Duration,
    /// How long one request (or a connection attempt) may take.
    pub request_timeout: Duration,
    /// How often a waiting stamp polls for receipts, resubmits after lost
    /// connections and fails over to further replicas.
    pub retry_interval: Duration,
    /// Keep-alive on connections.
    pub keep_alive: Duration,
    /// A connection silent this long is dead.
    pub idle_timeout: Duration,
    /// Digests this client's [`Client::stamp`] calls have in flight at
    /// once, over all calls; further calls wait their turn, first come
    /// first served, before their `stamp_timeout` starts. See
    /// [`MAX_IN_FLIGHT_DIGESTS`].
    pub max_in_flight_digests: usize,
}

/// Digests in flight per client by default: what a replica takes unlogged
/// from one connection (half of the reports it queues for its coming
/// vertices). A client that offers more gets `ClientLimit` refusals and
/// retries at each tick — a lottery in which a call may lose until it
/// times out; waiting in line here instead, every call gets its turn.
pub const MAX_IN_FLIGHT_DIGESTS: usize = 16_384;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            fanout: Fanout::All,
            first_replica: None,
            stamp_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            retry_interval: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            max_in_flight_digests: MAX_IN_FLIGHT_DIGESTS,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A replica could not be reached.
    #[error("replica {replica}: cannot connect: {error}")]
    Connect {
        /// Which.
        replica: usize,
        /// Why.
        error: String,
    },
    /// The replica is absent from the cluster (`absent = true` in
    /// cluster.toml): nobody runs it, and it is never asked.
    #[error("replica {replica}: absent from this cluster (cluster.toml: absent = true)")]
    Absent {
        /// Which.
        replica: usize,
    },
    /// The connection to a replica was lost.
    #[error("replica {replica}: connection lost")]
    ConnectionLost {
        /// Which.
        replica: usize,
    },
    /// The replica is shutting down.
    #[error("replica {replica}: shutting down")]
    ShuttingDown {
        /// Which.
        replica: usize,
    },
    /// A request got no answer in time.
    #[error("replica {replica}: no answer in time")]
    RequestTimeout {
        /// Which.
        replica: usize,
    },
    /// A stamp did not get all its receipts in time.
    #[error(
        "timed out: {answered} of {asked} replicas asked answered; {missing} receipts missing"
    )]
    Timeout {
        /// Replicas that acknowledged the submission.
        answered: usize,
        /// Replicas asked.
        asked: usize,
        /// Digests without a receipt.
        missing: usize,
    },
    /// A replica answered with an error.
    #[error("replica {replica}: {error}")]
    Replica {
        /// Which.
        replica: usize,
        /// Its answer.
        error: belfry_wire::ClientError,
    },
    /// Something a replica sent does not verify.
    #[error("replica {replica}: {error}")]
    Verify {
        /// Which.
        replica: usize,
        /// What failed.
        error: VerifyError,
    },
    /// An answer of the wrong kind.
    #[error("protocol: {0}")]
    Protocol(String),
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The local socket.
    #[error("local socket: {0}")]
    Io(#[from] std::io::Error),
}

struct Inner {
    cluster: ClusterInfo,
    anchor: TrustAnchor,
    options: ClientOptions,
    cache: HeadCache,
    /// By replica id; none for an absent replica.
    sessions: Vec<Option<Session>>,
    /// Permits for digests in flight ([`ClientOptions::max_in_flight_digests`]).
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// A client of one cluster (cheap to clone).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("replicas", &self.inner.sessions.len())
            .finish_non_exhaustive()
    }
}

enum Event {
    Acked(usize),
    Refused(usize),
    Lost(usize),
    Bundle(usize, ReceiptBundle),
}

impl Client {
    /// A client of `cluster` (within a tokio runtime). Connections are made
    /// on first use.
    pub fn new(cluster: ClusterInfo, options: ClientOptions) -> Result<Self, Error> {
        let bind: SocketAddr = match cluster.replicas.iter().flatten().next().map(|r| r.address) {
            Some(SocketAddr::V6(_)) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            _ => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(options.keep_alive));
        if let Ok(idle) = options.idle_timeout.try_into() {
            transport.max_idle_timeout(Some(idle));
        }
        let transport = Arc::new(transport);
        let mut sessions = Vec::with_capacity(cluster.replicas.len());
        for (i, r) in cluster.replicas.iter().enumerate() {
            let Some(r) = r else {
                sessions.push(None);
                continue;
            };
            let crypto = tls::client_config(r.certificate.clone(), None, belfry_wire::CLIENT_ALPN)?;
            let mut config = quinn::ClientConfig::new(Arc::new(crypto));
            config.transport_config(transport.clone());
            sessions.push(Some(Session::new(
                i,
                r.address,
                endpoint.clone(),
                config,
                options.request_timeout,
            )));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                anchor: TrustAnchor(cluster.params.group_public_key),
                cluster,
                cache: HeadCache::new(),
                sessions,
                in_flight: Arc::new(tokio::sync::Semaphore::new(
                    options.max_in_flight_digests.clamp(1, u32::MAX as usize),
                )),
                options,
            }),
        })
    }

    /// The trust anchor.
    pub fn anchor(&self) -> TrustAnchor {
        self.inner.anchor
    }

    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        self.n()
    }

    /// The head cache (its pairing count).
    pub fn head_cache(&self) -> &HeadCache {
        &self.inner.cache
    }

    /// Drops every connection (they are made again on next use; tests
    /// force reconnects with this).
    pub async fn disconnect_all(&self) {
        for s in self.inner.sessions.iter().flatten() {
            s.disconnect().await;
        }
    }

    fn n(&self) -> usize {
        self.inner.sessions.len()
    }

    /// The replicas that are not absent, by id.
    pub fn present(&self) -> Vec<usize> {
        present(&self.inner.sessions)
    }

    fn targets(&self) -> Vec<usize> {
        let first = self
            .inner
            .options
            .first_replica
            .unwrap_or_else(|| rand::rngs::OsRng.gen_range(0..self.n().max(1)));
        targets(
            &self.present(),
            self.inner.options.fanout,
            usize::from(self.inner.cluster.params.f),
            first,
        )
    }

    /// Submits `digests` and returns a verified receipt for each, in the
    /// order given (see the crate documentation).
    pub async fn stamp(&self, digests: &[[u8; 32]]) -> Result<Vec<Receipt>, Error> {
        if self.present().is_empty() {
            return Err(Error::Protocol("a cluster without replicas".to_string()));
        }
        let wanted: BTreeSet<[u8; 32]> = digests.iter().copied().collect();
        // Wait in line (first come, first served) for room: the replicas
        // take only so many unlogged digests from one connection. A call
        // larger than the whole room takes all of it.
        let room = self
            .inner
            .options
            .max_in_flight_digests
            .clamp(1, u32::MAX as usize);
        let _permit = self
            .inner
            .in_flight
            .acquire_many(wanted.len().clamp(1, room) as u32)
            .await
            .map_err(|_| Error::Protocol("the client is closed".to_string()))?;
        let mut got: BTreeMap<[u8; 32], Receipt> = BTreeMap::new();
        let (events_tx, mut events) = mpsc::channel(1_024);
        let mut asked: Vec<usize> = self.targets();
        let mut answered = BTreeSet::new();
        let mut needs_submit: BTreeSet<usize> = asked.iter().copied().collect();
        let mut lost: BTreeSet<usize> = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + self.inner.options.stamp_timeout;
        let mut tick = tokio::time::interval(self.inner.options.retry_interval);
        let mut progressed = true;
        let mut poll_next = 0usize;
        loop {
            if got.len() == wanted.len() {
                break;
            }
            for r in std::mem::take(&mut needs_submit) {
                let todo: Vec<[u8; 32]> = wanted
                    .iter()
                    .filter(|d| !got.contains_key(*d))
                    .copied()
                    .collect();
                self.spawn_submit(r, todo, events_tx.clone());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout {
                        answered: answered.len(),
                        asked: asked.len(),
                        missing: wanted.len() - got.len(),
                    });
                }
                Some(e) = events.recv() => match e {
                    Event::Acked(r) => { answered.insert(r); }
                    // Resubmitted at the next tick (not at once: a replica
                    // that fails at once must not make us spin).
                    Event::Refused(r) | Event::Lost(r) => { lost.insert(r); }
                    Event::Bundle(r, bundle) => {
                        if self.absorb(r, &bundle, &wanted, &mut got) {
                            progressed = true;
                        }
                    }
                },
                _ = tick.tick() => {
                    // Lost pushes, lost connections, silent replicas: poll
                    // for receipts, resubmit, and fail over.
                    let missing: Vec<[u8; 32]> = wanted.iter().filter(|d| !got.contains_key(*d)).copied().collect();
                    if missing.is_empty() { continue; }
                    let r = asked[poll_next % asked.len()];
                    poll_next += 1;
                    self.spawn_poll(r, missing, events_tx.clone());
                    needs_submit.append(&mut lost);
                    for &r in &asked {
                        if !self.inner.sessions[r].as_ref().is_some_and(Session::is_connected) {
                            needs_submit.insert(r);
                        }
                    }
                    if !progressed {
                        if let Some(extra) = self.present().into_iter().find(|r| !asked.contains(r)) {
                            tracing::debug!(replica = extra, "failing over to another replica");
                            asked.push(extra);
                            needs_submit.insert(extra);
                        }
                    }
                    progressed = false;
                }
            }
        }
        Ok(digests.iter().filter_map(|d| got.get(d).cloned()).collect())
    }

    fn absorb(
        &self,
        replica: usize,
        bundle: &ReceiptBundle,
        wanted: &BTreeSet<[u8; 32]>,
        got: &mut BTreeMap<[u8; 32], Receipt>,
    ) -> bool {
        let inner = &self.inner;
        match inner
            .cache
            .verify_bundle(&inner.cluster.params, &inner.anchor, bundle)
        {
            Ok(receipts) => {
                let mut any = false;
                for r in receipts {
                    if let Entry::Digest(d) = r.entry {
                        if wanted.contains(&d.digest) && !got.contains_key(&d.digest) {
                            got.insert(d.digest, r);
                            any = true;
                        }
                    }
                }
                any
            }
            Err(error) => {
                tracing::warn!(replica, %error, "a receipt bundle does not verify");
                false
            }
        }
    }

    fn spawn_submit(&self, replica: usize, digests: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            let Some(Some(session)) = client.inner.sessions.get(replica) else {
                return;
            };
            let mut streams = Vec::new();
            for chunk in digests.chunks(MAX_DIGESTS_PER_SUBMIT) {
                match session
                    .call_with_pushes(ClientRequest::Submit(chunk.to_vec()))
                    .await
                {
                    Ok((ClientResponse::Accepted { .. }, pushes)) => {
                        let _ = events.send(Event::Acked(replica)).await;
                        streams.push(pushes);
                    }
                    Ok((ClientResponse::Error(error), pushes)) => {
                        // Backpressure or a client limit: what was taken is
                        // still pushed; the rest is asked again later.
                        tracing::debug!(replica, %error, "submission refused");
                        let _ = events.send(Event::Acked(replica)).await;
                        let _ = events.send(Event::Refused(replica)).await;
                        streams.push(pushes);
                    }
                    Ok(_) | Err(_) => {
                        let _ = events.send(Event::Lost(replica)).await;
                        return;
                    }
                }
            }
            // Forward the receipt pushes until the connection ends, or
            // the stamp is over (its receiver gone).
            let mut forwarders = tokio::task::JoinSet::new();
            for mut pushes in streams {
                let events = events.clone();
                forwarders.spawn(async move {
                    loop {
                        tokio::select! {
                            push = pushes.recv() => match push {
                                Some(ClientPush::Signed(bundle)) => {
                                    if events.send(Event::Bundle(replica, bundle)).await.is_err() {
                                        return false;
                                    }
                                }
                                Some(_) => {}
                                None => return true,
                            },
                            _ = events.closed() => return false,
                        }
                    }
                });
            }
            while let Some(ended) = forwarders.join_next().await {
                if ended.unwrap_or(false) {
                    // The connection ended: the stamp resubmits here.
                    let _ = events.send(Event::Lost(replica)).await;
                    return;
                }
            }
        });
    }

    fn spawn_poll(&self, replica: usize, missing: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            let Some(Some(session)) = client.inner.sessions.get(replica) else {
                return;
            };
            for chunk in missing.chunks(MAX_RECEIPTS_PER_ANSWER) {
                match session.call(ClientRequest::Receipts(chunk.to_vec())).await {
                    Ok(ClientResponse::Receipts(bundle)) => {
                        if events.send(Event::Bundle(replica, bundle)).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
    }

    fn session(&self, replica: usize) -> Result<&Session, Error> {
        match self.inner.sessions.get(replica) {
            Some(Some(s)) => Ok(s),
            Some(None) => Err(Error::Absent { replica }),
            None => Err(Error::Protocol(format!("no replica {replica}"))),
        }
    }

    /// Verified receipts of many digests under one head from one replica
    /// (digests it cannot prove yet are left out).
    pub async fn receipts(
        &self,
        replica: usize,
        digests: &[[u8; 32]],
    ) -> Result<Vec<Receipt>, Error> {
        let mut out = Vec::new();
        for chunk in digests.chunks(MAX_RECEIPTS_PER_ANSWER) {
            match self
                .session(replica)?
                .call(ClientRequest::Receipts(chunk.to_vec()))
                .await?
            {
                ClientResponse::Receipts(bundle) => {
                    let inner = &self.inner;
                    out.extend(
                        inner
                            .cache
                            .verify_bundle(&inner.cluster.params, &inner.anchor, &bundle)
                            .map_err(|error| Error::Verify { replica, error })?,
                    );
                }
                other => return Err(unexpected(replica, other)),
            }
        }
        Ok(out)
    }

    /// One replica's receipt of `digest` under the first signed tree head
    /// that contains it — the receipt it gave when the digest was stamped,
    /// and the earliest time it proves — verified; `None` while the replica
    /// does not know the digest or no signed head covers it yet.
    pub async fn receipt(
        &self,
        replica: usize,
        digest: &[u8; 32],
    ) -> Result<Option<Receipt>, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Receipt(*digest))
            .await?
        {
            ClientResponse::Receipt(bytes) => {
                let r = Receipt::from_binary(&bytes).map_err(|e| {
                    Error::Protocol(format!(
                        "replica {replica}: a receipt that does not parse: {e}"
                    ))
                })?;
                let asked = matches!(r.entry, Entry::Digest(d) if d.digest == *digest);
                if !asked || r.cluster != self.inner.cluster.params {
                    return Err(Error::Protocol(format!(
                        "replica {replica}: a receipt of another digest or cluster"
                    )));
                }
                self.inner
                    .cache
                    .verify_receipt(&self.inner.anchor, &r)
                    .map_err(|error| Error::Verify { replica, error })?;
                Ok(Some(r))
            }
            ClientResponse::Error(
                belfry_wire::ClientError::UnknownDigest | belfry_wire::ClientError::NotYetSigned,
            ) => Ok(None),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The latest signed tree head of a replica, verified.
    pub async fn tree_head(&self, replica: usize) -> Result<Option<SignedTreeHead>, Error> {
        match self.session(replica)?.call(ClientRequest::TreeHead).await? {
            ClientResponse::TreeHead(Some(h)) => {
                self.check_head(replica, &h)?;
                Ok(Some(h))
            }
            ClientResponse::TreeHead(None) => Ok(None),
            other => Err(unexpected(replica, other)),
        }
    }

    fn check_head(&self, replica: usize, h: &SignedTreeHead) -> Result<(), Error> {
        let inner = &self.inner;
        inner
            .cache
            .verify_head(&inner.cluster.params, &inner.anchor, h)
            .map_err(|error| Error::Verify { replica, error })
    }

    /// Checks with a replica's consistency proof that head `b` extends
    /// head `a` (both verified first).
    pub async fn consistency(
        &self,
        replica: usize,
        a: &SignedTreeHead,
        b: &SignedTreeHead,
    ) -> Result<(), Error> {
        self.check_head(replica, a)?;
        self.check_head(replica, b)?;
        let (sa, sb) = (a.head.tree_size, b.head.tree_size);
        if sa == sb {
            return if a.head.root == b.head.root {
                Ok(())
            } else {
                Err(Error::Verify {
                    replica,
                    error: VerifyError::Fork(sa),
                })
            };
        }
        let (first, second) = if sa < sb { (a, b) } else { (b, a) };
        let (s1, s2) = (first.head.tree_size, second.head.tree_size);
        match self
            .session(replica)?
            .call(ClientRequest::Consistency(s1, s2))
            .await?
        {
            ClientResponse::Consistency(proof)
                if verify_consistency(s1, s2, &first.head.root, &second.head.root, &proof) =>
            {
                Ok(())
            }
            ClientResponse::Consistency(_) => Err(Error::Verify {
                replica,
                error: VerifyError::Inconsistent(s1, s2),
            }),
            other => Err(unexpected(replica, other)),
        }
    }

    /// A replica's checkpoint (docs/checkpoints.md) of its signed head of
    /// `size` (0: its latest), as note text. Nothing is verified here: open
    /// it with [`belfry_timestamp::checkpoint::ClusterKey::open`].
    pub async fn checkpoint(&self, replica: usize, size: u64) -> Result<String, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Checkpoint(size))
            .await?
        {
            ClientResponse::Checkpoint(note) => Ok(note),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The checkpoints witnesses cosigned last, as a replica keeps them
    /// (note texts, not verified).
    pub async fn witnessed(&self, replica: usize) -> Result<Vec<String>, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Witnessed)
            .await?
        {
            ClientResponse::Witnessed(notes) => Ok(notes),
            other => Err(unexpected(replica, other)),
        }
    }

    /// Gives a replica a checkpoint carrying witness cosignatures; returns
    /// how many it kept (newer than what it had of each witness).
    pub async fn cosign(&self, replica: usize, note: String) -> Result<u32, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Cosign(note))
            .await?
        {
            ClientResponse::Cosigned { stored } => Ok(stored),
            other => Err(unexpected(replica, other)),
        }
    }

    /// Entries `[from, to)` from a replica (at most one page).
    pub async fn entries(
        &self,
        replica: usize,
        from: u64,
        to: u64,
    ) -> Result<(u64, Vec<Entry>), Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Entries(from, to))
            .await?
        {
            ClientResponse::Entries { from, entries } => Ok((from, entries)),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The ordered stream from log index `from` on (see [`Subscription`]).
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::start(self.clone(), from)
    }

    /// The signed tree heads from now on (see [`HeadStream`]).
    pub fn heads(&self) -> HeadStream {
        HeadStream::start(self.clone())
    }
}

fn unexpected(replica: usize, r: ClientResponse) -> Error {
    match r {
        ClientResponse::Error(error) => Error::Replica { replica, error },
        other => Error::Protocol(format!("replica {replica}: unexpected answer {other:?}")),
    }
}
