//! The seam between the RESP front door and the cluster.
//!
//! A standalone server has no hook and runs every command on its own
//! store. A cluster node installs a [`ClusterHook`] (the router): before a
//! data command runs, the hook decides whether it runs here or elsewhere;
//! INFO and SHOAL ask it for the cluster's view. The RESP layer knows
//! nothing more of the cluster than this trait.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::codec::Proto;
use super::commands::CommandSpec;
use super::multi::{KeyStamp, Unit, UnitOutcome};

/// A reply (or value) that arrives later.
pub type Deferred<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where a data command runs.
pub enum Routed {
    /// Here, on the local store, as a standalone server would.
    Local,
    /// Elsewhere: the future yields the encoded reply for the client.
    Deferred(Deferred<Bytes>),
}

/// One row of `SHOAL MEMBERS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Node name.
    pub name: String,
    /// Gossip (QUIC) address.
    pub gossip: SocketAddr,
    /// RESP address, once known.
    pub resp: Option<SocketAddr>,
    /// TLS RESP address (`tls-listen`), once known.
    pub tls: Option<SocketAddr>,
    /// `alive`, `suspect` or `down`.
    pub state: &'static str,
    /// Partitions this member is primary for in our ring.
    pub primary: u32,
    /// Partitions this member holds as a non-primary replica.
    pub replica: u32,
    /// Whether this row is the node answering.
    pub myself: bool,
}

/// What `SHOAL RING` reports: with the placement rules (see
/// [`crate::ring`]), enough for a client to compute every key's replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// Number of partitions P.
    pub partitions: u32,
    /// Replicas per partition R.
    pub replicas: u32,
    /// The ring's digest (a client that computes another has another view).
    pub digest: u64,
    /// The members placement is computed over (alive or suspect), sorted.
    pub ring_members: Vec<String>,
}

/// What the RESP layer asks of the cluster.
pub trait ClusterHook: Send + Sync + 'static {
    /// Decide where a data command runs (called after arity and auth
    /// checks passed).
    fn route(self: Arc<Self>, spec: &'static CommandSpec, args: &[Bytes], proto: Proto) -> Routed;

    /// The body of `INFO cluster` (`field:value\r\n` lines).
    fn info_cluster(&self) -> String;

    /// Rows of `SHOAL MEMBERS`, sorted by name.
    fn members(&self) -> Vec<MemberRow>;

    /// Keys and keys-with-TTL over the whole cluster (INFO keyspace).
    fn keyspace(self: Arc<Self>) -> Deferred<(u64, u64)>;

    /// The replicas of `partition` in ring order, primary first
    /// (`SHOAL PARTITION`). The default: none known.
    fn replicas_of(&self, partition: u32) -> Vec<String> {
        let _ = partition;
        Vec::new()
    }

    /// The ring's parameters and members (`SHOAL RING`). The default:
    /// unknown.
    fn ring_info(&self) -> Option<RingInfo> {
        None
    }

    /// A [`Pipeline`] for one client connection, so its pipelined
    /// forwarded commands travel grouped by owner. The default: none, every
    /// command goes through [`ClusterHook::route`] one at a time.
    fn pipeline(self: Arc<Self>) -> Option<Box<dyn Pipeline>> {
        None
    }

    /// `WATCH`: what each of `keys` is now at its primary, in order. The
    /// default: unsupported.
    fn stamps(self: Arc<Self>, keys: Vec<Bytes>) -> Deferred<Result<Vec<KeyStamp>, String>> {
        let _ = keys;
        Box::pin(std::future::ready(Err(
            "ERR WATCH is not supported by this node".to_string(),
        )))
    }

    /// `EXEC`: run a transaction's data commands, all on one partition, as
    /// one unit on its primary (see `resp::multi`). The default: refused.
    fn exec_unit(self: Arc<Self>, unit: Unit, proto: Proto) -> Deferred<UnitOutcome> {
        let _ = unit;
        let mut out = bytes::BytesMut::new();
        super::reply::Reply::new(&mut out, proto)
            .error("ERR transactions are not supported by this node");
        Box::pin(std::future::ready(UnitOutcome::Failed(out.freeze())))
    }
}

/// What a [`Pipeline`] did with an offered command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued; its reply comes with the flush.
    Taken,
    /// Not queued: the connection runs it as [`ClusterHook::route`] says
    /// (a command for another node after what is queued; one for this node
    /// inline).
    Declined,
    /// Not queued, and it must not run before the queued commands end:
    /// the connection flushes them, then runs it.
    FlushFirst,
}

/// One connection's queue of commands that run whole on another node, or
/// that wait for a round trip here (a replicated write).
///
/// The connection offers each data command of a pipelined batch; the
/// commands taken are sent at [`Pipeline::flush`], grouped by owner (one
/// request per owner, owners in parallel; a replicated write here applies
/// then, its replica legs shared with the others'), and their replies come
/// back in the order they were offered. The connection flushes before
/// anything that must not overtake them (a command not taken that runs
/// elsewhere, a connection- or node-level command) and at the end of each
/// batch. A command not taken that runs inline on this node never shares a
/// key with a queued one: once a command for this node is queued, every
/// later one is taken too; and once the ring changed under the queued
/// commands (a key may then be queued for its old owner), the next command
/// waits for them ([`Offer::FlushFirst`]).
pub trait Pipeline: Send {
    /// Take `args` (a data command of `spec`, already admitted) if it runs
    /// whole on one other node, is a replicated write here, or runs here
    /// behind one.
    fn offer(&mut self, spec: &'static CommandSpec, args: &[Bytes], proto: Proto) -> Offer;

    /// How many commands are queued.
    fn queued(&self) -> usize;

    /// Send everything queued; resolves to one encoded reply per command,
    /// in the order offered. The queue is empty afterwards.
    fn flush(&mut self) -> Deferred<Vec<Bytes>>;
}
