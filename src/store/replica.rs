//! What replication needs from the store: versioned records, tombstones,
//! last-writer-wins merge, partition export, bucketed digests.
//!
//! # What this module owns
//! - [`Store::enable_versions`]: from then on every local write is stamped
//!   by the node's hybrid logical clock (`(version, node tag)`), and local
//!   deletes (DEL, GETDEL, UNLINK, an EXPIRE into the past) leave a
//!   tombstone kept for `tombstone_ttl` ms. Standalone stores never call it
//!   and behave exactly as before (counter versions, no tombstones).
//! - [`Record`]: a key's state as it travels between replicas: a value with
//!   its absolute expiry, or a tombstone, with the stamp that produced it.
//! - [`Store::apply`] / [`Store::apply_from`]: merge a peer's record, last
//!   writer wins on `(version, node)`; an equal or older record changes
//!   nothing, so replays and retries are idempotent. The [`Origin`] says
//!   whether the record is a live replicated write or a repair.
//! - [`Store::export`], [`Store::bucket_records`], [`Store::digest`],
//!   [`Store::drop_partition`], [`Store::purge_tombstones`].
//!
//! # Semantics worth knowing
//! - TTL expiry happens on each replica independently: the absolute expiry
//!   travels with the value, so replicas agree without messages. Expiry does
//!   not leave a tombstone (an older write cannot resurrect a key past its
//!   own expiry; a *newer* write legitimately can).
//! - Eviction is local and is not a delete: an evicted key leaves no
//!   tombstone (other replicas keep their copies and keep serving them).
//!   It leaves an *eviction mark* instead (`EvictMark`: the digest hash
//!   of the key and the stamp and expiry of the evicted write, charged to
//!   `used_memory`, see `marks.rs`): digests count a marked key as if it
//!   were held, so anti-entropy does not copy the key back round after
//!   round (each copy would only be evicted again), and [`Store::apply`]
//!   ignores a record of the marked version or older. A newer write of the
//!   key (local or replicated) clears the mark and is stored as usual, so a
//!   write this replica missed is still repaired. A DEL of a marked key
//!   leaves a tombstone (the other replicas may hold the key). Marks go
//!   with the tombstones (`tombstone_ttl` after the evicted write's stamp);
//!   all marks together take at most 1/16 of `maxmemory`, oldest
//!   forgotten first, and a partition that forgot one is left out of
//!   anti-entropy for a while (a *lossy window*, see `marks.rs`).
//! - A store at its memory limit refuses a *repair* ([`Origin::Repair`]:
//!   anti-entropy, partition sync) of a key it does not hold: storing it
//!   would only evict another key, which the next round would copy back.
//!   The refused record leaves a mark, as if stored and evicted. Updates
//!   and tombstones of keys it holds still apply (nothing stale survives;
//!   only misses can result), and live replicated writes
//!   ([`Origin::Write`]) of new keys are stored, evicting others: an
//!   acknowledged write reaches its R copies.
//! - FLUSHALL/FLUSHDB drop every key and tombstone on the nodes that run
//!   them (every active member); a member that was unreachable keeps its
//!   copies, and anti-entropy may then copy them back. Flushes are not
//!   versioned.
//! - Tombstones are invisible to reads, SCAN and DBSIZE; they are charged
//!   to `used_memory` (a key copy and a table bucket, see `marks.rs`), and
//!   are purged after
//!   `tombstone_ttl` (the default in `cluster::replication` is far longer
//!   than an anti-entropy round and a partition sync).
//!
//! # Digests
//! A partition's digest is [`DIGEST_BUCKETS`] 64-bit sums: each live key
//! adds `mix(xxh3(key), version, node)` to bucket `xxh3(key) % 64`
//! (xxh3 seed 0, so every node computes the same). Tombstones are left out:
//! two copies that agree on every live key and version are equal, and a
//! copy that missed a delete still holds the key, so its bucket differs.
//! A partition in a lossy window reports `LOSSY` in every bucket, and a
//! lossy bucket on either side compares equal.
//!
//! # What it must not do
//! Talk to peers or read clocks: time and stamps come in as arguments.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::counters::Removal;
use super::engine::Store;
use super::entry::entry_cost;
use super::marks::{EvictMark, LOSSY};
use super::partition::{Partition, Tomb, key_hash};
use super::types::{EvictionPolicy, PartitionId, StoreError, UnixMillis, Version};
use crate::clock::SharedHlc;

