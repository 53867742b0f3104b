//! Operating a node: the configuration loader refuses what it must (a
//! secret file others can read, a TLS key or a key share that is not this
//! replica's, an anchor that is not the keys' group key); the Prometheus
//! endpoint answers; a graceful shutdown closes connections with a reason;
//! clients fail over from a replica that is down and, without a quorum,
//! time out saying how many replicas answered; replicas restart from their
//! files and rejoin the mesh.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::ClientOptions;
use belfry_node::{ClusterFile, ConfigError, NodeOptions, ReplicaFile};
use belfry_replica::timestamp::verify_receipt;
use std::io::{Read, Write};
use std::time::Duration;

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_loader_refuses_exposed_or_mismatched_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = (0..4).map(|i| format!("127.0.0.1:{}", 7100 + i)).collect();
    let g = belfry_node::generate_cluster(
        dir.path(),
        &belfry_node::GenerateOptions {
            addresses,
            policy: belfry_replica::coin::Policy::Lamport,
            genesis_time: common::GENESIS,
            seed: Some(3),
            tsa: None,
        },
    )
    .unwrap();
    let cluster = ClusterFile::load(&g.cluster).unwrap();
    assert_eq!(cluster.replicas.len(), 4);
    let config = ReplicaFile::load(&g.replicas[2]).unwrap();
    assert_eq!(config.id.0, 2);
    assert_eq!(config.data_dir, dir.path().join("data-2"));

    // Readable by group or others: refused.
    set_mode(&g.replicas[0], 0o640);
    assert!(matches!(
        ReplicaFile::load(&g.replicas[0]),
        Err(ConfigError::Exposed { .. })
    ));
    set_mode(&g.replicas[0], 0o600);

    let text = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let swap_field = |into: &std::path::Path, from: &std::path::Path, field: &str| {
        let mut a: toml::Table = toml::from_str(&text(into)).unwrap();
        let b: toml::Table = toml::from_str(&text(from)).unwrap();
        a.insert(field.to_string(), b[field].clone());
        let out = dir.path().join("mixed.toml");
        belfry_node::generate::write_file(&out, &toml::to_string(&a).unwrap(), true).unwrap();
        ReplicaFile::load(&out)
    };
    // Replica 1's TLS key with replica 0's certificate.
    let e = swap_field(&g.replicas[0], &g.replicas[1], "tls_key").unwrap_err();
    assert!(e.to_string().contains("tls_key"), "{e}");
    // Replica 1's key share as replica 0's.
    let e = swap_field(&g.replicas[0], &g.replicas[1], "secret_share").unwrap_err();
    assert!(e.to_string().contains("secret_share"), "{e}");

    // An anchor that is not the group key of the public keys.
    let mut c: toml::Table = toml::from_str(&text(&g.cluster)).unwrap();
    let other = belfry_replica::coin::TrustAnchor(
        belfry_world::LocalCluster::with_bls(
            4,
            belfry_replica::coin::Policy::Lamport,
            common::GENESIS,
            1,
        )
        .unwrap()
        .0
        .cluster
        .group_public_key,
    );
    c.insert("trust_anchor".into(), other.to_string().into());
    let bad = dir.path().join("bad-cluster.toml");
    std::fs::write(&bad, toml::to_string(&c).unwrap()).unwrap();
    let e = ClusterFile::load(&bad).unwrap_err();
    assert!(e.to_string().contains("trust_anchor"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_graceful_shutdown_and_restart() {
    let mut cluster = common::start(4, 4, NodeOptions::default).await;
    let client = cluster.client(ClientOptions::default());
    let first = common::digests("operate", 0, 100);
    client.stamp(&first).await.unwrap();
    // Every replica takes part before one is taken down (so the other
    // three still make a quorum).
    cluster.joined().await;

    // Restart node 1 with a metrics endpoint, from its files.
    let node = cluster.nodes[1].take().unwrap();
    let addr = node.local_addr().unwrap();
    let log_before = node.metrics().value("belfry_log_size").unwrap();
    // A connection open during the shutdown is closed with the reason.
    assert!(client.tree_head(1).await.unwrap().is_some());
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let crypto = belfry_client::tls::client_config(
        cluster.info.replicas[1]
            .as_ref()
            .unwrap()
            .certificate
            .clone(),
        None,
        belfry_wire::CLIENT_ALPN,
    )
    .unwrap();
    let conn = ep
        .connect_with(
            quinn::ClientConfig::new(std::sync::Arc::new(crypto)),
            addr,
            "replica-1.belfry",
        )
        .unwrap()
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, belfry_wire::close::SHUTTING_DOWN.into());
            assert_eq!(&c.reason[..], b"shutting down");
        }
        other => panic!("{other:?}"),
    }

    // With replica 1 down: every replica asked, three answer, all stamped.
    let down = common::digests("operate-down", 0, 20);
    assert_eq!(client.stamp(&down).await.unwrap().len(), down.len());
    // Asking only replica 1 first, the client fails over to another.
    let one = cluster.client(ClientOptions {
        fanout: belfry_client::Fanout::One,
        first_replica: Some(1),
        retry_interval: Duration::from_millis(300),
        ..ClientOptions::default()
    });
    let over = common::digests("operate-over", 0, 20);
    assert_eq!(one.stamp(&over).await.unwrap().len(), over.len());
    // With replica 2 down as well there is no quorum: the stamp times out
    // and says how many replicas answered.
    let node2 = cluster.nodes[2].take().unwrap();
    let addr2 = node2.local_addr().unwrap();
    node2.shutdown().await.unwrap();
    let short = cluster.client(ClientOptions {
        stamp_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    });
    match short.stamp(&common::digests("operate-stuck", 0, 5)).await {
        Err(belfry_client::Error::Timeout {
            answered,
            asked,
            missing,
        }) => assert_eq!((answered, asked, missing), (2, 4, 5)),
        other => panic!("{other:?}"),
    }
    let config2 = ReplicaFile::load(&cluster.replica_files[2]).unwrap();
    let socket2 = std::net::UdpSocket::bind(addr2).unwrap();
    cluster.nodes[2] = Some(
        belfry_node::start(
            config2,
            NodeOptions {
                socket: Some(socket2),
                ..NodeOptions::default()
            },
        )
        .await
        .unwrap(),
    );

    let mut config = ReplicaFile::load(&cluster.replica_files[1]).unwrap();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let socket = std::net::UdpSocket::bind(addr).unwrap();
    let node = belfry_node::start(
        config,
        NodeOptions {
            socket: Some(socket),
            ..NodeOptions::default()
        },
    )
    .await
    .unwrap();
    // It kept its log (the metric is set once its host has taken its
    // first turn), and it rejoins: new digests get receipts from all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.metrics().value("belfry_log_size").unwrap_or(0.0) < log_before {
        assert!(tokio::time::Instant::now() < deadline, "the log was lost");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics_addr = node.metrics_addr().unwrap();
    cluster.nodes[1] = Some(node);
    let second = common::digests("operate-2", 0, 100);
    for r in client.stamp(&second).await.unwrap() {
        verify_receipt(&r, &client.anchor()).unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = client.receipts(1, &second).await.unwrap();
        if got.len() == second.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica 1 did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The Prometheus endpoint.
    let body = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(metrics_addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"));
    for name in [
        "belfry_commits_total",
        "belfry_round",
        "belfry_wave",
        "belfry_pending_digests",
        "belfry_fsync_seconds_bucket",
        "belfry_submit_to_ordered_seconds_bucket",
        "belfry_submit_to_signed_seconds_bucket",
        "belfry_peer_bytes_in_total{peer=\"2\"}",
        "belfry_peer_bytes_out_total{peer=\"2\"}",
        "belfry_queue_bytes{queue=\"peer-3\"}",
    ] {
        assert!(body.contains(name), "{name} missing from\n{body}");
    }
    cluster.shutdown().await;
}

/// A replica answers each client's reads out of a byte budget; the client
/// library waits as told and asks again, so reads past the budget are slow
/// but succeed, and the replica counts what it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_past_the_client_budget_wait_and_succeed() {
    fn options() -> NodeOptions {
        NodeOptions {
            tune: Some(|c| {
                c.client_read_bytes_per_s = 32 * 1024;
                c.client_read_burst_bytes = 32 * 1024;
            }),
            ..NodeOptions::default()
        }
    }
    let cluster = common::start(4, 5, options).await;
    let client = cluster.client(ClientOptions::default());
    let ds = common::digests("reads", 0, 400);
    client.stamp(&ds).await.unwrap();
    let mut bytes = 0usize;
    for _ in 0..8 {
        let (from, entries) = client.entries(0, 0, 400).await.unwrap();
        assert_eq!(from, 0);
        assert_eq!(entries.len(), 400, "a full page each time");
        bytes += entries.len();
    }
    assert_eq!(bytes, 8 * 400);
    let node = cluster.nodes[0].as_ref().unwrap();
    let refused = node.metrics().value("belfry_client_reads_refused").unwrap();
    let read = node.metrics().value("belfry_client_read_bytes").unwrap();
    assert!(refused >= 1.0, "{refused} reads refused");
    assert!(read > 64.0 * 1024.0, "{read} bytes read");
    cluster.shutdown().await;
}
