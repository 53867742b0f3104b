//! Hostile bytes and hostile clients against one replica of a live 4-replica
//! cluster on loopback: garbage datagrams, garbage and oversized frames and
//! half frames on a call stream, a wrong ALPN, a "peer" with a certificate
//! the cluster does not know, a client that subscribes and submits but
//! never reads, and a client that floods `Submit`. Meanwhile an honest
//! client is served by that replica, and the replica's queues, the core's
//! client state and the process's memory stay within stated bounds.

#![allow(clippy::unwrap_used)]

mod common;

use belfry_client::{ClientOptions, Fanout};
use belfry_node::NodeOptions;
use belfry_replica::timestamp::verify_receipt;
use belfry_wire::{
    close, decode_message, encode_call, ClientCall, ClientMessage, ClientRequest, ClientResponse,
    CLIENT_ALPN, PEER_ALPN,
};
use std::sync::Arc;
use std::time::Duration;

/// Bytes queued per client, each way, in this test.
const CLIENT_QUEUE_BYTES: usize = 32 * 1024;
/// Client input budget in this test.
const CLIENT_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Peer input budget in this test.
const PEER_INPUT_BYTES: usize = 16 * 1024 * 1024;
/// Per-client outstanding digests in this test.
const PER_CLIENT: usize = 5_000;
/// Client connections in this test.
const MAX_CLIENTS: usize = 16;

