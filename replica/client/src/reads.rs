//! The client's reads: receipts, tree heads, consistency proofs,
//! checkpoints and cosignatures, entries, and the ordered and head streams;
//! whatever a replica answers is verified against the trust anchor before
//! it is returned.

use super::*;

impl Client {
    /// Verified receipts of many digests under one head from one replica
    /// (digests it cannot prove yet are left out).
    pub async fn receipts(
        &self,
        replica: usize,
        digests: &[[u8; 32]],
    ) -> Result<Vec<Receipt>, Error> {
        let mut out = Vec::new();
        for chunk in digests.chunks(MAX_RECEIPTS_PER_ANSWER) {
            match self
                .session(replica)?
                .call(ClientRequest::Receipts(chunk.to_vec()))
                .await?
            {
                ClientResponse::Receipts(bundle) => {
                    let inner = &self.inner;
                    out.extend(
                        inner
                            .cache
                            .verify_bundle(&inner.cluster.params, &inner.anchor, &bundle)
                            .map_err(|error| Error::Verify { replica, error })?,
                    );
                }
                other => return Err(unexpected(replica, other)),
            }
        }
        Ok(out)
    }

    /// One replica's receipt of `digest` under the first signed tree head
    /// that contains it — the receipt it gave when the digest was stamped,
    /// and the earliest time it proves — verified; `None` while the replica
    /// does not know the digest or no signed head covers it yet.
    pub async fn receipt(
        &self,
        replica: usize,
        digest: &[u8; 32],
    ) -> Result<Option<Receipt>, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Receipt(*digest))
            .await?
        {
            ClientResponse::Receipt(bytes) => {
                let r = Receipt::from_binary(&bytes).map_err(|e| {
                    Error::Protocol(format!(
                        "replica {replica}: a receipt that does not parse: {e}"
                    ))
                })?;
                let asked = matches!(r.entry, Entry::Digest(d) if d.digest == *digest);
                if !asked || r.cluster != self.inner.cluster.params {
                    return Err(Error::Protocol(format!(
                        "replica {replica}: a receipt of another digest or cluster"
                    )));
                }
                self.inner
                    .cache
                    .verify_receipt(&self.inner.anchor, &r)
                    .map_err(|error| Error::Verify { replica, error })?;
                Ok(Some(r))
            }
            ClientResponse::Error(
                belfry_wire::ClientError::UnknownDigest | belfry_wire::ClientError::NotYetSigned,
            ) => Ok(None),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The latest signed tree head of a replica, verified.
    pub async fn tree_head(&self, replica: usize) -> Result<Option<SignedTreeHead>, Error> {
        match self.session(replica)?.call(ClientRequest::TreeHead).await? {
            ClientResponse::TreeHead(Some(h)) => {
                self.check_head(replica, &h)?;
                Ok(Some(h))
            }
            ClientResponse::TreeHead(None) => Ok(None),
            other => Err(unexpected(replica, other)),
        }
    }

    pub(crate) fn check_head(&self, replica: usize, h: &SignedTreeHead) -> Result<(), Error> {
        let inner = &self.inner;
        inner
            .cache
            .verify_head(&inner.cluster.params, &inner.anchor, h)
            .map_err(|error| Error::Verify { replica, error })
    }

    /// Checks with a replica's consistency proof that head `b` extends
    /// head `a` (both verified first).
    pub async fn consistency(
        &self,
        replica: usize,
        a: &SignedTreeHead,
        b: &SignedTreeHead,
    ) -> Result<(), Error> {
        self.check_head(replica, a)?;
        self.check_head(replica, b)?;
        let (sa, sb) = (a.head.tree_size, b.head.tree_size);
        if sa == sb {
            return if a.head.root == b.head.root {
                Ok(())
            } else {
                Err(Error::Verify {
                    replica,
                    error: VerifyError::Fork(sa),
                })
            };
        }
        let (first, second) = if sa < sb { (a, b) } else { (b, a) };
        let (s1, s2) = (first.head.tree_size, second.head.tree_size);
        match self
            .session(replica)?
            .call(ClientRequest::Consistency(s1, s2))
            .await?
        {
            ClientResponse::Consistency(proof)
                if verify_consistency(s1, s2, &first.head.root, &second.head.root, &proof) =>
            {
                Ok(())
            }
            ClientResponse::Consistency(_) => Err(Error::Verify {
                replica,
                error: VerifyError::Inconsistent(s1, s2),
            }),
            other => Err(unexpected(replica, other)),
        }
    }

    /// A replica's checkpoint (docs/checkpoints.md) of its signed head of
    /// `size` (0: its latest), as note text. Nothing is verified here: open
    /// it with [`belfry_timestamp::checkpoint::ClusterKey::open`].
    pub async fn checkpoint(&self, replica: usize, size: u64) -> Result<String, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Checkpoint(size))
            .await?
        {
            ClientResponse::Checkpoint(note) => Ok(note),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The checkpoints witnesses cosigned last, as a replica keeps them
    /// (note texts, not verified).
    pub async fn witnessed(&self, replica: usize) -> Result<Vec<String>, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Witnessed)
            .await?
        {
            ClientResponse::Witnessed(notes) => Ok(notes),
            other => Err(unexpected(replica, other)),
        }
    }

    /// Gives a replica a checkpoint carrying witness cosignatures; returns
    /// how many it kept (newer than what it had of each witness).
    pub async fn cosign(&self, replica: usize, note: String) -> Result<u32, Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Cosign(note))
            .await?
        {
            ClientResponse::Cosigned { stored } => Ok(stored),
            other => Err(unexpected(replica, other)),
        }
    }

    /// Entries `[from, to)` from a replica (at most one page).
    pub async fn entries(
        &self,
        replica: usize,
        from: u64,
        to: u64,
    ) -> Result<(u64, Vec<Entry>), Error> {
        match self
            .session(replica)?
            .call(ClientRequest::Entries(from, to))
            .await?
        {
            ClientResponse::Entries { from, entries } => Ok((from, entries)),
            other => Err(unexpected(replica, other)),
        }
    }

    /// The ordered stream from log index `from` on (see [`Subscription`]).
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription::start(self.clone(), from)
    }

    /// The signed tree heads from now on (see [`HeadStream`]).
    pub fn heads(&self) -> HeadStream {
        HeadStream::start(self.clone())
    }
}
