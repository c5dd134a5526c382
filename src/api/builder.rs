//! [`NodeBuilder`]: the options of `shoal serve`, set from code.
//!
//! # What this module owns
//! Building a [`Config`] for an embedded node and starting it. Defaults
//! differ from the binary's in one place: the RESP listener binds an
//! ephemeral loopback port (`127.0.0.1:0`) unless [`NodeBuilder::resp`]
//! names an address, so two embedded nodes in one process never collide.
//!
//! # What it must not do
//! Validate settings itself: [`Config::validate`] does, as for the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{Error, Node};
use crate::config::Config;
use crate::store::EvictionPolicy;

/// Options for an embedded node; [`NodeBuilder::start`] runs it.
///
/// ```no_run
/// # async fn demo() -> Result<(), shoal::Error> {
/// let node = shoal::Node::builder()
///     .name("orders-1")
///     .gossip("127.0.0.1:7946".parse().unwrap())
///     .seed("10.0.0.5:7946")
///     .certs("/etc/shoal/certs")
///     .maxmemory(256 << 20)
///     .start()
///     .await?;
/// node.ready().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    /// The configuration being built.
    cfg: Config,
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeBuilder {
    /// Defaults of `shoal serve`, RESP on an ephemeral loopback port.
    pub fn new() -> Self {
        let cfg = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        NodeBuilder { cfg }
    }

    /// Start from a whole [`Config`] (e.g. loaded from TOML).
    pub fn config(cfg: Config) -> Self {
        NodeBuilder { cfg }
    }

    /// This node's name (must match its certificate).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.cfg.name = Some(name.into());
        self
    }

    /// Cluster name; peers of another cluster are refused.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cfg.cluster = cluster.into();
        self
    }

    /// Gossip (QUIC) address; turns on cluster mode.
    pub fn gossip(mut self, addr: SocketAddr) -> Self {
        self.cfg.gossip = Some(addr);
        self
    }

    /// A seed `HOST:PORT` (repeatable); turns on cluster mode.
    pub fn seed(mut self, seed: impl Into<String>) -> Self {
        self.cfg.seed.push(seed.into());
        self
    }

    /// Directory with `ca.crt`, `NAME.crt`, `NAME.key`.
    pub fn certs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.certs = Some(dir.into());
        self
    }

    /// CA certificate, node certificate and key named one by one.
    pub fn tls_files(
        mut self,
        ca: impl Into<PathBuf>,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.cfg.ca_cert = Some(ca.into());
        self.cfg.node_cert = Some(cert.into());
        self.cfg.node_key = Some(key.into());
        self
    }

    /// Replicas per partition (primary included).
    pub fn replicas(mut self, r: u32) -> Self {
        self.cfg.replicas = r;
        self
    }

    /// Number of partitions (must match the cluster's).
    pub fn partitions(mut self, p: u32) -> Self {
        self.cfg.partitions = p;
        self
    }

    /// Memory limit in bytes; 0 = unlimited.
    pub fn maxmemory(mut self, bytes: u64) -> Self {
        self.cfg.maxmemory = bytes;
        self
    }

    /// Eviction policy.
    pub fn eviction(mut self, policy: EvictionPolicy) -> Self {
        self.cfg.eviction = policy;
        self
    }

    /// Password RESP clients must send.
    pub fn requirepass(mut self, pass: impl Into<String>) -> Self {
        self.cfg.requirepass = Some(pass.into());
        self
    }

    /// Serve RESP clients on `addr` (default: an ephemeral loopback port,
    /// reachable only from this machine).
    pub fn resp(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = addr;
        self
    }

    /// The configuration as built so far.
    pub fn as_config(&self) -> &Config {
        &self.cfg
    }

    /// Start the node.
    pub async fn start(self) -> Result<Node, Error> {
        let core = crate::node::Node::start(self.cfg)
            .await
            .map_err(|e| Error::Start(e.to_string()))?;
        Ok(Node::from_core(core))
    }
}
