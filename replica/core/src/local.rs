//! An in-process cluster of [`ReplicaCore`]s exchanging real frames over a
//! seeded, simulated network: what `belfry demo` runs, and what the replica
//! tests use. One seeded RNG, simulated time, no sockets — a run is a function
//! of its seed and inputs. (The fault-injecting simulator is `belfry-sim`.)

use crate::core::{ClientId, CoreFault, CoreInput, ReplicaConfig, ReplicaCore};
use crate::store::{MemoryStore, ReplicaStore};
use crate::wire::{self, ClientRequest, ClientResponse, PeerMessage};
use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{
    deal, BlsCrypto, ClusterParams, KeyError, Policy, PublicKeys, ReplicaId, ThresholdCrypto,
    TrustAnchor,
};
use belfry_broadcast::testkit::EventQueue;
use belfry_broadcast::{Target, TimerKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Debug)]
enum Event {
    Peer {
        from: usize,
        to: usize,
        frame: Vec<u8>,
    },
    Timer {
        node: usize,
        kind: TimerKind,
    },
    Client {
        node: usize,
        client: ClientId,
        frame: Vec<u8>,
    },
}

/// The in-process cluster.
pub struct LocalCluster {
    /// The replicas (`None`: stopped).
    pub cores: Vec<Option<ReplicaCore>>,
    /// The cluster description.
    pub cluster: ClusterParams,
    /// Simulated now.
    pub now: Micros,
    /// Replicas whose links are cut.
    pub cut_off: BTreeSet<usize>,
    /// Extra delay on every message a replica sends (a slow replica).
    pub slow: BTreeMap<usize, Micros>,
    /// Faults seen, per replica.
    pub faults: Vec<Vec<CoreFault>>,
    /// Frames and bytes moved between replicas.
    pub peer_frames: u64,
    /// Bytes moved between replicas.
    pub peer_bytes: u64,
    /// Each replica's durable storage (survives [`LocalCluster::crash`]).
    pub stores: Vec<MemoryStore>,
    /// Per replica, an optional rewrite of its outgoing peer messages (a
    /// Byzantine replica in tests). `false` drops the message.
    #[allow(clippy::type_complexity)]
    pub tamper: Vec<Option<Box<dyn FnMut(&mut PeerMessage) -> bool>>>,
    /// Replicas whose log lives in a [`crate::filelog::FileLog`]: synced
    /// after every step, before its messages leave.
    pub file_logs: BTreeSet<usize>,
    configs: Vec<ReplicaConfig>,
    crypto: Vec<Arc<dyn ThresholdCrypto>>,
    rng: ChaCha20Rng,
    queue: EventQueue<Event>,
    responses: Vec<(usize, ClientId, ClientResponse)>,
}

impl LocalCluster {
    /// A cluster of the given replicas, started.
    pub fn new(
        cluster: ClusterParams,
        configs: Vec<ReplicaConfig>,
        crypto: Vec<Arc<dyn ThresholdCrypto>>,
        seed: u64,
    ) -> Self {
        let n = configs.len();
        let mut c = LocalCluster {
            cores: configs
                .iter()
                .zip(&crypto)
                .map(|(cfg, cr)| Some(ReplicaCore::new(cfg.clone(), cr.clone())))
                .collect(),
            stores: vec![MemoryStore::default(); n],
            tamper: (0..n).map(|_| None).collect(),
            file_logs: BTreeSet::new(),
            configs,
            crypto,
            cluster,
            now: cluster.genesis_time,
            cut_off: BTreeSet::new(),
            slow: BTreeMap::new(),
            faults: vec![Vec::new(); n],
            peer_frames: 0,
            peer_bytes: 0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            queue: EventQueue::default(),
            responses: Vec::new(),
        };
        for i in 0..n {
            c.input(i, CoreInput::Start);
        }
        c
    }

    /// A cluster of `n` replicas with freshly dealt real BLS keys (seeded), and
    /// its public keys.
    pub fn with_bls(
        n: usize,
        policy: Policy,
        genesis_time: Micros,
        seed: u64,
    ) -> Result<(Self, Arc<PublicKeys>), KeyError> {
        Self::with_bls_tuned(n, policy, genesis_time, seed, |_| {})
    }

