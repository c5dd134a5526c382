//! The `shoal` command line: parses arguments and calls the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use shoal::config::{Config, parse_admin, parse_listen, parse_size};
use shoal::node::Node;
use shoal::store::EvictionPolicy;
use tracing_subscriber::EnvFilter;

mod cli_certs;
mod cli_status;
mod cli_status_resp;
mod cli_up;

/// Counts the bytes the process allocates, so a node keeps its real
/// footprint under `maxmemory` (see `shoal::memory`).
#[global_allocator]
static ALLOC: shoal::memory::CountingAlloc = shoal::memory::CountingAlloc;

/// Shoal: a peer-to-peer distributed cache that speaks the Redis protocol.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node (standalone, or a cluster peer when given --gossip/--seed).
    Serve(Box<ServeArgs>),
    /// Start a local N-node cluster in this process (throw-away certificates
    /// unless --certs is given); Ctrl-C stops every node.
    Up(cli_up::UpArgs),
    /// Show the cluster: members, state, partitions, keys, memory, hit
    /// ratio, readiness (read from a node's admin endpoint).
    Status(cli_status::StatusArgs),
    /// Create and inspect the cluster CA and node certificates.
    #[command(subcommand)]
    Certs(cli_certs::CertsCommand),
}

/// Flags of `shoal serve`; each overrides the same key of `--config`.
#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// TOML config file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// RESP (client) listen address, or `off` for none (a cluster peer
    /// serving only its peers) [default: 127.0.0.1:7379].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_listen)]
    listen: Option<std::net::SocketAddr>,
    /// Memory limit: bytes or a size such as 512mb; 0 = unlimited [default: 0].
    #[arg(long, value_name = "BYTES|SIZE", value_parser = parse_size)]
    maxmemory: Option<u64>,
    /// Eviction policy: noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru,
    /// volatile-lfu, volatile-random, volatile-ttl, fifo, s3-fifo [default: s3-fifo].
    #[arg(long, value_name = "POLICY")]
    eviction: Option<EvictionPolicy>,
    /// Password clients must give with AUTH or HELLO AUTH [default: none].
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "SHOAL_REQUIREPASS",
        hide_env_values = true
    )]
    requirepass: Option<String>,
    /// Number of partitions P; every node of a cluster must agree [default: 4096].
    #[arg(long, value_name = "P")]
    partitions: Option<u32>,
    /// Maximum simultaneous client connections [default: 10000].
    #[arg(long, value_name = "N")]
    maxclients: Option<usize>,
    /// Close clients idle this many seconds; 0 = never [default: 0].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Close a client whose unsent replies exceed this size while it does
    /// not read; 0 = no limit [default: 0].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    client_output_buffer_limit: Option<u64>,
    /// Commands per second one client may run; 0 = no limit [default: 0].
    #[arg(long, value_name = "OPS")]
    client_rate_limit: Option<u32>,
    /// RESP-over-TLS address (a second port; --listen keeps serving plain
    /// RESP) [default: none].
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<std::net::SocketAddr>,
    /// Certificate chain (PEM) of the TLS client port.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of the TLS client port.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA bundle (PEM): TLS clients must present a certificate it signed.
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// An ACL user, as a Redis rule line (repeatable):
    /// "user NAME on >password ~pattern +@read +@write".
    #[arg(long = "user", value_name = "RULES")]
    users: Vec<String>,
    /// Largest bulk string a client may send [default: 512mb].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    proto_max_bulk_len: Option<u64>,
    /// Log filter when RUST_LOG is unset: error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Node name: its place on the ring and the name in its certificate
    /// [default: <hostname>-<gossip port>].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Cluster name; peers of another cluster are refused [default: shoal].
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Gossip (QUIC/UDP) address; turns on cluster mode [default in cluster mode: 127.0.0.1:7946].
    #[arg(long, value_name = "ADDR")]
    gossip: Option<std::net::SocketAddr>,
    /// A seed peer's gossip address HOST:PORT (repeatable); turns on cluster mode.
    #[arg(long = "seed", value_name = "HOST:PORT")]
    seeds: Vec<String>,
    /// Certificates directory with ca.crt, NAME.crt, NAME.key (see `shoal certs`);
    /// required in cluster mode.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Cluster CA certificate [default: <certs>/ca.crt].
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// This node's certificate [default: <certs>/<name>.crt].
    #[arg(long, value_name = "FILE")]
    node_cert: Option<PathBuf>,
    /// This node's private key [default: <certs>/<name>.key].
    #[arg(long, value_name = "FILE")]
    node_key: Option<PathBuf>,
    /// Replicas per partition R, the primary included [default: 2].
    #[arg(long, value_name = "R")]
    replicas: Option<u32>,
    /// Replicas that must apply a write before the client's OK: all (live
    /// replicas), quorum or one [default: all].
    #[arg(long, value_name = "all|quorum|one", value_parser = parse_write_ack)]
    write_ack: Option<shoal::cluster::replication::WriteAck>,
    /// Admin HTTP endpoint (metrics, health, status page), or `off`
    /// [default: 127.0.0.1:9379].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_admin_flag)]
    admin: Option<AdminFlag>,
    /// Snapshot directory: SAVE, BGSAVE and shutdown write DIR/shoal.snap,
    /// and it is loaded at start [default: none, snapshots off].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// The value of `--admin`: an address, or none for `off`.
