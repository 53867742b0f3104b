//! Merkle tree nodes on disk: one file per level (`level-NN.bin`), each an
//! array of 32-byte complete-subtree hashes, so the hash at (level, index) is
//! at offset `32 · index` and a proof costs O(log n) positioned reads.
//!
//! Each level also keeps its last [`TAIL_NODES`] stored hashes in memory: a
//! proof for one of the last `TAIL_NODES` leaves — every fresh receipt —
//! needs only nodes within that tail of each level (the sibling of leaf `i`
//! at level `k` is `(i >> k) ^ 1`), so it costs no read at all. Memory is
//! bounded: at most `TAIL_NODES` × 32 bytes per level (256 KiB; a log of a
//! billion entries has 30 levels, and the upper ones hold fewer nodes).

use super::log::LogReadError;
use super::segment::StoreError;
use crate::merkle::{node_hash, Hash, NodeStore};
use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Stored hashes each level keeps in memory, the most recent ones.
pub const TAIL_NODES: usize = 8_192;

struct Level {
    file: File,
    path: PathBuf,
    flushed: u64,
    buffer: Vec<Hash>,
    /// The last stored hashes: indices `flushed - tail.len() .. flushed`.
    tail: VecDeque<Hash>,
}

impl Level {
    fn new(file: File, path: PathBuf, flushed: u64) -> Level {
        let mut level = Level {
            file,
            path,
            flushed,
            buffer: Vec::new(),
            tail: VecDeque::new(),
        };
        level.load_tail();
        level
    }

    /// Reads the last [`TAIL_NODES`] stored hashes into the tail (one read;
    /// on a failure the tail stays empty and reads go to the file).
    fn load_tail(&mut self) {
        let count = self.flushed.min(TAIL_NODES as u64);
        let mut bytes = vec![0u8; count as usize * 32];
        if self
            .file
            .read_exact_at(&mut bytes, (self.flushed - count) * 32)
            .is_ok()
        {
            self.tail = bytes
                .chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    h
                })
                .collect();
        }
    }

    fn len(&self) -> u64 {
        self.flushed + self.buffer.len() as u64
    }

    /// The hash at `index`; a failed file read is `Err` (never "absent").
    fn read(&self, index: u64) -> Result<Option<Hash>, LogReadError> {
        if index < self.flushed {
            let tail_start = self.flushed - self.tail.len() as u64;
            if index >= tail_start {
                let k = usize::try_from(index - tail_start).ok();
                return Ok(k.and_then(|k| self.tail.get(k)).copied());
            }
            let mut h = [0u8; 32];
            self.file
                .read_exact_at(&mut h, index * 32)
                .map_err(|e| LogReadError {
                    path: self.path.clone(),
                    why: e.to_string(),
                })?;
            Ok(Some(h))
        } else {
            let k = usize::try_from(index - self.flushed).ok();
            Ok(k.and_then(|k| self.buffer.get(k)).copied())
        }
    }
}

/// File-backed [`NodeStore`]. Writes are buffered until [`FileNodes::sync`].
pub struct FileNodes {
    dir: PathBuf,
    levels: Vec<Level>,
    error: Option<StoreError>,
    /// The first node read that failed (see [`FileNodes::read_failure`]).
    read_failed: std::sync::OnceLock<LogReadError>,
}

impl std::fmt::Debug for FileNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileNodes")
            .field("dir", &self.dir)
            .field("leaves", &self.leaves())
            .finish()
    }
}

