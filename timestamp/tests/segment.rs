//! The segment log: records survive reopen and roll over segments; a tail
//! cut at every byte offset recovers exactly the complete records; a flipped
//! bit or zeroed bytes are cut at the tail — only when no record that checks
//! follows — and an error anywhere else, which leaves the file as it was.

#![allow(clippy::unwrap_used)]

use belfry_timestamp::store::{SegmentLog, StoreError, RECORD_HEADER_BYTES};
use std::fs;
use std::path::PathBuf;

fn payload(i: usize) -> Vec<u8> {
    (0..(i % 7) * 5 + 1).map(|j| (i * 31 + j) as u8).collect()
}

#[test]
fn records_survive_reopen_and_roll_over_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, opened) = SegmentLog::open(dir.path(), 100).unwrap();
    assert!(opened.records.is_empty());
    for i in 0..50 {
        assert_eq!(log.append(&payload(i)).unwrap(), i as u64);
    }
    log.sync().unwrap();
    drop(log);
    let segs = fs::read_dir(dir.path()).unwrap().count();
    assert!(segs > 3, "rolled over into {segs} segments");
    let (mut log, opened) = SegmentLog::open(dir.path(), 100).unwrap();
    assert_eq!(opened.records, (0..50).map(payload).collect::<Vec<_>>());
    assert_eq!(opened.torn_bytes, 0);
    log.append(b"more").unwrap();
    log.sync().unwrap();
    let (_, opened) = SegmentLog::open(dir.path(), 100).unwrap();
    assert_eq!(opened.records.len(), 51);
}

/// A crash can leave the last segment cut at any byte: reopening recovers
/// exactly the records that were complete, and appends continue cleanly.
#[test]
fn a_tail_cut_at_every_byte_offset_recovers_exactly_the_complete_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    let mut ends = vec![0u64];
    for i in 0..12 {
        log.append(&payload(i)).unwrap();
        ends.push(ends.last().unwrap() + (RECORD_HEADER_BYTES + payload(i).len()) as u64);
    }
    log.sync().unwrap();
    drop(log);
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let full = fs::read(&seg).unwrap();
    for cut in 0..=full.len() as u64 {
        fs::write(&seg, &full[..cut as usize]).unwrap();
        let (mut log, opened) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        let complete = ends.iter().filter(|e| **e <= cut).count() - 1;
        assert_eq!(
            opened.records,
            (0..complete).map(payload).collect::<Vec<_>>(),
            "cut {cut}"
        );
        assert_eq!(opened.torn_bytes, cut - ends[complete]);
        // The log goes on from there.
        log.append(b"after").unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, again) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.records.len(), complete + 1);
        assert_eq!(again.records.last().unwrap(), b"after");
        assert_eq!(again.torn_bytes, 0);
    }
}

#[test]
fn a_flipped_bit_in_the_tail_is_cut_but_in_an_earlier_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), 64).unwrap();
    for i in 0..20 {
        log.append(&payload(i)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    // The last record's last byte: a torn write, cut.
    let last = segs.last().unwrap().clone();
    let mut b = fs::read(&last).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    fs::write(&last, &b).unwrap();
    let (_, opened) = SegmentLog::open(dir.path(), 64).unwrap();
    assert_eq!(opened.records.len(), 19);
    // A flipped bit in the first segment: corruption, reported, not skipped.
    let mut b = fs::read(&segs[0]).unwrap();
    b[RECORD_HEADER_BYTES] ^= 1;
    fs::write(&segs[0], &b).unwrap();
    let err = SegmentLog::open(dir.path(), 64).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("checksum"));
}

/// Record offsets of `payload(0..k)` written into one segment.
fn offsets(k: usize) -> Vec<usize> {
    let mut at = 0;
    (0..k)
        .map(|i| {
            let o = at;
            at += RECORD_HEADER_BYTES + payload(i).len();
            o
        })
        .collect()
}

