//! One load step of `belfry-bench cluster`: stamp calls issued on the
//! open-loop schedule over the client connections, the ordered and head
//! streams followed, everything drained and measured.

use super::*;

/// One step: offers `rate` for the configured duration, drains, measures.
#[allow(clippy::too_many_arguments)]
pub(super) async fn load_step(
    config: &ClusterBenchConfig,
    procs: &Procs,
    clients: &[Client],
    follower: &Client,
    rate: f64,
    step: u8,
    name: &str,
    memory: &Arc<Mutex<MemoryWatch>>,
) -> anyhow::Result<Point> {
    let before = Before::read(procs);
    let from = procs.metric(0, "belfry_log_size").unwrap_or(0.0) as u64;

    let t0 = Instant::now();
    let tally = Tally::new();
    // The ordered stream and the heads, followed on their own connections.
    let follow = follow_streams(follower, from, step, t0, &tally);
    let load = Load {
        config,
        rate,
        step,
        name,
        t0,
        warmup: config.duration / 5,
        tally,
        progress: spinner(),
    };
    let (calls, offered) = load.offer(clients).await;
    let window_end = t0.elapsed();
    let steady_at_end = load.tally.steady.load(Ordering::Relaxed);
    load.drain(calls).await;
    // Entries and heads still on their way are given a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    follow.abort();
    load.progress.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    if let Ok(mut m) = memory.lock() {
        m.advance(window_end, procs);
    }
    let window = Window {
        offered,
        steady_at_end,
        end: window_end,
        elapsed_s: elapsed,
    };
    Ok(load.point(procs, &before, &window))
}

/// The replicas' and this process's CPU seconds so far.
fn cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>()
}

/// The counters a step's figures are differences of, read before it.
struct Before {
    /// The replicas' processes.
    pids: Vec<u32>,
    /// This process (the load generator).
    me: u32,
    /// The replicas' CPU seconds.
    cpu: f64,
    /// The generator's CPU seconds.
    generator_cpu: f64,
    /// Journal syncs, all replicas.
    fsyncs: f64,
    /// Bytes between peers.
    peer_bytes: f64,
    /// Bytes to clients, all replicas.
    client_bytes: f64,
}

impl Before {
    /// Reads the counters now.
    fn read(procs: &Procs) -> Before {
        let pids = procs.pids();
        let me = std::process::id();
        let (cpu0, gen0) = (cpu(&pids), cpu(&[me]));
        Before {
            cpu: cpu0,
            generator_cpu: gen0,
            fsyncs: metric_sum(procs, "belfry_fsync_seconds_count"),
            peer_bytes: peer_bytes(procs),
            client_bytes: metric_sum(procs, "belfry_client_bytes_out_total"),
            pids,
            me,
        }
    }
}

/// What a step's calls and streams record, shared with their tasks.
#[derive(Clone)]
struct Tally {
    /// Due to ordered, µs.
    ordered: Arc<Mutex<Histogram<u64>>>,
    /// Due to covered by a signed head, µs.
    inclusion: Arc<Mutex<Histogram<u64>>>,
    /// Due to a verified receipt, µs.
    receipt: Arc<Mutex<Histogram<u64>>>,
    /// Digests verified within the steady window.
    steady: Arc<AtomicU64>,
    /// Digests verified.
    verified: Arc<AtomicU64>,
    /// Calls that failed.
    failed: Arc<AtomicU64>,
    /// Calls in flight.
    in_flight: Arc<AtomicU64>,
}

