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
//!   client builds the same [`Ring`] the node built and checks its digest
//!   against the node's: equal digests mean the same placement. A node
//!   that does not know `SHOAL RING` (an older build) is asked
//!   `INFO cluster` and `SHOAL MEMBERS` instead; a node that names another
//!   placement algorithm is not routed by (every command goes to a node,
//!   which forwards).
//! - **Routing.** `partition_of(key, P)` → the ring's primary → that
//!   member's RESP address (its TLS RESP address when the client speaks
//!   TLS) → a small connection [`Pool`].
//! - **Refresh.** On an interval (default 1 s), after any connection error,
//!   after a `TRYAGAIN` reply (views disagree) and when the fetched digest
//!   differed from the one the client computed. A stale view is never
//!   wrong, only slower: a node that is not the primary forwards.
//! - **Fallback.** When the primary cannot be reached, the command goes to
//!   the other members (then the seeds) in turn.
//!
//! # What it must not do
//! Hold state a node would not: no caching of values, no writes of its own.
//! Typed caches use the key and value scheme of [`crate::Cache`]
//! (`<name>:<hex of postcard(key)>`, postcard values, empty = negative).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;
use super::client_conn::{ConnOptions, Pool, TlsOptions};
use crate::resp::codec::Frame;
use crate::resp::commands::{KEY_HASH, PLACEMENT};
use crate::ring::{Ring, RingDigest};
use crate::store::partition_of;
use crate::transport::NodeName;

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

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    /// Nodes to learn the ring from (any member will do).
    seeds: Vec<SocketAddr>,
    /// Connections per node.
    pool_size: usize,
    /// Time between background ring refreshes.
    refresh_interval: Duration,
    /// Connect and per-batch timeout.
    timeout: Duration,
    /// Whether to route by key (off: every command goes to the first
    /// seed, which forwards; for comparisons).
    routing: bool,
    /// TLS to the RESP port, when set.
    tls: Option<TlsOptions>,
    /// `AUTH` on every connection: (user, password).
    auth: Option<(Option<String>, String)>,
}

impl ClientBuilder {
    /// Connections per node (default 4).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Background refresh period (default 1 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// Connect and request timeout (default 5 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Route each key to its primary (default `true`); `false` sends
    /// everything to the first seed and lets the cluster forward.
    pub fn routing(mut self, on: bool) -> Self {
        self.routing = on;
        self
    }

    /// Authenticate every connection as the `default` user with
    /// `password` (the nodes' `requirepass`): `AUTH password`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.auth = Some((None, password.into()));
        self
    }

    /// Authenticate every connection as ACL user `user`:
    /// `AUTH user password`.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((Some(user.into()), password.into()));
        self
    }

    /// Speak TLS to the seeds (the nodes' `tls-listen` port), trusting the
    /// CA certificates in the PEM file `ca`, as `redis-cli --tls --cacert`
    /// does. The server certificate must name the IP address connected to
    /// unless [`ClientBuilder::tls_server_name`] says otherwise.
    ///
    /// Members gossip their TLS RESP address too (`SHOAL RING` names it
    /// as `tls`), so a TLS client routes by key like a plain one, to each
    /// primary's TLS port. Members that do not report one (no
    /// `tls-listen`, an older build) are reached through the seeds, which
    /// forward.
    pub fn tls(mut self, ca: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let keep = self.tls.as_ref().and_then(|t| t.server_name.clone());
        let mut tls = TlsOptions::from_files(ca.as_ref(), None)?;
        tls.server_name = keep;
        self.tls = Some(tls);
        Ok(self)
    }

    /// Like [`ClientBuilder::tls`], also presenting the client
    /// certificate chain `cert` and its key `key` (PEM), for nodes started
    /// with `tls-client-ca`.
    pub fn tls_with_client_cert(
        mut self,
        ca: impl AsRef<std::path::Path>,
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self, Error> {
        let keep = self.tls.as_ref().and_then(|t| t.server_name.clone());
        let client = Some((cert.as_ref(), key.as_ref()));
        let mut tls = TlsOptions::from_files(ca.as_ref(), client)?;
        tls.server_name = keep;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The name the nodes' TLS certificates carry (default: the IP
    /// address connected to). Takes effect with [`ClientBuilder::tls`].
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.server_name = Some(name.into());
        }
        self
    }

    /// Fetch the ring from a seed and start the refresh task. Fails when
    /// no seed answers.
    pub async fn connect(self) -> Result<Client, Error> {
        let conn = Arc::new(ConnOptions {
            timeout: self.timeout,
            tls: self.tls.clone(),
            auth: self.auth.clone(),
        });
        let inner = Arc::new(Inner {
            conn,
            opts: self,
            view: RwLock::new(Arc::new(View::default())),
            pools: RwLock::new(HashMap::new()),
            stats: ClientStats::default(),
        });
        inner.refresh().await?;
        let weak = Arc::downgrade(&inner);
        let every = inner.opts.refresh_interval;
        tokio::spawn(refresh_loop(weak, every));
        Ok(Client { inner })
    }
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

