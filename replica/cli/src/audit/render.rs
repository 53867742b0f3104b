//! How `belfry audit` shows what it found: the text report and the JSON
//! object, from the answers gathered in `audit`.

use super::*;

impl Report {
    /// Whether a head of this size and root was proved consistent with the
    /// largest (heads are proved once per size and root).
    pub(super) fn proved_head(&self, h: &SignedTreeHead) -> bool {
        self.proved_roots.contains(&(h.head.tree_size, h.head.root))
    }

    /// Whether the cluster is consistent, the JSON form and the text form.
    pub(super) fn render(
        &self,
        cluster_id: ClusterId,
        anchor: &TrustAnchor,
        cluster: &belfry_node::Cluster,
        args: &AuditArgs,
    ) -> (bool, Value, String) {
        use std::fmt::Write;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "belfry audit: cluster {}, {} replicas (f = {}), trust anchor {anchor}",
            hex::encode(cluster_id.0),
            cluster.params.n,
            cluster.params.f
        );
        let replicas = self.render_replicas(cluster_id, cluster, &mut text);
        let bad_heads = self
            .answers
            .iter()
            .filter(|a| matches!(a, Answer::Bad(_)))
            .count();
        let missing: usize = self
            .holdings
            .iter()
            .map(|h| h.missing.len() + h.moved.len())
            .sum();
        let consistent = self.split_views.is_empty()
            && self.witnessed.bad.is_empty()
            && bad_heads == 0
            && self.bad_proofs.is_empty()
            && self.unproved.is_empty()
            && missing == 0;
        if let Some((l, s)) = &self.largest {
            let _ = writeln!(
                text,
                "consistency: {} distinct signed heads ({} from receipts) proved consistent with the largest, size {} from {s}",
                self.proved.len(),
                self.proved.iter().filter(|(s, _)| matches!(s, Source::Receipt(_))).count(),
                l.head.tree_size
            );
        }
        let witnesses = self.render_witnesses(cluster_id, &mut text);
        self.render_problems(&mut text);
        let _ = writeln!(
            text,
            "{}",
            if consistent {
                "CONSISTENT: every head received verifies and all are one history"
            } else {
                "NOT CONSISTENT"
            }
        );
        let _ = args;
        let out = json!({
            "cluster_id": hex::encode(cluster_id.0),
            "trust_anchor": anchor.to_string(),
            "consistent": consistent,
            "replicas": replicas,
            "largest": self.largest.as_ref().map(|(h, s)| json!({ "from": s.to_string(), "head": head_json(cluster_id, h) })),
            "proved_consistent": self.proved.len(),
            "bad_proofs": self.bad_proofs,
            "unproved": self.unproved,
            "split_views": self.split_views,
            "receipts_checked": self.receipts,
            "witnesses": witnesses,
            "bad_checkpoints": self.witnessed.bad,
        });
        (consistent, out, text)
    }

    /// Each replica's line (and its receipts' lines) and JSON object.
    fn render_replicas(
        &self,
        cluster_id: ClusterId,
        cluster: &belfry_node::Cluster,
        text: &mut String,
    ) -> Vec<Value> {
        use std::fmt::Write;
        let newest = self
            .answers
            .iter()
            .filter_map(|a| match a {
                Answer::Head(h) => Some(h.head.time),
                _ => None,
            })
            .max();
        let mut replicas = Vec::new();
        for (r, a) in self.answers.iter().enumerate() {
            let address = cluster.replicas[r]
                .as_ref()
                .map_or_else(|| "absent".to_string(), |e| e.address.to_string());
            let (status, detail, head) = self.replica_status(a, newest);
            let line = match head {
                Some(h) => format!(
                    "replica {r} {address}: tree size {}, root {}…, signed {}{}",
                    h.head.tree_size,
                    &hex::encode(h.head.root)[..16],
                    utc(h.head.time),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" — STALE: {detail}")
                    }
                ),
                None => format!(
                    "replica {r} {address}: {} ({detail})",
                    status.replace('_', " ").to_uppercase()
                ),
            };
            let _ = writeln!(text, "{line}");
            let mut v = json!({ "id": r, "address": address, "status": status });
            if let Some(h) = head {
                v["head"] = head_json(cluster_id, h);
            }
            if !detail.is_empty() {
                v["detail"] = json!(detail);
            }
            if let Some(hold) = self
                .holdings
                .get(r)
                .filter(|_| head.is_some() && self.receipts > 0)
            {
                v["receipts"] = self.render_holdings(hold, text);
            }
            replicas.push(v);
        }
        replicas
    }

    /// A replica's status, what is wrong, and its head if it has a good
    /// one; stale when older than the newest head by more than
    /// `--stale-after`.
    fn replica_status<'a>(
        &self,
        a: &'a Answer,
        newest: Option<belfry_replica::clock::Micros>,
    ) -> (&'static str, String, Option<&'a SignedTreeHead>) {
        match a {
            Answer::Unreachable(e) => ("unreachable", e.clone(), None),
            Answer::Bad(e) => ("bad_head", e.clone(), None),
            Answer::NoHead => ("no_head", "no signed tree head yet".to_string(), None),
            Answer::Head(h) => {
                let behind_us = newest.map_or(0, |n| n.0.saturating_sub(h.head.time.0));
                if behind_us > self.stale_after * 1_000_000 {
                    (
                        "stale",
                        format!("{:.1} s older than the newest head", behind_us as f64 / 1e6),
                        Some(h),
                    )
                } else {
                    ("ok", String::new(), Some(h))
                }
            }
        }
    }

    /// The receipts a replica holds: their lines, and their JSON object.
    fn render_holdings(&self, hold: &Holdings, text: &mut String) -> Value {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "  receipts: {} of {} held ({} under the same signed head), {} not reached yet, {} missing, {} moved, {} unanswered",
            hold.held,
            self.receipts,
            hold.identical,
            hold.behind,
            hold.missing.len(),
            hold.moved.len(),
            hold.errors
        );
        for m in &hold.missing {
            let _ = writeln!(text, "  MISSING {m}");
        }
        for m in &hold.moved {
            let _ = writeln!(text, "  MOVED {m}");
        }
        json!({
            "held": hold.held,
            "identical": hold.identical,
            "behind": hold.behind,
            "missing": hold.missing,
            "moved": hold.moved,
            "errors": hold.errors,
        })
    }

    /// Each listed witness's latest cosignature: its line and JSON object.
    fn render_witnesses(&self, cluster_id: ClusterId, text: &mut String) -> Vec<Value> {
        use std::fmt::Write;
        let mut witnesses = Vec::new();
        for (vkey, name) in &self.witnessed.listed {
            match self.witnessed.latest.get(vkey) {
                Some((h, t, r)) => {
                    let proved = self.proved_head(h);
                    let covered = self.covered.get(vkey).copied().unwrap_or(0);
                    let _ = writeln!(
                        text,
                        "witness {name}: cosigned tree size {} at {} (from replica {r}){}{}",
                        h.head.tree_size,
                        utc(belfry_replica::clock::Micros(t.saturating_mul(1_000_000))),
                        if proved {
                            ", consistent with the largest head"
                        } else {
                            " — NOT proved consistent"
                        },
                        if self.receipts > 0 {
                            format!("; covers {covered} of {} receipts", self.receipts)
                        } else {
                            String::new()
                        }
                    );
                    witnesses.push(json!({
                        "name": name,
                        "key": vkey,
                        "head": head_json(cluster_id, h),
                        "cosigned_at": t,
                        "from_replica": r,
                        "consistent": proved,
                        "receipts_covered": covered,
                    }));
                }
                None => {
                    let _ = writeln!(text, "witness {name}: no cosignature kept by any replica");
                    witnesses.push(json!({ "name": name, "key": vkey, "head": null }));
                }
            }
        }
        witnesses
    }

    /// A line for every bad checkpoint, unproved head, bad proof and split
    /// view.
    fn render_problems(&self, text: &mut String) {
        use std::fmt::Write;
        for b in &self.witnessed.bad {
            let _ = writeln!(text, "BAD CHECKPOINT from {b}");
        }
        for u in &self.unproved {
            let _ = writeln!(text, "UNPROVED: {u}");
        }
        for p in &self.bad_proofs {
            let _ = writeln!(text, "BAD PROOF from {p}");
        }
        for s in &self.split_views {
            let _ = writeln!(
                text,
                "SPLIT VIEW: {}\n  evidence: {}",
                s["reason"].as_str().unwrap_or(""),
                s
            );
        }
    }
}
