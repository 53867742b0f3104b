//! `belfry ceremony` as separate processes, one per operator and step, with
//! one operator misbehaving: it must be named and excluded, the others must
//! end with one cluster.toml, and a cluster of real `belfry node` processes
//! started from the result must stamp receipts that the independent check
//! (`hand/`: sha2 and blst, none of belfry's verification code) verifies.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod hand;
mod procs;

use procs::{belfry, code, digests, receipt_files, stderr, stdout, ProcCluster};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NO_GROUP_SECRET: &str =
    "checked: this process constructed no group secret key (dealer calls on this thread: 0)";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(procs::BELFRY)
        .args(args)
        .env_remove("BELFRY_PASSPHRASE")
        .env_remove("BELFRY_PASSPHRASE_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: Output, what: &str) -> String {
    assert_eq!(code(&o), 0, "{what}: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

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

/// Every operator finishes; returns their outputs. All cluster.toml files
/// must be the same bytes, and the last finish sees every done file agree.
fn finish_all(ops: &Operators, env_for: impl Fn(usize) -> Vec<(String, String)>) -> Vec<String> {
    let outs: Vec<String> = (0..ops.n)
        .map(|i| {
            let out_dir = ops.out(i);
            let env = env_for(i);
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut extra = vec!["--out", s(&out_dir)];
            if !env.is_empty() {
                extra.push("--seal");
            }
            ops.step("finish", i, &extra, &env)
        })
        .collect();
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
