//! `belfry-bench tsa`: the RFC 3161 authority (docs/rfc3161.md). First the
//! threshold RSA operations alone, per key size — dealing (two safe primes),
//! one signature share with its proof, combining `f + 1` shares, checking a
//! share's proof, verifying a token; then a real cluster — four `belfry
//! node`s from `belfry keygen --tsa-bits 2048` — under a closed-loop load of
//! `concurrency` requests in flight spread over the four endpoints, every
//! token verified here: tokens/s, request→token latency (HdrHistogram), and
//! the replicas' CPU per token.

use crate::chaos::{start_cluster_with, Procs};
use crate::idle::cpu_seconds;
use anyhow::{bail, Context};
use belfry_tsa::asn1::{MessageImprint, TimeStampReq};
use belfry_tsa::{token, Authority, SignatureShare};
use der::asn1::{Int, OctetString};
use der::Encode;
use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use spki::AlgorithmIdentifierOwned;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One key size's operation costs.
#[derive(Clone, Debug, Serialize)]
pub struct KeyCosts {
    /// Modulus bits.
    pub bits: u32,
    /// Dealing: two safe primes and the shares (one run; it varies a lot).
    pub deal_s: f64,
    /// One share with its proof, mean ms.
    pub share_ms: f64,
    /// Combining f + 1 = 2 shares and checking `y^e = x`, mean ms.
    pub combine_ms: f64,
    /// Checking one share's proof, mean ms.
    pub verify_share_ms: f64,
    /// Verifying one token (signature, attributes), mean ms.
    pub verify_token_ms: f64,
}

/// The cluster phase.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterFigures {
    /// Requests in flight.
    pub concurrency: usize,
    /// Seconds of load.
    pub duration_s: f64,
    /// Tokens granted and verified here.
    pub tokens: u64,
    /// Requests that failed or were rejected.
    pub failed: u64,
    /// Tokens per second, the cluster.
    pub tokens_per_s: f64,
    /// Request → verified token, ms.
    pub p50_ms: f64,
    /// Likewise.
    pub p99_ms: f64,
    /// Likewise.
    pub max_ms: f64,
    /// CPU seconds per second of the four replicas together.
    pub replicas_cpu: f64,
    /// CPU ms of the cluster per token.
    pub cpu_ms_per_token: f64,
    /// Shares the replicas computed per token (own + peers'; f + 1 = 2
    /// needed, the others answered after the token was done).
    pub shares_per_token: f64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct TsaBenchReport {
    /// Per key size.
    pub keys: Vec<KeyCosts>,
    /// The cluster under load.
    pub cluster: ClusterFigures,
}

fn mean_ms(iterations: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..iterations {
        f();
    }
    t.elapsed().as_secs_f64() * 1_000.0 / f64::from(iterations)
}

fn key_costs(bits: u32, iterations: u32) -> anyhow::Result<KeyCosts> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(bits));
    let t = Instant::now();
    let dealt = belfry_tsa::deal(&mut rng, bits, 4, 2, |_| {})?;
    let deal_s = t.elapsed().as_secs_f64();
    let (public, shares) = dealt.key_shares()?;
    let cert = belfry_tsa::cert::self_signed(&shares, "bench", [1; 16], 1_700_000_000, &mut rng)?;
    let authority = Authority::new(public.clone(), cert, token::DEFAULT_POLICY, 1_000_000)?;
    let der = request(&mut rng)?;
    let req = authority
        .request(&der)
        .map_err(|r| anyhow::anyhow!(r.text))?;
    let prepared = authority
        .prepare(&req, 1, 1_765_000_000_000_000)
        .map_err(|r| anyhow::anyhow!(r.text))?;
    let x = prepared.message.clone();
    let share_ms = mean_ms(iterations, || {
        let _ = shares[0].sign(&x, &mut rng);
    });
    let s: Vec<SignatureShare> = shares
        .iter()
        .map(|k| k.sign(&x, &mut rng))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&SignatureShare> = s.iter().take(2).collect();
    let mut y = None;
    let combine_ms = mean_ms(iterations, || {
        y = public.combine(&x, &refs).ok().flatten();
    });
    let y = y.context("shares did not combine")?;
    let verify_share_ms = mean_ms(iterations, || {
        let _ = public.verify_share(&x, &s[1]);
    });
    let resp = authority
        .response(&prepared, &y, true)
        .map_err(|r| anyhow::anyhow!(r.text))?;
    let verify_token_ms = mean_ms(iterations, || {
        let _ = token::verify(&resp, &authority);
    });
    token::verify(&resp, &authority)?;
    Ok(KeyCosts {
        bits,
        deal_s,
        share_ms,
        combine_ms,
        verify_share_ms,
        verify_token_ms,
    })
}

/// A DER TimeStampReq for a random imprint, with a random nonce and certReq.
fn request(rng: &mut impl RngCore) -> anyhow::Result<Vec<u8>> {
    let mut imprint = [0u8; 32];
    rng.fill_bytes(&mut imprint);
    let mut nonce = [0u8; 8];
    rng.fill_bytes(&mut nonce);
    nonce[0] &= 0x7f;
    nonce[0] |= 0x01;
    let req = TimeStampReq {
        version: 1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: token::SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(imprint.to_vec())?,
        },
        req_policy: None,
        nonce: Some(Int::new(&nonce)?),
        cert_req: true,
        extensions: None,
    };
    Ok(req.to_der()?)
}

