//! Cluster logic: where each command runs.
//!
//! # What this module owns
//! - [`state`]: the ring and members' addresses derived from the
//!   membership view, republished on every change;
//! - [`router`]: local vs forwarded execution, answering peers' requests;
//! - `gather`: multi-key split/reassemble and cluster-wide aggregates;
//! - `introspect`: `INFO cluster` and `SHOAL MEMBERS`.
//!
//! # What it must not do
//! Own sockets (the transport does) or foca (membership does), or know
//! command semantics beyond key positions and how replies combine.

mod gather;
mod introspect;
pub mod router;
pub mod state;

pub use gather::{AggregateKind, SplitKind};
pub use router::{MAX_HOPS, Router, RouterStats};
pub use state::{ClusterState, Peer};
