//! What each simulated event does: deliveries, timers, client load and
//! races, and the faults — crashes, partitions, blackouts, rings, clock
//! steps, starvation.

use crate::byzantine::is_censored;
use crate::config::Strategy;
use crate::engine::{honest, starves, Event, Sim, SimEvent};
use belfry_replica::clock::Micros;
use belfry_replica::coin::ReplicaId;
use belfry_replica::journal::CrashMode;
use belfry_replica::wire::{self, ClientRequest};
use belfry_replica::CoreInput;
use belfry_world::{ArmedCrash, Disk};
use rand::Rng;

impl Sim {
    /// Schedules the configured faults: crashes, partitions, asymmetric
    /// partitions, starvation, catch-up attacks, rings, blackouts and clock
    /// steps.
    pub(crate) fn schedule_faults(&mut self, end: Micros) {
        let n = self.cfg.n;
        let honest: Vec<usize> = (0..n).filter(|i| honest(&self.cfg, *i)).collect();
        // The honest replicas injected faults may strike: as many as the f
        // budget leaves (`f − faulty`), so that faults that overlap in time
        // never take more than f replicas away at once. With one to spare,
        // every fault strikes the same replica.
        let spare_count = self.cfg.f().saturating_sub(self.cfg.faulty);
        let victims: Vec<usize> = honest.iter().rev().take(spare_count).copied().collect();
        self.schedule_budgeted(&honest, &victims);
        self.schedule_clock_steps(end);
        self.schedule_attacks(&honest);
        self.schedule_network_wide(&victims);
    }

    /// Crashes (also two at once, also wiped), pauses and partitions of
    /// honest replicas: only while at most f replicas are Byzantine or down
    /// at once, unless the fault is meant to go beyond f for a moment.
    fn schedule_budgeted(&mut self, honest: &[usize], victims: &[usize]) {
        let spare = self.cfg.f() > self.cfg.faulty;
        let spare_count = self.cfg.f().saturating_sub(self.cfg.faulty);
        let victim = |k: usize| victims.get(k % victims.len().max(1)).copied();
        // Faults that may take the cluster beyond f for a while: nothing
        // is expected to move then (`track_quorum`), but once they end the
        // cluster must be live again. A replica that restarts wiped must
        // observe until rounds move on, so it counts against f until it
        // rejoins: it is wiped only if the budget leaves room for it once
        // every other fault has ended.
        let anyone = |k: usize| honest.iter().rev().nth(k % honest.len().max(1)).copied();
        if self.cfg.crash {
            self.schedule_crash(victim(0), anyone(0));
        }
        if let (true, Some(a), Some(b)) = (self.cfg.double_crash, anyone(0), anyone(1)) {
            self.schedule_double_crash(a, b, spare_count >= 1);
        }
        if let (true, Some(victim)) = (self.cfg.pause, anyone(1)) {
            self.schedule_pause(victim);
        }
        if let (true, Some(slow)) = (self.cfg.slow_ms > 0, anyone(2)) {
            let delay = Micros::from_millis(self.cfg.slow_ms);
            self.world.network.slow_senders.insert(slow, delay);
            self.mark("slow replica");
        }
        if let (true, Some(victim)) = (self.cfg.partition, victim(1)) {
            self.schedule_partition(victim);
        } else if self.cfg.partition {
            self.mark("partition skipped: f budget used by Byzantine replicas");
        }
        if let (true, Some(victim)) = (self.cfg.one_way, victim(2)) {
            self.schedule_one_way(victim);
        } else if self.cfg.one_way {
            self.mark("asymmetric partition skipped: f budget used by Byzantine replicas");
        }
        if self.cfg.starve && !spare {
            // A replica that cannot order stops voting at its bound: it
            // counts against f like any faulty one.
            self.mark("starve skipped: f budget used by Byzantine replicas");
        }
    }

