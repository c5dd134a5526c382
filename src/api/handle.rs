//! [`Node`]: the embedded handle — the core node plus the bytes API.
//!
//! # What this module owns
//! The handle a service keeps: cheap to clone, `Send + Sync`. Each bytes
//! operation becomes the RESP command a client would send and runs through
//! [`Exec`] (the router in cluster mode, so a key owned elsewhere is
//! forwarded). It also remembers write-behind queues so `shutdown` flushes
//! them before the node leaves.
//!
//! # What it must not do
//! Wire tasks (the core [`crate::node::Node`] does) or interpret values.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::backend::Flush;
use super::cache::{Cache, valid_name};
use super::exec::Exec;
use super::loader::{FlightTable, Registered, millis};
use super::{Error, NodeBuilder};
use crate::cluster::ClusterState;
use crate::resp::codec::Frame;
use crate::resp::hook::{ClusterHook, MemberRow};

/// An embedded Shoal peer. Clone it freely; [`Node::shutdown`] stops it.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let node = shoal::Node::builder().start().await?;
/// node.set("k", "v", Some(std::time::Duration::from_secs(60))).await?;
/// assert!(!node.set_nx("k", "other", None).await?);
/// assert_eq!(node.mget(["k", "missing"]).await?.len(), 2);
/// assert!(node.delete("k").await?);
/// node.shutdown().await;
/// # Ok::<(), shoal::Error>(())
/// # });
/// ```
#[derive(Clone)]
pub struct Node {
    /// Shared parts.
    inner: Arc<Inner>,
}

struct Inner {
    /// The core node (store, server, cluster tasks).
    core: crate::node::Node,
    /// Where commands run.
    exec: Exec,
    /// Write-behind queues to flush on shutdown.
    flushers: Mutex<Vec<Arc<dyn Flush>>>,
}