/// A node read that failed while opening the files, as an open error.
fn read_io(e: &LogReadError) -> StoreError {
    StoreError::Io {
        path: e.path.clone(),
        source: std::io::Error::other(e.why.clone()),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileNodes {
    /// Opens the node files in `dir` for a log of `leaf_count` entries. Each
    /// level is cut to what the leaves support (a crash may have left more or
    /// less of any file), missing parents are recomputed from their children,
    /// and [`FileNodes::leaves`] says how many leaves are stored: the caller
    /// re-pushes the leaf hashes of the entries after that.
    pub fn open(dir: &Path, leaf_count: u64) -> Result<FileNodes, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut nodes = FileNodes {
            dir: dir.to_path_buf(),
            levels: Vec::new(),
            error: None,
            read_failed: std::sync::OnceLock::new(),
        };
        let mut below = leaf_count;
        let mut level = 0u32;
        loop {
            let path = dir.join(format!("level-{level:02}.bin"));
            if below == 0 && !path.exists() {
                break;
            }
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&path)
                .map_err(io(&path))?;
            let on_disk = file.metadata().map_err(io(&path))?.len() / 32;
            let keep = on_disk.min(below);
            file.set_len(keep * 32).map_err(io(&path))?;
            nodes.levels.push(Level::new(file, path, keep));
            if level > 0 {
                // Recompute parents the crash lost, from their children.
                let expected = nodes.levels[level as usize - 1].len() / 2;
                while nodes.levels[level as usize].len() < expected {
                    let i = nodes.levels[level as usize].len();
                    let child = &nodes.levels[level as usize - 1];
                    let (Some(l), Some(r)) = (
                        child.read(2 * i).map_err(|e| read_io(&e))?,
                        child.read(2 * i + 1).map_err(|e| read_io(&e))?,
                    ) else {
                        break;
                    };
                    nodes.levels[level as usize].buffer.push(node_hash(&l, &r));
                }
            }
            below = nodes.levels[level as usize].len() / 2;
            level += 1;
            if below == 0 && level > 64 {
                break;
            }
        }
        // Levels above the supported height hold nothing.
        while nodes.levels.last().is_some_and(|l| l.len() == 0) && nodes.levels.len() > 1 {
            nodes.levels.pop();
        }
        nodes.sync()?;
        Ok(nodes)
    }

    /// The first node read that failed, if one did: a tree node the
    /// store holds could not be read, so whatever asked for it (a proof, a
    /// parent while appending) went without it. The replica must stop
    /// rather than go on with a tree it cannot read (the log store reports
    /// it, [`crate::store::LogStore::read_failure`]).
    pub fn read_failure(&self) -> Option<&LogReadError> {
        self.read_failed.get()
    }

    /// Leaves stored (level 0).
    pub fn leaves(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len())
    }

    /// Writes buffered hashes and fsyncs every level file; also reports a
    /// write error that happened inside [`NodeStore::put`].
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        for l in &mut self.levels {
            if l.buffer.is_empty() {
                continue;
            }
            let bytes: Vec<u8> = l.buffer.iter().flat_map(|h| h.iter().copied()).collect();
            l.file
                .write_all_at(&bytes, l.flushed * 32)
                .and_then(|()| l.file.sync_data())
                .map_err(io(&l.path))?;
            l.flushed += l.buffer.len() as u64;
            l.tail.extend(l.buffer.drain(..));
            while l.tail.len() > TAIL_NODES {
                l.tail.pop_front();
            }
        }
        Ok(())
    }
}

impl NodeStore for FileNodes {
    fn get(&self, level: u32, index: u64) -> Option<Hash> {
        match self.levels.get(level as usize)?.read(index) {
            Ok(h) => h,
            Err(e) => {
                // Sticky: the store's owner stops on it (see `read_failure`).
                let _ = self.read_failed.set(e);
                None
            }
        }
    }

    fn put(&mut self, level: u32, index: u64, hash: Hash) {
        while self.levels.len() <= level as usize {
            let path = self.dir.join(format!("level-{:02}.bin", self.levels.len()));
            match OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(&path)
            {
                Ok(file) => self.levels.push(Level::new(file, path, 0)),
                Err(source) => {
                    self.error.get_or_insert(StoreError::Io { path, source });
                    return;
                }
            }
        }
        let l = &mut self.levels[level as usize];
        // Appends come in index order; an index already stored (re-pushed
        // after recovery) holds the same hash.
        if index == l.len() {
            l.buffer.push(hash);
        }
    }
}
