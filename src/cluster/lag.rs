//! Replication lag at a replica: the time from a write's stamp at its
//! primary to its apply here.
//!
//! # What this module owns
//! [`LagHistogram`]: lock-free counts of lags in fixed buckets
//! ([`LAG_BOUNDS_MS`]), their sum, the last lag seen and the largest, fed
//! by the replica side of `Replicate` (a write's live replication, not
//! partition sync or anti-entropy, whose records may be old on purpose).
//! Exported as `shoal_replication_lag_seconds` (histogram) and the
//! `cluster_replication_lag_*` fields of `INFO cluster`.
//!
//! # How lag is measured
//! A version's upper 48 bits are the primary's hybrid-logical physical
//! time in ms ([`crate::clock`]), so lag = this node's wall clock minus
//! that, in whole milliseconds. Clock skew between the two hosts shifts it
//! (a primary ahead of this node reads as 0); on one host it is exact to a
//! millisecond.
//!
//! # What it must not do
//! Allocate or lock on the replica's apply path.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::LOGICAL_BITS;
use crate::store::{UnixMillis, Version};

/// Upper bounds of the lag buckets in ms; one more bucket holds the rest.
pub const LAG_BOUNDS_MS: [u64; 13] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10_000, 60_000,
];

/// Lags of replicated writes applied here.
#[derive(Debug, Default)]
pub struct LagHistogram {
    /// Count per bucket of [`LAG_BOUNDS_MS`], the last one for larger lags.
    buckets: [AtomicU64; LAG_BOUNDS_MS.len() + 1],
    /// Sum of every lag, in ms.
    sum_ms: AtomicU64,
    /// Lags observed.
    count: AtomicU64,
    /// The most recent lag, in ms (a gauge for INFO).
    last_ms: AtomicU64,
    /// The largest lag seen since start, in ms.
    max_ms: AtomicU64,
}

/// A copy of a [`LagHistogram`]'s counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagSnapshot {
    /// `(upper bound ms, count)` per bucket, not cumulative; the last bound
    /// is `u64::MAX`.
    pub buckets: Vec<(u64, u64)>,
    /// Sum of every lag, in ms.
    pub sum_ms: u64,
    /// Lags observed.
    pub count: u64,
    /// The most recent lag, in ms.
    pub last_ms: u64,
    /// The largest lag, in ms.
    pub max_ms: u64,
}

/// The lag of a write stamped `version` applied at `now`, in ms.
pub fn lag_ms(version: Version, now: UnixMillis) -> u64 {
    now.0.saturating_sub(version.0 >> LOGICAL_BITS)
}

impl LagHistogram {
    /// Count one lag of `ms` milliseconds.
    pub fn observe(&self, ms: u64) {
        let i = LAG_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(LAG_BOUNDS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(ms, Ordering::Relaxed);
        self.max_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> LagSnapshot {
        let bounds = LAG_BOUNDS_MS.iter().copied().chain([u64::MAX]);
        LagSnapshot {
            buckets: bounds
                .zip(&self.buckets)
                .map(|(b, n)| (b, n.load(Ordering::Relaxed)))
                .collect(),
            sum_ms: self.sum_ms.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
            last_ms: self.last_ms.load(Ordering::Relaxed),
            max_ms: self.max_ms.load(Ordering::Relaxed),
        }
    }
}

impl LagSnapshot {
    /// Mean lag in ms (0 with no sample).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms as f64 / self.count as f64
        }
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0..=1); the
    /// largest lag seen when it falls in the open last bucket; 0 with no
    /// sample.
    pub fn quantile_ms(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(bound, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return if bound == u64::MAX {
                    self.max_ms
                } else {
                    bound
                };
            }
        }
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_wall_clock_minus_the_stamps_physical_time() {
        let stamped = Version((1_000_000 << LOGICAL_BITS) | 7);
        assert_eq!(lag_ms(stamped, UnixMillis(1_000_012)), 12);
        assert_eq!(
            lag_ms(stamped, UnixMillis(999_000)),
            0,
            "a primary ahead of us reads as no lag"
        );
    }

    #[test]
    fn observations_land_in_their_buckets_and_quantiles_follow() {
        let h = LagHistogram::default();
        for _ in 0..98 {
            h.observe(1);
        }
        h.observe(40);
        h.observe(90_000);
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.buckets[0], (1, 98));
        assert_eq!(s.buckets[5], (50, 1));
        assert_eq!(s.buckets.last(), Some(&(u64::MAX, 1)));
        assert_eq!(s.quantile_ms(0.5), 1);
        assert_eq!(s.quantile_ms(0.99), 50);
        assert_eq!(s.quantile_ms(1.0), 90_000);
        assert_eq!((s.last_ms, s.max_ms), (90_000, 90_000));
        assert!((s.mean_ms() - 901.38).abs() < 1e-9);
    }

    #[test]
    fn an_empty_histogram_reads_as_zero() {
        let s = LagHistogram::default().snapshot();
        assert_eq!((s.count, s.quantile_ms(0.99), s.mean_ms()), (0, 0, 0.0));
    }
}