/// Buckets in a partition digest.
pub const DIGEST_BUCKETS: usize = 64;

/// Where a record to merge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A live replicated write (or a local restore): always stored when
    /// newer, evicting other keys if needed.
    Write,
    /// Anti-entropy or partition sync: a key not held here is refused
    /// while the store is at its memory limit.
    Repair,
}

/// What a key holds, as replicas exchange it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A live value.
    Value {
        /// The value bytes.
        value: Bytes,
        /// Absolute expiry in Unix ms; 0 means none.
        expires_at: u64,
    },
    /// The key was deleted.
    Tombstone,
}

/// One key's state and the stamp of the write that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: Bytes,
    /// Hybrid logical version of the write.
    pub version: Version,
    /// Tie-break of the node that stamped it.
    pub node: u16,
    /// Value or tombstone.
    pub body: Body,
}

impl Record {
    /// The last-writer-wins order key.
    pub fn stamp(&self) -> (u64, u16) {
        (self.version.0, self.node)
    }

    /// Bytes this record carries (key and value), for throttling and
    /// `bytes moved` counters.
    pub fn size(&self) -> usize {
        let v = match &self.body {
            Body::Value { value, .. } => value.len(),
            Body::Tombstone => 0,
        };
        self.key.len() + v + 24
    }
}

/// A partition's bucketed digest (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest(pub Vec<u64>);

