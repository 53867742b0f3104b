//! A node whose tokio runtime goes away without a graceful shutdown (an
//! embedding program that returns from `main`, a test that fails) must not
//! panic on its host thread: the host waits on timers of its own, and stops
//! once the node's handle is dropped as well. Its own process, so that no other
//! test's host threads are counted.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::ClientOptions;
use belfry_node::NodeOptions;
use std::sync::Mutex;
use std::time::Duration;

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn host_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .map(|name| name.starts_with("belfry-host"))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn the_host_thread_stops_without_a_panic_when_the_runtime_is_dropped() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        PANICS.lock().unwrap().push(format!("{name}: {info}"));
        previous(info);
    }));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt.block_on(async {
        let cluster = common::start(4, 11, NodeOptions::default).await;
        let client = cluster.client(ClientOptions::default());
        client.stamp(&common::digests("gone", 0, 50)).await.unwrap();
        cluster
    });
    assert_eq!(host_threads(), 4, "one host thread per replica");

    // No shutdown: the runtime (with every connection task) goes first,
    // then the nodes themselves.
    drop(rt);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(host_threads(), 4, "the hosts wait for their nodes' handles");
    drop(cluster);
    // Up to 30 s, in steps of 20 ms.
    for _ in 0..1_500 {
        if host_threads() == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(host_threads(), 0, "the host threads stopped");
    let panics = PANICS.lock().unwrap().clone();
    assert!(panics.is_empty(), "{panics:#?}");
}
