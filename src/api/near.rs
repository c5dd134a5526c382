//! A near cache: a small, short-lived local copy of a typed cache's reads.
//!
//! # What this module owns
//! A bounded map of encoded key → encoded value with a TTL (at most one
//! second by default), consulted before a read goes to the key's owner, so
//! a hot key's reads stay on the reading node. Copies are filled by a
//! *watched* read at the key's primary ([`crate::hotkeys`]), which answers
//! the value's version and invalidates the copy when the key changes,
//! whoever changed it; writes, deletes and invalidations made through this
//! cache on this node drop the copy at once too. Optionally only *hot*
//! keys are kept: every lookup is counted in a [`HotKeys`] sketch and a
//! copy is admitted only while its key's read rate here is above a
//! threshold, so cold keys never take space.
//!
//! The same structure serves RESP `GET`s on a forwarding node
//! (`cluster::near_reads`): fills there are single-flight per key
//! ([`Near::begin_fill`] / [`Near::end_fill`]), and a write through the node
//! ([`Near::written`]) drops the copy and spoils a fill still in flight, so
//! a client that writes and then reads through one node reads its write.
//!
//! # What it must not do
//! Keep a copy the primary does not watch, or a fill older than an
//! invalidation that overtook it (a *fence* remembers the newest version
//! invalidated per key for one TTL), or a copy past `fill start + TTL` (the
//! primary's watch, registered after the fill started, lasts at least that
//! long). Coherence is prompt, not
//! linearizable: between a write and the arrival of its invalidation
//! (the primary's poll interval plus one message) a read here may still
//! return the old value; the TTL bounds what a lost invalidation costs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::hot::{HotKeys, HotKeysConfig};
use crate::hotkeys::{NearSink, NearVersion};

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
    /// Copies dropped because the primary reported a newer version.
    pub invalidations: u64,
    /// Watched reads at the primary that filled a copy (RESP near cache).
    pub fills: u64,
    /// Copies dropped or fills spoiled by a write through this node.
    pub write_drops: u64,
}

/// A fill in flight for one key (see [`Near::begin_fill`]).
#[derive(Debug)]
pub(crate) struct FillTicket {
    /// The key being filled.
    key: Bytes,
    /// When the fill started: the copy lives until this plus the TTL.
    started: Instant,
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
    /// Key → newest version invalidated and when: fills of older versions
    /// still in flight are refused (see the module docs).
    fences: Mutex<HashMap<Bytes, (NearVersion, Instant)>>,
    /// See [`NearStats::invalidations`].
    invalidations: AtomicU64,
    /// Keys with a fill in flight → (whether a write spoiled it, when it
    /// started). A fill abandoned mid-way (its reader went away) is
    /// superseded once older than the TTL.
    filling: Mutex<HashMap<Bytes, (bool, Instant)>>,
    /// See [`NearStats::fills`].
    fills: AtomicU64,
    /// See [`NearStats::write_drops`].
    write_drops: AtomicU64,
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
            fences: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
            filling: Mutex::new(HashMap::new()),
            fills: AtomicU64::new(0),
            write_drops: AtomicU64::new(0),
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

    /// Lifetime of a copy.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether a copy of `key` would be kept (always, or while it is hot).
    pub(crate) fn admits(&self, key: &Bytes) -> bool {
        self.hot
            .as_ref()
            .is_none_or(|hot| hot.is_hot(key, Instant::now().into_std()))
    }

