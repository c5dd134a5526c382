//! [`Counters`]: the store's statistics, striped across cache lines.
//!
//! # What this module owns
//! Hits, misses, expirations, evictions, key counts and used bytes. Each
//! partition updates one of [`STRIPES`] cache-line-aligned stripes, so cores
//! working on different partitions rarely share a line; readers sum them.
//!
//! # What it must not do
//! Decide anything: it counts what the engine reports.

use std::sync::atomic::{AtomicU64, Ordering};

use super::types::StoreStats;

/// Number of stripes (a power of two).
pub(crate) const STRIPES: usize = 16;

/// One stripe; aligned so two stripes never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    /// Lookups that found a live key.
    hits: AtomicU64,
    /// Lookups that found nothing.
    misses: AtomicU64,
    /// Keys removed because their TTL passed.
    expired: AtomicU64,
    /// Keys removed by the eviction policy.
    evicted: AtomicU64,
    /// Keys held (wrapping; only the sum over stripes is meaningful).
    keys: AtomicU64,
    /// Keys with a TTL (wrapping, as `keys`).
    with_ttl: AtomicU64,
    /// Bytes charged (wrapping, as `keys`).
    used: AtomicU64,
}

/// What one removal or insertion did to the gauges.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Delta {
    /// Change in keys.
    pub(crate) keys: i64,
    /// Change in keys with a TTL.
    pub(crate) with_ttl: i64,
    /// Change in bytes.
    pub(crate) used: i64,
}

/// Why a key left, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// DEL, overwrite-by-delete, flush.
    Deleted,
    /// TTL passed.
    Expired,
    /// Chosen by the eviction policy.
    Evicted,
}

/// The striped counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// The stripes, indexed by partition number modulo [`STRIPES`].
    stripes: [Stripe; STRIPES],
}

fn add(a: &AtomicU64, d: i64) {
    if d != 0 {
        a.fetch_add(d as u64, Ordering::Relaxed);
    }
}

impl Counters {
    fn stripe(&self, pid: u32) -> &Stripe {
        &self.stripes[pid as usize % STRIPES]
    }

    /// Count a lookup.
    pub(crate) fn lookup(&self, pid: u32, hit: bool) {
        let s = self.stripe(pid);
        let c = if hit { &s.hits } else { &s.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Apply a gauge change.
    pub(crate) fn apply(&self, pid: u32, d: Delta) {
        let s = self.stripe(pid);
        add(&s.keys, d.keys);
        add(&s.with_ttl, d.with_ttl);
        add(&s.used, d.used);
    }

    /// Count a removal of an entry costing `cost` bytes.
    pub(crate) fn removed(&self, pid: u32, cost: u64, had_ttl: bool, why: Removal) {
        self.apply(
            pid,
            Delta {
                keys: -1,
                with_ttl: -i64::from(had_ttl),
                used: -(cost as i64),
            },
        );
        let s = self.stripe(pid);
        match why {
            Removal::Deleted => {}
            Removal::Expired => {
                s.expired.fetch_add(1, Ordering::Relaxed);
            }
            Removal::Evicted => {
                s.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self, f: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(f(s).load(Ordering::Relaxed))
        })
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> u64 {
        let v = self.sum(|s| &s.used) as i64;
        v.max(0) as u64
    }

    /// Keys with a TTL now.
    pub(crate) fn with_ttl(&self) -> u64 {
        (self.sum(|s| &s.with_ttl) as i64).max(0) as u64
    }

    /// A snapshot of every counter.
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            hits: self.sum(|s| &s.hits),
            misses: self.sum(|s| &s.misses),
            expired: self.sum(|s| &s.expired),
            evicted: self.sum(|s| &s.evicted),
            keys: (self.sum(|s| &s.keys) as i64).max(0) as u64,
            keys_with_ttl: self.with_ttl(),
            used_memory: self.used(),
        }
    }
}
