//! RFC 3161 with real processes (docs/rfc3161.md): four `belfry node`s from
//! `belfry keygen --tsa-bits 2048`. `openssl ts -query | curl --data-binary
//! | openssl ts -verify` says `Verification: OK` against any replica; a
//! changed byte of the data, of genTime, of the signature, and a foreign
//! nonce each fail with openssl's own reason; a replica answering with bad
//! signature shares is named (its metric) while the token still completes
//! from honest shares; `belfry verify --rfc3161` and `belfry audit --rfc3161`
//! find each token's serial number to be the log index of its entry; a
//! replica whose RSA share is sealed under a passphrase signs as the others.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use procs::{belfry, code, free_tcp_ports, scrape, stderr, stdout, ProcCluster};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn run(dir: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl ts -query` for `data`, with a nonce and certReq, into `query`.
fn query(dir: &Path, data: &str, query: &str) {
    let (ok, text) = run(
        dir,
        "openssl",
        &[
            "ts", "-query", "-data", data, "-sha256", "-cert", "-out", query,
        ],
    );
    assert!(ok, "openssl ts -query: {text}");
}

/// `curl --data-binary @query` to the endpoint until it grants a token
/// (the replicas need a moment after start to sign their first head).
fn post(dir: &Path, port: u16, query: &str, reply: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (ok, text) = run(
            dir,
            "curl",
            &[
                "-sS",
                "--fail",
                "-H",
                "Content-Type: application/timestamp-query",
                "--data-binary",
                &format!("@{query}"),
                &format!("http://127.0.0.1:{port}/"),
                "-o",
                reply,
            ],
        );
        if ok {
            let (_, shown) = run(dir, "openssl", &["ts", "-reply", "-in", reply, "-text"]);
            if shown.contains("Status: Granted.") {
                return;
            }
            assert!(Instant::now() < deadline, "never granted: {shown}");
        } else {
            assert!(Instant::now() < deadline, "curl: {text}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn verify(dir: &Path, reply: &str, query: &str) -> (bool, String) {
    let (ok, text) = run(
        dir,
        "openssl",
        &[
            "ts",
            "-verify",
            "-in",
            reply,
            "-queryfile",
            query,
            "-CAfile",
            "tsa.pem",
        ],
    );
    (ok && text.contains("Verification: OK"), text)
}

fn serial(dir: &Path, reply: &str) -> u64 {
    let (_, text) = run(dir, "openssl", &["ts", "-reply", "-in", reply, "-text"]);
    text.lines()
        .find_map(|l| l.strip_prefix("Serial number: 0x"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no serial: {text}"))
}

/// A replica's RFC 3161 share endpoint that answers every request at once
/// with a share that is not one: the combining replica must find it by its
/// proof and finish with honest shares.
fn byzantine_share_server(port: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            // Read the head and the body it announces.
            while let Ok(k) = s.read(&mut buf[got..]) {
                if k == 0 {
                    break;
                }
                got += k;
                let text = String::from_utf8_lossy(&buf[..got]).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if got >= end + 4 + len {
                        break;
                    }
                }
            }
            // BTS1 ‖ replica 3 ‖ a 256-byte value ‖ challenge ‖ z.
            let mut share = b"BTS1".to_vec();
            share.extend(3u16.to_be_bytes());
            share.extend(256u16.to_be_bytes());
            share.extend(std::iter::repeat_n(0x5a, 256));
            share.extend([7u8; 16]);
            share.extend(2u16.to_be_bytes());
            share.extend([1, 2]);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                share.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&share);
        }
    });
}

