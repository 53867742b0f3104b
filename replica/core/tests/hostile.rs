//! No panics across the network: arbitrary frames from peers and clients are
//! answered with faults or errors, and the replica keeps working.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::coin::{ClusterParams, MockCrypto, Policy, ReplicaId, ThresholdCrypto};
use belfry_replica::wire::{self, ClientMessage, ClientRequest, ClientResponse};
use belfry_replica::{frame_hash, CoreFault, CoreInput, CoreStepExt, ReplicaConfig, ReplicaCore};
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
            let peer = c.handle(GENESIS, CoreInput::Peer { from: ReplicaId(from), frame: frame.clone() });
            let client = c.handle(GENESIS, CoreInput::Client { client: 3, frame: frame.clone() });
            // A frame that does not decode is blamed on its sender and named
            // by its hash.
            for f in peer.faults.iter().chain(&client.faults) {
                if let CoreFault::Frame { .. } = f {
                    prop_assert_eq!(f.message_hash(), frame_hash(&frame));
                }
            }
            for f in &client.faults {
                prop_assert_eq!(f.peer(), None);
                prop_assert_eq!(f.label(), "client_frame");
            }
        }
        // Still serving: a well-formed request gets a well-formed answer.
        let step = c.handle(GENESIS, CoreInput::Client { client: 4, frame: wire::encode(&ClientRequest::TreeHead).unwrap() });
        let reply = wire::decode_message(step.to_clients().last().unwrap().1).unwrap();
        let is_head = matches!(reply, ClientMessage::Answer { response: ClientResponse::TreeHead(_), .. });
        prop_assert!(is_head);
    }
}

/// A frame that does not decode, or a tree-head share that does not
/// verify, is a fault that names its sender and the offending message by
/// its hash.
#[test]
fn a_fault_names_its_sender_and_the_message_by_its_hash() {
    use belfry_replica::coin::{MessageHash, SignatureShare};
    use belfry_replica::wire::PeerMessage;
    let mut c = core();
    let frame = framed(&[0xff; 9]);
    let step = c.handle(
        GENESIS,
        CoreInput::Peer {
            from: ReplicaId(2),
            frame: frame.clone(),
        },
    );
    assert_eq!(step.faults.len(), 1, "{:?}", step.faults);
    let f = &step.faults[0];
    assert_eq!(
        (f.label(), f.peer(), f.is_evidence()),
        ("peer_frame", Some(ReplicaId(2)), true)
    );
    assert_eq!(f.message_hash(), frame_hash(&frame));
    assert_ne!(f.message_hash(), frame_hash(&framed(&[0xff; 8])));

    // A share for a size this replica has passed without a Tick ending
    // there (its empty log's size 0) has no head to sign.
    let share = SignatureShare([7; 96]);
    let step = c.handle(
        GENESIS,
        CoreInput::Peer {
            from: ReplicaId(1),
            frame: wire::encode(&PeerMessage::HeadShare {
                tree_size: 0,
                share,
            })
            .unwrap(),
        },
    );
    assert_eq!(step.faults.len(), 1, "{:?}", step.faults);
    let f = &step.faults[0];
    assert_eq!(
        (f.label(), f.peer()),
        ("head_share_no_such_head", Some(ReplicaId(1)))
    );
    assert_eq!(
        f.message_hash(),
        MessageHash::of(
            belfry_replica::HEAD_SHARE_TAG,
            &[&0u64.to_be_bytes(), &share.0]
        )
    );
}

/// A peer that asks without end — for log pages, states, leaders'
/// histories, votes and vertex bodies — is served at most its byte budgets'
/// burst at one instant, whatever it asks for (the work is counted as it is
/// done, and refused requests cost nothing); another peer is still served,
/// and the budget comes back with time.
#[test]
fn requests_without_end_get_a_bounded_answer() {
    use belfry_replica::broadcast::config::RESEND_BURST_BYTES;
    use belfry_replica::broadcast::{Message, ResendCause, Round};
    use belfry_replica::clock::Micros;
    use belfry_replica::core::{ServeKind, SERVE_BURST_BYTES};
    use belfry_replica::wire::PeerMessage;
    use belfry_world::LocalCluster;

    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 31).unwrap();
    let ds = common::digests("flood", 0, 2_000);
    for chunk in ds.chunks(200) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(30)), |_| false);
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &ds)
    });
    let now = c.now();
    let some_vertex = c
        .core(0)
        .unwrap()
        .node()
        .dag()
        .vertices()
        .last()
        .unwrap()
        .hash();
    let asks = [
        PeerMessage::FetchLog { from: 0 },
        PeerMessage::FetchState { at_most: u64::MAX },
        PeerMessage::FetchLeaders {
            from_wave: 0,
            floor: 0,
        },
        PeerMessage::Broadcast(Message::FetchVotes {
            from: Round(0),
            to: Round(u64::MAX),
        }),
        PeerMessage::Broadcast(Message::FetchVertex(some_vertex)),
    ];
    let core = c.host_mut(0).unwrap();
    let flood = |core: &mut belfry_world::LocalHost, from: u16, at: Micros| -> u64 {
        let mut bytes = 0u64;
        for k in 0..5_000 {
            let frame = wire::encode(&asks[k % asks.len()]).unwrap();
            core.handle(
                at,
                CoreInput::Peer {
                    from: ReplicaId(from),
                    frame,
                },
            );
            let step = core.commit().unwrap();
            bytes += step
                .to_peers
                .iter()
                .map(|(_, f)| f.len() as u64)
                .sum::<u64>();
        }
        bytes
    };
    let served = flood(core, 1, now);
    let counted = |core: &belfry_world::LocalHost, peer: usize| {
        let c = core.core();
        c.serving().bytes_per_peer[peer] + c.node().counters().resent_bytes_per_peer[peer]
    };
    assert!(served > 0, "the first requests are answered");
    // The budgets' bursts, plus the one answer each may start at the edge.
    let bound = SERVE_BURST_BYTES + RESEND_BURST_BYTES + 8 * 1024 * 1024;
    assert!(
        counted(core, 1) <= bound,
        "{} bytes of work for one peer at one instant",
        counted(core, 1)
    );
    assert!(served <= 2 * bound, "{served} bytes sent to one peer");
    let refused: u64 = ServeKind::ALL
        .iter()
        .map(|k| core.core().serving().kinds[*k as usize].refused)
        .sum::<u64>()
        + ResendCause::ALL
            .iter()
            .map(|k| core.core().node().counters().resends[k.index()].refused)
            .sum::<u64>();
    assert!(refused > 4_000, "only {refused} of 5,000 requests refused");
    assert!(flood(core, 2, now) > 0, "another peer is still served");
    assert!(
        flood(core, 1, now.saturating_add(Micros::from_secs(5))) > 0,
        "the budget comes back"
    );
}

