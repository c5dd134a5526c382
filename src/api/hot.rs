//! Hot keys: a small, decaying top-k sketch of per-key request rates.
//!
//! # What this module owns
//! [`HotKeys`]: a space-saving top-k summary (Metwally et al.) of the keys
//! a node serves, with exponentially decaying counts so a key that stops
//! being read cools down, and sampling so the request path pays one
//! relaxed atomic increment for all but one in `sample_every` requests.
//! It answers "which keys are hottest, at what rate" (`top`, the data of
//! a `SHOAL HOTKEYS` reply) and "is this key above the threshold"
//! (`is_hot`, the admission test of a near cache), and exposes counters
//! ([`HotKeyStats`]) for the metrics endpoint.
//!
//! # What it must not do
//! Allocate or lock on unsampled requests; grow past its capacity; read a
//! clock of its own (callers pass `Instant`s, so tests control time).
//!
//! # Accuracy
//! Space-saving keeps `capacity` counters; a key's estimate overcounts by
//! at most the `error` recorded when it took its slot, and any key whose
//! true (decayed) count exceeds `total / capacity` is tracked. Counts decay
//! with half-life `half_life`; in steady state a key read `r` times per
//! second holds `r * half_life / ln 2 / sample_every` sampled counts, from
//! which [`HotKey::rate`] is derived.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One key of the top list.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    /// The key.
    pub key: Bytes,
    /// Estimated requests per second (upper bound, see module docs).
    pub rate: f64,
    /// Largest overestimate of `rate` (from the slot it took over).
    pub error: f64,
}

/// Counters of a sketch, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HotKeyStats {
    /// Requests seen (sampled or not).
    pub seen: u64,
    /// Requests that updated the sketch.
    pub sampled: u64,
    /// Keys evicted from a full sketch for a newcomer.
    pub evictions: u64,
    /// Keys tracked now.
    pub tracked: u64,
}

/// Options of a [`HotKeys`] sketch.
#[derive(Debug, Clone, Copy)]
pub struct HotKeysConfig {
    /// Keys tracked at most.
    pub capacity: usize,
    /// One request in this many updates the sketch (1 = all).
    pub sample_every: u64,
    /// Counts halve every `half_life`.
    pub half_life: Duration,
    /// Rate (requests per second) above which a key is hot.
    pub threshold: f64,
}

impl Default for HotKeysConfig {
    fn default() -> Self {
        HotKeysConfig {
            capacity: 64,
            sample_every: 16,
            half_life: Duration::from_secs(5),
            threshold: 1000.0,
        }
    }
}

/// One tracked key.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Decayed sampled count.
    count: f64,
    /// Count the key inherited when it took the slot.
    error: f64,
}

/// The mutable part, under one lock.
#[derive(Debug)]
struct Sketch {
    /// Tracked keys.
    slots: HashMap<Bytes, Slot>,
    /// When counts were last decayed.
    decayed_at: Option<Instant>,
}

/// A decaying space-saving top-k of request rates. `Send + Sync`; share it.
#[derive(Debug)]
pub struct HotKeys {
    /// Options.
    cfg: HotKeysConfig,
    /// Tracked keys.
    sketch: Mutex<Sketch>,
    /// See [`HotKeyStats::seen`].
    seen: AtomicU64,
    /// See [`HotKeyStats::sampled`].
    sampled: AtomicU64,
    /// See [`HotKeyStats::evictions`].
    evictions: AtomicU64,
}

