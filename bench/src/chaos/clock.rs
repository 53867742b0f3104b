//! The chaos run's clock faults: up to f replicas restarted under
//! libfaketime (Debian's `faketime` package), their wall clock offset from
//! true time by a constant, or stepped forward and back while they run.
//!
//! Each faked replica is started with `LD_PRELOAD` of libfaketime and
//! `FAKETIME_TIMESTAMP_FILE` naming a file that holds its offset (`+1.250s`,
//! `-0.400s`); `FAKETIME_NO_CACHE=1` makes the library read the file on
//! every clock read, so writing the file steps the running process's clock.
//! Only `CLOCK_REALTIME` (`SystemTime`, the clock the node's ticks read) is
//! faked: `FAKETIME_DONT_FAKE_MONOTONIC=1`, because an NTP step or a lying
//! operator moves the wall clock while the kernel's monotonic clock never
//! steps. Without it libfaketime moves `CLOCK_MONOTONIC` (Rust's `Instant`,
//! tokio's timers) by the same offset, backwards too; set
//! `FAKETIME_DONT_FAKE_MONOTONIC=0` in the environment to run that anyway.
//!
//! A clock fault heals by restarting its replicas without libfaketime.

use super::*;

/// Where Debian and a source build put libfaketime.
const LIBFAKETIME: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];
/// The smallest and largest offset or step drawn, ms.
const OFFSET_MS: std::ops::RangeInclusive<u64> = 200..=5_000;
/// How long a faked clock is held at one offset, ms.
const HOLD_MS: std::ops::Range<u64> = 2_000..6_000;
/// How long the faked process may take to map libfaketime.
const MAPPED_WITHIN: Duration = Duration::from_secs(2);

/// The clock faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockFault {
    /// Up to f replicas restarted with their wall clock a constant offset
    /// ahead or behind.
    Offset,
    /// Up to f replicas restarted under libfaketime, their wall clock
    /// stepped forward, then back past true time, while they run.
    Step,
}

