//! Eviction marks and tombstones under `maxmemory`: what they cost, how
//! many are kept, and what a partition that had to forget some reports.
//!
//! # What this module owns
//! - [`Marks`]: one partition's eviction marks (see `replica.rs` for what a
//!   mark is for), oldest first, and its *lossy window*.
//! - Charging marks and tombstones to `used_memory`, at what they really
//!   take: a mark is charged by the capacity of its partition's table and
//!   FIFO ring (hashbrown buckets of 32 + 1 bytes, the ring's 8 bytes a
//!   slot, allocator headers), so the table's slack and growth are paid
//!   for too; a tombstone costs its key's malloc block plus
//!   [`TOMB_OVERHEAD`].
//! - The cap: all marks together take at most 1/[`MARK_SHARE`] of
//!   `maxmemory`, split evenly over the partitions (keys hash evenly): a
//!   partition keeps the most marks whose table and ring, at their largest,
//!   fit in its share (about 100 bytes a mark at worst: a churned table
//!   holds deleted slots and grows to twice the live need). A partition at
//!   its cap forgets its oldest mark first. With `maxmemory` 64 MiB and
//!   4096 partitions that is 6 marks a partition (24k a node, at most 4 MiB
//!   charged); a limit too small for one mark a partition keeps none.
//!
//! # Lossy windows
//! A key evicted here whose mark is gone (cap) makes this copy's digest
//! differ from a replica that still holds the key; anti-entropy would then
//! send the key back every round, and a full replica would refuse it (or
//! evict another key for it) every round. So when a partition forgets a
//! mark it turns *lossy* for [`LOSSY_MS`]: its digest is the lossy digest
//! ([`LOSSY`] in every bucket) and buckets that are lossy on either side
//! compare equal, so anti-entropy leaves the partition alone. When the
//! window ends the partition's real digest is compared at the next round
//! (a new window cannot open before a digest was taken), so a write or
//! delete this copy missed is still repaired, late by up to [`LOSSY_MS`]
//! plus a round; records it refuses then reopen the window.
//!
//! # Tombstones
//! Tombstones are charged but never dropped before their lifetime
//! (`tombstone_ttl`): a dropped tombstone could let an old copy come back.
//! Deleting a held key frees at least what its tombstone costs; tombstones of
//! keys not held here (a DEL replicated for a key evicted here) add to
//! `used_memory` and make eviction start earlier.
//!
//! # What it must not do
//! Take locks or read clocks: the caller holds the partition and passes
//! the time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::counters::Delta;
use super::engine::Store;
use super::entry::{malloc_block, table_bytes};
use super::partition::{Partition, Tomb};

/// Marks may take 1/`MARK_SHARE` of `maxmemory`.
pub const MARK_SHARE: u64 = 16;

/// Fewest bytes a mark takes (its table bucket): bounds the cap search.
const MARK_MIN_COST: u64 = 33;

/// How long a partition that forgot a mark stays out of anti-entropy, ms.
pub const LOSSY_MS: u64 = 60_000;

/// The bucket value of a lossy digest.
pub const LOSSY: u64 = u64::MAX;

/// Bytes a tombstone costs on top of its key's block: its table bucket
/// (a 16-byte boxed key, a 24-byte [`Tomb`], a control byte) at a load of
/// about two thirds.
pub(crate) const TOMB_OVERHEAD: u64 = 64;

/// Bytes a tombstone of a `key_len`-byte key is charged.
pub(crate) fn tomb_cost(key_len: usize) -> u64 {
    malloc_block(key_len) + TOMB_OVERHEAD
}

/// What an eviction leaves behind (see `replica.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvictMark {
    /// Version of the evicted write.
    pub(crate) version: u64,
    /// Tie-break of the node that stamped it.
    pub(crate) node: u16,
    /// The evicted value's absolute expiry in Unix ms (0 = none): the mark
    /// stops counting in digests when the other copies expire too.
    pub(crate) expires_at: u64,
}

impl EvictMark {
    /// The last-writer-wins order key of the evicted write.
    pub(crate) fn stamp(&self) -> (u64, u16) {
        (self.version, self.node)
    }

    /// Whether it still stands for a live copy elsewhere at `now`.
    pub(crate) fn is_live(&self, now: u64) -> bool {
        self.expires_at == 0 || self.expires_at > now
    }
}

