//! A new-key ceremony whose plan binds each slot to its operator
//! (`belfry ceremony identity`, `plan --participants`), as separate
//! processes: a participant that doubles its roster entry is excluded and
//! the others complete; its replica is absent from cluster.toml, and the
//! cluster runs without it. Only slot i's key can contest slot i.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod hand;
mod procs;

use procs::{belfry, code, digests, ok, receipt_files, s, stderr, stdout, ProcCluster};
use std::path::PathBuf;

const NO_GROUP_SECRET: &str =
    "checked: this process constructed no group secret key (dealer calls on this thread: 0)";

struct Operators {
    dir: tempfile::TempDir,
}

impl Operators {
    fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }
    fn identity(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/identity.toml"))
    }
    fn secret(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/ceremony-{i}.toml"))
    }
    fn out(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/out"))
    }

    fn run(&self, step: &str, i: usize, extra: &[&str]) -> std::process::Output {
        let (shared, secret) = (self.shared(), self.secret(i));
        let mut args = vec![
            "ceremony",
            step,
            "--shared",
            s(&shared),
            "--secret",
            s(&secret),
        ];
        args.extend_from_slice(extra);
        belfry(&args)
    }

    fn step(&self, step: &str, i: usize, extra: &[&str]) -> String {
        let out = ok(
            self.run(step, i, extra),
            &format!("ceremony {step}, operator {i}"),
        );
        if step != "join" {
            assert!(out.contains(NO_GROUP_SECRET), "{step} {i}: {out}");
        }
        out
    }

    fn join(&self, i: usize) -> String {
        let identity = self.identity(i);
        self.step("join", i, &["--identity", s(&identity)])
    }

    fn finish(&self, i: usize) -> std::process::Output {
        let out = self.out(i);
        self.run("finish", i, &["--out", s(&out)])
    }
}

/// Four operators make their identities; a bound plan lists them.
fn identities_and_bound_plan() -> Operators {
    let ops = Operators {
        dir: tempfile::tempdir().unwrap(),
    };
    let mut lines = Vec::new();
    for (i, port) in procs::free_udp_ports(4).into_iter().enumerate() {
        let host = format!("127.0.0.1:{port}");
        let id = ops.identity(i);
        let out = ok(
            belfry(&["ceremony", "identity", "--key", s(&id), "--host", &host]),
            "identity",
        );
        let line = out
            .lines()
            .find(|l| l.ends_with(&host) && l.contains('@'))
            .unwrap_or_else(|| panic!("no identity line: {out}"))
            .to_string();
        // Shown again, unchanged, without --host.
        let again = ok(belfry(&["ceremony", "identity", "--key", s(&id)]), "show");
        assert!(again.contains(&line), "{again}");
        lines.push(line);
    }
    let plan = ok(
        belfry(&[
            "ceremony",
            "plan",
            "--participants",
            &lines.join(","),
            "--shared",
            s(&ops.shared()),
        ]),
        "plan",
    );
    assert!(plan.contains("n = 4, f = 1"), "{plan}");
    for (i, l) in lines.iter().enumerate() {
        assert!(plan.contains(&format!("slot {i}: {l}")), "{plan}");
    }
    ops
}

#[test]
fn a_bound_new_key_completes_without_a_participant_that_doubled_its_entry_and_runs_with_its_replica_absent(
) {
    let ops = identities_and_bound_plan();
    for i in 0..4 {
        let out = ops.join(i);
        assert!(
            out.contains(&format!("checked plan.toml: slot {i} is bound to my key")),
            "{out}"
        );
    }
    // Participant 3 publishes a second, different entry (fresh keys, signed
    // with its bound key): the same slot, doubled.
    let roster = ops.shared().join("roster");
    std::fs::rename(
        roster.join("roster-3.toml"),
        roster.join("roster-3-first.toml"),
    )
    .unwrap();
    let second = ops.dir.path().join("op-3/second.toml");
    let identity = ops.identity(3);
    ok(
        belfry(&[
            "ceremony",
            "join",
            "--shared",
            s(&ops.shared()),
            "--identity",
            s(&identity),
            "--secret",
            s(&second),
        ]),
        "join again",
    );

    for i in 0..3 {
        let out = ops.step("deal", i, &[]);
        assert!(
            out.contains(
                "EXCLUDED from the roster: participant 3 signed two different roster entries"
            ),
            "{out}"
        );
        assert!(out.contains("checked roster: 3 of 4 participants"), "{out}");
        assert!(out.contains("checked: a bound plan"), "{out}");
    }
    let refused = ops.run("deal", 3, &[]);
    assert_ne!(code(&refused), 0);
    assert!(
        stderr(&refused).contains("participant 3 is not in the roster"),
        "{}",
        stderr(&refused)
    );
    for i in 0..3 {
        let out = ops.step("verify", i, &[]);
        assert!(out.contains("ACK"), "{out}");
    }
    // The first two finishers wait for n − f = 3 agreeing done files.
    for i in 0..2 {
        let o = ops.finish(i);
        assert_eq!(code(&o), 3, "{}\n{}", stderr(&o), stdout(&o));
        assert!(!ops.out(i).join("cluster.toml").exists());
    }
    let last = ok(ops.finish(2), "finish 2");
    assert!(last.contains("CONFIRMED: "), "{last}");
    assert!(last.contains(NO_GROUP_SECRET), "{last}");
    for i in 0..2 {
        let again = ok(ops.finish(i), "finish again");
        assert!(again.contains("CONFIRMED: "), "{again}");
    }
    let cluster_text = std::fs::read_to_string(ops.out(0).join("cluster.toml")).unwrap();
    for i in 1..3 {
        assert_eq!(
            std::fs::read_to_string(ops.out(i).join("cluster.toml")).unwrap(),
            cluster_text
        );
    }
    let cluster: toml::Table = toml::from_str(&cluster_text).unwrap();
    let replicas = cluster["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 4);
    let r3 = replicas[3].as_table().unwrap();
    assert_eq!(
        r3.get("absent").and_then(|v| v.as_bool()),
        Some(true),
        "{r3:?}"
    );
    assert!(r3.get("address").is_none() && r3.get("certificate").is_none());
    for r in &replicas[..3] {
        assert!(r.get("absent").is_none() && r.get("address").is_some());
    }
    assert!(!ops.out(3).join("replica-3.toml").exists());

    // Three `belfry node` processes run the cluster; replica 3 stays absent.
    let keys = ops.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("cluster.toml"), &cluster_text).unwrap();
    for i in 0..3 {
        let name = format!("replica-{i}.toml");
        std::fs::copy(ops.out(i).join(&name), keys.join(&name)).unwrap();
    }
    let anchor = cluster["trust_anchor"].as_str().unwrap().to_string();
    let Operators { dir } = ops;
    let mut c = ProcCluster::with_keys(dir, 4);
    for i in 0..3 {
        c.start_node(i);
    }
    c.wait_joined(std::time::Duration::from_secs(60));
    let receipts_dir = c.path("receipts");
    let out = c.stamp_digests(
        &receipts_dir,
        &digests("bound", 0, 5),
        &["--timeout", "120"],
    );
    assert_eq!(code(&out), 0, "stamp: {}\n{}", stderr(&out), c.log(0));
    let receipts = receipt_files(&receipts_dir);
    assert_eq!(receipts.len(), 5);
    for r in &receipts {
        let h = hand::from_binary(&std::fs::read(r).unwrap());
        assert_eq!(h.n, 4);
        hand::verify_by_hand(&h, &anchor).unwrap();
    }
}

