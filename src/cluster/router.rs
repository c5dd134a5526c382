//! The router: every data command runs on its key's primary.
//!
//! # What this module owns
//! The decision, per command, of where it runs: here (the common, fast,
//! synchronous case), on one other node (one QUIC request carrying our ring
//! digest and a hop count), split over several owners and reassembled in
//! order (MGET, MSET, DEL/EXISTS/UNLINK/TOUCH with keys on several nodes),
//! or on every member and aggregated (DBSIZE, KEYS, SCAN, FLUSHALL,
//! FLUSHDB, RANDOMKEY, INFO keyspace). It also answers the requests other
//! nodes forward to us.
//!
//! # What it must not do
//! Know command semantics beyond key positions and how replies combine;
//! the handlers in `resp::commands` do the work wherever it runs. It never
//! loops: a forwarded command is forwarded at most [`MAX_HOPS`] times.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::gather;
use super::replication::{replay_safe_args, unknown_outcome};
use super::state::ClusterState;
use crate::membership::ClusterId;
use crate::proto::{self, Request, Response};
use crate::resp::clock::Clock;
use crate::resp::codec::Proto;
use crate::resp::commands::{CommandSpec, execute_data, lookup};
use crate::resp::hook::{ClusterHook, Deferred, Routed};
use crate::resp::reply::Reply;
use crate::store::Store;
use crate::transport::{NodeName, Transport};

/// How many times a command may be forwarded before a node answers that
/// views disagree instead of forwarding again.
pub const MAX_HOPS: u8 = 2;

/// Counters for INFO and metrics.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Commands sent whole to another node (each command of a batch counts).
    pub forwarded: AtomicU64,
    /// Peer requests that carried forwarded commands as a batch (a
    /// pipelined group, or concurrent forwards coalesced: `cluster::batch`).
    pub forward_batches: AtomicU64,
    /// Forwards that failed (peer unreachable, timeout, refused).
    pub forward_errors: AtomicU64,
    /// Forwarded commands answered `-TRYAGAIN outcome unknown`: sent, no
    /// answer came, and not run again (they may have run once).
    pub forward_unknown: AtomicU64,
    /// Multi-key commands split over several owners.
    pub split: AtomicU64,
    /// Cluster-wide commands run on every member.
    pub aggregated: AtomicU64,
    /// Requests from peers we answered.
    pub served: AtomicU64,
    /// Requests from peers refused (malformed, foreign cluster, version).
    pub refused: AtomicU64,
    /// Forwarded commands whose sender's ring digest differed from ours.
    pub digest_mismatch: AtomicU64,
    /// Forwarded commands we neither own nor could forward (hop limit).
    pub wrong_owner: AtomicU64,
}

/// Where one command runs, decided from one ring.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Here.
    Local,
    /// Whole, on this other node.
    One(NodeName),
    /// Keys on several owners; split and reassemble.
    Split(gather::SplitKind),
    /// Keys on several owners for a command that cannot be split.
    CrossSlot,
    /// On every member, combined.
    Everywhere(gather::AggregateKind),
}

/// Routes commands and answers peers' requests. One per node, shared.
pub struct Router {
    /// Our cluster (every request we send or accept carries it).
    pub(crate) cluster: ClusterId,
    /// The ring and members' addresses, rebuilt on view changes.
    pub(crate) state: watch::Receiver<Arc<ClusterState>>,
    /// How requests reach peers.
    pub(crate) transport: Arc<dyn Transport>,
    /// The local engine.
    pub(crate) store: Arc<Store>,
    /// The server's clock (tests control it).
    pub(crate) clock: Clock,
    /// Counters.
    pub stats: Arc<RouterStats>,
    /// Replication, when R > 1 (set once at start; see `replication`).
    pub(crate) repl: std::sync::OnceLock<Arc<super::replication::Replication>>,
    /// Single-flight load slots for keys we are primary of (embedded API).
    pub(crate) flights: Arc<crate::api::loader::FlightTable>,
    /// Lanes that coalesce concurrent forwards to the same owner.
    pub(crate) coalescer: super::coalesce::Coalescer,
    /// The node's hot keys and near-copy holders (`crate::hotkeys`); set
    /// once by the node at start.
    pub(crate) hot: std::sync::OnceLock<Arc<crate::hotkeys::HotTracker>>,
    /// Transaction counters of the node (the RESP server's, set once by
    /// the node at start; a router alone counts into its own): units run
    /// here wait for their gate under them.
    pub(crate) txn: std::sync::OnceLock<Arc<crate::resp::multi::TxnStats>>,
}