/// libfaketime on this machine, if installed.
pub fn libfaketime() -> Option<PathBuf> {
    LIBFAKETIME.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Replica `i`'s clock under libfaketime: the file holding its offset.
pub(crate) struct Faked {
    /// The library to preload.
    pub(crate) library: PathBuf,
    /// `FAKETIME_TIMESTAMP_FILE`.
    pub(crate) offset_file: PathBuf,
}

impl Faked {
    /// The environment that starts a process under it.
    pub(crate) fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = vec![
            ("LD_PRELOAD", self.library.clone().into_os_string()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                self.offset_file.clone().into_os_string(),
            ),
            ("FAKETIME_NO_CACHE", "1".into()),
        ];
        if std::env::var_os("FAKETIME_DONT_FAKE_MONOTONIC").is_none() {
            env.push(("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()));
        }
        env
    }

    /// Sets the offset the process reads from its next clock read on.
    fn set(&self, offset_ms: i64) -> anyhow::Result<()> {
        // Written whole and renamed over, so a read never sees half a line.
        let tmp = self.offset_file.with_extension("tmp");
        std::fs::write(&tmp, offset_text(offset_ms))?;
        std::fs::rename(&tmp, &self.offset_file)
            .with_context(|| format!("{}", self.offset_file.display()))
    }
}

/// An offset as libfaketime reads it: `+1.250s`, `-0.400s`.
fn offset_text(offset_ms: i64) -> String {
    let sign = if offset_ms < 0 { '-' } else { '+' };
    let abs = offset_ms.unsigned_abs();
    format!("{sign}{}.{:03}s\n", abs / 1_000, abs % 1_000)
}

/// A signed offset, `+1.250 s`.
fn shown(offset_ms: i64) -> String {
    offset_text(offset_ms).trim_end().replace('s', " s")
}

/// Draws the parameters of `fault` from `rng`, restarts its replicas
/// (`a` and the next ones, at most `f`) under libfaketime, holds and steps
/// their clocks, and heals them; returns what it was (never beyond f). A
/// faked replica that exited by itself (a panic across a step) joins
/// `violations`.
pub(crate) fn inflict(
    procs: &mut Procs,
    fault: ClockFault,
    a: usize,
    f: usize,
    rng: &mut impl Rng,
    violations: &mut Vec<String>,
) -> anyhow::Result<(String, bool)> {
    let n = procs.len();
    let count = rng.gen_range(1..=f);
    let faked: Vec<usize> = (0..count).map(|k| (a + k) % n).collect();
    let mut offsets = Vec::new();
    for _ in &faked {
        offsets.push(match fault {
            ClockFault::Offset => signed(rng),
            ClockFault::Step => 0,
        });
    }
    for (&i, &offset_ms) in faked.iter().zip(&offsets) {
        procs.restart_faked(i, offset_ms)?;
    }
    let hold_ms = rng.gen_range(HOLD_MS);
    std::thread::sleep(Duration::from_millis(hold_ms));
    let mut parts = Vec::new();
    match fault {
        ClockFault::Offset => {
            for (i, offset_ms) in faked.iter().zip(&offsets) {
                parts.push(format!("r{i} clock {}", shown(*offset_ms)));
            }
            parts.push(format!("for {hold_ms} ms"));
        }
        ClockFault::Step => {
            let ahead_ms = rng.gen_range(OFFSET_MS) as i64;
            let behind_ms = -(rng.gen_range(OFFSET_MS) as i64);
            let second_hold_ms = rng.gen_range(HOLD_MS);
            let third_hold_ms = rng.gen_range(HOLD_MS);
            for &i in &faked {
                procs.step_clock(i, ahead_ms)?;
            }
            std::thread::sleep(Duration::from_millis(second_hold_ms));
            for &i in &faked {
                procs.step_clock(i, behind_ms)?;
            }
            std::thread::sleep(Duration::from_millis(third_hold_ms));
            let names: Vec<String> = faked.iter().map(|i| format!("r{i}")).collect();
            parts.push(format!(
                "{} clock stepped {} after {hold_ms} ms, then {} (to {}) after {second_hold_ms} ms, held {third_hold_ms} ms",
                names.join(", "),
                shown(ahead_ms),
                shown(behind_ms - ahead_ms),
                shown(behind_ms)
            ));
        }
    }
    for &i in &faked {
        if !procs.is_running(i) {
            violations.push(format!(
                "r{i} exited under libfaketime ({}):\n{}",
                parts.join(", "),
                procs.log_tail(i, 20)
            ));
            // Reported here, with the fault: the restart must not again.
            procs.nodes[i] = None;
        }
        procs.restart_true(i)?;
    }
    parts.push("restarted at true time".to_string());
    Ok((format!("faketime: {}", parts.join(", ")), false))
}

/// An offset of 200 ms to 5 s, ahead or behind.
fn signed(rng: &mut impl Rng) -> i64 {
    let ms = rng.gen_range(OFFSET_MS) as i64;
    if rng.gen_bool(0.5) {
        ms
    } else {
        -ms
    }
}

impl Procs {
    /// `kill -9` replica `i` and starts it under libfaketime `offset_ms`
    /// from true time.
    fn restart_faked(&mut self, i: usize, offset_ms: i64) -> anyhow::Result<()> {
        let library =
            libfaketime().context("clock faults need libfaketime: apt-get install faketime")?;
        let clock = Faked {
            library,
            offset_file: self.logs.join(format!("clock-{i}.offset")),
        };
        clock.set(offset_ms)?;
        self.kill(i);
        self.clocks[i] = Some(clock);
        self.start(i)?;
        self.assert_faked(i)
    }

    /// Steps faked replica `i`'s clock to `offset_ms` while it runs.
    fn step_clock(&self, i: usize, offset_ms: i64) -> anyhow::Result<()> {
        match &self.clocks[i] {
            Some(clock) => clock.set(offset_ms),
            None => bail!("replica {i} does not run under libfaketime"),
        }
    }

    /// `kill -9` replica `i` and starts it at true time.
    pub(super) fn restart_true(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.clocks[i] = None;
        self.start(i)
    }

    /// Fails unless replica `i`'s process mapped libfaketime (a statically
    /// linked `belfry` would ignore `LD_PRELOAD` and run at true time).
    fn assert_faked(&mut self, i: usize) -> anyhow::Result<()> {
        let pid = self.nodes[i]
            .as_ref()
            .map(Child::id)
            .context("not started")?;
        let deadline = Instant::now() + MAPPED_WITHIN;
        while Instant::now() < deadline {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
            if maps.contains("libfaketime") {
                return Ok(());
            }
            if !self.is_running(i) {
                bail!(
                    "replica {i} exited under libfaketime:\n{}",
                    self.log_tail(i, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("replica {i} (pid {pid}) did not load libfaketime within {MAPPED_WITHIN:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_libfaketime_reads_them() {
        assert_eq!(offset_text(1_250), "+1.250s\n");
        assert_eq!(offset_text(-400), "-0.400s\n");
        assert_eq!(offset_text(0), "+0.000s\n");
        assert_eq!(shown(-5_000), "-5.000 s");
    }
}
