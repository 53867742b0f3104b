//! What the replica tests share.

#![allow(dead_code)]

use belfry_replica::clock::Micros;
use belfry_replica::coin::sha3;

/// The genesis time of the test clusters.
pub const GENESIS: Micros = Micros(1_763_700_000_000_000);

/// `k` distinct digests, `from` on, named by `tag`.
pub fn digests(tag: &str, from: u64, k: u64) -> Vec<[u8; 32]> {
    (from..from + k)
        .map(|i| sha3(&[tag.as_bytes(), &i.to_be_bytes()]))
        .collect()
}
