//! How the embedded API runs a command: the same paths as RESP.
//!
//! # What this module owns
//! [`Exec`]: build RESP arguments, run them through the router (a key owned
//! elsewhere is forwarded exactly as a RESP client's command would be) or on
//! the local store of a standalone node, and decode the reply frame. It also
//! sends single-flight requests and near-cache reads to a key's primary.
//!
//! # What it must not do
//! Know what a typed cache is, or decide policy (TTLs, retries of loads).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::Error;
use super::loader::FlightTable;
use super::wire::{FlightRequest, FlightResponse};
use crate::cluster::Router;
use crate::cluster::replication::{OUTCOME_UNKNOWN, replay_safe_args};
use crate::hotkeys::{HotTracker, NearRequest, NearResponse};
use crate::proto::{self, Request, Response};
use crate::resp::clock::Clock;
use crate::resp::codec::{Frame, Proto, parse_frame};
use crate::resp::commands::{execute_data, lookup};
use crate::resp::hook::Routed;
use crate::resp::reply::Reply;
use crate::store::Store;

/// How many times a command answered `TRYAGAIN` (views changing) is retried.
const TRYAGAIN_ATTEMPTS: u32 = 3;

/// Pause between `TRYAGAIN` retries.
const TRYAGAIN_PAUSE: Duration = Duration::from_millis(50);

/// Where commands run.
#[derive(Clone)]
pub enum Exec {
    /// A standalone node: everything runs on its own store.
    Local {
        /// The engine.
        store: Arc<Store>,
        /// Its clock.
        clock: Clock,
        /// Its single-flight table (it is every key's primary).
        flights: Arc<FlightTable>,
        /// Its hot-key sketch and near-copy holders.
        hot: Arc<HotTracker>,
    },
    /// A cluster peer: commands go through the router.
    Cluster(Arc<Router>),
}