/// The placement the client believes in.
#[derive(Debug, Default)]
struct View {
    /// The ring computed from the fetched members (None: standalone node).
    ring: Option<Ring>,
    /// RESP address of each member that published one.
    resp: HashMap<NodeName, SocketAddr>,
    /// P as the node reported it.
    partitions: u32,
    /// The digest the answering node reported.
    digest: Option<RingDigest>,
}

struct Inner {
    /// Options.
    opts: ClientBuilder,
    /// How connections are opened (from `opts`).
    conn: Arc<ConnOptions>,
    /// Current view, swapped whole on refresh.
    view: RwLock<Arc<View>>,
    /// Connection pools by RESP address.
    pools: RwLock<HashMap<SocketAddr, Arc<Pool>>>,
    /// Counters.
    stats: ClientStats,
}

async fn refresh_loop(weak: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = inner.refresh().await {
            tracing::debug!(error = %e, "client ring refresh failed");
        }
    }
}

impl Inner {
    fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn pool(&self, addr: SocketAddr) -> Arc<Pool> {
        if let Some(p) = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&addr)
        {
            return p.clone();
        }
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(addr)
            .or_insert_with(|| Arc::new(Pool::new(addr, self.opts.pool_size, self.conn.clone())))
            .clone()
    }

    /// Every address worth trying, known members first, then seeds.
    fn candidates(&self, view: &View) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        // `view.resp` holds the addresses this client speaks to (TLS ports
        // over TLS; SHOAL MEMBERS, the legacy fetch, names only plain ones,
        // so a TLS client using it knows none and goes to the seeds).
        if let Some(ring) = view.ring.as_ref() {
            for m in ring.members() {
                if let Some(a) = view.resp.get(m)
                    && !out.contains(a)
                {
                    out.push(*a);
                }
            }
        }
        for s in &self.opts.seeds {
            if !out.contains(s) {
                out.push(*s);
            }
        }
        out
    }

    /// Fetch the ring from the first node that answers.
    async fn refresh(&self) -> Result<(), Error> {
        let view = self.view();
        let mut last = Error::Unavailable("no node to fetch the ring from".into());
        for addr in self.candidates(&view) {
            match self.fetch(addr).await {
                Ok(next) => {
                    self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                    *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn fetch(&self, addr: SocketAddr) -> Result<View, Error> {
        let cmd = vec![Bytes::from_static(b"SHOAL"), Bytes::from_static(b"RING")];
        let replies = self.pool(addr).batch(&[cmd]).await?;
        match replies.first() {
            Some(Frame::Error(e)) if e.starts_with(b"NOPERM") => {
                // A user not allowed to read the ring: no routing by key;
                // the seeds forward.
                tracing::debug!("SHOAL RING not permitted; not routing by key");
                Ok(View::default())
            }
            Some(Frame::Error(_)) => self.fetch_legacy(addr).await,
            Some(f) => self.view_of_ring(&ring_reply(f)?),
            None => Err(Error::Server("SHOAL RING: no reply".into())),
        }
    }

    /// The view described by a `SHOAL RING` reply.
    fn view_of_ring(&self, r: &RingReply) -> Result<View, Error> {
        if r.placement != PLACEMENT || r.key_hash != KEY_HASH || r.hash_seed != 0 {
            tracing::warn!(placement = %r.placement, key_hash = %r.key_hash, "unknown placement; not routing by key");
            return Ok(View::default());
        }
        let mut names = Vec::new();
        let mut resp = HashMap::new();
        for m in &r.members {
            let name = NodeName::new(&m.name);
            if m.in_ring {
                names.push(name.clone());
            }
            // Over TLS the member's TLS port is the one to use.
            let addr = if self.opts.tls.is_some() {
                &m.tls
            } else {
                &m.resp
            };
            if let Ok(a) = addr.parse::<SocketAddr>() {
                resp.insert(name, a);
            }
        }
        if names.len() <= 1 {
            // One node (or a standalone one) owns everything: send to the
            // seeds, whatever address the node reports for itself.
            return Ok(View::default());
        }
        let ring = Ring::new(names, r.partitions, r.replicas)
            .map_err(|e| Error::Server(format!("ring fetch: {e}")))?;
        if ring.digest() != r.digest {
            self.stats.digest_mismatches.fetch_add(1, Ordering::Relaxed);
        }
        Ok(View {
            ring: Some(ring),
            resp,
            partitions: r.partitions,
            digest: Some(r.digest),
        })
    }

    /// The ring from `INFO cluster` and `SHOAL MEMBERS` (nodes without
    /// `SHOAL RING`).
    async fn fetch_legacy(&self, addr: SocketAddr) -> Result<View, Error> {
        let cmds = vec![
            vec![Bytes::from_static(b"INFO"), Bytes::from_static(b"cluster")],
            vec![Bytes::from_static(b"SHOAL"), Bytes::from_static(b"MEMBERS")],
        ];
        let replies = self.pool(addr).batch(&cmds).await?;
        let (info, members) = match replies.as_slice() {
            [info, members] => (info, members),
            _ => return Err(Error::Server("ring fetch: wrong reply count".into())),
        };
        let info = text_of(info)?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        if field("cluster_enabled") != Some("1") {
            // A standalone node: it owns everything.
            return Ok(View::default());
        }
        let number = |name: &str| {
            field(name)
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| Error::Server(format!("ring fetch: no {name}")))
        };
        let partitions = number("cluster_partitions")?;
        let replicas = number("cluster_replicas")?;
        let digest = field("cluster_ring_digest").and_then(|d| u64::from_str_radix(d, 16).ok());
        let rows = member_rows(members)?;
        let mut names = Vec::new();
        let mut resp = HashMap::new();
        for row in rows {
            let name = NodeName::new(&row.name);
            if row.state != "down" {
                names.push(name.clone());
            }
            // SHOAL MEMBERS names plain RESP ports only: useless over TLS.
            if let Ok(a) = row.resp.parse::<SocketAddr>()
                && self.opts.tls.is_none()
            {
                resp.insert(name, a);
            }
        }
        let ring = Ring::new(names, partitions, replicas)
            .map_err(|e| Error::Server(format!("ring fetch: {e}")))?;
        let digest = digest.map(RingDigest);
        if digest.is_some_and(|d| d != ring.digest()) {
            self.stats.digest_mismatches.fetch_add(1, Ordering::Relaxed);
        }
        Ok(View {
            ring: Some(ring),
            resp,
            partitions,
            digest,
        })
    }

    /// Where `key` should go: its primary's RESP address, if known.
    fn route(&self, view: &View, key: &[u8]) -> Option<SocketAddr> {
        if !self.opts.routing {
            return self.opts.seeds.first().copied();
        }
        let ring = view.ring.as_ref()?;
        let primary = ring.primary(partition_of(key, view.partitions))?;
        view.resp.get(primary).copied()
    }

    /// Run `cmds` (all for keys routed to the same place) with fallback.
    async fn run_at(
        &self,
        target: Option<SocketAddr>,
        cmds: &[Vec<Bytes>],
    ) -> Result<Vec<Frame>, Error> {
        let view = self.view();
        if let Some(addr) = target {
            match self.pool(addr).batch(cmds).await {
                Ok(replies) if !replies.iter().any(is_tryagain) => {
                    self.stats
                        .routed
                        .fetch_add(cmds.len() as u64, Ordering::Relaxed);
                    return Ok(replies);
                }
                Ok(_) | Err(_) => {
                    let _ = self.refresh().await;
                }
            }
        }
        let mut last = Error::Unavailable("no reachable node".into());
        for addr in self.candidates(&view) {
            if Some(addr) == target {
                continue;
            }
            match self.pool(addr).batch(cmds).await {
                Ok(replies) => {
                    self.stats
                        .fallbacks
                        .fetch_add(cmds.len() as u64, Ordering::Relaxed);
                    return Ok(replies);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn is_tryagain(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(b"TRYAGAIN"))
}

fn text_of(f: &Frame) -> Result<String, Error> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Frame::Verbatim { text, .. } => Ok(String::from_utf8_lossy(text).into_owned()),
        Frame::Error(e) => Err(Error::from_reply(e)),
        other => Err(Error::Server(format!("unexpected reply {other:?}"))),
    }
}

/// A parsed `SHOAL RING` reply.
struct RingReply {
    /// P.
    partitions: u32,
    /// R.
    replicas: u32,
    /// Placement algorithm name.
    placement: String,
    /// Key hash name.
    key_hash: String,
    /// Hash seed.
    hash_seed: i64,
    /// The node's ring digest.
    digest: RingDigest,
    /// Members.
    members: Vec<RingMember>,
}

/// One member of a `SHOAL RING` reply.
struct RingMember {
    /// Node name.
    name: String,
    /// RESP address or `-`.
    resp: String,
    /// TLS RESP address or `-` (none, or a node that does not report it).
    tls: String,
    /// Whether placement counts it.
    in_ring: bool,
}

/// Field/value pairs of a RESP3 map or a RESP2 flat array.
fn pairs(f: &Frame) -> Option<Vec<(&Frame, &Frame)>> {
    match f {
        Frame::Array(items) => Some(
            items
                .chunks(2)
                .filter_map(|c| c.first().zip(c.get(1)))
                .collect(),
        ),
        Frame::Map(items) => Some(items.iter().map(|(k, v)| (k, v)).collect()),
        _ => None,
    }
}

/// The value of `field` among `pairs`.
fn field<'a>(pairs: &[(&Frame, &'a Frame)], field: &[u8]) -> Option<&'a Frame> {
    pairs.iter().find_map(|(k, v)| match k {
        Frame::Bulk(k) | Frame::Simple(k) if k.as_ref() == field => Some(*v),
        _ => None,
    })
}

