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
    let n = procs.len();
    let pids = procs.pids();
    let me = std::process::id();
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>();
    let (cpu0, gen0) = (cpu(&pids), cpu(&[me]));
    let fsync0 = metric_sum(procs, "belfry_fsync_seconds_count");
    let peer0 = peer_bytes(procs);
    let client0 = metric_sum(procs, "belfry_client_bytes_out_total");
    let from = procs.metric(0, "belfry_log_size").unwrap_or(0.0) as u64;

    let t0 = Instant::now();
    let ordered = Arc::new(Mutex::new(histogram()));
    let inclusion = Arc::new(Mutex::new(histogram()));
    let receipt = Arc::new(Mutex::new(histogram()));
    let steady = Arc::new(AtomicU64::new(0));
    let verified = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));

    // The ordered stream and the heads, followed on their own connections.
    let follow = {
        let (ordered, inclusion) = (ordered.clone(), inclusion.clone());
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
    };

    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    // The schedule: one call every batch / rate seconds, whatever happens.
    let period = Duration::from_secs_f64(config.batch as f64 / rate);
    let warmup = config.duration / 5;
    let mut calls = tokio::task::JoinSet::new();
    let mut k = 0u64;
    let mut offered = 0u64;
    let mut last_progress = Instant::now();
    while t0.elapsed() < config.duration {
        let due = t0 + period.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let due_us = due.saturating_duration_since(t0).as_micros() as u64;
        let ds: Vec<[u8; 32]> = (0..config.batch as u64)
            .map(|j| digest(step, due_us, k, j))
            .collect();
        offered += ds.len() as u64;
        let client = clients[(k as usize) % clients.len()].clone();
        {
            let end = config.duration;
            let (receipt, steady, verified, failed, in_flight) = (
                receipt.clone(),
                steady.clone(),
                verified.clone(),
                failed.clone(),
                in_flight.clone(),
            );
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
        k += 1;
        while calls.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            progress.set_message(format!(
                "{name}: {rate:.0} digests/s offered, {} verified, {} calls in flight",
                verified.load(Ordering::Relaxed),
                in_flight.load(Ordering::Relaxed)
            ));
        }
    }
    let window_end = t0.elapsed();
    let steady_at_end = steady.load(Ordering::Relaxed);
    // The calls in flight finish (their digests count as verified, not
    // toward the steady-state throughput); ones past the drain limit fail.
    let drain_deadline = Instant::now() + DRAIN_LIMIT;
    while !calls.is_empty() {
        progress.set_message(format!(
            "{name}: draining {} calls in flight",
            in_flight.load(Ordering::Relaxed)
        ));
        match tokio::time::timeout_at(drain_deadline.into(), calls.join_next()).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                failed.fetch_add(calls.len() as u64, Ordering::Relaxed);
                calls.abort_all();
                break;
            }
        }
    }
    // Entries and heads still on their way are given a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    follow.abort();
    progress.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    if let Ok(mut m) = memory.lock() {
        m.advance(window_end, procs);
    }
    let verified = verified.load(Ordering::Relaxed);
    let per_digest = |x: f64| {
        if verified == 0 {
            0.0
        } else {
            (x / verified as f64 * 10.0).round() / 10.0
        }
    };
    let replica_cpu = cpu(&pids) - cpu0;
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    let snapshot = |h: &Arc<Mutex<Histogram<u64>>>| {
        h.lock()
            .map(|h| Latency::of(&h))
            .unwrap_or_else(|p| Latency::of(&p.into_inner()))
    };
    let steady_secs = (window_end - warmup).as_secs_f64().max(0.001);
    Ok(Point {
        offered_digests_per_s: rate,
        throughput_digests_per_s: (steady_at_end as f64 / steady_secs).round(),
        offered,
        verified,
        failed_calls: failed.load(Ordering::Relaxed),
        ordered: snapshot(&ordered),
        inclusion: snapshot(&inclusion),
        receipt: snapshot(&receipt),
        replicas_cpu: r2(replica_cpu / elapsed),
        cpu_us_per_digest: per_digest(replica_cpu * 1e6),
        generator_cpu: r2((cpu(&[me]) - gen0) / elapsed),
        fsyncs_per_s: r2((metric_sum(procs, "belfry_fsync_seconds_count") - fsync0)
            / elapsed
            / n as f64),
        peer_bytes_per_digest: per_digest((peer_bytes(procs) - peer0) / n as f64),
        client_bytes_per_digest: per_digest(
            metric_sum(procs, "belfry_client_bytes_out_total") - client0,
        ),
        rss_bytes: (0..n).map(|i| procs.rss_bytes(i).unwrap_or(0)).collect(),
    })
}
