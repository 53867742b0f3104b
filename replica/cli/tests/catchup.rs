//! Real processes: a replica whose data directory is empty (new, or
//! wiped) catches up a long log from `belfry node` processes. Three of
//! four replicas are bulk-loaded with 200,000 entries
//! (`bench/src/bulk.rs`, compiled in here so that the test runs the
//! `belfry` binary cargo builds for this package) — more than the 65,536
//! entries a catch-up holds in memory before it appends them to the log
//! store, so pages are streamed to the store. The cluster orders on top of
//! the bulk log; the empty replica starts, reaches the others' signed head,
//! agrees with them (a consistency proof, and the bulk entries
//! themselves), and logs a new stamp like every other replica.
//!
//! Deadlines are for liveness (minutes), never a timing assertion:
//! `belfry-bench catchup` measures.

// The test polls with wall-clock deadlines.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

// The bench crate's bulk loader: nothing but belfry-replica and
// belfry-node, which this package depends on too.
#[allow(dead_code)]
#[path = "../../../bench/src/bulk.rs"]
mod bulk;

use belfry_client::{Client, ClientOptions};
use belfry_replica::timestamp::{Entry, SignedTreeHead};
use procs::*;
use std::time::{Duration, Instant};

const N: usize = 4;
/// Entries in the bulk log: above the catch-up's in-memory buffer.
const ENTRIES: u64 = 200_000;
const SEED: u64 = 7;
const JOIN: Duration = Duration::from_secs(120);
const CATCH_UP: Duration = Duration::from_secs(300);
const NEW_STAMP: Duration = Duration::from_secs(120);

fn stamp_digest(tag: &[u8], k: u64) -> [u8; 32] {
    belfry_replica::coin::sha3(&[b"catchup test", tag, &k.to_be_bytes()])
}

/// The largest signed head of the replicas `which`.
async fn largest_head(client: &Client, which: std::ops::Range<usize>) -> SignedTreeHead {
    let mut best: Option<SignedTreeHead> = None;
    for r in which {
        if let Some(h) = client.tree_head(r).await.unwrap() {
            if best
                .as_ref()
                .is_none_or(|b| h.head.tree_size > b.head.tree_size)
            {
                best = Some(h);
            }
        }
    }
    best.expect("no replica has a signed head")
}

