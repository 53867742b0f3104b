//! Measurement helpers shared by the benchmarks.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Instant;

/// Latency summary of one measured operation.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// What was measured.
    pub name: String,
    /// How many times.
    pub iterations: u64,
    /// Percentiles in µs.
    pub p50_us: f64,
    /// 99th percentile in µs.
    pub p99_us: f64,
    /// Mean in µs.
    pub mean_us: f64,
    /// Operations per second (1 / mean).
    pub ops_per_s: f64,
    /// Mean relative to the run's baseline operation (1.0 = as fast).
    pub ratio_to_baseline: f64,
}

/// Times `op` `iterations` times (after a short warm-up) and records each call
/// in nanoseconds.
pub fn measure(iterations: u64, mut op: impl FnMut()) -> Histogram<u64> {
    // Three significant digits, values up to 10 s.
    let mut hist = match Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds are valid: {e}"),
    };
    for _ in 0..iterations.min(10) {
        op();
    }
    for _ in 0..iterations {
        let start = Instant::now();
        op();
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        hist.saturating_record(ns.max(1));
    }
    hist
}

/// Summarises a histogram of nanoseconds against a baseline mean (ns).
pub fn summarise(name: &str, hist: &Histogram<u64>, baseline_mean_ns: f64) -> OpReport {
    let mean_ns = hist.mean();
    OpReport {
        name: name.to_string(),
        iterations: hist.len(),
        p50_us: hist.value_at_quantile(0.5) as f64 / 1_000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1_000.0,
        mean_us: mean_ns / 1_000.0,
        ops_per_s: if mean_ns > 0.0 { 1e9 / mean_ns } else { 0.0 },
        ratio_to_baseline: if baseline_mean_ns > 0.0 {
            mean_ns / baseline_mean_ns
        } else {
            0.0
        },
    }
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`), if known.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A markdown table of reports.
pub fn table(reports: &[OpReport]) -> String {
    let mut out = String::from(
        "| operation | iterations | p50 µs | p99 µs | mean µs | ops/s | × baseline |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} |\n",
            r.name, r.iterations, r.p50_us, r.p99_us, r.mean_us, r.ops_per_s, r.ratio_to_baseline
        ));
    }
    out
}