fn frame_text(f: Option<&Frame>) -> Option<String> {
    match f? {
        Frame::Bulk(b) | Frame::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn frame_int(f: Option<&Frame>) -> Option<i64> {
    match f? {
        Frame::Integer(n) => Some(*n),
        Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Parse `SHOAL RING`.
fn ring_reply(f: &Frame) -> Result<RingReply, Error> {
    let bad = |what: &str| Error::Server(format!("SHOAL RING: bad or missing {what}"));
    let top = pairs(f).ok_or_else(|| bad("reply"))?;
    let number = |name: &str| {
        frame_int(field(&top, name.as_bytes()))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(name))
    };
    let digest = frame_text(field(&top, b"digest"))
        .and_then(|d| u64::from_str_radix(&d, 16).ok())
        .ok_or_else(|| bad("digest"))?;
    let Some(Frame::Array(rows)) = field(&top, b"members") else {
        return Err(bad("members"));
    };
    let mut members = Vec::with_capacity(rows.len());
    for row in rows {
        let m = pairs(row).ok_or_else(|| bad("member"))?;
        members.push(RingMember {
            name: frame_text(field(&m, b"name")).ok_or_else(|| bad("member name"))?,
            resp: frame_text(field(&m, b"resp")).unwrap_or_else(|| "-".into()),
            tls: frame_text(field(&m, b"tls")).unwrap_or_else(|| "-".into()),
            in_ring: frame_int(field(&m, b"ring")) == Some(1),
        });
    }
    Ok(RingReply {
        partitions: number("partitions")?,
        replicas: number("replicas")?,
        placement: frame_text(field(&top, b"placement")).ok_or_else(|| bad("placement"))?,
        key_hash: frame_text(field(&top, b"key_hash")).ok_or_else(|| bad("key_hash"))?,
        hash_seed: frame_int(field(&top, b"hash_seed")).ok_or_else(|| bad("hash_seed"))?,
        digest: RingDigest(digest),
        members,
    })
}

/// One member as `SHOAL MEMBERS` describes it.
struct MemberLine {
    /// Node name.
    name: String,
    /// RESP address or `-`.
    resp: String,
    /// `alive`, `suspect` or `down`.
    state: String,
}

/// Parse `SHOAL MEMBERS` (RESP2: one flat field/value array per member).
fn member_rows(f: &Frame) -> Result<Vec<MemberLine>, Error> {
    let Frame::Array(rows) = f else {
        if let Frame::Error(e) = f {
            return Err(Error::from_reply(e));
        }
        return Err(Error::Server("SHOAL MEMBERS: not an array".into()));
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let pairs: Vec<(&Frame, &Frame)> = match row {
            Frame::Array(items) => items
                .chunks(2)
                .filter_map(|c| c.first().zip(c.get(1)))
                .collect(),
            Frame::Map(items) => items.iter().map(|(k, v)| (k, v)).collect(),
            _ => return Err(Error::Server("SHOAL MEMBERS: bad row".into())),
        };
        let get = |field: &[u8]| {
            pairs.iter().find_map(|(k, v)| match (k, v) {
                (Frame::Bulk(k), Frame::Bulk(v)) if k.as_ref() == field => {
                    Some(String::from_utf8_lossy(v).into_owned())
                }
                _ => None,
            })
        };
        out.push(MemberLine {
            name: get(b"name").ok_or_else(|| Error::Server("SHOAL MEMBERS: no name".into()))?,
            resp: get(b"resp").unwrap_or_else(|| "-".into()),
            state: get(b"state").unwrap_or_else(|| "alive".into()),
        });
    }
    Ok(out)
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
    /// Options, learning the ring from `seeds` (RESP addresses of any
    /// members).
    pub fn builder(seeds: impl IntoIterator<Item = SocketAddr>) -> ClientBuilder {
        ClientBuilder {
            seeds: seeds.into_iter().collect(),
            pool_size: 4,
            refresh_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            routing: true,
            tls: None,
            auth: None,
        }
    }

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

    /// A typed view named `name`, sharing keys with [`crate::Node::cache`].
    pub fn cache<K, V>(&self, name: &str) -> Result<ClientCache<K, V>, Error> {
        if !super::cache::valid_name(name) {
            return Err(Error::CacheName(name.to_string()));
        }
        Ok(ClientCache {
            client: self.clone(),
            name: name.to_string(),
            ttl: None,
            types: PhantomData,
        })
    }
}

fn unexpected(cmd: &str, f: &Frame) -> Error {
    Error::Server(format!("unexpected reply to {cmd}: {f:?}"))
}

/// A typed cache seen through a [`Client`]: the same keys and encoding as
/// [`crate::Cache`], so an embedded peer and a thin client share entries.
pub struct ClientCache<K, V> {
    /// The client.
    client: Client,
    /// The cache's name (key prefix).
    name: String,
    /// Default TTL of writes.
    ttl: Option<Duration>,
    /// The key and value types.
    types: PhantomData<fn(K) -> V>,
}

impl<K: Serialize, V: Serialize + DeserializeOwned> ClientCache<K, V> {
    /// Writes expire after `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The stored key of `key`: `<name>:<hex of postcard(key)>`.
    pub fn key(&self, key: &K) -> Result<Bytes, Error> {
        let raw = postcard::to_stdvec(key).map_err(|e| Error::Codec(e.to_string()))?;
        let mut s = String::with_capacity(self.name.len() + 1 + raw.len() * 2);
        s.push_str(&self.name);
        s.push(':');
        for b in raw {
            s.push_str(&format!("{b:02x}"));
        }
        Ok(Bytes::from(s))
    }

    /// The value of `key` (`None` when absent or a negative entry).
    pub async fn get(&self, key: &K) -> Result<Option<V>, Error> {
        match self.client.get(self.key(key)?).await? {
            Some(raw) if !raw.is_empty() => postcard::from_bytes(&raw)
                .map(Some)
                .map_err(|e| Error::Codec(e.to_string())),
            _ => Ok(None),
        }
    }

    /// Store `value` under `key` with the cache's TTL.
    pub async fn set(&self, key: &K, value: &V) -> Result<(), Error> {
        let raw = postcard::to_stdvec(value).map_err(|e| Error::Codec(e.to_string()))?;
        self.client.set(self.key(key)?, raw, self.ttl).await
    }

    /// Delete `key`; `true` when it existed.
    pub async fn delete(&self, key: &K) -> Result<bool, Error> {
        self.client.delete(self.key(key)?).await
    }
}
