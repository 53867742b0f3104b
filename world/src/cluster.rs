//! The in-process cluster: the world with no faults of its own — replicas,
//! each a [`Host`], exchanging real frames over the world's network (0.1 to
//! 1.5 ms a frame, no loss), a sync as soon as a turn is sealed, local time
//! equal to true time. Tests crash, wipe, cut off, slow down or tamper with
//! replicas by hand; the benchmarks and `examples/four_replicas.rs` use it
//! as it is. (The fault-injecting simulator is `belfry-sim`; `belfry demo`
//! runs real QUIC.)

use crate::hosting::Turn;
use crate::network::Network;
use crate::world::{Cast, Event, World};
use belfry_replica::broadcast::{Durable, Target};
use belfry_replica::clock::Micros;
use belfry_replica::coin::{
    deal, max_faulty, BlsCrypto, ClusterParams, KeyError, Policy, PublicKeys, ReplicaId,
    ThresholdCrypto, TrustAnchor,
};
use belfry_replica::journal::{Journal, JournalRecord};
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::{self, ClientMessage, ClientRequest, PeerMessage};
use belfry_replica::{
    ClientId, CoreFault, CoreInput, Host, HostConfig, HostError, Released, ReplicaConfig,
    ReplicaCore,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

/// A replica's host, over either kind of journal.
pub type LocalHost = Host<Box<dyn Journal>>;

/// A rewrite of a replica's outgoing peer messages; `false` drops one.
pub type Tamper = Box<dyn FnMut(&mut PeerMessage) -> bool>;

/// The in-process cluster.
pub struct LocalCluster {
    /// The world the replicas live in.
    pub world: World<Box<dyn Journal>, Infallible>,
    /// The cluster description.
    pub cluster: ClusterParams,
    /// Faults seen, per replica.
    pub faults: Vec<Vec<CoreFault>>,
    /// Each replica's own vertices and votes as released (what the fairness
    /// tests read of honest replicas' reports).
    pub released_writes: Vec<Vec<Durable>>,
    /// Each replica's log entries as released (acknowledged), by index.
    pub released_entries: Vec<Vec<Entry>>,
    /// Per replica, an optional rewrite of its outgoing peer messages (a
    /// Byzantine replica in tests).
    pub tamper: Vec<Option<Tamper>>,
    /// Why replicas stopped on their own (a storage failure), per replica.
    pub stopped: Vec<Option<String>>,
    responses: Vec<(usize, ClientId, ClientMessage)>,
}

impl LocalCluster {
    /// A cluster of the given replicas, started, each on in-memory storage.
    pub fn new(
        cluster: ClusterParams,
        configs: Vec<ReplicaConfig>,
        crypto: Vec<Arc<dyn ThresholdCrypto>>,
        seed: u64,
    ) -> Self {
        let n = configs.len();
        let cast = Cast {
            configs,
            crypto,
            host_config: HostConfig::default(),
            fsync: Micros::ZERO,
        };
        let network = Network::uniform(n, ChaCha20Rng::seed_from_u64(seed));
        // No armed crashes here: the fault stream is never drawn from.
        let faults_rng = ChaCha20Rng::seed_from_u64(seed);
        let mut c = LocalCluster {
            world: World::new(cluster.genesis_time, cast, network, faults_rng),
            cluster,
            faults: vec![Vec::new(); n],
            released_writes: vec![Vec::new(); n],
            released_entries: vec![Vec::new(); n],
            tamper: (0..n).map(|_| None).collect(),
            stopped: vec![None; n],
            responses: Vec::new(),
        };
        for i in 0..n {
            if let Err(e) = c.restart(i) {
                c.stopped[i] = Some(e.to_string());
            }
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
        let (public, secrets) = deal(n, max_faulty(n), &mut ChaCha20Rng::seed_from_u64(seed))?;
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

    /// Simulated now.
    pub fn now(&self) -> Micros {
        self.world.now
    }

    /// Replica `i`'s core, if it runs.
    pub fn core(&self, i: usize) -> Option<&ReplicaCore> {
        self.world.host(i).map(Host::core)
    }

    /// Replica `i`'s host, if it runs.
    pub fn host(&self, i: usize) -> Option<&LocalHost> {
        self.world.host(i)
    }

    /// Replica `i`'s host, to drive by hand (tests).
    pub fn host_mut(&mut self, i: usize) -> Option<&mut LocalHost> {
        self.world.host_mut(i)
    }

    /// Storage settings of every host (read when a host reopens).
    pub fn host_config_mut(&mut self) -> &mut HostConfig {
        &mut self.world.host_config
    }

    /// Replicas in the cluster.
    pub fn len(&self) -> usize {
        self.world.len()
    }

    /// Whether the cluster has no replica.
    pub fn is_empty(&self) -> bool {
        self.world.is_empty()
    }

    /// Cuts every link of replica `i` until [`LocalCluster::heal`].
    pub fn cut_off(&mut self, i: usize) {
        self.world.network.cut_off.insert(i);
    }

    /// Restores the links of every cut-off replica.
    pub fn heal(&mut self) {
        self.world.network.cut_off.clear();
    }

    /// Delays every frame replica `i` sends by `extra` (a slow replica).
    pub fn slow_sender(&mut self, i: usize, extra: Micros) {
        self.world.network.slow_senders.insert(i, extra);
    }

    /// Frames and bytes moved between replicas.
    pub fn peer_traffic(&self) -> (u64, u64) {
        (self.world.network.frames, self.world.network.bytes)
    }

    /// Sends a client request to every replica (as the client library does).
    pub fn request_all(&mut self, client: ClientId, request: &ClientRequest) {
        for node in 0..self.len() {
            self.request_one(node, client, request);
        }
    }

    /// Sends a client request to one replica only.
    pub fn request_one(&mut self, node: usize, client: ClientId, request: &ClientRequest) {
        let Ok(frame) = wire::encode(request) else {
            return;
        };
        let at = self
            .world
            .now
            .saturating_add(self.world.link_delay(self.len(), node));
        let e = Event::Client {
            node,
            client,
            frame,
        };
        self.world.schedule(at, e);
    }

    /// Hands one input to replica `i` as a turn of its own and routes what
    /// the turn releases.
    pub fn input(&mut self, i: usize, input: CoreInput) {
        let turn = self.world.handle(i, input);
        self.settle(i, turn);
    }

    fn settle(&mut self, i: usize, mut turn: Turn) {
        loop {
            turn = match turn {
                Turn::Released(r) => {
                    self.route(i, r);
                    self.world.next_turn(i)
                }
                // A host whose storage failed stops, as the node does:
                // nothing of the turn left it.
                Turn::Failed(e) => {
                    self.stopped[i] = Some(e.to_string());
                    return;
                }
                Turn::Quiet | Turn::Crashed => return,
            }
        }
    }

    fn route(&mut self, i: usize, r: Released) {
        self.faults[i].extend(r.faults);
        self.released_writes[i].extend(r.writes);
        if !r.appended.is_empty() {
            let log = &mut self.released_entries[i];
            log.truncate(usize::try_from(r.first).unwrap_or(usize::MAX));
            log.extend(r.appended);
        }
        self.world.arm_timers(i, r.timers);
        for (client, frame) in r.to_clients {
            if let Ok(resp) = wire::decode_message(&frame) {
                self.responses.push((i, client, resp));
            }
        }
        for (to, frame) in r.to_peers {
            self.send(i, to, frame);
        }
    }

    fn send(&mut self, i: usize, to: Target, mut frame: Vec<u8>) {
        if let Some(t) = self.tamper[i].as_mut() {
            let Ok(mut m) = wire::decode::<PeerMessage>(&frame) else {
                return;
            };
            if !t(&mut m) {
                return;
            }
            match wire::encode(&m) {
                Ok(f) => frame = f,
                Err(_) => return,
            }
        }
        for t in self.world.targets(i, to) {
            self.world.transmit(i, t, frame.clone());
        }
    }

    /// Runs until simulated time `until` or until `stop` holds.
    pub fn run_until(&mut self, until: Micros, mut stop: impl FnMut(&LocalCluster) -> bool) {
        while let Some(event) = self.world.next_event(until) {
            match event {
                Event::Deliver { from, to, frame } => {
                    if self.world.reaches(from, to) {
                        self.world.count_frame(&frame);
                        let from = ReplicaId(from as u16);
                        self.input(to, CoreInput::Peer { from, frame });
                    }
                }
                wake @ (Event::Timer { .. } | Event::SyncDone { .. }) => {
                    if let Ok((node, turn)) = self.world.wake(wake) {
                        self.settle(node, turn);
                    }
                }
                Event::Client {
                    node,
                    client,
                    frame,
                } => self.input(node, CoreInput::Client { client, frame }),
                Event::Other(never) => match never {},
            }
            if stop(self) {
                return;
            }
        }
        self.world.advance_to(until);
    }

    /// Stops replica `i` as a crash would: its volatile state is gone, its
    /// journal keeps what was synced (every released turn), its log store
    /// what was synced to it.
    pub fn crash(&mut self, i: usize) {
        let _ = self
            .world
            .crash(i, belfry_replica::journal::CrashMode::LoseUnsynced);
    }

    /// Stops replica `i` and loses its storage entirely (a wiped data dir
    /// or a failed disk): it restarts with nothing.
    pub fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.world.wipe(i)
    }

    /// (Re)starts replica `i` from its storage and reconnects it.
    pub fn restart(&mut self, i: usize) -> Result<(), HostError> {
        if self.world.running(i) {
            return Ok(());
        }
        self.world.reopen(i)?;
        self.start(i);
        Ok(())
    }

    fn start(&mut self, i: usize) {
        self.stopped[i] = None;
        self.input(i, CoreInput::Start);
        for p in (0..self.len()).filter(|p| *p != i) {
            self.input(p, CoreInput::PeerReconnected(ReplicaId(i as u16)));
            self.input(i, CoreInput::PeerReconnected(ReplicaId(p as u16)));
        }
    }

    /// Stops replica `i` and restarts it on files under `dir` (journal and
    /// log), carrying over what it persisted in memory. It stays on files
    /// from then on, crashes included.
    pub fn move_to_files(&mut self, i: usize, dir: &Path) -> Result<(), HostError> {
        self.world.move_to_files(i, dir)?;
        self.start(i);
        Ok(())
    }

    /// Whether replica `i` runs on files.
    pub fn on_files(&self, i: usize) -> bool {
        self.world.replicas[i].dir.is_some()
    }

    /// The journal records replica `i` holds durably, if it is stopped on
    /// in-memory storage.
    pub fn journal_records(&self, i: usize) -> Option<Vec<JournalRecord>> {
        self.world.journal_records(i)
    }

    /// Whether replica `node` logged every digest of `ds` under a signed head.
    pub fn stamped(&self, node: usize, ds: &[[u8; 32]]) -> bool {
        self.core(node).is_some_and(|core| {
            let signed = core.signed_size();
            ds.iter()
                .all(|d| core.leaf_index(d).is_some_and(|i| i < signed))
        })
    }

    /// Whether every running replica logged every digest of `ds`.
    pub fn logged_everywhere(&self, ds: &[[u8; 32]]) -> bool {
        (0..self.len())
            .filter_map(|i| self.core(i))
            .all(|core| ds.iter().all(|d| core.leaf_index(d).is_some()))
    }

    /// Checks what must hold between the running replicas: their logs agree
    /// on every index they share, they signed the same head at every size
    /// they share, and no log holds a digest twice.
    pub fn check_agreement(&self) -> Result<(), String> {
        let cores: Vec<(usize, &ReplicaCore)> = (0..self.len())
            .filter_map(|i| self.core(i).map(|c| (i, c)))
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
                if let Entry::Digest(d) = e {
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

    /// What clients received so far (replica, client, answer or push),
    /// drained.
    pub fn take_responses(&mut self) -> Vec<(usize, ClientId, ClientMessage)> {
        std::mem::take(&mut self.responses)
    }
}