#[test]
fn an_empty_replica_catches_up_a_log_longer_than_its_catch_up_buffer() {
    let mut c = ProcCluster::keygen(N);
    let empty = N - 1;
    let data_dir = |i: usize| {
        belfry_node::ReplicaFile::load(&c.keys().join(format!("replica-{i}.toml")))
            .unwrap()
            .data_dir
    };
    let loaded = bulk::load(&c.keys().join("replica-0.toml"), ENTRIES, SEED, &mut |_| {}).unwrap();
    for i in 1..empty {
        bulk::copy(&loaded.data_dir, &data_dir(i)).unwrap();
    }
    for i in 0..empty {
        c.start_node(i);
    }
    // Loaded replicas are members at once (not observers).
    c.wait_joined(JOIN);

    let cluster = belfry_node::ClusterFile::load(&c.keys().join("cluster.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = {
        let _guard = runtime.enter();
        Client::new(
            cluster.client_info(),
            ClientOptions {
                stamp_timeout: Duration::from_secs(60),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    };

    // The cluster orders on top of the bulk log, until the first waves'
    // vertices are below every loaded replica's GC horizon (as in any
    // cluster with a long log; see bulk::PAST_GC_ROUND).
    let t = Instant::now();
    for call in 0u64.. {
        let before: Vec<[u8; 32]> = (0..5)
            .map(|k| stamp_digest(b"before", call * 5 + k))
            .collect();
        let receipts = runtime.block_on(client.stamp(&before)).unwrap();
        for r in &receipts {
            assert!(
                r.leaf_index >= ENTRIES,
                "a stamp on top of the bulk log was logged at {}",
                r.leaf_index
            );
        }
        let past = (0..empty)
            .all(|i| c.metric(i, "belfry_round").unwrap_or(0.0) >= bulk::PAST_GC_ROUND as f64);
        if past {
            break;
        }
        assert!(
            t.elapsed() < JOIN,
            "the loaded replicas' rounds did not move"
        );
    }
    let target = runtime.block_on(largest_head(&client, 0..empty));
    assert!(target.head.tree_size > ENTRIES);

    // The empty replica catches up to the others' signed head.
    c.start_node(empty);
    let started = Instant::now();
    let mine = loop {
        assert!(
            c.is_running(empty),
            "the empty replica exited:\n{}",
            c.log(empty)
        );
        for peer in 0..empty {
            let name = format!(
                "belfry_faults_total{{kind=\"catch_up_log_range_mismatch\",peer=\"r{peer}\"}}"
            );
            assert_eq!(
                c.metric(empty, &name),
                None,
                "honest peers' log pages do not verify against the empty replica's log (diverged):\n{}",
                c.log(empty)
            );
        }
        if let Ok(Some(h)) = runtime.block_on(client.tree_head(empty)) {
            if h.head.tree_size >= target.head.tree_size {
                break h;
            }
        }
        assert!(
            started.elapsed() < CATCH_UP,
            "the empty replica did not reach signed size {} within {CATCH_UP:?} (its log: {:?} entries):\n{}",
            target.head.tree_size,
            c.metric(empty, "belfry_log_size"),
            c.log(empty)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let streamed = c.metric(empty, "belfry_catchup_streamed");
    eprintln!(
        "caught up {} entries in {:.1} s (streamed: {streamed:?})",
        mine.head.tree_size,
        started.elapsed().as_secs_f64()
    );
    // A `belfry` that streams catch-up pages into the log did so here.
    if let Some(streamed) = streamed {
        assert!(streamed > 0.0, "no entry was streamed into the log");
    }

    // Its log is the others': a consistency proof between its head and
    // a serving replica's, and the bulk entries themselves.
    let theirs = runtime.block_on(client.tree_head(0)).unwrap().unwrap();
    let asked = if theirs.head.tree_size >= mine.head.tree_size {
        0
    } else {
        empty
    };
    runtime
        .block_on(client.consistency(asked, &mine, &theirs))
        .unwrap();
    for at in [0, ENTRIES / 2 + 1, ENTRIES - 2] {
        let (from, got) = runtime.block_on(client.entries(empty, at, at + 1)).unwrap();
        assert_eq!((from, got.len()), (at, 1), "entry {at}");
        match got[0] {
            Entry::Digest(d) => assert_eq!(d.digest, bulk::digest(SEED, at), "entry {at}"),
            other => panic!("entry {at} is not a bulk digest: {other:?}"),
        }
    }
    let (_, last) = runtime
        .block_on(client.entries(empty, ENTRIES - 1, ENTRIES))
        .unwrap();
    assert!(
        matches!(last.as_slice(), [Entry::Tick(t)] if t.wave == 0 && t.state_root == loaded.state_root),
        "the bulk log's last entry: {last:?}"
    );

    // A new stamp is logged by every replica, the caught-up one too, at
    // the same index.
    let d = stamp_digest(b"after", 0);
    runtime.block_on(client.stamp(&[d])).unwrap();
    let t = Instant::now();
    let mut at = vec![None; N];
    while at.iter().any(Option::is_none) {
        for (r, slot) in at.iter_mut().enumerate() {
            if slot.is_none() {
                if let Ok(Some(receipt)) = runtime.block_on(client.receipt(r, &d)) {
                    *slot = Some(receipt.leaf_index);
                }
            }
        }
        assert!(
            t.elapsed() < NEW_STAMP,
            "a new stamp was not logged by every replica within {NEW_STAMP:?}: {at:?}\n{}",
            c.log(empty)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let first = at[0].unwrap();
    assert!(first > ENTRIES);
    assert!(at.iter().all(|i| *i == Some(first)), "{at:?}");
}