    /// One crash a third into the run, back 150 ms later (wiped if asked and
    /// within budget); beyond f on `anyone` when the budget has no victim.
    fn schedule_crash(&mut self, victim: Option<usize>, anyone: Option<usize>) {
        let (victim, beyond) = match victim {
            Some(v) => (Some(v), false),
            None => (anyone, true),
        };
        let Some(victim) = victim else {
            return;
        };
        let at = self
            .world
            .now
            .saturating_add(Micros(self.cfg.duration.0 / 3));
        let wipe = self.cfg.wipe && !beyond;
        if beyond {
            self.mark("crash beyond f (the Byzantine replicas used the budget)");
            if self.cfg.wipe {
                self.mark("wipe skipped: a wiped replica beyond f could never rejoin");
            }
        }
        self.world.later(at, SimEvent::ArmCrash(victim));
        self.world.later(
            at.saturating_add(Micros::from_millis(150)),
            SimEvent::Restart(victim, wipe),
        );
    }

    /// Two crashes at once halfway through the run; `a` wiped if `wipe`.
    fn schedule_double_crash(&mut self, a: usize, b: usize, wipe: bool) {
        // Two at once (kill -9 of two processes), both back within a
        // second; the first wiped if it fits the budget afterwards.
        let at = self
            .world
            .now
            .saturating_add(Micros(self.cfg.duration.0 / 2));
        self.world.later(at, SimEvent::ArmCrash(a));
        self.world.later(at, SimEvent::ArmCrash(b));
        self.world.later(
            at.saturating_add(Micros::from_millis(300)),
            SimEvent::Restart(a, wipe),
        );
        self.world.later(
            at.saturating_add(Micros::from_millis(700)),
            SimEvent::Restart(b, false),
        );
        self.mark(if wipe {
            "two crashed at once, one wiped"
        } else {
            "two crashed at once (no wipe: the budget has no room for an observer)"
        });
    }

    /// A 1.2 s pause a quarter into the run.
    fn schedule_pause(&mut self, victim: usize) {
        // Longer than the GC depth at any round rate the simulator
        // reaches: the replica resumes far behind its peers.
        let at = self
            .world
            .now
            .saturating_add(Micros(self.cfg.duration.0 / 4));
        self.world.later(at, SimEvent::Pause(victim));
        self.world.later(
            at.saturating_add(Micros::from_millis(1_200)),
            SimEvent::Resume(victim),
        );
    }

    /// Two partitions of one replica: a short one and one beyond gc_depth.
    fn schedule_partition(&mut self, victim: usize) {
        // Cut off twice: 150 ms (it catches up within gc_depth, by the
        // committed leaders) and 600 ms (beyond it, by a snapshot).
        self.schedule_cuts(victim, &[(5, 150), (2, 600)]);
    }

    /// Cuts `victim` off, for each `(part, ms)`, at `duration / part` from
    /// now for `ms` milliseconds.
    fn schedule_cuts(&mut self, victim: usize, cuts: &[(u64, u64)]) {
        for &(part, ms) in cuts {
            let at = self
                .world
                .now
                .saturating_add(Micros(self.cfg.duration.0 / part));
            self.world.later(at, SimEvent::Cut(victim));
            self.world.later(
                at.saturating_add(Micros::from_millis(ms)),
                SimEvent::Heal(victim),
            );
        }
    }

    /// An asymmetric partition of one replica, each way for 400 ms.
    fn schedule_one_way(&mut self, victim: usize) {
        // An honest replica that can receive but not send for 400 ms,
        // then one that can send but not receive: it counts against f
        // while it lasts, like any partitioned replica.
        let at = self
            .world
            .now
            .saturating_add(Micros(self.cfg.duration.0 / 4));
        let mid = at.saturating_add(Micros::from_millis(400));
        self.world.later(at, SimEvent::OneWay(victim, true));
        self.world.later(mid, SimEvent::OneWay(victim, false));
        self.world.later(
            mid.saturating_add(Micros::from_millis(400)),
            SimEvent::OneWayHeal(victim),
        );
    }

    /// Each replica's clock steps, when they happen within the run.
    fn schedule_clock_steps(&mut self, end: Micros) {
        let n = self.cfg.n;
        for i in 0..n {
            let steps = self.world.clocks[i].as_ref().map(|c| c.steps.clone());
            for step in steps.unwrap_or_default() {
                if step.at < end {
                    self.world.later(step.at, SimEvent::ClockStepped(i));
                }
            }
        }
    }