impl Router {
    /// A router over `state`, sending through `transport`.
    pub fn new(
        cluster: ClusterId,
        state: watch::Receiver<Arc<ClusterState>>,
        transport: Arc<dyn Transport>,
        store: Arc<Store>,
        clock: Clock,
    ) -> Arc<Router> {
        Arc::new(Router {
            cluster,
            state,
            transport,
            store,
            clock,
            stats: Arc::new(RouterStats::default()),
            repl: std::sync::OnceLock::new(),
            flights: Arc::new(crate::api::loader::FlightTable::default()),
            coalescer: super::coalesce::Coalescer::default(),
            hot: std::sync::OnceLock::new(),
            txn: std::sync::OnceLock::new(),
        })
    }

    /// The current cluster state.
    pub fn current(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// Decide where `args` (a command of `spec`) runs under `st`.
    pub(crate) fn plan(st: &ClusterState, spec: &CommandSpec, args: &[Bytes]) -> Plan {
        if let Some(kind) = gather::AggregateKind::of(spec.name) {
            if st.ring.members().len() <= 1 {
                return Plan::Local;
            }
            return Plan::Everywhere(kind);
        }
        let mut owner: Option<&NodeName> = None;
        let mut several = false;
        for key in spec.keys(args) {
            let p = crate::store::partition_of(key, st.ring.partitions());
            let o = st.primary(p);
            match owner {
                None => owner = Some(o),
                Some(prev) if prev != o => several = true,
                Some(_) => {}
            }
        }
        match owner {
            None => Plan::Local,
            Some(_) if several => match gather::SplitKind::of(spec.name) {
                Some(kind) => Plan::Split(kind),
                None => Plan::CrossSlot,
            },
            Some(o) if *o == st.me => Plan::Local,
            Some(o) => Plan::One(o.clone()),
        }
    }

    /// Route a command that arrived with `hops` forwards behind it.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        spec: &'static CommandSpec,
        args: &[Bytes],
        proto: Proto,
        hops: u8,
    ) -> Routed {
        let st = self.current();
        match Self::plan(&st, spec, args) {
            Plan::Local => match self.local_plan(&st, spec, args, proto) {
                Some(fut) => Routed::Deferred(fut),
                None => Routed::Local,
            },
            Plan::CrossSlot => Routed::Deferred(ready(error_bytes(
                proto,
                "CROSSSLOT Keys in request don't hash to the same owner (use hash tags {...})",
            ))),
            Plan::One(owner) => {
                if hops >= MAX_HOPS {
                    self.stats.wrong_owner.fetch_add(1, Ordering::Relaxed);
                    return Routed::Deferred(ready(error_bytes(proto, WRONG_OWNER)));
                }
                let me = self.clone();
                let args = args.to_vec();
                Routed::Deferred(Box::pin(async move {
                    me.forward_or_failover(&st, &owner, spec, args, proto, hops + 1)
                        .await
                }))
            }
            Plan::Split(kind) => {
                if hops >= MAX_HOPS {
                    self.stats.wrong_owner.fetch_add(1, Ordering::Relaxed);
                    return Routed::Deferred(ready(error_bytes(proto, WRONG_OWNER)));
                }
                self.stats.split.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                let args = args.to_vec();
                Routed::Deferred(Box::pin(async move {
                    gather::split(me, st, kind, args, proto, hops + 1).await
                }))
            }
            Plan::Everywhere(kind) => {
                self.stats.aggregated.fetch_add(1, Ordering::Relaxed);
                let me = self.clone();
                let args = args.to_vec();
                Routed::Deferred(Box::pin(async move {
                    gather::everywhere(me, st, kind, args, proto).await
                }))
            }
        }
    }

