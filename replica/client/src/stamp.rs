//! [`Client::stamp`]: digests submitted to the replicas the fanout picks,
//! the first receipt that verifies taken for each, resubmission after a
//! lost connection, failover to more replicas, polls for receipts whose
//! push was lost, and a timeout that says how many replicas answered.

use super::*;

/// What the tasks of one `stamp` call report.
pub(crate) enum Event {
    Acked(usize),
    Refused(usize),
    Lost(usize),
    Bundle(usize, ReceiptBundle),
}

impl Client {
    /// Submits `digests` and returns a verified receipt for each, in the
    /// order given (see the crate documentation).
    pub async fn stamp(&self, digests: &[[u8; 32]]) -> Result<Vec<Receipt>, Error> {
        if self.present().is_empty() {
            return Err(Error::Protocol("a cluster without replicas".to_string()));
        }
        let wanted: BTreeSet<[u8; 32]> = digests.iter().copied().collect();
        // Wait in line (first come, first served) for room: the replicas
        // take only so many unlogged digests from one connection. A call
        // larger than the whole room takes all of it.
        let room = self
            .inner
            .options
            .max_in_flight_digests
            .clamp(1, u32::MAX as usize);
        let _permit = self
            .inner
            .in_flight
            .acquire_many(wanted.len().clamp(1, room) as u32)
            .await
            .map_err(|_| Error::Protocol("the client is closed".to_string()))?;
        let mut got: BTreeMap<[u8; 32], Receipt> = BTreeMap::new();
        let (events_tx, mut events) = mpsc::channel(1_024);
        let mut asked: Vec<usize> = self.targets();
        let mut answered = BTreeSet::new();
        let mut needs_submit: BTreeSet<usize> = asked.iter().copied().collect();
        let mut lost: BTreeSet<usize> = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + self.inner.options.stamp_timeout;
        let mut tick = tokio::time::interval(self.inner.options.retry_interval);
        let mut progressed = true;
        let mut poll_next = 0usize;
        loop {
            if got.len() == wanted.len() {
                break;
            }
            for r in std::mem::take(&mut needs_submit) {
                let todo: Vec<[u8; 32]> = wanted
                    .iter()
                    .filter(|d| !got.contains_key(*d))
                    .copied()
                    .collect();
                self.spawn_submit(r, todo, events_tx.clone());
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout {
                        answered: answered.len(),
                        asked: asked.len(),
                        missing: wanted.len() - got.len(),
                    });
                }
                Some(e) = events.recv() => match e {
                    Event::Acked(r) => { answered.insert(r); }
                    // Resubmitted at the next tick (not at once: a replica
                    // that fails at once must not make us spin).
                    Event::Refused(r) | Event::Lost(r) => { lost.insert(r); }
                    Event::Bundle(r, bundle) => {
                        if self.absorb(r, &bundle, &wanted, &mut got) {
                            progressed = true;
                        }
                    }
                },
                _ = tick.tick() => {
                    // Lost pushes, lost connections, silent replicas: poll
                    // for receipts, resubmit, and fail over.
                    let missing: Vec<[u8; 32]> = wanted.iter().filter(|d| !got.contains_key(*d)).copied().collect();
                    if missing.is_empty() { continue; }
                    let r = asked[poll_next % asked.len()];
                    poll_next += 1;
                    self.spawn_poll(r, missing, events_tx.clone());
                    needs_submit.append(&mut lost);
                    for &r in &asked {
                        if !self.inner.sessions[r].as_ref().is_some_and(Session::is_connected) {
                            needs_submit.insert(r);
                        }
                    }
                    if !progressed {
                        if let Some(extra) = self.present().into_iter().find(|r| !asked.contains(r)) {
                            tracing::debug!(replica = extra, "failing over to another replica");
                            asked.push(extra);
                            needs_submit.insert(extra);
                        }
                    }
                    progressed = false;
                }
            }
        }
        Ok(digests.iter().filter_map(|d| got.get(d).cloned()).collect())
    }

    fn absorb(
        &self,
        replica: usize,
        bundle: &ReceiptBundle,
        wanted: &BTreeSet<[u8; 32]>,
        got: &mut BTreeMap<[u8; 32], Receipt>,
    ) -> bool {
        let inner = &self.inner;
        match inner
            .cache
            .verify_bundle(&inner.cluster.params, &inner.anchor, bundle)
        {
            Ok(receipts) => {
                let mut any = false;
                for r in receipts {
                    if let Entry::Digest(d) = r.entry {
                        if wanted.contains(&d.digest) && !got.contains_key(&d.digest) {
                            got.insert(d.digest, r);
                            any = true;
                        }
                    }
                }
                any
            }
            Err(error) => {
                tracing::warn!(replica, %error, "a receipt bundle does not verify");
                false
            }
        }
    }

    fn spawn_submit(&self, replica: usize, digests: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            let Some(Some(session)) = client.inner.sessions.get(replica) else {
                return;
            };
            let mut streams = Vec::new();
            for chunk in digests.chunks(MAX_DIGESTS_PER_SUBMIT) {
                match session
                    .call_with_pushes(ClientRequest::Submit(chunk.to_vec()))
                    .await
                {
                    Ok((ClientResponse::Accepted { .. }, pushes)) => {
                        let _ = events.send(Event::Acked(replica)).await;
                        streams.push(pushes);
                    }
                    Ok((ClientResponse::Error(error), pushes)) => {
                        // Backpressure or a client limit: what was taken is
                        // still pushed; the rest is asked again later.
                        tracing::debug!(replica, %error, "submission refused");
                        let _ = events.send(Event::Acked(replica)).await;
                        let _ = events.send(Event::Refused(replica)).await;
                        streams.push(pushes);
                    }
                    Ok(_) | Err(_) => {
                        let _ = events.send(Event::Lost(replica)).await;
                        return;
                    }
                }
            }
            // Forward the receipt pushes until the connection ends, or
            // the stamp is over (its receiver gone).
            let pick = move |p| match p {
                ClientPush::Signed(bundle) => Some(Event::Bundle(replica, bundle)),
                _ => None,
            };
            if crate::session::forward_pushes(streams, events.clone(), pick).await {
                // The connection ended: the stamp resubmits here.
                let _ = events.send(Event::Lost(replica)).await;
            }
        });
    }

    fn spawn_poll(&self, replica: usize, missing: Vec<[u8; 32]>, events: mpsc::Sender<Event>) {
        let client = self.clone();
        tokio::spawn(async move {
            let Some(Some(session)) = client.inner.sessions.get(replica) else {
                return;
            };
            for chunk in missing.chunks(MAX_RECEIPTS_PER_ANSWER) {
                match session.call(ClientRequest::Receipts(chunk.to_vec())).await {
                    Ok(ClientResponse::Receipts(bundle)) => {
                        if events.send(Event::Bundle(replica, bundle)).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
    }
}
