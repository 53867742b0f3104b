//! Signed heads as C2SP checkpoints and witness cosignatures on them
//! (docs/checkpoints.md), on four in-process replicas with real threshold
//! BLS: every replica serves the same checkpoint text under the cluster's
//! signature with its own Ed25519 line; a listed witness's cosignature is
//! kept (newest per witness) and served; an unlisted witness, a cosignature
//! that does not verify, one dated in the future, one on a root this log
//! never had or on a size it has no head of, and malformed notes are
//! refused with the reason; an older cosignature never replaces a newer.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_replica::clock::Micros;
use belfry_replica::coin::Policy;
use belfry_replica::timestamp::checkpoint::{
    default_origin, ClusterKey, Note, NoteSigner, VerifierKind,
};
use belfry_replica::timestamp::SignedTreeHead;
use belfry_replica::wire::{self, ClientError, ClientMessage, ClientRequest, ClientResponse};
use belfry_replica::{CoreInput, COSIGNATURE_FUTURE_SLACK_S};
use belfry_world::LocalCluster;
use common::GENESIS;

fn replica_key(i: usize, origin: &str) -> NoteSigner {
    NoteSigner::from_seed(origin, VerifierKind::Ed25519, &[i as u8 + 1; 32]).unwrap()
}

fn witness(name: &str, b: u8) -> NoteSigner {
    NoteSigner::from_seed(name, VerifierKind::Cosignature, &[b; 32]).unwrap()
}

fn ask(c: &mut LocalCluster, node: usize, req: ClientRequest) -> ClientResponse {
    let _ = c.take_responses();
    c.input(
        node,
        CoreInput::Client {
            client: 99,
            frame: wire::encode(&req).unwrap(),
        },
    );
    c.take_responses()
        .into_iter()
        .find_map(|(_, client, m)| match m {
            ClientMessage::Answer { response, .. } if client == 99 => Some(response),
            _ => None,
        })
        .unwrap()
}

fn stamp(c: &mut LocalCluster, tag: &str, k: u64) {
    let ds = common::digests(tag, 0, k);
    c.request_all(7, &ClientRequest::Submit(ds.clone()));
    let until = c.now().saturating_add(Micros::from_secs(60));
    c.run_until(until, |c| {
        (0..c.len()).filter_map(|i| c.core(i)).all(|core| {
            let signed = core.signed_size();
            ds.iter()
                .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
        })
    });
}

fn refused(r: ClientResponse, what: &str) {
    match r {
        ClientResponse::Error(ClientError::BadRequest(why)) => {
            assert!(why.contains(what), "refused for {why:?}, expected {what:?}")
        }
        other => panic!("expected a refusal naming {what:?}, got {other:?}"),
    }
}