impl Node {
    /// A builder with the same options as `shoal serve`.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Wrap a started core node.
    pub(crate) fn from_core(core: crate::node::Node) -> Node {
        let exec = match core.router() {
            Some(router) => Exec::Cluster(router.clone()),
            None => Exec::Local {
                store: core.store().clone(),
                clock: crate::resp::clock::system_clock(),
                flights: Arc::new(FlightTable::default()),
                hot: core.hot().clone(),
            },
        };
        Node {
            inner: Arc::new(Inner {
                core,
                exec,
                flushers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The core node (addresses, store, router, membership).
    pub fn core(&self) -> &crate::node::Node {
        &self.inner.core
    }

    pub(crate) fn exec(&self) -> &Exec {
        &self.inner.exec
    }

    /// Run a command and return its reply frame.
    async fn run(&self, args: Vec<Bytes>) -> Result<Frame, Error> {
        self.inner.exec.run(args).await
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        match self.run(vec![word("GET"), bytes(key)]).await? {
            Frame::Bulk(v) => Ok(Some(v)),
            Frame::Null => Ok(None),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// Set `key` to `value`, expiring after `ttl` if given.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let mut args = vec![word("SET"), bytes(key), bytes(value)];
        push_ttl(&mut args, ttl);
        self.run(args).await.map(|_| ())
    }

    /// Set `key` only if it does not exist; `true` when it was set.
    pub async fn set_nx(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        let mut args = vec![word("SET"), bytes(key), bytes(value), word("NX")];
        push_ttl(&mut args, ttl);
        match self.run(args).await? {
            Frame::Null => Ok(false),
            _ => Ok(true),
        }
    }

    /// Delete `key`; `true` when it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        match self.run(vec![word("DEL"), bytes(key)]).await? {
            Frame::Integer(n) => Ok(n > 0),
            other => Err(unexpected("DEL", &other)),
        }
    }

    /// Make `key` expire after `ttl`; `true` when the key exists.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let ms = Bytes::from(millis(ttl).to_string());
        match self.run(vec![word("PEXPIRE"), bytes(key), ms]).await? {
            Frame::Integer(n) => Ok(n > 0),
            other => Err(unexpected("PEXPIRE", &other)),
        }
    }

    /// The values of several keys, in order (split over their owners).
    pub async fn mget<I, K>(&self, keys: I) -> Result<Vec<Option<Bytes>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let mut args = vec![word("MGET")];
        args.extend(keys.into_iter().map(bytes));
        if args.len() == 1 {
            return Ok(Vec::new());
        }
        match self.run(args).await? {
            Frame::Array(items) => items
                .into_iter()
                .map(|f| match f {
                    Frame::Bulk(v) => Ok(Some(v)),
                    Frame::Null => Ok(None),
                    other => Err(unexpected("MGET", &other)),
                })
                .collect(),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// The members as `SHOAL MEMBERS` shows them (empty when standalone).
    pub fn members(&self) -> Vec<MemberRow> {
        self.inner
            .core
            .router()
            .map(|r| r.members())
            .unwrap_or_default()
    }

    /// Resolves when this node holds everything it owns: in cluster mode
    /// once it is on its own ring; at once when standalone. (Before
    /// replication hand-off exists, a node holds what it owns from the
    /// start.)
    pub async fn ready(&self) {
        let Some(mut rx) = self.inner.core.subscribe_cluster() else {
            return;
        };
        let _ = rx
            .wait_for(|s| s.ring.members().iter().any(|m| *m == s.me))
            .await;
    }

    /// A receiver that sees every new cluster state (members and ring);
    /// `None` when standalone.
    pub fn subscribe_membership(&self) -> Option<watch::Receiver<Arc<ClusterState>>> {
        self.inner.core.subscribe_cluster()
    }

    /// A typed view named `name` (`[A-Za-z0-9_.-]{1,64}`).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = shoal::Node::builder().start().await?;
    /// let users = node.cache::<u64, String>("users")?;
    /// users.set(&7, &"ada".to_string()).await?;
    /// assert_eq!(users.get(&7).await?, Some("ada".to_string()));
    /// node.shutdown().await;
    /// # Ok::<(), shoal::Error>(())
    /// # });
    /// ```
    pub fn cache<K, V>(&self, name: &str) -> Result<Cache<K, V>, Error> {
        if !valid_name(name) {
            return Err(Error::CacheName(name.to_string()));
        }
        Ok(Cache::new(self.clone(), name))
    }

    /// Register the loader this node runs for `cache` when it is a key's
    /// primary: concurrent misses from any node then load here, once.
    /// Misses whose primary has no loader registered run the caller's
    /// loader instead (still once per key across the cluster).
    pub fn register_loader<K, V, F, Fut, E>(&self, cache: &Cache<K, V>, loader: F)
    where
        K: serde::de::DeserializeOwned + Send + 'static,
        V: serde::Serialize + Send + 'static,
        F: Fn(K) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: std::fmt::Display + 'static,
    {
        let reg = Registered {
            loader: super::cache::erase_loader(loader),
            ttl: cache.ttl(),
            negative_ttl: cache.negative_ttl(),
            timeout: cache.loader_timeout(),
        };
        self.inner.exec.flights().register(cache.name(), reg);
    }

    /// Counters of this node's single-flight table (loads it coordinated
    /// as a primary).
    pub fn flight_stats(&self) -> &super::loader::FlightStats {
        &self.inner.exec.flights().stats
    }

    /// Remember a write-behind queue to flush on shutdown.
    pub(crate) fn add_flusher(&self, f: Arc<dyn Flush>) {
        if let Ok(mut v) = self.inner.flushers.lock() {
            v.push(f);
        }
    }

    /// Flush write-behind queues, leave the cluster, stop serving, and
    /// return when every task has ended.
    pub async fn shutdown(&self) {
        let flushers: Vec<Arc<dyn Flush>> = match self.inner.flushers.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for f in flushers {
            f.flush_and_stop().await;
        }
        self.inner.core.shutdown().await;
    }
}

fn word(w: &'static str) -> Bytes {
    Bytes::from_static(w.as_bytes())
}

fn bytes(b: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(b.as_ref())
}

fn push_ttl(args: &mut Vec<Bytes>, ttl: Option<Duration>) {
    if let Some(ttl) = ttl {
        args.push(word("PX"));
        args.push(Bytes::from(millis(ttl).to_string()));
    }
}

fn unexpected(cmd: &str, frame: &Frame) -> Error {
    Error::Server(format!("unexpected reply to {cmd}: {frame:?}"))
}
