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
//!   write would take `used` over `maxmemory`, the policy evicts first or the
//!   write fails with [`StoreError::OutOfMemory`].

mod counters;
mod entry;
mod eviction;
mod partition;
mod scan;
mod ttl;
mod types;

pub use types::{
    EntryRef, EvictionPolicy, Mutation, PartitionId, StoreConfig, StoreError, StoreStats,
    UnixMillis, Version, partition_of,
};
mod engine;

pub use engine::{ScanPage, Store};

#[cfg(test)]
mod tests;