#[test]
fn replicas_serve_checkpoints_and_keep_the_newest_cosignature_of_listed_witnesses() {
    let w1 = witness("witness.example/w1", 41);
    let w2 = witness("witness.example/w2", 42);
    let unlisted = witness("witness.example/w3", 43);
    let listed = vec![w1.verifier().clone(), w2.verifier().clone()];
    let (mut c, public) = LocalCluster::with_bls_tuned(4, Policy::Lamport, GENESIS, 5, |cfg| {
        let origin = cfg.checkpoints.origin.clone();
        cfg.checkpoints.signer = Some(replica_key(cfg.broadcast.me.index(), &origin));
        cfg.checkpoints.witnesses = listed.clone();
    })
    .unwrap();
    let params = c.cluster;
    let origin = default_origin(params.cluster_id());
    let key = public.group_key();
    let ck = ClusterKey {
        origin: &origin,
        cluster_id: params.cluster_id(),
        group_key: &key,
    };
    refused(
        ask(&mut c, 0, ClientRequest::Checkpoint(0)),
        "no signed tree head",
    );
    stamp(&mut c, "first", 50);

    // Every replica: the cluster's line verifies, its own Ed25519 line
    // verifies under its key, and the text is the same everywhere.
    let mut text = None;
    let mut first: Option<SignedTreeHead> = None;
    let size = c.core(0).unwrap().signed_size();
    for i in 0..4 {
        let ClientResponse::Checkpoint(note) = ask(&mut c, i, ClientRequest::Checkpoint(size))
        else {
            panic!("no checkpoint")
        };
        let note = Note::parse(note.as_bytes()).unwrap();
        let head = ck.open(&note).unwrap();
        assert_eq!(head.head.tree_size, size);
        let mine = replica_key(i, &origin);
        let line = note
            .signatures
            .iter()
            .find(|s| mine.verifier().matches(s))
            .unwrap();
        assert_eq!(mine.verifier().verify(&note.text, line), Ok(None));
        assert_eq!(note.signatures.len(), 2, "the cluster's line and its own");
        assert!(text.get_or_insert(note.text.clone()) == &note.text);
        first = Some(head);
    }
    let first = first.unwrap();
    let text = text.unwrap();
    refused(
        ask(&mut c, 0, ClientRequest::Checkpoint(size + 1_000)),
        "no signed tree head of size",
    );

    // A listed witness's cosignature is kept and served; nothing is
    // witnessed before.
    assert_eq!(
        ask(&mut c, 1, ClientRequest::Witnessed),
        ClientResponse::Witnessed(vec![])
    );
    let t0 = GENESIS.0 / 1_000_000;
    let cosigned = |w: &NoteSigner, text: &str, t: u64| {
        let mut n = ck.note(&first);
        n.text = text.to_string();
        n.add(w.cosign(text, t));
        n.encode()
    };
    assert_eq!(
        ask(&mut c, 1, ClientRequest::Cosign(cosigned(&w1, &text, t0))),
        ClientResponse::Cosigned { stored: 1 }
    );
    let ClientResponse::Witnessed(notes) = ask(&mut c, 1, ClientRequest::Witnessed) else {
        panic!()
    };
    assert_eq!(notes.len(), 1);
    let served = Note::parse(notes[0].as_bytes()).unwrap();
    assert_eq!(ck.open(&served), Ok(first));
    let line = served
        .signatures
        .iter()
        .find(|s| w1.verifier().matches(s))
        .unwrap();
    assert_eq!(w1.verifier().verify(&served.text, line), Ok(Some(t0)));
    // The same cosignature again: nothing new.
    assert_eq!(
        ask(&mut c, 1, ClientRequest::Cosign(cosigned(&w1, &text, t0))),
        ClientResponse::Cosigned { stored: 0 }
    );

    // Refusals, each with its reason.
    refused(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&unlisted, &text, t0)),
        ),
        "no cosignature of a witness this cluster lists",
    );
    let mut forged = Note::parse(cosigned(&w2, &text, t0).as_bytes()).unwrap();
    let last = forged.signatures.len() - 1;
    forged.signatures[last].signature[20] ^= 1;
    refused(
        ask(&mut c, 1, ClientRequest::Cosign(forged.encode())),
        "does not verify",
    );
    let future = c.now().0 / 1_000_000 + COSIGNATURE_FUTURE_SLACK_S + 5;
    refused(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&w2, &text, future)),
        ),
        "in the future",
    );
    let other_root = text.replace(&text.lines().nth(2).unwrap().to_string(), &"A".repeat(43));
    let other_root = format!(
        "{}=\n",
        other_root.trim_end_matches("\n").trim_end_matches('=')
    );
    refused(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&w2, &other_root, t0)),
        ),
        "is not this log's",
    );
    let other_size = text.replace(&format!("\n{size}\n"), &format!("\n{}\n", size + 7));
    refused(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&w2, &other_size, t0)),
        ),
        "no signed tree head of size",
    );
    let other_origin = text.replacen("belfry/", "belfry2/", 1);
    refused(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&w2, &other_origin, t0)),
        ),
        "origin",
    );
    refused(
        ask(&mut c, 1, ClientRequest::Cosign("not a note".into())),
        "malformed note",
    );
    refused(
        ask(&mut c, 1, ClientRequest::Cosign("x".repeat(20_000))),
        "at most",
    );

    // A later head, cosigned by both: w1's newer cosignature replaces its
    // older one; an older one sent afterwards changes nothing.
    stamp(&mut c, "second", 50);
    let size2 = c.core(1).unwrap().signed_size();
    assert!(size2 > size);
    let ClientResponse::Checkpoint(note2) = ask(&mut c, 1, ClientRequest::Checkpoint(size2)) else {
        panic!()
    };
    let note2 = Note::parse(note2.as_bytes()).unwrap();
    let second = ck.open(&note2).unwrap();
    let mut both = ck.note(&second);
    both.add(w1.cosign(&both.text, t0 + 10));
    both.add(w2.cosign(&both.text, t0 + 10));
    assert_eq!(
        ask(&mut c, 1, ClientRequest::Cosign(both.encode())),
        ClientResponse::Cosigned { stored: 2 }
    );
    assert_eq!(
        ask(
            &mut c,
            1,
            ClientRequest::Cosign(cosigned(&w1, &text, t0 + 20))
        ),
        ClientResponse::Cosigned { stored: 0 },
        "a cosignature of a smaller tree never replaces a larger"
    );
    let ClientResponse::Witnessed(notes) = ask(&mut c, 1, ClientRequest::Witnessed) else {
        panic!()
    };
    assert_eq!(notes.len(), 1, "both witnesses on the same head: one note");
    let served = Note::parse(notes[0].as_bytes()).unwrap();
    assert_eq!(ck.open(&served), Ok(second));
    for w in [&w1, &w2] {
        let line = served
            .signatures
            .iter()
            .find(|s| w.verifier().matches(s))
            .unwrap();
        assert_eq!(w.verifier().verify(&served.text, line), Ok(Some(t0 + 10)));
    }
    // The checkpoint of that size carries them too; another replica that
    // was given nothing serves none.
    let ClientResponse::Checkpoint(with) = ask(&mut c, 1, ClientRequest::Checkpoint(size2)) else {
        panic!()
    };
    assert_eq!(Note::parse(with.as_bytes()).unwrap().signatures.len(), 4);
    assert_eq!(
        ask(&mut c, 2, ClientRequest::Witnessed),
        ClientResponse::Witnessed(vec![])
    );
}