    /// Like [`LocalCluster::with_bls`], each replica's config adjusted by `tune`.
    pub fn with_bls_tuned(
        n: usize,
        policy: Policy,
        genesis_time: Micros,
        seed: u64,
        tune: impl Fn(&mut ReplicaConfig),
    ) -> Result<(Self, Arc<PublicKeys>), KeyError> {
        let f = belfry_broadcast::coin::max_faulty(n);
        let (public, secrets) = deal(n, f, &mut ChaCha20Rng::seed_from_u64(seed))?;
        let public = Arc::new(public);
        let cluster = ClusterParams::of_keys(&public, policy, genesis_time);
        let configs = (0..n)
            .map(|i| {
                let mut c = ReplicaConfig::new(ReplicaId(i as u16), cluster);
                tune(&mut c);
                c
            })
            .collect();
        let crypto = secrets
            .into_iter()
            .map(|s| Arc::new(BlsCrypto::new(public.clone(), s)) as Arc<dyn ThresholdCrypto>)
            .collect();
        Ok((Self::new(cluster, configs, crypto, seed), public))
    }

    /// The trust anchor of this cluster.
    pub fn anchor(&self) -> TrustAnchor {
        TrustAnchor(self.cluster.group_public_key)
    }

    fn schedule(&mut self, at: Micros, e: Event) {
        self.queue.schedule(at, e);
    }

    fn latency(&mut self) -> Micros {
        Micros(self.rng.gen_range(100..1_500))
    }

    /// Sends a client request to every replica (as the client library does).
    pub fn request_all(&mut self, client: ClientId, request: &ClientRequest) {
        for node in 0..self.cores.len() {
            self.request_one(node, client, request);
        }
    }

    /// Sends a client request to one replica only.
    pub fn request_one(&mut self, node: usize, client: ClientId, request: &ClientRequest) {
        let Ok(frame) = wire::encode(request) else {
            return;
        };
        let at = self.now.saturating_add(self.latency());
        self.schedule(
            at,
            Event::Client {
                node,
                client,
                frame,
            },
        );
    }

    /// Hands one input to replica `i` and routes what it asks for.
    pub fn input(&mut self, i: usize, input: CoreInput) {
        let Some(core) = self.cores[i].as_mut() else {
            return;
        };
        let log_len_before = core.log_len();
        let step = core.handle(self.now, input);
        // Durable before anything leaves the replica. The in-memory store
        // cannot fail; an armed crash stops the replica mid-write, and nothing
        // of the step leaves it.
        let _ = self.stores[i].persist(&step, log_len_before);
        if self.stores[i].crashed {
            self.cores[i] = None;
            return;
        }
        if self.file_logs.contains(&i) {
            if let Some(Err(_)) = self.cores[i].as_mut().map(ReplicaCore::sync_log) {
                // A log that cannot be made durable stops the replica.
                self.faults[i].push(crate::CoreFault::CatchUp {
                    replica: ReplicaId(i as u16),
                    what: "file log sync failed",
                });
                self.cores[i] = None;
                return;
            }
        }
        self.faults[i].extend(step.faults);
        for (at, kind) in step.timers {
            self.schedule(at, Event::Timer { node: i, kind });
        }
        for (client, frame) in step.to_clients {
            if let Ok(r) = wire::decode::<ClientResponse>(&frame) {
                self.responses.push((i, client, r));
            }
        }
        for (to, mut frame) in step.to_peers {
            if let Some(t) = self.tamper[i].as_mut() {
                let Ok(mut m) = wire::decode::<PeerMessage>(&frame) else {
                    continue;
                };
                if !t(&mut m) {
                    continue;
                }
                match wire::encode(&m) {
                    Ok(f) => frame = f,
                    Err(_) => continue,
                }
            }
            let targets: Vec<usize> = match to {
                Target::All => (0..self.cores.len()).filter(|t| *t != i).collect(),
                Target::One(r) => vec![r.index()],
            };
            let extra = self.slow.get(&i).copied().unwrap_or_default();
            for t in targets {
                let at = self
                    .now
                    .saturating_add(self.latency())
                    .saturating_add(extra);
                self.schedule(
                    at,
                    Event::Peer {
                        from: i,
                        to: t,
                        frame: frame.clone(),
                    },
                );
            }
        }
    }

