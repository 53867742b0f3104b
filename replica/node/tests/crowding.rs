//! Clients that crowd a replica's connections do not keep its peers out
//! (issue #29, item 3): a client holding every client slot of replicas 2
//! and 3 while replicas 0 and 1 restart, and a client over its per-address
//! limit. The restarted peers reconnect and the cluster keeps ordering.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::{ClientOptions, Fanout};
use belfry_node::{NodeOptions, ReplicaFile};
use belfry_replica::timestamp::verify_receipt;
use belfry_wire::{close, decode_message, encode_call, ClientCall, ClientMessage, ClientRequest};
use std::sync::Arc;
use std::time::Duration;

/// Client connections per replica in these tests.
const MAX_CLIENTS: usize = 8;

/// Every waiting loop gives up after this long.
const PATIENCE: Duration = Duration::from_secs(60);

fn metric(node: &belfry_node::RunningNode, name: &str) -> f64 {
    node.metrics().value(name).unwrap_or(0.0)
}

/// How a client connection ended up.
enum Held {
    /// Served: it answered a call.
    Served(quinn::Connection),
    /// Closed by the replica with this code (`None`: refused during the
    /// handshake) and reason.
    Refused(Option<u64>, String),
}

/// Connects to replica `r` as a client and makes one call, to learn whether
/// the replica serves the connection.
async fn hold(ep: &quinn::Endpoint, info: &belfry_client::ClusterInfo, r: usize) -> Held {
    let crypto = belfry_client::tls::client_config(
        info.replicas[r].as_ref().unwrap().certificate.clone(),
        None,
        belfry_wire::CLIENT_ALPN,
    )
    .unwrap();
    let connecting = ep
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            info.replicas[r].as_ref().unwrap().address,
            &belfry_client::tls::server_name(r as u16),
        )
        .unwrap();
    let conn = match tokio::time::timeout(PATIENCE, connecting).await.unwrap() {
        Ok(c) => c,
        Err(e) => return Held::Refused(None, e.to_string()),
    };
    let call = async {
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        let frame = encode_call(&ClientCall {
            id: 1,
            request: ClientRequest::TreeHead,
        })
        .ok()?;
        send.write_all(&frame).await.ok()?;
        let mut header = [0u8; 5];
        recv.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut answer = vec![0u8; 5 + len];
        answer[..5].copy_from_slice(&header);
        recv.read_exact(&mut answer[5..]).await.ok()?;
        decode_message(&answer).ok()
    };
    match tokio::time::timeout(PATIENCE, call).await.unwrap() {
        Some(ClientMessage::Answer { .. }) => Held::Served(conn),
        other => match conn.close_reason() {
            Some(quinn::ConnectionError::ApplicationClosed(c)) => Held::Refused(
                Some(c.error_code.into_inner()),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            reason => panic!("neither served nor refused: {other:?}, {reason:?}"),
        },
    }
}

/// Opens client connections to replica `r` until it refuses one; returns
/// the served ones and how the refused one was closed.
async fn crowd(
    ep: &quinn::Endpoint,
    info: &belfry_client::ClusterInfo,
    r: usize,
) -> (Vec<quinn::Connection>, Option<u64>, String) {
    let mut held = Vec::new();
    for _ in 0..4 * MAX_CLIENTS {
        match hold(ep, info, r).await {
            Held::Served(c) => held.push(c),
            Held::Refused(code, reason) => return (held, code, reason),
        }
    }
    panic!("replica {r} served {} client connections", held.len());
}

/// Stops replica `i` and starts it again on the same address and data.
async fn restart(cluster: &mut common::TestCluster, i: usize, options: fn() -> NodeOptions) {
    let node = cluster.nodes[i].take().unwrap();
    let addr = node.local_addr().unwrap();
    node.shutdown().await.unwrap();
    let config = ReplicaFile::load(&cluster.replica_files[i]).unwrap();
    let mut o = options();
    // The old endpoint lets go of its socket once its last connection is
    // gone, which may take a moment after the shutdown.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let socket = loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(s) => break s,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "{addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    o.socket = Some(socket);
    cluster.nodes[i] = Some(belfry_node::start(config, o).await.unwrap());
}

fn connects(cluster: &common::TestCluster, at: usize, peer: usize) -> f64 {
    metric(
        cluster.nodes[at].as_ref().unwrap(),
        &format!("belfry_peer_connects_total{{peer=\"{peer}\"}}"),
    )
}