#[test]
fn openssl_verifies_tokens_from_a_real_cluster_and_refuses_every_change() {
    let tsa_ports = free_tcp_ports(4);
    let hosts: Vec<String> = tsa_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut c =
        ProcCluster::keygen_with(4, &["--tsa-bits", "2048", "--tsa-hosts", &hosts.join(",")]);
    let keys = c.keys();
    assert!(
        keys.join("tsa.pem").exists(),
        "keygen writes the certificate for -CAfile"
    );
    // Replica 3's endpoint moves; a Byzantine share server takes its
    // listed address.
    let moved = free_tcp_ports(1)[0];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(keys.join("replica-3.toml"))
        .unwrap();
    writeln!(f, "tsa_listen = \"127.0.0.1:{moved}\"").unwrap();
    drop(f);
    // Replica 1 keeps its RSA share sealed under a passphrase, as its BLS
    // share (`belfry seal`): it must still sign.
    let sealed = Command::new(procs::BELFRY)
        .args([
            "seal",
            "--config",
            keys.join("replica-1.toml").to_str().unwrap(),
        ])
        .env("BELFRY_PASSPHRASE", "rfc 3161 test passphrase")
        .output()
        .unwrap();
    assert!(sealed.status.success(), "{}", stderr(&sealed));
    assert!(
        stdout(&sealed).contains("RFC 3161 RSA share"),
        "{}",
        stdout(&sealed)
    );
    let text = std::fs::read_to_string(keys.join("replica-1.toml")).unwrap();
    assert!(text.contains("tsa_share = \"belfry-sealed-v1:"), "{text}");
    c.env.push((
        "BELFRY_PASSPHRASE".into(),
        "rfc 3161 test passphrase".into(),
    ));
    for i in 0..4 {
        c.start_node(i);
    }
    let p = keys.as_path();
    std::fs::write(p.join("data.txt"), b"belfry rfc 3161\n").unwrap();

    // Honest cluster first: every replica's endpoint grants a token
    // openssl accepts (replica 3's, at its moved address, too).
    query(p, "data.txt", "a.tsq");
    for (i, port) in [tsa_ports[0], tsa_ports[1], tsa_ports[2], moved]
        .iter()
        .enumerate()
    {
        let reply = format!("a{i}.tsr");
        post(p, *port, "a.tsq", &reply);
        let (ok, text) = verify(p, &reply, "a.tsq");
        assert!(ok, "replica {i}: {text}");
    }
    // The same query again names the same entry: one serial per token.
    let first = serial(p, "a0.tsr");
    assert!((1..4).all(|i| serial(p, &format!("a{i}.tsr")) == first));

    // Each change openssl must refuse, with its reason.
    std::fs::write(p.join("changed.txt"), b"belfry rfc 3162\n").unwrap();
    let (ok, text) = run(
        p,
        "openssl",
        &[
            "ts",
            "-verify",
            "-in",
            "a0.tsr",
            "-data",
            "changed.txt",
            "-CAfile",
            "tsa.pem",
        ],
    );
    assert!(!ok && text.contains("message imprint mismatch"), "{text}");
    let good = std::fs::read(p.join("a0.tsr")).unwrap();
    // GeneralizedTime: tag 0x18, 15 to 22 bytes, "20…".
    let at = good
        .windows(4)
        .position(|w| w[0] == 0x18 && (0x0f..=0x16).contains(&w[1]) && &w[2..4] == b"20")
        .expect("genTime");
    let mut changed = good.clone();
    changed[at + 2 + 11] ^= 0x01; // a digit of the minutes
    std::fs::write(p.join("time.tsr"), &changed).unwrap();
    let (ok, text) = verify(p, "time.tsr", "a.tsq");
    assert!(
        !ok && (text.contains("message digest mismatch") || text.contains("signature failure")),
        "{text}"
    );
    let mut changed = good.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    std::fs::write(p.join("sig.tsr"), &changed).unwrap();
    let (ok, text) = verify(p, "sig.tsr", "a.tsq");
    assert!(!ok && text.contains("signature failure"), "{text}");
    query(p, "data.txt", "other.tsq");
    let (ok, text) = verify(p, "a0.tsr", "other.tsq");
    assert!(!ok && text.contains("nonce mismatch"), "{text}");

    // Shares are for the other replicas only: a request not signed by one is
    // refused before any work.
    let mut forged = b"BTS2".to_vec();
    forged.extend(1u16.to_be_bytes());
    let q = std::fs::read(p.join("a.tsq")).unwrap();
    forged.extend((q.len() as u32).to_be_bytes());
    forged.extend(&q);
    forged.extend(4u32.to_be_bytes());
    forged.extend([0u8; 4]);
    forged.extend(64u16.to_be_bytes());
    forged.extend([0u8; 64]);
    std::fs::write(p.join("forged.bin"), &forged).unwrap();
    let (_, code_text) = run(
        p,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
            "@forged.bin",
            &format!("http://127.0.0.1:{}/belfry/tsa-share", tsa_ports[0]),
        ],
    );
    assert_eq!(code_text.trim(), "403", "an unsigned share request");

    // A Byzantine replica's shares: replica 0 names it and completes. A
    // replica asks f peers first, starting at one that moves with the
    // serial number, so a few requests reach replica 3.
    byzantine_share_server(tsa_ports[3]);
    let faults = || {
        scrape(
            c.metrics_port(0),
            "belfry_tsa_share_faults_total{peer=\"3\"}",
        )
    };
    let mut k = 0;
    while faults().unwrap_or(0.0) < 1.0 {
        assert!(
            k < 16,
            "replica 0 never asked replica 3, or did not name it\n{}",
            c.log(0)
        );
        let (q, r) = (format!("b{k}.tsq"), format!("b{k}.tsr"));
        query(p, "data.txt", &q);
        post(p, tsa_ports[0], &q, &r);
        let (ok, text) = verify(p, &r, &q);
        assert!(ok, "with a Byzantine share: {text}");
        assert_ne!(
            serial(p, &r),
            first,
            "a new nonce is a new token, a new entry"
        );
        std::fs::copy(p.join(&r), p.join("b.tsr")).unwrap();
        k += 1;
    }

    // belfry's own checks, offline and against the log.
    let cluster = c.cluster_file();
    let out = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--rfc3161",
        p.join("b.tsr").to_str().unwrap(),
        p.join("data.txt").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("serial"), "{}", stdout(&out));
    let out = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--rfc3161",
        p.join("sig.tsr").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("signature check failed"),
        "{}",
        stdout(&out)
    );
    let out = belfry(&[
        "verify",
        "--cluster",
        &cluster,
        "--rfc3161",
        p.join("b.tsr").to_str().unwrap(),
        p.join("changed.txt").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("imprint check failed"),
        "{}",
        stdout(&out)
    );
    let out = belfry(&[
        "audit",
        "--cluster",
        &cluster,
        "--json",
        "--rfc3161",
        p.join("a0.tsr").to_str().unwrap(),
        p.join("b.tsr").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let tokens = report["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    for t in tokens {
        assert_eq!(t["ok"], true, "{t}");
        assert!(t["held_by"].as_array().unwrap().len() >= 2, "{t}");
    }
    assert_eq!(tokens[0]["serial"].as_u64(), Some(first));
}
