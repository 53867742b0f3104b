//! `testdata/vectors/checkpoint.json` (computed by `checkpoint.py` from the
//! C2SP specs with hashlib and the `cryptography` package, not from this
//! code): belfry's checkpoint of signing.json's signed head, byte for byte —
//! the text, the cluster's key id and line, each replica's verifier key and
//! Ed25519 line, the witness's verifier key, cosigned message and line, the
//! whole note. The cluster's line opens under the group key (a real BLS
//! verification); every line verifies, and every changed byte of the text
//! fails the cluster's line.

#![allow(clippy::unwrap_used)]

use belfry_clock::Micros;
use belfry_coin::{ClusterId, GroupPublicKey, GroupSignature};
use belfry_timestamp::checkpoint::{
    cosigned_message, ClusterKey, Note, NoteSigner, VerifierKey, VerifierKind,
};
use belfry_timestamp::{SignedTreeHead, TreeHead};
use serde_json::Value;

const VECTORS: &str = include_str!("../../testdata/vectors/checkpoint.json");

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn checkpoints_match_the_independent_vectors() {
    let v: Value = serde_json::from_str(VECTORS).unwrap();
    let origin = v["origin"].as_str().unwrap();
    let key = GroupPublicKey::from_hex(v["group_public_key"].as_str().unwrap()).unwrap();
    let ck = ClusterKey {
        origin,
        cluster_id: ClusterId(hex32(&v["cluster_id"])),
        group_key: &key,
    };
    assert_eq!(
        belfry_timestamp::checkpoint::default_origin(ck.cluster_id),
        origin
    );
    let signing: Value =
        serde_json::from_str(include_str!("../../testdata/vectors/signing.json")).unwrap();
    let sig: [u8; 96] = hex::decode(signing["sth"]["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let sth = SignedTreeHead {
        head: TreeHead {
            tree_size: v["tree_size"].as_u64().unwrap(),
            root: hex32(&v["root"]),
            time: Micros(v["time"].as_u64().unwrap()),
        },
        signature: GroupSignature(sig),
    };
    let mut note = ck.note(&sth);
    assert_eq!(note.text, v["text"].as_str().unwrap());
    assert_eq!(
        hex::encode(ck.key_id()),
        v["cluster_key_id"].as_str().unwrap()
    );
    assert_eq!(
        note.signatures[0].line(),
        v["cluster_line"].as_str().unwrap()
    );
    let seeds = v["replica_seeds"].as_array().unwrap();
    for (i, seed) in seeds.iter().enumerate() {
        let s = NoteSigner::from_seed(origin, VerifierKind::Ed25519, &hex32(seed)).unwrap();
        assert_eq!(
            s.verifier().to_string(),
            v["replica_vkeys"][i].as_str().unwrap()
        );
        let line = s.sign(&note.text);
        assert_eq!(line.line(), v["replica_lines"][i].as_str().unwrap());
        note.add(line);
    }
    assert_eq!(note.encode(), v["note"].as_str().unwrap());
    let w = NoteSigner::from_seed(
        v["witness_name"].as_str().unwrap(),
        VerifierKind::Cosignature,
        &hex32(&v["witness_seed"]),
    )
    .unwrap();
    assert_eq!(
        w.verifier().to_string(),
        v["witness_vkey"].as_str().unwrap()
    );
    let t = v["cosignature_timestamp"].as_u64().unwrap();
    assert_eq!(
        cosigned_message(&note.text, t),
        v["cosigned_message"].as_str().unwrap()
    );
    let line = w.cosign(&note.text, t);
    assert_eq!(line.line(), v["witness_line"].as_str().unwrap());
    note.add(line);
    assert_eq!(note.encode(), v["cosigned_note"].as_str().unwrap());

    // Read back: the cluster's line opens, every other line verifies under
    // the vector's verifier keys.
    let parsed = Note::parse(v["cosigned_note"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(parsed, note);
    assert_eq!(ck.open(&parsed), Ok(sth));
    for (i, k) in v["replica_vkeys"].as_array().unwrap().iter().enumerate() {
        let k = VerifierKey::parse(k.as_str().unwrap()).unwrap();
        assert_eq!(k.verify(&parsed.text, &parsed.signatures[1 + i]), Ok(None));
    }
    let wk = VerifierKey::parse(v["witness_vkey"].as_str().unwrap()).unwrap();
    assert_eq!(wk.verify(&parsed.text, &parsed.signatures[5]), Ok(Some(t)));
    // Any changed byte of the text: the cluster's line no longer opens.
    for i in 0..parsed.text.len() {
        let mut bytes = parsed.text.clone().into_bytes();
        bytes[i] ^= 0x01;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let changed = Note {
            text,
            signatures: parsed.signatures.clone(),
        };
        assert!(ck.open(&changed).is_err(), "byte {i}");
    }
}
