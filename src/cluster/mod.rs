//! Cluster logic: where each command runs.
//!
//! # What this module owns
//! - [`state`]: the ring and members' addresses derived from the
//!   membership view, republished on every change;
//! - [`router`]: local vs forwarded execution, answering peers' requests;
//! - [`batch`]: pipelined forwarding, grouped by owner, and a pipeline's
//!   replicated writes on this node, replicated together;
//! - `coalesce`: concurrent forwards to one owner share a request;
//! - `repl_lane`: concurrent replicated writes to one replica share a
//!   request;
//! - `gather`: multi-key split/reassemble and cluster-wide aggregates;
//! - `introspect`: `INFO cluster` and `SHOAL MEMBERS`;
//! - `near_reads`: near copies of hot keys' RESP reads on a forwarding node;
//! - [`replication`]: replicated writes, failover, peer sync requests;
//! - [`rebalance`]: pulling partitions this node newly holds, dropping
//!   released ones after a grace period, readiness, graceful hand-off;
//! - [`antientropy`]: periodic digest exchange and repair.
//! - [`lag`]: replication lag measured at a replica.
//!
//! # What it must not do
//! Own sockets (the transport does) or foca (membership does), or know
//! command semantics beyond key positions and how replies combine.

pub mod antientropy;
pub mod batch;
mod coalesce;
mod gather;
mod introspect;
pub mod lag;
mod near_reads;
pub mod rebalance;
mod repl_lane;
pub mod replication;
pub mod router;
pub mod state;
mod sync_state;
mod txn;

pub use gather::{AggregateKind, SplitKind};
pub use router::{MAX_HOPS, Router, RouterStats};
pub use state::{ClusterState, Peer};
