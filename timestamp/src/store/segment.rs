//! An append-only log of records in segment files.
//!
//! Record: `len u32 || crc32(payload) u32 || payload`, big-endian. Segments
//! are files `<first record index, 20 digits>.seg` in one directory, rolled
//! over at `segment_bytes`. On open every record is read and checked. A record
//! cut short or failing its checksum at the *end of the last segment* is a
//! torn write from a crash — provided no chain of records that check follows
//! it to the end (or only records the caller says belong to the same
//! unsynced write, [`SegmentLog::open_with`]) — and the tail is cut there; the
//! log continues from the last complete record. The same damage anywhere
//! else, or followed by such records (so the damaged record reached the disk
//! before them, and may have been synced), is corruption and an error naming
//! the file and the offset: a damaged record is never silently read, skipped
//! or cut. Empty records are refused, so zeroed bytes never read as records.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Largest record payload.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// Bytes before each record's payload: `len u32 || crc32 u32`.
pub const RECORD_HEADER_BYTES: usize = 8;
const HEADER: usize = RECORD_HEADER_BYTES;

/// A storage failure, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A damaged record that is not a torn tail.
    #[error("{path}: corrupt record at byte {offset}: {why}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// An empty payload: refused, so that zeroed bytes (a file extended by
    /// a crash before its data reached the disk) never read as records.
    #[error("an empty record cannot be appended")]
    Empty,
    /// A payload over [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What opening found.
#[derive(Debug)]
pub struct Opened {
    /// Index of `records[0]`: 0, or the first record of the oldest segment
    /// kept after [`SegmentLog::remove_before`].
    pub first: u64,
    /// Every complete record, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes cut from a torn tail (0 if the log was clean).
    pub torn_bytes: u64,
    /// Bytes read from the segment files.
    pub bytes_read: u64,
}

