//! Per-command call counts and latency histograms.
//!
//! # What this module owns
//! [`CommandStats`], one lock-free fixed-bucket histogram per entry of the
//! command table, and [`LocalCommandStats`], the per-connection accumulator
//! the RESP connection loop records into and flushes once per batch (a
//! pipeline of 16 GETs costs one clock read per command and one set of
//! atomic adds per batch).
//!
//! # What it must not do
//! Know what a command does, or format anything: the metrics collector reads
//! [`CommandStats::snapshot`] at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in nanoseconds (1 µs .. 1 s).
pub const BUCKET_BOUNDS_NS: [u64; 19] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Number of buckets: one per bound plus the overflow (`+Inf`) bucket.
pub const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The bucket of a duration in nanoseconds.
fn bucket_of(ns: u64) -> usize {
    BUCKET_BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(BUCKET_BOUNDS_NS.len())
}

/// One command's histogram.
#[derive(Debug, Default)]
struct Slot {
    /// Sum of durations, nanoseconds.
    sum_ns: AtomicU64,
    /// Calls per bucket (not cumulative).
    buckets: [AtomicU64; BUCKETS],
}

/// Histograms of every command of the table, indexed like the table.
#[derive(Debug)]
pub struct CommandStats {
    /// One slot per command-table index.
    slots: Box<[Slot]>,
}

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats::new(crate::resp::commands::all_commands().len())
    }
}

/// One command's histogram at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandSnapshot {
    /// Index in the command table.
    pub index: usize,
    /// Calls.
    pub count: u64,
    /// Sum of durations, seconds.
    pub sum_seconds: f64,
    /// Calls per bucket (not cumulative), the last one being `+Inf`.
    pub buckets: [u64; BUCKETS],
}

impl CommandStats {
    /// Histograms for a table of `commands` entries.
    pub fn new(commands: usize) -> Self {
        CommandStats {
            slots: (0..commands).map(|_| Slot::default()).collect(),
        }
    }

    /// Add what a connection accumulated, and empty it.
    pub fn flush(&self, local: &mut LocalCommandStats) {
        for e in local.entries.drain(..) {
            let Some(slot) = self.slots.get(e.index) else {
                continue;
            };
            slot.sum_ns.fetch_add(e.sum_ns, Ordering::Relaxed);
            for (b, &n) in slot.buckets.iter().zip(&e.buckets) {
                if n != 0 {
                    b.fetch_add(u64::from(n), Ordering::Relaxed);
                }
            }
        }
    }

    /// Every command called at least once.
    pub fn snapshot(&self) -> Vec<CommandSnapshot> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, s)| {
                let buckets: [u64; BUCKETS] =
                    std::array::from_fn(|i| s.buckets[i].load(Ordering::Relaxed));
                let count: u64 = buckets.iter().sum();
                (count > 0).then(|| CommandSnapshot {
                    index,
                    count,
                    sum_seconds: s.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
                    buckets,
                })
            })
            .collect()
    }
}

/// One command's calls in the current batch.
#[derive(Debug, Clone)]
struct LocalEntry {
    /// Index in the command table.
    index: usize,
    /// Sum of durations, nanoseconds.
    sum_ns: u64,
    /// Calls per bucket.
    buckets: [u32; BUCKETS],
}

/// A connection's calls since its last flush (a batch rarely holds more
/// than a few distinct commands, so a short list beats a map).
#[derive(Debug, Default)]
pub struct LocalCommandStats {
    /// Distinct commands of the batch.
    entries: Vec<LocalEntry>,
}

impl LocalCommandStats {
    /// Record one call of the command at table index `index`.
    pub fn record(&mut self, index: usize, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let b = bucket_of(ns);
        if let Some(e) = self.entries.iter_mut().find(|e| e.index == index) {
            e.sum_ns = e.sum_ns.saturating_add(ns);
            e.buckets[b] = e.buckets[b].saturating_add(1);
            return;
        }
        let mut buckets = [0u32; BUCKETS];
        buckets[b] = 1;
        self.entries.push(LocalEntry {
            index,
            sum_ns: ns,
            buckets,
        });
    }

    /// Whether nothing was recorded since the last flush.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1_000), 0);
        assert_eq!(bucket_of(1_001), 1);
        assert_eq!(bucket_of(2_000_000_000), BUCKETS - 1);
    }

    #[test]
    fn flushed_calls_appear_in_the_snapshot_and_the_local_list_empties() {
        let global = CommandStats::new(4);
        let mut local = LocalCommandStats::default();
        local.record(2, Duration::from_micros(3));
        local.record(2, Duration::from_micros(3));
        local.record(1, Duration::from_millis(2));
        local.record(9, Duration::from_millis(2)); // out of the table: ignored
        global.flush(&mut local);
        assert!(local.is_empty());
        let snap = global.snapshot();
        assert_eq!(snap.len(), 2);
        let two = snap
            .iter()
            .find(|s| s.index == 2)
            .expect("command 2 counted");
        assert_eq!(two.count, 2);
        assert_eq!(two.buckets[bucket_of(3_000)], 2);
        assert!((two.sum_seconds - 6e-6).abs() < 1e-9);
    }
}
