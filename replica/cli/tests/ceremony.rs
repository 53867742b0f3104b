//! `belfry ceremony` as separate processes, one per operator and step, with
//! one operator misbehaving: it must be named and excluded, the others must
//! end with one cluster.toml, and a cluster of real `belfry node` processes
//! started from the result must stamp receipts that the independent check
//! (`hand/`: sha2 and blst, none of belfry's verification code) verifies.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod hand;
mod procs;

use procs::{belfry, code, digests, ok, receipt_files, s, stderr, stdout, ProcCluster};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NO_GROUP_SECRET: &str =
    "checked: this process constructed no group secret key (dealer calls on this thread: 0)";

use procs::belfry_env as run;

struct Operators {
    dir: tempfile::TempDir,
    n: usize,
}

impl Operators {
    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }
    fn secret(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/ceremony-{i}.toml"))
    }
    fn out(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/out"))
    }

    /// `step` for operator `i`, with extra arguments.
    fn step(&self, step: &str, i: usize, extra: &[&str], env: &[(&str, &str)]) -> String {
        let shared = self.shared();
        let secret = self.secret(i);
        let mut args = vec![
            "ceremony",
            step,
            "--shared",
            s(&shared),
            "--secret",
            s(&secret),
        ];
        args.extend_from_slice(extra);
        let out = ok(run(&args, env), &format!("ceremony {step}, operator {i}"));
        if step != "join" {
            assert!(out.contains(NO_GROUP_SECRET), "{step} {i}: {out}");
        }
        out
    }
}

/// Plans and joins `n` operators on free loopback ports.
fn plan_and_join(n: usize) -> Operators {
    let ops = Operators {
        dir: tempfile::tempdir().unwrap(),
        n,
    };
    ok(
        belfry(&[
            "ceremony",
            "plan",
            "--replicas",
            &n.to_string(),
            "--shared",
            s(&ops.shared()),
        ]),
        "plan",
    );
    for (i, port) in procs::free_udp_ports(n).into_iter().enumerate() {
        let host = format!("127.0.0.1:{port}");
        ops.step("join", i, &["--id", &i.to_string(), "--host", &host], &[]);
    }
    ops
}

