//! `belfry ceremony` agreeing on its result and its roster, and a
//! refresh's files (docs/keys.md §2, §3, §8), as separate processes: no
//! output is usable before `n − f` done files name one transcript, a late
//! message changes nothing for later finishers, a participant's doubled or
//! malformed roster entry excludes it (a refresh goes on without it), a
//! sealed share stays sealed, and a second refresh keeps the first one's
//! keys.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use procs::{belfry, code, ok, s, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Output;

use procs::belfry_env as run;

/// One ceremony's operators in a temporary directory.
struct Ops {
    dir: tempfile::TempDir,
    shared: PathBuf,
    prefix: &'static str,
}

impl Ops {
    fn new(dir: tempfile::TempDir, shared: &str, prefix: &'static str) -> Ops {
        Ops {
            shared: dir.path().join(shared),
            dir,
            prefix,
        }
    }
    fn secret(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("op-{i}/{}-{i}.toml", self.prefix))
    }
    fn out(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("op-{i}/{}-out", self.prefix))
    }
    /// `belfry ceremony STEP` for operator `i`.
    fn step(&self, step: &str, i: usize, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let secret = self.secret(i);
        let mut args = vec![
            "ceremony",
            step,
            "--shared",
            s(&self.shared),
            "--secret",
            s(&secret),
        ];
        args.extend_from_slice(extra);
        run(&args, env)
    }
    fn finish(&self, i: usize, env: &[(&str, &str)]) -> Output {
        let out = self.out(i);
        self.step("finish", i, &["--out", s(&out)], env)
    }
    fn roster(&self) -> PathBuf {
        self.shared.join("roster")
    }
}

/// A new-key ceremony of four, planned and joined.
fn new_key() -> Ops {
    let ops = Ops::new(tempfile::tempdir().unwrap(), "shared", "ceremony");
    ok(
        belfry(&[
            "ceremony",
            "plan",
            "--replicas",
            "4",
            "--shared",
            s(&ops.shared),
        ]),
        "plan",
    );
    for (i, port) in procs::free_udp_ports(4).into_iter().enumerate() {
        let host = format!("127.0.0.1:{port}");
        ok(
            ops.step("join", i, &["--id", &i.to_string(), "--host", &host], &[]),
            "join",
        );
    }
    ops
}

#[test]
fn outputs_wait_for_n_minus_f_agreeing_done_files_and_a_late_second_verification_changes_nothing_for_later_finishers(
) {
    let ops = new_key();
    for i in 0..4 {
        ok(ops.step("deal", i, &[], &[]), "deal");
    }
    for i in 0..4 {
        ok(ops.step("verify", i, &[], &[]), "verify");
    }
    // Operator 0 finishes first: its done file is published, nothing usable
    // is written.
    let first = ops.finish(0, &[]);
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    let first = stdout(&first);
    assert!(
        first.contains("qualified dealers: 0, 1, 2, 3 (4 of 4)"),
        "{first}"
    );
    assert!(first.contains("NOT CONFIRMED YET"), "{first}");
    assert!(ops.shared.join("done/done-0.toml").exists());
    assert!(!ops.out(0).exists() || std::fs::read_dir(ops.out(0)).unwrap().count() == 0);

    // Then participant 3 publishes a second, different verification: a
    // false complaint about dealer 0. Computed from the directory now, 3
    // is an equivocator and dealer 3 drops out.
    let verify3 = ops.shared.join("verify/verify-3.toml");
    std::fs::rename(&verify3, ops.shared.join("verify/verify-3-first.toml")).unwrap();
    ok(
        ops.step("verify", 3, &["--byzantine", "false-complaint:0"], &[]),
        "second verify",
    );

    // Later finishers adopt the transcript of the done file already out.
    let second = ops.finish(1, &[]);
    assert_eq!(code(&second), 3, "{}", stderr(&second));
    let second = stdout(&second);
    assert!(
        second.contains("participant 3 signed two different verify messages"),
        "{second}"
    );
    assert!(second.contains("adopting the transcript"), "{second}");
    assert!(
        second.contains("qualified dealers: 0, 1, 2, 3 (4 of 4)"),
        "{second}"
    );
    assert!(!ops.out(1).join("replica-1.toml").exists());

    // The third agreeing done file confirms it: outputs are written.
    let third = ok(ops.finish(2, &[]), "finish 2");
    assert!(
        third.contains("CONFIRMED: 3 done files ([0, 1, 2])"),
        "{third}"
    );
    assert!(
        third.contains("qualified dealers: 0, 1, 2, 3 (4 of 4)"),
        "{third}"
    );
    assert!(ops.out(2).join("replica-2.toml").exists());
    for i in [0, 1, 3] {
        let o = ok(ops.finish(i, &[]), "finish again");
        assert!(o.contains("qualified dealers: 0, 1, 2, 3 (4 of 4)"), "{o}");
        assert!(!o.contains("excluded dealer 3"), "{o}");
    }
    let cluster = std::fs::read(ops.out(0).join("cluster.toml")).unwrap();
    for i in 1..4 {
        assert_eq!(
            std::fs::read(ops.out(i).join("cluster.toml")).unwrap(),
            cluster
        );
    }
    // Running it once more changes nothing and writes nothing new.
    let again = ok(ops.finish(0, &[]), "finish 0 a third time");
    assert!(again.contains("written already"), "{again}");
}

