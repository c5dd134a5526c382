//! Shoal: a peer-to-peer distributed cache.
//!
//! # Layout
//! - [`store`]: the local engine (partitioned maps, TTL, eviction). Pure.
//! - [`resp`]: the Redis protocol: codec, command table, TCP server.
//! - [`config`]: one `Config` for the binary and the embedded node.
//! - [`certs`]: the cluster CA and node certificates.
//! - [`transport`]: the peer transport trait, QUIC + mTLS and in-memory.
//! - [`membership`]: SWIM (foca) over the transport; the published view.
//! - [`ring`]: members -> partition -> replicas. Pure.
//! - [`cluster`]: routing to owners.
//! - [`api`]: the embedded peer ([`Node`], typed caches, loaders, backends).
//! - [`admin`]: the admin HTTP endpoint (metrics, health, status page).
//! - [`hotkeys`]: hot keys at the primary; near-cache invalidation.
//! - [`persist`]: snapshots to `--data-dir` (SAVE, BGSAVE, shutdown, load).
//! - [`memory`]: the counting allocator and the guard that keeps the
//!   process under `maxmemory`.

#![deny(unsafe_code)]

pub mod admin;
pub mod api;
pub mod certs;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod hotkeys;
pub mod membership;
pub mod memory;
pub mod node;
pub mod persist;
pub mod proto;
pub mod resp;
pub mod ring;
pub mod shutdown;
pub mod store;
pub mod transport;

pub use api::{Cache, Client, ClientBuilder, ClientCache, ClientStats, Error, Node, NodeBuilder};
