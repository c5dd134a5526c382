//! The client's view of the placement and the routing of commands by it.
//!
//! # What this module owns
//! The [`View`] the client believes in (ring, members' RESP addresses, P,
//! the node's digest), the shared [`Inner`] parts (options, pools, view,
//! counters), the background refresh task, the ring fetch (`SHOAL RING`,
//! or `INFO cluster` + `SHOAL MEMBERS` from older nodes), key → primary
//! routing, and running a batch at its target with fallback to the other
//! members and the seeds.
//!
//! # What it must not do
//! Parse reply frames field by field (that is [`super::ring_reply`]'s
//! job), speak the wire (that is [`crate::api::client_conn`]'s), or offer
//! commands to callers (that is [`super::Client`]'s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::ring_reply::{RingReply, member_rows, ring_reply};
use super::{ClientBuilder, ClientStats};
use crate::api::Error;
use crate::api::client_conn::{ConnOptions, Pool};
use crate::cluster::replication::{OUTCOME_UNKNOWN, replay_safe_args};
use crate::resp::codec::Frame;
use crate::resp::commands::{KEY_HASH, PLACEMENT};
use crate::ring::{Ring, RingDigest};
use crate::store::partition_of;
use crate::transport::NodeName;

/// The placement the client believes in.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The ring computed from the fetched members (None: standalone node).
    pub(super) ring: Option<Ring>,
    /// RESP address of each member that published one.
    pub(super) resp: HashMap<NodeName, SocketAddr>,
    /// P as the node reported it.
    pub(super) partitions: u32,
    /// The digest the answering node reported.
    pub(super) digest: Option<RingDigest>,
}

pub(super) struct Inner {
    /// Options.
    pub(super) opts: ClientBuilder,
    /// How connections are opened (from `opts`).
    pub(super) conn: Arc<ConnOptions>,
    /// Current view, swapped whole on refresh.
    pub(super) view: RwLock<Arc<View>>,
    /// Connection pools by RESP address.
    pub(super) pools: RwLock<HashMap<SocketAddr, Arc<Pool>>>,
    /// Counters.
    pub(super) stats: ClientStats,
}

pub(super) async fn refresh_loop(weak: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        if let Err(e) = inner.refresh().await {
            tracing::debug!(error = %e, "client ring refresh failed");
        }
    }
}

impl Inner {
    pub(super) fn view(&self) -> Arc<View> {
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
    pub(super) async fn refresh(&self) -> Result<(), Error> {
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
    pub(super) fn route(&self, view: &View, key: &[u8]) -> Option<SocketAddr> {
        if !self.opts.routing {
            return self.opts.seeds.first().copied();
        }
        let ring = view.ring.as_ref()?;
        let primary = ring.primary(partition_of(key, view.partitions))?;
        view.resp.get(primary).copied()
    }

    /// Run `cmds` (all for keys routed to the same place) with fallback.
    pub(super) async fn run_at(
        &self,
        target: Option<SocketAddr>,
        cmds: &[Vec<Bytes>],
    ) -> Result<Vec<Frame>, Error> {
        let view = self.view();
        if let Some(addr) = target {
            match self.pool(addr).batch(cmds).await {
                // A reply that says a command may have run is final unless
                // the whole batch is harmless to run twice: sent again
                // elsewhere, it would run that command a second time.
                Ok(replies)
                    if !replies.iter().any(is_tryagain)
                        || (replies.iter().any(is_outcome_unknown)
                            && !cmds.iter().all(|c| replay_safe_args(c))) =>
                {
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

/// `TRYAGAIN ... outcome unknown`: a node forwarded the command (or a
/// transaction) and got no answer; it may have run.
fn is_outcome_unknown(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with(OUTCOME_UNKNOWN.as_bytes())
        || e.starts_with(b"TRYAGAIN transaction outcome unknown"))
}

fn text_of(f: &Frame) -> Result<String, Error> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Frame::Verbatim { text, .. } => Ok(String::from_utf8_lossy(text).into_owned()),
        Frame::Error(e) => Err(Error::from_reply(e)),
        other => Err(Error::Server(format!("unexpected reply {other:?}"))),
    }
}
