//! A user-space UDP fault proxy for `belfry-bench chaos`: the network
//! faults a kernel without `netem` cannot inject.
//!
//! A [`Relay`] listens on a loopback port and forwards every datagram it
//! receives to one target; for each source it binds an upstream socket
//! (like a NAT), and what the target answers there goes back to the source
//! from the relay's own port — so the source sees its peer at the relay's
//! address. QUIC needs nothing more: replicas authenticate each other and
//! clients authenticate replicas by pinned certificate, never by address.
//!
//! Each relay has two [`Direction`]s, `up` (source → target) and `down`
//! (target → source), and each direction a [`Shape`] that a shared handle
//! changes at run time: loss probability, delay plus uniform jitter (which
//! reorders), duplication, a bandwidth limit (a token bucket on bytes that
//! polices: a datagram over the limit is dropped, as a router's policer
//! does) and `blocked` (drop everything). Blocking directions is how
//! partitions are built (see [`partition`]).
//!
//! The decision for each datagram is a pure function of the shape, the
//! direction's seeded ChaCha stream and the time passed in
//! ([`Direction::decide`]); the async shell only moves bytes and sleeps
//! out the delays. Everything is bounded: [`DELAYED_MAX`] datagrams wait
//! out a delay per direction (more are dropped and counted), a relay takes
//! at most [`SOURCES_MAX`] sources, and every drop is counted by reason in
//! [`Stats`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// The largest datagram a relay reads (UDP's limit).
pub const DATAGRAM_BYTES_MAX: usize = 65_535;
/// Datagrams waiting out a delay, per direction; more are dropped.
pub const DELAYED_MAX: usize = 4_096;
/// Sources one relay forwards for; datagrams from more are dropped.
pub const SOURCES_MAX: usize = 64;

/// What one direction of a relay does to the datagrams it carries. The
/// default passes everything at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Shape {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Delay every datagram gets.
    pub delay_ms: u64,
    /// Extra delay, uniform in `0..=jitter_ms` per datagram (reorders).
    pub jitter_ms: u64,
    /// Probability a datagram is sent twice (each copy delayed on its own).
    pub duplicate: f64,
    /// Bytes per second at most (none: unlimited); the bucket holds
    /// [`BURST_BYTES`] or one second's worth, whichever is less.
    pub rate_bytes_per_s: Option<u64>,
    /// Drop everything.
    pub blocked: bool,
}

/// The token bucket's depth at most.
pub const BURST_BYTES: u64 = 16 * 1024;

impl Shape {
    /// Everything dropped.
    pub fn blocked() -> Shape {
        Shape {
            blocked: true,
            ..Shape::default()
        }
    }
}

/// A token bucket on bytes: `rate_bytes_per_s` refill, `burst_bytes` deep;
/// time is passed in (since any fixed origin).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_bytes_per_s: u64,
    burst_bytes: u64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate_bytes_per_s: u64, burst_bytes: u64, now: Duration) -> TokenBucket {
        assert!(burst_bytes > 0, "an empty bucket passes nothing");
        TokenBucket {
            rate_bytes_per_s,
            burst_bytes,
            tokens: burst_bytes as f64,
            last: now,
        }
    }

    /// Whether `bytes` may pass at `now` (and if so, they are taken).
    pub fn take(&mut self, now: Duration, bytes: usize) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens =
            (self.tokens + elapsed * self.rate_bytes_per_s as f64).min(self.burst_bytes as f64);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// The direction is blocked.
    Blocked,
    /// Lost at random.
    Loss,
    /// Over the bandwidth limit.
    Rate,
}

/// What happens to one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Dropped.
    Drop(Drop),
    /// Sent once per delay (two delays: duplicated).
    Send(Vec<Duration>),
}

/// Datagrams a relay (or a whole proxy) carried and dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Datagrams sent on (a duplicate counts twice).
    pub forwarded: u64,
    /// Duplicates sent.
    pub duplicated: u64,
    /// Dropped: blocked direction.
    pub dropped_blocked: u64,
    /// Dropped: random loss.
    pub dropped_loss: u64,
    /// Dropped: over the bandwidth limit.
    pub dropped_rate: u64,
    /// Dropped: too many waiting out a delay, or too many sources.
    pub dropped_queue: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.forwarded += o.forwarded;
        self.duplicated += o.duplicated;
        self.dropped_blocked += o.dropped_blocked;
        self.dropped_loss += o.dropped_loss;
        self.dropped_rate += o.dropped_rate;
        self.dropped_queue += o.dropped_queue;
    }
}

