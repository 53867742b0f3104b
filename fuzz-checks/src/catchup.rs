//! Catch-up answers — `LogRange` pages, `State` pages, `Leaders` pages and
//! `CannotServe` (`PeerMessage`, docs/recovery.md) — fed to a real
//! [`ReplicaCore`] that is catching up, with mock crypto.
//!
//! The fixture (built once per process): an in-process cluster of four
//! replicas with [`MockCrypto`] orders digests while replica 3 is cut off;
//! then a blank replica 3 (the *victim*) hears the latest vertex of each
//! other replica, sees that it lags, and asks for the log. Each input is a
//! script of answers to it:
//!
//! ```text
//! (from u8 < 0xF0 || len u16 || frame[len])   a frame from replica from % 4
//! (0xF0..=0xFF)                               1 s passes; the catch-up timer fires
//! ```
//!
//! Checked after every step: the victim never logs an entry other than the
//! cluster's at that index (every page is checked against a signed head,
//! and the fuzzer cannot sign), and it never finds its own state
//! inconsistent (`poisoned`). The seed is the script the cluster really
//! answered with (`fuzz-seeds`), so the fuzzer starts from a catch-up that
//! completes.

use belfry_replica::broadcast::Message;
use belfry_replica::clock::Micros;
use belfry_replica::coin::{
    ClusterParams, GroupPublicKey, MockCrypto, Policy, ReplicaId, ThresholdCrypto,
};
use belfry_replica::journal::JournalRecord;
use belfry_replica::timestamp::Entry;
use belfry_replica::wire::{self, ClientRequest, PeerMessage};
use belfry_replica::{CoreInput, CoreStep, CoreTimer, Frame, ReplicaConfig, ReplicaCore};
use belfry_world::LocalCluster;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

const N: usize = 4;
const VICTIM: usize = 3;
const GENESIS: Micros = Micros(1_763_700_000_000_000);
/// Any valid group key: the mock crypto never uses it.
const GROUP_KEY: &str = "908a6a48626931f1b1451d596204c1683f1d4f9f9ee06b86259dd5ce555fe788c866267772af319b3bd4c3a3091bf4b0";
const MOCK_KEY: [u8; 32] = [7; 32];
/// A script event that is a timer, not a frame.
const TIMER: u8 = 0xF0;

/// What every input starts from.
pub struct Fixture {
    configs: Vec<ReplicaConfig>,
    /// The latest vertex of each replica but the victim, as `Val` frames:
    /// they tell the victim how far the cluster is.
    prelude: Vec<(ReplicaId, Vec<u8>)>,
    /// The cluster's log.
    log: Vec<Entry>,
    /// The time the victim lives at.
    now: Micros,
    /// The answers the cluster gave the victim, as a script (the seed).
    pub script: Vec<u8>,
    /// The victim's log length after the seed script.
    pub caught_up_to: u64,
    /// Replica 0's journal records (a seed for the journal targets).
    journal: Vec<JournalRecord>,
}

/// Replica 0's journal records in the fixture's cluster.
pub fn fixture_journal() -> Vec<JournalRecord> {
    fixture().journal.clone()
}

fn crypto(i: usize) -> Arc<dyn ThresholdCrypto> {
    Arc::new(MockCrypto::new(N, 1, ReplicaId(i as u16), MOCK_KEY))
}

