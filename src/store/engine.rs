//! [`Store`]: the partitioned map and its public operations.
//!
//! # What this module owns
//! The store's state (partitions, limit, policy, counters, version clock)
//! and the public API the command layer codes against: lookups, the
//! [`Store::update`] read-modify-write primitive, deletes, configuration.
//! Active expiry lives in `ttl.rs`, SCAN and RANDOMKEY in `scan.rs`,
//! victim choice in `eviction/`.
//!
//! # What it must not do
//! Hold a partition lock while blocking on another partition's lock (the
//! eviction path only `try_lock`s other partitions), or hold one while
//! pushing onto an eviction queue.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::counters::{Counters, Delta, Removal};
use super::entry::{Entry, QUEUED, entry_cost};
use super::eviction::fifo::{Item, Queues};
use super::eviction::sample::Sampler;
use super::eviction::{Held, make_room, meta};
use super::partition::{Partition, Tomb, key_hash};
use super::types::{
    EntryRef, EvictionPolicy, Mutation, PartitionId, StoreConfig, StoreError, StoreStats,
    UnixMillis, Version,
};
use crate::clock::SharedHlc;

/// The local engine. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    /// The P partitions, each behind its own lock.
    pub(super) parts: Box<[Mutex<Partition>]>,
    /// One condition variable per partition: threads wait on it while
    /// another thread holds the partition's gate (`gate.rs`).
    pub(super) gates: Box<[Condvar]>,
    /// Seed of the in-table key hash (random per store, against HashDoS).
    pub(super) seed: u64,
    /// This store's identity (random): `WATCH` stamps of absent keys carry
    /// it, as their creation marks mean nothing on another store.
    pub(super) id: u64,
    /// `maxmemory` in bytes; 0 = unlimited.
    maxmemory: AtomicU64,
    /// Bytes the process holds beyond what the store charges (set by the
    /// node's memory guard from the allocator's count; 0 otherwise): the
    /// limit eviction works to is `maxmemory` less this, see
    /// [`Store::limit`].
    overhead: AtomicU64,
    /// Index of the policy in [`EvictionPolicy::ALL`].
    policy: AtomicU8,
    /// Last version stamped (per-node monotone clock).
    version: AtomicU64,
    /// Statistics and gauges.
    pub(super) counters: Counters,
    /// Eviction pool of the sampling policies.
    pub(super) sampler: Sampler,
    /// FIFO / S3-FIFO queues.
    pub(super) queues: Queues,
    /// True while the queues are maintained (limit set, queue policy).
    tracking: AtomicBool,
    /// Serialises configuration changes and flushes.
    admin: Mutex<()>,
    /// Partition the next active-expiry cycle starts from.
    pub(super) expire_next: AtomicU32,
    /// Latest `now` seen by a write or an expiry cycle: the time used when
    /// a policy change reinitialises eviction metadata (the store reads no
    /// clock of its own).
    last_now: AtomicU64,
    /// The hybrid logical clock that stamps versions in cluster mode (set
    /// once by [`Store::enable_versions`]); unset standalone, where the
    /// per-store counter `version` is used and no tombstones are kept.
    pub(super) hlc: OnceLock<Arc<SharedHlc>>,
    /// How long a tombstone is kept, in ms (cluster mode).
    pub(super) tombstone_ttl: AtomicU64,
    /// Repair/sync records refused at the memory limit (see
    /// [`Store::apply_from`]).
    pub(super) refused: AtomicU64,
}

/// One step of a SCAN: keys found and the cursor to continue from (0 = done).
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Keys returned by this step (live keys only, matching the filter).
    pub keys: Vec<Bytes>,
    /// Cursor for the next call; 0 when the walk is complete.
    pub cursor: u64,
}

fn entry_ref(e: &Entry) -> EntryRef<'_> {
    EntryRef {
        value: e.value(),
        expires_at: (e.expires_at != 0).then_some(UnixMillis(e.expires_at)),
        version: Version(e.version),
        node: e.node,
    }
}