#[test]
fn a_new_key_with_a_doubled_roster_entry_stops_at_deal_naming_the_participant() {
    let ops = new_key();
    // Participant 3 publishes a second entry (a second join).
    std::fs::rename(
        ops.roster().join("roster-3.toml"),
        ops.roster().join("roster-3-a.toml"),
    )
    .unwrap();
    let other = ops.dir.path().join("op-3/other.toml");
    ok(
        run(
            &[
                "ceremony",
                "join",
                "--shared",
                s(&ops.shared),
                "--id",
                "3",
                "--host",
                "127.0.0.1:9",
                "--secret",
                s(&other),
            ],
            &[],
        ),
        "second join",
    );
    let o = ops.step("deal", 0, &[], &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains(
            "EXCLUDED from the roster: participant 3 signed two different roster entries"
        ),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("a new key from an unbound plan needs every participant"),
        "{}",
        stderr(&o)
    );
    assert!(!ops.shared.join("deal/deal-0.toml").exists());
}

/// A keygen cluster of four (no node runs), and its directory.
fn cluster() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let hosts: Vec<String> = procs::free_udp_ports(4)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    ok(
        belfry(&[
            "keygen",
            "--replicas",
            "4",
            "--out",
            s(&keys),
            "--hosts",
            &hosts.join(","),
        ]),
        "keygen",
    );
    (dir, keys)
}

/// Runs a refresh of `keys` to the end with `members` taking part, every
/// finish twice (the first ones wait for agreement); returns the operators.
fn refresh(
    dir: tempfile::TempDir,
    keys: &Path,
    name: &'static str,
    switch: u64,
    members: &[usize],
    env: &[(&str, &str)],
    before_deal: impl Fn(&Ops),
) -> Ops {
    let ops = Ops::new(dir, name, name);
    let cluster = keys.join("cluster.toml");
    ok(
        belfry(&[
            "ceremony",
            "plan",
            "--shared",
            s(&ops.shared),
            "--refresh-of",
            s(&cluster),
            "--switch-wave",
            &switch.to_string(),
        ]),
        "refresh plan",
    );
    for &i in members {
        let config = keys.join(format!("replica-{i}.toml"));
        ok(ops.step("join", i, &["--config", s(&config)], env), "join");
    }
    before_deal(&ops);
    for &i in members {
        let o = ops.step("deal", i, &[], env);
        assert_eq!(code(&o), 0, "deal {i}: {}\n{}", stderr(&o), stdout(&o));
    }
    for &i in members {
        ok(ops.step("verify", i, &[], env), "verify");
    }
    for _ in 0..2 {
        for &i in members {
            let o = ops.finish(i, env);
            assert!(code(&o) == 0 || code(&o) == 3, "{}", stderr(&o));
        }
    }
    for &i in members {
        assert!(ops.out(i).join(format!("replica-{i}.toml")).exists(), "{i}");
    }
    ops
}

/// Installs operator `i`'s refreshed files over `keys`.
fn install(ops: &Ops, keys: &Path, members: &[usize]) {
    std::fs::copy(
        ops.out(members[0]).join("cluster.toml"),
        keys.join("cluster.toml"),
    )
    .unwrap();
    for &i in members {
        let name = format!("replica-{i}.toml");
        std::fs::copy(ops.out(i).join(&name), keys.join(&name)).unwrap();
    }
}

