//! `belfry-bench catchup`: how long a new (or wiped) replica takes to catch
//! up a long log from real `belfry node` processes, what it costs the
//! replica and the ones serving it, against copying the same log locally.
//!
//! The run: `belfry keygen` for n replicas on loopback; replica 0's data
//! directory bulk-loaded with `N` entries ([`crate::bulk`]) and copied into
//! replicas 1 … n − 2; the n − 1 loaded replicas started, and digests
//! stamped (receipt indices above `N`: the cluster orders on top of the
//! bulk log) until their DAGs are past [`bulk::PAST_GC_ROUND`]. Then the
//! last replica starts with an empty data directory, and the run measures until
//! its log reaches the largest head the others had signed when it started
//! (its `belfry_log_size`, polled every 100 ms): the time, its peak
//! resident memory (VmHWM) and the serving replicas', the bytes it received
//! from its peers, and entries per second. Its signed head is then checked
//! against a serving replica's with a consistency proof from the client
//! library, and a new stamp must reach it.
//!
//! Baselines from the same run: the file log's append rate while loading
//! (what the replica's own ordering could at most write) and the time to
//! copy the loaded log and journal into another data directory.
//!
//! Catch-up answers are rate-limited per asking peer
//! (`SERVE_BYTES_PER_PEER_PER_S`, 1 MiB/s after an 8 MiB burst): the figure
//! includes what that costs.

use crate::bulk;
use crate::chaos::{keygen, Procs};
use anyhow::{bail, ensure, Context};
use belfry_client::{Client, ClientOptions};
use belfry_replica::timestamp::SignedTreeHead;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the loaded replicas may take to take part in the rounds.
const JOIN: Duration = Duration::from_secs(120);
/// A catch-up that neither received [`STALL_BYTES`] nor grew its log for
/// this long has stalled.
const STALL: Duration = Duration::from_secs(120);
/// More than an idle DAG brings in [`STALL`], less than catch-up pages
/// (at least 1 MiB a second from each peer after the burst).
const STALL_BYTES: u64 = 4 << 20;
/// How long a stamp may take.
const STAMP: Duration = Duration::from_secs(60);
/// How long the caught-up replica may take to log a new stamp.
const NEW_STAMP: Duration = Duration::from_secs(120);
/// Digests per stamp call on top of the bulk log before the empty
/// replica starts.
const STAMPED: u64 = 10;
/// The seed of the bulk digests.
const SEED: u64 = 1;