    /// What the catch-up strategies need from the network: an honest
    /// replica isolated long enough to fall behind.
    fn schedule_attacks(&mut self, honest: &[usize]) {
        let catchup_attack = self.adversary.byz.contains(&Some(Strategy::BadCatchup))
            || self.adversary.byz.contains(&Some(Strategy::StallCatchup));
        if catchup_attack && honest.len() > 1 {
            // The adversary controls the network: it isolates an honest
            // replica twice — 150 ms (it then catches up within gc_depth,
            // FetchLeaders) and 400 ms (beyond it, FetchState) — and the
            // replica asks the adversary too.
            self.schedule_cuts(honest[0], &[(4, 150), (2, 400)]);
            self.mark("catch-up attack isolated an honest replica");
        }
        if self.adversary.byz.contains(&Some(Strategy::NearestHead)) && honest.len() > 1 {
            // Long enough that every state the honest replicas keep is
            // newer than the heads just past the victim's log.
            let victim = honest[0];
            self.adversary.nearest_victim = Some(victim);
            self.schedule_cuts(victim, &[(4, 1_500)]);
            self.mark("nearest-head attack isolated an honest replica");
        }
    }

    /// Starvation of one replica, the majorities ring and the blackout.
    fn schedule_network_wide(&mut self, victims: &[usize]) {
        let victim = |k: usize| victims.get(k % victims.len().max(1)).copied();
        if let (true, Some(victim)) = (self.cfg.starve, victim(3)) {
            // No coin shares and no catch-up answers reach it for 3 s (the
            // adversary controls the network): it cannot order. It is not
            // cut off, so it keeps receiving every round's vertices.
            // Twice: 300 ms (peers prune the coin shares it misses; it gets
            // back by replaying the committed leaders over its own DAG) and
            // 3 s (it stops taking rounds at its bound; back by a snapshot).
            for (part, ms) in [(8, 200), (3, 3_000)] {
                let at = self
                    .world
                    .now
                    .saturating_add(Micros(self.cfg.duration.0 / part));
                self.world
                    .later(at, SimEvent::Starve(victim, Micros::from_millis(ms)));
            }
        }
        if self.cfg.ring {
            // Each replica keeps a quorum of 2f + 1 (itself and f on either
            // side), no two the same quorum, for 1 s. Every replica stays
            // honest and every link heals, so no f budget applies.
            let at = self
                .world
                .now
                .saturating_add(Micros(self.cfg.duration.0 * 3 / 5));
            self.world.later(at, SimEvent::Ring);
            self.world
                .later(at.saturating_add(Micros::from_secs(1)), SimEvent::RingHeal);
        }
        if self.cfg.blackout {
            // Every link down for 3 s: no quorum anywhere, then a heal. Not
            // a replica fault, so no f budget applies.
            let at = self
                .world
                .now
                .saturating_add(Micros(self.cfg.duration.0 / 3));
            self.world.later(at, SimEvent::Blackout);
            self.world
                .later(at.saturating_add(Micros::from_secs(3)), SimEvent::Daylight);
        }
    }

