//! [`Client`]: the ring-aware thin client, for services that want no peer
//! in-process.
//!
//! # What this module owns
//! A RESP client that learns the cluster's placement and sends each key
//! straight to its primary, so no request pays a forwarding hop:
//!
//! - **Ring fetch.** From any node: `SHOAL RING` (P, R, the placement
//!   algorithm and key hash by name, the ring digest, and the members with
//!   their RESP addresses, states and whether placement counts them). The
//!   client builds the same [`Ring`](crate::ring::Ring) the node built and checks its digest
//!   against the node's: equal digests mean the same placement. A node
//!   that does not know `SHOAL RING` (an older build) is asked
//!   `INFO cluster` and `SHOAL MEMBERS` instead; a node that names another
//!   placement algorithm is not routed by (every command goes to a node,
//!   which forwards).
//! - **Routing.** `partition_of(key, P)` → the ring's primary → that
//!   member's RESP address (its TLS RESP address when the client speaks
//!   TLS) → a small connection
//!   [`Pool`](super::client_conn::Pool).
//! - **Refresh.** On an interval (default 1 s), after any connection error,
//!   after a `TRYAGAIN` reply (views disagree) and when the fetched digest
//!   differed from the one the client computed. A stale view is never
//!   wrong, only slower: a node that is not the primary forwards.
//! - **Fallback.** When the primary cannot be reached, the command goes to
//!   the other members (then the seeds) in turn. Only what did not run
//!   goes on: of a batch, the commands answered with a plain `TRYAGAIN`;
//!   of a batch written without an answer (connection lost, timeout), only
//!   the commands harmless to run twice (the rest answer `TRYAGAIN outcome
//!   unknown`); never a command a later command of the batch that ran
//!   writes a key of ([`resend`]).
//!
//! # What it must not do
//! Hold state a node would not: no caching of values, no writes of its own.
//! Typed caches use the key and value scheme of [`crate::Cache`]
//! (`<name>:<hex of postcard(key)>`, postcard values, empty = negative).

mod builder;
mod resend;
mod ring_reply;
mod routing;
mod typed;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;

pub use self::builder::ClientBuilder;
use self::routing::Inner;
pub use self::typed::ClientCache;
use super::Error;
use crate::resp::codec::Frame;
use crate::ring::RingDigest;

/// Commands of one pipeline bound for one node: input positions, commands.
type Group = (Vec<usize>, Vec<Vec<Bytes>>);

/// Counters of one client.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Commands sent to the primary the client computed.
    pub routed: AtomicU64,
    /// Commands sent elsewhere because the primary was unknown or failed.
    pub fallbacks: AtomicU64,
    /// Ring fetches that succeeded.
    pub refreshes: AtomicU64,
    /// Ring fetches whose computed digest differed from the node's.
    pub digest_mismatches: AtomicU64,
}

/// A thin, ring-aware RESP client. Cheap to clone; the refresh task stops
/// when the last clone is dropped.
///
/// ```no_run
/// # async fn demo(addr: std::net::SocketAddr) -> Result<(), shoal::Error> {
/// let client = shoal::Client::builder([addr])
///     .password("secret") // or .user("app", "pw"); .tls("ca.crt")? for TLS
///     .connect()
///     .await?;
/// client.set("k", "v", None).await?;
/// assert_eq!(client.get("k").await?.as_deref(), Some(&b"v"[..]));
/// let products = client.cache::<String, u32>("products")?;
/// products.set(&"sku-1".to_string(), &1299).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    /// Shared parts.
    inner: Arc<Inner>,
}

fn arg(b: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(b.as_ref())
}

fn reply_error(f: &Frame) -> Option<Error> {
    match f {
        Frame::Error(e) => Some(Error::from_reply(e)),
        _ => None,
    }
}

impl Client {
    /// Connect with default options.
    pub async fn connect(seed: SocketAddr) -> Result<Client, Error> {
        Client::builder([seed]).connect().await
    }

    /// Fetch the ring now (it is also fetched on an interval and on errors).
    pub async fn refresh(&self) -> Result<(), Error> {
        self.inner.refresh().await
    }

    /// The members of the ring the client routes by, sorted.
    pub fn members(&self) -> Vec<String> {
        let view = self.inner.view();
        view.ring
            .as_ref()
            .map(|r| r.members().iter().map(|m| m.as_str().to_string()).collect())
            .unwrap_or_default()
    }

