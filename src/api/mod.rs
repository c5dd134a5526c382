//! The embedded peer: Shoal inside a Rust service.
//!
//! # What this module owns
//! - [`Node`] and [`NodeBuilder`]: the same node `shoal serve` runs,
//!   started from code, with a bytes API (`get`, `set`, `set_nx`, `delete`,
//!   `expire`, `mget`) that routes through the same router as RESP clients;
//! - [`Cache`]: typed views (serde + postcard) in their own keyspace;
//! - read-through with single-flight at the key's primary (`loader`,
//!   peer requests in `wire`);
//! - write-through and write-behind to a [`Backend`] (`backend`);
//! - an opt-in near cache of a typed cache's reads (`near`) and a
//!   decaying top-k sketch of hot keys (`hot`);
//! - [`Client`], the ring-aware thin client over RESP (`client`,
//!   `client_conn`).
//!
//! # What it must not do
//! Duplicate command semantics: every operation is a RESP command run by
//! the handlers in `resp::commands`, here or on the key's owner.
//!
//! # Key scheme of typed caches
//! A typed cache named `products` stores key `k` under
//! `products:<hex of postcard(k)>` (lower-case hex), and the value as
//! `postcard(v)`. An empty value is a *negative entry* (the loader found no
//! row). No hash tag is used, so a cache's keys spread over every
//! partition. A RESP client reads the same keys:
//! `GET products:05736b752d31` is the `String` key `"sku-1"`.
//!
//! # Example
//! ```
//! # tokio_test_block_on(async {
//! let node = shoal::Node::builder().start().await?;
//! node.set("greeting", "hello", None).await?;
//! assert_eq!(node.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! node.shutdown().await;
//! # Ok::<(), shoal::Error>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Runtime::new().unwrap().block_on(f)
//! # }
//! ```

mod backend;
mod builder;
mod cache;
mod client;
mod client_conn;
pub mod exec;
mod handle;
pub mod hot;
pub mod loader;
pub(crate) mod near;
pub mod wire;

pub use backend::{Backend, BackendError, WriteBehindStats, WritePolicy};
pub use builder::NodeBuilder;
pub use cache::{Cache, Versioned};
pub use client::{Client, ClientBuilder, ClientCache, ClientStats};
pub use handle::Node;
pub use near::{DEFAULT_NEAR_TTL, NearStats};

/// Why an embedded operation failed. Each variant says whether the cache
/// may have changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node could not start (configuration, certificates, sockets).
    /// Nothing ran.
    #[error("node did not start: {0}")]
    Start(String),
    /// The operation (or a load it waited on) did not finish in time. A
    /// write may or may not have been applied.
    #[error("timed out")]
    Timeout,
    /// The key's owner could not be reached, or views were changing
    /// (`TRYAGAIN`); the operation may be retried. Nothing was applied
    /// unless the owner applied it before its answer was lost.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The node is over `maxmemory` and could not evict: nothing written.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// The value or key is larger than the node accepts: nothing written.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The node refused: a password is required. Nothing ran.
    #[error("not authenticated: {0}")]
    NotAuthenticated(String),
    /// Any other error reply from the command's handler. Nothing written.
    #[error("server error: {0}")]
    Server(String),
    /// A key or value could not be encoded, or a stored value could not be
    /// decoded as the cache's type. Nothing written.
    #[error("codec: {0}")]
    Codec(String),
    /// The loader failed (or timed out); its error reached every caller
    /// waiting on that load. Nothing was cached.
    #[error("loader: {0}")]
    Loader(String),
    /// The backend refused a write-through: the cache was not changed.
    #[error("backend: {0}")]
    Backend(String),
    /// The name of a cache is not `[A-Za-z0-9_.-]{1,64}`.
    #[error("invalid cache name '{0}'")]
    CacheName(String),
}

impl Error {
    /// Map an error reply to a variant by its code.
    pub(crate) fn from_reply(msg: &[u8]) -> Error {
        let text = String::from_utf8_lossy(msg).into_owned();
        let code = text.split(' ').next().unwrap_or("");
        match code {
            "TRYAGAIN" => Error::Unavailable(text),
            "OOM" => Error::OutOfMemory(text),
            "NOAUTH" => Error::NotAuthenticated(text),
            _ if text.contains("too large") || text.contains("too big") => Error::TooLarge(text),
            _ => Error::Server(text),
        }
    }

    /// Whether retrying later may succeed (timeouts, unreachable owners).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Timeout | Error::Unavailable(_))
    }
}