    /// Run a data command here and return its encoded reply.
    pub(crate) fn execute_here(&self, args: &[Bytes], proto: Proto) -> Bytes {
        let mut out = BytesMut::new();
        let mut reply = Reply::new(&mut out, proto);
        if !execute_data(&self.store, (self.clock)(), args, &mut reply) {
            reply.error("ERR this command cannot run on a peer's behalf");
        }
        out.freeze()
    }

    /// Send `args` to `owner` and return its encoded reply (or an error
    /// reply if it cannot be reached).
    pub(crate) async fn forward(
        &self,
        st: &ClusterState,
        owner: &NodeName,
        args: Vec<Bytes>,
        proto: Proto,
        hops: u8,
        local: bool,
    ) -> Bytes {
        if *owner == st.me {
            if local {
                return self.execute_leg(st, &args, proto);
            }
            return self.execute_owned(st, &args, proto).await;
        }
        let Some(addr) = st.peer_addr(owner) else {
            self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
            return error_bytes(proto, &format!("TRYAGAIN no address for owner {owner}"));
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let req = Request::Command {
            digest: st.digest().0,
            hops,
            resp: proto.number() as u8,
            local,
            args,
        };
        let payload = proto::encode(self.cluster.as_str(), &req);
        let answer = match self.transport.request(addr, payload).await {
            Ok(bytes) => match proto::decode::<Response>(self.cluster.as_str(), &bytes) {
                Ok(answer) => Ok(answer),
                Err(e) => {
                    self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                    return unknown_outcome(&self.stats, proto, owner, &format!("bad answer: {e}"));
                }
            },
            Err(e) if e.maybe_delivered() => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%owner, error = %e, "forward may have run");
                // Harmless to run twice: a caller may retry it.
                if let Request::Command { args, .. } = &req
                    && replay_safe_args(args)
                {
                    return error_bytes(
                        proto,
                        &format!("TRYAGAIN owner {owner} gave no answer: {e}"),
                    );
                }
                return unknown_outcome(&self.stats, proto, owner, &e.to_string());
            }
            Err(e) => Err(format!("owner {owner} unreachable: {e}")),
        };
        match answer {
            Ok(Response::Reply(bytes)) => bytes,
            Ok(Response::WrongOwner { .. }) => error_bytes(proto, WRONG_OWNER),
            Ok(other) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%owner, answer = ?other, "unexpected answer to a forwarded command");
                error_bytes(proto, &format!("TRYAGAIN unexpected answer from {owner}"))
            }
            Err(msg) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%owner, error = %msg, "forward failed");
                error_bytes(proto, &format!("TRYAGAIN {msg}"))
            }
        }
    }

    /// Answer one request a peer sent us. Never fails: a bad request gets a
    /// `Refused` answer, a log line and a counter.
    pub async fn serve(self: Arc<Self>, from: NodeName, payload: Bytes) -> Bytes {
        let req = match proto::decode::<Request>(self.cluster.as_str(), &payload) {
            Ok(r) => r,
            Err(e) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(peer = %from, reason = e.reason(), error = %e, "refused a peer request");
                return self.answer(&Response::Refused(e.to_string()));
            }
        };
        self.stats.served.fetch_add(1, Ordering::Relaxed);
        let response = match req {
            Request::Replicate { .. }
            | Request::Owned { .. }
            | Request::Pull { .. }
            | Request::Summaries { .. }
            | Request::Buckets { .. }
            | Request::Repair { .. } => super::replication::serve(&self, req).await,
            Request::Keyspace => {
                let (keys, expires) = self.keyspace_share();
                Response::Keyspace { keys, expires }
            }
            Request::Near(req) => Response::Near(crate::hotkeys::serve(&self, &from, req)),
            Request::Flight(req) => {
                let exec = crate::api::exec::Exec::Cluster(self.clone());
                Response::Flight(self.flights.serve(&exec, req).await)
            }
            Request::Command {
                digest,
                hops,
                resp,
                local,
                args,
            } => {
                let proto = Proto::from_number(resp);
                self.serve_command(&from, digest, hops, proto, local, args)
                    .await
            }
            Request::Batch {
                digest,
                hops,
                resp,
                commands,
            } => {
                let proto = Proto::from_number(resp);
                super::batch::serve(&self, &from, digest, hops, proto, commands).await
            }
            Request::Txn {
                digest,
                hops,
                resp,
                acting,
                partition,
                watches,
                commands,
            } => {
                let proto = Proto::from_number(resp);
                let unit = crate::resp::multi::Unit {
                    partition,
                    watches,
                    commands,
                };
                super::txn::serve_txn(&self, &from, digest, hops, proto, acting, unit).await
            }
            Request::Stamps { keys } => super::txn::serve_stamps(&self, &keys, false),
            Request::WatchStamps { keys } => super::txn::serve_stamps(&self, &keys, true),
        };
        self.answer(&response)
    }

    async fn serve_command(
        self: &Arc<Self>,
        from: &NodeName,
        digest: u64,
        hops: u8,
        proto: Proto,
        local: bool,
        args: Vec<Bytes>,
    ) -> Response {
        let Some((_, spec)) = args.first().and_then(|name| lookup(name)) else {
            return Response::Refused("empty or unknown command".into());
        };
        if local {
            let st = self.current();
            return Response::Reply(self.execute_leg(&st, &args, proto));
        }
        let ours = self.current().digest().0;
        if digest != ours {
            self.stats.digest_mismatch.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %from, theirs = digest, ours, "ring digests differ");
        }
        match self.dispatch(spec, &args, proto, hops) {
            Routed::Local => Response::Reply(self.execute_here(&args, proto)),
            Routed::Deferred(fut) => {
                let bytes = fut.await;
                if bytes.as_ref() == error_bytes(proto, WRONG_OWNER).as_ref() {
                    Response::WrongOwner { digest: ours }
                } else {
                    Response::Reply(bytes)
                }
            }
        }
    }

    fn answer(&self, response: &Response) -> Bytes {
        proto::encode(self.cluster.as_str(), response)
    }
}

