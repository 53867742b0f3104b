//! Byte budgets for answering requests (docs/design.md §3.9): a token bucket per
//! peer, refilled at a fixed rate up to a burst. An answer is started only
//! while the bucket holds tokens, and every byte it costs is charged as it
//! is produced — before the clone, the encoding or the send — so a peer
//! asking without end gets at most the rate (plus one burst), whatever it
//! asks for. The bucket may go into debt by the one answer that crossed
//! zero: a large answer (a state snapshot) is still possible, once.

use belfry_coin::clock::Micros;

/// A token bucket of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteBudget {
    rate_per_s: u64,
    burst: u64,
    tokens: i64,
    at: Micros,
}

impl ByteBudget {
    /// A full bucket refilled at `rate_per_s` bytes a second, holding at
    /// most `burst` bytes.
    pub fn new(rate_per_s: u64, burst: u64) -> Self {
        ByteBudget {
            rate_per_s,
            burst,
            tokens: i64::try_from(burst).unwrap_or(i64::MAX),
            at: Micros::ZERO,
        }
    }

    fn refill(&mut self, now: Micros) {
        let elapsed = now.saturating_sub(self.at).0;
        self.at = self.at.max(now);
        let add = u128::from(elapsed) * u128::from(self.rate_per_s) / 1_000_000;
        let cap = i64::try_from(self.burst).unwrap_or(i64::MAX);
        let add = i64::try_from(add).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_add(add).min(cap);
    }

    /// Whether an answer may be started now.
    pub fn available(&mut self, now: Micros) -> bool {
        self.refill(now);
        self.tokens > 0
    }

    /// How long until an answer may be started again, in microseconds
    /// (0 while the bucket holds tokens), as of the last refill.
    pub fn wait_micros(&self) -> u64 {
        if self.tokens > 0 || self.rate_per_s == 0 {
            return 0;
        }
        let deficit = u128::from(self.tokens.unsigned_abs()) + 1;
        let micros = deficit * 1_000_000 / u128::from(self.rate_per_s);
        u64::try_from(micros).unwrap_or(u64::MAX)
    }

    /// Charges `bytes`; `false` once the bucket is empty (stop answering).
    pub fn charge(&mut self, bytes: usize) -> bool {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_sub(bytes);
        self.tokens > 0
    }
}
