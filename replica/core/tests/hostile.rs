//! No panics across the network: arbitrary frames from peers and clients are
//! answered with faults or errors, and the replica keeps working.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::coin::{ClusterParams, MockCrypto, Policy, ReplicaId, ThresholdCrypto};
use belfry_replica::wire::{self, ClientMessage, ClientRequest, ClientResponse};
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
        let reply = wire::decode_message(&step.to_clients.last().unwrap().1).unwrap();
        let is_head = matches!(reply, ClientMessage::Answer { response: ClientResponse::TreeHead(_), .. });
        prop_assert!(is_head);
    }
}

/// A peer that asks for catch-up answers without end gets at most
/// `SERVE_PAGES_PER_S` pages a second, whatever it asks for; another peer
/// is still served, and the budget comes back a second later.
#[test]
fn catch_up_requests_without_end_get_a_bounded_answer() {
    use belfry_replica::clock::Micros;
    use belfry_replica::core::SERVE_PAGES_PER_S;
    use belfry_replica::local::LocalCluster;
    use belfry_replica::wire::PeerMessage;

    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 31).unwrap();
    let ds = common::digests("flood", 0, 100);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    c.run_until(c.now.saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &ds)
    });
    let now = c.now;
    let core = c.host_mut(0).unwrap();
    let asks = [
        PeerMessage::FetchLog { from: 0 },
        PeerMessage::FetchState { at_most: u64::MAX },
        PeerMessage::FetchLeaders {
            from_wave: 0,
            floor: 0,
        },
    ];
    let answered = |core: &mut belfry_replica::local::LocalHost, from: u16, at: Micros| -> usize {
        let mut frames = 0;
        for k in 0..3_000 {
            let frame = wire::encode(&asks[k % 3]).unwrap();
            core.handle(
                at,
                CoreInput::Peer {
                    from: ReplicaId(from),
                    frame,
                },
            );
            let step = core.commit().unwrap();
            frames += step
                .to_peers
                .iter()
                .filter(|(_, f)| {
                    matches!(
                        wire::decode::<PeerMessage>(f),
                        Ok(PeerMessage::LogRange { .. }
                            | PeerMessage::State { .. }
                            | PeerMessage::Leaders { .. })
                    )
                })
                .count();
        }
        frames
    };
    let flood = answered(core, 1, now);
    assert!(flood > 0, "the first requests are answered");
    assert!(
        flood as u64 <= SERVE_PAGES_PER_S,
        "{flood} pages for one peer in one second"
    );
    assert!(answered(core, 2, now) > 0, "another peer is still served");
    assert!(
        answered(core, 1, now.saturating_add(Micros::from_secs(1))) > 0,
        "the budget comes back"
    );
}