/// One segment of `k` records, synced; returns its path and bytes.
fn one_segment(dir: &std::path::Path, k: usize) -> (PathBuf, Vec<u8>) {
    let (mut log, _) = SegmentLog::open(dir, 1 << 20).unwrap();
    for i in 0..k {
        log.append(&payload(i)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let path = dir.join(format!("{:020}.seg", 0));
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn a_flipped_bit_in_any_record_but_the_last_of_the_last_segment_is_an_error_that_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let k = 12;
    let (path, clean) = one_segment(dir.path(), k);
    let at = offsets(k);
    for byte in 0..clean.len() {
        let record = at.iter().rposition(|o| *o <= byte).unwrap();
        let mut b = clean.clone();
        b[byte] ^= 1 << (byte % 8);
        fs::write(&path, &b).unwrap();
        let opened = SegmentLog::open(dir.path(), 1 << 20);
        if record == k - 1 {
            // The last record: indistinguishable from a torn write, cut.
            let (_, opened) = opened.unwrap();
            assert_eq!(opened.records.len(), k - 1, "byte {byte}");
            assert_eq!(fs::read(&path).unwrap(), clean[..at[k - 1]], "byte {byte}");
        } else {
            // A record that checks follows: corruption, named, and the file
            // is left as it was (nothing acknowledged is cut).
            let err = opened.unwrap_err();
            match &err {
                StoreError::Corrupt {
                    path: p,
                    offset,
                    why,
                } => {
                    assert_eq!(p, &path);
                    assert_eq!(*offset, at[record] as u64, "byte {byte}: {err}");
                    assert!(why.contains("not a torn write"), "byte {byte}: {err}");
                }
                e => panic!("byte {byte}: {e}"),
            }
            assert_eq!(fs::read(&path).unwrap(), b, "byte {byte}");
        }
    }
}

#[test]
fn a_zeroed_tail_is_cut_and_empty_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let k = 5;
    let (path, mut bytes) = one_segment(dir.path(), k);
    let clean = bytes.len();
    // A crash after the file grew but before its data reached the disk.
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, &bytes).unwrap();
    let (mut log, opened) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(opened.records.len(), k);
    assert_eq!(opened.torn_bytes, 4096);
    assert_eq!(fs::metadata(&path).unwrap().len(), clean as u64);
    assert!(matches!(log.append(&[]), Err(StoreError::Empty)));
    // Zeroed bytes between records are damage, not empty records.
    let mut b = fs::read(&path).unwrap();
    let at = offsets(k);
    b.splice(at[2]..at[2], [0u8; 16]);
    fs::write(&path, &b).unwrap();
    let err = SegmentLog::open(dir.path(), 1 << 20).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == at[2] as u64),
        "{err}"
    );
}

/// Bytes that look random (a fixed xorshift stream).
fn noise(k: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..k)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_large_torn_record_is_cut_even_with_a_record_forged_in_its_payload() {
    let dir = tempfile::tempdir().unwrap();
    let k = 4;
    let (path, clean) = one_segment(dir.path(), k);
    // A 4 MiB record whose write stopped 3.5 MiB in (SIGKILL mid-write),
    // its payload carrying a record that checks — as a client's digest
    // could — followed by more of the payload.
    let forged = b"forged";
    let mut payload = noise(3_500_000, 7);
    let mut fake = (forged.len() as u32).to_be_bytes().to_vec();
    fake.extend_from_slice(&crc32fast::hash(forged).to_be_bytes());
    fake.extend_from_slice(forged);
    payload.splice(1000..1000, fake);
    let mut bytes = clean.clone();
    bytes.extend_from_slice(&(4u32 << 20).to_be_bytes());
    bytes.extend_from_slice(&[0xab; 4]);
    bytes.extend_from_slice(&payload);
    fs::write(&path, &bytes).unwrap();
    let (_, opened) = SegmentLog::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(opened.records.len(), k);
    assert_eq!(fs::read(&path).unwrap(), clean);
}

#[test]
fn damage_followed_only_by_parts_of_the_same_unsynced_write_is_torn_else_corrupt() {
    // Payloads starting with 0 continue a record (as the journal's parts
    // without their FIRST flag do); 1 starts one.
    let continues = |p: &[u8]| p.first() == Some(&0);
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path(), 1 << 20).unwrap();
    log.append(b"\x01synced").unwrap();
    let damaged = log.append(b"\x01first part").unwrap();
    log.append(b"\x00second part").unwrap();
    log.append(b"\x00third part").unwrap();
    log.sync().unwrap();
    drop(log);
    let path = dir.path().join(format!("{:020}.seg", 0));
    let clean = fs::read(&path).unwrap();
    let at = RECORD_HEADER_BYTES + 7;
    assert_eq!(damaged, 1);
    let mut b = clean.clone();
    b[at + RECORD_HEADER_BYTES + 2] ^= 1;
    fs::write(&path, &b).unwrap();
    // Only parts that continue the damaged record follow: a power loss
    // wrote them and not it. Cut.
    let (_, opened) = SegmentLog::open_with(dir.path(), 1 << 20, &continues).unwrap();
    assert_eq!(opened.records, vec![b"\x01synced".to_vec()]);
    // A record that starts after them (a later turn): corruption.
    let mut raw = b.clone();
    let next = b"\x01later turn";
    raw.extend_from_slice(&(next.len() as u32).to_be_bytes());
    raw.extend_from_slice(&crc32fast::hash(next).to_be_bytes());
    raw.extend_from_slice(next);
    fs::write(&path, &raw).unwrap();
    let err = SegmentLog::open_with(dir.path(), 1 << 20, &continues).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { offset, .. } if offset == at as u64),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), raw, "nothing cut");
}
