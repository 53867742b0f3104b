//! The gateway's Prometheus metrics (prefix `belfry_gateway_`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Digests taken.
    pub digests: Counter,
    /// Digests refused (`Backpressure`, `ClientLimit`, `TooLarge`).
    pub refused: Counter,
    /// Rounds closed.
    pub rounds: Counter,
    /// Rounds closed early (full).
    pub rounds_full: Counter,
    /// Rounds waiting upstream now.
    pub rounds_in_flight: Gauge,
    /// Failed upstream stamps (each retried).
    pub upstream_failures: Counter,
    /// Digests per round.
    pub round_size: Histogram,
    /// Seconds from a round's opening to its receipts being pushed.
    pub round_latency: Histogram,
    /// Seconds of the upstream stamp of a root.
    pub upstream_latency: Histogram,
    /// Client connections now.
    pub clients: Gauge,
    /// Clients disconnected for not reading their pushes.
    pub too_slow: Counter,
    /// `Receipts` refused for the read budget.
    pub rate_limited: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("belfry_gateway");
        let seconds =
            || Histogram::new([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]);
        let m = Metrics {
            registry: Registry::default(),
            digests: Counter::default(),
            refused: Counter::default(),
            rounds: Counter::default(),
            rounds_full: Counter::default(),
            rounds_in_flight: Gauge::default(),
            upstream_failures: Counter::default(),
            round_size: Histogram::new([1.0, 16.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0]),
            round_latency: seconds(),
            upstream_latency: seconds(),
            clients: Gauge::default(),
            too_slow: Counter::default(),
            rate_limited: Counter::default(),
        };
        registry.register("digests", "Digests taken", m.digests.clone());
        registry.register("refused_digests", "Digests refused", m.refused.clone());
        registry.register("rounds", "Rounds closed", m.rounds.clone());
        registry.register(
            "rounds_full",
            "Rounds closed early because full",
            m.rounds_full.clone(),
        );
        registry.register(
            "rounds_in_flight",
            "Rounds waiting for their root's receipt",
            m.rounds_in_flight.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream stamps of a root that failed (retried)",
            m.upstream_failures.clone(),
        );
        registry.register("round_size", "Digests per round", m.round_size.clone());
        registry.register(
            "round_latency_seconds",
            "From a round's opening to its receipts pushed",
            m.round_latency.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Upstream stamp of one root",
            m.upstream_latency.clone(),
        );
        registry.register("clients", "Client connections", m.clients.clone());
        registry.register(
            "too_slow",
            "Clients disconnected for not reading their pushes",
            m.too_slow.clone(),
        );
        registry.register(
            "rate_limited",
            "Receipts requests refused for the read budget",
            m.rate_limited.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text form.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