/// One partition's eviction marks.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// Digest hash of the key -> mark.
    map: hashbrown::HashMap<u64, EvictMark>,
    /// Digest hashes, oldest first; may hold hashes whose mark is gone.
    order: VecDeque<u64>,
    /// Bytes charged to `used_memory` for `map` and `order`.
    pub(crate) charged: u64,
    /// Start of the current (or last) lossy window, Unix ms; 0 = never.
    lossy_since: u64,
    /// The real digest was taken since the last lossy window ended.
    compared: bool,
}

/// Longest the ring of a partition with at most `cap` marks gets before
/// it is compacted.
fn ring_max(cap: usize) -> usize {
    cap + cap / 2 + 8
}

/// Most bytes `cap` marks can take: a table for one more (a mark is
/// inserted before the oldest goes) that churn grew to twice that (a
/// hashbrown table full of deleted slots grows unless at most half full),
/// and a ring that doubled once past its longest.
fn bytes_bound(cap: usize) -> u64 {
    let entry = std::mem::size_of::<(u64, EvictMark)>();
    table_bytes(2 * (cap + 1), entry) + malloc_block(8 * 2 * (ring_max(cap) + 1))
}

impl Marks {
    /// Number of marks.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no mark.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The mark of digest hash `h`.
    pub(crate) fn get(&self, h: u64) -> Option<&EvictMark> {
        self.map.get(&h)
    }

    /// Every mark by digest hash.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&u64, &EvictMark)> {
        self.map.iter()
    }

    /// Bytes the marks take now (table and ring capacities).
    pub(crate) fn bytes(&self) -> u64 {
        let ring = if self.order.capacity() == 0 {
            0
        } else {
            malloc_block(self.order.capacity() * 8)
        };
        table_bytes(self.map.capacity(), std::mem::size_of::<(u64, EvictMark)>()) + ring
    }

    /// Keep `mark` for `h`, forgetting the oldest marks beyond `cap`.
    pub(crate) fn insert(&mut self, h: u64, mark: EvictMark, cap: usize, now: u64) {
        if cap == 0 {
            self.map.remove(&h);
            self.lose(now);
            return;
        }
        if self.map.insert(h, mark).is_none() {
            self.order.push_back(h);
        }
        let mut lost = false;
        while self.map.len() > cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            lost |= self.map.remove(&old).is_some();
        }
        if self.order.len() > ring_max(cap) {
            self.compact_order();
        }
        if lost {
            self.lose(now);
        }
    }

    /// Forget the mark of `h`; true if there was one.
    pub(crate) fn remove(&mut self, h: u64) -> bool {
        !self.map.is_empty() && self.map.remove(&h).is_some()
    }

    /// Keep only the marks `keep` accepts, and give back memory when most
    /// of the table is empty.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&u64, &mut EvictMark) -> bool) {
        self.map.retain(keep);
        if self.order.len() > ring_max(self.map.len()) {
            self.compact_order();
        }
        if self.map.capacity() > 4 * self.map.len() + 16 {
            self.map.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// Drop every mark and the lossy state (the partition is dropped or
    /// flushed). Returns the bytes that were charged.
    pub(crate) fn clear(&mut self) -> u64 {
        let charged = self.charged;
        *self = Marks::default();
        charged
    }

    /// Drop ring entries whose mark is gone, and repeats (keeping the
    /// newest place of each hash).
    fn compact_order(&mut self) {
        let mut seen = hashbrown::HashSet::with_capacity(self.map.len());
        let mut kept: VecDeque<u64> = VecDeque::with_capacity(self.map.len());
        for &h in self.order.iter().rev() {
            if self.map.contains_key(&h) && seen.insert(h) {
                kept.push_front(h);
            }
        }
        self.order = kept;
    }

    /// A key evicted here is no longer marked: open a lossy window unless
    /// one is open, or one ended and no digest was taken since.
    pub(crate) fn lose(&mut self, now: u64) {
        let now = now.max(1);
        if self.lossy_since == 0 || (!self.is_lossy(now) && self.compared) {
            self.lossy_since = now;
            self.compared = false;
        }
    }

    /// Whether the partition is in a lossy window at `now`.
    pub(crate) fn is_lossy(&self, now: u64) -> bool {
        self.lossy_since != 0 && now < self.lossy_since.saturating_add(LOSSY_MS)
    }

    /// A digest is being taken at `now`: true when it must be the lossy
    /// one; otherwise remember that the real one was seen.
    pub(crate) fn digest_is_lossy(&mut self, now: u64) -> bool {
        if self.is_lossy(now) {
            return true;
        }
        self.compared = true;
        false
    }
}

