//! The replica mesh: one QUIC connection per replica pair, mutual TLS
//! pinned to the cluster's certificates (see [`crate::tls`]).
//!
//! The lower id dials the higher (so a pair never has two connections);
//! the higher one accepts, and the endpoint's accept loop hands it the
//! connection once the certificate has named the peer. Each side opens one
//! unidirectional stream to send its frames and reads the frames of the
//! streams the other opens. A link task per peer owns the peer's bounded
//! send queue across reconnects: while the peer is down the queue is
//! drained and its frames dropped (counted) — the protocol's re-sends and
//! catch-up make good what is lost, and `PeerReconnected` tells the core
//! when to re-send. Dialing backs off exponentially with jitter.
//!
//! A replica listed `absent = true` in cluster.toml (a ceremony slot
//! nobody holds, docs/keys.md) gets no link: it is never dialed, no
//! certificate is pinned for it, so no connection is ever taken as its, and
//! frames for it are dropped by the router (it has no queue).

use crate::driver::HostInput;
use crate::frames::{read_frame, FrameWriter, ReadEnd, Written};
use crate::metrics::Metrics;
use crate::queue::QueueRx;
use crate::shutdown::Shutdown;
use belfry_replica::coin::ReplicaId;
use belfry_wire::close;
use quinn::{Connection, Endpoint, RecvStream};
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// The first reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bytes a queued input frame is charged beyond its length (the `Vec`, the
/// channel slot): so that many tiny frames are bounded too.
pub const INPUT_OVERHEAD_BYTES: usize = 64;

/// What every peer link shares.
#[derive(Debug, Clone)]
pub struct LinkShared {
    /// This replica.
    pub me: ReplicaId,
    /// The endpoint (to dial).
    pub endpoint: Endpoint,
    /// The host's peer input channel.
    pub inputs: mpsc::Sender<HostInput>,
    /// The peer input byte budget.
    pub budget: Arc<Semaphore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// One peer's link.
#[derive(Debug)]
pub struct Link {
    /// The peer.
    pub peer: ReplicaId,
    /// Its address.
    pub address: SocketAddr,
    /// How to dial it (`None`: it dials us).
    pub dial: Option<quinn::ClientConfig>,
    /// Its frames to send.
    pub queue: QueueRx,
    /// Connections it made to us (accept side only).
    pub accepted: Option<mpsc::Receiver<Connection>>,
    /// A connection handed over while another was live.
    pub next: Option<Connection>,
}

/// Runs a peer link until shutdown.
pub async fn run_link(shared: LinkShared, mut link: Link, mut shutdown: Shutdown) {
    let peer = link.peer;
    let mut rng = rand_chacha::ChaCha8Rng::from_entropy();
    let mut backoff = BACKOFF_MIN;
    loop {
        let conn = tokio::select! {
            c = connect(&shared, &mut link, &mut backoff, &mut rng) => c,
            _ = shutdown.recv() => return,
        };
        let Some(conn) = conn else { return };
        backoff = BACKOFF_MIN;
        Metrics::peer(&shared.metrics.peer_connects, peer.0).inc();
        tracing::info!(me = %shared.me, %peer, "peer connected");
        if shared
            .inputs
            .send(HostInput::PeerReconnected(peer))
            .await
            .is_err()
        {
            return;
        }
        let readers = tokio::spawn(read_streams(shared.clone(), peer, conn.clone()));
        let end = tokio::select! {
            _ = write_frames(&shared, peer, &conn, &mut link.queue) => "lost",
            _ = conn.closed() => "lost",
            newer = next_accepted(&mut link.accepted) => {
                // The peer dialed again (it restarted, or lost its side of
                // the old connection): the newer connection wins.
                conn.close(close::REPLACED.into(), b"replaced by a newer connection");
                link.next = newer;
                "replaced"
            }
            _ = shutdown.recv() => {
                conn.close(close::SHUTTING_DOWN.into(), b"shutting down");
                readers.abort();
                return;
            }
        };
        readers.abort();
        tracing::info!(me = %shared.me, %peer, end, "peer link down");
    }
}

/// The next connection to the peer: dialed with backoff, or handed over by
/// the accept loop. Meanwhile the peer's frames are dropped (counted), so
/// that what it gets after reconnecting is current.
async fn connect(
    shared: &LinkShared,
    link: &mut Link,
    backoff: &mut Duration,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Option<Connection> {
    if let Some(c) = link.next.take() {
        return Some(c);
    }
    let dropped = Metrics::peer(&shared.metrics.peer_frames_dropped, link.peer.0);
    loop {
        let attempt = async {
            match &link.dial {
                None => next_accepted(&mut link.accepted).await.ok_or(()),
                Some(cfg) => {
                    let name = belfry_client::tls::server_name(link.peer.0);
                    let result =
                        match shared
                            .endpoint
                            .connect_with(cfg.clone(), link.address, &name)
                        {
                            Ok(connecting) => connecting.await.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                    if let Err(error) = &result {
                        tracing::debug!(peer = %link.peer, %error, "dial failed");
                        // Back off before the next attempt, with jitter so
                        // restarted replicas do not dial in lockstep.
                        let jitter = rng.gen_range(0.5..1.5);
                        tokio::time::sleep(backoff.mul_f64(jitter)).await;
                        *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    }
                    result.map_err(|_| ())
                }
            }
        };
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                r = &mut attempt => break r,
                frame = link.queue.recv() => {
                    // Every sender gone: the node is stopping.
                    let _stale = frame?;
                    dropped.inc();
                }
            }
        };
        match result {
            Ok(c) => return Some(c),
            Err(()) if link.dial.is_none() => return None,
            Err(()) => continue,
        }
    }
}

async fn next_accepted(rx: &mut Option<mpsc::Receiver<Connection>>) -> Option<Connection> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends the peer's queued frames on a stream of our own, opening a new
/// stream if the peer stops one; returns when the connection fails.
async fn write_frames(
    shared: &LinkShared,
    peer: ReplicaId,
    conn: &Connection,
    queue: &mut QueueRx,
) {
    let out = Metrics::peer(&shared.metrics.peer_bytes_out, peer.0);
    let mut writer = FrameWriter::new(conn);
    while let Some(frame) = queue.recv().await {
        let len = frame.len() as u64;
        match writer.write(frame).await {
            Ok(Written::Sent) => {
                out.inc_by(len);
                shared.metrics.peer_frames_out.inc();
            }
            Ok(Written::Stopped) => {}
            Err(()) => return,
        }
    }
}

/// Reads the frames of every stream the peer opens.
async fn read_streams(shared: LinkShared, peer: ReplicaId, conn: Connection) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(read_peer_stream(shared.clone(), peer, recv));
    }
}

