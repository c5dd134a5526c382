//! Shoal: a peer-to-peer distributed cache.
//!
//! # Layout
//! - [`store`]: the local engine (partitioned maps, TTL, eviction). Pure.
//! - `resp`: the Redis protocol: codec, command table, TCP server.
//! - [`config`]: one `Config` for the binary and the embedded node.

#![forbid(unsafe_code)]

pub mod config;
pub mod store;