#[derive(Debug, Clone)]
struct AdminFlag(Option<std::net::SocketAddr>);

fn parse_admin_flag(s: &str) -> Result<AdminFlag, String> {
    parse_admin(s).map(AdminFlag)
}

impl ServeArgs {
    /// The config file (or defaults) with every given flag applied on top.
    fn into_config(self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.maxmemory {
            cfg.maxmemory = v;
        }
        if let Some(v) = self.eviction {
            cfg.eviction = v;
        }
        if let Some(v) = self.requirepass {
            cfg.requirepass = Some(v);
        }
        if let Some(v) = self.partitions {
            cfg.partitions = v;
        }
        if let Some(v) = self.maxclients {
            cfg.maxclients = v;
        }
        if let Some(v) = self.timeout {
            cfg.timeout = v;
        }
        if let Some(v) = self.client_output_buffer_limit {
            cfg.client_output_buffer_limit = v;
        }
        if let Some(v) = self.client_rate_limit {
            cfg.client_rate_limit = v;
        }
        if self.tls_listen.is_some() {
            cfg.tls_listen = self.tls_listen;
        }
        if self.tls_cert.is_some() {
            cfg.tls_cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            cfg.tls_key = self.tls_key;
        }
        if self.tls_client_ca.is_some() {
            cfg.tls_client_ca = self.tls_client_ca;
        }
        if !self.users.is_empty() {
            cfg.users = self.users;
        }
        if let Some(v) = self.proto_max_bulk_len {
            cfg.proto_max_bulk_len = v;
        }
        if let Some(v) = self.log_level {
            cfg.log_level = v;
        }
        if self.name.is_some() {
            cfg.name = self.name;
        }
        if let Some(v) = self.cluster {
            cfg.cluster = v;
        }
        if self.gossip.is_some() {
            cfg.gossip = self.gossip;
        }
        if !self.seeds.is_empty() {
            cfg.seed = self.seeds;
        }
        if self.certs.is_some() {
            cfg.certs = self.certs;
        }
        if self.ca_cert.is_some() {
            cfg.ca_cert = self.ca_cert;
        }
        if self.node_cert.is_some() {
            cfg.node_cert = self.node_cert;
        }
        if self.node_key.is_some() {
            cfg.node_key = self.node_key;
        }
        if let Some(v) = self.replicas {
            cfg.replicas = v;
        }
        if let Some(v) = self.write_ack {
            cfg.write_ack = v;
        }
        if let Some(AdminFlag(v)) = self.admin {
            cfg.admin = v;
        }
        if self.data_dir.is_some() {
            cfg.data_dir = self.data_dir;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn parse_write_ack(s: &str) -> Result<shoal::cluster::replication::WriteAck, String> {
    shoal::cluster::replication::WriteAck::parse(s)
        .ok_or_else(|| format!("invalid write-ack '{s}' (use all, quorum or one)"))
}

pub(crate) fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let cfg = args.into_config()?;
    init_logging(&cfg.log_level);
    let cluster = cfg.is_cluster();
    let node = Node::start(cfg.clone())
        .await
        .context("cannot start the node")?;
    tracing::info!(
        listen = %node.resp_addr(),
        gossip = ?node.gossip_addr(),
        admin = ?node.admin_addr(),
        maxmemory = cfg.maxmemory,
        eviction = %cfg.eviction,
        mode = if cluster { "cluster" } else { "standalone" },
        "shoal serving"
    );
    stop_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A worker or blocking thread that ends hands its unflushed
        // allocation count to the global figure.
        .on_thread_stop(shoal::memory::flush_thread)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Up(args) => cli_up::up(args).await,
            Command::Status(args) => cli_status::status(args).await,
            Command::Certs(cmd) => cli_certs::run(cmd),
        }
    })
}
