//! [`Sampler`]: Redis-style approximated LRU, LFU, random and volatile-ttl.
//!
//! # What this module owns
//! Picking a victim by sampling random `(partition, slot)` pairs across the
//! whole store (so the quality does not depend on P), scoring them with the
//! policy's metadata, and keeping an eviction pool of the best [`POOL`]
//! candidates between evictions, as Redis does. A candidate is re-checked
//! (slot still live, same key hash) before it is evicted.
//!
//! # What it must not do
//! Block on a partition lock (only `try_lock`), or evict the slot the
//! writer protects, or (volatile-*) a key without a TTL.

use std::sync::Mutex;

use rand::RngExt;

use super::{Held, with_part};
use crate::store::counters::Removal;
use crate::store::engine::Store;
use crate::store::partition::{Partition, key_hash};
use crate::store::types::{EvictionPolicy, StoreError};

/// Candidates kept between evictions.
const POOL: usize = 16;
/// Keys sampled per eviction (Redis's `maxmemory-samples`).
const SAMPLES: usize = 5;
/// Random probes allowed to find one eligible sample.
const PROBES: usize = 32;

/// A sampled key that may be evicted.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// Higher is evicted sooner.
    score: u64,
    /// Its partition.
    pid: u32,
    /// Its slot.
    slot: u32,
    /// Its key hash, to detect that the slot was reused.
    hash: u64,
}

/// The eviction pool.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    /// Best candidates, ascending by score (best last).
    pool: Mutex<Vec<Candidate>>,
}

fn volatile(policy: EvictionPolicy) -> bool {
    matches!(
        policy,
        EvictionPolicy::VolatileLru
            | EvictionPolicy::VolatileLfu
            | EvictionPolicy::VolatileRandom
            | EvictionPolicy::VolatileTtl
    )
}

fn random_policy(policy: EvictionPolicy) -> bool {
    matches!(
        policy,
        EvictionPolicy::AllKeysRandom | EvictionPolicy::VolatileRandom
    )
}

impl Sampler {
    /// Forget every candidate (flush, policy change).
    pub(crate) fn clear(&self) {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Evict one key. `Ok(false)` if nothing could be evicted right now;
    /// `Err(OutOfMemory)` if nothing is evictable at all.
    pub(crate) fn evict_one(
        &self,
        store: &Store,
        held: &mut Held<'_>,
        policy: EvictionPolicy,
        now: u64,
    ) -> Result<bool, StoreError> {
        let vol = volatile(policy);
        if vol && store.counters.with_ttl() == 0 {
            return Err(StoreError::OutOfMemory);
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let samples = if random_policy(policy) { 1 } else { SAMPLES };
        for _ in 0..samples {
            if let Some(c) = probe(store, held, policy, vol, now) {
                admit(&mut pool, c, random_policy(policy));
            }
        }
        while let Some(c) = pool.pop() {
            if evict_candidate(store, held, c, vol) {
                return Ok(true);
            }
        }
        drop(pool);
        Ok(evict_first_found(store, held, vol))
    }
}

/// Add `c` to the pool if it is among the best (random: replace all).
fn admit(pool: &mut Vec<Candidate>, c: Candidate, random: bool) {
    if random {
        pool.clear();
    }
    if pool.iter().any(|p| p.pid == c.pid && p.slot == c.slot) {
        return;
    }
    let at = pool.partition_point(|p| p.score <= c.score);
    if pool.len() >= POOL {
        if at == 0 {
            return;
        }
        pool.remove(0);
        pool.insert(at - 1, c);
    } else {
        pool.insert(at, c);
    }
}

/// One eligible random sample, if found within [`PROBES`] probes.
fn probe(
    store: &Store,
    held: &mut Held<'_>,
    policy: EvictionPolicy,
    vol: bool,
    now: u64,
) -> Option<Candidate> {
    let mut rng = rand::rng();
    let nparts = store.parts.len() as u32;
    for _ in 0..PROBES {
        let pid = rng.random_range(0..nparts);
        let r: u32 = rng.random();
        let found = with_part(store, held, pid, |part, protect| {
            if part.live == 0 {
                return None;
            }
            let slot = r % part.slots.len() as u32;
            let e = part.live_at(slot)?;
            if protect == Some(slot) || (vol && !e.has_ttl()) {
                return None;
            }
            let score = if random_policy(policy) {
                0
            } else {
                super::meta::score(policy, e, now)
            };
            Some(Candidate {
                score,
                pid,
                slot,
                hash: key_hash(e.key(), store.seed),
            })
        });
        if let Some(Some(c)) = found {
            return Some(c);
        }
    }
    None
}

/// Evict `c` if its slot still holds the same key; true if done.
fn evict_candidate(store: &Store, held: &mut Held<'_>, c: Candidate, vol: bool) -> bool {
    with_part(store, held, c.pid, |part, protect| {
        let Some(e) = part.live_at(c.slot) else {
            return false;
        };
        if protect == Some(c.slot)
            || (vol && !e.has_ttl())
            || key_hash(e.key(), store.seed) != c.hash
        {
            return false;
        }
        store.remove_at(c.pid, part, c.slot, Removal::Evicted, false);
        true
    })
    .unwrap_or(false)
}

/// Fallback when sampling found nothing (few eligible keys): walk the
/// partitions from a random one and evict the first eligible key.
fn evict_first_found(store: &Store, held: &mut Held<'_>, vol: bool) -> bool {
    let nparts = store.parts.len() as u32;
    let start = rand::rng().random_range(0..nparts);
    for i in 0..nparts {
        let pid = (start + i) % nparts;
        let done = with_part(store, held, pid, |part: &mut Partition, protect| {
            let slot = (0..part.slots.len() as u32).find(|&s| {
                part.live_at(s)
                    .is_some_and(|e| protect != Some(s) && (!vol || e.has_ttl()))
            })?;
            store.remove_at(pid, part, slot, Removal::Evicted, false);
            Some(())
        });
        if let Some(Some(())) = done {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(score: u64, slot: u32) -> Candidate {
        Candidate {
            score,
            pid: 0,
            slot,
            hash: 0,
        }
    }

    #[test]
    fn pool_keeps_the_best_candidates_best_last() {
        let mut pool = Vec::new();
        for s in 0..40u32 {
            admit(&mut pool, cand(u64::from(s * 7 % 40), s), false);
        }
        assert_eq!(pool.len(), POOL);
        assert_eq!(pool.last().map(|c| c.score), Some(39));
        assert!(pool.windows(2).all(|w| w[0].score <= w[1].score));
        assert_eq!(pool[0].score, 40 - POOL as u64);
    }
}
