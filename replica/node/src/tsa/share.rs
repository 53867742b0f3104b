//! The share protocol between replicas (docs/rfc3161.md §5): the request a
//! combining replica signs and sends, the answer a peer computes — after
//! checking who asks, the receipt against the trust anchor and this
//! cluster, and that the receipt's entry is the request's log digest — and
//! a bounded cache of answers, so a request sent again costs a lookup.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use belfry_replica::timestamp::{verify_receipt, Entry, Receipt};
use belfry_tsa::SignatureShare;
use num_bigint::BigUint;
use sha2::{Digest, Sha256};

use super::State;

/// The magic of share requests (v2: signed by the asking replica) and
/// answers.
const REQUEST_MAGIC: &[u8; 4] = b"BTS2";
const ANSWER_MAGIC: &[u8; 4] = b"BTS1";
/// Answers kept for requests sent again.
const CACHED_ANSWERS: usize = 4_096;

/// `BTS2 ‖ from u16 ‖ len u32 ‖ TimeStampReq ‖ len u32 ‖ receipt ‖ len u16 ‖
/// signature`, the signature by `from`'s TLS key over everything before it.
pub(super) fn request_body(
    state: &State,
    request_der: &[u8],
    receipt: &[u8],
) -> Result<Vec<u8>, String> {
    let mut body = REQUEST_MAGIC.to_vec();
    body.extend_from_slice(&(state.id as u16).to_be_bytes());
    body.extend_from_slice(&(request_der.len() as u32).to_be_bytes());
    body.extend_from_slice(request_der);
    body.extend_from_slice(&(receipt.len() as u32).to_be_bytes());
    body.extend_from_slice(receipt);
    let sig = state.auth.sign(&body)?;
    body.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    body.extend_from_slice(&sig);
    Ok(body)
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if b.len() < n {
        return Err("truncated".into());
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn u16_of(b: &mut &[u8]) -> Result<usize, String> {
    let x = take(b, 2)?;
    Ok(usize::from(u16::from_be_bytes([x[0], x[1]])))
}

fn u32_of(b: &mut &[u8]) -> Result<usize, String> {
    let x = take(b, 4)?;
    Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
}

/// Answers by request, and the requests in the order they came.
type Answers = (BTreeMap<[u8; 32], Vec<u8>>, VecDeque<[u8; 32]>);

/// Answers answered already, oldest first out.
#[derive(Default)]
pub struct AnswerCache {
    inner: Mutex<Answers>,
}

impl AnswerCache {
    fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(key).cloned()
    }

    fn put(&self, key: [u8; 32], answer: Vec<u8>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0.insert(key, answer).is_none() {
            inner.1.push_back(key);
        }
        while inner.1.len() > CACHED_ANSWERS {
            if let Some(old) = inner.1.pop_front() {
                inner.0.remove(&old);
            }
        }
    }
}

/// A peer's request for this replica's share: the answer, or an HTTP
/// status and a line of text.
pub(super) async fn answer(state: &State, body: &[u8]) -> Result<Vec<u8>, (u16, String)> {
    let bad = |m: String| (400u16, m);
    let mut rest = body
        .strip_prefix(REQUEST_MAGIC.as_slice())
        .ok_or_else(|| bad("not a share request".into()))?;
    let from = u16_of(&mut rest).map_err(bad)?;
    let len = u32_of(&mut rest).map_err(bad)?;
    let request_der = take(&mut rest, len).map_err(bad)?;
    let len = u32_of(&mut rest).map_err(bad)?;
    let receipt_bytes = take(&mut rest, len).map_err(bad)?;
    let signed_len = body.len() - rest.len();
    let len = u16_of(&mut rest).map_err(bad)?;
    let sig = take(&mut rest, len).map_err(bad)?;
    if !rest.is_empty() || from == state.id || !state.auth.verify(from, &body[..signed_len], sig) {
        return Err((
            403,
            "share requests are taken from the other replicas only".into(),
        ));
    }
    let key: [u8; 32] = Sha256::new()
        .chain_update(request_der)
        .chain_update(receipt_bytes)
        .finalize()
        .into();
    if let Some(cached) = state.shares.get(&key) {
        return Ok(cached);
    }
    let Some(_slot) = state.auth.slot(from) else {
        return Err((
            503,
            format!("replica {from} has its share requests in flight here"),
        ));
    };
    let Ok(_queued) = state.signing_queue.clone().try_acquire_owned() else {
        return Err((503, "busy signing; try later".into()));
    };
    let authority = state.cluster.authority.clone();
    let request = authority
        .request(request_der)
        .map_err(|r| bad(format!("request: {}", r.text)))?;
    let receipt = Receipt::from_binary(receipt_bytes).map_err(|e| bad(format!("receipt: {e}")))?;
    if receipt.cluster != state.params {
        return Err(bad("a receipt of another cluster".into()));
    }
    let _running = state
        .signing
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| (503, e.to_string()))?;
    let anchor = state.anchor;
    let share = state.node.share.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let verified = verify_receipt(&receipt, &anchor).map_err(|e| format!("receipt: {e}"))?;
        let Entry::Digest(entry) = verified.entry else {
            return Err("the receipt is not of a digest entry".into());
        };
        if entry.digest != request.log_digest() {
            return Err("the receipt is of another digest than the request's".into());
        }
        let prepared = authority
            .prepare(&request, verified.leaf_index, entry.witnessed_at.0)
            .map_err(|r| r.text)?;
        let share = share
            .sign(&prepared.message, &mut rand::rngs::OsRng)
            .map_err(|e| e.to_string())?;
        Ok(encode(&share))
    })
    .await
    .map_err(|e| (503, e.to_string()))?
    .map_err(bad)?;
    state.metrics.tsa_shares_signed.inc();
    state.shares.put(key, answer.clone());
    Ok(answer)
}

/// `BTS1 ‖ replica u16 ‖ len u16 ‖ value ‖ challenge[16] ‖ len u16 ‖ z`.
pub fn encode(s: &SignatureShare) -> Vec<u8> {
    let value = s.value.to_bytes_be();
    let z = s.z.to_bytes_be();
    let mut out = ANSWER_MAGIC.to_vec();
    out.extend_from_slice(&(s.replica as u16).to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    out.extend_from_slice(&s.challenge);
    out.extend_from_slice(&(z.len() as u16).to_be_bytes());
    out.extend_from_slice(&z);
    out
}

/// Reads an answer.
pub fn decode(b: &[u8]) -> Result<SignatureShare, String> {
    let mut b = b
        .strip_prefix(ANSWER_MAGIC.as_slice())
        .ok_or("not a share")?;
    let replica = u16_of(&mut b)?;
    let len = u16_of(&mut b)?;
    let value = BigUint::from_bytes_be(take(&mut b, len)?);
    let mut challenge = [0u8; 16];
    challenge.copy_from_slice(take(&mut b, 16)?);
    let len = u16_of(&mut b)?;
    let z = BigUint::from_bytes_be(take(&mut b, len)?);
    if !b.is_empty() {
        return Err("bytes after the share".into());
    }
    Ok(SignatureShare {
        replica,
        value,
        challenge,
        z,
    })
}
