//! The accept loop: every incoming QUIC connection is admitted or refused
//! (handshake slots, then by what its handshake says it is — a peer of
//! this cluster, a client within the limits, or neither; see
//! [`crate::admission`]) and handed to its link or client task.

use crate::admission::{Admission, BeforeHandshake};
use crate::clients::ClientShared;
use crate::metrics::Metrics;
use crate::node::HANDSHAKE_TIMEOUT;
use crate::shutdown::Source;
use belfry_replica::coin::ReplicaId;
use belfry_wire::close;
use quinn::{Connection, Endpoint, VarInt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the accept loop hands connections to.
pub(crate) struct Accept {
    pub(crate) me: ReplicaId,
    /// Each replica's certificate by id; none for an absent one.
    pub(crate) certs: Vec<Option<rustls::pki_types::CertificateDer<'static>>>,
    pub(crate) handoff: Vec<Option<mpsc::Sender<Connection>>>,
    pub(crate) clients: ClientShared,
    pub(crate) admission: Admission,
    pub(crate) next_client: Arc<AtomicU64>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) source: Source,
}

pub(crate) async fn accept_loop(
    endpoint: Endpoint,
    accept: Accept,
    mut shutdown: crate::shutdown::Shutdown,
) {
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