impl Tally {
    /// Empty histograms and counters.
    fn new() -> Tally {
        Tally {
            ordered: Arc::new(Mutex::new(histogram())),
            inclusion: Arc::new(Mutex::new(histogram())),
            receipt: Arc::new(Mutex::new(histogram())),
            steady: Arc::new(AtomicU64::new(0)),
            verified: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Follows the ordered stream from `from` and the signed heads: each of
/// this step's digests is timed to ordered, and to covered by a head.
fn follow_streams(
    follower: &Client,
    from: u64,
    step: u8,
    t0: Instant,
    tally: &Tally,
) -> tokio::task::JoinHandle<()> {
    let (ordered, inclusion) = (tally.ordered.clone(), tally.inclusion.clone());
    let mut entries = follower.subscribe(from);
    let mut heads = follower.heads();
    tokio::spawn(async move {
        let mut waiting: VecDeque<(u64, u64)> = VecDeque::new();
        let mut signed = 0u64;
        let us = |t: Instant| t.saturating_duration_since(t0).as_micros() as u64;
        loop {
            tokio::select! {
                e = entries.next() => {
                    let Some((index, Entry::Digest(e))) = e else {
                        if e.is_none() { break; }
                        continue;
                    };
                    let Some((s, due)) = due_of(&e.digest) else { continue };
                    if s != step { continue; }
                    let now = us(Instant::now());
                    if let Ok(mut h) = ordered.lock() {
                        let _ = h.record(now.saturating_sub(due).max(1));
                    }
                    if index < signed {
                        if let Ok(mut h) = inclusion.lock() {
                            let _ = h.record(now.saturating_sub(due).max(1));
                        }
                    } else {
                        waiting.push_back((index, due));
                    }
                }
                h = heads.next() => {
                    let Some(Ok(h)) = h else { break };
                    signed = signed.max(h.head.tree_size);
                    let now = us(Instant::now());
                    if let Ok(mut hist) = inclusion.lock() {
                        while waiting.front().is_some_and(|(i, _)| *i < signed) {
                            if let Some((_, due)) = waiting.pop_front() {
                                let _ = hist.record(now.saturating_sub(due).max(1));
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A spinner that ticks on its own.
fn spinner() -> ProgressBar {
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    progress
}

/// What a step's load window came to.
struct Window {
    /// Digests offered.
    offered: u64,
    /// Digests verified within the steady window, when the load stopped.
    steady_at_end: u64,
    /// When the load stopped, from the step's start.
    end: Duration,
    /// Seconds from the step's start to the end of its measurement.
    elapsed_s: f64,
}

/// One step's open-loop load.
struct Load<'a> {
    config: &'a ClusterBenchConfig,
    /// Digests per second offered.
    rate: f64,
    step: u8,
    name: &'a str,
    /// The step's start.
    t0: Instant,
    /// Calls done before this count toward no throughput.
    warmup: Duration,
    tally: Tally,
    progress: ProgressBar,
}

impl Load<'_> {
    /// Issues the calls on the schedule for the configured duration; the
    /// calls still in flight, and the digests offered.
    async fn offer(&self, clients: &[Client]) -> (tokio::task::JoinSet<Duration>, u64) {
        // The schedule: one call every batch / rate seconds, whatever happens.
        let period = Duration::from_secs_f64(self.config.batch as f64 / self.rate);
        let mut calls = tokio::task::JoinSet::new();
        let mut k = 0u64;
        let mut offered = 0u64;
        let mut last_progress = Instant::now();
        while self.t0.elapsed() < self.config.duration {
            let due = self.t0 + period.mul_f64(k as f64);
            tokio::time::sleep_until(due.into()).await;
            let due_us = due.saturating_duration_since(self.t0).as_micros() as u64;
            let ds: Vec<[u8; 32]> = (0..self.config.batch as u64)
                .map(|j| digest(self.step, due_us, k, j))
                .collect();
            offered += ds.len() as u64;
            let client = clients[(k as usize) % clients.len()].clone();
            self.spawn_call(&mut calls, client, ds, due_us);
            k += 1;
            while calls.try_join_next().is_some() {}
            if last_progress.elapsed() >= Duration::from_millis(250) {
                last_progress = Instant::now();
                self.progress.set_message(format!(
                    "{}: {:.0} digests/s offered, {} verified, {} calls in flight",
                    self.name,
                    self.rate,
                    self.tally.verified.load(Ordering::Relaxed),
                    self.tally.in_flight.load(Ordering::Relaxed)
                ));
            }
        }
        (calls, offered)
    }

    /// One stamp call of `ds`, due at `due_us`: its receipts timed, its
    /// digests counted (toward the throughput if done in the steady window).
    fn spawn_call(
        &self,
        calls: &mut tokio::task::JoinSet<Duration>,
        client: Client,
        ds: Vec<[u8; 32]>,
        due_us: u64,
    ) {
        let (t0, warmup, end) = (self.t0, self.warmup, self.config.duration);
        let Tally {
            receipt,
            steady,
            verified,
            failed,
            in_flight,
            ..
        } = self.tally.clone();
        in_flight.fetch_add(1, Ordering::Relaxed);
        calls.spawn(async move {
            let ok = client.stamp(&ds).await.is_ok_and(|r| r.len() == ds.len());
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let done = t0.elapsed();
            if ok {
                let digests = ds.len() as u64;
                verified.fetch_add(digests, Ordering::Relaxed);
                if done >= warmup && done <= end {
                    steady.fetch_add(digests, Ordering::Relaxed);
                }
                if let Ok(mut h) = receipt.lock() {
                    let latency = (done.as_micros() as u64).saturating_sub(due_us).max(1);
                    let _ = h.record_n(latency, digests);
                }
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            done
        });
    }

    /// Lets the calls in flight finish (their digests count as verified,
    /// not toward the steady-state throughput); ones past the drain limit
    /// fail.
    async fn drain(&self, mut calls: tokio::task::JoinSet<Duration>) {
        let drain_deadline = Instant::now() + DRAIN_LIMIT;
        while !calls.is_empty() {
            self.progress.set_message(format!(
                "{}: draining {} calls in flight",
                self.name,
                self.tally.in_flight.load(Ordering::Relaxed)
            ));
            match tokio::time::timeout_at(drain_deadline.into(), calls.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    self.tally
                        .failed
                        .fetch_add(calls.len() as u64, Ordering::Relaxed);
                    calls.abort_all();
                    break;
                }
            }
        }
    }

    /// The step's figures.
    fn point(&self, procs: &Procs, before: &Before, window: &Window) -> Point {
        let n = procs.len();
        let elapsed = window.elapsed_s;
        let verified = self.tally.verified.load(Ordering::Relaxed);
        let per_digest = |x: f64| {
            if verified == 0 {
                0.0
            } else {
                (x / verified as f64 * 10.0).round() / 10.0
            }
        };
        let replica_cpu = cpu(&before.pids) - before.cpu;
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        let snapshot = |h: &Arc<Mutex<Histogram<u64>>>| {
            h.lock()
                .map(|h| Latency::of(&h))
                .unwrap_or_else(|p| Latency::of(&p.into_inner()))
        };
        let steady_secs = (window.end - self.warmup).as_secs_f64().max(0.001);
        Point {
            offered_digests_per_s: self.rate,
            throughput_digests_per_s: (window.steady_at_end as f64 / steady_secs).round(),
            offered: window.offered,
            verified,
            failed_calls: self.tally.failed.load(Ordering::Relaxed),
            ordered: snapshot(&self.tally.ordered),
            inclusion: snapshot(&self.tally.inclusion),
            receipt: snapshot(&self.tally.receipt),
            replicas_cpu: r2(replica_cpu / elapsed),
            cpu_us_per_digest: per_digest(replica_cpu * 1e6),
            generator_cpu: r2((cpu(&[before.me]) - before.generator_cpu) / elapsed),
            fsyncs_per_s: r2(
                (metric_sum(procs, "belfry_fsync_seconds_count") - before.fsyncs)
                    / elapsed
                    / n as f64,
            ),
            peer_bytes_per_digest: per_digest((peer_bytes(procs) - before.peer_bytes) / n as f64),
            client_bytes_per_digest: per_digest(
                metric_sum(procs, "belfry_client_bytes_out_total") - before.client_bytes,
            ),
            rss_bytes: (0..n).map(|i| procs.rss_bytes(i).unwrap_or(0)).collect(),
        }
    }
}