    fn lock_fences(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, (NearVersion, Instant)>> {
        self.fences.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a copy of `value` for `key`, of `version` at the primary,
    /// unless an invalidation of a newer version already arrived.
    pub(crate) fn put_versioned(&self, key: Bytes, value: Bytes, version: NearVersion) {
        let fenced = self
            .lock_fences()
            .get(&key)
            .is_some_and(|(newest, _)| *newest > version);
        if !fenced {
            self.put(key, value);
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
        self.insert(key, value, now + self.ttl);
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
            invalidations: self.invalidations.load(Ordering::Relaxed),
            fills: self.fills.load(Ordering::Relaxed),
            write_drops: self.write_drops.load(Ordering::Relaxed),
        }
    }

    fn lock_filling(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, (bool, Instant)>> {
        self.filling.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count one read of `key` in the admission sketch (no lookup).
    pub(crate) fn note_read(&self, key: &Bytes) {
        if let Some(hot) = &self.hot {
            hot.record(key, Instant::now().into_std());
        }
    }

    /// Whether a read of `key` should come here: a copy is held, or the
    /// key is admitted (hot), so a fill is worth it.
    pub(crate) fn wants(&self, key: &Bytes) -> bool {
        self.lock().contains_key(key) || self.admits(key)
    }

    /// Whether a copy of `key` is held (fresh or not).
    pub(crate) fn holds(&self, key: &Bytes) -> bool {
        self.lock().contains_key(key)
    }

    /// The fresh copy of `key`, without counting the read in the sketch
    /// (the caller did, with [`Near::note_read`]).
    pub(crate) fn lookup(&self, key: &Bytes) -> Option<Bytes> {
        let now = Instant::now();
        let mut map = self.lock();
        let found = match map.get(key) {
            Some((expires, v)) if *expires > now => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Start filling `key`, unless a fill of it is already in flight (one
    /// watched read per key at a time; other readers go to the owner).
    pub(crate) fn begin_fill(&self, key: &Bytes) -> Option<FillTicket> {
        let now = Instant::now();
        let mut filling = self.lock_filling();
        if filling.len() >= self.capacity {
            filling.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
        }
        let busy = filling
            .get(key)
            .is_some_and(|(_, at)| now.duration_since(*at) < self.ttl);
        if busy || filling.len() >= self.capacity {
            return None;
        }
        filling.insert(key.clone(), (false, now));
        Some(FillTicket {
            key: key.clone(),
            started: now,
        })
    }

    /// Finish a fill: keep `value` (of `version` at the primary) when the
    /// primary watches it, no write through this node spoiled the fill,
    /// no newer invalidation overtook it, and it is still fresh. A `None`
    /// value or an unwatched read just ends the fill.
    pub(crate) fn end_fill(&self, ticket: FillTicket, value: Option<Bytes>, version: NearVersion) {
        let spoiled = {
            let mut filling = self.lock_filling();
            match filling.get(&ticket.key) {
                Some((spoiled, at)) if *at == ticket.started => {
                    let spoiled = *spoiled;
                    filling.remove(&ticket.key);
                    spoiled
                }
                // Superseded: a newer fill of this key owns the slot.
                _ => true,
            }
        };
        let Some(value) = value else {
            return;
        };
        let expires = ticket.started + self.ttl;
        if spoiled || expires <= Instant::now() {
            return;
        }
        let fenced = self
            .lock_fences()
            .get(&ticket.key)
            .is_some_and(|(newest, _)| *newest > version);
        if fenced {
            return;
        }
        self.insert(ticket.key, value, expires);
        self.fills.fetch_add(1, Ordering::Relaxed);
    }

    /// A write to `key` through this node is about to run or just ran:
    /// drop the copy and spoil any fill in flight (it may carry the value
    /// from before the write).
    pub(crate) fn written(&self, key: &Bytes) {
        let spoiled = match self.lock_filling().get_mut(key) {
            Some((spoiled, _)) => {
                *spoiled = true;
                true
            }
            None => false,
        };
        if self.lock().remove(key).is_some() || spoiled {
            self.write_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A write to unknown keys (FLUSHALL, FLUSHDB) ran: drop every copy
    /// and spoil every fill in flight.
    pub(crate) fn written_all(&self) {
        self.lock_filling()
            .values_mut()
            .for_each(|(spoiled, _)| *spoiled = true);
        let dropped = {
            let mut map = self.lock();
            let n = map.len();
            map.clear();
            n
        };
        self.write_drops
            .fetch_add(dropped as u64, Ordering::Relaxed);
    }

    /// Keep `value` for `key` until `expires`, making room when full.
    fn insert(&self, key: Bytes, value: Bytes, expires: Instant) {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.retain(|_, (at, _)| *at > now);
            if map.len() >= self.capacity
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
        }
        map.insert(key, (expires, value));
    }
}

impl NearSink for Near {
    fn invalidate(&self, key: &Bytes, version: NearVersion) {
        let now = Instant::now();
        {
            let mut fences = self.lock_fences();
            if fences.len() >= self.capacity {
                // A fence matters only while a fill may be in flight; fills
                // take far less than a copy's lifetime.
                fences.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
            }
            let fence = fences.entry(key.clone()).or_insert((version, now));
            if version >= fence.0 {
                *fence = (version, now);
            }
        }
        if self.lock().remove(key).is_some() {
            self.invalidations.fetch_add(1, Ordering::Relaxed);
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
    async fn an_invalidation_drops_the_copy_and_fences_older_fills() {
        let near = Near::new(10, Duration::from_secs(30));
        let k = Bytes::from_static(b"k");
        let v = |n| NearVersion {
            version: n,
            node: 1,
        };
        near.put_versioned(k.clone(), Bytes::from_static(b"old"), v(1));
        near.invalidate(&k, v(2));
        assert_eq!(near.get(&k), None);
        assert_eq!(near.stats().invalidations, 1);
        // A fill of version 1 that was in flight arrives late: refused.
        near.put_versioned(k.clone(), Bytes::from_static(b"old"), v(1));
        assert_eq!(near.get(&k), None);
        near.put_versioned(k.clone(), Bytes::from_static(b"new"), v(2));
        assert_eq!(near.get(&k), Some(Bytes::from_static(b"new")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_spoils_a_fill_in_flight_and_drops_the_copy() {
        let near = Near::new(10, Duration::from_secs(10));
        let k = Bytes::from_static(b"k");
        let v = NearVersion {
            version: 1,
            node: 1,
        };
        let ticket = near.begin_fill(&k).expect("first fill");
        assert!(near.begin_fill(&k).is_none(), "one fill per key at a time");
        near.written(&k);
        near.end_fill(ticket, Some(Bytes::from_static(b"old")), v);
        assert_eq!(near.lookup(&k), None, "the spoiled fill is not kept");
        let ticket = near.begin_fill(&k).expect("the slot is free again");
        near.end_fill(ticket, Some(Bytes::from_static(b"new")), v);
        assert_eq!(near.lookup(&k), Some(Bytes::from_static(b"new")));
        near.written(&k);
        assert_eq!(near.lookup(&k), None);
        assert_eq!(near.stats().write_drops, 2);
        assert_eq!(near.stats().fills, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_filled_copy_lives_one_ttl_from_the_fills_start() {
        let near = Near::new(10, Duration::from_secs(1));
        let k = Bytes::from_static(b"k");
        let ticket = near.begin_fill(&k).expect("fill");
        tokio::time::advance(Duration::from_millis(600)).await;
        near.end_fill(ticket, Some(Bytes::from_static(b"v")), NearVersion::ABSENT);
        assert!(near.lookup(&k).is_some());
        tokio::time::advance(Duration::from_millis(401)).await;
        assert_eq!(near.lookup(&k), None, "expired 1 s after the fill began");
        // An abandoned fill does not block the key past one TTL.
        let _lost = near.begin_fill(&k).expect("fill");
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(near.begin_fill(&k).is_some());
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
