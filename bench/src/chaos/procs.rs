//! The replicas' processes for the chaos runs and the benchmarks that start
//! real nodes: `belfry keygen` on loopback ports no one else takes, each
//! `belfry node` started, signalled, killed, wiped and watched (its exit, its
//! metrics, its log), and the Prometheus scrape.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The replicas' processes and where their files are.
pub(crate) struct Procs {
    pub(super) belfry: PathBuf,
    pub(super) keys: PathBuf,
    pub(super) logs: PathBuf,
    pub(super) metrics: Vec<u16>,
    pub(super) nodes: Vec<Option<Child>>,
    /// Replicas whose process had exited on its own when the harness went
    /// to kill or heal it, with their log tails (violations).
    pub(super) exited: Vec<String>,
    pub(super) starts: Vec<usize>,
    /// The replicas that run under libfaketime (a clock fault).
    pub(super) clocks: Vec<Option<super::clock::Faked>>,
}

impl Procs {
    /// Starts replica `i` (its log goes to `node-<i>.<start>.log`), under
    /// libfaketime while a clock fault holds it.
    pub(crate) fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let log =
            std::fs::File::create(self.logs.join(format!("node-{i}.{}.log", self.starts[i])))?;
        self.starts[i] += 1;
        let config = self.keys.join(format!("replica-{i}.toml"));
        let mut command = Command::new(&self.belfry);
        if let Some(clock) = &self.clocks[i] {
            command.envs(clock.env());
        }
        let child = command
            .arg("node")
            .arg("--config")
            .arg(&config)
            .args(["--metrics", &format!("127.0.0.1:{}", self.metrics[i])])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.belfry.display()))?;
        self.nodes[i] = Some(child);
        Ok(())
    }

    /// Replica `i`'s configuration file (`replica-<i>.toml`).
    pub(crate) fn config(&self, i: usize) -> PathBuf {
        self.keys.join(format!("replica-{i}.toml"))
    }

    /// Whether replica `i`'s process is running (not exited).
    pub(crate) fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The last `lines` lines of replica `i`'s stderr, every start (for
    /// error messages).
    pub(crate) fn log_tail(&self, i: usize, lines: usize) -> String {
        let mut out = String::new();
        for k in 0..self.starts[i] {
            let path = self.logs.join(format!("node-{i}.{k}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out += &format!("--- {}:\n", path.display());
            for l in tail.into_iter().rev() {
                out += l;
                out += "\n";
            }
        }
        out
    }

    /// A metric of replica `i` summed over its label sets that contain
    /// `labels` (`""`: all of them, e.g. every peer's
    /// `belfry_peer_bytes_in_total`), if its endpoint answers.
    pub(crate) fn metric_sum(&self, i: usize, name: &str, labels: &str) -> Option<f64> {
        scrape_sum(self.metrics[i], name, labels)
    }

    /// Replicas in the cluster.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The running replicas' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(Child::id).collect()
    }

    /// Replica `i`'s resident memory now, bytes.
    pub(crate) fn rss_bytes(&self, i: usize) -> Option<u64> {
        self.status_bytes(i, "VmRSS:")
    }

    /// A memory line (`field`, in kB) of replica `i`'s `/proc/PID/status`, bytes.
    pub(super) fn status_bytes(&self, i: usize, field: &str) -> Option<u64> {
        let pid = self.nodes[i].as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    }

    /// Replica `i`'s peak resident memory so far (VmHWM), bytes.
    pub(crate) fn peak_rss_bytes(&self, i: usize) -> Option<u64> {
        self.status_bytes(i, "VmHWM:")
    }

    pub(super) fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            if let Ok(Some(status)) = c.try_wait() {
                let tail = self.log_tail(i, 20);
                self.exited.push(format!(
                    "replica r{i} exited on its own ({status}):\n{tail}"
                ));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(super) fn signal(&self, i: usize, sig: &str) -> anyhow::Result<()> {
        let Some(pid) = self.nodes[i].as_ref().map(Child::id) else {
            bail!("replica {i} is not running");
        };
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// A metric of replica `i`, if its endpoint answers.
    pub(crate) fn metric(&self, i: usize, name: &str) -> Option<f64> {
        scrape(self.metrics[i], name)
    }

    /// Waits until every replica's metrics endpoint answers: an error
    /// naming the replica and its log if one exits first (it could not
    /// start: the harness's fault, not the cluster's) or none answers
    /// within `within`.
    pub(crate) fn wait_started(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for i in 0..self.nodes.len() {
            while scrape_body(self.metrics[i]).is_none() {
                if !self.is_running(i) {
                    bail!("replica r{i} exited at start:\n{}", self.log_tail(i, 20));
                }
                if Instant::now() > deadline {
                    bail!(
                        "replica r{i} did not answer on its metrics port within {} s:\n{}",
                        within.as_secs(),
                        self.log_tail(i, 20)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Waits until every replica takes part in the rounds (a wiped one
    /// observes until it has rejoined): data may be wiped only then, or
    /// two replicas' data could be lost at once. False after `within`.
    pub(crate) fn wait_joined(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let all =
                (0..self.nodes.len()).all(|i| self.metric(i, "belfry_round").unwrap_or(0.0) > 0.0);
            if all {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    pub(super) fn wipe(&self, i: usize) -> anyhow::Result<()> {
        let dir = self.keys.join(format!("data-{i}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        }
        Ok(())
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, "-CONT");
            self.kill(i);
        }
    }
}

/// A metric from the Prometheus endpoint on loopback `port`, if it answers.
pub(crate) fn scrape(port: u16, name: &str) -> Option<f64> {
    scrape_body(port)?
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

/// A metric from the Prometheus endpoint on loopback `port`, summed over
/// its label sets that contain `labels` (`""`: all), if the endpoint
/// answers; 0 if no label set matches.
pub(crate) fn scrape_sum(port: u16, name: &str, labels: &str) -> Option<f64> {
    let body = scrape_body(port)?;
    let sum = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            set.contains(labels)
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum();
    Some(sum)
}

fn scrape_body(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// `k` free loopback TCP ports.
pub(crate) fn free_tcp_ports(k: usize) -> anyhow::Result<Vec<u16>> {
    free_ports(k)
}

/// `k` loopback ports free for both UDP and TCP, drawn outside the kernel's
/// ephemeral range (below it, or above it if too little room is below): a
/// port the kernel hands out for `bind(0)` (the relays, every outgoing
/// connection) can be taken between this choice and the node's start — a
/// replica of chaos seed 321 at n = 7 found its port taken and never
/// started. Ports outside that range are only ever taken by name, and this
/// process does not hand out a port again soon (one run's replica, metrics and
/// TSA ports are drawn by separate calls).
fn free_ports(k: usize) -> anyhow::Result<Vec<u16>> {
    use rand::Rng;
    // The ports handed out lately (a run's processes are long gone when
    // 4,096 more have been handed out: about 290 runs at n = 7).
    static GIVEN: std::sync::Mutex<std::collections::VecDeque<u16>> =
        std::sync::Mutex::new(std::collections::VecDeque::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let mut bounds = range.iter().flat_map(|s| s.split_whitespace());
    let ephemeral_low = bounds
        .next()
        .and_then(|b| b.parse::<u16>().ok())
        .unwrap_or(32_768);
    let ephemeral_high = bounds
        .next()
        .and_then(|b| b.parse::<u16>().ok())
        .unwrap_or(60_999);
    let (lo, hi) = if ephemeral_low >= 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_high.saturating_add(1), u16::MAX)
    };
    if hi.saturating_sub(lo) < 1_000 {
        bail!("no room for ports outside the ephemeral range {ephemeral_low}..={ephemeral_high}");
    }
    let mut given = GIVEN
        .lock()
        .map_err(|_| anyhow::anyhow!("port registry poisoned"))?;
    let mut rng = rand::thread_rng();
    let mut ports = Vec::new();
    let mut held = Vec::new();
    for _ in 0..100 * k.max(1) {
        if ports.len() == k {
            break;
        }
        let p = rng.gen_range(lo..hi);
        if given.contains(&p) {
            continue;
        }
        let (Ok(u), Ok(t)) = (
            std::net::UdpSocket::bind(("127.0.0.1", p)),
            std::net::TcpListener::bind(("127.0.0.1", p)),
        ) else {
            continue;
        };
        given.push_back(p);
        if given.len() > 4_096 {
            given.pop_front();
        }
        ports.push(p);
        held.push((u, t));
    }
    if ports.len() < k {
        bail!("no {k} free loopback ports in {lo}..{hi}");
    }
    Ok(ports)
}

/// `belfry keygen` for `n` replicas on free loopback ports in `dir`, and
/// every `belfry node` started (their logs in `dir`).
pub(crate) fn start_cluster(
    belfry: &Path,
    n: usize,
    dir: &Path,
) -> anyhow::Result<(Procs, belfry_node::Cluster)> {
    start_cluster_with(belfry, n, dir, &[])
}

/// [`start_cluster`] with more `belfry keygen` arguments.
pub(crate) fn start_cluster_with(
    belfry: &Path,
    n: usize,
    dir: &Path,
    keygen_args: &[&str],
) -> anyhow::Result<(Procs, belfry_node::Cluster)> {
    let (mut procs, cluster) = keygen(belfry, n, dir, keygen_args)?;
    for i in 0..n {
        procs.start(i)?;
    }
    procs.wait_started(Duration::from_secs(20))?;
    Ok((procs, cluster))
}

/// `belfry keygen` for `n` replicas on free loopback ports in `dir` (with
/// more `keygen_args`); no node started yet (their data may be prepared
/// first, see [`Procs::config`]).
pub(crate) fn keygen(
    belfry: &Path,
    n: usize,
    dir: &Path,
    keygen_args: &[&str],
) -> anyhow::Result<(Procs, belfry_node::Cluster)> {
    let keys = dir.join("keys");
    let hosts: Vec<String> = free_ports(n)?
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let out = Command::new(belfry)
        .args(["keygen", "--replicas", &n.to_string(), "--out"])
        .arg(&keys)
        .args(["--hosts", &hosts.join(",")])
        .args(keygen_args)
        .output()
        .with_context(|| format!("running {}", belfry.display()))?;
    if !out.status.success() {
        bail!("keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    let cluster = belfry_node::ClusterFile::load(&keys.join("cluster.toml"))?;
    let procs = Procs {
        belfry: belfry.to_path_buf(),
        keys,
        logs: dir.to_path_buf(),
        metrics: free_ports(n)?,
        nodes: (0..n).map(|_| None).collect(),
        exited: Vec::new(),
        starts: vec![0; n],
        clocks: (0..n).map(|_| None).collect(),
    };
    Ok((procs, cluster))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports for replicas come from below the kernel's ephemeral range, so
    /// that no `bind(0)` or outgoing connection can take one before its
    /// replica starts, and are free for UDP and TCP alike.
    #[test]
    fn ports_are_free_and_never_ephemeral() -> anyhow::Result<()> {
        let ports = free_ports(16)?;
        assert_eq!(ports.len(), 16);
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 16);
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
        let bounds: Vec<u16> = range
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let ephemeral = bounds[0]..=bounds[1];
        for p in &ports {
            assert!(!ephemeral.contains(p), "port {p} is ephemeral");
            let kernel = std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            assert!(ephemeral.contains(&kernel), "the kernel hands out {kernel}");
        }
        // A second call never hands out the same ports again.
        let more = free_ports(16)?;
        assert!(more.iter().all(|p| !ports.contains(p)));
        Ok(())
    }
}
