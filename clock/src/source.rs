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

/// The node's clock: the wall clock ([`SystemClock`]), except after it was
/// stepped back. The protocol takes `now` as never going back (it keeps the
/// largest it was given), so a wall clock stepped back by S would stop a
/// replica's time for S — no timer fires, no vertex is paced, for as long
/// as the step (measured: 4 s for a 4 s step under libfaketime). Instead,
/// while the wall clock is behind the last reading, this clock runs on at
/// half the rate of a monotonic clock, so it meets the wall clock again
/// after 2·S and follows it from then on. A step forward is followed at
/// once (the protocol's bracketing by honest clocks bounds what one
/// replica's clock can do to agreed times either way).
#[derive(Debug, Default)]
pub struct SteadyClock {
    /// The monotonic clock's origin: its first reading.
    origin: Option<std::time::Instant>,
    /// The last reading.
    last: Option<Micros>,
    /// While the wall clock is behind: the reading and the monotonic time
    /// (since `origin`) when it fell behind.
    slew: Option<(Micros, std::time::Duration)>,
}

impl SteadyClock {
    /// A clock that has read nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The reading when the wall clock says `wall` and the monotonic clock
    /// `mono` (since any fixed origin).
    pub fn read(&mut self, wall: Micros, mono: std::time::Duration) -> Micros {
        let reading = match self.last {
            Some(prev) if wall < prev => {
                let (from, at) = *self.slew.get_or_insert((prev, mono));
                let half =
                    u64::try_from(mono.saturating_sub(at).as_micros() / 2).unwrap_or(u64::MAX);
                prev.max(from.saturating_add(Micros(half)))
            }
            _ => {
                self.slew = None;
                wall
            }
        };
        self.last = Some(reading);
        reading
    }
}

impl ClockSource for SteadyClock {
    // The node's edge: the monotonic clock only measures how long the wall
    // clock has been behind.
    #[allow(clippy::disallowed_methods)]
    fn now(&mut self) -> Micros {
        let wall = SystemClock.now();
        let mono = std::time::Instant::now();
        let since = mono.saturating_duration_since(*self.origin.get_or_insert(mono));
        self.read(wall, since)
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
    fn a_steady_clock_follows_the_wall_clock_and_runs_on_at_half_rate_after_a_step_back() {
        let ms = std::time::Duration::from_millis;
        let t = Micros::from_secs(1_000);
        let mut c = SteadyClock::new();
        // The wall clock, also after a step forward.
        assert_eq!(c.read(t, ms(0)), t);
        assert_eq!(c.read(Micros(t.0 + 10_000), ms(10)), Micros(t.0 + 10_000));
        let t = Micros(t.0 + 5_010_000);
        assert_eq!(c.read(t, ms(11)), t, "a step forward is followed at once");
        // Stepped back 4 s: it runs on at half the monotonic rate, also when
        // read far more often than every microsecond would show...
        let mut wall = Micros(t.0 - 4_000_000);
        assert_eq!(c.read(wall, ms(20)), t);
        for k in 0..1000u64 {
            let mono = ms(20) + std::time::Duration::from_nanos(300 * k);
            assert!(c.read(wall, mono) >= t);
        }
        assert_eq!(c.read(wall, ms(30)), Micros(t.0 + 5_000));
        // ... and meets the wall clock after 2 × 4 s, then follows it.
        let mut mono = ms(30);
        let mut now = Micros(t.0 + 5_000);
        while now > wall {
            mono += ms(10);
            wall = wall.saturating_add(Micros(10_000));
            let next = c.read(wall, mono);
            assert!(next > now || next == wall, "it never stands still");
            now = next;
        }
        assert_eq!(mono, ms(20) + ms(8_000) + ms(10), "{mono:?}");
        assert_eq!(c.read(Micros(wall.0 + 1), mono + ms(1)), Micros(wall.0 + 1));
    }

    #[test]
    fn system_clock_is_after_2020() {
        let now = SystemClock.now();
        assert!(now > Micros(1_577_836_800_000_000), "{now}");
    }
}
