//! `belfry-sim races`: the coin's fairness measured with statistical power
//! (docs/simulator.md, "Races"). Many short runs of one configuration, a
//! race every few milliseconds over a light load, their two- and
//! three-client races added up: wins per client, ε with a 95% confidence
//! interval, and χ².
//!
//! Every run with Byzantine replicas cycles three kinds of race: *two*
//! (both digests reach every replica at once — the unbiased baseline of the
//! same runs), *biased* (the Byzantine replicas see client B's digest 10 ms
//! late, so they report A first) and *three*. Without Byzantine replicas
//! the biased slot is a two-client race too.

use crate::config::{SimConfig, Strategy};
use crate::metrics::THREE_ORDERS;
use belfry_replica::clock::Micros;
use serde::Serialize;

/// What to race.
#[derive(Clone, Debug)]
pub struct RaceConfig {
    /// Every run's configuration but its seed (races on).
    pub base: SimConfig,
    /// Stop once this many races of every kind run are decided.
    pub races: u64,
    /// The first run's seed (the next runs take the next seeds).
    pub start: u64,
    /// At most this many runs, whatever `races` says.
    pub max_runs: u64,
}

/// Two-client races added up over the runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TwoTally {
    /// Races decided.
    pub races: u64,
    /// Races client A won.
    pub wins_a: u64,
    /// Races client B won.
    pub wins_b: u64,
    /// `wins_a / races`.
    pub p_a: f64,
    /// The 95% Wilson interval of `p_a`.
    pub ci95: (f64, f64),
    /// `|p_a − 1/2|`.
    pub epsilon: f64,
    /// The most ε the 95% interval allows: `max(|lo − ½|, |hi − ½|)`.
    pub epsilon_ci_max: f64,
    /// `(2·wins_a − N)² / N`, 1 dof: biased above 3.841 at p = 0.05.
    pub chi2: f64,
}

impl TwoTally {
    fn add(&mut self, races: u64, wins_a: u64) {
        self.races += races;
        self.wins_a += wins_a;
    }

    fn finish(&mut self) {
        self.wins_b = self.races - self.wins_a;
        if self.races == 0 {
            return;
        }
        let n = self.races as f64;
        self.p_a = self.wins_a as f64 / n;
        self.ci95 = wilson(self.wins_a, self.races);
        self.epsilon = (self.p_a - 0.5).abs();
        self.epsilon_ci_max = (self.ci95.0 - 0.5).abs().max((self.ci95.1 - 0.5).abs());
        self.chi2 = (2.0 * self.wins_a as f64 - n).powi(2) / n;
    }
}

/// Three-client races added up over the runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ThreeTally {
    /// Races decided.
    pub races: u64,
    /// How often each order was logged ([`THREE_ORDERS`]).
    pub orders: [u64; 6],
    /// Races each client won (its digest logged first).
    pub first: [u64; 3],
    /// χ² over the 6 orders, 5 dof: biased above 11.07 at p = 0.05.
    pub chi2: f64,
}

impl ThreeTally {
    fn finish(&mut self) {
        self.races = self.orders.iter().sum();
        self.first = [0; 3];
        for (count, order) in self.orders.iter().zip(THREE_ORDERS.iter()) {
            self.first[order[0]] += count;
        }
        if self.races == 0 {
            return;
        }
        let e = self.races as f64 / 6.0;
        self.chi2 = self
            .orders
            .iter()
            .map(|c| (*c as f64 - e).powi(2) / e)
            .sum();
    }
}

/// What `belfry-sim races` found.
#[derive(Clone, Debug, Serialize)]
pub struct RaceReport {
    /// The configuration of the first run (its replay command).
    pub replay: String,
    /// Runs made, and their seeds.
    pub runs: u64,
    /// The first seed.
    pub start: u64,
    /// Two-client races with nobody favoured.
    pub two: TwoTally,
    /// Two-client races the Byzantine replicas bias toward client A.
    pub biased: TwoTally,
    /// Three-client races.
    pub three: ThreeTally,
    /// Violations of any run (must be empty), with its seed.
    pub violations: Vec<String>,
    /// M1 inversions over all runs (must be 0).
    pub m1_inversions: u64,
}

/// The 95% Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_964f64;
    let n = n as f64;
    let p = k as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A configuration for races: `n` replicas, `faulty` of them Byzantine
