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

use super::resend::{Fate, resendable, unknown_outcome};
use super::ring_reply::{RingReply, member_rows, ring_reply};
use super::{ClientBuilder, ClientStats};
use crate::api::Error;
use crate::api::client_conn::{BatchError, ConnOptions, Pool, Sent};
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

    /// Run `cmds` (all for keys routed to the same place) with fallback;
    /// one reply per command, in order.
    ///
    /// At the target, a command answered (or answered "outcome unknown")
    /// keeps its reply; one answered with a plain `TRYAGAIN` (it did not
    /// run) is sent on to the other members, then the seeds, as is a batch
    /// that could not be written. A batch written without an answer may
    /// have run: only what is harmless to run twice goes on, the rest is
    /// answered "outcome unknown". Nothing goes on that a later command of
    /// the batch which ran, or may have, writes a key of ([`resendable`]).
    pub(super) async fn run_at(
        &self,
        target: Option<SocketAddr>,
        cmds: &[Vec<Bytes>],
    ) -> Result<Vec<Frame>, Error> {
        let view = self.view();
        let mut out: Vec<Option<Frame>> = vec![None; cmds.len()];
        // Input positions still without a final reply, in order.
        let mut pending: Vec<usize> = (0..cmds.len()).collect();
        let mut last = Error::Unavailable("no reachable node".into());
        if let Some(addr) = target {
            match self.pool(addr).batch(cmds).await {
                Ok(replies) => {
                    let fates: Vec<Fate> = replies.iter().map(Fate::of_reply).collect();
                    let again = resendable(cmds, &fates);
                    pending = settle(&mut out, 0..cmds.len(), replies, &again)?;
                }
                Err(e) => {
                    pending = self.after_failure(addr, cmds, &mut out, &pending, &e);
                    last = e.error;
                }
            }
            self.stats
                .routed
                .fetch_add((cmds.len() - pending.len()) as u64, Ordering::Relaxed);
            if !pending.is_empty() {
                let _ = self.refresh().await;
            }
        }
        for addr in self.candidates(&view) {
            if pending.is_empty() {
                break;
            }
            if Some(addr) == target {
                continue;
            }
            let batch: Vec<Vec<Bytes>> = pending
                .iter()
                .filter_map(|&i| cmds.get(i).cloned())
                .collect();
            match self.pool(addr).batch(&batch).await {
                Ok(replies) => {
                    // A fallback's replies are final, TRYAGAIN or not.
                    self.stats
                        .fallbacks
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let final_ = vec![false; batch.len()];
                    settle(&mut out, pending.iter().copied(), replies, &final_)?;
                    pending.clear();
                }
                Err(e) => {
                    pending = self.after_failure(addr, &batch, &mut out, &pending, &e);
                    last = e.error;
                }
            }
        }
        if out.iter().all(Option::is_none) {
            // No node took any of it.
            return Err(last);
        }
        // Commands no node answered keep the last word they got (a plain
        // TRYAGAIN, "outcome unknown"), or say why none took them.
        let unreachable = format!("TRYAGAIN no node reachable: {last}");
        Ok(out
            .into_iter()
            .map(|f| f.unwrap_or_else(|| Frame::Error(Bytes::from(unreachable.clone()))))
            .collect())
    }

    /// `batch` (the commands at input positions `pending`) failed at
    /// `addr`: once written, each command may have run and is answered
    /// "outcome unknown" unless another node answers it; the positions that
    /// may go on to another node, in order.
    fn after_failure(
        &self,
        addr: SocketAddr,
        batch: &[Vec<Bytes>],
        out: &mut [Option<Frame>],
        pending: &[usize],
        e: &BatchError,
    ) -> Vec<usize> {
        tracing::debug!(%addr, error = %e.error, sent = ?e.sent, "client batch failed");
        if e.sent == Sent::No {
            return pending.to_vec();
        }
        let again = resendable(batch, &vec![Fate::MaybeRan; batch.len()]);
        let why = e.error.to_string();
        let mut next = Vec::new();
        for (&i, again) in pending.iter().zip(again) {
            // What it says if no other node answers it.
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(unknown_outcome(&addr, &why));
            }
            if again {
                next.push(i);
            }
        }
        next
    }
}

/// Store `replies` (to the commands at input positions `positions`) in
/// `out`; the positions marked in `again` (their reply stands only if no
/// other node answers them), in order.
fn settle(
    out: &mut [Option<Frame>],
    positions: impl Iterator<Item = usize>,
    replies: Vec<Frame>,
    again: &[bool],
) -> Result<Vec<usize>, Error> {
    if replies.len() != again.len() {
        return Err(Error::Server("wrong reply count".into()));
    }
    let mut next = Vec::new();
    for ((i, reply), again) in positions.zip(replies).zip(again) {
        if *again {
            next.push(i);
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(reply);
        }
    }
    Ok(next)
}

fn text_of(f: &Frame) -> Result<String, Error> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Frame::Verbatim { text, .. } => Ok(String::from_utf8_lossy(text).into_owned()),
        Frame::Error(e) => Err(Error::from_reply(e)),
        other => Err(Error::Server(format!("unexpected reply {other:?}"))),
    }
}
