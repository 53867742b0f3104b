//! A cluster of real `belfry node` processes on loopback, made by `belfry
//! keygen`, for the tests that kill replicas with SIGKILL. Every process is
//! killed when the cluster is dropped (a failing test leaves none behind).
//! Nothing here waits a fixed time for an outcome: it polls, with generous
//! deadlines.

#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BELFRY: &str = env!("CARGO_BIN_EXE_belfry");

/// Runs `belfry` with `args` and returns its output.
pub fn belfry(args: &[&str]) -> Output {
    Command::new(BELFRY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The exit code (a signal is a failure).
/// Runs `belfry` with `args` and only the passphrase variables of `env`
/// (none inherited), stdin closed.
pub fn belfry_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BELFRY)
        .args(args)
        .env_remove("BELFRY_PASSPHRASE")
        .env_remove("BELFRY_PASSPHRASE_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A path as the `&str` an argument list takes (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The output of a command that must have exited 0 (`what` names it).
pub fn ok(o: Output, what: &str) -> String {
    assert_eq!(code(&o), 0, "{what}: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `k` distinct digests (hex), `from` on, named by `tag`.
pub fn digests(tag: &str, from: usize, k: usize) -> Vec<String> {
    (from..from + k)
        .map(|i| {
            let mut h = Sha256::new();
            h.update(tag.as_bytes());
            h.update((i as u64).to_be_bytes());
            hex::encode(h.finalize())
        })
        .collect()
}

/// Ports nothing listens on now (bound once and released; another process
/// could take one in between, which loopback tests accept).
pub fn free_udp_ports(k: usize) -> Vec<u16> {
    let sockets: Vec<std::net::UdpSocket> = (0..k)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

pub fn free_tcp_ports(k: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..k)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// A metric from the Prometheus endpoint on `port`, if it answers.
pub fn scrape(port: u16, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.trim().parse().ok())
}

pub struct ProcCluster {
    pub dir: tempfile::TempDir,
    pub n: usize,
    pub nodes: Vec<Option<Child>>,
    metrics: Vec<u16>,
    starts: Vec<usize>,
    /// Environment variables every node is started with.
    pub env: Vec<(String, String)>,
}

impl ProcCluster {
    /// `belfry keygen` for `n` replicas on free loopback ports, and every
    /// node started.
    pub fn start(n: usize) -> ProcCluster {
        let mut c = ProcCluster::keygen(n);
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    /// `belfry keygen` for `n` replicas on free loopback ports; no node
    /// started (a test may edit the files first).
    pub fn keygen(n: usize) -> ProcCluster {
        ProcCluster::keygen_with(n, &[])
    }

    /// `belfry keygen` with more arguments; no node started.
    pub fn keygen_with(n: usize, extra: &[&str]) -> ProcCluster {
        let dir = tempfile::tempdir().unwrap();
        let hosts: Vec<String> = free_udp_ports(n)
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let keys = dir.path().join("keys");
        let n_text = n.to_string();
        let mut args = vec![
            "keygen",
            "--replicas",
            &n_text,
            "--out",
            keys.to_str().unwrap(),
        ];
        let hosts = hosts.join(",");
        args.extend(["--hosts", &hosts]);
        args.extend_from_slice(extra);
        let out = belfry(&args);
        assert_eq!(code(&out), 0, "keygen: {}", stderr(&out));
        ProcCluster::with_keys(dir, n)
    }

    /// A cluster whose files are already in `dir/keys` (made by a
    /// ceremony); no node started.
    pub fn with_keys(dir: tempfile::TempDir, n: usize) -> ProcCluster {
        ProcCluster {
            dir,
            n,
            nodes: (0..n).map(|_| None).collect(),
            metrics: free_tcp_ports(n),
            starts: vec![0; n],
            env: Vec::new(),
        }
    }

    pub fn keys(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    pub fn cluster_file(&self) -> String {
        self.keys()
            .join("cluster.toml")
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts replica `i` (its log goes to `node-<i>.<start>.log`).
    pub fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "replica {i} is running");
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("node-{i}.{}.log", self.starts[i])),
        )
        .unwrap();
        self.starts[i] += 1;
        let child = Command::new(BELFRY)
            .args([
                "node",
                "--config",
                self.keys()
                    .join(format!("replica-{i}.toml"))
                    .to_str()
                    .unwrap(),
                "--metrics",
                &format!("127.0.0.1:{}", self.metrics[i]),
            ])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
    }

    /// `kill -9` replica `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Pauses replica `i` (SIGSTOP: as a stalled VM would).
    pub fn pause(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Resumes a paused replica `i` (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        let pid = self.nodes[i].as_ref().map(Child::id).unwrap();
        let out = Command::new("kill")
            .args([sig, &pid.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "kill {sig} {pid}: {}", stderr(&out));
    }

    /// Replica `i`'s data directory is removed (it must be down).
    pub fn wipe(&self, i: usize) {
        assert!(self.nodes[i].is_none());
        std::fs::remove_dir_all(self.keys().join(format!("data-{i}"))).unwrap();
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        match &mut self.nodes[i] {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Replica `i`'s metrics port.
    pub fn metrics_port(&self, i: usize) -> u16 {
        self.metrics[i]
    }

    /// A metric of replica `i`, if its endpoint answers.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        scrape(self.metrics[i], name)
    }

    /// Waits until every running replica takes part in the rounds (one
    /// that starts without durable state observes first).
    pub fn wait_joined(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let running: Vec<usize> = (0..self.n).filter(|&i| self.nodes[i].is_some()).collect();
            for &i in &running {
                assert!(self.is_running(i), "replica {i} exited: {}", self.log(i));
            }
            if running
                .iter()
                .all(|&i| self.metric(i, "belfry_round").unwrap_or(0.0) > 0.0)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replicas did not all join within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replica `i`'s logs so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        let mut out = String::new();
        for k in 0..self.starts[i] {
            let text = std::fs::read_to_string(self.dir.path().join(format!("node-{i}.{k}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            out += &format!("--- replica {i}, start {k}:\n");
            for l in tail.into_iter().rev() {
                out += l;
                out += "\n";
            }
        }
        out
    }

    /// `belfry stamp --cluster … --out <out> --digest d1,d2,…`.
    pub fn stamp_digests(&self, out: &Path, ds: &[String], extra: &[&str]) -> Output {
        let cluster = self.cluster_file();
        let joined = ds.join(",");
        let mut args = vec![
            "stamp",
            "--cluster",
            &cluster,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend(["--digest", &joined]);
        belfry(&args)
    }

    /// `belfry audit --json` with these receipts.
    pub fn audit(&self, receipts: &[PathBuf]) -> (i32, Value) {
        let cluster = self.cluster_file();
        let mut args = vec!["audit", "--cluster", &cluster, "--json"];
        let paths: Vec<String> = receipts
            .iter()
            .map(|p| p.to_str().unwrap().to_string())
            .collect();
        args.extend(paths.iter().map(|s| s.as_str()));
        let out = belfry(&args);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("audit printed no JSON: {}", stderr(&out)));
        (code(&out), v)
    }

    /// Polls `belfry audit --json` until `done` holds of its answer.
    pub fn audit_until(
        &self,
        receipts: &[PathBuf],
        within: Duration,
        what: &str,
        done: impl Fn(i32, &Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (c, v) = self.audit(receipts);
            if done(c, &v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last audit (exit {c}):\n{}",
                serde_json::to_string_pretty(&v).unwrap()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every receipt file in a directory.
pub fn receipt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "belfry"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether an audit says: consistent, every replica answered with a head
/// and holds every receipt (none missing, moved or behind).
pub fn all_hold_everything(code: i32, v: &Value, n: usize, receipts: usize) -> bool {
    code == 0
        && v["consistent"] == true
        && v["replicas"].as_array().is_some_and(|rs| {
            rs.len() == n
                && rs.iter().all(|r| {
                    r["status"] == "ok"
                        && (receipts == 0
                            || (r["receipts"]["held"] == receipts
                                && r["receipts"]["missing"]
                                    .as_array()
                                    .is_some_and(|m| m.is_empty())
                                && r["receipts"]["moved"]
                                    .as_array()
                                    .is_some_and(|m| m.is_empty())))
                })
        })
}

/// Whether every replica reports the same signed tree head.
pub fn same_head(v: &Value) -> bool {
    let heads: Vec<&Value> = v["replicas"]
        .as_array()
        .map(|rs| rs.iter().map(|r| &r["head"]).collect())
        .unwrap_or_default();
    !heads.is_empty() && heads.iter().all(|h| !h.is_null() && *h == heads[0])
}

/// `belfry stamp` of `k` fresh digests; every receipt verified by `belfry
/// verify`. The stamp may wait for the cluster (its timeout is generous).
pub fn stamp_and_verify(c: &ProcCluster, tag: &str, k: usize) {
    let out = c.path(tag);
    let ds = digests(tag, 0, k);
    let o = c.stamp_digests(&out, &ds, &["--timeout", "120"]);
    assert_eq!(
        code(&o),
        0,
        "stamp {tag}: {}\n{}\n{}\n{}\n{}",
        stderr(&o),
        c.log(0),
        c.log(1),
        c.log(2),
        c.log(3)
    );
    verify_dir(c, &out, &ds);
}

/// `belfry verify --dir` of each digest's receipt: all OK.
pub fn verify_dir(c: &ProcCluster, dir: &Path, ds: &[String]) {
    assert_eq!(
        receipt_files(dir).len(),
        ds.len(),
        "receipts in {}",
        dir.display()
    );
    let cluster = c.cluster_file();
    let o = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--dir",
        dir.to_str().unwrap(),
        "--digest",
        &ds.join(","),
    ]);
    assert_eq!(code(&o), 0, "verify: {}{}", stdout(&o), stderr(&o));
}

/// Every replica holds every receipt, under one history.
pub fn one_history(c: &ProcCluster, tags: &[&str]) {
    let receipts: Vec<_> = tags
        .iter()
        .flat_map(|t| receipt_files(&c.path(t)))
        .collect();
    let count = receipts.len();
    c.audit_until(
        &receipts,
        Duration::from_secs(120),
        "one history",
        |code, v| code == 0 && all_hold_everything(code, v, c.n, count) && same_head(v),
    );
}
