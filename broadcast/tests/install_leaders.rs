//! Catch-up within `gc_depth` from committed leaders (`Input::InstallLeaders`):
//! a lagging node given the leaders (as verified Ticks name them) and a
//! peer's vertices orders exactly the batches the others ordered; a peer's
//! forged vertex, an unreachable leader or a coin signature that does not
//! verify gets nothing ordered.

#![allow(clippy::unwrap_used)]

use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{GroupSignature, ReplicaId, Wave};
use belfry_broadcast::{CommittedBatch, Input, Report, Vertex, VertexHash};
use belfry_world::nodes::*;

type Leaders = Vec<(Wave, GroupSignature, VertexHash)>;

/// Node 3 falls behind; the others order several more waves. Returns the
/// network, the leaders node 3 misses and node 0's vertices for them.
fn lagging() -> (Net, Leaders, Vec<Vertex>, Vec<CommittedBatch>) {
    let mut net = Net::new(4, 1, 9, vec![Behaviour::Honest; 4]);
    net.run_until(Micros::from_millis(200), |net| net.decided(3) >= Wave(2));
    net.network.cut_off.insert(3);
    let target = Wave(net.decided(0).0 + 5);
    net.run_until(Micros::from_secs(10), |net| net.decided(0) >= target);
    let behind = net.decided(3);
    let missed: Vec<CommittedBatch> = net.outputs[0]
        .iter()
        .filter(|b| b.wave > behind)
        .cloned()
        .collect();
    assert!(
        missed.len() >= 3,
        "node 3 misses {} batches only",
        missed.len()
    );
    let leaders: Leaders = missed
        .iter()
        .map(|b| (b.wave, b.coin.signature, b.leader.hash))
        .collect();
    let floor = net.nodes[3].as_ref().unwrap().dag().horizon();
    let hashes: Vec<VertexHash> = leaders.iter().map(|l| l.2).collect();
    let vertices = net.nodes[0]
        .as_ref()
        .unwrap()
        .leader_histories(&hashes, floor)
        .expect("node 0 still holds the leaders");
    let vertices = vertices.iter().map(|v| (**v).clone()).collect();
    (net, leaders, vertices, missed)
}

fn install(net: &mut Net, leaders: Leaders, vertices: Vec<Vertex>) -> usize {
    let before = net.outputs[3].len();
    net.input(
        3,
        Input::InstallLeaders {
            from: ReplicaId(0),
            leaders,
            vertices,
        },
    );
    net.outputs[3].len() - before
}

#[test]
fn the_lagging_node_orders_exactly_the_batches_the_others_ordered() {
    let (mut net, leaders, vertices, missed) = lagging();
    let got = install(&mut net, leaders, vertices);
    assert_eq!(got, missed.len());
    let mine: Vec<_> = net.outputs[3][net.outputs[3].len() - got..]
        .iter()
        .map(summary)
        .collect();
    let theirs: Vec<_> = missed.iter().map(summary).collect();
    assert_eq!(mine, theirs);
    assert_eq!(net.decided(3), missed.last().unwrap().wave);
}

#[test]
fn a_forged_vertex_is_not_taken_and_nothing_is_ordered_past_it() {
    let (mut net, leaders, mut vertices, _) = lagging();
    // Change the first leader's body: its hash no longer matches the Tick.
    let first = leaders[0].2;
    let v = vertices.iter_mut().find(|v| v.hash() == first).unwrap();
    v.reports.push(Report {
        digest: belfry_broadcast::Digest([7; 32]),
        recv_time: Micros(1),
    });
    assert_eq!(install(&mut net, leaders, vertices), 0);
}

#[test]
fn a_coin_signature_that_does_not_verify_orders_nothing_and_is_a_fault() {
    let (mut net, mut leaders, vertices, _) = lagging();
    leaders[0].1 = GroupSignature([9; 96]);
    let faults_before = net.faults[3].len();
    assert_eq!(install(&mut net, leaders, vertices), 0);
    assert!(net.faults[3].len() > faults_before);
}

#[test]
fn vertices_no_leader_reaches_are_ignored() {
    let (mut net, leaders, mut vertices, missed) = lagging();
    // A peer pads the answer with a vertex of its own invention.
    let mut junk = vertices[0].clone();
    junk.reports.push(Report {
        digest: belfry_broadcast::Digest([8; 32]),
        recv_time: Micros(2),
    });
    let junk_hash = junk.hash();
    vertices.push(junk);
    assert_eq!(install(&mut net, leaders, vertices), missed.len());
    assert!(net.nodes[3]
        .as_ref()
        .unwrap()
        .dag()
        .get(&junk_hash)
        .is_none());
}
