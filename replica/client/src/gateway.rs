//! A client of an aggregation gateway (docs/gateway.md): the same calls as
//! to a replica (`Submit`, `Receipts`), answered with aggregated receipts —
//! each digest's path to its round's root and the receipt of that root —
//! verified here against the cluster's trust anchor before they are given
//! out. Nothing the gateway says is trusted beyond that; its certificate
//! need not be pinned ([`crate::tls::Unpinned`]).
//!
//! [`GatewayClient::stamp`] submits, waits for the round's push, polls for
//! receipts whose push was lost, resubmits after a lost connection or a
//! refusal (`Backpressure`, `ClientLimit`: the gateway is full, so the
//! client slows down), and times out as [`crate::Client::stamp`] does.

use crate::session::Session;
use crate::{tls, ClientOptions, Error, HeadCache, VerifyError, MAX_DIGESTS_PER_SUBMIT};
use belfry_timestamp::aggregate::receipts_from_range;
use belfry_timestamp::coin::{ClusterParams, TrustAnchor};
use belfry_timestamp::{AggregatedReceipt, AnyReceipt};
use belfry_wire::{
    AggregatedBundle, ClientPush, ClientRequest, ClientResponse, MAX_RECEIPTS_PER_ANSWER,
};
use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A gateway's address and, optionally, its pinned certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayEndpoint {
    /// Where it listens (QUIC).
    pub address: SocketAddr,
    /// Its certificate (DER), if pinned.
    pub certificate: Option<CertificateDer<'static>>,
}

/// Quiet retry ticks (no receipt came) after which a stamp submits what is
/// missing again.
pub const STALL_TICKS: u32 = 3;

struct Inner {
    params: ClusterParams,
    anchor: TrustAnchor,
    options: ClientOptions,
    cache: HeadCache,
    session: Session,
}

/// A client of one gateway (cheap to clone).
#[derive(Clone)]
pub struct GatewayClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GatewayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayClient").finish_non_exhaustive()
    }
}

enum Event {
    Refused,
    Lost,
    Bundle(AggregatedBundle),
}

/// The digests of one stamp and the receipts got so far, by position.
struct Book {
    /// Digest → its first position in the stamp's input. Looked up, never
    /// iterated: the hash order reaches no output.
    #[allow(clippy::disallowed_types)]
    at: std::collections::HashMap<[u8; 32], usize>,
    got: Vec<Option<AggregatedReceipt>>,
    missing: usize,
}

impl Book {
    #[allow(clippy::disallowed_types)]
    fn new(digests: &[[u8; 32]]) -> Self {
        let mut at = std::collections::HashMap::with_capacity(digests.len());
        for (i, d) in digests.iter().enumerate() {
            at.entry(*d).or_insert(i);
        }
        let missing = at.len();
        Book {
            got: (0..digests.len()).map(|_| None).collect(),
            at,
            missing,
        }
    }

    /// Keeps `r` if its digest is wanted and still missing.
    fn take(&mut self, r: AggregatedReceipt) -> bool {
        match self.at.get(&r.digest) {
            Some(&i) if self.got[i].is_none() => {
                self.got[i] = Some(r);
                self.missing -= 1;
                true
            }
            _ => false,
        }
    }

    /// The digests without a receipt yet, in input order.
    #[allow(clippy::disallowed_types)]
    fn missing(&self) -> Vec<[u8; 32]> {
        self.at
            .iter()
            .filter(|(_, &i)| self.got[i].is_none())
            .map(|(d, &i)| (i, *d))
            .collect::<BTreeMap<usize, [u8; 32]>>()
            .into_values()
            .collect()
    }

    /// A receipt for every input position (a digest given twice gets a copy).
    fn into_receipts(mut self, digests: &[[u8; 32]]) -> Vec<AggregatedReceipt> {
        let mut out = Vec::with_capacity(digests.len());
        for (i, d) in digests.iter().enumerate() {
            match self.at.get(d) {
                Some(&first) if first == i => {
                    if let Some(r) = self.got[i].take() {
                        // Later copies read it back from `out`.
                        out.push(r);
                    }
                }
                // Every earlier position has its receipt in `out` (the
                // stamp ends only when none is missing), so `first` indexes it.
                Some(&first) => {
                    if let Some(r) = out.get(first).cloned() {
                        out.push(r);
                    }
                }
                None => {}
            }
        }
        out
    }
}

