//! [`Queues`]: FIFO and S3-FIFO over a fixed number of shards.
//!
//! # What this module owns
//! For each of [`SHARDS`] shards (partition `p` belongs to shard
//! `p % SHARDS`): a small FIFO, a main FIFO and a ghost FIFO of key hashes.
//! Items name keys by `(partition, slot)`; a key removed by other means
//! leaves a tombstone slot that the queue recycles when it pops the item.
//!
//! S3-FIFO (Yang et al., SOSP '23): new keys enter the small queue (10% of
//! the shard), or the main queue if their hash is in the ghost. Evicting
//! from small: a key read since insertion moves to main, otherwise it is
//! evicted and its hash remembered in the ghost. Evicting from main: a key
//! with frequency > 0 is reinserted with frequency - 1, else evicted. Plain
//! FIFO uses the main queue only and evicts its head.
//!
//! Shards spread the eviction work and the locks; each shard's queues hold
//! about 1/16 of the keys, far more than the per-partition share.
//!
//! The queues' and the ghost's memory (their capacities: 8 bytes a queue
//! item, a ghost hash in the ring and in the count table) is published per
//! shard ([`Queues::bytes`]) and counts in `used_memory`, so eviction
//! starts before the queues push RSS past `maxmemory`.
//!
//! # What it must not do
//! Block on a partition lock, or evict the slot the writer protects.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;

use super::meta::FREQ_MAX;
use super::{Held, with_part};
use crate::store::counters::Removal;
use crate::store::engine::Store;
use crate::store::entry::{FREE, TOMB, table_bytes, vec_bytes};
use crate::store::types::StoreError;

/// Number of queue shards.
pub(crate) const SHARDS: usize = 16;
/// A small-queue key needs at least this frequency to move to main.
const PROMOTE_AT: u32 = 1;

/// A queue item: a key by partition and slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Item {
    /// The key's partition.
    pub(crate) pid: u32,
    /// The key's slot in that partition.
    pub(crate) slot: u32,
}

/// One shard's queues.
#[derive(Debug, Default)]
struct Shard {
    /// S3-FIFO's probationary queue (unused by FIFO).
    small: VecDeque<Item>,
    /// S3-FIFO's main queue; FIFO's only queue.
    main: VecDeque<Item>,
    /// Hashes of keys evicted from `small`, oldest first.
    ghost_order: VecDeque<u64>,
    /// How many times each hash appears in `ghost_order`.
    ghost: HashMap<u64, u32>,
}

/// What one eviction attempt in a shard came to.
enum Outcome {
    /// A key was evicted.
    Evicted,
    /// A partition was busy; try elsewhere.
    Busy,
    /// Nothing evictable in this shard.
    Empty,
}

/// The shards.
#[derive(Debug)]
pub(crate) struct Queues {
    /// The shards, each behind its own lock.
    shards: Box<[Mutex<Shard>]>,
    /// Items queued per shard (small + main, stale ones included), so
    /// eviction can pick the fullest shard without locking them all.
    lens: Box<[AtomicUsize]>,
    /// Bytes each shard's queues and ghost take (their capacities).
    bytes: Box<[AtomicUsize]>,
    /// Bytes each shard's queues may grow by on the next push (a full
    /// `VecDeque` doubles).
    headroom: Box<[AtomicUsize]>,
}

impl Default for Queues {
    fn default() -> Self {
        Queues {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            lens: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
            bytes: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
            headroom: (0..SHARDS).map(|_| AtomicUsize::new(0)).collect(),
        }
    }
}

impl Queues {
    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Drop every item and ghost.
    pub(crate) fn clear(&self) {
        for i in 0..SHARDS {
            *self.shard(i) = Shard::default();
            self.lens[i].store(0, Ordering::Relaxed);
            self.bytes[i].store(0, Ordering::Relaxed);
            self.headroom[i].store(0, Ordering::Relaxed);
        }
    }

    /// Publish shard `i`'s length and bytes after a change.
    fn publish(&self, i: usize, sh: &Shard) {
        self.lens[i % SHARDS].store(sh.small.len() + sh.main.len(), Ordering::Relaxed);
        self.bytes[i % SHARDS].store(sh.bytes() as usize, Ordering::Relaxed);
        self.headroom[i % SHARDS].store(sh.headroom() as usize, Ordering::Relaxed);
    }

    /// Bytes the queues of partition `pid`'s shard may grow by when its
    /// next key is queued: eviction makes room for them beforehand, so a
    /// write leaves `used_memory` under the limit.
    pub(crate) fn headroom(&self, pid: u32) -> u64 {
        self.headroom[pid as usize % SHARDS].load(Ordering::Relaxed) as u64
    }

    /// Bytes all queues and ghosts take now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
            .iter()
            .map(|b| b.load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// Shards, fullest first: evicting from the fullest keeps every shard's
    /// share of the memory in line with its share of the keys.
    fn by_size(&self) -> [usize; SHARDS] {
        let mut order: [usize; SHARDS] = std::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| std::cmp::Reverse(self.lens[i].load(Ordering::Relaxed)));
        order
    }

    /// Queue a newly written key (hash `h`).
    pub(crate) fn enqueue(&self, item: Item, h: u64, s3: bool) {
        let mut sh = self.shard(item.pid as usize);
        if s3 && !sh.ghost.contains_key(&h) {
            sh.small.push_back(item);
        } else {
            sh.main.push_back(item);
        }
        self.publish(item.pid as usize, &sh);
    }

