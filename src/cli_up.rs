//! `shoal up`: a local N-node cluster in one process, for trying Shoal out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use shoal::certs;
use shoal::config::{Config, parse_size};
use shoal::node::Node;
use shoal::store::EvictionPolicy;

/// Flags of `shoal up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_name = "N")]
    nodes: u16,
    /// RESP port of node 1; node i listens on base+i-1.
    #[arg(long, default_value_t = 7379, value_name = "PORT")]
    base_port: u16,
    /// Gossip (QUIC) port of node 1; node i uses this+i-1.
    #[arg(long, default_value_t = 7946, value_name = "PORT")]
    gossip_base_port: u16,
    /// Admin HTTP port of node 1 (metrics, status page); node i uses
    /// this+i-1. 0 turns the admin endpoints off.
    #[arg(long, default_value_t = 9379, value_name = "PORT")]
    admin_base_port: u16,
    /// Certificates directory with ca.crt/ca.key; node certificates are issued
    /// into it as needed. Default: a throw-away CA in a temporary directory.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// Replicas per partition R.
    #[arg(long, default_value_t = 2, value_name = "R")]
    replicas: u32,
    /// Memory limit per node (bytes or e.g. 256mb; 0 = unlimited).
    #[arg(long, default_value = "0", value_parser = parse_size, value_name = "SIZE")]
    maxmemory: u64,
    /// Eviction policy of every node.
    #[arg(long, default_value = "s3-fifo", value_name = "POLICY")]
    eviction: EvictionPolicy,
    /// Log filter when RUST_LOG is unset.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start the cluster, print the addresses, wait for Ctrl-C, stop it.
pub async fn up(args: UpArgs) -> Result<()> {
    crate::init_logging(&args.log_level);
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let (dir, _temp) = match &args.certs {
        Some(d) => (d.clone(), None),
        None => {
            let d = std::env::temp_dir().join(format!("shoal-up-{}", std::process::id()));
            certs::init_ca(&d, "shoal", true).context("cannot create a throw-away CA")?;
            (d.clone(), Some(TempDir(d)))
        }
    };
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let seed = SocketAddr::new(local, args.gossip_base_port);
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node-{}", i + 1);
        if !dir.join(format!("{name}.crt")).exists() {
            certs::issue_node(&dir, &name, &[local], &[], certs::DEFAULT_NODE_DAYS)
                .with_context(|| format!("cannot issue a certificate for {name}"))?;
        }
        let cfg = Config {
            listen: SocketAddr::new(local, args.base_port + i),
            gossip: Some(SocketAddr::new(local, args.gossip_base_port + i)),
            seed: if i == 0 {
                Vec::new()
            } else {
                vec![seed.to_string()]
            },
            name: Some(name.clone()),
            certs: Some(dir.clone()),
            replicas: args.replicas,
            maxmemory: args.maxmemory,
            eviction: args.eviction,
            admin: (args.admin_base_port != 0)
                .then(|| SocketAddr::new(local, args.admin_base_port + i)),
            ..Config::default()
        };
        let node = Node::start(cfg)
            .await
            .with_context(|| format!("cannot start {name}"))?;
        nodes.push((name, node));
    }
    println!(
        "Shoal: {} nodes (certificates in {})",
        nodes.len(),
        dir.display()
    );
    for (name, node) in &nodes {
        println!(
            "  {name}: RESP {}  gossip {}   redis-cli -p {}",
            node.resp_addr(),
            node.gossip_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            node.resp_addr().port()
        );
        if let Some(a) = node.admin_addr() {
            println!("      status page http://{a}/   metrics http://{a}/metrics");
        }
    }
    let formed = wait_formed(&nodes, Duration::from_secs(30));
    tokio::select! {
        ok = formed => {
            if ok {
                println!("cluster formed: every node sees {} members. Ctrl-C stops it.", nodes.len());
            } else {
                println!("the cluster has not formed after 30 s; still trying. Ctrl-C stops it.");
            }
            crate::stop_signal().await;
        }
        _ = crate::stop_signal() => {}
    }
    println!("stopping ...");
    for (_, node) in &nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// Whether every node's ring has every member within `limit`.
async fn wait_formed(nodes: &[(String, Node)], limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let all = nodes.iter().all(|(_, n)| {
            n.cluster_state()
                .is_some_and(|s| s.ring.members().len() == nodes.len())
        });
        if all {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