#[test]
fn a_refresh_goes_on_without_a_member_that_doubled_its_roster_entry_and_ignores_malformed_ones() {
    let (dir, keys) = cluster();
    let ops = refresh(dir, &keys, "refresh", 1000, &[0, 1, 2], &[], |ops| {
        // Member 3 joins twice: two different entries, both signed with its
        // note key.
        let config = keys.join("replica-3.toml");
        ok(
            ops.step("join", 3, &["--config", s(&config)], &[]),
            "join 3",
        );
        std::fs::rename(
            ops.roster().join("roster-3.toml"),
            ops.roster().join("roster-3-a.toml"),
        )
        .unwrap();
        let other = ops.dir.path().join("op-3/other.toml");
        ok(
            run(
                &[
                    "ceremony",
                    "join",
                    "--shared",
                    s(&ops.shared),
                    "--config",
                    s(&config),
                    "--secret",
                    s(&other),
                ],
                &[],
            ),
            "second join",
        );
        // A copy of 2's entry with another address (its signatures fail)
        // and a file that is no entry at all prove nothing about anyone.
        let two = std::fs::read_to_string(ops.roster().join("roster-2.toml")).unwrap();
        let forged = two.replacen("address = \"127.0.0.1:", "address = \"127.0.0.2:", 1);
        assert_ne!(forged, two);
        std::fs::write(ops.roster().join("roster-2-forged.toml"), forged).unwrap();
        std::fs::write(ops.roster().join("roster-x.toml"), "not an entry").unwrap();
    });
    // That run dealt with 3 excluded: its deal refused, the others confirmed.
    let deal3 = ops.step("deal", 3, &[], &[]);
    assert_eq!(code(&deal3), 2);
    assert!(
        stderr(&deal3).contains("participant 3 is not in the roster"),
        "{}",
        stderr(&deal3)
    );
    let o = ok(ops.finish(0, &[]), "finish 0");
    assert!(
        o.contains("EXCLUDED from the roster: participant 3 signed two different roster entries"),
        "{o}"
    );
    assert!(
        o.contains("roster-2-forged.toml: its signature does not verify"),
        "{o}"
    );
    assert!(o.contains("roster-x.toml"), "{o}");
    assert!(o.contains("checked roster: 3 of 4 participants"), "{o}");
    assert!(o.contains("qualified dealers: 0, 1, 2 (3 of 4)"), "{o}");
    assert!(!ops.out(3).join("replica-3.toml").exists());
    // The refreshed cluster still lists replica 3 (its public key share is
    // the commitments'); its old share is not a share of the new keys.
    let old = std::fs::read_to_string(keys.join("cluster.toml")).unwrap();
    let new = std::fs::read_to_string(ops.out(0).join("cluster.toml")).unwrap();
    let old: toml::Table = toml::from_str(&old).unwrap();
    let new: toml::Table = toml::from_str(&new).unwrap();
    assert_eq!(old["replicas"], new["replicas"]);
    assert_eq!(old["trust_anchor"], new["trust_anchor"]);
    assert_ne!(old["public_keys"], new["public_keys"]);
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn field(path: &Path, name: &str) -> Option<String> {
    let t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    t.get(name).and_then(|v| v.as_str()).map(str::to_string)
}

#[test]
fn a_refresh_keeps_a_sealed_share_sealed_seal_covers_the_previous_share_and_a_second_refresh_keeps_the_first_ones_keys(
) {
    let (dir, keys) = cluster();
    let pass = dir.path().join("pass");
    write_private(&pass, "a passphrase\n");
    let env = [("BELFRY_PASSPHRASE_FILE", s(&pass))];
    // Every replica's share sealed before the refresh.
    for i in 0..4 {
        let config = keys.join(format!("replica-{i}.toml"));
        ok(run(&["seal", "--config", s(&config)], &env), "seal");
    }
    let original = field(&keys.join("cluster.toml"), "public_keys").unwrap();
    let all = [0, 1, 2, 3];
    // No --seal: the new shares are sealed because the old ones were.
    let first = refresh(dir, &keys, "first", 100, &all, &env, |_| {});
    for i in all {
        let file = first.out(i).join(format!("replica-{i}.toml"));
        for f in ["secret_share", "previous_share"] {
            let v = field(&file, f).unwrap();
            assert!(v.starts_with("belfry-sealed-v1:scrypt:"), "{i} {f}: {v}");
        }
    }
    // belfry seal --unseal opens both shares, and seal closes both again.
    let one = first.out(1).join("replica-1.toml");
    ok(
        run(&["seal", "--config", s(&one), "--unseal"], &env),
        "unseal",
    );
    for f in ["secret_share", "previous_share"] {
        let v = field(&one, f).unwrap();
        assert!(v.len() == 64 && hex::decode(&v).is_ok(), "{f}: {v}");
    }
    ok(run(&["seal", "--config", s(&one)], &env), "seal again");
    for f in ["secret_share", "previous_share"] {
        assert!(
            field(&one, f).unwrap().starts_with("belfry-sealed-v1:"),
            "{f}"
        );
    }

    // Installed, pruned after the switch, and refreshed again.
    install(&first, &keys, &all);
    let after_first = field(&keys.join("cluster.toml"), "public_keys").unwrap();
    for i in all {
        let config = keys.join(format!("replica-{i}.toml"));
        ok(
            run(&["ceremony", "prune", "--config", s(&config)], &[]),
            "prune",
        );
    }
    let Ops { dir, .. } = first;
    let second = refresh(dir, &keys, "second", 200, &all, &env, |_| {});
    let cluster: toml::Table =
        toml::from_str(&std::fs::read_to_string(second.out(0).join("cluster.toml")).unwrap())
            .unwrap();
    let r = cluster["refresh"].as_table().unwrap();
    assert_eq!(r["switch_wave"].as_integer(), Some(200));
    assert_eq!(
        r["previous_public_keys"].as_str(),
        Some(after_first.as_str())
    );
    // The keys of the waves before the first switch are still there.
    let earlier = r["earlier"].as_array().unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0]["switch_wave"].as_integer(), Some(100));
    assert_eq!(
        earlier[0]["previous_public_keys"].as_str(),
        Some(original.as_str())
    );
}
