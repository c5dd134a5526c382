//! Eviction: making room under `maxmemory`.
//!
//! # What this module owns
//! Choosing victims when a write needs bytes the limit does not allow.
//! Two families, both independent of the partition count P:
//! - **Sampling** ([`sample`]): allkeys/volatile LRU, LFU, random and
//!   volatile-ttl sample random `(partition, slot)` pairs across the whole
//!   store, like Redis, and keep a small pool of the best candidates.
//! - **Queues** ([`fifo`]): FIFO and S3-FIFO keep per-shard queues of
//!   `(partition, slot)` items in a fixed number of shards (16), each with
//!   its own lock, so a small cache is not split into thousands of tiny
//!   queues. Queues exist only while `maxmemory > 0` and the policy is one
//!   of the two; they are rebuilt from the keys when that becomes true.
//!
//! # Locking
//! A writer that needs room already holds its own partition's lock; it is
//! passed in as [`Held`] and every other partition is only `try_lock`ed, so
//! eviction never waits on a partition lock and cannot deadlock. Queue
//! shard locks are taken before partition try-locks, and the insert path
//! pushes queue items only after releasing its partition lock.
//!
//! # What it must not do
//! Evict the key being written (the `protect`ed slot), or block on a
//! partition lock.

pub(crate) mod fifo;
pub(crate) mod meta;
pub(crate) mod sample;

use std::sync::TryLockError;

use super::engine::Store;
use super::partition::Partition;
use super::types::{EvictionPolicy, StoreError};

/// How many victims one write may evict before giving up with OOM (a
/// single huge value may need many).
const MAX_VICTIMS: usize = 1 << 20;

/// The partition the writer holds, and the slot it is rewriting.
pub(crate) struct Held<'a> {
    /// The held partition's number.
    pub(crate) pid: u32,
    /// The held partition.
    pub(crate) part: &'a mut Partition,
    /// The slot being rewritten, which must not be evicted.
    pub(crate) protect: Option<u32>,
}

/// Run `f` on partition `pid`: the held one, or another if its lock is free
/// right now. `None` when it is busy. `f` also gets the slot of that
/// partition that must not be evicted, if any.
pub(crate) fn with_part<R>(
    store: &Store,
    held: &mut Held<'_>,
    pid: u32,
    f: impl FnOnce(&mut Partition, Option<u32>) -> R,
) -> Option<R> {
    if pid == held.pid {
        return Some(f(held.part, held.protect));
    }
    let mut guard = match store.parts[pid as usize].try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    if guard.gate != 0 && guard.gate != super::gate::token() {
        // Another thread's transaction holds it: busy, as a held lock.
        return None;
    }
    Some(f(&mut guard, None))
}

/// Evict until `need` more bytes fit under the limit ([`Store::limit`]:
/// `maxmemory` less the process overhead), or fail.
pub(crate) fn make_room(
    store: &Store,
    held: &mut Held<'_>,
    need: u64,
    now: u64,
) -> Result<(), StoreError> {
    let need = if store.is_tracking() {
        need + store.queues.headroom(held.pid)
    } else {
        need
    };
    for _ in 0..MAX_VICTIMS {
        let max = store.limit();
        if max == 0 || store.used().saturating_add(need) <= max {
            return Ok(());
        }
        let policy = store.policy();
        let freed = match policy {
            EvictionPolicy::NoEviction => return Err(StoreError::OutOfMemory),
            EvictionPolicy::Fifo | EvictionPolicy::S3Fifo if store.is_tracking() => store
                .queues
                .evict_one(store, held, policy == EvictionPolicy::S3Fifo, now),
            _ => store.sampler.evict_one(store, held, policy, now),
        };
        if !freed? {
            return Err(StoreError::OutOfMemory);
        }
    }
    Err(StoreError::OutOfMemory)
}