    /// Runs until simulated time `until` or until `stop` holds.
    pub fn run_until(&mut self, until: Micros, mut stop: impl FnMut(&LocalCluster) -> bool) {
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = self.now.max(at);
            match event {
                Event::Peer { from, to, frame } => {
                    if self.cut_off.contains(&from) || self.cut_off.contains(&to) {
                        continue;
                    }
                    self.peer_frames += 1;
                    self.peer_bytes += frame.len() as u64;
                    let from = ReplicaId(from as u16);
                    self.input(to, CoreInput::Peer { from, frame });
                }
                Event::Timer { node, kind } => self.input(node, CoreInput::Timer(kind)),
                Event::Client {
                    node,
                    client,
                    frame,
                } => self.input(node, CoreInput::Client { client, frame }),
            }
            if stop(self) {
                return;
            }
        }
        self.now = self.now.max(until);
    }

    /// Stops replica `i` (its volatile state is gone; its store stays).
    pub fn crash(&mut self, i: usize) {
        self.cores[i] = None;
    }

    /// Restarts replica `i` from its store and reconnects it.
    pub fn restart(&mut self, i: usize) -> Result<(), crate::store::RestoreError> {
        self.stores[i].crashed = false;
        self.file_logs.remove(&i);
        let core = ReplicaCore::restore(
            self.configs[i].clone(),
            self.crypto[i].clone(),
            self.stores[i].recover(),
        )?;
        self.bring_up(i, core);
        Ok(())
    }

    /// Installs a restored replica, starts it and reconnects it to everyone.
    fn bring_up(&mut self, i: usize, core: ReplicaCore) {
        self.cores[i] = Some(core);
        self.input(i, CoreInput::Start);
        for p in 0..self.cores.len() {
            if p != i {
                self.input(p, CoreInput::PeerReconnected(ReplicaId(i as u16)));
                self.input(i, CoreInput::PeerReconnected(ReplicaId(p as u16)));
            }
        }
    }

    /// Restarts replica `i` from its store with its log in a file log under
    /// `dir` (cut back to, or topped up from, the recovered ledger), which
    /// it keeps using — synced after every step — until it stops.
    pub fn restart_on_file_log(&mut self, i: usize, dir: &std::path::Path) -> Result<(), String> {
        self.stores[i].crashed = false;
        let recovered = self.stores[i].recover();
        let mut log = crate::filelog::FileLog::open(dir).map_err(|e| e.to_string())?;
        log.truncate(recovered.entries_len())
            .map_err(|e| e.to_string())?;
        let mut core = ReplicaCore::restore_with_log(
            self.configs[i].clone(),
            self.crypto[i].clone(),
            recovered,
            Box::new(log),
        )
        .map_err(|e| e.to_string())?;
        core.sync_log()?;
        self.file_logs.insert(i);
        self.bring_up(i, core);
        Ok(())
    }

    /// Whether replica `node` logged every digest of `ds` under a signed head.
    pub fn stamped(&self, node: usize, ds: &[[u8; 32]]) -> bool {
        self.cores[node].as_ref().is_some_and(|core| {
            let signed = core.signed_size();
            ds.iter()
                .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
        })
    }

    /// Whether every running replica logged every digest of `ds`.
    pub fn logged_everywhere(&self, ds: &[[u8; 32]]) -> bool {
        self.cores
            .iter()
            .flatten()
            .all(|core| ds.iter().all(|d| core.leaf_index(d).is_some()))
    }

    /// Checks what must hold between the running replicas: their logs agree
    /// on every index they share, they signed the same head at every size
    /// they share, and no log holds a digest twice.
    pub fn check_agreement(&self) -> Result<(), String> {
        let cores: Vec<(usize, &ReplicaCore)> = self
            .cores
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .collect();
        let Some((first, base)) = cores.first().copied() else {
            return Ok(());
        };
        let base_log = base.log();
        let base_heads = base.heads();
        for (i, core) in &cores {
            let log = core.log();
            let k = log.len().min(base_log.len());
            if let Some(at) = (0..k).find(|x| log[*x] != base_log[*x]) {
                return Err(format!("replicas {first} and {i} differ at log index {at}"));
            }
            for (size, head) in core.heads() {
                if base_heads.get(&size).is_some_and(|h| *h != head) {
                    return Err(format!(
                        "replicas {first} and {i} signed different heads at size {size}"
                    ));
                }
            }
            let mut seen = BTreeSet::new();
            for e in &log {
                if let belfry_timestamp::Entry::Digest(d) = e {
                    if !seen.insert(d.digest) {
                        return Err(format!(
                            "replica {i} logged {} twice",
                            hex::encode(d.digest)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Client responses received so far (replica, client, response), drained.
    pub fn take_responses(&mut self) -> Vec<(usize, ClientId, ClientResponse)> {
        std::mem::take(&mut self.responses)
    }
}
