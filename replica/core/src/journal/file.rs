//! The journal in segment files ([`FileJournal`]): records in checksummed
//! parts, snapshots that start a segment, and reading them back.

use super::*;

/// Kinds of physical record in a [`FileJournal`] segment: the first byte.
const PART_TURN: u8 = 1;
const PART_SNAPSHOT: u8 = 2;
/// The second byte's flags: the record continues in the next part.
const MORE: u8 = 1;
/// ... and this is the record's first part (so a reader never takes the
/// tail of a record whose head a crash or a deleted segment took away).
const FIRST: u8 = 2;

/// The journal in segment files (`<dir>/journal/*.seg`, see
/// [`SegmentLog`]): each record postcard-encoded, in parts of at most
/// [`MAX_PART_BYTES`] (`kind u8 || more u8 || bytes`), each part checksummed
/// by the segment log. A snapshot starts a new segment; once it is durable
/// the segments before it are deleted.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    log: SegmentLog,
    since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// The record index of a snapshot appended but not yet synced.
    pending_snapshot: Option<u64>,
}

impl FileJournal {
    /// Opens (or creates) the journal under `dir` and reads back what a
    /// restart needs, cutting a torn tail.
    pub fn open(dir: &Path) -> Result<(FileJournal, Recovered), RestoreError> {
        let jdir = dir.join("journal");
        // Parts that continue a record (no FIRST flag) after damage belong
        // to the record it hit, which is synced whole: they cannot show that
        // it was synced.
        let continues = |part: &[u8]| part.get(1).is_some_and(|flags| flags & FIRST == 0);
        let (log, opened) = SegmentLog::open_with(&jdir, SEGMENT_BYTES, &continues)?;
        let parts = read_parts(&jdir, opened.first, &opened.records)?;
        // A record whose last part never reached the disk was not durable:
        // its turn is dropped whole (its messages never left), and its parts
        // are cut so that nothing is appended after them.
        let mut log = log;
        if let Some(start) = parts.unfinished {
            log.truncate_to(start)?;
        }
        let ReadParts {
            records,
            since,
            bytes_since,
            ..
        } = parts;
        let mut recovered = recover(&records)?;
        recovered.bytes_read = opened.bytes_read;
        Ok((
            FileJournal {
                dir: jdir,
                log,
                since_snapshot: since,
                bytes_since_snapshot: bytes_since,
                pending_snapshot: None,
            },
            recovered,
        ))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What the parts of a journal's segment records reassemble to.
#[doc(hidden)]
#[derive(Debug)]
pub struct ReadParts {
    /// The records from the last snapshot on.
    pub records: Vec<JournalRecord>,
    /// Turns after that snapshot.
    pub since: u64,
    /// Bytes of those turns' parts.
    pub bytes_since: u64,
    /// The index of the first part of a record whose last part is missing
    /// (the log is cut back to it).
    pub unfinished: Option<u64>,
}

/// Reassembles journal records from segment records `parts` (record
/// `first` on), as [`FileJournal::open`] reads them; `dir` names the
/// journal in errors. Public for the fuzz targets and their corpus replay
/// (`fuzz-checks/`), which check the reader without files.
#[doc(hidden)]
pub fn read_parts(dir: &Path, first: u64, parts: &[Vec<u8>]) -> Result<ReadParts, RestoreError> {
    let mut records = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut kind = 0u8;
    let mut since = 0u64;
    let mut bytes_since = 0u64;
    // Where the record being read began (its first part's index).
    let mut started: Option<u64> = None;
    for (k, part) in parts.iter().enumerate() {
        let index = first + k as u64;
        let (Some(&part_kind), Some(&flags)) = (part.first(), part.get(1)) else {
            return Err(decode_error(dir, index, "a part shorter than its header"));
        };
        if flags & FIRST != 0 {
            // A new record: anything unfinished before it was torn.
            buf.clear();
            started = Some(index);
        } else if started.is_none() || part_kind != kind {
            // The tail of a record whose head is gone (the segment that
            // held it was removed by a compaction a crash interrupted).
            started = None;
            buf.clear();
            continue;
        }
        kind = part_kind;
        buf.extend_from_slice(&part[2..]);
        if kind == PART_TURN {
            bytes_since += part.len() as u64;
        }
        if flags & MORE != 0 {
            continue;
        }
        started = None;
        let record = match kind {
            PART_TURN => postcard::from_bytes::<TurnRecord>(&buf).map(JournalRecord::Turn),
            PART_SNAPSHOT => {
                postcard::from_bytes::<Snapshot>(&buf).map(|s| JournalRecord::Snapshot(Box::new(s)))
            }
            other => return Err(decode_error(dir, index, &format!("part kind {other}"))),
        }
        .map_err(|e| decode_error(dir, index, &e.to_string()))?;
        if matches!(record, JournalRecord::Snapshot(_)) {
            since = 0;
            bytes_since = 0;
            records.clear();
        } else {
            since += 1;
        }
        records.push(record);
        buf.clear();
    }
    Ok(ReadParts {
        records,
        since,
        bytes_since,
        unfinished: started,
    })
}

fn decode_error(dir: &Path, index: u64, why: &str) -> RestoreError {
    RestoreError::Decode {
        path: dir.to_path_buf(),
        index,
        why: why.to_string(),
    }
}

impl Journal for FileJournal {
    fn append(&mut self, record: JournalRecord) -> Result<(), StoreError> {
        let (kind, bytes) = match &record {
            JournalRecord::Turn(t) => (PART_TURN, postcard::to_allocvec(t)),
            JournalRecord::Snapshot(s) => (PART_SNAPSHOT, postcard::to_allocvec(&**s)),
        };
        let bytes = bytes.map_err(|e| StoreError::Corrupt {
            path: self.dir.clone(),
            offset: 0,
            why: format!("cannot encode a journal record: {e}"),
        })?;
        if kind == PART_SNAPSHOT {
            self.log.roll_now()?;
            self.pending_snapshot = Some(self.log.len());
            self.since_snapshot = 0;
            self.bytes_since_snapshot = 0;
        } else {
            self.since_snapshot += 1;
        }
        let mut chunks = bytes.chunks(MAX_PART_BYTES).peekable();
        if chunks.peek().is_none() {
            self.log.append(&[kind, FIRST])?;
        }
        let mut first = FIRST;
        while let Some(chunk) = chunks.next() {
            let more = if chunks.peek().is_some() { MORE } else { 0 };
            let mut part = Vec::with_capacity(chunk.len() + 2);
            part.extend_from_slice(&[kind, more | first]);
            first = 0;
            part.extend_from_slice(chunk);
            self.log.append(&part)?;
            if kind == PART_TURN {
                // Only turns count towards the next compaction: a snapshot
                // larger than the trigger must not trigger the next one.
                self.bytes_since_snapshot += part.len() as u64;
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.log.sync()?;
        if let Some(at) = self.pending_snapshot.take() {
            self.log.remove_before(at)?;
        }
        Ok(())
    }

    fn records_since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    fn bytes_since_snapshot(&self) -> u64 {
        self.bytes_since_snapshot
    }
}
