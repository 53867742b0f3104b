//! No panics across the network: arbitrary frames from peers and clients are
//! answered with faults or errors, and the replica keeps working.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::coin::{ClusterParams, MockCrypto, Policy, ReplicaId, ThresholdCrypto};
use belfry_replica::wire::{self, ClientRequest, ClientResponse};
use belfry_replica::{CoreInput, ReplicaConfig, ReplicaCore};
use common::GENESIS;
use proptest::prelude::*;
use std::sync::Arc;

fn core() -> ReplicaCore {
    // Any valid group key will do: the mock crypto never uses it.
    let key = belfry_replica::coin::GroupPublicKey::from_hex(
        "908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0",
    )
    .unwrap();
    let cluster = ClusterParams {
        group_public_key: key,
        n: 4,
        f: 1,
        policy: Policy::Lamport,
        genesis_time: GENESIS,
    };
    let crypto: Arc<dyn ThresholdCrypto> = Arc::new(MockCrypto::new(4, 1, ReplicaId(0), [1; 32]));
    let mut c = ReplicaCore::new(ReplicaConfig::new(ReplicaId(0), cluster), crypto);
    let _ = c.handle(GENESIS, CoreInput::Start);
    c
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = vec![wire::FRAME_VERSION];
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic_a_replica(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        from in 0u16..6,
        raw in any::<bool>(),
    ) {
        let mut c = core();
        for b in &bodies {
            let frame = if raw { b.clone() } else { framed(b) };
            let _ = c.handle(GENESIS, CoreInput::Peer { from: ReplicaId(from), frame: frame.clone() });
            let _ = c.handle(GENESIS, CoreInput::Client { client: 3, frame });
        }
        // Still serving: a well-formed request gets a well-formed answer.
        let step = c.handle(GENESIS, CoreInput::Client { client: 4, frame: wire::encode(&ClientRequest::TreeHead).unwrap() });
        let reply = wire::decode::<ClientResponse>(&step.to_clients.last().unwrap().1).unwrap();
        prop_assert!(matches!(reply, ClientResponse::TreeHead(_)));
    }
}