    /// Whether every member of the client's ring has a known RESP address
    /// (a member's address arrives with its gossip metadata, shortly
    /// after it joins).
    pub fn routable(&self) -> bool {
        let view = self.inner.view();
        view.ring
            .as_ref()
            .is_some_and(|r| r.members().iter().all(|m| view.resp.contains_key(m)))
    }

    /// The ring digest the last answering node reported.
    pub fn ring_digest(&self) -> Option<RingDigest> {
        self.inner.view().digest
    }

    /// The client's counters.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Where `key` is sent: its primary's RESP address, when known.
    pub fn route_of(&self, key: impl AsRef<[u8]>) -> Option<SocketAddr> {
        self.inner.route(&self.inner.view(), key.as_ref())
    }

    /// Run one command whose routing key is `key`; the raw reply frame.
    pub async fn command(&self, key: &[u8], args: Vec<Bytes>) -> Result<Frame, Error> {
        let target = self.inner.route(&self.inner.view(), key);
        let mut replies = self.inner.run_at(target, &[args]).await?;
        replies
            .pop()
            .ok_or_else(|| Error::Server("no reply".into()))
    }

    /// Run single-key commands, each `(key, args)`, pipelined per primary
    /// (one write and one read pass per node); replies in input order.
    pub async fn pipeline(&self, cmds: Vec<(Bytes, Vec<Bytes>)>) -> Result<Vec<Frame>, Error> {
        let view = self.inner.view();
        let mut groups: HashMap<Option<SocketAddr>, Group> = HashMap::new();
        for (i, (key, args)) in cmds.into_iter().enumerate() {
            let g = groups.entry(self.inner.route(&view, &key)).or_default();
            g.0.push(i);
            g.1.push(args);
        }
        let total: usize = groups.values().map(|g| g.0.len()).sum();
        let mut runs = tokio::task::JoinSet::new();
        for (target, (idx, batch)) in groups {
            let inner = self.inner.clone();
            runs.spawn(async move { inner.run_at(target, &batch).await.map(|r| (idx, r)) });
        }
        let mut out: Vec<Option<Frame>> = vec![None; total];
        while let Some(done) = runs.join_next().await {
            let (idx, replies) =
                done.map_err(|e| Error::Server(format!("pipeline task failed: {e}")))??;
            for (i, r) in idx.into_iter().zip(replies) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(r);
                }
            }
        }
        out.into_iter()
            .map(|f| f.ok_or_else(|| Error::Server("missing reply".into())))
            .collect()
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref();
        match self.command(key, vec![arg("GET"), arg(key)]).await? {
            Frame::Bulk(v) => Ok(Some(v)),
            Frame::Null => Ok(None),
            other => Err(reply_error(&other).unwrap_or_else(|| unexpected("GET", &other))),
        }
    }

    /// Set `key` to `value`, expiring after `ttl` if given.
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let key = key.as_ref();
        let mut args = vec![arg("SET"), arg(key), arg(value)];
        if let Some(ttl) = ttl {
            args.push(arg("PX"));
            args.push(arg(ttl.as_millis().max(1).to_string()));
        }
        let reply = self.command(key, args).await?;
        reply_error(&reply).map_or(Ok(()), Err)
    }

    /// Delete `key`; `true` when it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        match self.command(key, vec![arg("DEL"), arg(key)]).await? {
            Frame::Integer(n) => Ok(n > 0),
            other => Err(reply_error(&other).unwrap_or_else(|| unexpected("DEL", &other))),
        }
    }

    /// The values of `keys`, in order; each GET goes to its key's primary,
    /// pipelined per node.
    pub async fn mget<I, K>(&self, keys: I) -> Result<Vec<Option<Bytes>>, Error>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let cmds = keys
            .into_iter()
            .map(|k| (arg(&k), vec![arg("GET"), arg(&k)]))
            .collect();
        self.pipeline(cmds)
            .await?
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(v) => Ok(Some(v)),
                Frame::Null => Ok(None),
                other => Err(reply_error(&other).unwrap_or_else(|| unexpected("GET", &other))),
            })
            .collect()
    }
}

fn unexpected(cmd: &str, f: &Frame) -> Error {
    Error::Server(format!("unexpected reply to {cmd}: {f:?}"))
}
