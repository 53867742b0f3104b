//! An in-process cluster of replicas, each a [`Host`], exchanging real frames
//! over a seeded, simulated network: what the replica tests and the benches
//! use. One seeded RNG, simulated time, no sockets — a run is a function of its
//! seed and inputs. It is a thin adapter: the host does the turn (persist,
//! sync, release), this only routes what a turn releases. (The
//! fault-injecting simulator is `belfry-sim`; `belfry demo` runs real QUIC.)

use crate::core::{ClientId, CoreFault, CoreInput, ReplicaConfig, ReplicaCore};
use crate::filelog::FileLog;
use crate::host::{Host, HostConfig, HostError, Released, TimerSet};
use crate::journal::{FileJournal, Journal, JournalRecord, MemoryJournal};
use crate::wire::{self, ClientMessage, ClientRequest, PeerMessage};
use belfry_broadcast::clock::Micros;
use belfry_broadcast::coin::{
    deal, BlsCrypto, ClusterParams, KeyError, Policy, PublicKeys, ReplicaId, ThresholdCrypto,
    TrustAnchor,
};
use belfry_broadcast::testkit::EventQueue;
use belfry_broadcast::Target;
use belfry_timestamp::store::{LogStore, MemoryLog};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
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
        set: TimerSet,
    },
    Client {
        node: usize,
        client: ClientId,
        frame: Vec<u8>,
    },
}

/// Where a replica of the cluster keeps its journal and log.
enum Disk {
    /// In memory (survives a crash of the replica, not of the process).
    Memory(MemoryJournal, Box<MemoryLog>),
    /// In a directory: `<dir>/journal` and `<dir>/log`.
    Files(PathBuf),
}

/// A replica's host, over either kind of journal.
pub type LocalHost = Host<Box<dyn Journal>>;

/// The in-process cluster.
pub struct LocalCluster {
    hosts: Vec<Option<LocalHost>>,
    /// Stopped replicas' storage, and the directory of file-backed ones.
    disks: Vec<Option<Disk>>,
    dirs: Vec<Option<PathBuf>>,
    incarnations: Vec<u64>,
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
    /// Frames moved between replicas.
    pub peer_frames: u64,
    /// Bytes moved between replicas.
    pub peer_bytes: u64,
    /// Each replica's own vertices and votes as released (what the fairness
    /// tests read of honest replicas' reports).
    pub released_writes: Vec<Vec<belfry_broadcast::Durable>>,
    /// Each replica's log entries as released (acknowledged), by index.
    pub released_entries: Vec<Vec<belfry_timestamp::Entry>>,
    /// Per replica, an optional rewrite of its outgoing peer messages (a
    /// Byzantine replica in tests). `false` drops the message.
    #[allow(clippy::type_complexity)]
    pub tamper: Vec<Option<Box<dyn FnMut(&mut PeerMessage) -> bool>>>,
    /// Storage settings of every host.
    pub host_config: HostConfig,
    /// Why replicas stopped on their own (a storage failure), per replica.
    pub stopped: Vec<Option<String>>,
    configs: Vec<ReplicaConfig>,
    crypto: Vec<Arc<dyn ThresholdCrypto>>,
    rng: ChaCha20Rng,
    queue: EventQueue<Event>,
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
        let mut c = LocalCluster {
            hosts: (0..n).map(|_| None).collect(),
            disks: (0..n)
                .map(|_| {
                    Some(Disk::Memory(
                        MemoryJournal::new(),
                        Box::new(MemoryLog::new()),
                    ))
                })
                .collect(),
            dirs: vec![None; n],
            incarnations: vec![0; n],
            released_writes: vec![Vec::new(); n],
            released_entries: vec![Vec::new(); n],
            tamper: (0..n).map(|_| None).collect(),
            host_config: HostConfig::default(),
            stopped: vec![None; n],
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

    /// Replica `i`'s core, if it runs.
    pub fn core(&self, i: usize) -> Option<&ReplicaCore> {
        self.hosts.get(i)?.as_ref().map(Host::core)
    }

    /// Replica `i`'s host, if it runs.
    pub fn host(&self, i: usize) -> Option<&LocalHost> {
        self.hosts.get(i)?.as_ref()
    }

    /// Replica `i`'s host, to drive by hand (tests).
    pub fn host_mut(&mut self, i: usize) -> Option<&mut LocalHost> {
        self.hosts.get_mut(i)?.as_mut()
    }

    /// Replicas in the cluster.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the cluster has no replica.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    fn schedule(&mut self, at: Micros, e: Event) {
        self.queue.schedule(at, e);
    }