impl Digest {
    /// The buckets whose sums differ from `other`'s, as a bit mask.
    pub fn differing(&self, other: &Digest) -> u64 {
        let mut mask = 0u64;
        for i in 0..DIGEST_BUCKETS {
            let (a, b) = (self.0.get(i), other.0.get(i));
            let lossy = a == Some(&LOSSY) || b == Some(&LOSSY);
            if a != b && !lossy {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// One hash of every bucket, as lower-case hex (SHOAL DIGEST).
    pub fn hex(&self) -> String {
        let mut bytes = Vec::with_capacity(self.0.len() * 8);
        for b in &self.0 {
            bytes.extend_from_slice(&b.to_le_bytes());
        }
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
    }
}

/// The fixed (seed 0) hash of a key used by digests.
pub(super) fn digest_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The digest bucket of a key.
pub fn bucket_of(key: &[u8]) -> usize {
    (digest_hash(key) % DIGEST_BUCKETS as u64) as usize
}

/// A key's contribution to its bucket.
fn mix(h: u64, version: u64, node: u16) -> u64 {
    let mut x = h ^ version.rotate_left(29) ^ (u64::from(node) << 48);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Store {
    /// Stamp every later write with `hlc` and keep tombstones for
    /// `tombstone_ttl_ms`. Call once, before serving (a second call only
    /// updates the tombstone lifetime).
    pub fn enable_versions(&self, hlc: Arc<SharedHlc>, tombstone_ttl_ms: u64) {
        self.tombstone_ttl
            .store(tombstone_ttl_ms, Ordering::Relaxed);
        let _ = self.hlc.set(hlc);
    }

    /// Whether writes are stamped by a hybrid logical clock.
    pub fn is_versioned(&self) -> bool {
        self.hlc.get().is_some()
    }

    /// The live key at `slot` of `part` is being evicted: leave a mark (in
    /// cluster mode; the oldest one goes when the partition is at its cap).
    pub(super) fn note_evicted(&self, pid: u32, part: &mut Partition, slot: u32) {
        if !self.is_versioned() {
            return;
        }
        let e = &part.slots[slot as usize];
        let mark = EvictMark {
            version: e.version,
            node: e.node,
            expires_at: e.expires_at,
        };
        let h = digest_hash(e.key());
        self.put_mark(pid, part, h, mark);
    }

    /// Drop the eviction mark of `key` (it is written or deleted here now).
    /// Returns whether there was one.
    pub(super) fn forget_evicted(&self, pid: u32, part: &mut Partition, key: &[u8]) -> bool {
        if part.evicted.is_empty() || !part.evicted.remove(digest_hash(key)) {
            return false;
        }
        self.recharge_marks(pid, part);
        true
    }

    /// The state of `key` here: its live value, its tombstone, or nothing.
    pub fn record(&self, key: &[u8], now: UnixMillis) -> Option<Record> {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        if let Some(slot) = self.find_live(pid, &mut part, key, h, now.0) {
            let e = &part.slots[slot as usize];
            return Some(Record {
                key: Bytes::copy_from_slice(key),
                version: Version(e.version),
                node: e.node,
                body: Body::Value {
                    value: Bytes::copy_from_slice(e.value()),
                    expires_at: e.expires_at,
                },
            });
        }
        part.tombs.get(key).map(|t| Record {
            key: Bytes::copy_from_slice(key),
            version: Version(t.version),
            node: t.node,
            body: Body::Tombstone,
        })
    }

    /// Whether `key` has a live value or a tombstone here (what
    /// [`Store::record`] would return, without copying it).
    pub fn has_record(&self, key: &[u8], now: UnixMillis) -> bool {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        self.find_live(pid, &mut part, key, h, now.0).is_some() || part.tombs.contains_key(key)
    }

    /// Merge a live replicated write: [`Store::apply_from`] with
    /// [`Origin::Write`].
    pub fn apply(&self, rec: &Record, now: UnixMillis) -> Result<bool, StoreError> {
        self.apply_from(rec, now, Origin::Write)
    }

    /// Merge a peer's record: applied only if its stamp is newer than what
    /// this store holds for the key (live value or tombstone), and, for a
    /// [`Origin::Repair`] of a key not held here, only if it fits under
    /// `maxmemory` without evicting (else it leaves a mark and is counted
    /// as refused). Returns whether it changed anything. Fails only when a
    /// value needs memory the policy cannot free (nothing changed then).
    pub fn apply_from(
        &self,
        rec: &Record,
        now: UnixMillis,
        origin: Origin,
    ) -> Result<bool, StoreError> {
        if let Some(hlc) = self.hlc.get() {
            // A version too far ahead is still merged (refusing it would
            // keep replicas apart forever); our clock just does not follow.
            let _ = hlc.observe(rec.version, now);
        } else {
            self.observe_version(rec.version.0);
        }
        let key = &rec.key[..];
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        let slot = self.find_live(pid, &mut part, key, h, now.0);
        let current = match slot {
            Some(s) => {
                let e = &part.slots[s as usize];
                Some((e.version, e.node))
            }
            None => part
                .tombs
                .get(key)
                .map(|t| (t.version, t.node))
                .or_else(|| {
                    // Evicted here: that version (or an older one) stays out.
                    (!part.evicted.is_empty())
                        .then(|| part.evicted.get(digest_hash(key)).map(EvictMark::stamp))
                        .flatten()
                }),
        };
        if current.is_some_and(|c| c >= rec.stamp()) {
            return Ok(false);
        }
        if origin == Origin::Repair && slot.is_none() && self.is_full_for(rec) {
            self.refuse(pid, &mut part, rec);
            return Ok(false);
        }
        self.forget_evicted(pid, &mut part, key);
        self.observe(now.0);
        let queued = match &rec.body {
            Body::Value { value, expires_at } => {
                if *expires_at != 0 && *expires_at <= now.0 {
                    // Newer, but already expired: the key is gone here too.
                    if let Some(s) = slot {
                        self.remove_at(pid, &mut part, s, Removal::Expired, false);
                    }
                    self.take_tomb(pid, &mut part, key);
                    None
                } else {
                    let q = self.write(
                        pid,
                        &mut part,
                        slot,
                        key,
                        h,
                        value,
                        *expires_at,
                        now.0,
                        rec.stamp(),
                    )?;
                    self.take_tomb(pid, &mut part, key);
                    q
                }
            }
            Body::Tombstone => {
                if let Some(s) = slot {
                    self.remove_at(pid, &mut part, s, Removal::Deleted, false);
                }
                let until = now
                    .0
                    .saturating_add(self.tombstone_ttl.load(Ordering::Relaxed));
                let tomb = Tomb {
                    version: rec.version.0,
                    node: rec.node,
                    until,
                };
                self.put_tomb(pid, &mut part, key, tomb);
                None
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
        Ok(true)
    }

    /// Whether storing `rec`'s value as a new key would take the store
    /// over its limit (a tombstone never does: it is always kept).
    fn is_full_for(&self, rec: &Record) -> bool {
        let max = self.limit();
        match &rec.body {
            Body::Value { value, .. } if max > 0 => {
                let cost = entry_cost(rec.key.len(), value.len());
                self.used().saturating_add(cost) > max
            }
            _ => false,
        }
    }

    /// Refuse a repair of a key not held here: drop an older tombstone of
    /// it and mark the key as if it had been stored and evicted, so the
    /// digests agree and the next round does not send it again.
    fn refuse(&self, pid: u32, part: &mut Partition, rec: &Record) {
        let expires_at = match &rec.body {
            Body::Value { expires_at, .. } => *expires_at,
            Body::Tombstone => 0,
        };
        self.take_tomb(pid, part, &rec.key);
        let mark = EvictMark {
            version: rec.version.0,
            node: rec.node,
            expires_at,
        };
        self.put_mark(pid, part, digest_hash(&rec.key), mark);
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Up to `max` records (live keys and tombstones) of `partition` whose
    /// keys sort after `after`, in key order, and whether more follow.
    pub fn export(
        &self,
        partition: PartitionId,
        after: Option<&[u8]>,
        max: usize,
        now: UnixMillis,
    ) -> (Vec<Record>, bool) {
        if partition.0 as usize >= self.parts.len() {
            return (Vec::new(), false);
        }
        // Gate-aware: a snapshot never captures half a transaction unit.
        let part = self.lock(partition.0);
        let mut all = collect(&part, now.0, |k| after.is_none_or(|a| k > a));
        drop(part);
        all.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let more = all.len() > max;
        all.truncate(max.max(1));
        (all, more)
    }

    /// Every record (tombstones included) of `partition` in the digest
    /// buckets set in `mask`.
    pub fn bucket_records(
        &self,
        partition: PartitionId,
        mask: u64,
        now: UnixMillis,
    ) -> Vec<Record> {
        if partition.0 as usize >= self.parts.len() {
            return Vec::new();
        }
        let part = self.lock(partition.0);
        collect(&part, now.0, |k| mask & (1 << bucket_of(k)) != 0)
    }

    /// The digest of `partition`'s live keys, or `None` when it holds no
    /// live key (an empty copy and no copy look the same).
    pub fn digest(&self, partition: PartitionId, now: UnixMillis) -> Option<Digest> {
        if partition.0 as usize >= self.parts.len() {
            return None;
        }
        let mut part = self.lock(partition.0);
        if part.evicted.digest_is_lossy(now.0) {
            return Some(Digest(vec![LOSSY; DIGEST_BUCKETS]));
        }
        let mut buckets = vec![0u64; DIGEST_BUCKETS];
        let mut any = false;
        for e in part
            .slots
            .iter()
            .filter(|e| e.is_live() && !e.is_expired(now.0))
        {
            let h = digest_hash(e.key());
            let b = (h % DIGEST_BUCKETS as u64) as usize;
            buckets[b] = buckets[b].wrapping_add(mix(h, e.version, e.node));
            any = true;
        }
        // Keys evicted here count as held (see the module docs).
        for (&h, m) in part.evicted.iter().filter(|(_, m)| m.is_live(now.0)) {
            let b = (h % DIGEST_BUCKETS as u64) as usize;
            buckets[b] = buckets[b].wrapping_add(mix(h, m.version, m.node));
            any = true;
        }
        any.then_some(Digest(buckets))
    }

    /// The digest of `partition`, all zero when it is empty.
    pub fn digest_or_empty(&self, partition: PartitionId, now: UnixMillis) -> Digest {
        self.digest(partition, now)
            .unwrap_or_else(|| Digest(vec![0; DIGEST_BUCKETS]))
    }

    /// Live keys held in `partition`.
    pub fn partition_len(&self, partition: PartitionId) -> u64 {
        self.parts.get(partition.0 as usize).map_or(0, |l| {
            u64::from(l.lock().unwrap_or_else(|e| e.into_inner()).live)
        })
    }

    /// Live keys and keys with a TTL held in `partition`.
    pub fn partition_counts(&self, partition: PartitionId) -> (u64, u64) {
        self.parts.get(partition.0 as usize).map_or((0, 0), |l| {
            let part = l.lock().unwrap_or_else(|e| e.into_inner());
            (u64::from(part.live), u64::from(part.with_ttl))
        })
    }

    /// Remove every key and tombstone of `partition` (this node no longer
    /// holds it). Returns the number of live keys dropped.
    pub fn drop_partition(&self, partition: PartitionId) -> u64 {
        let pid = partition.0;
        if pid >= self.partitions() {
            return 0;
        }
        let mut part = self.lock(pid);
        let slots: Vec<u32> = part
            .slots
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_live())
            .map(|(i, _)| i as u32)
            .collect();
        for &s in &slots {
            self.remove_at(pid, &mut part, s, Removal::Deleted, false);
        }
        let freed = Self::tombs_bytes(&part) + part.evicted.clear();
        self.charge(pid, -(freed as i64));
        part.tombs = hashbrown::HashMap::new();
        self.maybe_compact(&mut part);
        slots.len() as u64
    }

    /// Forget tombstones whose lifetime ended, and eviction marks as old
    /// (their write's stamp `tombstone_ttl` ago) or expired. Returns how
    /// many tombstones went.
    pub fn purge_tombstones(&self, now: UnixMillis) -> usize {
        let ttl = self.tombstone_ttl.load(Ordering::Relaxed);
        let mut purged = 0;
        for pid in 0..self.partitions() {
            let mut part = self.lock(pid);
            if !part.evicted.is_empty() {
                part.evicted.retain(|_, m| {
                    let stamped = m.version >> crate::clock::LOGICAL_BITS;
                    m.is_live(now.0) && stamped.saturating_add(ttl) > now.0
                });
                self.recharge_marks(pid, &mut part);
            }
            if part.tombs.is_empty() {
                continue;
            }
            let before = part.tombs.len();
            let mut freed = 0u64;
            part.tombs.retain(|k, t| {
                let keep = t.until > now.0;
                if !keep {
                    freed += super::marks::tomb_cost(k.len());
                }
                keep
            });
            self.charge(pid, -(freed as i64));
            purged += before - part.tombs.len();
            if part.tombs.is_empty() {
                part.tombs = hashbrown::HashMap::new();
            }
        }
        purged
    }
}

/// The records of one (locked) partition whose keys pass `keep`.
fn collect(part: &Partition, now: u64, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Record> {
    let mut out = Vec::new();
    for e in part
        .slots
        .iter()
        .filter(|e| e.is_live() && !e.is_expired(now))
    {
        if keep(e.key()) {
            out.push(Record {
                key: Bytes::copy_from_slice(e.key()),
                version: Version(e.version),
                node: e.node,
                body: Body::Value {
                    value: Bytes::copy_from_slice(e.value()),
                    expires_at: e.expires_at,
                },
            });
        }
    }
    for (k, t) in part.tombs.iter() {
        if keep(k) {
            out.push(Record {
                key: Bytes::copy_from_slice(k),
                version: Version(t.version),
                node: t.node,
                body: Body::Tombstone,
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;