/// Eviction marks held by a store, for INFO-like reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkStats {
    /// Marks held.
    pub marks: u64,
    /// Bytes they are charged (part of `used_memory`).
    pub bytes: u64,
    /// Most bytes all marks may take (1/[`MARK_SHARE`] of `maxmemory`).
    pub cap_bytes: u64,
    /// Partitions in a lossy window now.
    pub lossy_partitions: u64,
    /// Tombstones held.
    pub tombstones: u64,
    /// Bytes they are charged (part of `used_memory`).
    pub tombstone_bytes: u64,
    /// Repair/sync records of keys not held that were refused because the
    /// store was at its limit (since start).
    pub refused: u64,
}

impl Store {
    /// Most marks one partition keeps under the current limit: the most
    /// whose table and ring fit in its share of the budget.
    pub(crate) fn marks_cap(&self) -> usize {
        let budget = self.maxmemory() / MARK_SHARE / u64::from(self.partitions());
        if bytes_bound(1) > budget {
            return 0;
        }
        let (mut lo, mut hi) = (1usize, (budget / MARK_MIN_COST) as usize + 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if bytes_bound(mid) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// Charge (or give back) the change in `part`'s marks' bytes.
    pub(crate) fn recharge_marks(&self, pid: u32, part: &mut Partition) {
        let now = part.evicted.bytes();
        let delta = now as i64 - part.evicted.charged as i64;
        if delta != 0 {
            part.evicted.charged = now;
            self.counters.apply(
                pid,
                Delta {
                    used: delta,
                    ..Delta::default()
                },
            );
        }
    }

    /// Mark `h` as evicted (or refused) here with `mark`, under the cap.
    pub(crate) fn put_mark(&self, pid: u32, part: &mut Partition, h: u64, mark: EvictMark) {
        let now = self.now_hint();
        let cap = self.marks_cap();
        part.evicted.insert(h, mark, cap, now);
        self.recharge_marks(pid, part);
    }

    /// Store a tombstone for `key`, charging it if it is new.
    pub(crate) fn put_tomb(&self, pid: u32, part: &mut Partition, key: &[u8], tomb: Tomb) {
        if part.tombs.insert(Box::from(key), tomb).is_none() {
            self.charge(pid, tomb_cost(key.len()) as i64);
        }
    }

    /// Remove `key`'s tombstone, if any, giving back its charge.
    pub(crate) fn take_tomb(&self, pid: u32, part: &mut Partition, key: &[u8]) {
        if !part.tombs.is_empty() && part.tombs.remove(key).is_some() {
            self.charge(pid, -(tomb_cost(key.len()) as i64));
        }
    }

    /// Bytes every tombstone of `part` is charged.
    pub(crate) fn tombs_bytes(part: &Partition) -> u64 {
        part.tombs.keys().map(|k| tomb_cost(k.len())).sum()
    }

    /// Add `bytes` (may be negative) to `used_memory`.
    pub(crate) fn charge(&self, pid: u32, bytes: i64) {
        self.counters.apply(
            pid,
            Delta {
                used: bytes,
                ..Delta::default()
            },
        );
    }

    /// Marks and tombstones held and what they cost (walks every
    /// partition: for INFO and tests, not the request path).
    pub fn mark_stats(&self) -> MarkStats {
        let now = self.now_hint();
        let mut st = MarkStats {
            cap_bytes: self.maxmemory() / MARK_SHARE,
            refused: self.refused.load(Ordering::Relaxed),
            ..MarkStats::default()
        };
        for pid in 0..self.partitions() {
            let part = self.lock(pid);
            st.marks += part.evicted.len() as u64;
            st.bytes += part.evicted.charged;
            st.lossy_partitions += u64::from(part.evicted.is_lossy(now));
            st.tombstones += part.tombs.len() as u64;
            st.tombstone_bytes += Self::tombs_bytes(&part);
        }
        st
    }
}

#[cfg(test)]
#[path = "marks_tests.rs"]
mod tests;
