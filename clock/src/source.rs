use crate::Micros;
use serde::{Deserialize, Serialize};

/// Where an edge component (the node's event loop, the simulator) gets the time
/// it passes to the protocol as `now`. Protocol code never holds one.
pub trait ClockSource {
    /// The current local time.
    fn now(&mut self) -> Micros;
}

/// The operating system's wall clock, for the production node.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl ClockSource for SystemClock {
    // The one place the node reads the wall clock: the edge that feeds `now`.
    #[allow(clippy::disallowed_methods)]
    fn now(&mut self) -> Micros {
        // A wall clock before 1970 is a misconfigured machine; report the epoch
        // rather than panicking — the protocol clamps times to be monotone anyway.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
    }
}

/// A step of a drifting clock: at true time `at`, the clock jumps by `delta_us`
/// (negative: backwards, as after an NTP correction or a lying operator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStep {
    /// True (simulated) time of the step.
    pub at: Micros,
    /// Signed size of the jump in µs.
    pub delta_us: i64,
}

/// A model of an imperfect replica clock for the simulator: a constant offset, a
/// rate error in parts per million, and discrete steps, all against the
/// simulator's true time.
///
/// `local(t) = t + offset_us + (t - origin) * drift_ppm / 1e6 + Σ steps with at <= t`,
/// clamped to `[0, u64::MAX]`. It is deterministic: the same true time always
/// gives the same reading.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftingClock {
    /// Constant offset from true time, in µs.
    pub offset_us: i64,
    /// Rate error in parts per million (positive: runs fast).
    pub drift_ppm: i64,
    /// True time from which drift accumulates.
    pub origin: Micros,
    /// Steps, in any order.
    pub steps: Vec<ClockStep>,
    true_now: Micros,
}

impl DriftingClock {
    /// A perfect clock (no offset, drift or steps) starting at `origin`.
    pub fn perfect(origin: Micros) -> Self {
        Self::new(0, 0, origin, Vec::new())
    }

    /// A clock with the given offset, drift and steps.
    pub fn new(offset_us: i64, drift_ppm: i64, origin: Micros, steps: Vec<ClockStep>) -> Self {
        DriftingClock {
            offset_us,
            drift_ppm,
            origin,
            steps,
            true_now: origin,
        }
    }

    /// The reading of this clock at true time `t`.
    pub fn local_at(&self, t: Micros) -> Micros {
        let elapsed = i128::from(t.0) - i128::from(self.origin.0);
        let drift = elapsed * i128::from(self.drift_ppm) / 1_000_000;
        let stepped: i128 = self
            .steps
            .iter()
            .filter(|s| s.at <= t)
            .map(|s| i128::from(s.delta_us))
            .sum();
        let local = i128::from(t.0) + i128::from(self.offset_us) + drift + stepped;
        Micros(local.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// Sets the true time the next [`ClockSource::now`] reads at (the simulator
    /// calls this before handing the replica an event).
    pub fn set_true_time(&mut self, t: Micros) {
        self.true_now = t;
    }
}

impl ClockSource for DriftingClock {
    fn now(&mut self) -> Micros {
        self.local_at(self.true_now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drifting_clock_applies_offset_drift_and_steps() {
        let origin = Micros::from_secs(1_000);
        let c = DriftingClock::new(
            500,
            100, // 100 ppm: 100 µs per second
            origin,
            vec![ClockStep {
                at: origin.saturating_add(Micros::from_secs(5)),
                delta_us: -2_000,
            }],
        );
        assert_eq!(c.local_at(origin), Micros(origin.0 + 500));
        let t2 = origin.saturating_add(Micros::from_secs(2));
        assert_eq!(c.local_at(t2), Micros(t2.0 + 500 + 200));
        let t5 = origin.saturating_add(Micros::from_secs(5));
        assert_eq!(c.local_at(t5), Micros(t5.0 + 500 + 500 - 2_000));
    }

    #[test]
    fn drifting_clock_reads_the_true_time_it_was_given() {
        let mut c = DriftingClock::new(-10, 0, Micros(100), vec![]);
        c.set_true_time(Micros(1_000));
        assert_eq!(c.now(), Micros(990));
        let mut c = DriftingClock::new(-10_000, 0, Micros(100), vec![]);
        c.set_true_time(Micros(1_000));
        assert_eq!(c.now(), Micros(0), "clamped at the epoch, never wraps");
    }

    #[test]
    fn system_clock_is_after_2020() {
        let now = SystemClock.now();
        assert!(now > Micros(1_577_836_800_000_000), "{now}");
    }
}
