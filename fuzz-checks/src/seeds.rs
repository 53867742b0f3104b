//! Seed corpora from real data: the test vectors, values encoded here, a
//! real journal written by an in-process cluster, a generated cluster's
//! configuration files, and the catch-up answers an in-process cluster
//! really gave (`cargo run -p belfry-fuzz-checks --bin fuzz-seeds -- fuzz/seeds`).

use crate::{catchup, receipts};
use belfry_node::{generate_cluster, GenerateOptions};
use belfry_replica::coin::{GroupSignature, Policy, SignatureShare};
use belfry_replica::journal::{FileJournal, Journal};
use belfry_replica::timestamp::{Entry, SignedTreeHead, TreeHead};
use belfry_replica::wire::{
    self, AggregatedBundle, AggregatedRange, ClientCall, ClientError, ClientMessage, ClientPush,
    ClientRequest, ClientResponse, PeerMessage, ReceiptBundle, ReceiptItem, Unserved,
};
use std::path::Path;

const MERKLE_VECTORS: &str = include_str!("../../testdata/vectors/merkle_sha256.json");
const AGGREGATED_VECTORS: &str = include_str!("../../testdata/vectors/aggregated.json");

/// Seeds per target: `(target, inputs)`.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let fx = catchup::fixture();
    let answers = script_frames(&fx.script);
    let entries = vector_entries();
    let head = vector_head();
    let mut peer: Vec<Vec<u8>> = answers.clone();
    for m in [
        PeerMessage::FetchLog { from: 0 },
        PeerMessage::FetchState { at_most: 64 },
        PeerMessage::FetchLeaders {
            from_wave: 1,
            floor: 2,
        },
        PeerMessage::CannotServe(Unserved::Leaders),
        PeerMessage::HeadShare {
            tree_size: 20,
            share: SignatureShare([3; 96]),
        },
    ] {
        peer.push(wire::encode(&m).expect("a peer frame"));
    }
    let calls: Vec<Vec<u8>> = [
        ClientRequest::Submit(vec![[1; 32], [2; 32]]),
        ClientRequest::Receipt([3; 32]),
        ClientRequest::TreeHead,
        ClientRequest::Consistency(3, 20),
        ClientRequest::Entries(0, 20),
        ClientRequest::Subscribe(5),
        ClientRequest::Receipts(vec![[4; 32]]),
        ClientRequest::SignedHeads,
    ]
    .into_iter()
    .enumerate()
    .flat_map(|(i, request)| {
        let bare = wire::encode(&request).expect("a request frame");
        let call = wire::encode_call(&ClientCall {
            id: i as u64 + 1,
            request,
        })
        .expect("a call frame");
        [bare, call]
    })
    .collect();
    let known = receipts::known();
    let upper = known.receipts[0].0.clone();
    let bundle = ReceiptBundle {
        head: Some(head),
        items: vec![
            ReceiptItem::Included {
                entry: entries[17],
                leaf_index: 17,
                proof: vec![[5; 32], [6; 32]],
            },
            ReceiptItem::NotYet([7; 32]),
            ReceiptItem::Unknown([8; 32]),
        ],
    };
    let aggregated = AggregatedBundle {
        upper: upper.clone(),
        tree_size: 5,
        ranges: vec![AggregatedRange {
            first: 1,
            digests: vec![[9; 32], [10; 32]],
            proof: vec![[11; 32]],
        }],
    };
    let responses = [
        ClientResponse::Accepted {
            accepted: 2,
            duplicates: 1,
        },
        ClientResponse::Receipt(upper),
        ClientResponse::Receipts(bundle.clone()),
        ClientResponse::TreeHead(Some(head)),
        ClientResponse::Consistency(vec![[12; 32]]),
        ClientResponse::Entries {
            from: 0,
            entries: entries[..3].to_vec(),
        },
        ClientResponse::Error(ClientError::Backpressure {
            pending: 9,
            taken: 1,
        }),
        ClientResponse::Error(ClientError::BadRequest("bad".into())),
        ClientResponse::Error(ClientError::RateLimited { retry_after_ms: 5 }),
        ClientResponse::Aggregated(vec![aggregated.clone()]),
    ];
    let pushes = [
        ClientPush::Ordered(vec![([1; 32], 4)]),
        ClientPush::Signed(bundle),
        ClientPush::Entries {
            from: 17,
            entries: entries[17..].to_vec(),
        },
        ClientPush::Head(head),
        ClientPush::Aggregated(aggregated),
    ];
    let messages: Vec<Vec<u8>> = responses
        .into_iter()
        .map(|response| ClientMessage::Answer { id: 1, response })
        .chain(
            pushes
                .into_iter()
                .map(|push| ClientMessage::Push { id: 2, push }),
        )
        .map(|m| wire::encode_message(&m).expect("a client message"))
        .collect();
    let aggregated_json: serde_json::Value =
        serde_json::from_str(AGGREGATED_VECTORS).expect("aggregated.json");
    let negatives = aggregated_json["negative"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut binaries: Vec<Vec<u8>> = known.receipts.iter().map(|r| r.0.clone()).collect();
    binaries.extend(
        negatives
            .iter()
            .filter_map(|n| n["binary_hex"].as_str().and_then(|h| hex::decode(h).ok())),
    );
    let mut json: Vec<Vec<u8>> = known.json.iter().map(|j| j.clone().into_bytes()).collect();
    json.extend(
        negatives
            .iter()
            .filter(|n| !n["json"].is_null())
            .map(|n| n["json"].to_string().into_bytes()),
    );
    let tamper = (0..known.receipts.len() as u8 * 2)
        .map(|which| vec![which, 0, 40, 1])
        .collect();
    let mut entry_head: Vec<Vec<u8>> = entries.iter().map(Entry::to_bytes).collect();
    entry_head.push(postcard::to_allocvec(&head).expect("a head"));
    entry_head.push(postcard::to_allocvec(&head.head).expect("a head"));
    entry_head.push(postcard::to_allocvec(&entries[0]).expect("an entry"));
    let journal = journal_segment();
    let mut segment = vec![journal.clone()];
    segment.push(journal[..journal.len() * 2 / 3].to_vec());
    let mut catchup = vec![fx.script.clone()];
    catchup.push(fx.script[..fx.script.len() / 2].to_vec());
    vec![
        ("peer_frame", peer),
        ("client_call", calls),
        ("client_message", messages),
        ("receipt_binary", binaries),
        ("receipt_json", json),
        ("receipt_tamper", tamper),
        ("entry_head", entry_head),
        ("segment", segment),
        ("journal", vec![journal]),
        ("config", config_files()),
        ("catchup", catchup),
        ("rfc3161_request", rfc3161_requests()),
        (
            "rfc3161_token",
            vec![Vec::new(), vec![0, 40, 1], vec![0, 200, 0x80, 3, 0, 1]],
        ),
        ("tsa_share", tsa_shares()),
    ]
}