/// Waits until replica `at` has connected to `peer` more than `before`
/// times.
async fn reconnected(cluster: &common::TestCluster, at: usize, peer: usize, before: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while connects(cluster, at, peer) <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica {peer} did not reconnect to replica {at}; refused there: {}",
            cluster.nodes[at]
                .as_ref()
                .unwrap()
                .metrics()
                .encode()
                .lines()
                .filter(|l| l.starts_with("belfry_refused_total"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stamps through replica 0 only, and checks every receipt.
async fn orders(cluster: &common::TestCluster, tag: &str) {
    let client = cluster.client(ClientOptions {
        fanout: Fanout::One,
        first_replica: Some(0),
        stamp_timeout: PATIENCE,
        ..ClientOptions::default()
    });
    let ds = common::digests(tag, 0, 20);
    let receipts = client.stamp(&ds).await.unwrap();
    assert_eq!(receipts.len(), ds.len());
    for r in &receipts {
        verify_receipt(r, &client.anchor()).unwrap();
    }
}

fn crowded_options() -> NodeOptions {
    NodeOptions {
        max_clients: MAX_CLIENTS,
        // One address may take every client slot.
        max_clients_per_address: 2 * MAX_CLIENTS,
        ..NodeOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_every_client_slot_does_not_keep_restarted_peers_out() {
    belfry_node::init_tracing();
    let mut cluster = common::start(4, 31, crowded_options).await;
    cluster.joined().await;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut held = Vec::new();
    let mut refusals = Vec::new();
    for r in [2, 3] {
        let (conns, code, reason) = crowd(&ep, &cluster.info, r).await;
        refusals.push((r, conns.len(), code, reason));
        held.extend(conns);
    }

    let before: Vec<Vec<f64>> = (0..4)
        .map(|at| (0..4).map(|p| connects(&cluster, at, p)).collect())
        .collect();
    restart(&mut cluster, 0, crowded_options).await;
    restart(&mut cluster, 1, crowded_options).await;
    for (at, peer) in [(2, 0), (2, 1), (3, 0), (3, 1)] {
        reconnected(&cluster, at, peer, before[at][peer]).await;
    }
    cluster.joined().await;
    orders(&cluster, "crowded").await;
    // The attack held every client slot throughout; the connection after
    // them was refused once its handshake said it was a client.
    assert!(held.iter().all(|c| c.close_reason().is_none()));
    for (r, served, code, reason) in refusals {
        assert_eq!(served, MAX_CLIENTS, "replica {r}");
        assert_eq!(code, Some(close::BUSY.into()), "{reason}");
        assert!(reason.contains("limit of 8 clients"), "{reason}");
        let node = cluster.nodes[r].as_ref().unwrap();
        assert!(metric(node, "belfry_refused_total{reason=\"busy\"}") >= 1.0);
    }
    drop(held);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_address_limit_is_refused_while_peers_connect() {
    const PER_ADDRESS: usize = 3;
    fn options() -> NodeOptions {
        NodeOptions {
            max_clients: MAX_CLIENTS,
            max_clients_per_address: PER_ADDRESS,
            ..NodeOptions::default()
        }
    }
    belfry_node::init_tracing();
    let mut cluster = common::start(4, 32, options).await;
    cluster.joined().await;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let (held, code, reason) = crowd(&ep, &cluster.info, 2).await;
    assert_eq!(held.len(), PER_ADDRESS);
    assert_eq!(code, Some(close::BUSY.into()), "{reason}");
    assert!(reason.contains("from this address (at most 3)"), "{reason}");
    // A second client from the same address (another endpoint, another
    // port) is refused too.
    let other = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    assert!(matches!(
        hold(&other, &cluster.info, 2).await,
        Held::Refused(Some(code), _) if code == u64::from(close::BUSY)
    ));
    let node = cluster.nodes[2].as_ref().unwrap();
    assert!(metric(node, "belfry_refused_total{reason=\"per_address\"}") >= 2.0);
    assert_eq!(metric(node, "belfry_refused_total{reason=\"busy\"}"), 0.0);

    // Peers from that same address still connect.
    let before = connects(&cluster, 2, 0);
    restart(&mut cluster, 0, options).await;
    reconnected(&cluster, 2, 0, before).await;
    cluster.joined().await;
    orders(&cluster, "per-address").await;
    assert!(held.iter().all(|c| c.close_reason().is_none()));
    drop(held);
    cluster.shutdown().await;
}