impl Exec {
    /// Run `args` as a RESP client's command would run and decode the reply.
    /// An error reply becomes an [`Error`]; `TRYAGAIN` is retried a few times,
    /// `TRYAGAIN outcome unknown` only for a command harmless to run twice
    /// (it may have run: a retry could run it again).
    pub async fn run(&self, args: Vec<Bytes>) -> Result<Frame, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run_once(&args).await {
                Err(Error::Unavailable(msg))
                    if attempt < TRYAGAIN_ATTEMPTS
                        && (!msg.starts_with(OUTCOME_UNKNOWN) || replay_safe_args(&args)) =>
                {
                    tracing::debug!(error = %msg, attempt, "retrying a command");
                    tokio::time::sleep(TRYAGAIN_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    async fn run_once(&self, args: &[Bytes]) -> Result<Frame, Error> {
        let Some((_, spec)) = args.first().and_then(|n| lookup(n)) else {
            return Err(Error::Server("unknown command".into()));
        };
        let bytes = match self {
            Exec::Local {
                store, clock, hot, ..
            } => {
                hot.observe_local(spec, args);
                let mut out = BytesMut::new();
                let mut reply = Reply::new(&mut out, Proto::Resp3);
                if !execute_data(store, clock(), args, &mut reply) {
                    return Err(Error::Server(format!(
                        "{} is not a data command",
                        spec.name
                    )));
                }
                out.freeze()
            }
            Exec::Cluster(router) => match router.dispatch(spec, args, Proto::Resp3, 0) {
                Routed::Local => {
                    if let Some(hot) = router.hot.get() {
                        hot.observe_local(spec, args);
                    }
                    router.execute_here(args, Proto::Resp3)
                }
                Routed::Deferred(fut) => fut.await,
            },
        };
        decode(&bytes)
    }

    /// The single-flight table of this node.
    pub fn flights(&self) -> &Arc<FlightTable> {
        match self {
            Exec::Local { flights, .. } => flights,
            Exec::Cluster(router) => &router.flights,
        }
    }

    /// Send `req` for `key` to its primary (here when we are it).
    pub async fn flight(&self, key: &[u8], req: FlightRequest) -> Result<FlightResponse, Error> {
        let Exec::Cluster(router) = self else {
            return Ok(self.flights().serve(self, req).await);
        };
        let st = router.current();
        let owner = st
            .primary(crate::store::partition_of(key, st.ring.partitions()))
            .clone();
        if owner == st.me {
            return Ok(self.flights().serve(self, req).await);
        }
        let Some(addr) = st.peer_addr(&owner) else {
            return Err(Error::Unavailable(format!(
                "no address for primary {owner}"
            )));
        };
        let cluster = router.cluster.as_str();
        let payload = proto::encode(cluster, &Request::Flight(req));
        let bytes = router
            .transport
            .request(addr, payload)
            .await
            .map_err(|e| Error::Unavailable(format!("primary {owner} unreachable: {e}")))?;
        match proto::decode::<Response>(cluster, &bytes) {
            Ok(Response::Flight(r)) => Ok(r),
            Ok(Response::Refused(why)) => Err(Error::Server(format!("{owner} refused: {why}"))),
            Ok(other) => Err(Error::Server(format!(
                "unexpected answer from {owner}: {other:?}"
            ))),
            Err(e) => Err(Error::Server(format!("bad answer from {owner}: {e}"))),
        }
    }
}

impl Exec {
    /// Read `key` at its primary for a near cache keeping a copy for
    /// `ttl`: the value, its version, and whether the primary watches the
    /// copy (it then invalidates it when the key changes).
    pub async fn near_read(&self, key: Bytes, ttl: Duration) -> Result<NearResponse, Error> {
        let router = match self {
            Exec::Local {
                store, clock, hot, ..
            } => return Ok(hot.near_read(store, clock(), key, ttl, None)),
            Exec::Cluster(router) => router,
        };
        let st = router.current();
        let owner = st
            .primary(crate::store::partition_of(&key, st.ring.partitions()))
            .clone();
        if owner == st.me {
            let Some(hot) = router.hot.get() else {
                return Ok(NearResponse::NotPrimary);
            };
            if !crate::hotkeys::owns_ready(router, &key) {
                return Ok(NearResponse::NotPrimary);
            }
            return Ok(hot.near_read(&router.store, (router.clock)(), key, ttl, None));
        }
        let Some(addr) = st.peer_addr(&owner) else {
            return Err(Error::Unavailable(format!(
                "no address for primary {owner}"
            )));
        };
        let cluster = router.cluster.as_str();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let req = Request::Near(NearRequest::Read { key, ttl_ms });
        let bytes = router
            .transport
            .request(addr, proto::encode(cluster, &req))
            .await
            .map_err(|e| Error::Unavailable(format!("primary {owner} unreachable: {e}")))?;
        match proto::decode::<Response>(cluster, &bytes) {
            Ok(Response::Near(r)) => Ok(r),
            Ok(Response::Refused(why)) => Err(Error::Server(format!("{owner} refused: {why}"))),
            Ok(other) => Err(Error::Server(format!(
                "unexpected answer from {owner}: {other:?}"
            ))),
            Err(e) => Err(Error::Server(format!("bad answer from {owner}: {e}"))),
        }
    }

    /// The node's hot-key tracker (none on a cluster node not yet wired).
    pub(crate) fn hot(&self) -> Option<&Arc<HotTracker>> {
        match self {
            Exec::Local { hot, .. } => Some(hot),
            Exec::Cluster(router) => router.hot.get(),
        }
    }
}

/// Decode one reply frame; error replies become errors.
fn decode(bytes: &Bytes) -> Result<Frame, Error> {
    match parse_frame(bytes) {
        Ok(Some((Frame::Error(msg), _))) => Err(Error::from_reply(&msg)),
        Ok(Some((frame, _))) => Ok(frame),
        Ok(None) => Err(Error::Server("truncated reply".into())),
        Err(e) => Err(Error::Server(format!("undecodable reply: {e}"))),
    }
}
