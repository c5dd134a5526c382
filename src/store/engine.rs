//! [`Store`]: the partitioned map and its public operations.
//!
//! SKELETON: the signatures are the contract the command layer codes
//! against; the store helper fills in the bodies (and may add private
//! modules: partition.rs, eviction.rs, ttl.rs, memory.rs ...).

use bytes::Bytes;

use super::types::{
    EntryRef, EvictionPolicy, Mutation, PartitionId, StoreConfig, StoreError, StoreStats,
    UnixMillis,
};

/// The local engine. `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    _cfg: StoreConfig,
}

/// One step of a SCAN: keys found and the cursor to continue from (0 = done).
#[derive(Debug, Clone, Default)]
pub struct ScanPage {
    /// Keys returned by this step (live keys only, matching the filter).
    pub keys: Vec<Bytes>,
    /// Cursor for the next call; 0 when the walk is complete.
    pub cursor: u64,
}

impl Store {
    /// A new, empty store.
    pub fn new(cfg: StoreConfig) -> Self {
        Store { _cfg: cfg }
    }

    /// Number of partitions P.
    pub fn partitions(&self) -> u32 {
        todo!()
    }

    /// The partition `key` lives in.
    pub fn partition_of(&self, key: &[u8]) -> PartitionId {
        super::types::partition_of(key, self.partitions())
    }

    /// Read a key: the closure sees the live entry or `None`. Counts a hit or
    /// a miss and records the access for the eviction policy.
    pub fn read<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        let _ = (key, now, f);
        todo!()
    }

    /// Like [`read`](Self::read) but neither counts stats nor touches
    /// eviction metadata (TTL, TYPE, EXISTS-like inspection, OBJECT ...).
    pub fn peek<R>(
        &self,
        key: &[u8],
        now: UnixMillis,
        f: impl FnOnce(Option<EntryRef<'_>>) -> R,
    ) -> R {
        let _ = (key, now, f);
        todo!()
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
        let _ = (key, now, f);
        todo!()
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

    /// Walk the keyspace: partition by partition, in table order, about
    /// `count` keys per step, keeping keys for which `filter` is true.
    /// Guarantees of Redis SCAN: a key present for the whole walk is
    /// returned at least once.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now: UnixMillis,
        filter: impl FnMut(&[u8]) -> bool,
    ) -> ScanPage {
        let _ = (cursor, count, now, filter);
        todo!()
    }

    /// A random live key, if any.
    pub fn random_key(&self, now: UnixMillis) -> Option<Bytes> {
        let _ = now;
        todo!()
    }

    /// Remove every key.
    pub fn flush(&self) {
        todo!()
    }

    /// One active-expiry cycle (Redis style): sample keys with a TTL, delete
    /// the expired ones, repeat while more than 25% of a sample was expired,
    /// stopping after about `budget` sampled keys. Returns keys removed.
    /// The server calls it ~10 times a second.
    pub fn expire_cycle(&self, now: UnixMillis, budget: usize) -> usize {
        let _ = (now, budget);
        todo!()
    }

    /// Bytes `key` costs (key + value + overhead), as MEMORY USAGE reports.
    pub fn memory_usage(&self, key: &[u8], now: UnixMillis) -> Option<usize> {
        let _ = (key, now);
        todo!()
    }

    /// Counters and gauges for INFO and metrics.
    pub fn stats(&self) -> StoreStats {
        todo!()
    }

    /// The current memory limit (0 = unlimited).
    pub fn maxmemory(&self) -> u64 {
        todo!()
    }

    /// Change the memory limit at run time (CONFIG SET maxmemory). Evicts
    /// down to the new limit on the next writes.
    pub fn set_maxmemory(&self, bytes: u64) {
        let _ = bytes;
        todo!()
    }

    /// The current eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        todo!()
    }

    /// Change the eviction policy at run time (CONFIG SET maxmemory-policy).
    pub fn set_policy(&self, policy: EvictionPolicy) {
        let _ = policy;
        todo!()
    }
}