fn options() -> NodeOptions {
    NodeOptions {
        max_clients: MAX_CLIENTS,
        client_queue_bytes: CLIENT_QUEUE_BYTES,
        client_input_bytes: CLIENT_INPUT_BYTES,
        peer_input_bytes: PEER_INPUT_BYTES,
        tune: Some(|c| c.max_outstanding_per_client = PER_CLIENT),
        ..NodeOptions::default()
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A raw QUIC connection to replica 0 with the given ALPN and client
/// identity, and a small receive window (so a client that does not read
/// fills up quickly).
async fn raw(
    ep: &quinn::Endpoint,
    info: &belfry_client::ClusterInfo,
    alpn: &[u8],
    identity: Option<(
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<quinn::Connection, String> {
    let crypto = belfry_client::tls::client_config(
        info.replicas[0].as_ref().unwrap().certificate.clone(),
        identity,
        alpn,
    )
    .unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(16_384u32.into())
        .receive_window(32_768u32.into());
    config.transport_config(Arc::new(t));
    let connecting = ep
        .connect_with(
            config,
            info.replicas[0].as_ref().unwrap().address,
            "replica-0.belfry",
        )
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".to_string()),
    }
}

fn call(id: u64, request: ClientRequest) -> Vec<u8> {
    encode_call(&ClientCall { id, request }).unwrap()
}

/// Sends `bytes` on a fresh call stream and returns the code the replica
/// stopped it with.
async fn stopped_with(conn: &quinn::Connection, bytes: &[u8]) -> Option<u64> {
    let (mut send, _recv) = tokio::time::timeout(Duration::from_secs(10), conn.open_bi())
        .await
        .ok()?
        .ok()?;
    let _ = send.write_all(bytes).await;
    let code = tokio::time::timeout(Duration::from_secs(10), send.stopped())
        .await
        .ok()?
        .ok()??;
    Some(code.into_inner())
}

fn metric(node: &belfry_node::RunningNode, name: &str) -> f64 {
    node.metrics().value(name).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_under_attack_keeps_serving_within_its_bounds() {
    belfry_node::init_tracing();
    let cluster = common::start(4, 2, options).await;
    let info = cluster.info.clone();
    let target = cluster.nodes[0].as_ref().unwrap();
    let honest = cluster.client(ClientOptions {
        fanout: Fanout::All,
        ..ClientOptions::default()
    });
    // Warm up (connections, first heads), then take the baseline.
    honest.stamp(&common::digests("warm", 0, 50)).await.unwrap();
    let rss_before = rss_bytes();
    let ep = endpoint();

    // Garbage datagrams at the port.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..2_000usize {
        let len = 1 + (i * 7919) % 1_400;
        let junk: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
        let _ = udp.send_to(&junk, info.replicas[0].as_ref().unwrap().address);
    }

    // Bad frames on a call stream: each stops that stream only.
    let conn = raw(&ep, &info, CLIENT_ALPN, None).await.unwrap();
    let bad = u64::from(close::BAD_FRAME);
    assert_eq!(stopped_with(&conn, &[0xff; 64]).await, Some(bad));
    assert_eq!(
        stopped_with(&conn, &[2, 0xff, 0xff, 0xff, 0xff, 0]).await,
        Some(bad),
        "an oversized length prefix is refused before any body"
    );
    assert_eq!(
        stopped_with(&conn, &[1, 0, 0, 0, 3, 0, 0, 0]).await,
        Some(bad),
        "a peer-version frame on a client stream"
    );
    {
        // Half a frame, then the stream ends.
        let (mut send, _recv) = tokio::time::timeout(Duration::from_secs(10), conn.open_bi())
            .await
            .unwrap()
            .unwrap();
        send.write_all(&[2, 0, 0, 0, 100, 1, 2, 3]).await.unwrap();
        send.finish().unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same connection still works on a new stream.
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), conn.open_bi())
        .await
        .unwrap()
        .unwrap();
    send.write_all(&call(9, ClientRequest::TreeHead))
        .await
        .unwrap();
    let answer = read_one(&mut recv).await;
    assert!(
        matches!(
            answer,
            Some(ClientMessage::Answer {
                id: 9,
                response: ClientResponse::TreeHead(Some(_))
            })
        ),
        "{answer:?}"
    );

    // A wrong ALPN does not get a connection.
    assert!(raw(&ep, &info, b"h3", None).await.is_err());
    // A "replica" whose certificate the cluster does not list is refused.
    let (cert, key) = belfry_node::tls::generate_identity(1).unwrap();
    let impostor = belfry_node::tls::Identity::new(
        belfry_node::tls::cert_from_pem("impostor", &cert).unwrap(),
        &key,
    )
    .unwrap();
    match raw(&ep, &info, PEER_ALPN, Some(impostor.pair())).await {
        Err(_) => {}
        Ok(c) => {
            // TLS 1.3 clients finish before the server checks their
            // certificate: the refusal then closes the connection.
            let closed = tokio::time::timeout(Duration::from_secs(10), c.closed()).await;
            assert!(closed.is_ok(), "the impostor's connection stayed open");
        }
    }
    // A peer without a certificate is refused too.
    if let Ok(c) = raw(&ep, &info, PEER_ALPN, None).await {
        let closed = tokio::time::timeout(Duration::from_secs(10), c.closed()).await;
        assert!(closed.is_ok());
    }

    // A client that subscribes and submits, and never reads.
    let deaf = raw(&ep, &info, CLIENT_ALPN, None).await.unwrap();
    let (mut deaf_send, _deaf_recv) = deaf.open_bi().await.unwrap();
    deaf_send
        .write_all(&call(1, ClientRequest::Subscribe(0)))
        .await
        .unwrap();
    deaf_send
        .write_all(&call(2, ClientRequest::SignedHeads))
        .await
        .unwrap();
    for (k, chunk) in common::digests("deaf", 0, 4_000).chunks(1_000).enumerate() {
        deaf_send
            .write_all(&call(3 + k as u64, ClientRequest::Submit(chunk.to_vec())))
            .await
            .unwrap();
    }

    // A client that floods Submit (and reads its answers).
    let flood = tokio::spawn({
        let ep = ep.clone();
        let info = info.clone();
        async move {
            let conn = raw(&ep, &info, CLIENT_ALPN, None).await.unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let reader = tokio::spawn(async move {
                let (mut limited, mut answers) = (0, 0);
                while let Some(m) = read_one(&mut recv).await {
                    if let ClientMessage::Answer { response, .. } = m {
                        answers += 1;
                        if matches!(
                            response,
                            ClientResponse::Error(belfry_wire::ClientError::ClientLimit { .. })
                        ) {
                            limited += 1;
                        }
                    }
                    if answers == 40 {
                        break;
                    }
                }
                limited
            });
            for k in 0..40usize {
                let ds = common::digests("flood", k * 4_096, 4_096);
                if send
                    .write_all(&call(k as u64, ClientRequest::Submit(ds)))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            let limited = tokio::time::timeout(Duration::from_secs(60), reader)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            conn.close(0u32.into(), b"done");
            limited
        }
    });

    // Meanwhile the honest client is served, by every replica.
    for round in 0..4 {
        let ds = common::digests("honest", round * 100, 100);
        let receipts = match honest.stamp(&ds).await {
            Ok(r) => r,
            Err(e) => {
                for (i, n) in cluster.nodes.iter().enumerate() {
                    let n = n.as_ref().unwrap();
                    eprintln!(
                        "node {i}: round {} log {} signed {} pending {} outstanding {} inputs {} turns {}",
                        metric(n, "belfry_round"),
                        metric(n, "belfry_log_size"),
                        metric(n, "belfry_signed_size"),
                        metric(n, "belfry_pending_digests"),
                        metric(n, "belfry_client_outstanding"),
                        metric(n, "belfry_inputs_total"),
                        metric(n, "belfry_turns_total"),
                    );
                }
                panic!("{e}");
            }
        };
        for r in &receipts {
            verify_receipt(r, &honest.anchor()).unwrap();
        }
        let one = honest.receipts(0, &ds).await.unwrap();
        assert_eq!(one.len(), ds.len(), "replica 0 itself proves every receipt");
    }
    let limited = flood.await.unwrap();
    assert!(limited > 0, "the flood met the per-client limit");

    // The deaf client is cut off once its queue fills. How much the
    // replica has produced for it by now depends on how fast the machine
    // ordered the flood, so the honest client goes on stamping (every
    // entry is pushed to the deaf subscriber too) until it is: the bound
    // is on the queue, not on time.
    let mut more = 0;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(1), deaf.closed()).await {
            Ok(end) => break Some(end),
            Err(_) if more < 120 => {
                let ds = common::digests("more", more * 100, 100);
                honest.stamp(&ds).await.unwrap();
                more += 1;
            }
            Err(_) => break None,
        }
    };
    let too_slow = metric(target, "belfry_refused_total{reason=\"client_too_slow\"}");
    match closed {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, close::TOO_SLOW.into())
        }
        // The replica's CONNECTION_CLOSE is one datagram, sent once to a
        // client that sends nothing (QUIC repeats it only in answer to a
        // packet): on a loaded machine the socket may drop it, and the
        // client then learns of the end by its idle timeout. The replica
        // keeps a live client's connection up with keep-alives, so the
        // timeout means the replica ended it; its count says why.
        Some(quinn::ConnectionError::TimedOut) if too_slow >= 1.0 => {}
        other => panic!(
            "the deaf client was not disconnected after {more} more stamps: {other:?}; \
             clients cut off as too slow {too_slow}; client queue high-water mark {} bytes",
            metric(target, "belfry_client_queue_bytes_max")
        ),
    }

    // Bounds, as high-water marks over the whole attack. The core kept at
    // most the per-client limit for each of the three clients that
    // submitted (honest, deaf, flood); every queue stayed within its
    // budget (plus one frame, which an empty queue always takes).
    let max_outstanding = metric(target, "belfry_client_outstanding_max");
    let max_client_input = metric(target, "belfry_queue_bytes_max{queue=\"client-input\"}");
    let max_client_queue = metric(target, "belfry_client_queue_bytes_max");
    assert!(
        max_outstanding > 0.0 && max_outstanding <= (3 * PER_CLIENT) as f64,
        "{max_outstanding}"
    );
    assert!(
        max_client_input <= CLIENT_INPUT_BYTES as f64,
        "{max_client_input}"
    );
    let frame = belfry_replica::broadcast::config::MAX_FRAME_BYTES as f64;
    assert!(
        max_client_queue <= CLIENT_QUEUE_BYTES as f64 + frame,
        "{max_client_queue}"
    );
    for p in 1..4 {
        let q = metric(
            target,
            &format!("belfry_queue_bytes_max{{queue=\"peer-{p}\"}}"),
        );
        assert!(q <= belfry_node::node::PEER_QUEUE_BYTES as f64 + frame);
    }
    assert!(metric(target, "belfry_bad_frames_total{reason=\"bad_header\"}") >= 1.0);
    assert!(metric(target, "belfry_bad_frames_total{reason=\"too_large\"}") >= 1.0);
    assert!(metric(target, "belfry_bad_frames_total{reason=\"half_frame\"}") >= 1.0);
    assert!(metric(target, "belfry_refused_total{reason=\"client_too_slow\"}") >= 1.0);
    // The whole process (four replicas and the clients): the attack's
    // share of memory is bounded by the budgets — per connection two
    // queues of 32 KiB and QUIC windows of 4 + 4 MiB, times 16
    // connections, plus 4 + 16 MiB of input budgets: under 160 MiB.
    let growth = rss_bytes().saturating_sub(rss_before);
    assert!(
        growth < 160 * 1024 * 1024,
        "resident memory grew by {} MiB",
        growth / (1024 * 1024)
    );
    eprintln!(
        "resident memory growth during the attack: {} MiB; high-water marks: client-input {} B, one client's queue {} B, outstanding digests {}",
        growth / (1024 * 1024),
        max_client_input,
        max_client_queue,
        max_outstanding
    );
    cluster.shutdown().await;
}