/// A request as openssl makes one.
fn rfc3161_requests() -> Vec<Vec<u8>> {
    let full = crate::rfc3161::seed_request();
    vec![full]
}

/// A real share of the fixture's message, and one with its value changed.
fn tsa_shares() -> Vec<Vec<u8>> {
    use rand::SeedableRng;
    let f = crate::rfc3161::fixture();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let share = f.shares[1].sign(&f.message, &mut rng).expect("a share");
    let mut wrong = share.clone();
    wrong.value += 1u32;
    vec![
        belfry_node::tsa::share::encode(&share),
        belfry_node::tsa::share::encode(&wrong),
    ]
}

/// The frames of a catch-up script.
fn script_frames(mut script: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let [_, a, b, rest @ ..] = script {
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
        frames.push(rest[..len].to_vec());
        script = &rest[len..];
    }
    frames
}

fn vector_entries() -> Vec<Entry> {
    let v: serde_json::Value = serde_json::from_str(MERKLE_VECTORS).expect("merkle_sha256.json");
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let bytes = hex::decode(e["bytes"].as_str().expect("bytes")).expect("hex");
            Entry::from_bytes(&bytes).expect("a vector entry")
        })
        .collect()
}

/// The signed head of `receipt.json`.
fn vector_head() -> SignedTreeHead {
    let r = receipts::known().receipts[0].1.cluster_receipt().clone();
    SignedTreeHead {
        head: TreeHead {
            tree_size: r.tree_size,
            root: r.root,
            time: r.time,
        },
        signature: GroupSignature(r.signature.0),
    }
}

/// A journal segment a real cluster wrote: replica 0's journal records
/// (the catch-up fixture's cluster), appended by a `FileJournal`, cut to
/// some 16 KB of whole records (a small seed mutates faster).
fn journal_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let records = catchup::fixture_journal();
    let (mut j, _) = FileJournal::open(dir.path()).expect("a new journal");
    let mut written = 0;
    for r in records {
        let size = postcard::to_allocvec(&r).map_or(0, |b| b.len());
        if written + size > 16_000 {
            break;
        }
        written += size;
        j.append(r).expect("append");
    }
    j.sync().expect("sync");
    let seg = std::fs::read_dir(j.dir())
        .expect("the journal directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    std::fs::read(seg).expect("the segment")
}

/// The test cluster's files (written by [`write_test_cluster`]), and
/// variants with DNS names and a clock policy.
fn config_files() -> Vec<Vec<u8>> {
    let cluster = crate::config::CLUSTER_TOML;
    let replica = include_str!("../data/replica-0.toml");
    let with = |which: u8, text: &str| {
        let mut b = vec![which];
        b.extend_from_slice(text.as_bytes());
        b
    };
    vec![
        with(0, cluster),
        with(1, replica),
        with(0, &cluster.replacen("127.0.0.1:7100", "a.example:7100", 1)),
        with(
            0,
            &cluster
                .replace("policy = \"lamport\"", "policy = \"clock\"")
                .replace("granularity_us = 0", "granularity_us = 1000"),
        ),
    ]
}

/// Writes a four-replica test cluster's `cluster.toml` and
/// `replica-0.toml` (test keys, a fixed seed) into `data` — the files
/// [`crate::config`] checks replica files against.
pub fn write_test_cluster(data: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let generated = generate_cluster(
        dir.path(),
        &GenerateOptions {
            addresses: (0..4).map(|i| format!("127.0.0.1:{}", 7100 + i)).collect(),
            policy: Policy::Lamport,
            genesis_time: belfry_replica::clock::Micros(1_763_700_000_000_000),
            seed: Some(23),
            tsa: None,
        },
    )
    .map_err(|e| e.to_string())?;
    std::fs::copy(&generated.cluster, data.join("cluster.toml")).map_err(|e| e.to_string())?;
    std::fs::copy(&generated.replicas[0], data.join("replica-0.toml"))
        .map_err(|e| e.to_string())?;
    Ok(())
}
