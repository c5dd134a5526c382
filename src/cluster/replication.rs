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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::repl_lane::{Link, ReplLanes};
use super::router::{Router, error_bytes};
use super::state::ClusterState;
pub use super::sync_state::SyncState;
use crate::clock::SharedHlc;
use crate::proto::{self, Request, Response};
use crate::resp::codec::{Frame, Proto, encode, parse_frame};
use crate::resp::commands::{CommandSpec, Flag, lookup};
use crate::resp::hook::Deferred;
use crate::store::{PartitionId, Record, partition_of};
use crate::transport::NodeName;

/// Most records one `Pull` answer carries.
pub const MAX_PULL: u32 = 4096;

/// How many replicas must have applied a write before the client's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteAck {
    /// Every live replica (a replica that times out counts as down).
    #[default]
    All,
    /// A majority of R, the primary included.
    Quorum,
    /// The primary alone; replicas are updated in the background.
    One,
}

impl WriteAck {
    /// The name used in configuration (`all`, `quorum`, `one`).
    pub fn name(self) -> &'static str {
        match self {
            WriteAck::All => "all",
            WriteAck::Quorum => "quorum",
            WriteAck::One => "one",
        }
    }

    /// Parse a configuration name.
    pub fn parse(s: &str) -> Option<WriteAck> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Some(WriteAck::All),
            "quorum" => Some(WriteAck::Quorum),
            "one" => Some(WriteAck::One),
            _ => None,
        }
    }

    /// Replica acknowledgements (the primary excluded) to wait for, out of
    /// `targets` live replicas, with `r` the replication factor.
    fn needed(self, targets: usize, r: usize) -> usize {
        match self {
            WriteAck::All => targets,
            WriteAck::Quorum => (r / 2).min(targets),
            WriteAck::One => 0,
        }
    }
}

/// Replication settings (from [`crate::config::Config`]).
#[derive(Debug, Clone)]
pub struct ReplConfig {
    /// The acknowledgement policy for writes.
    pub write_ack: WriteAck,
    /// How long a replica may take to apply a write before it is treated
    /// as down for that write.
    pub timeout: Duration,
    /// How long tombstones are kept. Default 1 hour: far longer than an
    /// anti-entropy round and a partition sync, so a replica that missed a
    /// delete learns it before the tombstone goes.
    pub tombstone_ttl: Duration,
    /// Time between anti-entropy rounds (default 10 s).
    pub anti_entropy_interval: Duration,
    /// Bytes per second a node pulls when syncing partitions (0 = no limit).
    pub sync_rate: u64,
    /// How long an old holder keeps a partition it no longer owns before
    /// dropping it (default 30 s).
    pub grace: Duration,
}

impl Default for ReplConfig {
    fn default() -> Self {
        ReplConfig {
            write_ack: WriteAck::All,
            timeout: Duration::from_secs(1),
            tombstone_ttl: Duration::from_secs(3600),
            anti_entropy_interval: Duration::from_secs(10),
            sync_rate: 0,
            grace: Duration::from_secs(30),
        }
    }
}