/// Every operator finishes; returns their outputs. Those who finish before
/// n − f done files agree publish their done file, write nothing usable
/// and exit 3; they run finish again at the end. All cluster.toml files
/// must be the same bytes, and the last finish sees every done file agree.
fn finish_all(ops: &Operators, env_for: impl Fn(usize) -> Vec<(String, String)>) -> Vec<String> {
    let q = ops.n - (ops.n - 1) / 3;
    let finish = |i: usize| {
        let out_dir = ops.out(i);
        let shared = ops.shared();
        let secret = ops.secret(i);
        let env = env_for(i);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut args = vec![
            "ceremony",
            "finish",
            "--shared",
            s(&shared),
            "--secret",
            s(&secret),
            "--out",
            s(&out_dir),
        ];
        if !env.is_empty() {
            args.push("--seal");
        }
        run(&args, &env)
    };
    let mut outs: Vec<String> = Vec::new();
    for i in 0..ops.n {
        let o = finish(i);
        let text = stdout(&o);
        if i + 1 < q {
            assert_eq!(
                code(&o),
                3,
                "finish {i} before agreement: {}\n{text}",
                stderr(&o)
            );
            assert!(text.contains("NOT CONFIRMED YET"), "{text}");
            assert!(!ops.out(i).join("cluster.toml").exists());
            assert!(!ops.out(i).join(format!("replica-{i}.toml")).exists());
        } else {
            assert_eq!(code(&o), 0, "finish {i}: {}\n{text}", stderr(&o));
            assert!(text.contains("CONFIRMED: "), "{text}");
        }
        assert!(text.contains(NO_GROUP_SECRET), "{text}");
        outs.push(text);
    }
    for (i, out) in outs.iter_mut().enumerate().take(q - 1) {
        let again = ok(finish(i), &format!("finish {i} again"));
        assert!(again.contains("CONFIRMED: "), "{again}");
        *out = again;
    }
    let first = std::fs::read(ops.out(0).join("cluster.toml")).unwrap();
    for i in 1..ops.n {
        assert_eq!(
            std::fs::read(ops.out(i).join("cluster.toml")).unwrap(),
            first,
            "operator {i}'s cluster.toml differs"
        );
    }
    let all: Vec<String> = (0..ops.n).map(|i| i.to_string()).collect();
    assert!(
        outs[ops.n - 1].contains(&format!("agreeing with this one: [{}]", all.join(", "))),
        "{}",
        outs[ops.n - 1]
    );
    for i in 0..ops.n {
        let mode = std::fs::metadata(ops.out(i).join(format!("replica-{i}.toml")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    outs
}

/// Gathers the operators' files into one `keys/` directory, as each
/// machine would hold them, and returns a cluster ready to start.
fn assemble(ops: Operators) -> ProcCluster {
    let keys = ops.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(ops.out(0).join("cluster.toml"), keys.join("cluster.toml")).unwrap();
    for i in 0..ops.n {
        let name = format!("replica-{i}.toml");
        // fs::copy keeps the 0600 mode.
        std::fs::copy(ops.out(i).join(&name), keys.join(&name)).unwrap();
    }
    ProcCluster::with_keys(ops.dir, ops.n)
}

/// Starts every node, stamps `k` digests, and verifies every receipt by
/// hand against the anchor in cluster.toml.
fn stamp_and_verify_by_hand(mut c: ProcCluster, tag: &str, k: usize) {
    for i in 0..c.n {
        c.start_node(i);
    }
    c.wait_joined(std::time::Duration::from_secs(60));
    let receipts_dir = c.path("receipts");
    let out = c.stamp_digests(&receipts_dir, &digests(tag, 0, k), &["--timeout", "120"]);
    assert_eq!(code(&out), 0, "stamp: {}\n{}", stderr(&out), c.log(0));
    let cluster: toml::Table =
        toml::from_str(&std::fs::read_to_string(c.cluster_file()).unwrap()).unwrap();
    let anchor = cluster["trust_anchor"].as_str().unwrap().to_string();
    let receipts = receipt_files(&receipts_dir);
    assert_eq!(receipts.len(), k);
    for r in &receipts {
        let bytes = std::fs::read(r).unwrap();
        let hand = hand::from_binary(&bytes);
        assert_eq!(usize::from(hand.n), c.n);
        hand::verify_by_hand(&hand, &anchor).unwrap();
    }
    hand::assert_tampering_is_caught(
        &hand::from_binary(&std::fs::read(&receipts[0]).unwrap()),
        &anchor,
    );
}

#[test]
fn four_operators_exclude_a_dealer_of_a_bad_row_and_their_cluster_stamps_receipts_verified_by_hand()
{
    let ops = plan_and_join(4);
    for i in 0..4 {
        let extra: &[&str] = if i == 3 {
            &["--byzantine", "bad-row:1"]
        } else {
            &[]
        };
        ops.step("deal", i, extra, &[]);
    }
    let v1 = ops.step("verify", 1, &[], &[]);
    assert!(
        v1.contains("deal of 3: the row does not match the dealer's commitment: COMPLAINT"),
        "{v1}"
    );
    for i in [0, 2, 3] {
        let v = ops.step("verify", i, &[], &[]);
        assert_eq!(v.matches(": ACK").count(), 4, "{v}");
    }
    // Operator 2 seals its share with a passphrase from a 0600 file.
    let pass = ops.dir.path().join("op-2/passphrase");
    write_private(&pass, "a passphrase for replica 2\n");
    let pass_env = vec![("BELFRY_PASSPHRASE_FILE".to_string(), s(&pass).to_string())];
    let outs = finish_all(&ops, |i| if i == 2 { pass_env.clone() } else { Vec::new() });
    for out in &outs {
        assert!(
            out.contains("FAULT: participant 3 dealt a bad row to participant 1"),
            "{out}"
        );
        assert!(out.contains("excluded dealer 3: at fault"), "{out}");
        assert!(out.contains("qualified dealers: 0, 1, 2 (3 of 4)"), "{out}");
    }
    let sealed = std::fs::read_to_string(ops.out(2).join("replica-2.toml")).unwrap();
    assert!(sealed.contains("belfry-sealed-v1:scrypt:"), "{sealed}");
    let mut c = assemble(ops);
    c.env = pass_env;
    stamp_and_verify_by_hand(c, "ceremony 4", 12);
}

#[test]
fn seven_operators_exclude_a_bad_dealer_and_a_false_accuser_and_their_cluster_stamps_receipts_verified_by_hand(
) {
    let ops = plan_and_join(7);
    for i in 0..7 {
        let extra: &[&str] = if i == 6 {
            &["--byzantine", "bad-row:0"]
        } else {
            &[]
        };
        ops.step("deal", i, extra, &[]);
    }
    for i in 0..7 {
        let extra: &[&str] = if i == 5 {
            &["--byzantine", "false-complaint:0"]
        } else {
            &[]
        };
        ops.step("verify", i, extra, &[]);
    }
    for out in finish_all(&ops, |_| Vec::new()) {
        assert!(
            out.contains("FAULT: participant 5 complained falsely about dealer 0"),
            "{out}"
        );
        assert!(
            out.contains("FAULT: participant 6 dealt a bad row to participant 0"),
            "{out}"
        );
        assert!(
            out.contains("qualified dealers: 0, 1, 2, 3, 4 (5 of 7)"),
            "{out}"
        );
    }
    stamp_and_verify_by_hand(assemble(ops), "ceremony 7", 9);
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn secret_files_others_can_read_are_refused_naming_the_file_and_the_fix() {
    let ops = plan_and_join(4);
    let secret = ops.secret(1);
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let shared = ops.shared();
        let o = run(
            &[
                "ceremony",
                "deal",
                "--shared",
                s(&shared),
                "--secret",
                s(&secret),
            ],
            &[],
        );
        assert_eq!(code(&o), 2);
        let e = stderr(&o);
        assert!(
            e.contains(s(&secret)) && e.contains(&format!("chmod 600 {}", s(&secret))),
            "{e}"
        );
    }
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A passphrase file others can read is refused the same way.
    let pass = ops.dir.path().join("passphrase");
    std::fs::write(&pass, "pass\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let replica = ops.dir.path().join("replica-9.toml");
    write_private(
        &replica,
        &format!("id = 0\ncluster = \"cluster.toml\"\nsecret_share = \"{}\"\ntls_key = \"\"\ndata_dir = \"d\"\n", "11".repeat(32)),
    );
    let o = run(
        &["seal", "--config", s(&replica)],
        &[("BELFRY_PASSPHRASE_FILE", s(&pass))],
    );
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!("chmod 600 {}", s(&pass))),
        "{}",
        stderr(&o)
    );
    // Sealed and unsealed again with a private passphrase file.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("BELFRY_PASSPHRASE_FILE", s(&pass))];
    ok(run(&["seal", "--config", s(&replica)], &env), "seal");
    let text = std::fs::read_to_string(&replica).unwrap();
    assert!(!text.contains(&"11".repeat(32)) && text.contains("belfry-sealed-v1"));
    assert_eq!(
        std::fs::metadata(&replica).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = run(
        &["seal", "--config", s(&replica), "--unseal"],
        &[("BELFRY_PASSPHRASE", "wrong")],
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("passphrase is wrong"), "{}", stderr(&o));
    ok(
        run(&["seal", "--config", s(&replica), "--unseal"], &env),
        "unseal",
    );
    assert!(std::fs::read_to_string(&replica)
        .unwrap()
        .contains(&"11".repeat(32)));
}

/// Polls `what` of replica `i` until `done` holds.
fn wait_metric(c: &ProcCluster, i: usize, what: &str, within_s: u64, done: impl Fn(f64) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(within_s);
    loop {
        if c.metric(i, what).is_some_and(&done) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica {i}'s {what} ({:?}) not as awaited within {within_s} s\n{}",
            c.metric(i, what),
            c.log(i)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Share faults replica `at` counted against replica `of` (invalid head or
/// coin shares), from its Prometheus text.
fn share_faults(c: &ProcCluster, at: usize, of: usize) -> f64 {
    use std::io::{Read, Write};
    let port = c.metrics_port(at);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains("belfry_faults_total") || !body.contains("faults"),
        "{body}"
    );
    body.lines()
        .filter(|l| l.starts_with("belfry_faults_total{"))
        .filter(|l| l.contains(&format!("peer=\"r{of}\"")))
        .filter(|l| l.contains("head_share_invalid") || l.contains("bad_coin_share"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn receipts_verify_by_hand(dir: &Path, anchor: &str, k: usize) {
    let receipts = receipt_files(dir);
    assert_eq!(receipts.len(), k, "{}", dir.display());
    for r in &receipts {
        hand::verify_by_hand(&hand::from_binary(&std::fs::read(r).unwrap()), anchor).unwrap();
    }
}

#[test]
fn a_refresh_while_the_cluster_stamps_keeps_the_anchor_and_a_replica_down_through_the_switch_signs_only_with_its_new_share(
) {
    let ops = plan_and_join(4);
    for step in ["deal", "verify"] {
        for i in 0..4 {
            ops.step(step, i, &[], &[]);
        }
    }
    finish_all(&ops, |_| Vec::new());
    let mut c = assemble(ops);
    let keys = c.keys();
    let cluster_path = keys.join("cluster.toml");
    let anchor = {
        let t: toml::Table =
            toml::from_str(&std::fs::read_to_string(&cluster_path).unwrap()).unwrap();
        t["trust_anchor"].as_str().unwrap().to_string()
    };
    for i in 0..4 {
        c.start_node(i);
    }
    c.wait_joined(std::time::Duration::from_secs(60));
    let before = c.path("before");
    assert_eq!(
        code(&c.stamp_digests(&before, &digests("refresh", 0, 6), &[])),
        0
    );

    // Replica 3 goes down; its operator still takes part in the refresh.
    c.kill9(3);
    let old_replica_3 = std::fs::read_to_string(keys.join("replica-3.toml")).unwrap();
    let wave = c.metric(0, "belfry_wave").unwrap() as u64;
    // Waves run fast after every start and under load (about 30 went by
    // during the ceremony and the restarts here): a wide margin, then
    // stamping pushes the cluster past it.
    let switch = wave + 150;
    let shared = c.path("refresh");
    ok(
        belfry(&[
            "ceremony",
            "plan",
            "--shared",
            s(&shared),
            "--refresh-of",
            s(&cluster_path),
            "--switch-wave",
            &switch.to_string(),
        ]),
        "refresh plan",
    );
    // Stamping goes on while the operators run the refresh.
    let during = c.path("during");
    let cluster_arg = c.cluster_file();
    let stamping = Command::new(procs::BELFRY)
        .args([
            "stamp",
            "--cluster",
            &cluster_arg,
            "--out",
            s(&during),
            "--digest",
        ])
        .arg(digests("refresh", 6, 6).join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let root = c.dir.path().to_path_buf();
    let secret = |i: usize| root.join(format!("op-{i}/refresh-{i}.toml"));
    let out = |i: usize| root.join(format!("op-{i}/refreshed"));
    // Replicas 0..3 run: the switch wave is checked against their metrics;
    // replica 3 is stopped: against its journal.
    let metrics = |i: usize| format!("127.0.0.1:{}", c.metrics_port(i));
    let with_metrics = |i: usize, mut args: Vec<String>| {
        if i < 3 {
            args.extend(["--metrics".to_string(), metrics(i)]);
        }
        args
    };
    // A switch wave the cluster has passed is refused, whether the replica
    // runs or not.
    let late = c.path("refresh-late");
    ok(
        belfry(&[
            "ceremony",
            "plan",
            "--shared",
            s(&late),
            "--refresh-of",
            s(&cluster_path),
            "--switch-wave",
            "2",
        ]),
        "late refresh plan",
    );
    for (i, source) in [(0, "its metrics on"), (3, "its journal in")] {
        let config = keys.join(format!("replica-{i}.toml"));
        let late_secret = root.join(format!("op-{i}/late-{i}.toml"));
        let args = with_metrics(
            i,
            [
                "ceremony",
                "join",
                "--shared",
                s(&late),
                "--config",
                s(&config),
                "--secret",
                s(&late_secret),
            ]
            .map(String::from)
            .to_vec(),
        );
        let o = run(&argv(&args), &[]);
        assert_eq!(code(&o), 2, "{}", stdout(&o));
        let e = stderr(&o);
        assert!(
            e.contains("the refresh switches at wave 2, and replica") && e.contains(source),
            "{e}"
        );
        assert!(!late_secret.exists());
    }
    for i in 0..4 {
        let config = keys.join(format!("replica-{i}.toml"));
        let args = with_metrics(
            i,
            [
                "ceremony",
                "join",
                "--shared",
                s(&shared),
                "--config",
                s(&config),
                "--secret",
                s(&secret(i)),
            ]
            .map(String::from)
            .to_vec(),
        );
        let o = ok(run(&argv(&args), &[]), "refresh join");
        assert!(o.contains("before the switch wave"), "{o}");
    }
    for step in ["deal", "verify"] {
        for i in 0..4 {
            let o = ok(
                run(
                    &[
                        "ceremony",
                        step,
                        "--shared",
                        s(&shared),
                        "--secret",
                        s(&secret(i)),
                    ],
                    &[],
                ),
                step,
            );
            assert!(o.contains(NO_GROUP_SECRET), "{o}");
        }
    }
    let finish = |i: usize| {
        let args = with_metrics(
            i,
            [
                "ceremony",
                "finish",
                "--shared",
                s(&shared),
                "--secret",
                s(&secret(i)),
                "--out",
                s(&out(i)),
            ]
            .map(String::from)
            .to_vec(),
        );
        run(&argv(&args), &[])
    };
    let mut finished = Vec::new();
    for i in 0..4 {
        let o = finish(i);
        // The first two wait for n − f = 3 agreeing done files.
        assert_eq!(
            code(&o),
            if i < 2 { 3 } else { 0 },
            "{}\n{}",
            stderr(&o),
            stdout(&o)
        );
        finished.push(o);
    }
    for (i, f) in finished.iter_mut().enumerate().take(2) {
        *f = finish(i);
    }
    for o in finished {
        let o = ok(o, "refresh finish");
        assert!(o.contains("checked: the group key is unchanged"), "{o}");
        assert!(o.contains(&format!("trust anchor: {anchor}")), "{o}");
    }
    let stamped = stamping.wait_with_output().unwrap();
    assert!(
        stamped.status.success(),
        "stamp during the refresh: {}",
        String::from_utf8_lossy(&stamped.stderr)
    );

    // The new files, and the running replicas restarted onto them one at a time.
    let new_cluster = std::fs::read(out(0).join("cluster.toml")).unwrap();
    for i in 1..4 {
        assert_eq!(
            std::fs::read(out(i).join("cluster.toml")).unwrap(),
            new_cluster
        );
    }
    std::fs::write(&cluster_path, &new_cluster).unwrap();
    let install = |i: usize| {
        std::fs::copy(
            out(i).join(format!("replica-{i}.toml")),
            keys.join(format!("replica-{i}.toml")),
        )
        .unwrap();
    };
    for i in 0..3 {
        c.kill9(i);
        install(i);
        c.start_node(i);
        c.wait_joined(std::time::Duration::from_secs(60));
    }
    assert!(
        (c.metric(0, "belfry_wave").unwrap() as u64) < switch,
        "the switch came before the replicas had their new files: raise the margin"
    );
    let push = c.path("push");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut k = 0;
    while c.metric(0, "belfry_wave").unwrap_or(0.0) as u64 <= switch + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cluster did not reach the switch wave {switch}"
        );
        assert_eq!(
            code(&c.stamp_digests(&push, &digests("refresh push", k, 4), &[])),
            0
        );
        k += 4;
    }
    let after = c.path("after");
    assert_eq!(
        code(&c.stamp_digests(&after, &digests("refresh", 12, 6), &[])),
        0
    );

    // Replica 3 with its stale file is refused: the cluster file names the
    // refreshed shares, and its share is not one of them.
    std::fs::write(keys.join("replica-3.toml"), &old_replica_3).unwrap();
    let stale = belfry(&["node", "--config", s(&keys.join("replica-3.toml"))]);
    assert_eq!(code(&stale), 2);
    assert!(
        stderr(&stale).contains("secret_share is not replica 3's share"),
        "{}",
        stderr(&stale)
    );
    std::fs::set_permissions(
        keys.join("replica-3.toml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // With its refreshed file it rejoins past the switch, catches up, and
    // signs: its own shares are the first it combines for every head and
    // coin, so a stale one would be counted against itself.
    install(3);
    c.start_node(3);
    c.wait_joined(std::time::Duration::from_secs(90));
    let target = c.metric(0, "belfry_signed_size").unwrap();
    wait_metric(&c, 3, "belfry_signed_size", 120, |s| s > target);
    let last = c.path("last");
    assert_eq!(
        code(&c.stamp_digests(&last, &digests("refresh", 18, 6), &[])),
        0
    );
    let signed = c.metric(3, "belfry_signed_size").unwrap();
    wait_metric(&c, 3, "belfry_signed_size", 60, |s| s > signed);
    for at in 0..4 {
        assert_eq!(
            share_faults(&c, at, 3),
            0.0,
            "replica {at} counted bad shares from replica 3"
        );
    }
    // Receipts from before, during and after the refresh verify by hand
    // against the one anchor.
    for (dir, k) in [(&before, 6), (&during, 6), (&after, 6), (&last, 6)] {
        receipts_verify_by_hand(dir, &anchor, k);
    }
    // Pruning deletes the previous share; the node still starts.
    for i in 0..4 {
        let config = keys.join(format!("replica-{i}.toml"));
        ok(
            run(&["ceremony", "prune", "--config", s(&config)], &[]),
            "prune",
        );
        assert!(!std::fs::read_to_string(&config)
            .unwrap()
            .contains("previous_share"));
    }
    c.kill9(2);
    c.start_node(2);
    c.wait_joined(std::time::Duration::from_secs(60));
}
