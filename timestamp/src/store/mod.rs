//! Storage for the log (docs/design.md §2, 3.8): the [`LogStore`] trait the replica
//! reads the log through, with [`MemoryLog`]; append-only segment files with
//! a checksum per record ([`SegmentLog`]), and Merkle tree nodes in per-level
//! files so a proof costs O(log n) reads ([`FileNodes`]). Plain `std::fs` — no
//! async runtime — so the light crate stays light.
//!
//! The durability contract: appends are buffered, and `sync` makes everything
//! appended so far durable with one fsync per file; the replica calls it once
//! per batch, before it releases the messages of that step.

mod log;
mod nodes;
mod segment;

pub use log::{extended_root, Frontier, LogReadError, LogStore, LogWriteError, MemoryLog, Overlay};
pub use nodes::{FileNodes, TAIL_NODES};
#[doc(hidden)]
pub use segment::scan_segment;
pub use segment::{Opened, SegmentLog, StoreError, MAX_RECORD_BYTES, RECORD_HEADER_BYTES};