/// Counters for INFO and metrics.
#[derive(Debug, Default)]
pub struct ReplStats {
    /// Writes whose state was sent to replicas.
    pub writes: AtomicU64,
    /// Replicate requests that failed or timed out.
    pub failures: AtomicU64,
    /// Replicate requests sent (each carries the writes queued for one
    /// replica while the previous one was in flight).
    pub requests: AtomicU64,
    /// Records received from peers that changed something here.
    pub applied: AtomicU64,
    /// Commands that ran on another replica because the primary was
    /// unreachable.
    pub failovers: AtomicU64,
    /// Bytes received by partition sync.
    pub bytes_moved: AtomicU64,
    /// Partitions pulled to completion.
    pub partitions_synced: AtomicU64,
    /// Partitions dropped after their grace period.
    pub partitions_dropped: AtomicU64,
    /// Anti-entropy rounds run.
    pub ae_rounds: AtomicU64,
    /// Records exchanged by anti-entropy repairs that changed something.
    pub ae_repaired: AtomicU64,
    /// Replicated records received for a partition this node does not
    /// hold under its own view of the ring (see [`serve`]).
    pub stray_records: AtomicU64,
    /// Time from a replicated write's stamp at its primary to its apply
    /// here.
    pub lag: super::lag::LagHistogram,
}

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

    /// Send `args` to the primary `owner`; if it cannot be reached and
    /// replication is on, run it on the next live replica instead.
    pub(crate) async fn forward_or_failover(
        &self,
        st: &ClusterState,
        owner: &NodeName,
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        proto: Proto,
        hops: u8,
    ) -> Bytes {
        if self.replicating(st).is_none() {
            return self.forward(st, owner, args, proto, hops, false).await;
        }
        let req = Request::Command {
            digest: st.digest().0,
            hops,
            resp: proto.number() as u8,
            local: false,
            args: args.clone(),
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        match self.send(st, owner, &req).await {
            Ok(Response::Reply(bytes)) => return bytes,
            Ok(Response::WrongOwner { .. }) => {
                return error_bytes(proto, super::router::WRONG_OWNER);
            }
            Ok(other) => {
                tracing::warn!(%owner, answer = ?other, "unexpected answer to a forwarded command");
                return error_bytes(proto, &format!("TRYAGAIN unexpected answer from {owner}"));
            }
            Err(e) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%owner, error = %e, "primary unreachable; failing over");
            }
        }
        let Some(p) = first_partition(st, spec, &args) else {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        };
        // Only a command whose keys share one partition fails over: another
        // partition may have other replicas, and the acting primary would
        // keep a stray copy of a partition it does not hold.
        let parts = st.ring.partitions();
        if spec.keys(&args).any(|k| partition_of(k, parts) != p) {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        }
        self.fail_over(st, p, owner, args, proto).await
    }

    /// Run `args` (keys of partition `p` only) on the first reachable
    /// replica of `p` other than `owner`, its unreachable primary, as the
    /// acting primary. Versions make a retry of a write that did land on
    /// `owner` harmless.
    pub(crate) async fn fail_over(
        &self,
        st: &ClusterState,
        p: PartitionId,
        owner: &NodeName,
        args: Vec<Bytes>,
        proto: Proto,
    ) -> Bytes {
        let Some(repl) = self.replicating(st) else {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        };
        for next in st.ring.replicas(p).iter().filter(|r| *r != owner) {
            repl.stats.failovers.fetch_add(1, Ordering::Relaxed);
            if *next == st.me {
                return self.execute_owned(st, &args, proto).await;
            }
            let req = Request::Owned {
                resp: proto.number() as u8,
                args: args.clone(),
            };
            if let Ok(Response::Reply(bytes)) = self.send(st, next, &req).await {
                return bytes;
            }
        }
        error_bytes(proto, &format!("TRYAGAIN no replica of {p} reachable"))
    }

    /// One leg of a cluster-wide command (DBSIZE, KEYS, FLUSHALL ...),
    /// run here for this node's share. With replication on, DBSIZE counts
    /// only the partitions this node is primary for, so each key counts
    /// once across the cluster.
    pub(crate) fn execute_leg(&self, st: &ClusterState, args: &[Bytes], proto: Proto) -> Bytes {
        if self.replicating(st).is_none() || args.is_empty() {
            return self.execute_here(args, proto);
        }
        let name = &args[0];
        if name.eq_ignore_ascii_case(b"keys") || name.eq_ignore_ascii_case(b"scan") {
            return self.own_keys_only(st, self.execute_here(args, proto), proto);
        }
        if args.len() == 1 && name.eq_ignore_ascii_case(b"dbsize") {
            let n: u64 = st
                .ring
                .partition_ids()
                .filter(|p| *st.primary(*p) == st.me)
                .map(|p| self.store.partition_len(p))
                .sum();
            let mut out = bytes::BytesMut::new();
            crate::resp::reply::Reply::new(&mut out, proto).int(n as i64);
            return out.freeze();
        }
        self.execute_here(args, proto)
    }

    /// This node's share of INFO keyspace: with replication on, the keys
    /// (and keys with a TTL) of the partitions it is primary for, so each
    /// key counts once; else every key it holds.
    pub(crate) fn keyspace_share(&self) -> (u64, u64) {
        let st = self.current();
        if self.replicating(&st).is_none() {
            let s = self.store.stats();
            return (s.keys, s.keys_with_ttl);
        }
        st.ring
            .partition_ids()
            .filter(|p| *st.primary(*p) == st.me)
            .map(|p| self.store.partition_counts(p))
            .fold((0, 0), |(k, e), (pk, pe)| (k + pk, e + pe))
    }

    /// Keep, in a KEYS or SCAN reply, only the keys of partitions this node
    /// is primary for (every replica holds a copy; each key is listed once).
    fn own_keys_only(&self, st: &ClusterState, reply: Bytes, proto: Proto) -> Bytes {
        let mine = |f: &Frame| match f {
            Frame::Bulk(k) => *st.primary(partition_of(k, st.ring.partitions())) == st.me,
            _ => true,
        };
        let frame = match parse_frame(&reply) {
            Ok(Some((f, _))) => f,
            _ => return reply,
        };
        let filtered = match frame {
            Frame::Array(keys) if keys.iter().all(|k| matches!(k, Frame::Bulk(_))) => {
                Frame::Array(keys.into_iter().filter(|k| mine(k)).collect())
            }
            Frame::Array(mut parts) if parts.len() == 2 => {
                if let Some(Frame::Array(keys)) = parts.pop() {
                    parts.push(Frame::Array(keys.into_iter().filter(|k| mine(k)).collect()));
                }
                Frame::Array(parts)
            }
            Frame::Set(keys) => Frame::Set(keys.into_iter().filter(|k| mine(k)).collect()),
            other => other,
        };
        let mut out = bytes::BytesMut::new();
        encode(&filtered, proto, &mut out);
        out.freeze()
    }

    /// One request to a member, decoded.
    pub(crate) async fn send(
        &self,
        st: &ClusterState,
        to: &NodeName,
        req: &Request,
    ) -> Result<Response, String> {
        let addr = st
            .peer_addr(to)
            .ok_or_else(|| format!("no address for {to}"))?;
        let payload = proto::encode(self.cluster.as_str(), req);
        let bytes = self
            .transport
            .request(addr, payload)
            .await
            .map_err(|e| e.to_string())?;
        proto::decode::<Response>(self.cluster.as_str(), &bytes).map_err(|e| e.to_string())
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

/// Answer a replication request from a peer.
pub(crate) async fn serve(router: &Arc<Router>, req: Request) -> Response {
    let now = (router.clock)();
    let parts = router.store.partitions();
    match req {
        Request::Replicate { records } => {
            note_replicated(router, &records, now);
            let applied = apply_all(router, &records, now);
            Response::Applied {
                applied: applied as u32,
            }
        }
        Request::Owned { resp, args } => {
            if args.first().and_then(|n| lookup(n)).is_none() {
                return Response::Refused("empty or unknown command".into());
            }
            let proto = if resp == 3 {
                Proto::Resp3
            } else {
                Proto::Resp2
            };
            let st = router.current();
            Response::Reply(router.execute_owned(&st, &args, proto).await)
        }
        Request::Pull {
            partition,
            after,
            max,
        } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            let max = max.clamp(1, MAX_PULL) as usize;
            let (records, more) =
                router
                    .store
                    .export(PartitionId(partition), after.as_deref(), max, now);
            Response::Records { records, more }
        }
        Request::Summaries { partitions } => {
            if partitions.len() > parts as usize {
                return Response::Refused("too many partitions".into());
            }
            let sums = partitions
                .iter()
                .map(|&p| summary(router, p, now))
                .collect();
            Response::Summaries(sums)
        }
        Request::Buckets { partition } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            Response::Buckets(router.store.digest_or_empty(PartitionId(partition), now))
        }
        Request::Repair {
            partition,
            mask,
            records,
        } => {
            if partition >= parts {
                return Response::Refused(format!("no partition {partition}"));
            }
            let mine = router
                .store
                .bucket_records(PartitionId(partition), mask, now);
            let applied = apply_all_from(router, &records, now, crate::store::Origin::Repair);
            // An empty mask is a one-way merge (hand-off, a released
            // partition pushed to its owners), not an anti-entropy repair.
            if let Some(repl) = router.replication().filter(|_| mask != 0) {
                repl.stats
                    .ae_repaired
                    .fetch_add(applied as u64, Ordering::Relaxed);
            }
            Response::Records {
                records: mine,
                more: false,
            }
        }
        other => Response::Refused(format!("not a replication request: {other:?}")),
    }
}