/// What to run.
#[derive(Clone, Debug)]
pub struct CatchupConfig {
    /// Replicas (n ≥ 4): n − 1 loaded, one empty.
    pub replicas: usize,
    /// Entries in the bulk log.
    pub entries: u64,
    /// The `belfry` binary.
    pub belfry: PathBuf,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct CatchupReport {
    /// Replicas.
    pub replicas: usize,
    /// Entries in the bulk log.
    pub entries: u64,
    /// Seconds to build the bulk log (one data directory).
    pub build_s: f64,
    /// The file log's appends per second while building (baseline).
    pub append_entries_per_s: f64,
    /// Bytes of one loaded data directory (log and journal).
    pub loaded_bytes: u64,
    /// Seconds to copy it into another replica's data directory, each
    /// copy (baseline).
    pub copy_s: Vec<f64>,
    /// The smallest receipt index of the digests stamped on top of the
    /// bulk log (above `entries`).
    pub stamped_from_index: u64,
    /// The signed size the empty replica had to reach (the largest
    /// head the loaded replicas had signed when it started).
    pub target_size: u64,
    /// From its start until its log held the first entries, s.
    pub first_entries_s: Option<f64>,
    /// From its start until its log reached `target_size`, s.
    pub catchup_s: f64,
    /// `target_size / catchup_s`.
    pub catchup_entries_per_s: f64,
    /// `catchup_s` over the fastest copy.
    pub ratio_to_copy: f64,
    /// `catchup_s` over the time to append `target_size` entries at
    /// `append_entries_per_s`.
    pub ratio_to_append: f64,
    /// Bytes the empty replica received from its peers until then (all
    /// traffic, catch-up and the DAG).
    pub bytes_received: u64,
    /// `bytes_received / target_size`.
    pub bytes_per_entry: f64,
    /// The empty replica's peak resident memory until then (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// The serving replicas' resident memory before it started, bytes.
    pub serving_rss_before_bytes: Vec<u64>,
    /// Their peak resident memory (VmHWM) when it had caught up, bytes.
    pub serving_peak_rss_bytes: Vec<u64>,
    /// Verified entries its catch-up streamed into the log before
    /// installing their state (`belfry_catchup_streamed`; none from a
    /// `belfry` that does not export it).
    pub streamed_entries: Option<u64>,
    /// The most verified entries its catch-up held in memory
    /// (`belfry_catchup_buffered_peak`).
    pub buffered_peak_entries: Option<u64>,
    /// Ranges and states its catch-up installed (`belfry_catchup_installs`).
    pub installs: Option<u64>,
    /// The catching-up replica once a second until it caught up.
    pub samples: Vec<Sample>,
    /// The index at which the caught-up replica logged a new stamp.
    pub new_stamp_index: u64,
    /// From the new stamp's submission until the caught-up replica
    /// served its receipt, s.
    pub new_stamp_s: f64,
}

/// The catching-up replica at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Since it started, s.
    pub t_s: f64,
    /// Its log's length.
    pub log_size: u64,
    /// Bytes it received from its peers so far.
    pub bytes_received: u64,
    /// Its resident memory, bytes.
    pub rss_bytes: u64,
}

/// Runs the benchmark in `dir` (the keys, data directories and node logs).
pub fn run(config: &CatchupConfig, dir: &Path) -> anyhow::Result<CatchupReport> {
    let n = config.replicas;
    ensure!(n >= 4, "--replicas must be at least 4, got {n}");
    let entries = config.entries;
    let empty = n - 1;
    let (mut procs, cluster) = keygen(&config.belfry, n, dir, &[])?;

    // The bulk log, once, then copies of it.
    let bar = progress(entries, "bulk log");
    let t = Instant::now();
    let loaded = bulk::load(&procs.config(0), entries, SEED, &mut |k| {
        bar.set_position(k)
    })?;
    let build_s = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let loaded_bytes = bulk::LOADED_DIRS
        .iter()
        .map(|d| bulk::tree_bytes(&loaded.data_dir.join(d)))
        .sum();
    let mut copy_s = Vec::new();
    for i in 1..empty {
        let to = data_dir(&procs, i)?;
        let t = Instant::now();
        bulk::copy(&loaded.data_dir, &to)?;
        copy_s.push(t.elapsed().as_secs_f64());
    }
    eprintln!(
        "bulk log: {entries} entries in {build_s:.1} s, {:.1} MiB; copied in {:?} s",
        loaded_bytes as f64 / 1_048_576.0,
        copy_s
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );

    // The loaded replicas order on top of the bulk log.
    for i in 0..empty {
        procs.start(i)?;
    }
    wait_joined(&mut procs, 0..empty)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = {
        let _guard = runtime.enter();
        Client::new(
            cluster.client_info(),
            ClientOptions {
                stamp_timeout: STAMP,
                ..ClientOptions::default()
            },
        )?
    };
    let stamped_from_index = stamp_past_gc(&runtime, &client, &procs, 0..empty)?;
    ensure!(
        stamped_from_index >= entries,
        "a digest stamped on top of the bulk log was logged at {stamped_from_index}, within it"
    );
    let target = runtime
        .block_on(largest_head(&client, 0..empty))?
        .head
        .tree_size;
    let serving_rss_before_bytes = (0..empty)
        .map(|i| procs.rss_bytes(i).unwrap_or(0))
        .collect();

    // The empty replica catches up.
    procs.start(empty)?;
    let started = Instant::now();
    let watched = watch(&mut procs, empty, target, started)?;
    let catchup_s = watched.done.as_secs_f64();
    let bytes_received = watched.bytes_received;
    let peak_rss_bytes = procs.peak_rss_bytes(empty).unwrap_or(0);
    let gauge = |name| procs.metric(empty, name).map(|v| v as u64);
    let streamed_entries = gauge("belfry_catchup_streamed");
    let buffered_peak_entries = gauge("belfry_catchup_buffered_peak");
    let installs = gauge("belfry_catchup_installs");
    let serving_peak_rss_bytes = (0..empty)
        .map(|i| procs.peak_rss_bytes(i).unwrap_or(0))
        .collect();
    runtime
        .block_on(agrees(&client, empty, 0..empty))
        .context("the caught-up replica's head")?;
    let (new_stamp_index, new_stamp_s) =
        runtime.block_on(new_stamp_reaches(&client, &mut procs, empty))?;
    drop(procs);

    let append_entries_per_s = entries as f64 / build_s.max(1e-9);
    let fastest_copy = copy_s.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(CatchupReport {
        replicas: n,
        entries,
        build_s,
        append_entries_per_s,
        loaded_bytes,
        copy_s,
        stamped_from_index,
        target_size: target,
        first_entries_s: watched.first.map(|d| d.as_secs_f64()),
        catchup_s,
        catchup_entries_per_s: target as f64 / catchup_s.max(1e-9),
        ratio_to_copy: catchup_s / fastest_copy.max(1e-9),
        ratio_to_append: catchup_s / (target as f64 / append_entries_per_s).max(1e-9),
        bytes_received,
        bytes_per_entry: bytes_received as f64 / target.max(1) as f64,
        peak_rss_bytes,
        serving_rss_before_bytes,
        serving_peak_rss_bytes,
        streamed_entries,
        buffered_peak_entries,
        installs,
        samples: watched.samples,
        new_stamp_index,
        new_stamp_s,
    })
}

