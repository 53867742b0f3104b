//! Hosting the replicas: each runs the same [`Host`] the node runs. The
//! world seals and syncs its turns (with the configured fsync latency:
//! group commit), strikes armed crashes between flush and sync, crashes,
//! wipes and reopens replicas from what their storage kept. What a durable
//! turn releases goes back to the driver as a [`Turn`]: the driver routes it
//! (through its adversary, if it has one) and then asks for the next turn.

use crate::world::{Event, World};
use belfry_replica::filelog::FileLog;
use belfry_replica::host::TimerSet;
use belfry_replica::journal::{
    CrashMode, FileJournal, Journal, JournalRecord, MemoryJournal, Recovered, TurnRecord,
};
use belfry_replica::timestamp::store::{LogStore, MemoryLog};
use belfry_replica::timestamp::Entry;
use belfry_replica::{CoreInput, Host, HostError, Released};
use rand::Rng;
use std::path::{Path, PathBuf};

/// A journal the world can host: in memory (crashes keep what was synced)
/// or any journal boxed, file-backed ones included.
pub trait HostedJournal: Journal + Sized {
    /// This journal over an in-memory one.
    fn from_memory(journal: MemoryJournal) -> Self;
    /// The journal under `dir`, and what it recovered.
    fn open_files(dir: &Path) -> Result<(Self, Recovered), HostError>;
    /// The journal as an in-memory one, if it is one.
    fn into_memory_journal(self) -> Option<MemoryJournal>;
    /// Records appended and not yet synced (0 where not known).
    fn unsynced(&self) -> usize;
    /// The last turn appended and not yet synced, where known.
    fn last_unsynced_turn(&self) -> Option<&TurnRecord>;
}

impl HostedJournal for MemoryJournal {
    fn from_memory(journal: MemoryJournal) -> Self {
        journal
    }
    fn open_files(_: &Path) -> Result<(Self, Recovered), HostError> {
        Err(HostError::Driver(
            "a world of in-memory journals has no files",
        ))
    }
    fn into_memory_journal(self) -> Option<MemoryJournal> {
        Some(self)
    }
    fn unsynced(&self) -> usize {
        MemoryJournal::unsynced(self)
    }
    fn last_unsynced_turn(&self) -> Option<&TurnRecord> {
        MemoryJournal::last_unsynced_turn(self)
    }
}

impl HostedJournal for Box<dyn Journal> {
    fn from_memory(journal: MemoryJournal) -> Self {
        Box::new(journal)
    }
    fn open_files(dir: &Path) -> Result<(Self, Recovered), HostError> {
        let (j, recovered) = FileJournal::open(dir)?;
        Ok((Box::new(j), recovered))
    }
    fn into_memory_journal(self) -> Option<MemoryJournal> {
        self.into_memory()
    }
    fn unsynced(&self) -> usize {
        0
    }
    fn last_unsynced_turn(&self) -> Option<&TurnRecord> {
        None
    }
}

/// Where a stopped replica's journal and log are.
#[derive(Debug)]
pub enum Disk {
    /// In memory (survives a crash of the replica, not of the process).
    Memory(MemoryJournal, Box<MemoryLog>),
    /// In a directory: `<dir>/journal` and `<dir>/log`.
    Files(PathBuf),
}

impl Disk {
    /// Empty in-memory storage.
    pub fn empty() -> Disk {
        Disk::Memory(MemoryJournal::new(), Box::default())
    }
}

/// How an armed crash strikes.
#[derive(Clone, Copy, Debug)]
pub struct ArmedCrash {
    /// Strike only at a turn that appends a Tick (the recovery boundary
    /// between a batch's log entries and the node's ordering state).
    pub at_tick: bool,
    /// Whether the sealed turn's record is torn (else lost whole).
    pub torn: bool,
}

/// One replica of the world: its host while it runs, the storage a crash
/// leaves behind while it is down.
pub struct Hosted<J: Journal> {
    /// The host, while the replica runs.
    pub host: Option<Host<J>>,
    /// The storage of a stopped replica.
    pub disk: Option<Disk>,
    /// The directory of a replica on files.
    pub dir: Option<PathBuf>,
    /// Starts and crashes so far (timers and sync completions of earlier
    /// incarnations are stale).
    pub incarnation: u64,
    /// A sealed turn waits for its journal sync.
    pub syncing: bool,
    /// An armed crash: it strikes when the next turn is sealed.
    pub crash_armed: Option<ArmedCrash>,
}

impl<J: Journal> Default for Hosted<J> {
    fn default() -> Self {
        Hosted {
            host: None,
            disk: Some(Disk::empty()),
            dir: None,
            incarnation: 0,
            syncing: false,
            crash_armed: None,
        }
    }
}