/// Count the lag of replicated `records` and those of partitions this node
/// does not hold under its own view.
///
/// Such records are still stored, not refused: rings differ for a moment
/// during view changes (this node may not yet know of the death or join
/// that makes it a replica, and refusing would cost the write a copy until
/// the next sync), and a record stored here is not kept forever: the
/// rebalance task's stray sweep merges a partition this node does not hold
/// into its current replicas and drops it after the grace period.
fn note_replicated(router: &Router, records: &[Record], now: crate::store::UnixMillis) {
    let Some(repl) = router.replication() else {
        return;
    };
    let st = router.current();
    let parts = st.ring.partitions();
    let mut stray = None;
    let mut strays = 0u64;
    for rec in records {
        repl.stats.lag.observe(super::lag::lag_ms(rec.version, now));
        let p = partition_of(&rec.key, parts);
        if !st.ring.is_replica(p, &st.me) {
            strays += 1;
            stray = Some(p);
        }
    }
    if let Some(p) = stray {
        repl.stats
            .stray_records
            .fetch_add(strays, Ordering::Relaxed);
        tracing::debug!(partition = %p, records = strays, "replicated records for a partition this node does not hold; kept until the stray sweep");
    }
}

/// The summary hash of a partition here (0 = no live key).
pub(crate) fn summary(router: &Router, p: u32, now: crate::store::UnixMillis) -> u64 {
    if p >= router.store.partitions() {
        return 0;
    }
    router
        .store
        .digest(PartitionId(p), now)
        .map_or(0, |d| xxhash_rust::xxh3::xxh3_64(d.hex().as_bytes()) | 1)
}