/// One direction of a relay: its shape, bucket, random stream and counts.
#[derive(Debug)]
pub struct Direction {
    shape: Shape,
    bucket: Option<TokenBucket>,
    rng: ChaCha8Rng,
    stats: Stats,
}

impl Direction {
    /// Passes everything; decisions drawn from `seed`'s ChaCha stream
    /// `stream` (one stream per direction: their draws do not interleave).
    pub fn new(seed: u64, stream: u64) -> Direction {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Direction {
            shape: Shape::default(),
            bucket: None,
            rng,
            stats: Stats::default(),
        }
    }

    /// Changes the shape from `now` on (a new rate starts with a full
    /// bucket).
    pub fn set(&mut self, shape: Shape, now: Duration) {
        self.bucket = shape
            .rate_bytes_per_s
            .map(|r| TokenBucket::new(r, BURST_BYTES.min(r.max(1)), now));
        self.shape = shape;
    }

    /// The current shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What to do with a datagram of `len` bytes arriving at `now`.
    pub fn decide(&mut self, now: Duration, len: usize) -> Verdict {
        let s = self.shape;
        if s.blocked {
            self.stats.dropped_blocked += 1;
            return Verdict::Drop(Drop::Blocked);
        }
        if s.loss > 0.0 && self.rng.gen_bool(s.loss.min(1.0)) {
            self.stats.dropped_loss += 1;
            return Verdict::Drop(Drop::Loss);
        }
        if let Some(bucket) = &mut self.bucket {
            if !bucket.take(now, len) {
                self.stats.dropped_rate += 1;
                return Verdict::Drop(Drop::Rate);
            }
        }
        let copies = if s.duplicate > 0.0 && self.rng.gen_bool(s.duplicate.min(1.0)) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let delays = (0..copies)
            .map(|_| {
                let jitter = if s.jitter_ms > 0 {
                    self.rng.gen_range(0..=s.jitter_ms)
                } else {
                    0
                };
                Duration::from_millis(s.delay_ms + jitter)
            })
            .collect();
        self.stats.forwarded += copies;
        Verdict::Send(delays)
    }
}

/// A direction shared between its relay's tasks and the handle that
/// changes it.
#[derive(Clone, Debug)]
pub struct SharedDirection {
    inner: Arc<Mutex<Direction>>,
    delayed: Arc<AtomicUsize>,
    clock: tokio::time::Instant,
}

