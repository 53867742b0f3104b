//! A `Submit` flood against one replica of a live 4-replica cluster on
//! loopback: eight connections of one client send 2,048-digest batches as
//! fast as they are answered. Every digest the replica answered as taken is
//! logged — none is dropped as over the sequencer's quota for digests only
//! one replica reported — the rest are refused with a clear error, an
//! honest client is served meanwhile, and the replica's pending digests and
//! client state return to nothing once the flood ends.
//!
//! The sequencer's weak quota is made small here (every replica alike, as
//! ordering requires) so that the test floods past it in seconds; the
//! default admission limits keep below the default quota the same way.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::session::Session;
use belfry_client::{ClientOptions, Fanout};
use belfry_node::NodeOptions;
use belfry_replica::timestamp::{verify_receipt, Entry};
use belfry_wire::{ClientError, ClientRequest, ClientResponse, CLIENT_ALPN};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// The sequencer's quota of digests one author alone reported, here.
const WEAK_QUOTA: usize = 8_192;
/// Connections of the flooding client.
const FLOOD_CONNECTIONS: usize = 8;
/// Batches per connection, of `BATCH` digests each.
const BATCHES: usize = 8;
const BATCH: usize = 2_048;

fn options() -> NodeOptions {
    NodeOptions {
        tune: Some(|c| c.sequencer.max_weak_per_author = WEAK_QUOTA),
        ..NodeOptions::default()
    }
}

fn metric(node: &belfry_node::RunningNode, name: &str) -> f64 {
    node.metrics().value(name).unwrap_or(0.0)
}

/// One flooding connection: sends its batches one after the other and
/// returns the digests the replica took (all of an `Accepted` batch, the
/// first `taken` of a refused one) and the refusals.
async fn flood(
    info: belfry_client::ClusterInfo,
    endpoint: quinn::Endpoint,
    k: usize,
) -> (Vec<[u8; 32]>, usize) {
    let crypto = belfry_client::tls::client_config(
        info.replicas[0].as_ref().unwrap().certificate.clone(),
        None,
        CLIENT_ALPN,
    )
    .unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));
    let session = Session::new(
        0,
        info.replicas[0].as_ref().unwrap().address,
        endpoint,
        config,
        Duration::from_secs(30),
    );
    let (mut taken, mut refused) = (Vec::new(), 0);
    for b in 0..BATCHES {
        let ds = common::digests("flood", (k * BATCHES + b) * BATCH, BATCH);
        let n = match session.call(ClientRequest::Submit(ds.clone())).await {
            Ok(ClientResponse::Accepted {
                accepted,
                duplicates,
            }) => (accepted + duplicates) as usize,
            Ok(ClientResponse::Error(
                ClientError::Backpressure { taken, .. } | ClientError::ClientLimit { taken, .. },
            )) => {
                refused += 1;
                taken as usize
            }
            other => panic!("flood connection {k}: unexpected answer {other:?}"),
        };
        taken.extend_from_slice(&ds[..n]);
    }
    session.disconnect().await;
    (taken, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_digest_a_flooded_replica_takes_is_logged_and_its_memory_returns() {
    belfry_node::init_tracing();
    let cluster = common::start(4, 5, options).await;
    cluster.joined().await;
    let info = cluster.info.clone();
    let target = cluster.nodes[0].as_ref().unwrap();
    let honest = cluster.client(ClientOptions {
        fanout: Fanout::All,
        stamp_timeout: Duration::from_secs(120),
        ..ClientOptions::default()
    });
    honest.stamp(&common::digests("warm", 0, 20)).await.unwrap();

    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let floods: Vec<_> = (0..FLOOD_CONNECTIONS)
        .map(|k| tokio::spawn(flood(info.clone(), endpoint.clone(), k)))
        .collect();
    // An honest client is served during the flood, by every replica.
    let ds = common::digests("honest", 0, 200);
    for r in honest.stamp(&ds).await.unwrap() {
        verify_receipt(&r, &honest.anchor()).unwrap();
    }
    let (mut taken, mut refused) = (BTreeSet::new(), 0);
    for f in floods {
        let (t, r) = f.await.unwrap();
        taken.extend(t);
        refused += r;
    }
    let offered = FLOOD_CONNECTIONS * BATCHES * BATCH;
    eprintln!(
        "flood: {offered} digests offered, {} taken, {refused} requests refused",
        taken.len()
    );
    assert!(!taken.is_empty(), "the replica took none of the flood");
    assert!(
        refused > 0 && taken.len() < offered,
        "the flood met no admission limit ({} of {offered} taken)",
        taken.len()
    );

    // Everything taken gets logged: the replica's pending digests drain to
    // nothing (bounded wait; the flood is over).
    let mut waited = 0;
    while metric(target, "belfry_pending_digests") > 0.0 && waited < 1_200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(
        metric(target, "belfry_pending_digests"),
        0.0,
        "digests the flooded replica took are still not logged (log size {})",
        metric(target, "belfry_log_size")
    );
    // Each one is in the log (read back from the replica itself).
    let size = metric(target, "belfry_log_size") as u64;
    let mut logged = BTreeSet::new();
    let mut from = 0;
    while from < size {
        let (start, entries) = honest.entries(0, from, size).await.unwrap();
        assert_eq!(start, from);
        assert!(!entries.is_empty());
        from += entries.len() as u64;
        logged.extend(entries.into_iter().filter_map(|e| match e {
            Entry::Digest(d) => Some(d.digest),
            Entry::Tick(_) => None,
        }));
    }
    let missing = taken.iter().filter(|d| !logged.contains(*d)).count();
    assert_eq!(missing, 0, "{missing} taken digests are not in the log");
    // Nothing is kept for the flooding client once it is gone.
    assert_eq!(metric(target, "belfry_client_outstanding"), 0.0);
    cluster.shutdown().await;
}
