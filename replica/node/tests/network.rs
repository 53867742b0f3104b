//! Four replicas over real QUIC on loopback, in one process: digests
//! submitted through the client library are ordered, every receipt verifies
//! against the trust anchor, a subscription sees the log exactly once and in
//! order across a forced reconnect, the head stream is verified and
//! consistent, and the nodes shut down gracefully.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::{ClientOptions, Fanout};
use belfry_replica::timestamp::{verify_receipt, Entry};
use std::collections::BTreeSet;
use std::time::Duration;

/// Reads the subscription until every digest of `want` was seen; checks
/// that indices continue exactly from `next`.
async fn read_until(
    sub: &mut belfry_client::Subscription,
    next: &mut u64,
    seen: &mut Vec<Entry>,
    want: &[[u8; 32]],
) {
    let mut missing: BTreeSet<[u8; 32]> = want.iter().copied().collect();
    for e in seen.iter() {
        if let Entry::Digest(d) = e {
            missing.remove(&d.digest);
        }
    }
    while !missing.is_empty() {
        let (i, e) = tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("the stream stalled")
            .expect("the stream ended");
        assert_eq!(i, *next, "the stream skipped or repeated an index");
        *next += 1;
        if let Entry::Digest(d) = &e {
            missing.remove(&d.digest);
        }
        seen.push(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_over_quic_order_stamp_and_stream_exactly_once() {
    let cluster = common::start(4, 1, Default::default).await;
    let client = cluster.client(ClientOptions::default());
    let anchor = client.anchor();
    let mut sub = client.subscribe(0);
    let mut heads = client.heads();

    // Digests are ordered and every receipt verifies offline.
    let first = common::digests("net-first", 0, 300);
    let receipts = client.stamp(&first).await.unwrap();
    assert_eq!(receipts.len(), first.len());
    for (r, d) in receipts.iter().zip(&first) {
        let v = verify_receipt(r, &anchor).unwrap();
        assert!(matches!(v.entry, Entry::Digest(e) if e.digest == *d));
    }
    // Receipts came in bundles, each distinct head verified once: far
    // fewer pairings than receipts (one per receipt without the cache; how
    // many heads the cluster signs meanwhile depends on the machine's load,
    // 31 seen on a busy one, so the bound is half the receipts).
    let pairings = client.head_cache().pairings();
    assert!(
        pairings * 2 < receipts.len() as u64,
        "{pairings} pairings for {} receipts",
        receipts.len()
    );

    let (mut next, mut seen) = (0u64, Vec::new());
    read_until(&mut sub, &mut next, &mut seen, &first).await;

    // A forced reconnect: the stream resumes where it was.
    client.disconnect_all().await;
    let second = common::digests("net-second", 0, 200);
    let mut one = cluster.client(ClientOptions {
        fanout: Fanout::One,
        ..ClientOptions::default()
    });
    let receipts = one.stamp(&second).await.unwrap();
    for r in &receipts {
        verify_receipt(r, &anchor).unwrap();
    }
    one = cluster.client(ClientOptions {
        fanout: Fanout::FPlusOne,
        ..ClientOptions::default()
    });
    let third = common::digests("net-third", 0, 50);
    assert_eq!(one.stamp(&third).await.unwrap().len(), third.len());
    client.disconnect_all().await;
    read_until(&mut sub, &mut next, &mut seen, &second).await;
    read_until(&mut sub, &mut next, &mut seen, &third).await;

    // Exactly once, in order: the stream is the log itself.
    let mut logged = BTreeSet::new();
    for e in &seen {
        if let Entry::Digest(d) = e {
            assert!(logged.insert(d.digest), "a digest seen twice");
        }
    }
    let replica = 2;
    let (from, page) = client.entries(replica, 0, seen.len() as u64).await.unwrap();
    assert_eq!(from, 0);
    assert_eq!(&page[..], &seen[..page.len()]);

    // Heads arrive verified and consistent with each other.
    let a = heads.next().await.unwrap().unwrap();
    let b = heads.next().await.unwrap().unwrap();
    assert!(b.head.tree_size > a.head.tree_size);
    client.consistency(1, &a, &b).await.unwrap();

    drop(sub);
    drop(heads);
    cluster.shutdown().await;
}