/// The append-only segment log.
#[derive(Debug)]
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    current: BufWriter<File>,
    current_path: PathBuf,
    current_len: u64,
    records: u64,
    /// First record index of each segment file, ascending.
    segments: Vec<u64>,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.seg")
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`, recovering from a torn tail:
    /// damage at the end of the last segment is cut only when no chain of
    /// records that check follows it to the end.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(SegmentLog, Opened), StoreError> {
        SegmentLog::open_with(dir, segment_bytes, &|_| false)
    }

    /// [`SegmentLog::open`], where records that follow damage at the end
    /// of the last segment are no evidence of corruption if `continues`
    /// holds of every one of them: they can only have been written in the
    /// same unsynced write as the damaged record (the journal's parts that
    /// continue a record: one record is synced whole).
    pub fn open_with(
        dir: &Path,
        segment_bytes: u64,
        continues: &dyn Fn(&[u8]) -> bool,
    ) -> Result<(SegmentLog, Opened), StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name.strip_suffix(".seg").and_then(|s| s.parse().ok()) {
                segments.push((first, path));
            }
        }
        segments.sort();
        let mut records = Vec::new();
        let mut torn_bytes = 0;
        let mut bytes_read = 0u64;
        let last = segments.len().saturating_sub(1);
        // Segments before the oldest kept one were removed on purpose; the
        // rest must follow each other without a gap.
        let base = segments.first().map_or(0, |(first, _)| *first);
        for (i, (first, path)) in segments.iter().enumerate() {
            if *first != base + records.len() as u64 {
                return Err(StoreError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    why: format!(
                        "segment starts at record {first}, expected {}",
                        base + records.len() as u64
                    ),
                });
            }
            let mut bytes = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io(path))?;
            bytes_read += bytes.len() as u64;
            let (complete, bad) = scan(&bytes, &mut records);
            if let Some(why) = bad {
                // Damage is a torn write only at the very end of what was
                // written: when records that check follow it to the end,
                // they reached the disk after it, so the damaged one may
                // have been synced (and acknowledged) — unless they can
                // only belong to the same unsynced write.
                let after = if i == last {
                    chain_after(&bytes, complete)
                } else {
                    None
                };
                let written_after = after
                    .as_ref()
                    .filter(|(_, payloads)| payloads.iter().any(|p| !continues(p)));
                if i != last || written_after.is_some() {
                    let why = match written_after {
                        Some((at, _)) => format!(
                            "{why}, and records that check follow from byte {at}: \
                             damage, not a torn write"
                        ),
                        None => why,
                    };
                    return Err(StoreError::Corrupt {
                        path: path.clone(),
                        offset: complete as u64,
                        why,
                    });
                }
                torn_bytes = (bytes.len() - complete) as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io(path))?;
                f.set_len(complete as u64).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
            }
        }
        let current_path = match segments.last() {
            Some((_, path)) => path.clone(),
            None => dir.join(segment_name(0)),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&current_path)
            .map_err(io(&current_path))?;
        let current_len = file.metadata().map_err(io(&current_path))?.len();
        let log = SegmentLog {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(HEADER as u64 + 1),
            current: BufWriter::new(file),
            current_path,
            current_len,
            records: base + records.len() as u64,
            segments: segments.iter().map(|(first, _)| *first).collect(),
        };
        let segments = if log.segments.is_empty() {
            vec![0]
        } else {
            log.segments.clone()
        };
        Ok((
            SegmentLog { segments, ..log },
            Opened {
                first: base,
                records,
                torn_bytes,
                bytes_read,
            },
        ))
    }

    /// Cuts the log back to its first `keep` records, durably: the records
    /// after them — an incomplete multi-part record a crash left at the end,
    /// say — are gone, and appends continue right after record `keep − 1`.
    pub fn truncate_to(&mut self, keep: u64) -> Result<(), StoreError> {
        if keep >= self.records {
            return Ok(());
        }
        self.sync()?;
        let Some(first) = self.segments.iter().rev().find(|f| **f <= keep).copied() else {
            return Ok(());
        };
        // Later segments go whole.
        for later in self.segments.iter().filter(|f| **f > first) {
            let path = self.dir.join(segment_name(*later));
            fs::remove_file(&path).map_err(io(&path))?;
        }
        self.segments.retain(|f| *f <= first);
        // In the segment that holds record `keep`, cut at its offset.
        let path = self.dir.join(segment_name(first));
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(&path))?;
        let mut offset = 0usize;
        for _ in first..keep {
            let Some(len) = bytes
                .get(offset..offset + HEADER)
                .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
            else {
                break;
            };
            offset += HEADER + len;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(offset as u64).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.current = BufWriter::new(file);
        self.current_path = path;
        self.current_len = offset as u64;
        self.records = keep;
        Ok(())
    }

    /// Starts a new segment now (so that everything before it can later be
    /// removed whole). A no-op when the current segment is still empty.
    pub fn roll_now(&mut self) -> Result<(), StoreError> {
        if self.current_len == 0 {
            return Ok(());
        }
        self.roll()
    }

    /// Deletes every segment all of whose records come before record
    /// `index` (the segment holding `index` stays), and makes the removal
    /// durable. Returns the bytes freed.
    pub fn remove_before(&mut self, index: u64) -> Result<u64, StoreError> {
        let keep_from = self
            .segments
            .iter()
            .rev()
            .find(|first| **first <= index)
            .copied()
            .unwrap_or(0);
        let mut freed = 0;
        let mut kept = Vec::new();
        for first in std::mem::take(&mut self.segments) {
            if first < keep_from {
                let path = self.dir.join(segment_name(first));
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(io(&path))?;
            } else {
                kept.push(first);
            }
        }
        self.segments = kept;
        if freed > 0 {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(freed)
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends a record (buffered until [`SegmentLog::sync`]); returns its index.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, StoreError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(StoreError::TooLarge(payload.len()));
        }
        if payload.is_empty() {
            return Err(StoreError::Empty);
        }
        let size = (HEADER + payload.len()) as u64;
        if self.current_len > 0 && self.current_len + size > self.segment_bytes {
            self.roll()?;
        }
        let crc = crc32fast::hash(payload);
        let path = self.current_path.clone();
        self.current
            .write_all(&(payload.len() as u32).to_be_bytes())
            .and_then(|()| self.current.write_all(&crc.to_be_bytes()))
            .and_then(|()| self.current.write_all(payload))
            .map_err(io(&path))?;
        self.current_len += size;
        self.records += 1;
        Ok(self.records - 1)
    }

    fn roll(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let path = self.dir.join(segment_name(self.records));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.current = BufWriter::new(file);
        self.current_path = path;
        self.current_len = 0;
        self.segments.push(self.records);
        Ok(())
    }

    /// Makes every appended record durable (one fsync).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let path = self.current_path.clone();
        self.current.flush().map_err(io(&path))?;
        self.current.get_ref().sync_data().map_err(io(&path))
    }
}

/// What [`SegmentLog::open`] reads from one segment file's bytes: every
/// complete, checked record, the length of the clean prefix and, if it
/// stopped early (a torn tail or damage), why. For the fuzz targets and
/// their corpus replay (`fuzz-checks/`), which check the reader without
/// files.
#[doc(hidden)]
pub fn scan_segment(bytes: &[u8]) -> (Vec<Vec<u8>>, usize, Option<String>) {
    let mut records = Vec::new();
    let (complete, bad) = scan(bytes, &mut records);
    (records, complete, bad)
}

/// Reads complete, checked records from `bytes` into `out`; returns the
/// length of the clean prefix and, if it stopped early, why.
fn scan(bytes: &[u8], out: &mut Vec<Vec<u8>>) -> (usize, Option<String>) {
    let mut at = 0;
    while at < bytes.len() {
        if bytes.len() - at < HEADER {
            return (at, Some("record header cut short".into()));
        }
        let len =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len > MAX_RECORD_BYTES {
            return (at, Some(format!("record length {len} over the limit")));
        }
        if len == 0 {
            return (at, Some("empty record (zeroed bytes)".into()));
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            return (at, Some("record payload cut short".into()));
        };
        if crc32fast::hash(payload) != crc {
            return (at, Some("checksum mismatch".into()));
        }
        out.push(payload.to_vec());
        at += HEADER + len;
    }
    (at, None)
}

/// Header hops and checksummed bytes [`chain_after`] spends at most: a
/// torn tail is at most one unsynced write, far less. Spent, it reports
/// nothing found (a torn write), never corruption on a guess.
const SEARCH_BUDGET: usize = 1 << 30;

/// The records after damage at `from`: the first offset from which records
/// that check run exactly to the end of `bytes`, with their payloads. The
/// lengths are followed first (a chain must land on the end), and only a
/// chain that does is checksummed, so random bytes cost one look per
/// offset. The damaged record's own length, if sane, is tried first.
fn chain_after(bytes: &[u8], from: usize) -> Option<(usize, Vec<&[u8]>)> {
    let mut budget = SEARCH_BUDGET;
    let natural = bytes
        .get(from..from + 4)
        .map(|h| from + HEADER + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
        .filter(|at| *at < bytes.len());
    let later = from + 1..bytes.len();
    for start in natural.into_iter().chain(later) {
        let mut at = start;
        let mut hops = Vec::new();
        while at < bytes.len() {
            budget = budget.checked_sub(1)?;
            let Some(h) = bytes.get(at..at + HEADER) else {
                break;
            };
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len == 0 || len > MAX_RECORD_BYTES || len > bytes.len() - at - HEADER {
                break;
            }
            hops.push((at, len));
            at += HEADER + len;
        }
        if at != bytes.len() || hops.is_empty() {
            continue;
        }
        let count = hops.len();
        let mut payloads = Vec::with_capacity(count);
        for (h, len) in hops {
            budget = budget.checked_sub(len)?;
            let crc = u32::from_be_bytes([bytes[h + 4], bytes[h + 5], bytes[h + 6], bytes[h + 7]]);
            let payload = &bytes[h + HEADER..h + HEADER + len];
            if crc32fast::hash(payload) != crc {
                break;
            }
            payloads.push(payload);
        }
        if payloads.len() == count {
            return Some((start, payloads));
        }
    }
    None
}
