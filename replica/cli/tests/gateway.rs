//! Aggregation gateways as real processes (docs/gateway.md): a cluster of four
//! `belfry node`s, a gateway in front of it and a second one stacked on the
//! first; clients stamp through both with `belfry stamp --gateway`. Every
//! aggregated receipt verifies offline — with `belfry verify` and with the
//! independent check of `hand/` — against the trust anchor alone; tampered
//! receipts fail with the check named; a gateway killed mid-round loses
//! nothing a client was told is stamped (the client submits again).

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod hand;
mod procs;

use procs::{
    belfry, code, digests, free_tcp_ports, free_udp_ports, scrape, stderr, stdout, ProcCluster,
    BELFRY,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `belfry gateway` process, killed when dropped.
struct Gateway {
    child: Child,
    addr: String,
}

impl Gateway {
    fn start(cluster: &str, port: u16, extra: &[&str], log: &Path) -> Gateway {
        let mut child = Command::new(BELFRY)
            .args([
                "gateway",
                "--cluster",
                cluster,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        // Its one stdout line says it listens.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("belfry gateway: listening on 127.0.0.1:"),
            "gateway did not start: {line:?}; log: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Gateway {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stamp_via(cluster: &str, gateway: &str, out: &Path, ds: &[String]) -> std::process::Output {
    belfry(&[
        "stamp",
        "--cluster",
        cluster,
        "--gateway",
        gateway,
        "--out",
        out.to_str().unwrap(),
        "--timeout",
        "60",
        "--digest",
        &ds.join(","),
    ])
}

fn receipt(dir: &Path, d: &str) -> PathBuf {
    dir.join(format!("{d}.belfry"))
}

fn anchor(cluster: &str) -> String {
    let text = std::fs::read_to_string(cluster).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("trust_anchor"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

/// `belfry verify` of one receipt: (exit code, the failed check if any).
fn verify_one(cluster: &str, receipt: &Path, digest: &str) -> (i32, Option<String>) {
    let out = belfry(&[
        "verify",
        "--cluster",
        cluster,
        "--json",
        "--receipt",
        receipt.to_str().unwrap(),
        "--digest",
        digest,
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_default();
    (code(&out), v["check_failed"].as_str().map(str::to_string))
}

#[test]
fn receipts_through_one_and_two_gateways_verify_and_tampering_is_named() {
    let c = ProcCluster::start(4);
    let cluster = c.cluster_file();
    let anchor = anchor(&cluster);
    let ports = free_udp_ports(2);
    let a = Gateway::start(&cluster, ports[0], &[], &c.path("gw-a.log"));
    let b = Gateway::start(
        &cluster,
        ports[1],
        &["--upstream", &a.addr],
        &c.path("gw-b.log"),
    );
    let (out_a, out_b) = (c.path("via-a"), c.path("via-b"));
    let ds_a = digests("gateway a", 0, 300);
    let ds_b = digests("gateway b", 0, 40);
    let o = stamp_via(&cluster, &a.addr, &out_a, &ds_a);
    assert_eq!(code(&o), 0, "stamp via a: {}", stderr(&o));
    let o = stamp_via(&cluster, &b.addr, &out_b, &ds_b);
    assert_eq!(code(&o), 0, "stamp via b: {}", stderr(&o));

    // Every receipt verifies with belfry verify and by hand, in both forms.
    let v = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--dir",
        out_a.to_str().unwrap(),
    ]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    assert_eq!(stdout(&v).matches("through 1 gateway round").count(), 300);
    let v = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--dir",
        out_b.to_str().unwrap(),
    ]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    assert_eq!(
        stdout(&v)
            .matches("through 2 stacked gateway rounds")
            .count(),
        40
    );
    let mut rounds_roots = std::collections::BTreeSet::new();
    for (dir, ds, layers) in [(&out_a, &ds_a, 1), (&out_b, &ds_b, 2)] {
        for d in ds.iter() {
            let bytes = std::fs::read(receipt(dir, d)).unwrap();
            let hand = hand::aggregated_from_binary(&bytes);
            assert_eq!(hex::encode(hand.digest), *d);
            assert_eq!(hand.steps.len(), layers);
            hand::verify_aggregated_by_hand(&hand, &anchor).unwrap();
            rounds_roots.insert(hand.inner.entry.clone());
        }
    }
    // The cluster logged far fewer entries than digests were stamped.
    assert!(
        rounds_roots.len() < 340 / 4,
        "{} cluster entries for 340 digests",
        rounds_roots.len()
    );
    // The JSON form verifies by hand and with belfry verify too.
    let o = belfry(&[
        "stamp",
        "--cluster",
        &cluster,
        "--gateway",
        &b.addr,
        "--json",
        "--out",
        c.path("json").to_str().unwrap(),
        "--digest",
        &ds_b[0],
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let r = &j["receipts"][0];
    hand::verify_aggregated_by_hand(&hand::aggregated_from_json(r), &anchor).unwrap();
    let json_path = c.path("one.json");
    std::fs::write(&json_path, r.to_string()).unwrap();
    assert_eq!(verify_one(&cluster, &json_path, &ds_b[0]), (0, None));

    // Tampering, each failing with its check named.
    let good = std::fs::read(receipt(&out_a, &ds_a[7])).unwrap();
    let tampered = c.path("tampered.belfry");
    let steps_len = good[38 + 16] as usize;
    assert!(steps_len > 0, "a round of several digests has a path");
    let mut t = good.clone();
    t[38 + 17 + 3] ^= 1; // a hash of the path
    std::fs::write(&tampered, &t).unwrap();
    assert_eq!(
        verify_one(&cluster, &tampered, &ds_a[7]),
        (1, Some("aggregation".to_string()))
    );
    let mut t = good.clone();
    let last = t.len() - 5;
    t[last] ^= 1; // the inner receipt's signature
    std::fs::write(&tampered, &t).unwrap();
    assert_eq!(
        verify_one(&cluster, &tampered, &ds_a[7]).1.as_deref(),
        Some("signature")
    );
    let mut t = good.clone();
    t[last - 96 - 8 - 1] ^= 1; // the inner receipt's root
    std::fs::write(&tampered, &t).unwrap();
    assert_eq!(
        verify_one(&cluster, &tampered, &ds_a[7]).1.as_deref(),
        Some("inclusion_proof")
    );
    // Moved to another digest: the receipt names its own.
    std::fs::write(&tampered, &good).unwrap();
    assert_eq!(
        verify_one(&cluster, &tampered, &ds_a[8]),
        (1, Some("digest".to_string()))
    );
    // ...and a receipt rewritten to claim the other digest fails the chain.
    let mut t = good.clone();
    t[5..37].copy_from_slice(&hex::decode(&ds_a[8]).unwrap());
    std::fs::write(&tampered, &t).unwrap();
    assert_eq!(
        verify_one(&cluster, &tampered, &ds_a[8]),
        (1, Some("aggregation".to_string()))
    );

    // belfry audit checks the chain, then the root's receipt.
    let (audit_code, report) = c.audit(&[receipt(&out_b, &ds_b[0])]);
    assert_eq!(audit_code, 0, "{report}");
    drop(b);
    drop(a);
}

#[test]
fn a_gateway_killed_mid_round_loses_nothing_a_client_was_told_is_stamped() {
    let c = ProcCluster::start(4);
    let cluster = c.cluster_file();
    let anchor = anchor(&cluster);
    let port = free_udp_ports(1)[0];
    // Long rounds: the kill lands inside one.
    let metrics = format!("127.0.0.1:{}", free_tcp_ports(1)[0]);
    let slow = ["--round-ms", "5000", "--metrics", &metrics];
    let gw = Gateway::start(&cluster, port, &slow, &c.path("gw-0.log"));
    let out = c.path("receipts");
    let ds = digests("killed gateway", 0, 50);
    let stamp = Command::new(BELFRY)
        .args([
            "stamp",
            "--cluster",
            &cluster,
            "--gateway",
            &gw.addr,
            "--out",
            out.to_str().unwrap(),
            "--timeout",
            "90",
            "--digest",
            &ds.join(","),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the gateway once it holds the client's digests in its open round.
    let port_m: u16 = metrics.rsplit(':').next().unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape(port_m, "belfry_gateway_digests_total").unwrap_or(0.0) < 50.0 {
        assert!(
            Instant::now() < deadline,
            "the gateway never took the digests"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(scrape(port_m, "belfry_gateway_rounds_total"), Some(0.0));
    drop(gw);
    // Nothing was written: no client was told a digest is stamped.
    let written = std::fs::read_dir(&out)
        .map(|d| d.count())
        .unwrap_or_default();
    assert_eq!(written, 0, "receipts written before any round completed");
    // A new gateway on the same address; the client submits again.
    let _gw = Gateway::start(&cluster, port, &["--round-ms", "50"], &c.path("gw-1.log"));
    let o = stamp.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "stamp: {}", stderr(&o));
    for d in &ds {
        let bytes = std::fs::read(receipt(&out, d)).unwrap();
        hand::verify_aggregated_by_hand(&hand::aggregated_from_binary(&bytes), &anchor).unwrap();
    }
}
