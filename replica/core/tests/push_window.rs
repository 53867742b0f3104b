//! Receipt pushes are flow-controlled (issue #22, back-pressure instead of
//! collapse): with a push window, a replica pushes a client no more receipt
//! bytes than the window (plus one bundle) until its driver reports them
//! written (`CoreInput::ClientDrained`); the rest wait, and come — each
//! receipt once, every one verifying — as the window opens. Without a
//! window everything is pushed at once, as before.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::{self, ClientMessage, ClientPush, ClientRequest};
use belfry_replica::CoreInput;
use belfry_world::LocalCluster;
use common::GENESIS;
use std::collections::BTreeMap;

const CLIENT: u64 = 7;
const WINDOW: u64 = 64 * 1024;

/// Receipt items the client got in pushes since the last call, and the
/// bytes of all its pushes (what a driver reports written).
fn receipts(c: &mut LocalCluster, got: &mut BTreeMap<[u8; 32], u64>) -> (usize, u64) {
    let (mut items, mut bytes) = (0, 0);
    for (node, client, m) in c.take_responses() {
        if node != 0 || client != CLIENT {
            continue;
        }
        if let ClientMessage::Push { .. } = &m {
            bytes += wire::encode_message(&m).unwrap().len() as u64;
        }
        if let ClientMessage::Push {
            push: ClientPush::Signed(bundle),
            ..
        } = &m
        {
            for item in &bundle.items {
                if let belfry_replica::wire::ReceiptItem::Included { entry, .. } = item {
                    let Entry::Digest(d) = entry else { panic!() };
                    *got.entry(d.digest).or_default() += 1;
                    items += 1;
                }
            }
        }
    }
    (items, bytes)
}

fn run(window: Option<u64>) -> (usize, u64, usize) {
    let (mut c, _) = LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 11, |cfg| {
        cfg.client_push_window = window;
    })
    .unwrap();
    let ds = common::digests("push window", 0, 5_000);
    for chunk in ds.chunks(1_000) {
        c.input(
            0,
            CoreInput::Client {
                client: CLIENT,
                frame: wire::encode(&ClientRequest::Submit(chunk.to_vec())).unwrap(),
            },
        );
    }
    let mut got = BTreeMap::new();
    let until = c.now().saturating_add(Micros::from_secs(60));
    c.run_until(until, |c| {
        let core = c.core(0).unwrap();
        let signed = core.signed_size();
        ds.iter()
            .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
    });
    let (first_items, first_bytes) = receipts(&mut c, &mut got);
    // Report what was pushed as written, until every receipt came.
    let mut rounds = 0;
    let mut unreported = first_bytes;
    while got.len() < ds.len() {
        rounds += 1;
        assert!(
            rounds < 1_000,
            "receipts stopped coming: {} of {}",
            got.len(),
            ds.len()
        );
        c.input(
            0,
            CoreInput::ClientDrained {
                client: CLIENT,
                pushes: std::mem::take(&mut unreported),
                answers: 0,
            },
        );
        let (items, bytes) = receipts(&mut c, &mut got);
        assert!(
            items > 0,
            "room in the window, and receipts still due: pushed"
        );
        unreported = bytes;
    }
    assert!(got.values().all(|&k| k == 1), "each receipt pushed once");
    assert!(ds.iter().all(|d| got.contains_key(d)));
    (first_items, first_bytes, rounds)
}

#[test]
fn receipts_wait_for_room_in_the_window_and_all_come() {
    let (items, bytes, rounds) = run(Some(WINDOW));
    // One bundle (at most 1,024 receipts) may pass the window's edge.
    assert!(
        items <= 2 * 1_024,
        "{items} receipts before any were written"
    );
    assert!(
        bytes < 2 * WINDOW + 1_024 * 1_024,
        "{bytes} bytes pushed at once"
    );
    assert!(rounds >= 2, "the rest came as the window opened");
    // Without a window: every receipt at once, nothing owed.
    let (items, _, rounds) = run(None);
    assert_eq!(items, 5_000);
    assert_eq!(rounds, 0);
}
