//! A cluster of real nodes on loopback in one test process: each replica's
//! UDP socket is bound first (port 0), then the cluster files are generated
//! with those addresses, loaded as a node would load them, and the nodes
//! started as tasks over temporary data directories.

#![allow(dead_code, clippy::unwrap_used)]

use belfry_client::{Client, ClientOptions, ClusterInfo};
use belfry_node::{
    generate_cluster, ClusterFile, GenerateOptions, NodeOptions, ReplicaFile, RunningNode,
};
use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use std::net::UdpSocket;
use std::path::PathBuf;

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Option<RunningNode>>,
    pub replica_files: Vec<PathBuf>,
    pub info: ClusterInfo,
}

pub const GENESIS: Micros = Micros(1_763_700_000_000_000);

pub async fn start(n: usize, seed: u64, options: impl Fn() -> NodeOptions) -> TestCluster {
    let dir = tempfile::tempdir().unwrap();
    let sockets: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let addresses = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let generated = generate_cluster(
        dir.path(),
        &GenerateOptions {
            addresses,
            policy: Policy::Lamport,
            genesis_time: GENESIS,
            seed: Some(seed),
            tsa: None,
        },
    )
    .unwrap();
    let info = ClusterFile::load(&generated.cluster).unwrap().client_info();
    let mut nodes = Vec::new();
    for (path, socket) in generated.replicas.iter().zip(sockets) {
        let config = ReplicaFile::load(path).unwrap();
        let mut o = options();
        o.socket = Some(socket);
        nodes.push(Some(belfry_node::start(config, o).await.unwrap()));
    }
    TestCluster {
        dir,
        nodes,
        replica_files: generated.replicas,
        info,
    }
}

impl TestCluster {
    /// Waits until every running replica takes part in the rounds (a
    /// replica that starts without durable state observes first, until it
    /// has heard from a quorum of peers; see the broadcast node's rejoin
    /// rule).
    pub async fn joined(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let all = self
                .nodes
                .iter()
                .flatten()
                .all(|n| n.metrics().value("belfry_round").unwrap_or(0.0) > 0.0);
            if all {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replicas did not all join"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn client(&self, options: ClientOptions) -> Client {
        Client::new(self.info.clone(), options).unwrap()
    }

    pub async fn shutdown(mut self) {
        for n in self.nodes.iter_mut() {
            if let Some(node) = n.take() {
                node.shutdown().await.unwrap();
            }
        }
    }
}

pub fn digests(tag: &str, from: usize, count: usize) -> Vec<[u8; 32]> {
    (from..from + count)
        .map(|i| {
            let mut d = [0u8; 32];
            let t = tag.as_bytes();
            d[..t.len().min(16)].copy_from_slice(&t[..t.len().min(16)]);
            d[24..].copy_from_slice(&(i as u64).to_be_bytes());
            d
        })
        .collect()
}