impl SharedDirection {
    fn new(seed: u64, stream: u64, clock: tokio::time::Instant) -> SharedDirection {
        SharedDirection {
            inner: Arc::new(Mutex::new(Direction::new(seed, stream))),
            delayed: Arc::new(AtomicUsize::new(0)),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Direction> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the shape now.
    pub fn set(&self, shape: Shape) {
        let now = self.clock.elapsed();
        self.lock().set(shape, now);
    }

    /// The current shape.
    pub fn shape(&self) -> Shape {
        self.lock().shape()
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }

    fn decide(&self, len: usize) -> Verdict {
        let now = self.clock.elapsed();
        self.lock().decide(now, len)
    }

    /// Sends `data` on `socket` (to `to`, or its connected peer) as the
    /// shape decides: now, later, twice or never.
    async fn forward(&self, socket: &Arc<UdpSocket>, to: Option<SocketAddr>, data: &[u8]) {
        let Verdict::Send(delays) = self.decide(data.len()) else {
            return;
        };
        for delay in delays {
            if delay.is_zero() {
                // Waits only for room in the socket's send buffer.
                let _ = match to {
                    Some(to) => socket.send_to(data, to).await,
                    None => socket.send(data).await,
                };
                continue;
            }
            if self.delayed.fetch_add(1, Ordering::Relaxed) >= DELAYED_MAX {
                self.delayed.fetch_sub(1, Ordering::Relaxed);
                let mut d = self.lock();
                d.stats.dropped_queue += 1;
                d.stats.forwarded -= 1;
                continue;
            }
            let (socket, data, delayed) = (socket.clone(), data.to_vec(), self.delayed.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = match to {
                    Some(to) => socket.send_to(&data, to).await,
                    None => socket.send(&data).await,
                };
                delayed.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    fn count_queue_drop(&self) {
        self.lock().stats.dropped_queue += 1;
    }
}

/// One relay: datagrams to `listen` go to the target (`up`), the target's
/// answers come back from `listen` (`down`).
#[derive(Debug)]
pub struct Relay {
    /// Where sources send to reach the target.
    pub listen: SocketAddr,
    /// The target.
    pub target: SocketAddr,
    /// Source → target.
    pub up: SharedDirection,
    /// Target → source.
    pub down: SharedDirection,
    task: tokio::task::JoinHandle<()>,
}

impl std::ops::Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// A relay on a free loopback port to `target`, its directions drawing
    /// from `seed`'s streams `2 link` and `2 link + 1`. Call within a
    /// tokio runtime.
    pub async fn start(
        target: SocketAddr,
        seed: u64,
        link: u64,
        clock: tokio::time::Instant,
    ) -> std::io::Result<Relay> {
        let socket = Arc::new(UdpSocket::bind(loopback(target)).await?);
        let listen = socket.local_addr()?;
        let up = SharedDirection::new(seed, 2 * link, clock);
        let down = SharedDirection::new(seed, 2 * link + 1, clock);
        let task = tokio::spawn(relay_loop(socket, target, up.clone(), down.clone()));
        Ok(Relay {
            listen,
            target,
            up,
            down,
            task,
        })
    }

    /// Both directions' counts.
    pub fn stats(&self) -> Stats {
        let mut s = self.up.stats();
        s.add(&self.down.stats());
        s
    }
}

/// The loopback address of `target`'s family, any port.
fn loopback(target: SocketAddr) -> SocketAddr {
    if target.is_ipv4() {
        SocketAddr::from(([127, 0, 0, 1], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    }
}

/// Reads from the sources; each new source gets its own upstream socket
/// and a task carrying the target's answers back.
async fn relay_loop(
    socket: Arc<UdpSocket>,
    target: SocketAddr,
    up: SharedDirection,
    down: SharedDirection,
) {
    let mut upstreams: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    while let Ok((len, source)) = socket.recv_from(&mut buf).await {
        let upstream = match upstreams.get(&source) {
            Some(u) => u.clone(),
            None if upstreams.len() >= SOURCES_MAX => {
                up.count_queue_drop();
                continue;
            }
            None => {
                let Ok(u) = connect(target).await else {
                    continue;
                };
                let u = Arc::new(u);
                upstreams.insert(source, u.clone());
                tasks.push(AbortOnDrop(tokio::spawn(answers(
                    u.clone(),
                    socket.clone(),
                    source,
                    down.clone(),
                ))));
                u
            }
        };
        up.forward(&upstream, None, &buf[..len]).await;
    }
}

/// A task aborted when its relay's loop ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl std::ops::Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn connect(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let u = UdpSocket::bind(loopback(target)).await?;
    u.connect(target).await?;
    Ok(u)
}

/// The target's answers on `upstream`, back to `source` from the relay's
/// port.
async fn answers(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    source: SocketAddr,
    down: SharedDirection,
) {
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(len) => down.forward(&socket, Some(source), &buf[..len]).await,
            // The target's port is closed (it is restarting): ICMP comes
            // back as an error on a connected socket; keep listening.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Which directed replica links a partition blocks: `(from, to)` pairs.
pub mod partition {
    use std::collections::BTreeSet;

    /// Every directed link between two different replicas of `n`.
    fn all(n: usize) -> impl Iterator<Item = (usize, usize)> {
        (0..n).flat_map(move |a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
    }

    /// Replica `a` cut off both ways.
    pub fn cut(n: usize, a: usize) -> BTreeSet<(usize, usize)> {
        all(n).filter(|(x, y)| *x == a || *y == a).collect()
    }

    /// Replica `a` can send but receives nothing.
    pub fn deaf(n: usize, a: usize) -> BTreeSet<(usize, usize)> {
        all(n).filter(|(_, y)| *y == a).collect()
    }

    /// Replica `a` receives but what it sends is lost.
    pub fn mute(n: usize, a: usize) -> BTreeSet<(usize, usize)> {
        all(n).filter(|(x, _)| *x == a).collect()
    }

    /// `side` and the rest cannot reach each other.
    pub fn split(n: usize, side: &BTreeSet<usize>) -> BTreeSet<(usize, usize)> {
        all(n)
            .filter(|(x, y)| side.contains(x) != side.contains(y))
            .collect()
    }

    /// A ring: each replica keeps only its `f` nearest neighbours on each
    /// side (with itself 2f + 1, a quorum); every other link is blocked.
    pub fn ring(n: usize, f: usize) -> BTreeSet<(usize, usize)> {
        all(n)
            .filter(|(x, y)| {
                let d = (x + n - y) % n;
                d.min(n - d) > f
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn ms(t: u64) -> Duration {
        Duration::from_millis(t)
    }

    #[test]
    fn loss_one_drops_everything() {
        let mut d = Direction::new(1, 0);
        d.set(
            Shape {
                loss: 1.0,
                ..Shape::default()
            },
            ms(0),
        );
        for t in 0..1000 {
            assert_eq!(d.decide(ms(t), 1200), Verdict::Drop(Drop::Loss));
        }
        assert_eq!(d.stats().forwarded, 0);
        assert_eq!(d.stats().dropped_loss, 1000);
    }

    #[test]
    fn the_default_shape_passes_everything_at_once() {
        let mut d = Direction::new(1, 0);
        for t in 0..100 {
            assert_eq!(d.decide(ms(t), 1200), Verdict::Send(vec![Duration::ZERO]));
        }
    }

    #[test]
    fn a_loss_rate_loses_about_that_share_and_the_same_seed_the_same_ones() {
        let shape = Shape {
            loss: 0.2,
            ..Shape::default()
        };
        let run = |seed| {
            let mut d = Direction::new(seed, 3);
            d.set(shape, ms(0));
            (0..10_000)
                .map(|t| d.decide(ms(t), 100) == Verdict::Drop(Drop::Loss))
                .collect::<Vec<bool>>()
        };
        let a = run(5);
        assert_eq!(a, run(5), "a seed draws the same losses");
        assert_ne!(a, run(6));
        let lost = a.iter().filter(|l| **l).count();
        assert!(
            (1_700..2_300).contains(&lost),
            "{lost} of 10000 lost at 20%"
        );
    }

    #[test]
    fn jitter_delays_within_its_bounds_and_duplicates_get_their_own_delay() {
        let mut d = Direction::new(2, 0);
        d.set(
            Shape {
                delay_ms: 10,
                jitter_ms: 20,
                duplicate: 1.0,
                ..Shape::default()
            },
            ms(0),
        );
        let mut distinct = BTreeSet::new();
        for t in 0..200 {
            let Verdict::Send(delays) = d.decide(ms(t), 100) else {
                panic!("nothing is lost");
            };
            assert_eq!(delays.len(), 2);
            for delay in delays {
                assert!((ms(10)..=ms(30)).contains(&delay), "{delay:?}");
                distinct.insert(delay);
            }
        }
        assert!(distinct.len() > 10, "jitter varies the delay");
        assert_eq!(d.stats().duplicated, 200);
        assert_eq!(d.stats().forwarded, 400);
    }

    #[test]
    fn the_token_bucket_passes_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(10_000, 3_000, ms(0));
        assert!(b.take(ms(0), 1_000));
        assert!(b.take(ms(0), 2_000));
        assert!(!b.take(ms(0), 1), "the burst is spent");
        // 100 ms at 10,000 B/s refill 1,000 bytes.
        assert!(!b.take(ms(100), 1_001));
        assert!(b.take(ms(100), 1_000));
        // Never more than the burst, however long it rested.
        assert!(!b.take(ms(60_000), 3_001));
        assert!(b.take(ms(60_000), 3_000));
        // Over ten seconds of 500-byte datagrams offered every ms, what
        // passes is the burst plus ten seconds at the rate.
        let passed: usize = (1..=10_000).filter(|t| b.take(ms(60_000 + t), 500)).count() * 500;
        assert!(passed <= 100_000, "{passed} bytes in 10 s at 10,000 B/s");
        assert!(passed >= 99_000, "{passed}");
    }

    #[test]
    fn a_rate_limited_direction_drops_what_is_over_the_rate() {
        let mut d = Direction::new(1, 0);
        d.set(
            Shape {
                rate_bytes_per_s: Some(1_200_000),
                ..Shape::default()
            },
            ms(0),
        );
        // 1,200 bytes every 0.5 ms is twice the rate: after the burst,
        // every second datagram goes.
        let sent = (0..20_000u64)
            .filter(|k| {
                matches!(
                    d.decide(Duration::from_micros(500 * k), 1_200),
                    Verdict::Send(_)
                )
            })
            .count();
        assert!((10_000..10_020).contains(&sent), "{sent}");
        assert_eq!(d.stats().dropped_rate as usize, 20_000 - sent);
    }

    #[test]
    fn blocked_drops_everything_and_unblocking_passes_again() {
        let mut d = Direction::new(1, 0);
        d.set(Shape::blocked(), ms(0));
        assert_eq!(d.decide(ms(1), 10), Verdict::Drop(Drop::Blocked));
        d.set(Shape::default(), ms(2));
        assert_eq!(d.decide(ms(3), 10), Verdict::Send(vec![Duration::ZERO]));
    }

    /// A relay to an echo socket: what the echo receives, and what comes
    /// back, through real loopback sockets.
    #[tokio::test]
    async fn a_relay_blocked_one_way_passes_the_other() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay::start(
            echo.local_addr().unwrap(),
            9,
            0,
            tokio::time::Instant::now(),
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(relay.listen).await.unwrap();
        let mut buf = [0u8; 64];

        // Down blocked: the echo still hears the client, the client does
        // not hear the echo.
        relay.down.set(Shape::blocked());
        client.send(b"a").await.unwrap();
        let (len, from) = echo.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"a");
        echo.send_to(b"reply to a", from).await.unwrap();
        // Unblocked: the next answer arrives, and it is the first the
        // client gets — the one sent while blocked was dropped.
        tokio::time::sleep(Duration::from_millis(50)).await;
        relay.down.set(Shape::default());
        client.send(b"b").await.unwrap();
        let (len, from) = echo.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"b");
        echo.send_to(b"reply to b", from).await.unwrap();
        let len = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"reply to b");
        assert_eq!(relay.down.stats().dropped_blocked, 1);

        // Up blocked: the answer side still passes (the echo writes first).
        relay.up.set(Shape::blocked());
        client.send(b"c").await.unwrap();
        echo.send_to(b"unasked", from).await.unwrap();
        let len = client.recv(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"unasked");
        relay.up.set(Shape::default());
        client.send(b"d").await.unwrap();
        let (len, _) = echo.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"d", "c was dropped");
        assert_eq!(relay.up.stats().dropped_blocked, 1);
    }

    #[test]
    fn partitions_block_the_links_they_name() {
        let n = 4;
        assert_eq!(partition::cut(n, 1).len(), 6);
        assert!(partition::cut(n, 1).iter().all(|(x, y)| *x == 1 || *y == 1));
        assert!(partition::deaf(n, 2).iter().all(|(_, y)| *y == 2));
        assert!(partition::mute(n, 2).iter().all(|(x, _)| *x == 2));
        assert_eq!(partition::deaf(n, 2).len(), 3);
        let side: BTreeSet<usize> = [0, 3].into();
        let split = partition::split(n, &side);
        assert_eq!(split.len(), 8);
        assert!(split.contains(&(0, 1)) && split.contains(&(1, 0)));
        assert!(!split.contains(&(0, 3)) && !split.contains(&(1, 2)));
    }

    #[test]
    fn a_ring_leaves_every_replica_a_quorum_of_neighbours() {
        for (n, f) in [(4, 1), (7, 2), (10, 3)] {
            let blocked = partition::ring(n, f);
            assert!(!blocked.is_empty(), "n = {n}");
            for x in 0..n {
                let kept = (0..n)
                    .filter(|y| *y != x && !blocked.contains(&(x, *y)))
                    .count();
                assert_eq!(kept, 2 * f, "n = {n}: replica {x} keeps 2f links");
                for y in 0..n {
                    assert_eq!(blocked.contains(&(x, y)), blocked.contains(&(y, x)));
                }
            }
        }
    }
}
