//! A near cache: a small, short-lived local copy of a typed cache's reads.
//!
//! # What this module owns
//! A bounded map of encoded key → encoded value with a TTL (at most one
//! second by default), consulted before a read goes to the key's owner, so
//! a hot key's reads stay on the reading node. Writes, deletes and
//! invalidations made *through this cache on this node* drop the local
//! copy at once. Optionally only *hot* keys are kept: every lookup is
//! counted in a [`HotKeys`] sketch and a copy is admitted only while its
//! key's read rate here is above a threshold, so cold keys never take
//! space or risk staleness.
//!
//! # What it must not do
//! Pretend to be coherent: a write made on another node is seen here only
//! once the local copy expires (at most its TTL later). The primary does
//! not yet broadcast newer versions to near caches; keep the TTL short.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::hot::{HotKeys, HotKeysConfig};

/// Default TTL of a near copy.
pub const DEFAULT_NEAR_TTL: Duration = Duration::from_secs(1);

/// Hit and miss counts of a near cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NearStats {
    /// Reads answered locally.
    pub hits: u64,
    /// Reads that went to the owner.
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
}

/// The local copies of one typed cache on one node.
pub(crate) struct Near {
    /// Key → (expiry, value).
    map: Mutex<HashMap<Bytes, (Instant, Bytes)>>,
    /// Most entries held.
    capacity: usize,
    /// Lifetime of a copy.
    ttl: Duration,
    /// See [`NearStats::hits`].
    hits: AtomicU64,
    /// See [`NearStats::misses`].
    misses: AtomicU64,
    /// Admission by read rate, when only hot keys are kept.
    hot: Option<HotKeys>,
}

impl Near {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Near {
        Near {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            hot: None,
        }
    }

    /// A near cache that keeps copies only of keys read here at more than
    /// `cfg.threshold` reads per second.
    pub(crate) fn hot_only(capacity: usize, ttl: Duration, cfg: HotKeysConfig) -> Near {
        Near {
            hot: Some(HotKeys::new(cfg)),
            ..Near::new(capacity, ttl)
        }
    }

    /// The sketch of read rates, when admission is by heat.
    pub(crate) fn hot_keys(&self) -> Option<&HotKeys> {
        self.hot.as_ref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, (Instant, Bytes)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The local copy of `key`, if fresh.
    pub(crate) fn get(&self, key: &Bytes) -> Option<Bytes> {
        let now = Instant::now();
        if let Some(hot) = &self.hot {
            hot.record(key, now.into_std());
        }
        let mut map = self.lock();
        match map.get(key) {
            Some((expires, v)) if *expires > now => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(v.clone())
            }
            Some(_) => {
                map.remove(key);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Keep a copy of `value` for `key`. When full, expired copies go
    /// first, then an arbitrary one.
    pub(crate) fn put(&self, key: Bytes, value: Bytes) {
        let now = Instant::now();
        if let Some(hot) = &self.hot
            && !hot.is_hot(&key, now.into_std())
        {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (expires, _)| *expires > now);
            if map.len() >= self.capacity
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
        }
        map.insert(key, (now + self.ttl, value));
    }

    /// Drop the copy of `key`.
    pub(crate) fn remove(&self, key: &Bytes) {
        self.lock().remove(key);
    }

    pub(crate) fn stats(&self) -> NearStats {
        NearStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_copy_expires_after_its_ttl() {
        let near = Near::new(10, Duration::from_millis(500));
        let k = Bytes::from_static(b"k");
        near.put(k.clone(), Bytes::from_static(b"v"));
        assert_eq!(near.get(&k), Some(Bytes::from_static(b"v")));
        tokio::time::advance(Duration::from_millis(501)).await;
        assert_eq!(near.get(&k), None);
        assert_eq!(near.stats().hits, 1);
        assert_eq!(near.stats().misses, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_only_near_cache_keeps_hot_keys_and_declines_cold_ones() {
        let cfg = HotKeysConfig {
            capacity: 8,
            sample_every: 1,
            half_life: Duration::from_secs(1),
            threshold: 100.0,
        };
        let near = Near::hot_only(10, Duration::from_secs(1), cfg);
        let hot = Bytes::from_static(b"hot");
        let cold = Bytes::from_static(b"cold");
        // 200 reads of `hot` within 100 ms: about 2000 reads per second.
        for _ in 0..20 {
            for _ in 0..10 {
                let _ = near.get(&hot);
            }
            tokio::time::advance(Duration::from_millis(5)).await;
        }
        let _ = near.get(&cold);
        near.put(hot.clone(), Bytes::from_static(b"v"));
        near.put(cold.clone(), Bytes::from_static(b"v"));
        assert_eq!(near.get(&hot), Some(Bytes::from_static(b"v")));
        assert_eq!(near.get(&cold), None);
        assert_eq!(near.stats().entries, 1);
        let top = near.hot_keys().map(|h| h.top(1, Instant::now().into_std()));
        assert_eq!(top.map(|t| t[0].key.clone()), Some(hot));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_near_cache_stays_within_its_capacity() {
        let near = Near::new(3, Duration::from_secs(1));
        for i in 0..10u8 {
            near.put(Bytes::from(vec![i]), Bytes::from_static(b"v"));
        }
        assert_eq!(near.stats().entries, 3);
        assert!(near.get(&Bytes::from(vec![9u8])).is_some());
    }
}