/// A client that reads without end — full pages of entries — is answered
/// at most its read budget's burst at one instant (plus the answer that
/// crossed it), then told how long to wait; its submissions are still
/// taken, another client's reads are still answered, and its own budget
/// comes back with time.
#[test]
fn a_client_reading_without_end_is_rate_limited() {
    use belfry_replica::clock::Micros;
    use belfry_replica::wire::{ClientCall, ClientError};
    use belfry_replica::CLIENT_READ_BURST_BYTES;
    use belfry_world::LocalCluster;

    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, GENESIS, 32).unwrap();
    let ds = common::digests("reads", 0, 4_000);
    for chunk in ds.chunks(500) {
        c.request_all(1, &ClientRequest::Submit(chunk.to_vec()));
        c.run_until(c.now().saturating_add(Micros::from_millis(30)), |_| false);
    }
    c.run_until(c.now().saturating_add(Micros::from_secs(30)), |c| {
        c.stamped(0, &ds)
    });
    let now = c.now();
    let host = c.host_mut(0).unwrap();
    let mut ask = |client: u64, id: u64, request: ClientRequest, at: Micros| {
        let frame = wire::encode_call(&ClientCall { id, request }).unwrap();
        host.handle(at, CoreInput::Client { client, frame });
        let step = host.commit().unwrap();
        let (_, frame) = step
            .to_clients
            .iter()
            .find(|(to, _)| *to == client)
            .unwrap();
        let len = frame.len() as u64;
        match wire::decode_message(frame).unwrap() {
            ClientMessage::Answer { id: got, response } => {
                assert_eq!(got, id, "the answer echoes the request id");
                (response, len)
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    };
    let mut answered = 0u64;
    let mut limited = None;
    for id in 0..1_000u64 {
        match ask(77, id, ClientRequest::Entries(0, 4_096), now) {
            (ClientResponse::Entries { entries, .. }, len) => {
                assert!(!entries.is_empty());
                answered += len;
            }
            (ClientResponse::Error(ClientError::RateLimited { retry_after_ms }), _) => {
                limited = Some((id, retry_after_ms));
                break;
            }
            (other, _) => panic!("unexpected answer {other:?}"),
        }
    }
    let (first_refused, wait_ms) = limited.expect("the reads were rate limited");
    assert!(first_refused > 1, "a burst of reads is answered first");
    let page = answered / first_refused;
    assert!(
        answered <= CLIENT_READ_BURST_BYTES + page,
        "{answered} bytes answered at one instant"
    );
    assert!(wait_ms > 0 && wait_ms <= 2_000, "wait {wait_ms} ms");
    // Still refused at the same instant; submissions are still taken.
    assert!(matches!(
        ask(77, 2_000, ClientRequest::TreeHead, now).0,
        ClientResponse::Error(ClientError::RateLimited { .. })
    ));
    let fresh = common::digests("after-limit", 0, 10);
    assert!(matches!(
        ask(77, 2_001, ClientRequest::Submit(fresh), now).0,
        ClientResponse::Accepted { .. }
    ));
    // Another client is answered; the budget comes back after the wait.
    assert!(matches!(
        ask(78, 1, ClientRequest::Entries(0, 4_096), now).0,
        ClientResponse::Entries { .. }
    ));
    let later = now.saturating_add(Micros::from_millis(u64::from(wait_ms)));
    assert!(matches!(
        ask(77, 2_002, ClientRequest::Entries(0, 4_096), later).0,
        ClientResponse::Entries { .. }
    ));
    let reads = host.core().client_reads();
    assert!(reads.refused >= 2 && reads.bytes >= answered, "{reads:?}");
}