/// with `strategy`, a light load, a race every 5 ms for `duration`.
pub fn race_config(n: usize, faulty: usize, strategy: Strategy, duration: Micros) -> SimConfig {
    let mut c = SimConfig::new(n, 1);
    c.mock_crypto = true;
    c.duration = duration;
    c.load_per_s = 200;
    c.race_every_ms = 5;
    c.faulty = faulty;
    if faulty > 0 {
        c.strategies = vec![strategy];
    }
    c
}

/// Runs seeds from `start` until every kind of race the configuration has
/// reached `races` decided (or `max_runs`), adding the races up.
/// `progress` is told after each run.
pub fn run_races(
    rc: &RaceConfig,
    mut progress: impl FnMut(u64, &RaceReport),
) -> Result<RaceReport, String> {
    let biased_kind = rc.base.faulty > 0;
    let mut report = RaceReport {
        replay: String::new(),
        runs: 0,
        start: rc.start,
        two: TwoTally::default(),
        biased: TwoTally::default(),
        three: ThreeTally::default(),
        violations: Vec::new(),
        m1_inversions: 0,
    };
    for k in 0..rc.max_runs {
        let mut c = rc.base.clone();
        c.seed = rc.start + k;
        c.races = true;
        if k == 0 {
            report.replay = c.replay_command();
        }
        let r = crate::run(&c)?;
        let m = &r.metrics;
        report.two.add(m.m5.races, m.m5.wins_a);
        report.biased.add(m.m5_biased.races, m.m5_biased.wins_a);
        for (t, o) in report.three.orders.iter_mut().zip(m.m5_three.orders) {
            *t += o;
        }
        report.m1_inversions += m.m1_inversions;
        report
            .violations
            .extend(r.violations.iter().map(|v| format!("seed {}: {v}", c.seed)));
        report.runs += 1;
        report.three.finish();
        progress(k + 1, &report);
        let done = report.two.races >= rc.races
            && report.three.races >= rc.races
            && (!biased_kind || report.biased.races >= rc.races);
        if done {
            break;
        }
    }
    report.two.finish();
    report.biased.finish();
    report.three.finish();
    Ok(report)
}

/// The report as a few lines of text.
pub fn render(r: &RaceReport) -> String {
    let two = |name: &str, t: &TwoTally| {
        format!(
            "{name:<8} {:>7} races · A {:>6} B {:>6} · p(A) {:.4} (95% CI {:.4}–{:.4}) · ε {:.4} (≤ {:.4}) · χ² {:.2}{}\n",
            t.races,
            t.wins_a,
            t.wins_b,
            t.p_a,
            t.ci95.0,
            t.ci95.1,
            t.epsilon,
            t.epsilon_ci_max,
            t.chi2,
            if t.chi2 > 3.841 { " biased (p < 0.05)" } else { "" }
        )
    };
    let mut s = format!("{} runs from seed {} · {}\n", r.runs, r.start, r.replay);
    s.push_str(&two("two", &r.two));
    if r.biased.races > 0 {
        s.push_str(&two("biased", &r.biased));
    }
    let t = &r.three;
    s.push_str(&format!(
        "three    {:>7} races · first A {} B {} C {} · orders {:?} · χ² {:.2}{}\n",
        t.races,
        t.first[0],
        t.first[1],
        t.first[2],
        t.orders,
        t.chi2,
        if t.chi2 > 11.07 {
            " biased (p < 0.05)"
        } else {
            ""
        }
    ));
    s.push_str(&format!(
        "M1 inversions {} · violations {}\n",
        r.m1_inversions,
        r.violations.len()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wilson_interval_is_the_textbook_one() {
        // 50 of 100: 0.4038–0.5962 (Wilson, z = 1.96).
        let (lo, hi) = wilson(50, 100);
        assert!(
            (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
            "{lo} {hi}"
        );
        // 0 of 10: 0–0.2775.
        let (lo, hi) = wilson(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{lo} {hi}");
    }

    #[test]
    fn tallies_count_wins_and_orders() {
        let mut t = TwoTally::default();
        t.add(100, 60);
        t.finish();
        assert_eq!((t.wins_a, t.wins_b), (60, 40));
        assert!((t.chi2 - 4.0).abs() < 1e-9 && (t.epsilon - 0.1).abs() < 1e-9);
        let mut three = ThreeTally {
            orders: [1, 2, 3, 4, 5, 6],
            ..ThreeTally::default()
        };
        three.finish();
        assert_eq!(three.races, 21);
        // A first in [0,1,2] and [0,2,1]; B in [1,0,2], [1,2,0]; C in the rest.
        assert_eq!(three.first, [3, 7, 11]);
    }
}
