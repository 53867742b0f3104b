use serde::{Deserialize, Serialize};

/// A Lamport logical clock: a counter that advances on every local event and
/// jumps past every timestamp it observes, so causally later events always carry
/// larger values.
///
/// In belfry the DAG round of a vertex is its Lamport time (a round-`r` vertex
/// references `Q` vertices of round `r - 1`); this type is the plain clock for
/// components that need one outside the DAG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LamportClock {
    time: u64,
}

impl LamportClock {
    /// A clock at time 0.
    pub const fn new() -> Self {
        LamportClock { time: 0 }
    }

    /// The current value (the time of the last event).
    pub const fn time(&self) -> u64 {
        self.time
    }

    /// A local event: advances the clock and returns the event's time.
    pub fn tick(&mut self) -> u64 {
        self.time = self.time.saturating_add(1);
        self.time
    }

    /// Receiving a message stamped `remote`: the receive event happens after
    /// both the sender's event and every earlier local event.
    pub fn observe(&mut self, remote: u64) -> u64 {
        self.time = self.time.max(remote).saturating_add(1);
        self.time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observe_moves_past_remote_and_local_times() {
        let mut c = LamportClock::new();
        assert_eq!(c.tick(), 1);
        assert_eq!(c.observe(10), 11);
        assert_eq!(
            c.observe(3),
            12,
            "an old remote time still advances the clock"
        );
        assert_eq!(c.time(), 12);
    }
}