    fn latency(&mut self) -> Micros {
        Micros(self.rng.gen_range(100..1_500))
    }

    /// Sends a client request to every replica (as the client library does).
    pub fn request_all(&mut self, client: ClientId, request: &ClientRequest) {
        for node in 0..self.hosts.len() {
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

    /// Hands one input to replica `i` as a turn of its own and routes what
    /// the turn releases.
    pub fn input(&mut self, i: usize, input: CoreInput) {
        let now = self.now;
        let Some(host) = self.hosts[i].as_mut() else {
            return;
        };
        host.handle(now, input);
        self.finish_turn(i);
    }

    fn finish_turn(&mut self, i: usize) {
        let Some(host) = self.hosts[i].as_mut() else {
            return;
        };
        match host.commit() {
            Ok(released) => self.route(i, released),
            Err(e) => self.stop(i, &e),
        }
    }

    /// A host whose storage failed stops, as the node does: nothing of the
    /// turn left it.
    fn stop(&mut self, i: usize, e: &HostError) {
        self.stopped[i] = Some(e.to_string());
        self.crash(i);
    }

    fn route(&mut self, i: usize, r: Released) {
        self.faults[i].extend(r.faults);
        self.released_writes[i].extend(r.writes);
        if !r.appended.is_empty() {
            let log = &mut self.released_entries[i];
            log.truncate(usize::try_from(r.first).unwrap_or(usize::MAX));
            log.extend(r.appended);
        }
        for set in r.timers {
            // The cluster has no clock model: local time is true time.
            self.schedule(set.deadline, Event::Timer { node: i, set });
        }
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
        let n = self.hosts.len();
        let extra = self.slow.get(&i).copied().unwrap_or_default();
        let targets = (0..n).filter(|t| match to {
            Target::All => *t != i,
            Target::One(r) => *t == r.index(),
        });
        for t in targets.collect::<Vec<_>>() {
            let at = self
                .now
                .saturating_add(self.latency())
                .saturating_add(extra);
            let frame = frame.clone();
            self.schedule(
                at,
                Event::Peer {
                    from: i,
                    to: t,
                    frame,
                },
            );
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
                Event::Timer { node, set } => {
                    let now = self.now;
                    if let Some(h) = self.hosts[node].as_mut() {
                        if h.fire(now, set) {
                            self.finish_turn(node);
                        }
                    }
                }
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

    /// Stops replica `i` as a crash would: its volatile state is gone, its
    /// journal keeps what was synced (every released turn), its log store
    /// what was synced to it.
    pub fn crash(&mut self, i: usize) {
        let Some(host) = self.hosts[i].take() else {
            return;
        };
        let (journal, log) = host.into_parts();
        self.disks[i] = match (journal.into_memory(), log.into_memory_log()) {
            (Some(mut j), Some(mut l)) => {
                j.crash(crate::journal::CrashMode::LoseUnsynced);
                l.lose_unsynced();
                Some(Disk::Memory(j, Box::new(l)))
            }
            // File-backed: what is on disk is what a restart reads.
            _ => self.dirs[i].clone().map(Disk::Files),
        };
    }

    /// Stops replica `i` and loses its storage entirely (a wiped data dir
    /// or a failed disk): it restarts with nothing.
    pub fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.crash(i);
        if let Some(dir) = &self.dirs[i] {
            for sub in ["journal", "log"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                }
            }
        }
        self.disks[i] = Some(match self.dirs[i].clone() {
            Some(dir) => Disk::Files(dir),
            None => Disk::Memory(MemoryJournal::new(), Box::new(MemoryLog::new())),
        });
        Ok(())
    }

    /// (Re)starts replica `i` from its storage and reconnects it.
    pub fn restart(&mut self, i: usize) -> Result<(), HostError> {
        if self.hosts[i].is_some() {
            return Ok(());
        }
        let disk = self.disks[i].take().unwrap_or(Disk::Memory(
            MemoryJournal::new(),
            Box::new(MemoryLog::new()),
        ));
        let (journal, recovered, log): (Box<dyn Journal>, _, Box<dyn LogStore>) = match disk {
            Disk::Memory(j, l) => {
                let rec = j.recover()?;
                (Box::new(j), rec, l)
            }
            Disk::Files(dir) => {
                let (j, rec) = FileJournal::open(&dir)?;
                let log = FileLog::open(&dir.join("log"))
                    .map_err(|e| HostError::LogStore(e.to_string()))?;
                (Box::new(j), rec, Box::new(log))
            }
        };
        self.incarnations[i] += 1;
        let host = Host::open(
            self.configs[i].clone(),
            self.crypto[i].clone(),
            journal,
            recovered,
            log,
            self.host_config,
            self.incarnations[i],
        )?;
        self.hosts[i] = Some(host);
        self.stopped[i] = None;
        self.input(i, CoreInput::Start);
        for p in 0..self.hosts.len() {
            if p != i {
                self.input(p, CoreInput::PeerReconnected(ReplicaId(i as u16)));
                self.input(i, CoreInput::PeerReconnected(ReplicaId(p as u16)));
            }
        }
        Ok(())
    }

    /// Stops replica `i` and restarts it on files under `dir` (journal and
    /// log), carrying over what it persisted in memory: its log entries go
    /// into a [`FileLog`], its journal records into a [`FileJournal`]. It
    /// stays on files from then on, crashes included.
    pub fn move_to_files(&mut self, i: usize, dir: &std::path::Path) -> Result<(), HostError> {
        self.crash(i);
        if let Some(Disk::Memory(j, l)) = self.disks[i].take() {
            let mut log =
                FileLog::open(&dir.join("log")).map_err(|e| HostError::LogStore(e.to_string()))?;
            for k in log.len()..l.len() {
                if let Some(e) = l.entry(k)? {
                    log.append(&e);
                }
            }
            for h in l.all_heads()? {
                log.put_head(&h);
            }
            LogStore::sync(&mut log).map_err(HostError::LogStore)?;
            let (mut fj, _) = FileJournal::open(dir)?;
            for r in j.durable() {
                fj.append(r.clone())?;
            }
            fj.sync()?;
        }
        self.dirs[i] = Some(dir.to_path_buf());
        self.disks[i] = Some(Disk::Files(dir.to_path_buf()));
        self.restart(i)
    }

    /// Whether replica `i` runs on files.
    pub fn on_files(&self, i: usize) -> bool {
        self.dirs[i].is_some()
    }

    /// The journal records replica `i` holds durably, if it is stopped on
    /// in-memory storage or running on it.
    pub fn journal_records(&self, i: usize) -> Option<Vec<JournalRecord>> {
        if let Some(Disk::Memory(j, _)) = &self.disks[i] {
            return Some(j.durable().to_vec());
        }
        None
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
        self.hosts
            .iter()
            .flatten()
            .all(|h| ds.iter().all(|d| h.core().leaf_index(d).is_some()))
    }

    /// Checks what must hold between the running replicas: their logs agree
    /// on every index they share, they signed the same head at every size
    /// they share, and no log holds a digest twice.
    pub fn check_agreement(&self) -> Result<(), String> {
        let cores: Vec<(usize, &ReplicaCore)> = (0..self.hosts.len())
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

    /// What clients received so far (replica, client, answer or push),
    /// drained.
    pub fn take_responses(&mut self) -> Vec<(usize, ClientId, ClientMessage)> {
        std::mem::take(&mut self.responses)
    }
}