async fn read_peer_stream(shared: LinkShared, peer: ReplicaId, mut recv: RecvStream) {
    let bytes_in = Metrics::peer(&shared.metrics.peer_bytes_in, peer.0);
    loop {
        let frame = match read_frame(&mut recv, &[belfry_wire::FRAME_VERSION]).await {
            Ok(f) => f,
            Err(ReadEnd::Bad(reason, error)) => {
                shared.metrics.bad_frame(reason);
                tracing::warn!(%peer, reason, ?error, "bad frame from a peer: stream stopped");
                let _ = recv.stop(close::BAD_FRAME.into());
                return;
            }
            Err(_) => return,
        };
        bytes_in.inc_by(frame.len() as u64);
        let cost = (frame.len() + INPUT_OVERHEAD_BYTES) as u32;
        let Ok(permit) = shared.budget.clone().acquire_many_owned(cost).await else {
            return;
        };
        let sent = shared
            .inputs
            .send(HostInput::Peer {
                from: peer,
                frame,
                permit,
            })
            .await;
        if sent.is_err() {
            return;
        }
    }
}

/// The peers this replica links to: every other replica that is not
/// absent, with its endpoint.
pub fn peers(
    replicas: &[Option<belfry_client::ReplicaEndpoint>],
    me: ReplicaId,
) -> impl Iterator<Item = (usize, &belfry_client::ReplicaEndpoint)> {
    replicas
        .iter()
        .enumerate()
        .filter(move |(p, _)| *p != me.index())
        .filter_map(|(p, r)| r.as_ref().map(|r| (p, r)))
}

/// The peer a presented certificate names: the replica whose certificate
/// it is; never an absent one (which has none).
pub fn peer_of(
    certs: &[Option<rustls::pki_types::CertificateDer<'static>>],
    presented: &rustls::pki_types::CertificateDer<'static>,
) -> Option<usize> {
    certs.iter().position(|k| k.as_ref() == Some(presented))
}

#[cfg(test)]
mod tests {
    use super::*;
    use belfry_client::ReplicaEndpoint;
    use rustls::pki_types::CertificateDer;

    fn endpoint(i: u8) -> ReplicaEndpoint {
        ReplicaEndpoint {
            address: SocketAddr::from(([127, 0, 0, 1], 7100 + u16::from(i))),
            certificate: CertificateDer::from(vec![i; 8]),
        }
    }

    #[test]
    fn an_absent_replica_is_never_dialed_nor_accepted() {
        let replicas = vec![
            Some(endpoint(0)),
            Some(endpoint(1)),
            None,
            Some(endpoint(3)),
        ];
        let linked: Vec<usize> = peers(&replicas, ReplicaId(1)).map(|(p, _)| p).collect();
        assert_eq!(
            linked,
            vec![0, 3],
            "no link to itself nor to the absent replica 2"
        );
        let linked: Vec<usize> = peers(&replicas, ReplicaId(0)).map(|(p, _)| p).collect();
        assert_eq!(linked, vec![1, 3]);
        let certs: Vec<_> = replicas
            .iter()
            .map(|r| r.as_ref().map(|r| r.certificate.clone()))
            .collect();
        assert_eq!(peer_of(&certs, &endpoint(3).certificate), Some(3));
        assert_eq!(peer_of(&certs, &endpoint(0).certificate), Some(0));
        // A certificate nobody listed (whatever an absent slot's holder
        // might present) names no peer.
        assert_eq!(peer_of(&certs, &endpoint(2).certificate), None);
    }
}
