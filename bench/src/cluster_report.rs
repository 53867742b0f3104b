//! `belfry-bench cluster`'s report: the tables printed and the
//! latency-throughput plot (SVG) of belfry and the baseline.

use crate::cluster_bench::{ClusterBenchReport, Latency, Point, SystemReport};

/// The report as tables.
pub fn table(r: &ClusterBenchReport) -> String {
    let mut s = format!("{}\n", r.settings);
    for sys in std::iter::once(&r.belfry).chain(r.baseline.as_ref()) {
        s.push_str(&format!(
            "\n{} (saturation {} digests/s, peak RSS {:.1} MiB)\n",
            sys.name,
            sys.saturation_digests_per_s,
            sys.peak_rss_bytes_max as f64 / 1048576.0
        ));
        s.push_str(&format!(
            "{:>9} {:>9} {:>6} {:>21} {:>21} {:>21} {:>6} {:>7} {:>6} {:>6} {:>7} {:>7}\n",
            "offered",
            "achieved",
            "failed",
            "ordered p50/p99 ms",
            "signed p50/p99 ms",
            "receipt p50/p99 ms",
            "cores",
            "µs/dig",
            "gen",
            "fsync/s",
            "peer B/d",
            "clnt B/d"
        ));
        for p in &sys.points {
            let l = |x: &Latency| format!("{} / {}", x.p50_ms, x.p99_ms);
            s.push_str(&format!(
                "{:>9} {:>9} {:>6} {:>21} {:>21} {:>21} {:>6} {:>7} {:>6} {:>6} {:>7} {:>7}\n",
                p.offered_digests_per_s,
                p.throughput_digests_per_s,
                p.failed_calls,
                l(&p.ordered),
                l(&p.inclusion),
                l(&p.receipt),
                p.replicas_cpu,
                p.cpu_us_per_digest,
                p.generator_cpu,
                p.fsyncs_per_s,
                p.peer_bytes_per_digest,
                p.client_bytes_per_digest
            ));
        }
        if let Some(i) = &sys.idle {
            s.push_str(&format!(
                "idle over {} s: {} messages/s in all; per replica at most {} cores, {} fsyncs/s, {} log entries/s\n",
                i.window_s, i.idle_messages_per_s, i.idle_cpu_max, i.idle_fsyncs_per_s, i.idle_log_entries_per_s
            ));
        }
        let mib = |v: &Option<Vec<u64>>| {
            v.as_ref().map(|v| {
                v.iter()
                    .map(|b| format!("{:.0}", *b as f64 / 1048576.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        if let Some(a) = mib(&sys.rss_at_30s) {
            s.push_str(&format!("RSS MiB 30 s into the load: {a}\n"));
        }
        if let Some(a) = mib(&sys.rss_at_60s) {
            s.push_str(&format!("RSS MiB 60 s into the load: {a}\n"));
        }
    }
    if let (Some(b), Some(ratio)) = (
        r.baseline_throughput_digests_per_s,
        r.throughput_ratio_to_baseline,
    ) {
        s.push_str(&format!(
            "\nbelfry {} digests/s = {ratio} x the baseline's {b}\n",
            r.throughput_digests_per_s
        ));
    }
    s
}

/// The latency-throughput plot (submit → signed inclusion, p50 and p99, per
/// step) of belfry and the baseline, as SVG.
pub fn svg(r: &ClusterBenchReport) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let mut out = String::new();
    {
        let systems: Vec<&SystemReport> = std::iter::once(&r.belfry)
            .chain(r.baseline.as_ref())
            .collect();
        let points = systems.iter().flat_map(|s| &s.points);
        let x_max = points
            .clone()
            .map(|p| p.throughput_digests_per_s)
            .fold(1.0, f64::max)
            * 1.1;
        let y_max = points
            .map(|p| p.inclusion.p99_ms)
            .fold(1.0, f64::max)
            .max(1.0)
            * 2.0;
        let root = SVGBackend::with_string(&mut out, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "submit → signed inclusion against throughput",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, (1.0..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("verified digests per second")
            .y_desc("latency, ms (log scale)")
            .draw()?;
        let colours = [RED, BLUE];
        for (sys, colour) in systems.iter().zip(colours) {
            let mut pts: Vec<&Point> = sys
                .points
                .iter()
                .filter(|p| p.inclusion.count > 0)
                .collect();
            pts.sort_by(|a, b| a.offered_digests_per_s.total_cmp(&b.offered_digests_per_s));
            for (label, q, dashed) in [("p50", 0, false), ("p99", 1, true)] {
                let series: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| {
                        let y = if q == 0 {
                            p.inclusion.p50_ms
                        } else {
                            p.inclusion.p99_ms
                        };
                        (p.throughput_digests_per_s, y.max(1.0))
                    })
                    .collect();
                let style = if dashed {
                    colour.mix(0.5).stroke_width(2)
                } else {
                    colour.stroke_width(2)
                };
                chart
                    .draw_series(LineSeries::new(series.clone(), style))?
                    .label(format!("{} {label}", sys.name))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                chart.draw_series(
                    series
                        .into_iter()
                        .map(|xy| Circle::new(xy, 3, colour.filled())),
                )?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_draws_both_systems() {
        let point = |rate: f64, p50: f64| Point {
            offered_digests_per_s: rate,
            throughput_digests_per_s: rate,
            offered: 10,
            verified: 10,
            failed_calls: 0,
            ordered: Latency::default(),
            inclusion: Latency {
                count: 10,
                p50_ms: p50,
                p90_ms: p50,
                p99_ms: p50 * 2.0,
                max_ms: p50 * 3.0,
            },
            receipt: Latency::default(),
            replicas_cpu: 0.0,
            cpu_us_per_digest: 0.0,
            generator_cpu: 0.0,
            fsyncs_per_s: 0.0,
            peer_bytes_per_digest: 0.0,
            client_bytes_per_digest: 0.0,
            rss_bytes: vec![],
        };
        let system = |name: &str| SystemReport {
            name: name.to_string(),
            replicas: 4,
            points: vec![point(1000.0, 50.0), point(2000.0, 80.0)],
            saturation_digests_per_s: 2000.0,
            rss_at_30s: None,
            rss_at_60s: None,
            peak_rss_bytes_max: 0,
            idle: None,
        };
        let report = ClusterBenchReport {
            throughput_digests_per_s: 2000.0,
            p50_inclusion_ms: 50.0,
            p99_inclusion_ms: 100.0,
            baseline_throughput_digests_per_s: Some(2000.0),
            throughput_ratio_to_baseline: Some(1.0),
            peak_rss_bytes_max: 0,
            idle_messages_per_s: None,
            idle_fsyncs_per_s: None,
            idle_log_entries_per_s: None,
            belfry: system("belfry, n = 4"),
            baseline: Some(system("baseline: one sequencer, n = 1")),
            settings: String::new(),
        };
        let svg = svg(&report).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("belfry, n = 4 p50"));
        assert!(svg.contains("baseline: one sequencer, n = 1 p99"));
        // Two series of two points each per system: eight markers.
        assert_eq!(svg.matches("<circle").count(), 8);
    }
}
