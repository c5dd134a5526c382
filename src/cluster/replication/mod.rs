//! Replicated writes, failover, and the peer requests replication serves.
//!
//! # What this module owns
//! - [`Replication`]: the settings ([`ReplConfig`]), counters
//!   ([`ReplStats`]) and sync state ([`SyncState`]) a router gets when R > 1
//!   ([`Router::enable_replication`]).
//! - The write path at a partition's primary ([`Router::execute_owned`]):
//!   run the command with the ordinary handler (the store stamps it with the
//!   node's hybrid logical clock), read back the resulting state of every key
//!   it names (value + version + expiry, or a tombstone), and send it to the
//!   other replicas of each key's partition in parallel, through each
//!   replica's lane (`repl_lane`: concurrent writes to one replica share a
//!   `Replicate` request). The client's reply waits for the [`WriteAck`]
//!   policy; a replica that does not answer within [`ReplConfig::timeout`]
//!   of the write is treated as down for this write (anti-entropy repairs
//!   it later). INCR, APPEND, SETRANGE ... replicate their result, never
//!   the command.
//! - Failover ([`Router::forward_or_failover`]): when the ring's primary
//!   cannot be reached, the command runs on the next live replica as the
//!   acting primary (`Request::Owned`). Versions make a retried write
//!   idempotent on every replica.
//! - Reads of a partition this node is still pulling that miss locally are
//!   served by the old holder it pulls from (`Request::Command { local:
//!   true }`).
//! - Answering `Replicate`, `Owned`, `Pull`, `Summaries`, `Buckets`,
//!   `Repair` ([`serve`]).
//!
//! # Fast paths
//! Standalone nodes never reach the router. With R = 1, or a single member,
//! [`Router::local_plan`] costs one `OnceLock` load and a compare; reads on
//! a local primary take no extra lock or allocation.
//!
//! # What it must not do
//! Decide placement (the ring does), run timers (the rebalance and
//! anti-entropy tasks do), or trust a peer's input: every request is
//! bounded and a bad one gets a `Refused` answer.
//!
//! # Layout
//! - `settings`: [`WriteAck`] and [`ReplConfig`];
//! - `stats`: [`ReplStats`];
//! - this file: [`Replication`] and the write path at the primary;
//! - `failover`: forwarding to the primary, or failing over to a replica;
//! - `legs`: this node's share of cluster-wide commands and INFO keyspace;
//! - `peer`: answering peer requests ([`serve`]) and applying records.

mod failover;
mod legs;
mod peer;
mod settings;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::mpsc;

pub(crate) use self::failover::{OUTCOME_UNKNOWN, replay_safe, replay_safe_args, unknown_outcome};
pub(crate) use self::peer::{apply_all_from, serve, summary};
pub use self::settings::{ReplConfig, WriteAck};
pub use self::stats::ReplStats;
use super::repl_lane::{Link, ReplLanes};
use super::router::Router;
use super::state::ClusterState;
pub use super::sync_state::SyncState;
use crate::clock::SharedHlc;
use crate::proto::{self, Request, Response};
use crate::resp::codec::Proto;
use crate::resp::commands::{CommandSpec, Flag, lookup};
use crate::resp::hook::Deferred;
use crate::store::{PartitionId, Record, partition_of};
use crate::transport::NodeName;

/// Most records one `Pull` answer carries.
pub const MAX_PULL: u32 = 4096;

/// Replication state shared by the router and the background tasks.
#[derive(Debug)]
pub struct Replication {
    /// Settings.
    pub cfg: ReplConfig,
    /// Counters.
    pub stats: ReplStats,
    /// Partitions being pulled.
    pub sync: SyncState,
    /// The node's clock (the store stamps with the same one).
    pub hlc: Arc<SharedHlc>,
    /// One queue per replica: concurrent writes share requests.
    pub(crate) lanes: ReplLanes,
}

impl Replication {
    /// Replication with `cfg`, stamping with `hlc`.
    pub fn new(cfg: ReplConfig, hlc: Arc<SharedHlc>) -> Arc<Replication> {
        Arc::new(Replication {
            // Long enough for anti-entropy to bring what the old primary
            // took meanwhile; no longer than the old holders keep it.
            sync: SyncState::new(cfg.grace.min(2 * cfg.anti_entropy_interval)),
            cfg,
            stats: ReplStats::default(),
            hlc,
            lanes: ReplLanes::default(),
        })
    }
}

/// The partition of a command's first key, if it has keys.
fn first_partition(st: &ClusterState, spec: &CommandSpec, args: &[Bytes]) -> Option<PartitionId> {
    spec.keys(args)
        .next()
        .map(|k| partition_of(k, st.ring.partitions()))
}

impl Router {
    /// Turn replication on: the store stamps versions and keeps tombstones,
    /// and writes are replicated. Call once, before serving.
    pub fn enable_replication(&self, repl: Arc<Replication>) {
        let ttl = repl.cfg.tombstone_ttl.as_millis() as u64;
        self.store.enable_versions(repl.hlc.clone(), ttl);
        let _ = self.repl.set(repl);
    }

    /// Replication state, when enabled.
    pub fn replication(&self) -> Option<&Arc<Replication>> {
        self.repl.get()
    }

    /// Whether commands under `st` must be replicated.
    fn replicating(&self, st: &ClusterState) -> Option<&Arc<Replication>> {
        let repl = self.repl.get()?;
        (st.ring.replication() > 1 && st.ring.members().len() > 1).then_some(repl)
    }