/// Runs the benchmark in `dir` with the `belfry` binary.
pub fn run(
    belfry: &Path,
    dir: &Path,
    bits: &[u32],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<TsaBenchReport> {
    let mut keys = Vec::new();
    for &b in bits {
        eprintln!("belfry-bench tsa: {b}-bit key operations");
        keys.push(key_costs(b, 20)?);
    }
    eprintln!("belfry-bench tsa: a cluster of 4 with a 2048-bit authority, {concurrency} requests in flight");
    let tsa_ports = crate::chaos::free_tcp_ports(4)?;
    let hosts: Vec<String> = tsa_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let hosts = hosts.join(",");
    let (procs, cluster) = start_cluster_with(
        belfry,
        4,
        dir,
        &["--tsa-bits", "2048", "--tsa-hosts", &hosts],
    )?;
    if !procs.wait_joined(Duration::from_secs(60)) {
        bail!("the cluster did not start");
    }
    let authority = cluster
        .tsa
        .as_ref()
        .context("no [tsa] in the generated cluster")?
        .authority
        .clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Warm up: one token through each endpoint.
    runtime.block_on(async {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for port in &tsa_ports {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let der = request(&mut rng)?;
                if one(*port, &der, &authority).await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("endpoint {port} never granted a token");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        anyhow::Ok(())
    })?;
    let cluster_figures = load(
        &runtime,
        &procs,
        &tsa_ports,
        &authority,
        concurrency,
        duration,
    )?;
    Ok(TsaBenchReport {
        keys,
        cluster: cluster_figures,
    })
}

async fn one(port: u16, der: &[u8], authority: &Authority) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (status, body) = belfry_node::tsa::http::post(
        addr,
        "/",
        "application/timestamp-query",
        der,
        64 * 1024,
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    if status != 200 {
        bail!("HTTP {status}");
    }
    let req = authority
        .request(der)
        .map_err(|r| anyhow::anyhow!(r.text))?;
    let t = token::verify(&body, authority)?;
    token::check_imprint(&t, &req.imprint)?;
    Ok(())
}

fn load(
    runtime: &tokio::runtime::Runtime,
    procs: &Procs,
    ports: &[u16],
    authority: &Arc<Authority>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<ClusterFigures> {
    let pids = procs.pids();
    let cpu_before: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    let shares_before: f64 = (0..4)
        .filter_map(|i| procs.metric(i, "belfry_tsa_shares_signed_total"))
        .sum();
    let started = Instant::now();
    let deadline = started + duration;
    let results = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..concurrency {
            let port = ports[c % ports.len()];
            let authority = authority.clone();
            tasks.spawn(async move {
                let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1_000 + c as u64);
                let mut hist = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!(e))?;
                let mut failed = 0u64;
                while Instant::now() < deadline {
                    let der = request(&mut rng)?;
                    let t = Instant::now();
                    match one(port, &der, &authority).await {
                        Ok(()) => hist
                            .record(t.elapsed().as_micros() as u64)
                            .map_err(|e| anyhow::anyhow!(e))?,
                        Err(_) => failed += 1,
                    }
                }
                anyhow::Ok((hist, failed))
            });
        }
        let mut all = Histogram::<u64>::new(3).map_err(|e| anyhow::anyhow!(e))?;
        let mut failed = 0;
        while let Some(r) = tasks.join_next().await {
            let (h, f) = r??;
            all.add(h).map_err(|e| anyhow::anyhow!(e))?;
            failed += f;
        }
        anyhow::Ok((all, failed))
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after: f64 = pids.iter().filter_map(|p| cpu_seconds(*p)).sum();
    let shares_after: f64 = (0..4)
        .filter_map(|i| procs.metric(i, "belfry_tsa_shares_signed_total"))
        .sum();
    let (hist, failed) = results;
    let tokens = hist.len();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1_000.0;
    let cpu = cpu_after - cpu_before;
    Ok(ClusterFigures {
        concurrency,
        duration_s: elapsed,
        tokens,
        failed,
        tokens_per_s: tokens as f64 / elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: hist.max() as f64 / 1_000.0,
        replicas_cpu: cpu / elapsed,
        cpu_ms_per_token: if tokens > 0 {
            cpu * 1_000.0 / tokens as f64
        } else {
            0.0
        },
        shares_per_token: if tokens > 0 {
            (shares_after - shares_before) / tokens as f64
        } else {
            0.0
        },
    })
}

/// The report as a table.
pub fn table(r: &TsaBenchReport) -> String {
    let mut out =
        String::from("bits | deal s | share ms | combine ms | check share ms | verify token ms\n");
    for k in &r.keys {
        out += &format!(
            "{} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2}\n",
            k.bits, k.deal_s, k.share_ms, k.combine_ms, k.verify_share_ms, k.verify_token_ms
        );
    }
    let c = &r.cluster;
    out += &format!(
        "cluster of 4, 2048-bit, {} in flight: {:.1} tokens/s, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {} failed; replicas {:.2} cores, {:.1} CPU ms per token, {:.2} shares per token\n",
        c.concurrency, c.tokens_per_s, c.p50_ms, c.p99_ms, c.max_ms, c.failed, c.replicas_cpu, c.cpu_ms_per_token, c.shares_per_token
    );
    out
}
