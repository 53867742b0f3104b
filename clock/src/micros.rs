use serde::{Deserialize, Serialize};
use std::fmt;

/// Microseconds since the UNIX epoch (or, for durations, a span in µs).
///
/// All times that enter hashed or signed bytes are `Micros` written as a
/// big-endian `u64` (docs/design.md §3.1).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub u64);

impl Micros {
    /// Time zero: the epoch itself.
    pub const ZERO: Micros = Micros(0);
    /// The largest representable time.
    pub const MAX: Micros = Micros(u64::MAX);

    /// Builds a span from milliseconds.
    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms.saturating_mul(1_000))
    }

    /// Builds a span from whole seconds.
    pub const fn from_secs(s: u64) -> Micros {
        Micros(s.saturating_mul(1_000_000))
    }

    /// The raw count of microseconds.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + span`, saturating at [`Micros::MAX`].
    #[must_use]
    pub const fn saturating_add(self, span: Micros) -> Micros {
        Micros(self.0.saturating_add(span.0))
    }

    /// `self - other`, saturating at zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Micros) -> Micros {
        Micros(self.0.saturating_sub(other.0))
    }

    /// The span in (fractional) milliseconds, for reports.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1_000.0
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}µs", self.0)
    }
}

impl From<u64> for Micros {
    fn from(v: u64) -> Self {
        Micros(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        assert_eq!(Micros::MAX.saturating_add(Micros(1)), Micros::MAX);
        assert_eq!(Micros(3).saturating_sub(Micros(5)), Micros::ZERO);
        assert_eq!(Micros::from_millis(5), Micros(5_000));
        assert_eq!(Micros::from_secs(2), Micros(2_000_000));
    }
}
