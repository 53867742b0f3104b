//! Log entries and tree heads, segment records and their torn tails, and
//! the journal read back from them (docs/design.md §3.7, 3.8;
//! docs/storage.md).

use belfry_replica::journal::{self, JournalRecord, Snapshot, TurnRecord};
use belfry_timestamp::store::{scan_segment, RECORD_HEADER_BYTES};
use belfry_timestamp::{Entry, SignedTreeHead, TreeHead};
use std::path::Path;

/// Entries (canonical bytes: byte for byte; JSON and postcard: by value)
/// and tree heads (postcard, by value).
pub fn entry_head(data: &[u8]) {
    if let Ok(e) = Entry::from_bytes(data) {
        assert_eq!(e.to_bytes(), data, "entry does not round-trip");
        assert_eq!(Entry::len_of(data), Ok(data.len()));
        let text = serde_json::to_string(&e).expect("an entry serializes");
        let back: Entry = serde_json::from_str(&text).expect("an entry's JSON reads back");
        assert_eq!(back, e);
    }
    if let Ok(e) = postcard::from_bytes::<Entry>(data) {
        let again = postcard::to_allocvec(&e).expect("an entry encodes");
        assert_eq!(postcard::from_bytes::<Entry>(&again), Ok(e));
    }
    if let Ok(h) = postcard::from_bytes::<TreeHead>(data) {
        let again = postcard::to_allocvec(&h).expect("a head encodes");
        assert_eq!(postcard::from_bytes::<TreeHead>(&again), Ok(h));
    }
    if let Ok(h) = postcard::from_bytes::<SignedTreeHead>(data) {
        let again = postcard::to_allocvec(&h).expect("a signed head encodes");
        assert_eq!(postcard::from_bytes::<SignedTreeHead>(&again), Ok(h));
    }
}

fn record_bytes(payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    b.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// A segment file's bytes. The records read are exactly the clean prefix
/// (they re-encode to it byte for byte), the reader stops early exactly
/// when there is a rest, and cutting the clean prefix anywhere — a torn
/// write — reads back exactly the records before the cut.
pub fn segment(data: &[u8]) {
    let (records, complete, bad) = scan_segment(data);
    assert!(complete <= data.len());
    assert_eq!(
        bad.is_none(),
        complete == data.len(),
        "stopped early: {bad:?}"
    );
    let mut again = Vec::with_capacity(complete);
    let mut ends = Vec::with_capacity(records.len());
    for r in &records {
        again.extend_from_slice(&record_bytes(r));
        ends.push(again.len());
    }
    assert_eq!(
        again,
        &data[..complete],
        "records do not re-encode to the prefix"
    );
    // One torn tail per input, somewhere in the clean prefix.
    if complete > 0 {
        let cut = data.len().wrapping_mul(7_919) % complete;
        let (torn, clean, why) = scan_segment(&data[..cut]);
        let whole = ends.iter().filter(|end| **end <= cut).count();
        assert_eq!(torn.len(), whole, "a torn tail lost or invented records");
        assert_eq!(torn[..], records[..whole]);
        assert_eq!(clean, ends[..whole].last().copied().unwrap_or(0));
        assert_eq!(why.is_none(), clean == cut);
    }
}

/// A journal segment's bytes, read as `FileJournal::open` reads them: the
/// segment's records, reassembled from their parts, then the replica's
/// recovery from them. Records that decode re-encode to the same value.
pub fn journal(data: &[u8]) {
    let (parts, _, _) = scan_segment(data);
    let Ok(read) = journal::read_parts(Path::new("journal"), 0, &parts) else {
        return;
    };
    assert!(read.since <= read.records.len() as u64);
    assert!(read.unfinished.is_none_or(|at| (at as usize) < parts.len()));
    for r in &read.records {
        match r {
            JournalRecord::Turn(t) => {
                let again = postcard::to_allocvec(t).expect("a turn encodes");
                assert_eq!(postcard::from_bytes::<TurnRecord>(&again).as_ref(), Ok(t));
            }
            JournalRecord::Snapshot(s) => {
                let again = postcard::to_allocvec(&**s).expect("a snapshot encodes");
                assert_eq!(postcard::from_bytes::<Snapshot>(&again).as_ref(), Ok(&**s));
            }
        }
    }
    if let Ok(recovered) = journal::recover(&read.records) {
        let end = recovered.entries_len();
        assert!(recovered.heads.iter().all(|h| h.head.tree_size <= end));
    }
}
