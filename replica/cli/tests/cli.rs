//! The command line as a user meets it, with real processes: `keygen`'s
//! files and refusals, `stamp`'s receipts and JSON, `verify`'s exit codes
//! (0 valid, 1 invalid, 2 usage or I/O) and the check it names for a
//! tampered file, a tampered receipt, a wrong anchor and another cluster,
//! `audit`'s JSON, a stamp that cannot complete, and `--help` everywhere.

#![allow(clippy::unwrap_used)]

mod procs;

use procs::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// One line on stderr, starting `belfry: `.
fn one_error_line(o: &std::process::Output) -> String {
    let e = stderr(o);
    assert_eq!(e.lines().count(), 1, "stderr: {e:?}");
    assert!(e.starts_with("belfry: ") || e.starts_with("error: "), "{e}");
    e
}

#[test]
fn keygen_writes_public_and_0600_secret_files_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k");
    let o = belfry(&["keygen", "--replicas", "4", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("dealer"), "{text}");
    assert!(text.contains("offline"), "{text}");
    assert!(text.contains("trust anchor: belfry1:"), "{text}");
    for i in 0..4 {
        let p = out.join(format!("replica-{i}.toml"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    let cluster: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("cluster.toml")).unwrap()).unwrap();
    assert_eq!(cluster["n"].as_integer(), Some(4));
    assert_eq!(cluster["f"].as_integer(), Some(1));
    assert!(cluster["trust_anchor"]
        .as_str()
        .unwrap()
        .starts_with("belfry1:"));
    let addresses: Vec<&str> = cluster["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "127.0.0.1:7100",
            "127.0.0.1:7101",
            "127.0.0.1:7102",
            "127.0.0.1:7103"
        ]
    );
    // Never overwrites a cluster's keys.
    let o = belfry(&["keygen", "--replicas", "4", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(one_error_line(&o).contains("exists"));

    // Hosts: one per replica, each a host with an optional port.
    let other = dir.path().join("hosts");
    let o = belfry(&[
        "keygen",
        "--replicas",
        "4",
        "--out",
        other.to_str().unwrap(),
        "--hosts",
        "10.0.0.1,b.example,[::1]:9000,10.0.0.1",
        "--base-port",
        "7200",
        "--policy",
        "clock",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cluster = std::fs::read_to_string(other.join("cluster.toml")).unwrap();
    for a in [
        "10.0.0.1:7200",
        "b.example:7200",
        "[::1]:9000",
        "10.0.0.1:7201",
    ] {
        assert!(cluster.contains(&format!("\"{a}\"")), "{a} in {cluster}");
    }
    assert!(cluster.contains("granularity_us = 1000"));

    let bad = |args: &[&str], says: &str| {
        let d = dir.path().join("bad");
        let mut all = vec!["keygen", "--out", d.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = belfry(&all);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = one_error_line(&o);
        assert!(e.contains(says), "{args:?}: {e}");
        assert!(!d.join("cluster.toml").exists());
    };
    bad(&["--replicas", "3"], "at least 4");
    bad(&["--replicas", "2"], "exactly 1");
    bad(&["--replicas", "4", "--hosts", "a,b,c"], "3 hosts");
    bad(&["--replicas", "4", "--hosts", "a,b,c,d_e"], "d_e");
    bad(&["--replicas", "4", "--hosts", "a:1,a:1,c,d"], "a:1");
    bad(&["--replicas", "4", "--hosts", "a,b,c,d:0"], "port");
    bad(&["--replicas", "4", "--hosts", "a,b,c,d:70000"], "port");
    bad(&["--replicas", "4", "--base-port", "65534"], "65535");
    bad(&["--replicas", "4", "--policy", "fifo"], "fifo");
    bad(&["--replicas", "4", "--granularity-us", "5"], "clock");
    let o = belfry(&["keygen", "--replicas", "four", "--out", "x"]);
    assert_eq!(code(&o), 2);
    // One replica (f = 0) is a single trusted sequencer: the benchmark's
    // baseline; its files load like any cluster's.
    let solo = dir.path().join("solo");
    let o = belfry(&["keygen", "--replicas", "1", "--out", solo.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(solo.join("cluster.toml")).unwrap();
    assert!(text.contains("n = 1") && text.contains("f = 0"), "{text}");
    assert!(solo.join("replica-0.toml").exists() && !solo.join("replica-1.toml").exists());

    // The node refuses a secret file others can read.
    let secret = out.join("replica-0.toml");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = belfry(&["node", "--config", secret.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(one_error_line(&o).contains("chmod 600"));
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        "demo", "keygen", "ceremony", "seal", "node", "stamp", "verify", "audit",
    ] {
        let o = belfry(&[cmd, "--help"]);
        assert_eq!(code(&o), 0, "{cmd}");
        assert!(
            stdout(&o).contains("Example"),
            "{cmd} --help:\n{}",
            stdout(&o)
        );
    }
    let o = belfry(&["--help"]);
    assert_eq!(code(&o), 0);
    let o = belfry(&["frobnicate"]);
    assert_eq!(code(&o), 2);
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Flips one bit of a receipt file at `offset` into a copy.
fn tampered(receipt: &Path, offset: usize, to: &Path) {
    let mut b = std::fs::read(receipt).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(to, b).unwrap();
}

/// Offsets in the binary form (docs/design.md §3.7): "BLFY", version, key[48], n, f,
/// policy, granularity, genesis (74 bytes); a digest entry (52); leaf index
/// and tree size (16); proof length (1); then the proof's first hash.
const FIRST_PROOF_HASH: usize = 74 + 52 + 16 + 1;

fn verify(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let o = belfry(&all);
    (code(&o), stdout(&o), stderr(&o))
}

fn verify_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (c, out, err) = verify(&all);
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("no JSON: {out:?} {err:?}"));
    (c, v)
}

#[test]
fn stamp_verify_and_audit_against_a_live_cluster() {
    let mut c = ProcCluster::start(4);
    c.wait_joined(Duration::from_secs(60));
    let cluster = c.cluster_file();
    let docs = c.path("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let files: Vec<_> = (0..3)
        .map(|i| {
            let p = docs.join(format!("contract-{i}.txt"));
            std::fs::write(&p, format!("contract number {i}\n")).unwrap();
            p
        })
        .collect();
    let paths: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();

    // stamp --json: {"receipts": [...]} in the JSON form of docs/design.md §3.7,
    // and FILE.belfry next to each file.
    let mut args = vec!["stamp", "--cluster", &cluster, "--json"];
    args.extend(&paths);
    let o = belfry(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 3);
    let anchor = {
        let t: toml::Table = toml::from_str(&std::fs::read_to_string(&cluster).unwrap()).unwrap();
        t["trust_anchor"].as_str().unwrap().to_string()
    };
    for (r, f) in receipts.iter().zip(&files) {
        for key in [
            "version",
            "cluster",
            "cluster_id",
            "entry",
            "leaf_index",
            "tree_size",
            "inclusion_proof",
            "root",
            "time",
            "signature",
        ] {
            assert!(r.get(key).is_some(), "{key} missing from {r}");
        }
        assert_eq!(
            r["entry"]["digest"],
            sha256_hex(&std::fs::read(f).unwrap()).as_str()
        );
        assert_eq!(
            format!(
                "belfry1:{}",
                r["cluster"]["group_public_key"].as_str().unwrap()
            ),
            anchor
        );
        let mut name = f.file_name().unwrap().to_os_string();
        name.push(".belfry");
        assert!(f.with_file_name(name).exists());
    }
    let receipt0 = docs.join("contract-0.txt.belfry");
    let first = std::fs::read(&receipt0).unwrap();

    // A digest already logged gets its existing receipt, byte for byte.
    let o = belfry(&["stamp", "--cluster", &cluster, paths[0]]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("already logged"), "{}", stdout(&o));
    assert_eq!(std::fs::read(&receipt0).unwrap(), first);

    // Standard input, receipts elsewhere.
    let out = c.path("out");
    let mut child = std::process::Command::new(BELFRY)
        .args([
            "stamp",
            "--cluster",
            &cluster,
            "--out",
            out.to_str().unwrap(),
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped content")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0);
    let piped = out.join(format!("{}.belfry", sha256_hex(b"piped content")));
    assert!(piped.exists());
    let (c0, v) = verify_json(&["--anchor", &anchor, "--receipt", piped.to_str().unwrap()]);
    assert_eq!(c0, 0);
    assert_eq!(v["digest"], sha256_hex(b"piped content").as_str());

    // verify: OK, with the leaf index, tree size and UTC time.
    let (c0, text, _) = verify(&["--cluster", &cluster, paths[0], paths[1], paths[2]]);
    assert_eq!(c0, 0, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("OK ")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("leaf ") && text.contains("tree size ") && text.contains('Z'));
    let (c0, v) = verify_json(&["--anchor", &anchor, paths[1]]);
    assert_eq!(c0, 0);
    for key in [
        "ok",
        "check_failed",
        "digest",
        "leaf_index",
        "tree_size",
        "time",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["ok"], true);
    assert!(v["check_failed"].is_null());
    assert_eq!(v["leaf_index"], receipts[1]["leaf_index"]);
    assert_eq!(v["tree_size"], receipts[1]["tree_size"]);
    assert_eq!(v["time"], receipts[1]["time"]);
    // The JSON form verifies as well as the binary one.
    let json_receipt = c.path("contract-2.json");
    std::fs::write(&json_receipt, receipts[2].to_string()).unwrap();
    let (c0, _) = verify_json(&[
        "--cluster",
        &cluster,
        paths[2],
        "--receipt",
        json_receipt.to_str().unwrap(),
    ]);
    assert_eq!(c0, 0);

    // A tampered file: the digest check.
    let changed = c.path("changed.txt");
    std::fs::write(&changed, "contract number 0, amended\n").unwrap();
    let r0 = receipt0.to_str().unwrap();
    let (c1, v) = verify_json(&[
        "--cluster",
        &cluster,
        changed.to_str().unwrap(),
        "--receipt",
        r0,
    ]);
    assert_eq!(
        (c1, v["ok"].clone(), v["check_failed"].clone()),
        (1, false.into(), "digest".into())
    );
    let (c1, text, _) = verify(&[
        "--cluster",
        &cluster,
        changed.to_str().unwrap(),
        "--receipt",
        r0,
    ]);
    assert_eq!(c1, 1);
    assert!(
        text.starts_with("FAIL ") && text.contains("digest"),
        "{text}"
    );

    // A tampered receipt: its proof, its signed time, its signature.
    let bad = c.path("bad.belfry");
    let bad_s = bad.to_str().unwrap();
    for (offset, check) in [
        (FIRST_PROOF_HASH, "inclusion_proof"),
        (first.len() - 96 - 1, "signature"),
        (first.len() - 1, "signature"),
    ] {
        tampered(&receipt0, offset, &bad);
        let (c1, v) = verify_json(&["--cluster", &cluster, paths[0], "--receipt", bad_s]);
        assert_eq!(c1, 1, "offset {offset}");
        assert_eq!(v["check_failed"], check, "offset {offset}: {v}");
    }
    // The entry inside the receipt changed: no longer this file's digest.
    tampered(&receipt0, 74 + 1, &bad);
    let (c1, v) = verify_json(&["--anchor", &anchor, paths[0], "--receipt", bad_s]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "digest".into()));
    // ... and checked on its own, its proof no longer leads to the root.
    let (c1, v) = verify_json(&["--anchor", &anchor, "--receipt", bad_s]);
    assert_eq!(
        (c1, v["check_failed"].clone()),
        (1, "inclusion_proof".into())
    );
    // Not a receipt at all.
    std::fs::write(&bad, b"hello").unwrap();
    let (c1, v) = verify_json(&["--anchor", &anchor, paths[0], "--receipt", bad_s]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "format".into()));

    // A wrong anchor: another cluster's key.
    let other = c.path("other");
    let o = belfry(&[
        "keygen",
        "--replicas",
        "4",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0);
    let other_cluster = other.join("cluster.toml");
    let (c1, v) = verify_json(&["--cluster", other_cluster.to_str().unwrap(), paths[0]]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "anchor".into()));
    let other_anchor = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("trust anchor: "))
        .unwrap()
        .to_string();
    let (c1, v) = verify_json(&["--anchor", &other_anchor, paths[0]]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "anchor".into()));
    // Same key, other parameters: the cluster id.
    let text = std::fs::read_to_string(&cluster).unwrap();
    let moved = c.path("moved-genesis.toml");
    let genesis = text
        .lines()
        .find_map(|l| l.strip_prefix("genesis_time = "))
        .unwrap();
    let later: u64 = genesis.trim().parse::<u64>().unwrap() + 1;
    std::fs::write(&moved, text.replace(genesis, &later.to_string())).unwrap();
    let (c1, v) = verify_json(&["--cluster", moved.to_str().unwrap(), paths[0]]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "cluster_id".into()));
    // A JSON receipt whose cluster_id is not its cluster's.
    let mut forged = receipts[2].clone();
    forged["cluster_id"] = Value::String("00".repeat(32));
    std::fs::write(&json_receipt, forged.to_string()).unwrap();
    let (c1, v) = verify_json(&[
        "--anchor",
        &anchor,
        paths[2],
        "--receipt",
        json_receipt.to_str().unwrap(),
    ]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "cluster_id".into()));
    // A JSON receipt whose group key was swapped for another cluster's (its
    // cluster_id no longer matches either): the anchor is checked first.
    let mut swapped = receipts[2].clone();
    let other_key = other_anchor.trim_start_matches("belfry1:").to_string();
    swapped["cluster"]["group_public_key"] = Value::String(other_key);
    std::fs::write(&json_receipt, swapped.to_string()).unwrap();
    let (c1, v) = verify_json(&[
        "--anchor",
        &anchor,
        paths[2],
        "--receipt",
        json_receipt.to_str().unwrap(),
    ]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "anchor".into()));

    // Usage and I/O errors exit 2, with one line on stderr.
    let missing = c.path("missing.txt");
    let o = belfry(&["verify", "--cluster", &cluster, missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    one_error_line(&o);
    std::fs::write(&missing, "no receipt for me").unwrap();
    let o = belfry(&["verify", "--cluster", &cluster, missing.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(one_error_line(&o).contains("missing.txt.belfry"));
    let o = belfry(&["verify", paths[0]]);
    assert_eq!(code(&o), 2, "neither --cluster nor --anchor");
    let o = belfry(&["verify", "--anchor", "belfry1:1234", paths[0]]);
    assert_eq!(code(&o), 2);
    one_error_line(&o);
    let o = belfry(&[
        "stamp",
        "--cluster",
        &cluster,
        missing.with_extension("nope").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    one_error_line(&o);

    // Two contents that would share one receipt file: refused before
    // anything is stamped.
    for (d, text) in [("a", "one"), ("b", "two")] {
        std::fs::create_dir_all(c.path(d)).unwrap();
        std::fs::write(c.path(d).join("x.txt"), text).unwrap();
    }
    let (xa, xb) = (c.path("a").join("x.txt"), c.path("b").join("x.txt"));
    let o = belfry(&[
        "stamp",
        "--cluster",
        &cluster,
        "--out",
        out.to_str().unwrap(),
        xa.to_str().unwrap(),
        xb.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(one_error_line(&o).contains("would both write"));

    // audit --json: every replica, consistent, the receipts held.
    let (c0, v) = c.audit(&[receipt0.clone(), piped.clone()]);
    assert_eq!(c0, 0, "{v}");
    assert_eq!(v["consistent"], true);
    assert_eq!(v["trust_anchor"], anchor.as_str());
    let replicas = v["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 4);
    for r in replicas {
        assert!(r["head"]["tree_size"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["head"]["signature"].as_str().unwrap().len(), 192);
        assert_eq!(r["receipts"]["held"], 2, "{r}");
    }

    // f + 1 key holders colluding (here: the dealt shares of replicas 0
    // and 1) can sign a history the cluster never had. Offline, such a
    // receipt verifies; audit catches it: its head is not consistent with
    // the replicas' (a split view, printed with both signed heads) and no
    // replica holds its entry.
    let forged = forge_receipt(&c.keys(), &cluster);
    let forged_s = forged.to_str().unwrap();
    let (c0, v) = verify_json(&["--cluster", &cluster, "--receipt", forged_s]);
    assert_eq!(c0, 0, "a forged receipt is validly signed: {v}");
    let (c1, v) = c.audit(std::slice::from_ref(&forged));
    assert_eq!(c1, 1, "{v}");
    assert_eq!(v["consistent"], false);
    let split = &v["split_views"][0];
    for side in ["a", "b"] {
        assert_eq!(
            split[side]["head"]["signature"].as_str().unwrap().len(),
            192,
            "{split}"
        );
    }
    assert_eq!(split["b"]["head"]["tree_size"], 1, "{split}");
    for r in v["replicas"].as_array().unwrap() {
        assert_eq!(r["receipts"]["missing"][0], forged_s, "{r}");
    }
    let o = belfry(&["audit", "--cluster", &cluster, forged_s]);
    assert_eq!(code(&o), 1);
    // Shown with --nocapture: what an auditor sees.
    eprintln!("{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("SPLIT VIEW"), "{}", stdout(&o));
    assert!(one_error_line(&o).contains("NOT consistent"));

    // Two replicas down: no quorum. The stamp says how many replicas
    // answered and exits 1; audit reports them unreachable.
    c.kill9(2);
    c.kill9(3);
    let o = belfry(&[
        "stamp",
        "--cluster",
        &cluster,
        "--timeout",
        "3",
        "--digest",
        &"ab".repeat(32),
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = one_error_line(&o);
    assert!(
        e.contains("0 of 1 digests stamped") && e.contains("2 of 4 replicas"),
        "{e}"
    );
    let (c0, v) = c.audit(&[]);
    assert_eq!(c0, 0, "the heads still received are consistent: {v}");
    let status: Vec<&str> = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(&status[2..], ["unreachable", "unreachable"]);
}

/// A receipt for a digest the cluster never saw, alone in a one-entry log,
/// signed with the group key recombined from replicas 0's and 1's secret
/// shares (f + 1 = 2).
fn forge_receipt(keys: &Path, cluster: &str) -> std::path::PathBuf {
    let out = keys.with_file_name("forged.belfry");
    forge_receipt_for(keys, cluster, [0x66; 32], &out);
    out
}

/// Such a receipt for `digest`, written to `out`.
fn forge_receipt_for(keys: &Path, cluster: &str, digest: [u8; 32], out: &Path) {
    use belfry_replica::clock::Micros;
    use belfry_replica::coin::{threshold_sign, ReplicaId, SecretShare, SignedMessage};
    use belfry_replica::timestamp::merkle::leaf_hash;
    use belfry_replica::timestamp::{DigestEntry, Entry, Receipt};
    let path = Path::new(cluster);
    let (params, public) = belfry_node::ClusterFile::read(path)
        .unwrap()
        .params(path)
        .unwrap();
    let shares: Vec<SecretShare> = (0..2u16)
        .map(|i| {
            let file: toml::Table = toml::from_str(
                &std::fs::read_to_string(keys.join(format!("replica-{i}.toml"))).unwrap(),
            )
            .unwrap();
            let mut secret = [0u8; 32];
            hex::decode_to_slice(file["secret_share"].as_str().unwrap(), &mut secret).unwrap();
            SecretShare::from_bytes(ReplicaId(i), secret).unwrap()
        })
        .collect();
    let entry = Entry::Digest(DigestEntry {
        digest,
        witnessed_at: Micros(params.genesis_time.0 + 1),
        key: 0,
        witnesses: 3,
        late: false,
    });
    let mut r = Receipt {
        cluster: params,
        entry,
        leaf_index: 0,
        tree_size: 1,
        inclusion_proof: Vec::new(),
        root: leaf_hash(&entry.to_bytes()),
        time: Micros(params.genesis_time.0 + 2),
        signature: belfry_replica::coin::GroupSignature([0; 96]),
    };
    r.signature = threshold_sign(&public, &shares, &r.tree_head_message().signing_bytes()).unwrap();
    std::fs::write(out, r.to_binary()).unwrap();
}

/// Runs `belfry` and waits for it to exit, for at most a minute (then it is
/// killed and the test fails): for commands that must fail at once.
// A test's deadline on the wall clock, not protocol code.
#[allow(clippy::disallowed_methods)]
fn belfry_exits(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(BELFRY)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "belfry {args:?} did not exit: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A child process killed (and reaped) when dropped, also when the test
/// fails.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
// A test's deadline on the wall clock, not protocol code.
#[allow(clippy::disallowed_methods)]
fn node_locks_its_data_directory_and_says_it_listens_only_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let hosts: Vec<String> = free_udp_ports(4)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let o = belfry(&[
        "keygen",
        "--replicas",
        "4",
        "--out",
        keys.to_str().unwrap(),
        "--hosts",
        &hosts.join(","),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let config = |i: usize| {
        keys.join(format!("replica-{i}.toml"))
            .to_str()
            .unwrap()
            .to_string()
    };

    // Its port taken: it fails, and never said it was listening.
    let taken = std::net::UdpSocket::bind(&hosts[1]).unwrap();
    let o = belfry_exits(&["node", "--config", &config(1)]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("cannot listen on"), "{e}");
    assert!(!e.contains("listening on"), "{e}");
    drop(taken);

    // A second node on a running one's data directory fails at once and
    // says why, before it touches anything there.
    let log = dir.path().join("node-0.log");
    let mut first = Killed(
        std::process::Command::new(BELFRY)
            .args(["node", "--config", &config(0)])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("listening on")
    {
        assert!(first.0.try_wait().unwrap().is_none(), "replica 0 exited");
        assert!(std::time::Instant::now() < deadline, "replica 0 never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = belfry_exits(&["node", "--config", &config(0)]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let e = one_error_line(&o);
    let data = keys.join("data-0");
    assert!(e.contains(data.to_str().unwrap()), "{e}");
    assert!(e.contains("another process holds its lock"), "{e}");
    assert!(!e.contains("listening on"), "{e}");
    drop(first);

    // A damaged log store: the error says what to do. First its header
    // after the magic number, then the whole file.
    let redb = data.join("log").join("log.redb");
    let mut bytes = std::fs::read(&redb).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().take(4096).skip(16) {
        *b = (i * 7919 % 251) as u8;
    }
    for damaged in [bytes, vec![0x5a; 64 * 1024]] {
        std::fs::write(&redb, damaged).unwrap();
        let o = belfry_exits(&["node", "--config", &config(0)]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let e = one_error_line(&o);
        eprintln!("{e}");
        assert!(e.contains("log.redb is damaged"), "{e}");
        assert!(
            e.contains(&format!("move the whole data directory {}", data.display())),
            "{e}"
        );
    }
}

/// Fresh keys for an offline test: (temporary directory, keys directory,
/// cluster file).
fn offline_keys() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let o = belfry(&["keygen", "--replicas", "4", "--out", keys.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cluster = keys.join("cluster.toml").to_str().unwrap().to_string();
    (dir, keys, cluster)
}

#[test]
fn stamp_refuses_a_zero_timeout_as_a_usage_error() {
    let (_dir, _keys, cluster) = offline_keys();
    let o = belfry(&[
        "stamp",
        "--cluster",
        &cluster,
        "--timeout",
        "0",
        "--digest",
        &"ab".repeat(32),
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("give 1 or more"), "{}", stderr(&o));
}

#[test]
fn audit_exits_1_on_a_malformed_receipt_as_verify_does() {
    let (dir, _keys, cluster) = offline_keys();
    let bad = dir.path().join("bad.belfry");
    std::fs::write(&bad, b"hello").unwrap();
    let o = belfry(&["audit", "--cluster", &cluster, bad.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(one_error_line(&o).contains("bad.belfry"));
    let (c1, v) = verify_json(&["--cluster", &cluster, "--receipt", bad.to_str().unwrap()]);
    assert_eq!((c1, v["check_failed"].clone()), (1, "format".into()));
}

/// `verify --dir DIR` alone checks every receipt in DIR: NAME.belfry
/// against the file NAME beside it, <hex>.belfry against that digest.
#[test]
fn verify_dir_alone_checks_every_receipt_in_it() {
    let (dir, keys, cluster) = offline_keys();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "first").unwrap();
    forge_receipt_for(
        &keys,
        &cluster,
        sha256(b"first"),
        &docs.join("a.txt.belfry"),
    );
    let digest = [0x42u8; 32];
    forge_receipt_for(
        &keys,
        &cluster,
        digest,
        &docs.join(format!("{}.belfry", hex::encode(digest))),
    );
    let d = docs.to_str().unwrap();
    let (c0, text, _) = verify(&["--cluster", &cluster, "--dir", d]);
    assert_eq!(c0, 0, "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("OK ")).count(), 2);
    assert!(text.contains("a.txt") && text.contains(&hex::encode(digest)));
    // A changed file fails its digest check.
    std::fs::write(docs.join("a.txt"), "changed").unwrap();
    let (c1, text, _) = verify(&["--cluster", &cluster, "--dir", d]);
    assert_eq!(c1, 1, "{text}");
    assert!(text.contains("digest check"), "{text}");
    // A receipt whose file is not beside it: an error that says so (2).
    std::fs::remove_file(docs.join("a.txt")).unwrap();
    let o = belfry(&["verify", "--cluster", &cluster, "--dir", d]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("is not beside it"), "{}", stderr(&o));
    // An empty directory: nothing to verify, and what to give instead.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--dir",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2);
    assert!(one_error_line(&o).contains("no receipts"));
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
