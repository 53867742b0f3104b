//! Time for belfry: the [`Micros`] newtype, the [`LamportClock`], the robust
//! [`lower_median`] that every agreed time and key in belfry is built from, and
//! the [`ClockSource`]s that feed the protocol its `now`.
//!
//! # Why the lower median
//!
//! belfry aggregates values reported by replicas of which up to `f` may be
//! Byzantine (clock readings for tick times, report rounds or receive times for
//! sequencing keys). Given `k >= 2f + 1` values of which at most `f` are
//! arbitrary, the lower median (the element at index `(k - 1) / 2` of the sorted
//! values) has at least `(k - 1) / 2 >= f` values below it and at least
//! `k - 1 - (k - 1) / 2 >= f` above it, plus itself: so on each side of it, taking
//! it in, there are at least `f + 1` values, one of which is honest. The median
//! is therefore bracketed by honest values — a Byzantine minority cannot push it
//! outside what honest replicas reported. The property test
//! `lower_median_is_bracketed_by_honest_values` checks exactly that.
//!
//! # Clocks and the sans-IO rule
//!
//! Protocol code never reads a clock (docs/design.md section 2): it receives `now`
//! as an argument. Only the edges — the node's event loop and the simulator —
//! own a [`ClockSource`]: [`SteadyClock`] (the wall clock, run on at half rate
//! after a step back) for the node, [`DriftingClock`] for
//! the simulator, which models a replica's offset, drift and steps against the
//! simulator's true time.

#![forbid(unsafe_code)]

mod lamport;
mod median;
mod micros;
mod source;

pub use lamport::LamportClock;
pub use median::{lower_median, lower_median_index};
pub use micros::Micros;
pub use source::{ClockSource, ClockStep, DriftingClock, SteadyClock, SystemClock};
