//! Foca's timers, delivered in order.
//!
//! # What this module owns
//! A min-heap of `(deadline, sequence, timer)`: timers come out by
//! deadline, and in submission order when deadlines tie, which is what foca
//! needs (a late `SendIndirectProbe` after the next `ProbeRandomMember`
//! makes it report an incomplete probe cycle).
//!
//! # What it must not do
//! Sleep or call foca: the gossip task sleeps until [`TimerQueue::next_deadline`]
//! and pops what is due.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use foca::Timer;
use tokio::time::Instant;

use super::identity::NodeIdentity;

/// One scheduled timer.
#[derive(Debug)]
struct Entry {
    /// When it is due.
    deadline: Instant,
    /// Submission order, to break ties.
    seq: u64,
    /// What to hand back to foca.
    timer: Timer<NodeIdentity>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// Pending foca timers.
#[derive(Debug, Default)]
pub struct TimerQueue {
    /// Earliest first.
    heap: BinaryHeap<Reverse<Entry>>,
    /// Next sequence number.
    seq: u64,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedule `timer` at `deadline`.
    pub fn push(&mut self, deadline: Instant, timer: Timer<NodeIdentity>) {
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            seq,
            timer,
        }));
    }

    /// When the earliest timer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// The earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer<NodeIdentity>> {
        if self.next_deadline()? <= now {
            self.heap.pop().map(|Reverse(e)| e.timer)
        } else {
            None
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timers_come_out_by_deadline_then_submission_order() {
        let now = Instant::now();
        let mut q = TimerQueue::new();
        q.push(now + Duration::from_secs(2), Timer::PeriodicGossip(2));
        q.push(now + Duration::from_secs(1), Timer::ProbeRandomMember(1));
        q.push(now + Duration::from_secs(1), Timer::PeriodicAnnounce(1));
        assert!(q.pop_due(now).is_none());
        let later = now + Duration::from_secs(5);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_due(later)).collect();
        assert_eq!(
            order,
            vec![
                Timer::ProbeRandomMember(1),
                Timer::PeriodicAnnounce(1),
                Timer::PeriodicGossip(2)
            ]
        );
        assert!(q.is_empty());
    }
}
