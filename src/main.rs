//! The `shoal` command line: parses arguments and calls the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use shoal::config::{Config, parse_size};
use shoal::resp::server::Server;
use shoal::shutdown::Shutdown;
use shoal::store::{EvictionPolicy, Store};
use tracing_subscriber::EnvFilter;

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
    Serve(ServeArgs),
}

/// Flags of `shoal serve`; each overrides the same key of `--config`.
#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// TOML config file; flags override its values.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// RESP (client) listen address [default: 127.0.0.1:7379].
    #[arg(long, value_name = "ADDR")]
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
    /// Largest bulk string a client may send [default: 512mb].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    proto_max_bulk_len: Option<u64>,
    /// Log filter when RUST_LOG is unset: error, warn, info, debug, trace [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
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
        if let Some(v) = self.proto_max_bulk_len {
            cfg.proto_max_bulk_len = v;
        }
        if let Some(v) = self.log_level {
            cfg.log_level = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
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
    let store = Arc::new(Store::new(cfg.store()));
    let server = Server::bind(&cfg, store)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(
        listen = %server.local_addr(),
        maxmemory = cfg.maxmemory,
        eviction = %cfg.eviction,
        "shoal serving (standalone)"
    );
    let shutdown = Shutdown::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("shutting down");
        signal.trigger();
    });
    server.run(shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    })
}
