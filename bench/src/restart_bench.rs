//! How long a replica takes to restart, and how much it reads, as its log
//! grows: the claim is that a restart reads one journal snapshot, the turns
//! after it and a few pages of the log store — not the log.
//!
//! For each log length N it builds a replica's storage as a long-lived node
//! leaves it: a file log (redb + node files) holding N entries (a Tick every
//! 1,000), durably; a journal compacted at N (one snapshot) followed by
//! 1,000 turns of 10 entries each that the log store has not synced (a crash
//! came before its next sync), so the restart also tops the log up from the
//! journal. Then it opens it all as the node does — `FileJournal::open`,
//! `FileLog::open` (with the check of every page of `log.redb` a node does by
//! default, and without it), `Host::open` — and measures wall time (also with the page
//! cache dropped, when the process may) and the bytes read by system calls
//! (`rchar` of `/proc/self/io`, which counts every `read`/`pread` whatever the
//! cache). The baseline is reading the log's entries back once (what a
//! restart that replayed its log would at least cost), measured in the same
//! run.

use belfry_replica::broadcast::fair::{Sequencer, SequencerConfig};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{MockCrypto, Policy, ReplicaId};
use belfry_replica::filelog::FileLog;
use belfry_replica::journal::{FileJournal, Journal, JournalRecord, Snapshot, TurnRecord};
use belfry_replica::timestamp::store::LogStore;
use belfry_replica::timestamp::{DigestEntry, Entry, TickEntry};
use belfry_replica::{Host, HostConfig, ReplicaConfig};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One log length's figures.
#[derive(Clone, Debug, Serialize)]
pub struct RestartRow {
    /// Entries in the log.
    pub entries: u64,
    /// Restart wall time with a warm page cache, ms.
    pub restart_ms: f64,
    /// Restart wall time after dropping the page cache, ms (when allowed).
    pub cold_restart_ms: Option<f64>,
    /// Bytes read by system calls during the restart.
    pub bytes_read: u64,
    /// Journal bytes read (one snapshot and the turns after it).
    pub journal_bytes: u64,
    /// Reading every entry back once (the baseline), ms.
    pub read_log_ms: f64,
    /// The same restart with `check_log_on_start = false` (no check of
    /// every page of `log.redb`; reads are still checked), warm, ms.
    pub unchecked_ms: f64,
    /// ... after dropping the page cache, ms (when allowed).
    pub cold_unchecked_ms: Option<f64>,
    /// Bytes read by system calls during the unchecked restart.
    pub unchecked_bytes_read: u64,
    /// Restart time over the baseline.
    pub ratio_to_baseline: f64,
    /// Seconds it took to build the storage.
    pub build_s: f64,
}

/// One compaction of a serving replica.
#[derive(Clone, Debug, Serialize)]
pub struct CompactionRow {
    /// Simulated seconds of load before it.
    pub after_s: u64,
    /// The replica's log length then.
    pub log_len: u64,
    /// DAG vertices the replica held.
    pub dag_vertices: usize,
    /// Digests pending in its sequencer.
    pub pending: usize,
    /// Journal bytes on disk after the compaction (the snapshot).
    pub journal_bytes_after: u64,
    /// The pause: syncing the log store, building and appending the
    /// snapshot, and the journal sync, ms.
    pub compact_ms: f64,
    /// A 4 KiB append and fsync in the same directory, just before (the
    /// baseline: the least one turn's journal sync costs), ms.
    pub fsync_ms: f64,
}

/// The benchmark's report.
#[derive(Clone, Debug, Serialize)]
pub struct RestartReport {
    /// One row per log length.
    pub rows: Vec<RestartRow>,
    /// Compactions of a replica serving 1,000 digests/s (n = 4).
    pub compactions: Vec<CompactionRow>,
    /// Peak resident memory of the process, KiB.
    pub peak_rss_kib: Option<u64>,
}