/// Merge live replicated writes; returns how many changed something.
pub(crate) fn apply_all(
    router: &Router,
    records: &[Record],
    now: crate::store::UnixMillis,
) -> usize {
    apply_all_from(router, records, now, crate::store::Origin::Write)
}

/// Merge peer records from `origin` (a repair of a key not held here is
/// refused at the memory limit, see `Store::apply_from`); returns how many
/// changed something.
pub(crate) fn apply_all_from(
    router: &Router,
    records: &[Record],
    now: crate::store::UnixMillis,
    origin: crate::store::Origin,
) -> usize {
    let mut applied = 0;
    for rec in records {
        match router.store.apply_from(rec, now, origin) {
            Ok(true) => applied += 1,
            Ok(false) => {}
            Err(e) => tracing::debug!(error = %e, "a replicated record was not applied"),
        }
    }
    if let Some(repl) = router.replication() {
        repl.stats
            .applied
            .fetch_add(applied as u64, Ordering::Relaxed);
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_policies_wait_for_the_right_number_of_replicas() {
        assert_eq!(WriteAck::All.needed(2, 3), 2);
        assert_eq!(WriteAck::All.needed(1, 3), 1, "only live replicas count");
        assert_eq!(WriteAck::Quorum.needed(2, 3), 1);
        assert_eq!(WriteAck::Quorum.needed(4, 5), 2);
        assert_eq!(WriteAck::One.needed(2, 3), 0);
    }

    #[test]
    fn ack_names_round_trip() {
        for a in [WriteAck::All, WriteAck::Quorum, WriteAck::One] {
            assert_eq!(WriteAck::parse(a.name()), Some(a));
        }
        assert_eq!(WriteAck::parse("most"), None);
    }
}