/// Stamps on top of the bulk log, a call after the other (work keeps the
/// rounds at the fast pace), until the replicas `which` are all past
/// [`bulk::PAST_GC_ROUND`]; returns the smallest receipt index.
fn stamp_past_gc(
    runtime: &tokio::runtime::Runtime,
    client: &Client,
    procs: &Procs,
    which: std::ops::Range<usize>,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + JOIN;
    let mut smallest = u64::MAX;
    for call in 0u64.. {
        let digests: Vec<[u8; 32]> = (0..STAMPED)
            .map(|k| stamp_digest(b"before", call * STAMPED + k))
            .collect();
        let receipts = runtime
            .block_on(client.stamp(&digests))
            .context("stamping on top of the bulk log")?;
        smallest = receipts
            .iter()
            .map(|r| r.leaf_index)
            .fold(smallest, u64::min);
        let past = which
            .clone()
            .all(|i| procs.metric(i, "belfry_round").unwrap_or(0.0) >= bulk::PAST_GC_ROUND as f64);
        if past {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the loaded replicas did not reach round {} within {} s",
                bulk::PAST_GC_ROUND,
                JOIN.as_secs()
            );
        }
    }
    Ok(smallest)
}

/// Replica `i`'s data directory, as its configuration names it.
fn data_dir(procs: &Procs, i: usize) -> anyhow::Result<PathBuf> {
    let path = procs.config(i);
    Ok(belfry_node::ReplicaFile::load(&path)
        .with_context(|| format!("loading {}", path.display()))?
        .data_dir)
}

/// A digest of the run's own stamps.
fn stamp_digest(tag: &[u8], k: u64) -> [u8; 32] {
    belfry_replica::coin::sha3(&[b"belfry-catchup-bench", tag, &k.to_be_bytes()])
}