    /// For a command planned to run here: `None` to run it inline (reads,
    /// R = 1); else the future that runs it as primary and replicates, or
    /// that reads from the old holder while the partition is being pulled.
    pub(crate) fn local_plan(
        self: &Arc<Self>,
        st: &Arc<ClusterState>,
        spec: &'static CommandSpec,
        args: &[Bytes],
        proto: Proto,
    ) -> Option<Deferred<Bytes>> {
        let repl = self.replicating(st)?;
        if spec.has(Flag::Write) {
            let me = self.clone();
            let st = st.clone();
            let args = args.to_vec();
            return Some(Box::pin(async move {
                me.execute_owned(&st, &args, proto).await
            }));
        }
        let p = first_partition(st, spec, args)?;
        let source = repl.sync.source(p)?;
        let key = spec.keys(args).next()?;
        // A tombstone here is an answer too: the old holder may not have
        // seen the delete (it is no longer a replica).
        if self.store.has_record(key, (self.clock)()) {
            return None;
        }
        let me = self.clone();
        let st = st.clone();
        let args = args.to_vec();
        Some(Box::pin(async move {
            match me
                .send(&st, &source, &local_command(&st, proto, args.clone()))
                .await
            {
                Ok(Response::Reply(bytes)) => bytes,
                _ => me.execute_here(&args, proto),
            }
        }))
    }

    /// Run a data command here as its keys' primary, then replicate the
    /// resulting state of every key it names.
    pub(crate) async fn execute_owned(
        &self,
        st: &ClusterState,
        args: &[Bytes],
        proto: Proto,
    ) -> Bytes {
        let reply = self.execute_here(args, proto);
        let Some(repl) = self.replicating(st) else {
            return reply;
        };
        let Some((_, spec)) = args.first().and_then(|n| lookup(n)) else {
            return reply;
        };
        if spec.has(Flag::Write) {
            let keys: Vec<Bytes> = spec.keys(args).cloned().collect();
            self.replicate(st, repl, &keys).await;
        }
        reply
    }

    /// Send the current state of `keys` to their other replicas and wait
    /// as the ack policy says.
    pub(crate) async fn replicate(
        &self,
        st: &ClusterState,
        repl: &Arc<Replication>,
        keys: &[Bytes],
    ) {
        let now = (self.clock)();
        let mut batches: HashMap<NodeName, Vec<Record>> = HashMap::new();
        for key in keys {
            let Some(rec) = self.store.record(key, now) else {
                continue;
            };
            let p = partition_of(key, st.ring.partitions());
            for r in st.ring.replicas(p).iter().filter(|r| **r != st.me) {
                batches.entry(r.clone()).or_default().push(rec.clone());
            }
        }
        if batches.is_empty() {
            return;
        }
        repl.stats.writes.fetch_add(1, Ordering::Relaxed);
        let need = repl
            .cfg
            .write_ack
            .needed(batches.len(), st.ring.replication() as usize);
        let (tx, mut rx) = mpsc::channel(batches.len());
        let mut sent = 0;
        for (node, records) in batches {
            let Some(addr) = st.peer_addr(&node).cloned() else {
                repl.stats.failures.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let link = Link {
                transport: self.transport.clone(),
                cluster: self.cluster.clone(),
                addr,
            };
            if ReplLanes::submit(repl, &node, link, records, tx.clone()) {
                sent += 1;
            } else {
                repl.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(tx);
        let need = need.min(sent);
        if need == 0 {
            // The lanes send in the background.
            return;
        }
        let acks = async {
            let mut acked = 0;
            while acked < need {
                match rx.recv().await {
                    Some(true) => acked += 1,
                    Some(false) => {}
                    None => break,
                }
            }
        };
        // A replica that has not applied the write by then is down for it
        // (its request may still land; anti-entropy repairs it otherwise).
        let _ = tokio::time::timeout(repl.cfg.timeout, acks).await;
    }

    /// One request to a member, decoded.
    pub(crate) async fn send(
        &self,
        st: &ClusterState,
        to: &NodeName,
        req: &Request,
    ) -> Result<Response, SendFailed> {
        let addr = st.peer_addr(to).ok_or_else(|| SendFailed {
            maybe_delivered: false,
            why: format!("no address for {to}"),
        })?;
        let payload = proto::encode(self.cluster.as_str(), req);
        let bytes = self
            .transport
            .request(addr, payload)
            .await
            .map_err(|e| SendFailed {
                maybe_delivered: e.maybe_delivered(),
                why: e.to_string(),
            })?;
        // An answer we cannot read came after the member acted.
        proto::decode::<Response>(self.cluster.as_str(), &bytes).map_err(|e| SendFailed {
            maybe_delivered: true,
            why: format!("bad answer from {to}: {e}"),
        })
    }
}

/// Why [`Router::send`] got no answer.
#[derive(Debug)]
pub(crate) struct SendFailed {
    /// The member may have acted on the request
    /// ([`crate::transport::TransportError::maybe_delivered`], or its answer
    /// was unreadable): sending it again may run it twice.
    pub maybe_delivered: bool,
    /// What happened.
    pub why: String,
}

impl std::fmt::Display for SendFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl From<SendFailed> for String {
    fn from(e: SendFailed) -> String {
        e.why
    }
}

/// A command to run on `to` without routing (a read served by an old
/// holder).
fn local_command(st: &ClusterState, proto: Proto, args: Vec<Bytes>) -> Request {
    Request::Command {
        digest: st.digest().0,
        hops: super::router::MAX_HOPS,
        resp: proto.number() as u8,
        local: true,
        args,
    }
}
