//! The Redis protocol front door: RESP2/RESP3 codec, command table, TCP server.
//!
//! # Layout
//! - [`codec`]: frames, the request parser, the encoder. Pure.
//! - [`reply`]: the reply writer connections and handlers write into.
//! - [`commands`]: the command table and one file per command family.
//! - [`glob`]: Redis-style glob matching (KEYS, SCAN MATCH, CONFIG GET).
//! - `state`: what connections share (counters, clients) and a session.
//! - `connection`: one client's read-parse-execute-write loop.
//! - [`server`]: the listener, connection tasks and the cron.
//! - [`acl`]: ACL users and the permission check.
//! - [`tls`]: the client port's TLS configuration (`--tls-listen`).
//! - [`limits`]: idle timeout, output buffer limit, rate limit.
//! - [`clock`]: wall clock or a manual clock for tests.
//!
//! # Life of a request
//! bytes -> `codec::parse_request` (zero-copy args) -> `commands::execute`
//! (lookup, arity, auth) -> handler writes into a [`reply::Reply`] -> after
//! the batch, one write of every reply.
//!
//! # Differences from Redis (checked byte for byte against redis-server 7.0.15)
//! - One database: `SELECT 0` only; other types' commands (LPUSH, HSET ...)
//!   are unknown commands.
//! - HELLO reports `version` [`REDIS_COMPAT_VERSION`] (INFO adds
//!   `shoal_version`); CLIENT SETINFO (7.2) is supported.
//! - INCRBYFLOAT computes in `f64` and prints the shortest exact form
//!   (`-498.4` where Redis's `long double` prints `-498.39999999999999999`).
//! - Multi-key writes (MSET, MSETNX, RENAME across partitions) are applied
//!   key by key, not atomically: each key is atomic in its partition.
//! - The multibulk count limit is `proto-max-multibulk-len` (default 1M).
//! - `avg_ttl` in INFO keyspace is always 0.
//!
//! # What this module must not do
//! Know where keys live beyond the local [`Store`](crate::store::Store):
//! routing to owners belongs to `cluster`.

pub mod acl;
pub mod clock;
pub mod codec;
pub mod commands;
mod connection;
pub mod glob;
pub mod hook;
mod io_threads;
pub mod limits;
pub mod multi;
pub mod reply;
pub mod server;
pub mod state;
pub mod tls;

pub use clock::{Clock, ManualClock, system_clock};
pub use server::Server;

/// The Redis version Shoal answers to (HELLO `version`, INFO
/// `redis_version`): the command surface it follows.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";