impl ClusterHook for Router {
    fn route(self: Arc<Self>, spec: &'static CommandSpec, args: &[Bytes], proto: Proto) -> Routed {
        super::near_reads::route(self, spec, args, proto)
    }

    fn info_cluster(&self) -> String {
        super::introspect::info_cluster(self)
    }

    fn members(&self) -> Vec<crate::resp::hook::MemberRow> {
        super::introspect::members(self)
    }

    fn keyspace(self: Arc<Self>) -> Deferred<(u64, u64)> {
        Box::pin(async move { gather::keyspace(self).await })
    }

    fn replicas_of(&self, partition: u32) -> Vec<String> {
        super::introspect::replicas_of(self, partition)
    }

    fn pipeline(self: Arc<Self>) -> Option<Box<dyn crate::resp::hook::Pipeline>> {
        Some(Box::new(super::batch::OwnerPipeline::new(self)))
    }

    fn ring_info(&self) -> Option<crate::resp::hook::RingInfo> {
        Some(super::introspect::ring_info(self))
    }

    fn stamps(
        self: Arc<Self>,
        keys: Vec<Bytes>,
    ) -> Deferred<Result<Vec<crate::store::KeyStamp>, String>> {
        Box::pin(async move { self.watch_stamps(keys).await })
    }

    fn exec_unit(
        self: Arc<Self>,
        unit: crate::resp::multi::Unit,
        proto: Proto,
    ) -> Deferred<crate::resp::multi::UnitOutcome> {
        Box::pin(Router::exec_unit(self, unit, proto, 0))
    }
}

/// The error a node answers when it neither owns a key nor may forward it
/// again: views disagree for a moment; the client should retry.
pub(crate) const WRONG_OWNER: &str = "TRYAGAIN ring views disagree; retry";

/// `msg` as an encoded RESP error.
pub(crate) fn error_bytes(proto: Proto, msg: &str) -> Bytes {
    let mut out = BytesMut::new();
    Reply::new(&mut out, proto).error(msg);
    out.freeze()
}

/// A future that is already done.
fn ready(bytes: Bytes) -> Deferred<Bytes> {
    Box::pin(std::future::ready(bytes))
}