/// The bytes a roster entry's signatures cover (docs/keys.md §4).
fn entry_bytes(e: &toml::Table) -> Vec<u8> {
    let field = |k: &str| e[k].as_str().unwrap().to_string();
    let put = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u32).to_be_bytes());
        b.extend(s.as_bytes());
    };
    let mut b = b"belfry-ceremony-roster-v1".to_vec();
    b.extend(hex::decode(field("plan")).unwrap());
    b.extend((e["id"].as_integer().unwrap() as u16).to_be_bytes());
    put(&mut b, &field("address"));
    put(&mut b, &field("certificate"));
    for k in ["note_key", "encryption_key", "signing_key"] {
        b.extend(hex::decode(field(k)).unwrap());
    }
    b
}

#[test]
fn in_a_bound_plan_another_participant_cannot_contest_a_slot() {
    let ops = identities_and_bound_plan();
    for i in 0..4 {
        ops.join(i);
    }
    // Participant 1 publishes a second entry for slot 3: participant 3's
    // own, re-signed with participant 1's key. In an unbound plan this
    // would exclude participant 3; here it proves nothing.
    let roster = ops.shared().join("roster");
    let mut forged: toml::Table =
        toml::from_str(&std::fs::read_to_string(roster.join("roster-3.toml")).unwrap()).unwrap();
    let id1: toml::Table =
        toml::from_str(&std::fs::read_to_string(ops.identity(1)).unwrap()).unwrap();
    let seed = hex::decode(id1["signing_seed"].as_str().unwrap()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    use ring::signature::KeyPair;
    forged.insert(
        "signing_key".into(),
        hex::encode(pair.public_key().as_ref()).into(),
    );
    let bytes = entry_bytes(&forged);
    forged.insert(
        "signature".into(),
        hex::encode(pair.sign(&bytes).as_ref()).into(),
    );
    std::fs::write(
        roster.join("roster-3-contested.toml"),
        toml::to_string(&forged).unwrap(),
    )
    .unwrap();

    for i in 0..4 {
        let out = ops.step("deal", i, &[]);
        assert!(
            out.contains("roster-3-contested.toml: not signed with the key the plan binds to slot 3 (proves nothing about anyone)"),
            "{out}"
        );
        assert!(out.contains("checked roster: 4 of 4 participants"), "{out}");
        assert!(!out.contains("EXCLUDED"), "{out}");
    }
}

#[test]
fn in_a_bound_plan_a_participant_that_never_joins_is_left_out_once_n_minus_f_have_joined() {
    let ops = identities_and_bound_plan();
    for i in 0..3 {
        ops.join(i);
    }
    // Participant 3 never joins: a plain deal waits for it, naming it.
    let waiting = ops.run("deal", 0, &[]);
    assert_eq!(
        code(&waiting),
        2,
        "{}\n{}",
        stdout(&waiting),
        stderr(&waiting)
    );
    assert!(stderr(&waiting).contains("[3]"), "{}", stderr(&waiting));
    for i in 0..3 {
        let out = ops.step("deal", i, &["--without-missing"]);
        assert!(out.contains("checked roster: 3 of 4 participants"), "{out}");
    }
    for i in 0..3 {
        let out = ops.step("verify", i, &[]);
        assert!(out.contains("ACK"), "{out}");
    }
    for i in 0..2 {
        assert_eq!(code(&ops.finish(i)), 3);
    }
    let last = ok(ops.finish(2), "finish 2");
    assert!(last.contains("CONFIRMED: "), "{last}");
    let cluster: toml::Table =
        toml::from_str(&std::fs::read_to_string(ops.out(2).join("cluster.toml")).unwrap()).unwrap();
    let replicas = cluster["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 4);
    assert_eq!(
        replicas[3].get("absent").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert!(ops.out(2).join("replica-2.toml").exists());
}