/// What became of a replica's turn.
#[must_use]
#[derive(Debug)]
pub enum Turn {
    /// Nothing left the replica: it is down, or the turn waits for a sync.
    Quiet,
    /// The turn is durable: what it released, for the driver to route.
    Released(Released),
    /// An armed crash struck before the turn was durable.
    Crashed,
    /// The host failed (storage, a poisoned core); the replica is stopped.
    Failed(HostError),
}

impl<J: HostedJournal, X> World<J, X> {
    /// Replica `i`'s host, if it runs.
    pub fn host(&self, i: usize) -> Option<&Host<J>> {
        self.replicas.get(i)?.host.as_ref()
    }

    /// Replica `i`'s host, if it runs, to drive by hand.
    pub fn host_mut(&mut self, i: usize) -> Option<&mut Host<J>> {
        self.replicas.get_mut(i)?.host.as_mut()
    }

    /// Whether replica `i` runs.
    pub fn running(&self, i: usize) -> bool {
        self.host(i).is_some()
    }

    /// A host for replica `i` over `disk`.
    pub fn open_host(&self, i: usize, disk: Disk, incarnation: u64) -> Result<Host<J>, HostError> {
        let (journal, recovered, log): (J, _, Box<dyn LogStore>) = match disk {
            Disk::Memory(j, l) => {
                let recovered = j.recover()?;
                (J::from_memory(j), recovered, l)
            }
            Disk::Files(dir) => {
                let (j, recovered) = J::open_files(&dir)?;
                let log = FileLog::open(&dir.join("log"))?;
                (j, recovered, Box::new(log))
            }
        };
        Host::open(
            self.configs[i].clone(),
            self.crypto[i].clone(),
            journal,
            recovered,
            log,
            self.host_config,
            incarnation,
        )
    }

    /// Opens replica `i`'s host again from the storage it left (empty
    /// storage if none). The driver then starts it (`CoreInput::Start`).
    pub fn reopen(&mut self, i: usize) -> Result<(), HostError> {
        let disk = self.replicas[i].disk.take().unwrap_or_else(Disk::empty);
        let incarnation = self.replicas[i].incarnation + 1;
        let host = self.open_host(i, disk, incarnation)?;
        let r = &mut self.replicas[i];
        r.host = Some(host);
        r.incarnation = incarnation;
        r.syncing = false;
        Ok(())
    }

    /// Stops replica `i` as a power cut would: the sealed turn's record is
    /// lost or torn (in memory), the log store keeps only what was synced
    /// to it, files keep what is on disk. False if it was not running.
    pub fn crash(&mut self, i: usize, mode: CrashMode) -> bool {
        let r = &mut self.replicas[i];
        let Some(host) = r.host.take() else {
            return false;
        };
        let (journal, log) = host.into_parts();
        r.disk = match (journal.into_memory_journal(), log.into_memory_log()) {
            (Some(mut j), Some(mut l)) => {
                j.crash(mode);
                l.lose_unsynced();
                Some(Disk::Memory(j, Box::new(l)))
            }
            (Some(mut j), None) => {
                j.crash(mode);
                Some(Disk::Memory(j, Box::default()))
            }
            _ => r.dir.clone().map(Disk::Files),
        };
        r.syncing = false;
        // Pending timers and syncs belong to the old incarnation now.
        r.incarnation += 1;
        true
    }

