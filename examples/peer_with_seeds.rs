//! An embedded peer joining a cluster of `shoal serve` processes.
//!
//! ```text
//! # Join an existing cluster (certificate NAME.crt/NAME.key in DIR):
//! cargo run --example peer_with_seeds -- --seed 10.0.0.5:7946 --certs DIR --name NAME [--gossip ADDR]
//!
//! # Or let the example start two `shoal serve` processes on loopback first
//! # (build the binary once: `cargo build --bin shoal`):
//! cargo run --example peer_with_seeds
//! ```
//! It then writes keys through the embedded API, reads them back over RESP
//! from a served node, and the other way round.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use redis::AsyncCommands;
use shoal::NodeBuilder;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `shoal serve` processes this example started; killed on drop.
struct Served {
    /// The processes and their RESP addresses.
    children: Vec<(Child, SocketAddr)>,
    /// The first one's gossip address: the seed.
    seed: Option<SocketAddr>,
}

impl Drop for Served {
    fn drop(&mut self) {
        for (child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port that was free a moment ago (the example's own processes bind it).
fn free_udp() -> anyhow::Result<SocketAddr> {
    Ok(UdpSocket::bind((LOCAL, 0))?.local_addr()?)
}

fn free_tcp() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind((LOCAL, 0))?.local_addr()?)
}

/// The `shoal` binary built next to this example.
fn shoal_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("shoal"))
        .context("cannot locate the target directory")?;
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it first with `cargo build --bin shoal`",
        bin.display()
    );
    Ok(bin)
}

/// Start two `shoal serve` processes; the first is the seed.
fn spawn_served(certs: &Path) -> anyhow::Result<Served> {
    let bin = shoal_binary()?;
    let mut served = Served {
        children: Vec::new(),
        seed: None,
    };
    for i in 1..=2 {
        let name = format!("served-{i}");
        shoal::certs::issue_node(certs, &name, &[LOCAL], &[], 1)?;
        let gossip = free_udp()?;
        let listen = free_tcp()?;
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--name", &name, "--log-level", "warn"])
            .arg("--gossip")
            .arg(gossip.to_string())
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--certs")
            .arg(certs)
            .stdin(Stdio::null());
        if let Some(s) = served.seed {
            cmd.arg("--seed").arg(s.to_string());
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        println!("spawned `shoal serve` {name}: gossip {gossip}, RESP {listen}");
        served.children.push((child, listen));
        served.seed.get_or_insert(gossip);
    }
    Ok(served)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let temp = tempfile::tempdir()?;
    let (builder, served) = match flag("--seed") {
        Some(seed) => {
            let certs = flag("--certs").context("--certs DIR is required with --seed")?;
            let name = flag("--name").context("--name is required with --seed")?;
            let gossip: SocketAddr = match flag("--gossip") {
                Some(g) => g.parse()?,
                None => SocketAddr::new(LOCAL, 0),
            };
            let b = NodeBuilder::new()
                .name(name)
                .gossip(gossip)
                .seed(seed)
                .certs(certs);
            (b, None)
        }
        None => {
            shoal::certs::init_ca(temp.path(), "shoal", false)?;
            let served = spawn_served(temp.path())?;
            let seed = served.seed.context("no served process")?;
            shoal::certs::issue_node(temp.path(), "embedded-1", &[LOCAL], &[], 1)?;
            let b = NodeBuilder::new()
                .name("embedded-1")
                .gossip(SocketAddr::new(LOCAL, 0))
                .seed(seed.to_string())
                .certs(temp.path());
            (b, Some(served))
        }
    };
    let node = builder.start().await?;
    let mut state = node.subscribe_membership().context("cluster mode")?;
    let want = if served.is_some() { 3 } else { 2 };
    tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| s.ring.members().len() >= want),
    )
    .await
    .context("the cluster did not form in 30 s")??;
    node.ready().await;
    println!("\njoined; members:");
    for m in node.members() {
        println!("  {:<12} {:<6} resp {:?}", m.name, m.state, m.resp);
    }
    for k in 0..10 {
        node.set(
            format!("embedded:{k}"),
            format!("from the embedded peer {k}"),
            None,
        )
        .await?;
    }
    println!("\nwrote embedded:0..9 through the embedded peer");
    let resp_addr = node
        .members()
        .into_iter()
        .find(|m| !m.myself)
        .and_then(|m| m.resp)
        .context("no served member with a RESP address")?;
    let mut conn = redis::Client::open(format!("redis://{resp_addr}/"))?
        .get_multiplexed_async_connection()
        .await?;
    for k in 0..3 {
        let v: Option<String> = conn.get(format!("embedded:{k}")).await?;
        println!("  RESP {resp_addr} GET embedded:{k} -> {v:?}");
    }
    for k in 0..3 {
        let _: () = conn
            .set(format!("resp:{k}"), format!("from RESP {k}"))
            .await?;
        let v = node.get(format!("resp:{k}")).await?;
        println!(
            "  RESP SET resp:{k}; embedded GET -> {:?}",
            v.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    }
    node.shutdown().await;
    drop(served);
    println!("\nembedded peer left; served processes stopped");
    Ok(())
}
