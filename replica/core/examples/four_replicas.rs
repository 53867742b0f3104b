//! Four replicas in memory, one process, simulated time: stamp a few
//! digests and print a receipt verified with the trust anchor alone.
//!
//! ```sh
//! cargo run --release -p belfry-replica --example four_replicas
//! ```
//!
//! Each replica is the same `Host` and `ReplicaCore` the node runs
//! (docs/architecture.md); `LocalCluster` only routes what a turn releases
//! over a seeded, simulated network. The keys are dealt here (real threshold
//! BLS); a real cluster makes them with `belfry keygen`.

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::verify_receipt;
use belfry_replica::wire::ClientRequest;
use belfry_world::LocalCluster;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let genesis = Micros(1_763_700_000_000_000);
    let (mut cluster, _keys) = LocalCluster::with_bls(4, Policy::Lamport, genesis, 7)?;
    let digests: Vec<[u8; 32]> = (0u8..5).map(|k| [k; 32]).collect();
    // A client submits to every replica (what the client library does).
    cluster.request_all(1, &ClientRequest::Submit(digests.clone()));
    let deadline = genesis.saturating_add(Micros::from_secs(30));
    cluster.run_until(deadline, |c| c.stamped(0, &digests));
    let core = cluster.core(0).ok_or("replica 0 is not running")?;
    let receipt = core
        .receipt(&digests[0])
        .ok_or("digest 0 was not stamped within 30 simulated seconds")?;
    let verified = verify_receipt(&receipt, &cluster.anchor())?;
    println!("trust anchor: {}", cluster.anchor());
    println!(
        "digest {} is leaf {} of the log of size {}, signed at {} µs since the epoch",
        hex::encode(digests[0]),
        verified.leaf_index,
        verified.tree_size,
        verified.time.0
    );
    println!(
        "receipt (JSON):\n{}",
        serde_json::to_string_pretty(&receipt.to_json())?
    );
    Ok(())
}