fn policy_index(p: EvictionPolicy) -> u8 {
    EvictionPolicy::ALL
        .iter()
        .position(|&q| q == p)
        .unwrap_or(0) as u8
}

impl Store {
    /// A new, empty store.
    pub fn new(cfg: StoreConfig) -> Self {
        let p = cfg.partitions.max(1);
        let store = Store {
            parts: (0..p).map(|_| Mutex::new(Partition::new())).collect(),
            gates: (0..p).map(|_| Condvar::new()).collect(),
            seed: rand::random(),
            id: rand::random(),
            maxmemory: AtomicU64::new(cfg.maxmemory),
            overhead: AtomicU64::new(0),
            policy: AtomicU8::new(policy_index(cfg.policy)),
            version: AtomicU64::new(0),
            counters: Counters::default(),
            sampler: Sampler::default(),
            queues: Queues::default(),
            tracking: AtomicBool::new(false),
            admin: Mutex::new(()),
            expire_next: AtomicU32::new(0),
            last_now: AtomicU64::new(0),
            hlc: OnceLock::new(),
            tombstone_ttl: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        };
        store.reconfigure(false);
        store
    }

    /// Number of partitions P.
    pub fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    /// The partition `key` lives in.
    pub fn partition_of(&self, key: &[u8]) -> PartitionId {
        super::types::partition_of(key, self.partitions())
    }

    /// Lock partition `pid` (a poisoned lock is recovered: entries are
    /// always left consistent between statements that can panic). While
    /// another thread holds the partition's gate (a transaction, `gate.rs`)
    /// this waits for it.
    pub(super) fn lock(&self, pid: u32) -> MutexGuard<'_, Partition> {
        let part = self.parts[pid as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if part.gate == 0 {
            return part;
        }
        self.pass_gate(pid, part)
    }

    /// Remember `now` as the latest time seen (cheap: a store only when the
    /// millisecond changed).
    pub(super) fn observe(&self, now: u64) {
        if now > self.last_now.load(Ordering::Relaxed) {
            self.last_now.store(now, Ordering::Relaxed);
        }
    }

    /// The latest time seen (see `last_now`), for paths that get no `now`.
    pub(super) fn now_hint(&self) -> u64 {
        self.last_now.load(Ordering::Relaxed)
    }

    /// True while the FIFO queues are maintained.
    pub(super) fn is_tracking(&self) -> bool {
        self.tracking.load(Ordering::Relaxed)
    }

    /// Remove the live key at `slot` of `part` and count it. `consumed`:
    /// the caller is the queue item naming it, so the slot is freed now
    /// rather than left as a tombstone. Returns the bytes released.
    pub(super) fn remove_at(
        &self,
        pid: u32,
        part: &mut Partition,
        slot: u32,
        why: Removal,
        consumed: bool,
    ) -> u64 {
        let h = key_hash(part.slots[slot as usize].key(), self.seed);
        if why == Removal::Evicted {
            self.note_evicted(pid, part, slot);
        }
        let tomb = !consumed && self.is_tracking();
        let (cost, had_ttl) = part.remove(slot, h, tomb);
        self.counters.removed(pid, cost, had_ttl, why);
        cost
    }

    /// Shrink a mostly empty partition, unless eviction queues name its
    /// slots. Call only where no slot number of `part` is held.
    pub(super) fn maybe_compact(&self, part: &mut Partition) {
        if part.is_sparse() && !self.is_tracking() {
            part.compact(self.seed);
        }
    }

    /// The slot of the live (unexpired) `key`, reclaiming it if expired.
    pub(super) fn find_live(
        &self,
        pid: u32,
        part: &mut Partition,
        key: &[u8],
        h: u64,
        now: u64,
    ) -> Option<u32> {
        let slot = part.find(key, h)?;
        if part.slots[slot as usize].is_expired(now) {
            self.remove_at(pid, part, slot, Removal::Expired, false);
            return None;
        }
        Some(slot)
    }

