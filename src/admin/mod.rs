//! The admin HTTP endpoint: Prometheus `/metrics`, `/health`, `/ready`,
//! `/cluster` and `/stats` (JSON), and a status page at `/`.
//!
//! # What this module owns
//! - [`CommandStats`]: per-command call counts and latency histograms (the
//!   only metric recorded on the request path; everything else is read
//!   from the layers' own atomic counters at scrape time).
//! - [`AdminSources`]: the handles the endpoint reads (store, RESP server
//!   state, and in cluster mode the router, membership and transport).
//! - The HTTP server task ([`AdminServer`]) and a small HTTP client
//!   ([`client::get`]) used by `shoal status`.
//!
//! # What it must not do
//! Change anything: every route is a read. It must not add work to the hot
//! paths beyond what [`LocalCommandStats`] records per command.

pub mod client;
mod cmdstats;
pub mod json;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

pub use cmdstats::{BUCKET_BOUNDS_NS, CommandSnapshot, CommandStats, LocalCommandStats};
pub use json::{ClusterJson, MemberJson, ReadyJson, StatsJson};
pub use server::AdminServer;

use crate::cluster::Router;
use crate::membership::MembershipHandle;
use crate::resp::state::Shared;
use crate::store::Store;
use crate::transport::NodeName;
use crate::transport::quic::QuicTransport;

/// Why the admin endpoint could not start or a request to one failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The admin endpoint could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The admin address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("HTTP request to {addr} failed: {reason}")]
    Http {
        /// The admin address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The endpoint did not answer in time.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The answer was not the JSON expected.
    #[error("unexpected answer from {addr}{path}: {reason}")]
    BadBody {
        /// The admin address.
        addr: SocketAddr,
        /// The path asked for.
        path: String,
        /// What the decoder said.
        reason: String,
    },
}

/// The cluster half of what the endpoint reads.
#[derive(Clone)]
pub struct ClusterSources {
    /// This node's name on the ring.
    pub name: NodeName,
    /// The router (ring, members, forward counters).
    pub router: Arc<Router>,
    /// The gossip task (view, gossip counters).
    pub membership: MembershipHandle,
    /// The QUIC transport (handshake and datagram counters); absent when
    /// the node runs over an injected transport (in-memory tests).
    pub transport: Option<Arc<QuicTransport>>,
}

/// Everything the endpoint reads; cheap to clone.
#[derive(Clone)]
pub struct AdminSources {
    /// The local engine.
    pub store: Arc<Store>,
    /// The RESP server's shared state (clients, commands, ops/s).
    pub resp: Arc<Shared>,
    /// Cluster parts, when not standalone.
    pub cluster: Option<ClusterSources>,
}

impl std::fmt::Debug for AdminSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSources")
            .field("resp", &self.resp.local_addr)
            .field("cluster", &self.cluster.as_ref().map(|c| c.name.clone()))
            .finish()
    }
}