fn rchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("rchar:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

fn drop_caches() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn entry(i: u64, tick_time: Micros) -> Entry {
    if i % 1_000 == 999 {
        Entry::Tick(TickEntry {
            wave: i / 1_000 + 1,
            time: tick_time,
            coin_sig: belfry_replica::coin::GroupSignature([7; 96]),
            leader: [1; 32],
            state_root: [2; 32],
            prev_root: [3; 32],
            batch_len: 999,
        })
    } else {
        Entry::Digest(DigestEntry {
            digest: belfry_replica::coin::sha3(&[b"restart bench", &i.to_be_bytes()]),
            witnessed_at: tick_time,
            key: i,
            witnesses: 3,
            late: false,
        })
    }
}

fn build(dir: &Path, n: u64, tail_turns: u64) -> anyhow::Result<()> {
    let genesis = Micros(1_763_700_000_000_000);
    let mut log = FileLog::open(&dir.join("log")).map_err(anyhow::Error::msg)?;
    for i in 0..n {
        log.append(&entry(i, genesis));
        if i % 100_000 == 99_999 {
            LogStore::sync(&mut log).map_err(anyhow::Error::msg)?;
        }
    }
    LogStore::sync(&mut log).map_err(anyhow::Error::msg)?;
    let (mut journal, _) = FileJournal::open(dir).map_err(anyhow::Error::msg)?;
    let config = SequencerConfig::new(4, 1, Policy::Lamport, genesis);
    let sequencer = Sequencer::new(config).state().clone();
    journal.append(JournalRecord::Snapshot(Box::new(Snapshot {
        base: n,
        log_len: n,
        entries: Vec::new(),
        heads: Vec::new(),
        broadcast: Vec::new(),
        sequencer: Some(sequencer),
    })))?;
    for t in 0..tail_turns {
        let first = n + t * 10;
        journal.append(JournalRecord::Turn(TurnRecord {
            first,
            entries: (first..first + 10).map(|i| entry(i, genesis)).collect(),
            heads: Vec::new(),
            writes: Vec::new(),
            sequencer: None,
        }))?;
    }
    journal.sync()?;
    Ok(())
}

fn open(dir: &Path, check: bool) -> anyhow::Result<(u64, u64)> {
    let (journal, recovered) = FileJournal::open(dir).map_err(anyhow::Error::msg)?;
    let journal_bytes = recovered.bytes_read;
    let log = FileLog::open_with(&dir.join("log"), check).map_err(anyhow::Error::msg)?;
    let cluster = belfry_replica::coin::ClusterParams {
        group_public_key: belfry_replica::coin::GroupPublicKey::from_hex(
            "908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0",
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        n: 4,
        f: 1,
        policy: Policy::Lamport,
        genesis_time: Micros(1_763_700_000_000_000),
    };
    let crypto = Arc::new(MockCrypto::new(4, 1, ReplicaId(0), [9; 32]));
    let host = Host::open(
        ReplicaConfig::new(ReplicaId(0), cluster),
        crypto,
        journal,
        recovered,
        Box::new(log),
        HostConfig::default(),
        1,
    )?;
    Ok((host.core().log_len(), journal_bytes))
}

/// Runs the benchmark for each log length.
pub fn run(lengths: &[u64], dir: &Path) -> anyhow::Result<RestartReport> {
    let mut rows = Vec::new();
    for &n in lengths {
        let case = dir.join(format!("log-{n}"));
        if case.exists() {
            std::fs::remove_dir_all(&case)?;
        }
        let tail = 1_000;
        let started = Instant::now();
        build(&case, n, tail)?;
        let build_s = started.elapsed().as_secs_f64();
        // Baseline: every entry read back once.
        let log = FileLog::open(&case.join("log")).map_err(anyhow::Error::msg)?;
        let t = Instant::now();
        let mut read = 0u64;
        for i in 0..log.len() {
            read += u64::from(log.entry(i)?.is_some());
        }
        let read_log_ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(read == n, "read back {read} of {n} entries");
        drop(log);
        // Warm restart, without and with the check of every page, then
        // both cold (root only).
        let restart = |check: bool| -> anyhow::Result<(f64, u64, u64)> {
            let before = rchar();
            let t = Instant::now();
            let (len, journal_bytes) = open(&case, check)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            anyhow::ensure!(len == n + 10 * tail, "restarted with {len} entries");
            Ok((ms, rchar().saturating_sub(before), journal_bytes))
        };
        let (unchecked_ms, unchecked_bytes_read, _) = restart(false)?;
        let (restart_ms, bytes_read, journal_bytes) = restart(true)?;
        let cold = |check: bool| -> anyhow::Result<Option<f64>> {
            if !drop_caches() {
                return Ok(None);
            }
            let t = Instant::now();
            open(&case, check)?;
            Ok(Some(t.elapsed().as_secs_f64() * 1e3))
        };
        let cold_unchecked_ms = cold(false)?;
        let cold_restart_ms = cold(true)?;
        rows.push(RestartRow {
            entries: n,
            restart_ms,
            cold_restart_ms,
            bytes_read,
            unchecked_ms,
            cold_unchecked_ms,
            unchecked_bytes_read,
            journal_bytes,
            read_log_ms,
            ratio_to_baseline: restart_ms / read_log_ms.max(1e-9),
            build_s,
        });
        std::fs::remove_dir_all(&case)?;
    }
    let compactions = compactions(&dir.join("serving"))?;
    Ok(RestartReport {
        rows,
        compactions,
        peak_rss_kib: crate::report::peak_rss_kib(),
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Compacts replica 0 of an in-process cluster (real BLS, files) serving
/// 1,000 digests a second, after 2, 5 and 10 simulated seconds of load,
/// timing each compaction against one ordinary journal sync.
fn compactions(dir: &Path) -> anyhow::Result<Vec<CompactionRow>> {
    use belfry_replica::wire::ClientRequest;
    use belfry_world::LocalCluster;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let genesis = Micros(1_763_700_000_000_000);
    let (mut c, _) = LocalCluster::with_bls(4, Policy::Lamport, genesis, 11)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    c.move_to_files(0, dir).map_err(anyhow::Error::msg)?;
    let mut rows = Vec::new();
    let mut next = 0u64;
    for after_s in [2u64, 5, 10] {
        while c.now() < genesis.saturating_add(Micros::from_secs(after_s)) {
            let ds: Vec<[u8; 32]> = (0..100)
                .map(|_| {
                    next += 1;
                    let mut d = [0xc0; 32];
                    d[..8].copy_from_slice(&next.to_be_bytes());
                    d
                })
                .collect();
            c.request_all(1, &ClientRequest::Submit(ds));
            c.run_until(c.now().saturating_add(Micros::from_millis(100)), |_| false);
        }
        // Baseline: what one turn's journal sync costs at least — a 4 KiB
        // append and fsync in the same directory.
        let probe = dir.join("fsync-probe");
        let t = Instant::now();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&probe)?;
            f.write_all(&[0u8; 4096])?;
            f.sync_data()?;
        }
        let fsync_ms = t.elapsed().as_secs_f64() * 1e3;
        let host = c
            .host_mut(0)
            .ok_or_else(|| anyhow::anyhow!("replica 0 stopped"))?;
        let t = Instant::now();
        host.compact().map_err(anyhow::Error::msg)?;
        host.sync().map_err(anyhow::Error::msg)?;
        let compact_ms = t.elapsed().as_secs_f64() * 1e3;
        let core = host.core();
        rows.push(CompactionRow {
            after_s,
            log_len: core.log_len(),
            dag_vertices: core.node().dag().vertices().count(),
            pending: core.pending_len(),
            journal_bytes_after: dir_bytes(&dir.join("journal")),
            compact_ms,
            fsync_ms,
        });
    }
    Ok(rows)
}

/// The report as a table.
pub fn table(r: &RestartReport) -> String {
    let mut out = String::from(
        "entries      restart (warm)  restart (cold)  bytes read   unchecked: warm     cold       bytes read   journal     read whole log   restart / read log\n",
    );
    let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |ms| format!("{ms:.1} ms"));
    for row in &r.rows {
        out.push_str(&format!(
            "{:>10}   {:>10.1} ms   {:>12}   {:>10}   {:>11.1} ms   {:>10}   {:>10}   {:>9}   {:>11.1} ms   {:>8.4}\n",
            row.entries,
            row.restart_ms,
            ms(row.cold_restart_ms),
            row.bytes_read,
            row.unchecked_ms,
            ms(row.cold_unchecked_ms),
            row.unchecked_bytes_read,
            row.journal_bytes,
            row.read_log_ms,
            row.ratio_to_baseline
        ));
    }
    out.push_str("\ncompaction of a serving replica (n = 4, 1,000 digests/s)\nafter   log length   DAG vertices   pending   journal after   compaction   4 KiB fsync\n");
    for row in &r.compactions {
        out.push_str(&format!(
            "{:>4} s   {:>10}   {:>12}   {:>7}   {:>13}   {:>7.2} ms   {:>10.2} ms\n",
            row.after_s,
            row.log_len,
            row.dag_vertices,
            row.pending,
            row.journal_bytes_after,
            row.compact_ms,
            row.fsync_ms
        ));
    }
    out
}
