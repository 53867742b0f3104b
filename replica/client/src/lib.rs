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
mod reads;
pub mod session;
mod stamp;
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

    fn session(&self, replica: usize) -> Result<&Session, Error> {
        match self.inner.sessions.get(replica) {
            Some(Some(s)) => Ok(s),
            Some(None) => Err(Error::Absent { replica }),
            None => Err(Error::Protocol(format!("no replica {replica}"))),
        }
    }
}

fn unexpected(replica: usize, r: ClientResponse) -> Error {
    match r {
        ClientResponse::Error(error) => Error::Replica { replica, error },
        other => Error::Protocol(format!("replica {replica}: unexpected answer {other:?}")),
    }
}
