//! Checkpoints and witnesses with real processes (docs/checkpoints.md): four
//! `belfry node`s from `belfry keygen` with two witnesses listed in
//! cluster.toml. `belfry checkpoint` prints a C2SP checkpoint with the
//! cluster's signature and every replica's Ed25519 note signature, each
//! checked here against the keys cluster.toml lists; `belfry witness cosign`
//! cosigns the first checkpoint, then a later one only after a replica
//! proves it consistent; the replicas keep the cosignature across `kill -9`;
//! `belfry audit` shows the witness's checkpoint consistent and covering the
//! receipts; an unlisted witness is refused by every replica (exit 1).
//!
//! The checkpoint, the replicas' and the witness's verifier keys are left in
//! `target/interop/checkpoint/` for the Go check (`interop/go/ci.sh`),
//! which verifies them with `golang.org/x/mod/sumdb/note`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod procs;

use belfry_replica::timestamp::checkpoint::{ClusterKey, Note, VerifierKey, VerifierKind};
use procs::{belfry, code, digests, receipt_files, stderr, stdout, ProcCluster};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn interop_dir() -> PathBuf {
    let dir = match std::env::var_os("BELFRY_INTEROP_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/interop/checkpoint"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `belfry checkpoint` until it answers (the replicas sign their first
/// head a moment after start).
fn checkpoint(c: &ProcCluster, extra: &[&str]) -> (String, String) {
    let cluster = c.cluster_file();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut args = vec!["checkpoint", "--cluster", &cluster];
        args.extend_from_slice(extra);
        let out = belfry(&args);
        if code(&out) == 0 {
            return (stdout(&out), stderr(&out));
        }
        assert!(
            Instant::now() < deadline,
            "belfry checkpoint: {}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn checkpoints_verify_and_witnesses_cosign_only_consistent_views() {
    let mut c = ProcCluster::keygen(4);
    let keys = c.keys();
    let w1_key = c.path("w1.key");
    let out = belfry(&[
        "witness",
        "keygen",
        "--name",
        "witness.example/w1",
        "--out",
        w1_key.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let w1 = stdout(&out).trim().to_string();
    let w1_vkey = VerifierKey::parse(&w1).unwrap();
    assert_eq!(w1_vkey.kind, VerifierKind::Cosignature);
    // The key file is secret, and not overwritten.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w1_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }
    let again = belfry(&[
        "witness",
        "keygen",
        "--name",
        "x",
        "--out",
        w1_key.to_str().unwrap(),
    ]);
    assert_eq!(code(&again), 2);
    let w3_key = c.path("w3.key");
    let out = belfry(&[
        "witness",
        "keygen",
        "--name",
        "witness.example/unlisted",
        "--out",
        w3_key.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0);
    // List w1 in cluster.toml before the nodes start.
    let cluster_path = keys.join("cluster.toml");
    let text = std::fs::read_to_string(&cluster_path).unwrap();
    let text = text.replacen(
        "[[replicas]]",
        &format!("witnesses = [\"{w1}\"]\n\n[[replicas]]"),
        1,
    );
    std::fs::write(&cluster_path, text).unwrap();
    for i in 0..4 {
        c.start_node(i);
    }
    c.wait_joined(Duration::from_secs(60));

    let receipts_dir = c.path("receipts");
    let out = c.stamp_digests(&receipts_dir, &digests("checkpoint", 0, 20), &[]);
    assert_eq!(code(&out), 0, "stamp: {}", stderr(&out));

    // The checkpoint: the cluster's line and all four replicas' lines
    // verify under cluster.toml's keys.
    let cluster = belfry_node::ClusterFile::load(&cluster_path).unwrap();
    let key = cluster.params.group_public_key;
    let ck = ClusterKey {
        origin: &cluster.notes.origin,
        cluster_id: cluster.params.cluster_id(),
        group_key: &key,
    };
    let (note_text, said) = checkpoint(&c, &[]);
    assert!(said.contains("4 of 4 replicas OK"), "{said}");
    let note = Note::parse(note_text.as_bytes()).unwrap();
    let first = ck.open(&note).unwrap();
    assert!(first.head.tree_size >= 20);
    assert_eq!(note.signatures.len(), 5);
    for k in cluster.notes.replicas.iter().flatten() {
        let line = note.signatures.iter().find(|s| k.matches(s)).unwrap();
        assert_eq!(k.verify(&note.text, line), Ok(None));
    }

    // The witness cosigns the first checkpoint it sees; every replica keeps
    // it.
    let state = c.path("w1-state.json");
    let cosign = |key: &Path| {
        belfry(&[
            "witness",
            "cosign",
            "--key",
            key.to_str().unwrap(),
            "--cluster",
            cluster_path.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
    };
    let out = cosign(&w1_key);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the first checkpoint"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        stderr(&out).matches(": kept").count(),
        4,
        "{}",
        stderr(&out)
    );

    // A second witness process on the same state is refused while the
    // first holds its lock.
    {
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(state.with_extension("lock"))
            .unwrap();
        lock.try_lock().unwrap();
        let out = cosign(&w1_key);
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("holds this state's lock"),
            "{}",
            stderr(&out)
        );
    }

    // More digests; the next cosignature needs a consistency proof.
    let out = c.stamp_digests(&receipts_dir, &digests("checkpoint", 20, 20), &[]);
    assert_eq!(code(&out), 0, "stamp: {}", stderr(&out));
    let out = cosign(&w1_key);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("proved consistent with size"),
        "{}",
        stderr(&out)
    );

    // An unlisted witness: every replica refuses it (exit 1); its state
    // is its own.
    let out = belfry(&[
        "witness",
        "cosign",
        "--key",
        w3_key.to_str().unwrap(),
        "--cluster",
        cluster_path.to_str().unwrap(),
        "--state",
        c.path("w3-state.json").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert_eq!(
        stderr(&out)
            .matches("no cosignature of a witness this cluster lists")
            .count(),
        4,
        "{}",
        stderr(&out)
    );

    // A replica killed and restarted still serves the cosignature: asked
    // alone, it carries the witness's line (kept durably when it said so).
    c.kill9(2);
    c.start_node(2);
    c.wait_joined(Duration::from_secs(60));

    // The cosigned checkpoint, merged from all replicas: four Ed25519
    // lines, the cluster's, the witness's.
    let state_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let cosigned = Note::parse(state_json["checkpoint"].as_str().unwrap().as_bytes()).unwrap();
    let cosigned_head = ck.open(&cosigned).unwrap();
    let size = cosigned_head.head.tree_size.to_string();
    let (alone, said) = checkpoint(&c, &["--size", &size, "--replica", "2"]);
    assert!(said.contains("1 of 4 replicas OK ([2])"), "{said}");
    assert!(said.contains("cosigned by witness.example/w1"), "{said}");
    assert_eq!(Note::parse(alone.as_bytes()).unwrap().signatures.len(), 3);
    let (witnessed, said) = checkpoint(&c, &["--size", &size]);
    assert!(said.contains("4 of 4 replicas OK"), "{said}");
    assert!(said.contains("cosigned by witness.example/w1"), "{said}");
    let witnessed_note = Note::parse(witnessed.as_bytes()).unwrap();
    assert_eq!(ck.open(&witnessed_note), Ok(cosigned_head));
    assert_eq!(witnessed_note.signatures.len(), 6);
    let line = witnessed_note
        .signatures
        .iter()
        .find(|s| w1_vkey.matches(s))
        .unwrap();
    assert!(matches!(
        w1_vkey.verify(&witnessed_note.text, line),
        Ok(Some(_))
    ));

    // The audit shows the witness's checkpoint, consistent with the
    // largest head, covering every receipt.
    let receipts = receipt_files(&receipts_dir);
    assert_eq!(receipts.len(), 40);
    let (code_audit, v) = c.audit(&receipts);
    assert_eq!(code_audit, 0, "{v}");
    let w = &v["witnesses"][0];
    assert_eq!(w["name"], "witness.example/w1", "{v}");
    assert_eq!(w["consistent"], true, "{v}");
    assert_eq!(w["receipts_covered"], 40, "{v}");
    assert_eq!(w["head"]["tree_size"], cosigned_head.head.tree_size, "{v}");

    // For the Go check: the cosigned checkpoint and every verifier key.
    let dir = interop_dir();
    std::fs::write(dir.join("checkpoint"), &witnessed).unwrap();
    let mut vkeys: Vec<String> = cluster
        .notes
        .replicas
        .iter()
        .flatten()
        .map(|k| k.to_string())
        .collect();
    vkeys.push(w1.clone());
    std::fs::write(dir.join("vkeys"), vkeys.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("origin"), format!("{}\n", cluster.notes.origin)).unwrap();
    // For the Python check (interop/python/ci.sh): a receipt from this
    // cluster, its anchor and its digest.
    let bytes = std::fs::read(&receipts[0]).unwrap();
    let receipt = belfry_replica::timestamp::Receipt::from_binary(&bytes).unwrap();
    let belfry_replica::timestamp::Entry::Digest(d) = receipt.entry else {
        panic!("a stamped digest's receipt")
    };
    std::fs::write(dir.join("receipt.belfry"), &bytes).unwrap();
    let meta = serde_json::json!({
        "anchor": c_anchor(&cluster),
        "digest": hex::encode(d.digest),
    });
    std::fs::write(dir.join("receipt.json"), meta.to_string()).unwrap();
}

fn c_anchor(cluster: &belfry_node::Cluster) -> String {
    cluster.anchor().to_string()
}
