//! What a chaos run watches while the faults happen: the load's stamps and
//! their receipts, and the ordered stream; and what it checks of them once
//! everything healed.

use super::*;
use belfry_replica::clock::{ClockSource, Micros, SystemClock};

/// The most findings of one kind kept while running (a fault that breaks
/// every receipt would otherwise fill the report).
const FINDINGS_MAX: usize = 20;

/// What the load and the stream recorded, shared with their tasks.
#[derive(Clone, Default)]
pub(super) struct Observed {
    /// Set when the load is to stop.
    pub(super) stop: Arc<AtomicBool>,
    /// Every digest acknowledged as stamped, at the index its receipt names.
    pub(super) acknowledged: Arc<Mutex<BTreeMap<[u8; 32], u64>>>,
    /// Stamp calls done, calls failed, and what was found wrong while
    /// running (receipts that do not verify, times from the future).
    pub(super) tally: Arc<Mutex<(u64, u64, Vec<String>)>>,
    /// The ordered stream's entries, from index 0.
    pub(super) streamed: Arc<Mutex<Vec<Entry>>>,
}

impl Observed {
    /// The load's stamp calls done and failed; its receipts that do not
    /// verify join `violations`.
    pub(super) fn stamps(&self, violations: &mut Vec<String>) -> (u64, u64) {
        let (done, failed, mut receipt_faults) = {
            let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            (t.0, t.1, t.2.clone())
        };
        violations.append(&mut receipt_faults);
        (done, failed)
    }

    /// The digests acknowledged so far, at their indices.
    pub(super) fn acknowledged(&self) -> BTreeMap<[u8; 32], u64> {
        self.acknowledged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The ordered stream's entries so far.
    pub(super) fn streamed(&self) -> Vec<Entry> {
        self.streamed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks `receipts`, which came back at true time `now`, against the
    /// anchor (a fault for each that does not verify) and against the
    /// clock, and acknowledges their digests.
    fn acknowledge(
        &self,
        receipts: Vec<Receipt>,
        now: Micros,
        anchor: &TrustAnchor,
        faults: &mut Vec<String>,
    ) {
        let mut ack = self.acknowledged.lock().unwrap_or_else(|e| e.into_inner());
        let mut latest = Micros::ZERO;
        for r in receipts {
            if let Err(e) = verify_receipt(&r, anchor) {
                faults.push(format!("a receipt does not verify: {e}"));
            }
            latest = latest.max(r.time);
            if let Entry::Digest(d) = r.entry {
                latest = latest.max(d.witnessed_at);
                ack.insert(d.digest, r.leaf_index);
            }
        }
        if let Some(finding) = from_the_future("a receipt", latest, now) {
            if faults.len() < FINDINGS_MAX {
                faults.push(finding);
            }
        }
    }
}

/// The load: stamp calls one after another until told to stop; every
/// receipt is checked against the anchor here too.
pub(super) async fn stamp_until_stopped(
    client: Client,
    seed: u64,
    anchor: TrustAnchor,
    obs: Observed,
) {
    let mut k = 0u64;
    while !obs.stop.load(Ordering::Relaxed) {
        let ds: Vec<[u8; 32]> = (0..PER_STAMP as u64)
            .map(|j| digest(seed, k * PER_STAMP as u64 + j))
            .collect();
        k += 1;
        match client.stamp(&ds).await {
            Ok(receipts) => {
                let now = SystemClock.now();
                let mut t = obs.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.0 += 1;
                obs.acknowledge(receipts, now, &anchor, &mut t.2);
            }
            Err(_) => obs.tally.lock().unwrap_or_else(|e| e.into_inner()).1 += 1,
        }
    }
}

/// The ordered stream, followed across every fault; a Tick whose time is
/// later than true time when it arrived is a finding.
pub(super) async fn follow_stream(client: Client, obs: Observed) {
    let mut sub = client.subscribe(0);
    while let Some((i, e)) = sub.next().await {
        let now = SystemClock.now();
        if let Entry::Tick(t) = &e {
            if let Some(finding) = from_the_future(&format!("the Tick at {i}"), t.time, now) {
                let mut t = obs.tally.lock().unwrap_or_else(|e| e.into_inner());
                if t.2.len() < FINDINGS_MAX {
                    t.2.push(finding);
                }
            }
        }
        let mut s = obs.streamed.lock().unwrap_or_else(|e| e.into_inner());
        if i == s.len() as u64 {
            s.push(e);
        }
    }
}

/// A time agreed by the cluster is bracketed by honest clocks (design
/// §3.6: the lower median of at least 2f + 1 readings, at most f of them
/// faked), and every honest replica reads the clock the checker reads, so
/// nothing agreed can be later than the checker's clock when it saw it.
fn from_the_future(what: &str, agreed: Micros, now: Micros) -> Option<String> {
    (agreed > now).then(|| {
        format!(
            "{what} carries time {agreed} µs, {} ms later than true time when it arrived",
            agreed.saturating_sub(now).as_millis_f64()
        )
    })
}

/// After the last heal: how long until a stamp completes (none within
/// [`LIVE_AGAIN`]: `None`); then waits for the load's last call.
pub(super) async fn live_again(
    client: &Client,
    seed: u64,
    healed: Instant,
    load: tokio::task::JoinHandle<()>,
    obs: &Observed,
    violations: &mut Vec<String>,
) -> Option<u64> {
    let anchor = client.anchor();
    let ds: Vec<[u8; 32]> = (0..20).map(|j| digest(seed ^ 0x5eed, j)).collect();
    let mut done = None;
    while done.is_none() && healed.elapsed() < LIVE_AGAIN {
        if let Ok(receipts) = client.stamp(&ds).await {
            obs.acknowledge(receipts, SystemClock.now(), &anchor, violations);
            done = Some(healed.elapsed().as_millis() as u64);
        }
    }
    // The load's last call ends within its own timeout.
    let _ = tokio::time::timeout(Duration::from_secs(30), load).await;
    done
}

/// Every acknowledged digest is in the log exactly once, at the index its
/// receipt names.
pub(super) fn check_acknowledged(
    acknowledged: &BTreeMap<[u8; 32], u64>,
    log: &BTreeMap<[u8; 32], Vec<u64>>,
    violations: &mut Vec<String>,
) {
    for (d, index) in acknowledged {
        match log.get(d) {
            Some(at) if at.len() == 1 && at[0] == *index => {}
            Some(at) => violations.push(format!(
                "digest {} acknowledged at index {index} is logged at {at:?}",
                hex::encode(d)
            )),
            None => violations.push(format!(
                "digest {} acknowledged at index {index} is not in the log",
                hex::encode(d)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_time_after_true_time_is_from_the_future() {
        let now = Micros::from_secs(1_000);
        assert_eq!(from_the_future("x", now, now), None);
        assert_eq!(from_the_future("x", Micros::from_secs(990), now), None);
        let finding = from_the_future("the Tick at 7", Micros::from_millis(1_000_250), now);
        assert!(finding.unwrap().contains("250 ms later"));
    }
}
