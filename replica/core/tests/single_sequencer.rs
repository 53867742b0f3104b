//! One replica (n = 1, f = 0) is a single trusted sequencer — the baseline of
//! `belfry-bench cluster`: the same code orders, logs and signs on its own,
//! and its receipts verify against its anchor like any cluster's.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::verify_receipt;
use belfry_replica::wire::ClientRequest;
use belfry_world::LocalCluster;
use common::{digests, GENESIS};

#[test]
fn one_replica_alone_stamps_and_its_receipts_verify() {
    let (mut c, _) = LocalCluster::with_bls(1, Policy::Lamport, GENESIS, 21).unwrap();
    let ds = digests("single sequencer", 0, 500);
    c.request_all(1, &ClientRequest::Submit(ds.clone()));
    let until = c.now().saturating_add(Micros::from_secs(30));
    c.run_until(until, |c| c.stamped(0, &ds));
    assert!(
        c.stamped(0, &ds),
        "the lone replica did not stamp everything"
    );
    let anchor = c.anchor();
    for d in &ds {
        verify_receipt(&c.core(0).unwrap().receipt(d).unwrap(), &anchor).unwrap();
    }
}