impl HotKeys {
    /// An empty sketch.
    pub fn new(cfg: HotKeysConfig) -> HotKeys {
        let cfg = HotKeysConfig {
            capacity: cfg.capacity.max(1),
            sample_every: cfg.sample_every.max(1),
            half_life: cfg.half_life.max(Duration::from_millis(1)),
            threshold: cfg.threshold,
        };
        HotKeys {
            cfg,
            sketch: Mutex::new(Sketch {
                slots: HashMap::with_capacity(cfg.capacity),
                decayed_at: None,
            }),
            seen: AtomicU64::new(0),
            sampled: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sketch> {
        self.sketch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one request for `key` at `now`. Unsampled requests cost one
    /// atomic increment.
    pub fn record(&self, key: &[u8], now: Instant) {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        // Mix the sequence number so periodic traffic (say, every fourth
        // request a cold key) cannot line up with the sampling period.
        if mix(n) % self.cfg.sample_every != 0 {
            return;
        }
        self.update(key, now);
    }

    /// Count one request the caller already sampled (one in
    /// `sample_every`, e.g. by a per-thread countdown): it stands for
    /// `sample_every` requests.
    pub fn record_sampled(&self, key: &[u8], now: Instant) {
        self.seen
            .fetch_add(self.cfg.sample_every, Ordering::Relaxed);
        self.update(key, now);
    }

    /// The rate (requests per second) above which a key is hot.
    pub fn threshold(&self) -> f64 {
        self.cfg.threshold
    }

    /// Add one sampled request of `key` to the sketch.
    fn update(&self, key: &[u8], now: Instant) {
        self.sampled.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        self.decay(&mut s, now);
        if let Some(slot) = s.slots.get_mut(key) {
            slot.count += 1.0;
            return;
        }
        if s.slots.len() < self.cfg.capacity {
            s.slots.insert(
                Bytes::copy_from_slice(key),
                Slot {
                    count: 1.0,
                    error: 0.0,
                },
            );
            return;
        }
        // Full: the newcomer takes the smallest slot and inherits its count.
        let victim = s
            .slots
            .iter()
            .min_by(|a, b| a.1.count.total_cmp(&b.1.count))
            .map(|(k, v)| (k.clone(), v.count));
        if let Some((victim, min)) = victim {
            s.slots.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            s.slots.insert(
                Bytes::copy_from_slice(key),
                Slot {
                    count: min + 1.0,
                    error: min,
                },
            );
        }
    }

    /// Halve counts once per elapsed half-life (fractionally), dropping
    /// keys that cooled below one sampled request.
    fn decay(&self, s: &mut Sketch, now: Instant) {
        let Some(at) = s.decayed_at else {
            s.decayed_at = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(at);
        // Decay in steps of at least 1/16 half-life to keep the cost low.
        if elapsed < self.cfg.half_life / 16 {
            return;
        }
        let factor = 0.5f64.powf(elapsed.as_secs_f64() / self.cfg.half_life.as_secs_f64());
        s.slots.retain(|_, slot| {
            slot.count *= factor;
            slot.error *= factor;
            slot.count >= 0.5
        });
        s.decayed_at = Some(now);
    }

    /// Requests per second a decayed sampled count stands for.
    fn rate_of(&self, count: f64) -> f64 {
        count * self.cfg.sample_every as f64 * std::f64::consts::LN_2
            / self.cfg.half_life.as_secs_f64()
    }

    /// The `n` hottest keys at `now`, hottest first.
    pub fn top(&self, n: usize, now: Instant) -> Vec<HotKey> {
        let mut s = self.lock();
        self.decay(&mut s, now);
        let mut out: Vec<HotKey> = s
            .slots
            .iter()
            .map(|(k, slot)| HotKey {
                key: k.clone(),
                rate: self.rate_of(slot.count),
                error: self.rate_of(slot.error),
            })
            .collect();
        out.sort_by(|a, b| b.rate.total_cmp(&a.rate).then_with(|| a.key.cmp(&b.key)));
        out.truncate(n);
        out
    }

    /// Whether `key`'s estimated rate is above the threshold, not counting
    /// its possible overestimate.
    pub fn is_hot(&self, key: &[u8], now: Instant) -> bool {
        let mut s = self.lock();
        self.decay(&mut s, now);
        s.slots
            .get(key)
            .is_some_and(|slot| self.rate_of(slot.count - slot.error) >= self.cfg.threshold)
    }

    /// The counters.
    pub fn stats(&self) -> HotKeyStats {
        HotKeyStats {
            seen: self.seen.load(Ordering::Relaxed),
            sampled: self.sampled.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            tracked: self.lock().slots.len() as u64,
        }
    }
}

/// splitmix64's finaliser: a fixed, well-spread function of `n`.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(capacity: usize, sample_every: u64, threshold: f64) -> HotKeys {
        HotKeys::new(HotKeysConfig {
            capacity,
            sample_every,
            half_life: Duration::from_secs(1),
            threshold,
        })
    }

    /// Feed `per_sec` requests per second of `key` for `secs` seconds,
    /// interleaved with `cold` distinct one-off keys per second.
    fn feed(h: &HotKeys, start: Instant, secs: u64, per_sec: u64, cold: u64) -> Instant {
        let mut now = start;
        let mut cold_id = 0u64;
        for _ in 0..secs * 10 {
            for _ in 0..per_sec / 10 {
                h.record(b"hot", now);
            }
            for _ in 0..cold / 10 {
                cold_id += 1;
                h.record(format!("cold-{cold_id}").as_bytes(), now);
            }
            now += Duration::from_millis(100);
        }
        now
    }

    #[test]
    fn the_hot_key_tops_the_list_among_many_cold_ones() {
        let h = sketch(16, 1, 100.0);
        let now = feed(&h, Instant::now(), 5, 2000, 1000);
        let top = h.top(3, now);
        assert_eq!(top[0].key, Bytes::from_static(b"hot"));
        assert!(h.is_hot(b"hot", now));
        assert!(!h.is_hot(b"cold-1", now));
        assert!(h.stats().tracked <= 16);
        assert!(h.stats().evictions > 0);
    }

    #[test]
    fn the_rate_estimate_is_close_to_the_true_rate() {
        let h = sketch(8, 4, 100.0);
        let now = feed(&h, Instant::now(), 10, 4000, 0);
        let rate = h.top(1, now)[0].rate;
        assert!(
            (3000.0..5000.0).contains(&rate),
            "estimated {rate}/s for 4000/s"
        );
    }

    #[test]
    fn a_key_that_stops_being_read_cools_down() {
        let h = sketch(8, 1, 500.0);
        let now = feed(&h, Instant::now(), 3, 2000, 0);
        assert!(h.is_hot(b"hot", now));
        let later = now + Duration::from_secs(10);
        assert!(!h.is_hot(b"hot", later));
        assert!(h.top(5, later + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn unsampled_requests_do_not_touch_the_sketch() {
        let h = sketch(8, 100, 1.0);
        let now = Instant::now();
        for _ in 0..100_000 {
            h.record(b"k", now);
        }
        let st = h.stats();
        assert_eq!(st.seen, 100_000);
        assert!((500..2000).contains(&st.sampled), "sampled {}", st.sampled);
    }

    #[test]
    fn periodic_traffic_does_not_alias_with_the_sampling_period() {
        // Every fourth request is a cold key; one in 16 is sampled.
        let h = sketch(16, 16, 1.0);
        let now = Instant::now();
        for i in 0..100_000u64 {
            if i % 4 == 0 {
                h.record(format!("cold-{i}").as_bytes(), now);
            } else {
                h.record(b"hot", now);
            }
        }
        assert_eq!(h.top(1, now)[0].key, Bytes::from_static(b"hot"));
    }
}