/// The fixture (built once).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let cluster = ClusterParams {
        group_public_key: GroupPublicKey::from_hex(GROUP_KEY).expect("a group key"),
        n: N as u16,
        f: 1,
        policy: Policy::Lamport,
        genesis_time: GENESIS,
    };
    // The fixture's history must not depend on pacing (the committed corpus
    // holds answers recorded from it): rounds at one pace throughout.
    let configs: Vec<ReplicaConfig> = (0..N)
        .map(|i| {
            let mut c = ReplicaConfig::new(ReplicaId(i as u16), cluster);
            c.broadcast.idle_round_interval = c.broadcast.round_interval;
            c
        })
        .collect();
    let mut c = LocalCluster::new(cluster, configs.clone(), (0..N).map(crypto).collect(), 23);
    c.cut_off(VICTIM);
    // 400 ms at the in-process cluster's pace is some 50 rounds: far
    // more than the victim may lag, and a small seed script.
    for k in 0u8..4 {
        let digests = (0..8u8).map(|j| [k, j, 0xF2, 0x23].repeat(8).try_into().unwrap_or([0; 32]));
        c.request_all(1, &ClientRequest::Submit(digests.collect()));
        let until = c.now().saturating_add(Micros::from_millis(100));
        c.run_until(until, |_| false);
    }
    let now = c.now();
    let core0 = c.core(0).expect("replica 0 runs");
    let log = core0.log();
    let mut prelude = Vec::new();
    for i in 0..N {
        if i == VICTIM {
            continue;
        }
        let Some(v) = c.core(i).and_then(|core| {
            core.node()
                .dag()
                .vertices()
                .filter(|v| v.author.index() == i)
                .max_by_key(|v| v.round)
                .cloned()
        }) else {
            continue;
        };
        let m = PeerMessage::Broadcast(Message::Val((*v).clone()));
        prelude.push((
            ReplicaId(i as u16),
            wire::encode(&m).expect("a vertex frame"),
        ));
    }
    // Record what replicas 0..3 answer the victim.
    let answers: Rc<RefCell<Vec<(usize, PeerMessage)>>> = Rc::default();
    for i in 0..N {
        if i != VICTIM {
            let answers = answers.clone();
            c.tamper[i] = Some(Box::new(move |m: &mut PeerMessage| {
                if is_answer(m) {
                    answers.borrow_mut().push((i, m.clone()));
                }
                true
            }));
        }
    }
    let mut fixture = Fixture {
        configs,
        prelude,
        log,
        now,
        script: Vec::new(),
        caught_up_to: 0,
        journal: Vec::new(),
    };
    let mut pending: Vec<(Option<usize>, Vec<u8>)> = Vec::new();
    let mut victim = fixture.victim(&mut pending);
    for _ in 0..10_000 {
        let Some((to, frame)) = pending.pop() else {
            break;
        };
        let Ok(m) = wire::decode::<PeerMessage>(&frame) else {
            continue;
        };
        if !matches!(
            m,
            PeerMessage::FetchLog { .. }
                | PeerMessage::FetchState { .. }
                | PeerMessage::FetchLeaders { .. }
        ) {
            continue;
        }
        for p in (0..N).filter(|p| *p != VICTIM && to.is_none_or(|t| t == *p)) {
            c.input(
                p,
                CoreInput::Peer {
                    from: ReplicaId(VICTIM as u16),
                    frame: frame.clone(),
                },
            );
            let got: Vec<_> = answers.borrow_mut().drain(..).collect();
            for (from, answer) in got {
                let frame = wire::encode(&answer).expect("an answer frame");
                fixture.script.push(from as u8);
                fixture
                    .script
                    .extend_from_slice(&(frame.len() as u16).to_be_bytes());
                fixture.script.extend_from_slice(&frame);
                let step = victim.handle(
                    now,
                    CoreInput::Peer {
                        from: ReplicaId(from as u16),
                        frame,
                    },
                );
                collect(step, &mut pending);
            }
        }
    }
    fixture.caught_up_to = victim.log_len();
    // A memory journal is readable once its replica stops.
    c.crash(0);
    fixture.journal = c.journal_records(0).unwrap_or_default();
    fixture
}

fn is_answer(m: &PeerMessage) -> bool {
    matches!(
        m,
        PeerMessage::LogRange { .. }
            | PeerMessage::State { .. }
            | PeerMessage::Leaders { .. }
            | PeerMessage::CannotServe(_)
    )
}

fn collect(step: CoreStep, pending: &mut Vec<(Option<usize>, Vec<u8>)>) {
    for (to, frame) in step.messages.into_iter().filter_map(|f| match f {
        Frame::Peer(to, frame) => Some((to, frame)),
        Frame::Client(..) => None,
    }) {
        let to = match to {
            belfry_replica::broadcast::Target::All => None,
            belfry_replica::broadcast::Target::One(r) => Some(r.index()),
        };
        pending.insert(0, (to, frame));
    }
}

impl Fixture {
    /// A blank replica 3 that has heard the cluster's latest vertices (and
    /// so asks for the log); what it sends goes to `sent`.
    fn victim(&self, sent: &mut Vec<(Option<usize>, Vec<u8>)>) -> ReplicaCore {
        let mut v = ReplicaCore::new(self.configs[VICTIM].clone(), crypto(VICTIM));
        collect(v.handle(self.now, CoreInput::Start), sent);
        for (from, frame) in &self.prelude {
            let step = v.handle(
                self.now,
                CoreInput::Peer {
                    from: *from,
                    frame: frame.clone(),
                },
            );
            collect(step, sent);
        }
        v
    }

    fn check(&self, v: &ReplicaCore) {
        assert_eq!(
            v.poisoned(),
            None,
            "the victim found its own state inconsistent"
        );
        let len = v.log_len().min(self.log.len() as u64);
        for i in 0..len {
            assert_eq!(
                v.entry(i).as_ref(),
                self.log.get(i as usize),
                "the victim logged an entry the cluster did not, at {i}"
            );
        }
    }
}

/// One script of answers to the catching-up victim.
pub fn catchup(data: &[u8]) {
    let fx = fixture();
    let mut v = fx.victim(&mut Vec::new());
    let mut now = fx.now;
    let mut rest = data;
    while let Some((&from, tail)) = rest.split_first() {
        if from >= TIMER {
            now = now.saturating_add(Micros::from_secs(1));
            let _ = v.handle(now, CoreInput::Timer(CoreTimer::CatchUp));
            rest = tail;
        } else {
            let Some((len, tail)) = tail.split_first_chunk::<2>() else {
                return;
            };
            let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
            let (frame, tail) = tail.split_at(len);
            let _ = v.handle(
                now,
                CoreInput::Peer {
                    from: ReplicaId(u16::from(from) % N as u16),
                    frame: frame.to_vec(),
                },
            );
            rest = tail;
        }
        fx.check(&v);
    }
}
