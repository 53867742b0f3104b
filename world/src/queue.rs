//! The event queue: events in simulated time, taken in (time, insertion)
//! order, so that a run is a function of its seed and inputs.

use belfry_replica::clock::Micros;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Events in simulated time, taken in (time, insertion) order.
#[derive(Debug)]
pub struct EventQueue<E> {
    seq: u64,
    heap: BinaryHeap<Reverse<(Micros, u64)>>,
    payloads: BTreeMap<u64, E>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            seq: 0,
            heap: BinaryHeap::new(),
            payloads: BTreeMap::new(),
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `e` at `at`.
    pub fn schedule(&mut self, at: Micros, e: E) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.payloads.insert(self.seq, e);
    }

    /// The next event at or before `until`, with its time, or `None` when
    /// there is none.
    pub fn pop_until(&mut self, until: Micros) -> Option<(Micros, E)> {
        loop {
            let Reverse((at, seq)) = *self.heap.peek()?;
            if at > until {
                return None;
            }
            self.heap.pop();
            if let Some(e) = self.payloads.remove(&seq) {
                return Some((at, e));
            }
        }
    }

    /// Events still scheduled.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_at_one_time_come_out_in_insertion_order() {
        let mut q = EventQueue::default();
        q.schedule(Micros(5), 'b');
        q.schedule(Micros(3), 'a');
        q.schedule(Micros(5), 'c');
        q.schedule(Micros(9), 'd');
        let mut out = Vec::new();
        while let Some((_, e)) = q.pop_until(Micros(8)) {
            out.push(e);
        }
        assert_eq!(out, ['a', 'b', 'c']);
        assert_eq!(q.len(), 1);
    }
}
