//! The 24 bits of per-entry eviction metadata, per policy.
//!
//! # What this module owns
//! How an access updates an entry's metadata and how a sampled entry is
//! scored: an LRU clock (milliseconds, 24 bits, wrap-aware), a Redis-style
//! LFU (8-bit logarithmic counter + 16-bit decay time in minutes), the
//! S3-FIFO 2-bit frequency.
//!
//! # What it must not do
//! Touch anything but the one entry it is handed.

use rand::RngExt;

use crate::store::entry::Entry;
use crate::store::types::EvictionPolicy;

/// 24-bit mask of the LRU clock.
const CLOCK_MASK: u64 = (1 << 24) - 1;
/// LFU counter of a new key (as Redis), so new keys are not evicted at once.
const LFU_INIT: u32 = 5;
/// Redis's `lfu-log-factor`.
const LFU_LOG_FACTOR: f64 = 10.0;
/// Redis's `lfu-decay-time` in minutes.
const LFU_DECAY_MINUTES: u64 = 1;
/// Highest S3-FIFO frequency.
pub(crate) const FREQ_MAX: u32 = 3;

/// Which metadata a policy keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaKind {
    /// LRU clock.
    Lru,
    /// LFU counter and decay time.
    Lfu,
    /// S3-FIFO frequency (FIFO ignores it).
    Freq,
}

/// The metadata kind of a policy.
pub(crate) fn kind(policy: EvictionPolicy) -> MetaKind {
    match policy {
        EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => MetaKind::Lfu,
        EvictionPolicy::Fifo | EvictionPolicy::S3Fifo => MetaKind::Freq,
        _ => MetaKind::Lru,
    }
}

fn clock(now: u64) -> u32 {
    (now & CLOCK_MASK) as u32
}

fn minutes(now: u64) -> u32 {
    ((now / 60_000) & 0xffff) as u32
}

/// Metadata of a key written now.
pub(crate) fn initial(kind: MetaKind, now: u64) -> u32 {
    match kind {
        MetaKind::Lru => clock(now),
        MetaKind::Lfu => (minutes(now) << 8) | LFU_INIT,
        MetaKind::Freq => 0,
    }
}

/// Record an access to `e`.
pub(crate) fn touch(kind: MetaKind, e: &mut Entry, now: u64) {
    let bits = e.policy_meta();
    let new = match kind {
        MetaKind::Lru => clock(now),
        MetaKind::Lfu => (minutes(now) << 8) | lfu_increment(lfu_decayed(bits, now)),
        MetaKind::Freq => (bits + 1).min(FREQ_MAX),
    };
    e.set_policy_meta(new);
}

/// Milliseconds since the last access (wrap-aware modulo 2^24 ms ≈ 4.6 h).
pub(crate) fn idle(bits: u32, now: u64) -> u64 {
    u64::from(clock(now).wrapping_sub(bits) & CLOCK_MASK as u32)
}

/// The LFU counter after decay for the minutes elapsed since its last access.
pub(crate) fn lfu_decayed(bits: u32, now: u64) -> u32 {
    let counter = bits & 0xff;
    let then = bits >> 8;
    let elapsed = u64::from(minutes(now).wrapping_sub(then) & 0xffff);
    let periods = elapsed / LFU_DECAY_MINUTES;
    counter.saturating_sub(periods.min(255) as u32)
}

fn lfu_increment(counter: u32) -> u32 {
    if counter >= 255 {
        return 255;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT));
    let p = 1.0 / (base * LFU_LOG_FACTOR + 1.0);
    if rand::rng().random::<f64>() < p {
        counter + 1
    } else {
        counter
    }
}

/// How strongly a sampled entry should be evicted (higher = sooner).
pub(crate) fn score(policy: EvictionPolicy, e: &Entry, now: u64) -> u64 {
    match policy {
        EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu => {
            u64::from(255 - lfu_decayed(e.policy_meta(), now))
        }
        EvictionPolicy::VolatileTtl => u64::MAX - e.expires_at,
        _ => idle(e.policy_meta(), now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_idle_survives_clock_wrap() {
        let then = (1u64 << 24) - 10;
        assert_eq!(idle(clock(then), then + 30), 30);
    }

    #[test]
    fn lfu_counter_decays_one_per_minute() {
        let bits = (minutes(0) << 8) | 10;
        assert_eq!(lfu_decayed(bits, 3 * 60_000), 7);
    }

    #[test]
    fn frequency_saturates() {
        let mut e = Entry::new(b"k", b"v", 1, 0, 0);
        for _ in 0..10 {
            touch(MetaKind::Freq, &mut e, 0);
        }
        assert_eq!(e.policy_meta(), FREQ_MAX);
    }
}