async fn read_one(recv: &mut quinn::RecvStream) -> Option<ClientMessage> {
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(30), recv.read_exact(&mut header))
        .await
        .ok()?
        .ok()?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut frame = vec![0u8; 5 + len];
    frame[..5].copy_from_slice(&header);
    recv.read_exact(&mut frame[5..]).await.ok()?;
    decode_message(&frame).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_gets_an_answer_that_says_why_before_its_stream_ends() {
    belfry_node::init_tracing();
    let cluster = common::start(4, 3, options).await;
    let info = cluster.info.clone();
    let ep = endpoint();
    let conn = raw(&ep, &info, CLIENT_ALPN, None).await.unwrap();
    for (bytes, says) in [
        (&[0xffu8; 64][..], "bad_header"),
        (&[2, 0xff, 0xff, 0xff, 0xff, 0][..], "too_large"),
        (&[1, 0, 0, 0, 3, 0, 0, 0][..], "wrong_version"),
    ] {
        let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(10), conn.open_bi())
            .await
            .unwrap()
            .unwrap();
        let _ = send.write_all(bytes).await;
        match read_one(&mut recv).await {
            Some(ClientMessage::Answer {
                id: 0,
                response: ClientResponse::Error(belfry_wire::ClientError::BadRequest(text)),
            }) => assert!(text.contains(says), "{text}"),
            other => panic!("{says}: {other:?}"),
        }
        // Then the stream ends, and the client's side was stopped.
        let mut rest = [0u8; 1];
        assert!(matches!(recv.read(&mut rest).await, Ok(None)));
        let code = tokio::time::timeout(Duration::from_secs(10), send.stopped())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, Some(close::BAD_FRAME.into()));
    }
    cluster.shutdown().await;
}
