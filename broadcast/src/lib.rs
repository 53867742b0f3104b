//! Asynchronous Byzantine atomic broadcast for belfry, as pure state machines
//! (DESIGN.md sections 2, 3.2–3.5).
//!
//! This crate will hold: Bracha reliable broadcast of DAG vertices, the
//! DAG-Rider DAG with its validity rules and garbage collection, waves, the
//! threshold common coin and the commit rule, and the fair sequencer that turns
//! committed batches into ordered digest records and tick fields. It never
//! touches a socket, a disk, a clock or an unseeded RNG: inputs come in with
//! `now`, outputs go out in a `Step`.

#![forbid(unsafe_code)]

pub use belfry_coin as coin;
pub use belfry_coin::clock;