    /// Stops replica `i` and loses its storage entirely (a wiped data
    /// directory or a failed disk): it reopens with nothing.
    pub fn wipe(&mut self, i: usize) -> Result<(), String> {
        self.crash(i, CrashMode::LoseUnsynced);
        if let Some(dir) = &self.replicas[i].dir {
            for sub in ["journal", "log"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                }
            }
        }
        self.replicas[i].disk = Some(match self.replicas[i].dir.clone() {
            Some(dir) => Disk::Files(dir),
            None => Disk::empty(),
        });
        Ok(())
    }

    /// Stops replica `i` and reopens it on files under `dir` (journal and
    /// log), carrying over what it persisted in memory. It stays on files
    /// from then on, crashes included. The driver then starts it.
    pub fn move_to_files(&mut self, i: usize, dir: &Path) -> Result<(), HostError> {
        self.crash(i, CrashMode::LoseUnsynced);
        if let Some(Disk::Memory(j, l)) = self.replicas[i].disk.take() {
            let mut log = FileLog::open(&dir.join("log"))?;
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
        self.replicas[i].dir = Some(dir.to_path_buf());
        self.replicas[i].disk = Some(Disk::Files(dir.to_path_buf()));
        self.reopen(i)
    }

    /// The journal records replica `i` holds durably, if it is stopped on
    /// in-memory storage.
    pub fn journal_records(&self, i: usize) -> Option<Vec<JournalRecord>> {
        match &self.replicas.get(i)?.disk {
            Some(Disk::Memory(j, _)) => Some(j.durable().to_vec()),
            _ => None,
        }
    }

    /// Hands one input to replica `i` at its local time, and seals the turn
    /// unless a sync is in flight (then the input joins the next turn).
    pub fn handle(&mut self, i: usize, input: CoreInput) -> Turn {
        let local = self.local(i);
        let Some(host) = self.replicas[i].host.as_mut() else {
            return Turn::Quiet;
        };
        host.handle(local, input);
        self.seal(i)
    }

    /// Fires replica `i`'s timer at its local time; a timer that fires
    /// makes a turn.
    pub fn fire(&mut self, i: usize, set: TimerSet) -> Turn {
        let local = self.local(i);
        let fired = self.replicas[i]
            .host
            .as_mut()
            .is_some_and(|h| h.fire(local, set));
        if fired {
            self.seal(i)
        } else {
            Turn::Quiet
        }
    }

    /// Seals replica `i`'s open turn unless a sync is in flight.
    pub fn seal(&mut self, i: usize) -> Turn {
        if self.replicas[i].syncing {
            Turn::Quiet
        } else {
            self.flush(i)
        }
    }

    /// Runs a host's own event — a timer that fired, a journal sync that
    /// completed — and returns the replica and the turn it made; any other
    /// event is handed back for the driver to route.
    pub fn wake(&mut self, event: Event<X>) -> Result<(usize, Turn), Event<X>> {
        match event {
            Event::Timer { node, set } => Ok((node, self.fire(node, set))),
            Event::SyncDone { node, incarnation } => Ok((node, self.sync_done(node, incarnation))),
            other => Err(other),
        }
    }

    /// Replica `i`'s journal sync completed (if of its incarnation).
    pub fn sync_done(&mut self, i: usize, incarnation: u64) -> Turn {
        if self.replicas[i].incarnation == incarnation {
            self.sync(i)
        } else {
            Turn::Quiet
        }
    }

    /// After the driver routed a released turn: seals what arrived while
    /// the turn was syncing.
    pub fn next_turn(&mut self, i: usize) -> Turn {
        if self.host(i).is_some_and(|h| h.turn_open()) {
            self.flush(i)
        } else {
            Turn::Quiet
        }
    }

    fn flush(&mut self, i: usize) -> Turn {
        let Some(host) = self.replicas[i].host.as_mut() else {
            return Turn::Quiet;
        };
        let durable = match host.flush() {
            Ok(d) => d,
            Err(e) => {
                self.crash(i, CrashMode::LoseUnsynced);
                return Turn::Failed(e);
            }
        };
        if durable && self.strike_armed_crash(i) {
            return Turn::Crashed;
        }
        if durable && self.fsync > belfry_replica::clock::Micros::ZERO {
            self.replicas[i].syncing = true;
            let at = self.now.saturating_add(self.fsync);
            let incarnation = self.replicas[i].incarnation;
            self.schedule(
                at,
                Event::SyncDone {
                    node: i,
                    incarnation,
                },
            );
            Turn::Quiet
        } else {
            self.sync(i)
        }
    }

    /// An armed crash strikes while the sealed turn is not yet durable (at
    /// a turn that appends a Tick, if aimed there).
    fn strike_armed_crash(&mut self, i: usize) -> bool {
        let Some(armed) = self.replicas[i].crash_armed else {
            return false;
        };
        let unsynced = self.host(i).map_or(0, |h| h.journal().unsynced());
        if armed.at_tick {
            let has_tick = self.host(i).is_some_and(|h| {
                matches!(
                    h.journal().last_unsynced_turn(),
                    Some(t) if t.entries.iter().any(|e| matches!(e, Entry::Tick(_)))
                )
            });
            if !has_tick {
                return false;
            }
        }
        let mode = if armed.torn && unsynced > 0 {
            CrashMode::Torn {
                survive: self.fault_rng.gen_range(0..unsynced),
            }
        } else {
            CrashMode::LoseUnsynced
        };
        self.replicas[i].crash_armed = None;
        self.crash(i, mode);
        self.mark(match (armed.at_tick, armed.torn) {
            (true, true) => "crash mid-write at a Tick, record torn",
            (true, false) => "crash mid-write at a Tick",
            (false, true) => "crash mid-write, record torn",
            (false, false) => "crash mid-write",
        });
        true
    }

    fn sync(&mut self, i: usize) -> Turn {
        self.replicas[i].syncing = false;
        let Some(host) = self.replicas[i].host.as_mut() else {
            return Turn::Quiet;
        };
        match host.sync() {
            Ok(released) => Turn::Released(released),
            Err(e) => {
                self.crash(i, CrashMode::LoseUnsynced);
                Turn::Failed(e)
            }
        }
    }
}