    fn lookup<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        count: bool,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        let slot = self.find_live(pid, &mut part, key, h, now.0);
        if count {
            self.counters.lookup(pid, slot.is_some());
        }
        match slot {
            Some(s) => {
                let e = &mut part.slots[s as usize];
                if count {
                    meta::touch(meta::kind(self.policy()), e, now.0);
                }
                f(Some(entry_ref(e)))
            }
            None => f(None),
        }
    }

    /// Read a key: the closure sees the live entry or `None`. Counts a hit or
    /// a miss and records the access for the eviction policy.
    pub fn read<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        self.lookup(key, now, true, f)
    }

    /// Like [`read`](Self::read) but neither counts stats nor touches
    /// eviction metadata (TTL, TYPE, EXISTS-like inspection, OBJECT ...).
    pub fn peek<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        self.lookup(key, now, false, f)
    }

    /// The value of a live key (a hit or a miss is counted).
    pub fn get(&self, key: &[u8], now: UnixMillis) -> Option<Bytes> {
        self.read(key, now, |e| e.map(|e| Bytes::copy_from_slice(e.value)))
    }

    /// Atomic read-modify-write of one key under its partition's lock. The
    /// closure sees the live entry (expired entries are reclaimed first and
    /// appear as `None`) and returns what to do plus a result. If the
    /// mutation needs memory the policy cannot free, nothing changes and
    /// `OutOfMemory` is returned. Does not count hits/misses.
    pub fn update<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(Option<EntryRef<'_>>) -> (Mutation, R),
    ) -> Result<R, StoreError> {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        let slot = self.find_live(pid, &mut part, key, h, now.0);
        let (mutation, r) = f(slot.map(|s| entry_ref(&part.slots[s as usize])));
        let queued = match mutation {
            Mutation::Keep => None,
            Mutation::Delete => {
                if let Some(s) = slot {
                    self.remove_at(pid, &mut part, s, Removal::Deleted, false);
                    self.bury(pid, &mut part, key, now.0);
                } else if self.forget_evicted(pid, &mut part, key) {
                    // Evicted here, maybe still held by other replicas.
                    self.bury(pid, &mut part, key, now.0);
                }
                None
            }
            Mutation::SetExpiry(Some(at))
            | Mutation::Set {
                expires_at: Some(at),
                ..
            } if at <= now => {
                // A deadline already passed: the key is gone at once.
                if let Some(s) = slot {
                    self.remove_at(pid, &mut part, s, Removal::Expired, false);
                    self.bury(pid, &mut part, key, now.0);
                }
                None
            }
            Mutation::SetExpiry(at) => {
                if let Some(s) = slot {
                    self.set_expiry(pid, &mut part, s, at, now.0);
                }
                None
            }
            Mutation::Set { value, expires_at } => {
                self.observe(now.0);
                let at = expires_at.map_or(0, |t| t.0);
                let stamp = self.next_version(now.0);
                self.take_tomb(pid, &mut part, key);
                self.forget_evicted(pid, &mut part, key);
                self.write(pid, &mut part, slot, key, h, &value, at, now.0, stamp)?
            }
        };
        if queued.is_none() {
            self.maybe_compact(&mut part);
        }
        drop(part);
        if let Some(item) = queued {
            let s3 = self.policy() == EvictionPolicy::S3Fifo;
            self.queues.enqueue(item, h, s3);
        }
        Ok(r)
    }

    /// The `(version, node tag)` of a new local write at `now`: from the
    /// hybrid logical clock in cluster mode, else the per-store counter.
    pub(super) fn next_version(&self, now: u64) -> (u64, u16) {
        match self.hlc.get() {
            Some(hlc) => (hlc.now(UnixMillis(now)).0, hlc.node().0),
            None => (self.version.fetch_add(1, Ordering::Relaxed) + 1, 0),
        }
    }

    /// A record stamped `version` was merged (a snapshot load, standalone):
    /// the per-store counter moves past it, so no later local write reuses
    /// a version a `WATCH` may have recorded.
    pub(super) fn observe_version(&self, version: u64) {
        self.version.fetch_max(version, Ordering::Relaxed);
    }

    /// Record a tombstone for `key`, deleted by a local command at `now`
    /// (cluster mode only: standalone keeps none).
    fn bury(&self, pid: u32, part: &mut Partition, key: &[u8], now: u64) {
        if self.hlc.get().is_none() {
            return;
        }
        let (version, node) = self.next_version(now);
        let until = now.saturating_add(self.tombstone_ttl.load(Ordering::Relaxed));
        let tomb = Tomb {
            version,
            node,
            until,
        };
        self.put_tomb(pid, part, key, tomb);
    }

    fn set_expiry(
        &self,
        pid: u32,
        part: &mut Partition,
        slot: u32,
        at: Option<UnixMillis>,
        now: u64,
    ) {
        let at = at.map_or(0, |t| t.0);
        let before = part.slots[slot as usize].has_ttl();
        part.set_expiry(slot, at);
        let (version, node) = self.next_version(now);
        part.slots[slot as usize].version = version;
        part.slots[slot as usize].node = node;
        let d = i64::from(at != 0) - i64::from(before);
        self.counters.apply(
            pid,
            Delta {
                with_ttl: d,
                ..Delta::default()
            },
        );
    }

    /// Store `value` at `slot` (or a new slot) with version `stamp`,
    /// evicting first if needed. Returns the queue item to push once the
    /// partition lock is released.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write(
        &self,
        pid: u32,
        part: &mut Partition,
        slot: Option<u32>,
        key: &[u8],
        h: u64,
        value: &[u8],
        at: u64,
        now: u64,
        stamp: (u64, u16),
    ) -> Result<Option<Item>, StoreError> {
        let new_cost = entry_cost(key.len(), value.len());
        let old_cost = slot.map_or(0, |s| part.slots[s as usize].cost());
        if new_cost > old_cost && self.maxmemory() > 0 {
            let mut held = Held {
                pid,
                part,
                protect: slot,
            };
            make_room(self, &mut held, new_cost - old_cost, now)?;
        }
        let (version, node) = stamp;
        let kind = meta::kind(self.policy());
        if let Some(s) = slot {
            let had_ttl = part.slots[s as usize].has_ttl();
            part.set_expiry(s, at);
            let e = &mut part.slots[s as usize];
            e.set_value(value);
            e.version = version;
            e.node = node;
            meta::touch(kind, e, now);
            self.counters.apply(
                pid,
                Delta {
                    keys: 0,
                    with_ttl: i64::from(at != 0) - i64::from(had_ttl),
                    used: new_cost as i64 - old_cost as i64,
                },
            );
            return Ok(None);
        }
        let tracking = self.is_tracking();
        let flags = if tracking { QUEUED } else { 0 };
        let mut entry = Entry::new(key, value, version, at, flags | meta::initial(kind, now));
        entry.node = node;
        let s = part.insert(entry, h, self.seed);
        self.counters.apply(
            pid,
            Delta {
                keys: 1,
                with_ttl: i64::from(at != 0),
                used: new_cost as i64,
            },
        );
        Ok(tracking.then_some(Item { pid, slot: s }))
    }

    /// Store `value` under `key` unconditionally.
    pub fn set(
        &self,
        key: &[u8],
        value: Bytes,
        expires_at: Option<UnixMillis>,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.update(key, now, |_| (Mutation::Set { value, expires_at }, ()))
    }

    /// Remove `key`; true if a live key was removed.
    pub fn delete(&self, key: &[u8], now: UnixMillis) -> bool {
        self.update(key, now, |e| (Mutation::Delete, e.is_some()))
            .unwrap_or(false)
    }

    /// Remove every key.
    pub fn flush(&self) {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        for pid in 0..self.partitions() {
            let mut part = self.lock(pid);
            let mut d = Delta::default();
            for e in part.slots.iter().filter(|e| e.is_live()) {
                d.keys -= 1;
                d.with_ttl -= i64::from(e.has_ttl());
                d.used -= e.cost() as i64;
            }
            d.used -= (Self::tombs_bytes(&part) + part.evicted.charged) as i64;
            part.clear();
            self.counters.apply(pid, d);
        }
        self.queues.clear();
        self.sampler.clear();
    }

    /// Bytes `key` costs (key + value + overhead), as MEMORY USAGE reports.
    pub fn memory_usage(&self, key: &[u8], now: UnixMillis) -> Option<usize> {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        let slot = self.find_live(pid, &mut part, key, h, now.0)?;
        Some(part.slots[slot as usize].cost() as usize)
    }

    /// Counters and gauges for INFO and metrics. `used_memory` includes
    /// the FIFO/S3-FIFO queues' and ghost's memory.
    pub fn stats(&self) -> StoreStats {
        let mut s = self.counters.snapshot();
        s.used_memory += self.queues.bytes();
        s
    }

    /// Bytes counted against `maxmemory`: entries, eviction marks,
    /// tombstones, and the eviction queues.
    pub(super) fn used(&self) -> u64 {
        self.counters.used() + self.queues.bytes()
    }

    /// The current memory limit (0 = unlimited).
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    /// Bytes the process holds beyond the store's charge, as last set by
    /// [`set_overhead`](Self::set_overhead).
    pub fn overhead(&self) -> u64 {
        self.overhead.load(Ordering::Relaxed)
    }

    /// Tell the store how many bytes the process holds beyond what the
    /// store charges (connection buffers, replication queues, table and
    /// slab slack, allocator rounding): eviction then keeps `used_memory`
    /// under `maxmemory - overhead`, so that the process's memory above its
    /// empty footprint stays under `maxmemory`. Takes effect on the next
    /// writes, as a lower `maxmemory` does.
    pub fn set_overhead(&self, bytes: u64) {
        self.overhead.store(bytes, Ordering::Relaxed);
    }

    /// The limit eviction works to: `maxmemory` less the overhead, but
    /// never below half of `maxmemory` (a burst of connection buffers or
    /// queued replication must not evict all the data: past that floor the
    /// process goes over its budget rather than empty the cache). 0 =
    /// unlimited.
    pub fn limit(&self) -> u64 {
        let max = self.maxmemory();
        max.saturating_sub(self.overhead()).max(max / 2)
    }

    /// Change the memory limit at run time (CONFIG SET maxmemory). Evicts
    /// down to the new limit on the next writes.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
        self.reconfigure(false);
    }

    /// The current eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::ALL
            [self.policy.load(Ordering::Relaxed) as usize % EvictionPolicy::ALL.len()]
    }

    /// Change the eviction policy at run time (CONFIG SET maxmemory-policy).
    pub fn set_policy(&self, policy: EvictionPolicy) {
        let old = self.policy.swap(policy_index(policy), Ordering::Relaxed);
        let before = EvictionPolicy::ALL[old as usize % EvictionPolicy::ALL.len()];
        let kind_changed = meta::kind(before) != meta::kind(policy);
        self.sampler.clear();
        self.reconfigure(kind_changed);
    }

    /// Start or stop maintaining the FIFO queues to match the limit and
    /// policy; with `reset_meta`, reinitialise every key's eviction metadata
    /// for the (new) policy.
    fn reconfigure(&self, reset_meta: bool) {
        let _admin = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        let policy = self.policy();
        let want =
            self.maxmemory() > 0 && matches!(policy, EvictionPolicy::Fifo | EvictionPolicy::S3Fifo);
        let was = self.tracking.swap(want, Ordering::Relaxed);
        if want == was && !reset_meta {
            return;
        }
        if want != was {
            self.queues.clear();
        }
        let kind = meta::kind(policy);
        let now = self.last_now.load(Ordering::Relaxed);
        for pid in 0..self.partitions() {
            let mut items = Vec::new();
            let mut part = self.lock(pid);
            if want != was {
                part.forget_queues();
            }
            for (i, e) in part.slots.iter_mut().enumerate() {
                if !e.is_live() {
                    continue;
                }
                if reset_meta || want != was {
                    e.set_policy_meta(meta::initial(kind, now));
                }
                if want && e.meta & QUEUED == 0 {
                    e.meta |= QUEUED;
                    items.push(Item {
                        pid,
                        slot: i as u32,
                    });
                }
            }
            drop(part);
            self.queues.enqueue_main(&items);
        }
    }
}
