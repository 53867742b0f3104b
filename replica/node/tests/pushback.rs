//! Receipt pushes are flow-controlled, not a reason to disconnect (issue
//! #22): replicas whose clients' push queues hold only 2 MiB get 20,000
//! digests in one burst of 20 calls — about 14 MB of receipt pushes per
//! connection, 7 times the queue. Without flow control the first signed
//! head that covers the burst overflows the queue and the client is
//! disconnected as too slow (and resubmits, and it repeats); with it, every
//! receipt arrives and verifies and no client is ever closed as too slow.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::ClientOptions;
use belfry_node::NodeOptions;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_push_queue_is_pushed_without_a_disconnect() {
    let cluster = common::start(4, 31, || NodeOptions {
        client_queue_bytes: 2 * 1024 * 1024,
        ..NodeOptions::default()
    })
    .await;
    cluster.joined().await;
    let client = cluster.client(ClientOptions {
        stamp_timeout: Duration::from_secs(120),
        ..ClientOptions::default()
    });
    let ds = common::digests("pushback", 0, 20_000);
    let mut calls = tokio::task::JoinSet::new();
    for chunk in ds.chunks(1_000) {
        let client = client.clone();
        let chunk = chunk.to_vec();
        calls.spawn(async move { client.stamp(&chunk).await.map(|r| r.len()) });
    }
    let mut receipts = 0;
    while let Some(done) = calls.join_next().await {
        receipts += done.unwrap().unwrap();
    }
    assert_eq!(receipts, ds.len());
    for (i, node) in cluster.nodes.iter().flatten().enumerate() {
        let too_slow = node
            .metrics()
            .value("belfry_refused_total{reason=\"client_too_slow\"}")
            .unwrap_or(0.0);
        assert_eq!(too_slow, 0.0, "replica {i} closed a client as too slow");
    }
    // The queues were really that small: the largest a client's push
    // queue held stayed near it.
    let most = cluster
        .nodes
        .iter()
        .flatten()
        .map(|n| {
            n.metrics()
                .value("belfry_client_queue_bytes_max")
                .unwrap_or(0.0)
        })
        .fold(0.0, f64::max);
    assert!(most > 0.0 && most <= 2.0 * 2048.0 * 1024.0, "{most}");
    cluster.shutdown().await;
}