    /// Queue existing keys straight into main (rebuilding the queues).
    pub(crate) fn enqueue_main(&self, items: &[Item]) {
        if let Some(first) = items.first() {
            let mut sh = self.shard(first.pid as usize);
            sh.main.extend(items.iter().copied());
            self.publish(first.pid as usize, &sh);
        }
    }

    /// Evict one key from the shards in round-robin order.
    pub(crate) fn evict_one(
        &self,
        store: &Store,
        held: &mut Held<'_>,
        s3: bool,
        _now: u64,
    ) -> Result<bool, StoreError> {
        for _ in 0..64 {
            let mut empty = 0;
            for i in self.by_size() {
                let mut sh = self.shard(i);
                let outcome = sh.evict(store, held, s3);
                sh.shrink_if_sparse();
                self.publish(i, &sh);
                drop(sh);
                match outcome {
                    Outcome::Evicted => return Ok(true),
                    Outcome::Busy => {}
                    Outcome::Empty => empty += 1,
                }
            }
            if empty == SHARDS {
                return Err(StoreError::OutOfMemory);
            }
            std::thread::yield_now();
        }
        Ok(false)
    }
}

/// What the popped item's slot holds.
enum Slot {
    /// Nothing (stale item): drop the item.
    Stale,
    /// A key to keep: requeue in main.
    Keep,
    /// Evicted; ghost the hash if it came from small.
    Evicted(u64),
}

impl Shard {
    /// Bytes this shard's queues and ghost take (their capacities).
    fn bytes(&self) -> u64 {
        let item = std::mem::size_of::<Item>();
        vec_bytes(self.small.capacity(), item)
            + vec_bytes(self.main.capacity(), item)
            + vec_bytes(self.ghost_order.capacity(), 8)
            + table_bytes(self.ghost.capacity(), std::mem::size_of::<(u64, u32)>())
    }

    /// Bytes the next push may add (a full queue doubles, an empty one
    /// allocates 4 items).
    fn headroom(&self) -> u64 {
        let grow = |q: &VecDeque<Item>| {
            if q.len() == q.capacity() {
                vec_bytes(q.capacity().max(4) * 2, std::mem::size_of::<Item>())
            } else {
                0
            }
        };
        grow(&self.small).max(grow(&self.main))
    }

    /// Give back queue memory once most of it is unused (after a flush
    /// of keys or a lower limit), so the charge follows the keys down.
    fn shrink_if_sparse(&mut self) {
        for q in [&mut self.small, &mut self.main] {
            if q.capacity() > 4 * q.len() + 64 {
                q.shrink_to(2 * q.len());
            }
        }
    }

    fn evict(&mut self, store: &Store, held: &mut Held<'_>, s3: bool) -> Outcome {
        let limit = (self.small.len() + self.main.len()) * (FREQ_MAX as usize + 2) + 4;
        for _ in 0..limit {
            let total = self.small.len() + self.main.len();
            let from_small = s3
                && !self.small.is_empty()
                && (self.small.len() * 10 >= total || self.main.is_empty());
            let popped = if from_small {
                self.small.pop_front()
            } else {
                self.main.pop_front()
            };
            let Some(item) = popped else {
                return Outcome::Empty;
            };
            let res = with_part(store, held, item.pid, |part, protect| {
                let Some(e) = part.slots.get_mut(item.slot as usize) else {
                    return Slot::Stale;
                };
                if e.meta & FREE != 0 {
                    return Slot::Stale;
                }
                if e.meta & TOMB != 0 {
                    part.release(item.slot);
                    return Slot::Stale;
                }
                if protect == Some(item.slot) {
                    return Slot::Keep;
                }
                let freq = e.policy_meta();
                if s3 && from_small && freq >= PROMOTE_AT {
                    e.set_policy_meta(0);
                    return Slot::Keep;
                }
                if s3 && !from_small && freq > 0 {
                    e.set_policy_meta(freq - 1);
                    return Slot::Keep;
                }
                let h = crate::store::partition::key_hash(e.key(), store.seed);
                store.remove_at(item.pid, part, item.slot, Removal::Evicted, true);
                Slot::Evicted(h)
            });
            match res {
                None => {
                    if from_small {
                        self.small.push_front(item);
                    } else {
                        self.main.push_front(item);
                    }
                    return Outcome::Busy;
                }
                Some(Slot::Stale) => {}
                Some(Slot::Keep) => self.main.push_back(item),
                Some(Slot::Evicted(h)) => {
                    if from_small {
                        self.remember(h);
                    }
                    return Outcome::Evicted;
                }
            }
        }
        Outcome::Empty
    }

    /// Add `h` to the ghost, bounded by the main queue's length.
    fn remember(&mut self, h: u64) {
        self.ghost_order.push_back(h);
        *self.ghost.entry(h).or_insert(0) += 1;
        let cap = self.main.len().max(self.small.len()).max(1);
        while self.ghost_order.len() > cap {
            let Some(old) = self.ghost_order.pop_front() else {
                break;
            };
            if let Some(n) = self.ghost.get_mut(&old) {
                *n -= 1;
                if *n == 0 {
                    self.ghost.remove(&old);
                }
            }
        }
    }
}