/// Why an aggregated bundle was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The root's receipt does not parse, or is for another cluster.
    #[error("the round root's receipt: {0}")]
    Upper(String),
    /// The root's receipt does not verify.
    #[error("the round root's receipt does not verify: {0}")]
    Verify(#[from] VerifyError),
    /// A range does not lead to the root.
    #[error("a range of digests: {0}")]
    Range(#[from] belfry_timestamp::ReceiptError),
}

impl GatewayClient {
    /// A client of the gateway at `gateway`, whose receipts must verify
    /// against `params`' group key (within a tokio runtime; connects on
    /// first use). `options.fanout` and `first_replica` do not apply.
    pub fn new(
        gateway: GatewayEndpoint,
        params: ClusterParams,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let bind: SocketAddr = match gateway.address {
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        };
        let endpoint = quinn::Endpoint::client(bind)?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(options.keep_alive));
        if let Ok(idle) = options.idle_timeout.try_into() {
            transport.max_idle_timeout(Some(idle));
        }
        let crypto = match gateway.certificate {
            Some(cert) => tls::client_config(cert, None, belfry_wire::CLIENT_ALPN)?,
            None => tls::client_config_unpinned(belfry_wire::CLIENT_ALPN)?,
        };
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(transport));
        let session = Session::new(
            0,
            gateway.address,
            endpoint,
            config,
            options.request_timeout,
        );
        Ok(GatewayClient {
            inner: Arc::new(Inner {
                anchor: TrustAnchor(params.group_public_key),
                params,
                options,
                cache: HeadCache::new(),
                session,
            }),
        })
    }

    /// The head cache (its pairing count: one per distinct signed head).
    pub fn head_cache(&self) -> &HeadCache {
        &self.inner.cache
    }

    /// Submits `digests` through the gateway and returns a verified
    /// aggregated receipt for each, in the order given.
    pub async fn stamp(&self, digests: &[[u8; 32]]) -> Result<Vec<AggregatedReceipt>, Error> {
        let mut book = Book::new(digests);
        let (events_tx, mut events) = mpsc::channel(1_024);
        let deadline = tokio::time::Instant::now() + self.inner.options.stamp_timeout;
        let mut tick = tokio::time::interval(self.inner.options.retry_interval);
        let mut needs_submit = true;
        let mut again = false;
        let mut answered = false;
        // Ticks since a bundle last brought a receipt: a push comes per
        // round, so a poll is only for a push that did not come, and after
        // STALL_TICKS quiet ticks the rest is submitted again (a gateway
        // that restarted, or forgot a round).
        let mut quiet = 0u32;
        loop {
            if book.missing == 0 {
                break;
            }
            if std::mem::take(&mut needs_submit) {
                self.spawn_submit(book.missing(), events_tx.clone());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout {
                        answered: usize::from(answered),
                        asked: 1,
                        missing: book.missing,
                    });
                }
                Some(e) = events.recv() => match e {
                    // Submitted again at the next tick (not at once: a
                    // gateway that refuses at once must not make us spin).
                    Event::Refused | Event::Lost => again = true,
                    Event::Bundle(bundle) => {
                        answered = true;
                        match self.absorb(&bundle, &mut book) {
                            Ok(0) => {}
                            Ok(_) => quiet = 0,
                            Err(error) => {
                                tracing::warn!(%error, "an aggregated bundle does not verify");
                            }
                        }
                    }
                },
                _ = tick.tick() => {
                    quiet += 1;
                    if std::mem::take(&mut again) || !self.inner.session.is_connected() || quiet > STALL_TICKS {
                        needs_submit = true;
                        quiet = 0;
                    } else if quiet > 1 {
                        self.spawn_poll(book.missing(), events_tx.clone());
                    }
                }
            }
        }
        Ok(book.into_receipts(digests))
    }

    /// Verifies a bundle and keeps the receipts of wanted digests; the
    /// number taken.
    fn absorb(&self, bundle: &AggregatedBundle, book: &mut Book) -> Result<usize, BundleError> {
        let receipts = verify_bundle(
            &self.inner.cache,
            &self.inner.params,
            &self.inner.anchor,
            bundle,
        )?;
        let mut taken = 0;
        for r in receipts {
            if book.take(r) {
                taken += 1;
            }
        }
        Ok(taken)
    }

    fn spawn_submit(&self, digests: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            let session = &client.inner.session;
            let mut streams = Vec::new();
            for chunk in digests.chunks(MAX_DIGESTS_PER_SUBMIT) {
                match session
                    .call_with_pushes(ClientRequest::Submit(chunk.to_vec()))
                    .await
                {
                    Ok((ClientResponse::Accepted { .. }, pushes)) => streams.push(pushes),
                    Ok((ClientResponse::Error(error), pushes)) => {
                        // Full: what was taken is still pushed; the rest is
                        // submitted again at the next tick.
                        tracing::debug!(%error, "submission refused by the gateway");
                        let _ = events.send(Event::Refused).await;
                        streams.push(pushes);
                    }
                    Ok(_) | Err(_) => {
                        let _ = events.send(Event::Lost).await;
                        return;
                    }
                }
            }
            let pick = |p| match p {
                ClientPush::Aggregated(bundle) => Some(Event::Bundle(bundle)),
                _ => None,
            };
            if crate::session::forward_pushes(streams, events.clone(), pick).await {
                let _ = events.send(Event::Lost).await;
            }
        });
    }

    fn spawn_poll(&self, missing: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            for chunk in missing.chunks(MAX_RECEIPTS_PER_ANSWER) {
                match client
                    .inner
                    .session
                    .call(ClientRequest::Receipts(chunk.to_vec()))
                    .await
                {
                    Ok(ClientResponse::Aggregated(bundles)) => {
                        for b in bundles {
                            if events.send(Event::Bundle(b)).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ => return,
                }
            }
        });
    }

    /// Verified aggregated receipts of the digests the gateway can prove
    /// now (the rest are left out).
    pub async fn receipts(&self, digests: &[[u8; 32]]) -> Result<Vec<AggregatedReceipt>, Error> {
        let mut out = Vec::new();
        for chunk in digests.chunks(MAX_RECEIPTS_PER_ANSWER) {
            match self
                .inner
                .session
                .call(ClientRequest::Receipts(chunk.to_vec()))
                .await?
            {
                ClientResponse::Aggregated(bundles) => {
                    for b in &bundles {
                        out.extend(
                            verify_bundle(
                                &self.inner.cache,
                                &self.inner.params,
                                &self.inner.anchor,
                                b,
                            )
                            .map_err(|e| Error::Protocol(format!("gateway: {e}")))?,
                        );
                    }
                }
                ClientResponse::Error(error) => return Err(Error::Replica { replica: 0, error }),
                other => {
                    return Err(Error::Protocol(format!(
                        "gateway: unexpected answer {other:?}"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// Verifies one aggregated bundle against the anchor — the round root's
/// receipt once (its signed head through `cache`), then each range's proof
/// against that root — and returns each digest's aggregated receipt.
pub fn verify_bundle(
    cache: &HeadCache,
    params: &ClusterParams,
    anchor: &TrustAnchor,
    bundle: &AggregatedBundle,
) -> Result<Vec<AggregatedReceipt>, BundleError> {
    let upper =
        AnyReceipt::from_binary(&bundle.upper).map_err(|e| BundleError::Upper(e.to_string()))?;
    let cluster = upper.cluster_receipt();
    if cluster.cluster != *params {
        return Err(BundleError::Upper(
            "a receipt of another cluster (or another description of it)".to_string(),
        ));
    }
    if let AnyReceipt::Aggregated(a) = &upper {
        // The upstream chain must lead to what the cluster logged.
        let top = a.top()?;
        if !matches!(cluster.entry, belfry_timestamp::Entry::Digest(d) if d.digest == top) {
            return Err(BundleError::Range(
                belfry_timestamp::ReceiptError::AggregationNotLogged,
            ));
        }
    }
    cache.verify_receipt(anchor, cluster)?;
    let mut out = Vec::new();
    for range in &bundle.ranges {
        out.extend(receipts_from_range(
            &upper,
            bundle.tree_size,
            range.first,
            &range.digests,
            &range.proof,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real aggregated receipt (the first positive vector) given the
    /// digest `d` (it does not verify then; the book does not verify).
    fn receipt(d: u8) -> AggregatedReceipt {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../../testdata/vectors/aggregated.json"))
                .expect("vectors parse");
        let hex = v["positive"][0]["binary_hex"].as_str().expect("binary");
        let mut r = AggregatedReceipt::from_binary(&hex::decode(hex).expect("hex")).expect("reads");
        r.digest = [d; 32];
        r
    }

    #[test]
    fn a_stamp_book_keeps_one_receipt_per_wanted_digest_and_repeats_duplicates() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut book = Book::new(&[a, b, a]);
        assert_eq!(book.missing, 2);
        assert_eq!(book.missing(), vec![a, b]);
        assert!(book.take(receipt(1)));
        assert!(!book.take(receipt(1)), "a second receipt of a is not taken");
        assert!(!book.take(receipt(3)), "an unasked digest is not taken");
        assert_eq!(book.missing(), vec![b]);
        assert!(book.take(receipt(2)));
        assert_eq!(book.missing, 0);
        let out = book.into_receipts(&[a, b, a]);
        let digests: Vec<[u8; 32]> = out.iter().map(|r| r.digest).collect();
        assert_eq!(digests, vec![a, b, a]);
    }
}
