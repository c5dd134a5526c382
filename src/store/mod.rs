//! The local engine: P partitions of `hashbrown` maps, TTL, memory accounting
//! and eviction.
//!
//! # What this module owns
//! Every key this node holds, its value, version and expiry, and the bytes
//! they cost. It answers "what is stored here" and nothing else.
//!
//! # What it must not do
//! No tokio, no sockets, no clocks: time comes in as [`UnixMillis`] arguments
//! so tests control it. No knowledge of RESP, the ring or the cluster.
//!
//! # Contract (used by `resp::commands` and later by `cluster`)
//! - Every read or write names its key; the key hashes (xxh3-64, seed 0, over
//!   the Redis hash tag when the key has one) to a [`PartitionId`].
//! - Each partition is one `hashbrown` table behind its own lock, so requests
//!   on different partitions never contend.
//! - [`Store::update`] is the one read-modify-write primitive: the closure
//!   sees the live entry (never an expired one) and returns a [`Mutation`].
//!   Commands like INCR, APPEND, SET NX GET are built on it and are atomic.
//! - Expired entries are invisible at once and reclaimed lazily on access and
//!   actively by [`Store::expire_cycle`].
//! - Memory is counted in bytes of keys, values and per-entry overhead; when a
//!   write would take `used` over the limit, the policy evicts first or the
//!   write fails with [`StoreError::OutOfMemory`]. The limit is `maxmemory`
//!   less the overhead the node's memory guard measures in the process
//!   ([`Store::set_overhead`], `crate::memory::guard`), floored at half of
//!   `maxmemory` ([`Store::limit`]).
//!
//! # Layout
//! - `types.rs`: the vocabulary (time, versions, partitions, policies).
//! - `engine.rs`: [`Store`] and its public operations.
//! - `partition.rs`: one partition = a slab of 48-byte entry slots plus a
//!   `hashbrown::HashTable<u32>` of slot numbers (5 bytes a bucket), so a
//!   slot number is a stable 4-byte name for a key.
//! - `entry.rs`: an entry's layout (key and value in one allocation) and
//!   the byte-charge formula.
//! - `counters.rs`: striped atomic statistics.
//! - `ttl.rs`: the active expiry cycle. `scan.rs`: SCAN and RANDOMKEY.
//! - `replica.rs`: what replication needs: versions stamped by a hybrid
//!   logical clock, versioned tombstones, last-writer-wins merge of a
//!   peer's [`Record`], partition export, bucketed digests, dropping a
//!   partition.
//! - `gate.rs`: partition gates (transactions, multi-key commands);
//!   `watch.rs`: what `WATCH` remembers of a key and `EXEC` checks.
//! - `marks.rs`: eviction marks and tombstones under `maxmemory`: their
//!   charge, the marks' cap (1/16 of the limit), lossy partitions.
//! - `eviction/`: sampled LRU/LFU/random/TTL (`sample.rs`), sharded
//!   FIFO/S3-FIFO queues (`fifo.rs`), per-entry metadata (`meta.rs`).
//!
//! # Measured (release build, 2-core VM)
//! - 1,000,000 keys of 16 bytes with 100-byte values, P = 4096: about 186
//!   bytes of RSS per key (the charge, `used_memory`, is 192 per key);
//!   `examples/store_bytes_per_key.rs`.
//! - Hit ratios of every policy against exact LRU and Belady on Zipf
//!   workloads: `examples/hitratio.rs`.
//!
//! # Time
//! An entry is expired once `now >= expires_at`. A write whose deadline has
//! already passed removes the key.

mod counters;
mod entry;
mod eviction;
mod gate;
mod marks;
mod partition;
mod prefetch;
mod replica;
mod scan;
mod ttl;
mod types;
mod watch;

pub use types::{
    EntryRef, EvictionPolicy, Mutation, PartitionId, StoreConfig, StoreError, StoreStats,
    UnixMillis, Version, partition_of,
};
mod engine;

pub use engine::{ScanPage, Store};
pub use gate::Gate;
pub use marks::{LOSSY_MS, MARK_SHARE, MarkStats};
pub use prefetch::PREFETCH_BATCH;
pub use replica::{Body, DIGEST_BUCKETS, Digest, Origin, Record};
pub use watch::KeyStamp;

#[cfg(test)]
mod tests;