    pub(crate) fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, frame } => {
                if !self.world.reaches(from, to) {
                    return;
                }
                if self.adversary.starved.is_some_and(|(i, _)| i == to) && starves(&frame) {
                    self.mark("starve drop");
                    return;
                }
                if self.adversary.paused.contains(&to) {
                    // Its connections time out while it sleeps.
                    self.mark("paused drop");
                    return;
                }
                self.world.count_frame(&frame);
                let from = ReplicaId(from as u16);
                self.input(to, CoreInput::Peer { from, frame });
            }
            Event::Timer { node, set } if self.adversary.paused.contains(&node) => {
                self.adversary
                    .held_events
                    .push((node, Event::Timer { node, set }));
            }
            Event::SyncDone { node, incarnation } if self.adversary.paused.contains(&node) => {
                self.adversary
                    .held_events
                    .push((node, Event::SyncDone { node, incarnation }));
            }
            wake @ (Event::Timer { .. } | Event::SyncDone { .. }) => {
                if let Ok((node, turn)) = self.world.wake(wake) {
                    self.settle(node, turn);
                }
            }
            // The simulator's clients submit through `SimEvent::Submit`.
            Event::Client { .. } => {}
            Event::Other(e) => self.handle_own(e),
        }
    }

    /// The simulator's own events: load, races and faults.
    fn handle_own(&mut self, event: SimEvent) {
        match event {
            SimEvent::Submit { .. } | SimEvent::Load | SimEvent::Race(..) => {
                self.handle_load(event)
            }
            SimEvent::ArmCrash(..)
            | SimEvent::Restart(..)
            | SimEvent::Pause(..)
            | SimEvent::Resume(..)
            | SimEvent::ClockStepped(..)
            | SimEvent::Starve(..)
            | SimEvent::Fed(..) => self.handle_replica_fault(event),
            SimEvent::Cut(..)
            | SimEvent::Heal(..)
            | SimEvent::Blackout
            | SimEvent::Daylight
            | SimEvent::OneWay(..)
            | SimEvent::OneWayHeal(..)
            | SimEvent::Ring
            | SimEvent::RingHeal => self.handle_network_fault(event),
        }
    }

    /// The load: clients' submissions and races.
    fn handle_load(&mut self, event: SimEvent) {
        match event {
            SimEvent::Submit { node, mut digests } => {
                if self.adversary.byz[node] == Some(Strategy::WithholdAndRush) {
                    self.front_run(&mut digests);
                }
                if self.adversary.byz[node] == Some(Strategy::Censor)
                    && digests.iter().any(is_censored)
                {
                    // Its replica drops these from every report it makes.
                    self.mark("strategy censor");
                }
                let digests = digests;
                if honest(&self.cfg, node) && self.world.replicas[node].host.is_some() {
                    for d in &digests {
                        let seen = self
                            .oracle
                            .first_seen
                            .entry(*d)
                            .or_insert_with(|| vec![None; self.cfg.n]);
                        seen[node].get_or_insert(self.world.now);
                    }
                }
                if let Ok(frame) = wire::encode(&ClientRequest::Submit(digests)) {
                    self.input(node, CoreInput::Client { client: 1, frame });
                }
            }
            SimEvent::Load => {
                self.sample_memory();
                self.fetch_flood();
                let per_ms = self.cfg.load_per_s as f64 / 1_000.0;
                let k = per_ms.floor() as u64
                    + u64::from(
                        self.load_rng
                            .gen_bool((per_ms - per_ms.floor()).clamp(0.0, 1.0)),
                    );
                if k > 0 {
                    let ds: Vec<[u8; 32]> = (0..k).map(|_| self.fresh_digest(0)).collect();
                    self.submit_all(&ds, None);
                }
                self.world.later(
                    self.world.now.saturating_add(Micros::from_millis(1)),
                    SimEvent::Load,
                );
            }
            SimEvent::Race(k) => {
                self.race(k);
                self.rush();
            }
            // Routed elsewhere by `handle_own`.
            _ => {}
        }
    }

    /// Faults of one replica: crashes, restarts (wiped or not), pauses, clock steps, starvation.
    fn handle_replica_fault(&mut self, event: SimEvent) {
        match event {
            SimEvent::ArmCrash(i) => {
                let at_tick = self.world.fault_rng.gen_bool(0.5);
                let torn = self.world.fault_rng.gen_bool(0.5);
                self.world.replicas[i].crash_armed = Some(ArmedCrash { at_tick, torn });
                self.mark(if at_tick {
                    "crash armed at a Tick"
                } else {
                    "crash armed"
                });
            }
            SimEvent::Restart(i, wipe) => {
                if self.world.replicas[i].host.is_some() {
                    // The armed crash has not struck yet: crash now.
                    self.crash(i, CrashMode::LoseUnsynced);
                }
                self.world.replicas[i].crash_armed = None;
                self.mark("crash");
                if wipe {
                    self.world.replicas[i].disk = Some(Disk::empty());
                    self.mark("wiped");
                }
                if self.restart(i) {
                    // The restarted replica hears the others late for a
                    // while, as over a congested link: catch-up and
                    // re-derivation race its peers' messages.
                    let slow = Micros(self.world.fault_rng.gen_range(1_000..4_000));
                    let until = self.world.now.saturating_add(Micros::from_millis(600));
                    self.world.network.slow_receivers.insert(i, (until, slow));
                    self.mark("slow link after a restart");
                    self.fault_ended(&[i]);
                }
            }
            SimEvent::Pause(i) => {
                self.adversary.paused.insert(i);
                self.mark("paused");
            }
            SimEvent::Resume(i) => {
                self.adversary.paused.remove(&i);
                self.mark("resumed");
                let now = self.world.now;
                let (mine, rest): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.adversary.held_events)
                        .into_iter()
                        .partition(|(j, _)| *j == i);
                self.adversary.held_events = rest;
                for (_, e) in mine {
                    self.world.schedule(now, e);
                }
                self.reconnect(i);
                self.fault_ended(&[i]);
            }
            SimEvent::ClockStepped(_) => self.mark("clock step"),
            SimEvent::Starve(i, long) => {
                let until = self.world.now.saturating_add(long);
                self.adversary.starved = Some((i, until));
                self.world.later(until, SimEvent::Fed(i));
                self.mark("starve: a replica gets no coin shares or catch-up answers");
            }
            SimEvent::Fed(i) => {
                self.adversary.starved = None;
                self.mark("starvation ended");
                self.fault_ended(&[i]);
            }
            // Routed elsewhere by `handle_own`.
            _ => {}
        }
    }

    /// Faults of the network: cut-off replicas, blackouts, one-way links, the majorities ring.
    fn handle_network_fault(&mut self, event: SimEvent) {
        match event {
            SimEvent::Cut(i) => {
                for p in 0..self.cfg.n {
                    self.world.network.down.insert((i, p));
                    self.world.network.down.insert((p, i));
                }
                self.mark("partition");
            }
            SimEvent::Heal(i) => {
                self.world.network.down.retain(|(a, b)| *a != i && *b != i);
                self.mark("heal");
                self.reconnect(i);
                self.fault_ended(&[i]);
            }
            SimEvent::Blackout => {
                self.oracle
                    .no_quorum
                    .push((self.world.now, Micros(u64::MAX)));
                for a in 0..self.cfg.n {
                    for b in 0..self.cfg.n {
                        self.world.network.down.insert((a, b));
                    }
                }
                self.mark("blackout");
            }
            SimEvent::Daylight => self.heal_all("blackout healed"),
            SimEvent::OneWay(i, out) => {
                self.world.network.down.retain(|(a, b)| *a != i && *b != i);
                for p in (0..self.cfg.n).filter(|p| *p != i) {
                    self.world
                        .network
                        .down
                        .insert(if out { (i, p) } else { (p, i) });
                }
                self.mark(if out {
                    "asymmetric partition: a replica hears all, nobody hears it"
                } else {
                    "asymmetric partition: everybody hears a replica, it hears nobody"
                });
            }
            SimEvent::OneWayHeal(i) => {
                self.world.network.down.retain(|(a, b)| *a != i && *b != i);
                self.mark("asymmetric partition healed");
                self.reconnect(i);
                self.fault_ended(&[i]);
            }
            SimEvent::Ring => {
                // Each replica keeps the links to the `d` replicas on either
                // side, `2d + 1 >= Q`: every neighbourhood is a quorum, no
                // two the same one. Reliable broadcast still stalls (a VAL
                // reaches only its author's neighbourhood, and no ECHO
                // quorum forms anywhere), so no progress is expected until
                // the heal.
                let (n, q) = (self.cfg.n, self.cfg.n - self.cfg.f());
                let side = (q - 1).div_ceil(2);
                for a in 0..n {
                    for b in 0..n {
                        let d = (a + n - b) % n;
                        if d.min(n - d) > side {
                            self.world.network.down.insert((a, b));
                        }
                    }
                }
                self.oracle
                    .no_quorum
                    .push((self.world.now, Micros(u64::MAX)));
                self.mark("majorities ring");
            }
            SimEvent::RingHeal => self.heal_all("majorities ring healed"),
            // Routed elsewhere by `handle_own`.
            _ => {}
        }
    }

    /// Every link up again after a fault of the whole network: everyone
    /// reconnects, and every replica's fault has ended.
    fn heal_all(&mut self, what: &str) {
        self.world.network.down.clear();
        self.mark(what);
        self.end_no_quorum();
        for i in 0..self.cfg.n {
            self.reconnect(i);
        }
        let all: Vec<usize> = (0..self.cfg.n).collect();
        self.fault_ended(&all);
    }
}