/// A progress bar of `len` (hidden when stderr is not a terminal).
fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} {bar:40} {pos}/{len} {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Waits until the replicas `which` take part in the rounds.
fn wait_joined(procs: &mut Procs, which: std::ops::Range<usize>) -> anyhow::Result<()> {
    let deadline = Instant::now() + JOIN;
    loop {
        for i in which.clone() {
            if !procs.is_running(i) {
                bail!("replica {i} exited:\n{}", procs.log_tail(i, 20));
            }
        }
        let joined = which
            .clone()
            .all(|i| procs.metric(i, "belfry_round").unwrap_or(0.0) > 0.0);
        if joined {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the loaded replicas did not all take part in the rounds within {} s:\n{}",
                JOIN.as_secs(),
                which.map(|i| procs.log_tail(i, 10)).collect::<String>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The largest signed head of the replicas `which`.
async fn largest_head(
    client: &Client,
    which: std::ops::Range<usize>,
) -> anyhow::Result<SignedTreeHead> {
    let mut best: Option<SignedTreeHead> = None;
    for r in which {
        if let Some(h) = client.tree_head(r).await? {
            if best
                .as_ref()
                .is_none_or(|b| h.head.tree_size > b.head.tree_size)
            {
                best = Some(h);
            }
        }
    }
    best.context("no replica has a signed head")
}

/// What watching the catch-up saw.
struct Watched {
    /// From the start until the log held entries.
    first: Option<Duration>,
    /// From the start until it reached the target.
    done: Duration,
    /// Bytes from peers then.
    bytes_received: u64,
    /// Once a second.
    samples: Vec<Sample>,
}

/// Polls replica `r`'s log size until it reaches `target`; gives up when
/// the replica exits, records a catch-up fault (its honest peers' answers
/// do not verify against its log: the logs diverged), or neither receives
/// [`STALL_BYTES`] nor grows its log for [`STALL`].
fn watch(procs: &mut Procs, r: usize, target: u64, started: Instant) -> anyhow::Result<Watched> {
    let bar = progress(target, "catch-up");
    let mut first = None;
    let (mut last, mut last_growth) = ((0u64, 0u64), Instant::now());
    let mut samples = Vec::new();
    let bytes_in = |procs: &Procs| {
        procs
            .metric_sum(r, "belfry_peer_bytes_in_total", "")
            .unwrap_or(0.0) as u64
    };
    loop {
        if !procs.is_running(r) {
            bail!("replica {r} exited:\n{}", procs.log_tail(r, 30));
        }
        let len = procs.metric(r, "belfry_log_size").unwrap_or(0.0) as u64;
        let faults = procs
            .metric_sum(r, "belfry_faults_total", "kind=\"catch_up_")
            .unwrap_or(0.0);
        if faults > 0.0 {
            bail!(
                "replica {r} recorded {faults} catch-up faults against honest peers (its log, {len} entries, diverged from theirs):\n{}",
                procs.log_tail(r, 30)
            );
        }
        if len > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if len >= target {
            let done = started.elapsed();
            let bytes_received = bytes_in(procs);
            bar.finish_and_clear();
            return Ok(Watched {
                first,
                done,
                bytes_received,
                samples,
            });
        }
        let t = started.elapsed();
        if t.as_secs() >= samples.len() as u64 {
            samples.push(Sample {
                t_s: t.as_secs_f64(),
                log_size: len,
                bytes_received: bytes_in(procs),
                rss_bytes: procs.rss_bytes(r).unwrap_or(0),
            });
        }
        let now = (len, bytes_in(procs));
        if now.0 > last.0 || now.1 > last.1 + STALL_BYTES {
            (last, last_growth) = (now, Instant::now());
            bar.set_position(len);
        }
        if last_growth.elapsed() > STALL {
            bail!(
                "replica {r}'s log stopped at {len} of {target} entries, and it received nothing, for {} s:\n{}",
                STALL.as_secs(),
                procs.log_tail(r, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replica `r`'s signed head is consistent with the largest of `others`
/// (a consistency proof from the larger one).
async fn agrees(client: &Client, r: usize, others: std::ops::Range<usize>) -> anyhow::Result<()> {
    let deadline = Instant::now() + STALL;
    let mine = loop {
        if let Ok(Some(h)) = client.tree_head(r).await {
            break h;
        }
        if Instant::now() > deadline {
            bail!("replica {r} serves no signed head");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let theirs = largest_head(client, others.clone()).await?;
    let asked = if theirs.head.tree_size >= mine.head.tree_size {
        others.clone().next().context("no serving replica")?
    } else {
        r
    };
    client.consistency(asked, &mine, &theirs).await?;
    Ok(())
}

/// Stamps a new digest and waits until replica `r` serves its receipt:
/// its index, and the seconds it took.
async fn new_stamp_reaches(
    client: &Client,
    procs: &mut Procs,
    r: usize,
) -> anyhow::Result<(u64, f64)> {
    let d = stamp_digest(b"after", 0);
    let t = Instant::now();
    client
        .stamp(&[d])
        .await
        .context("a stamp after the catch-up")?;
    loop {
        if let Ok(Some(receipt)) = client.receipt(r, &d).await {
            return Ok((receipt.leaf_index, t.elapsed().as_secs_f64()));
        }
        if !procs.is_running(r) || t.elapsed() > NEW_STAMP {
            bail!(
                "replica {r} did not log a new stamp within {} s:\n{}",
                NEW_STAMP.as_secs(),
                procs.log_tail(r, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The report as a short table.
pub fn table(r: &CatchupReport) -> String {
    let mib = |b: u64| b as f64 / 1_048_576.0;
    let fastest_copy = r.copy_s.iter().copied().fold(f64::INFINITY, f64::min);
    let serving = |v: &[u64]| {
        v.iter()
            .map(|b| format!("{:.0}", mib(*b)))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let mut out = format!(
        "catch-up of an empty replica, n = {}, bulk log of {} entries ({:.1} MiB on disk)\n",
        r.replicas,
        r.entries,
        mib(r.loaded_bytes)
    );
    out += &format!(
        "  target (signed by the others)  {:>12} entries (stamps from index {})\n",
        r.target_size, r.stamped_from_index
    );
    out += &format!(
        "  catch-up                       {:>12.2} s   {:>10.0} entries/s   (first entries after {})\n",
        r.catchup_s,
        r.catchup_entries_per_s,
        r.first_entries_s
            .map_or("-".to_string(), |s| format!("{s:.2} s"))
    );
    out += &format!(
        "  baseline: local copy           {:>12.2} s   catch-up / copy   {:>8.1}\n",
        fastest_copy, r.ratio_to_copy
    );
    out += &format!(
        "  baseline: file log append      {:>12.2} s   {:>10.0} entries/s   catch-up / append {:.2}\n",
        r.build_s, r.append_entries_per_s, r.ratio_to_append
    );
    out += &format!(
        "  bytes received                 {:>12.1} MiB {:>10.1} B/entry\n",
        mib(r.bytes_received),
        r.bytes_per_entry
    );
    out += &format!(
        "  peak RSS, catching up          {:>12.1} MiB\n",
        mib(r.peak_rss_bytes)
    );
    if let (Some(streamed), Some(buffered)) = (r.streamed_entries, r.buffered_peak_entries) {
        out += &format!(
            "  streamed into the log          {streamed:>12} entries (at most {buffered} held in memory, {} installs)\n",
            r.installs.unwrap_or(0)
        );
    }
    out += &format!(
        "  RSS, serving                   before {} MiB, peak {} MiB\n",
        serving(&r.serving_rss_before_bytes),
        serving(&r.serving_peak_rss_bytes)
    );
    out += &format!(
        "  new stamp at the caught-up replica: index {} after {:.2} s\n",
        r.new_stamp_index, r.new_stamp_s
    );
    out
}
