//! Client-routed vs forwarded: throughput and latency of the thin client
//! (`shoal::api::Client`) on a 3-node cluster, once sending every key
//! straight to its primary and once sending everything to node 1, which
//! forwards the two thirds of keys it does not own.
//!
//! ```text
//! cargo run --release --example client_bench -- [tasks] [seconds] [keys] [replicas]
//! ```
//! Defaults: 32 tasks, 5 s per mode, 10 000 keys, 90 % GET / 10 % SET of
//! 100-byte values, R = 1 (so the comparison is routing alone; the
//! `forwards` column counts the router's plain forwards, which R > 1
//! replaces with its failover path and does not count). The three nodes run in this process over QUIC + mTLS
//! on loopback (certificates from a throw-away CA), so client and nodes
//! share the machine's cores: compare the two modes with each other, not
//! with other benchmarks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal::NodeBuilder;
use shoal::api::Client;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let tasks = arg(1, 32) as usize;
    let secs = arg(2, 5);
    let keys = arg(3, 10_000);
    let replicas = arg(4, 1) as u32;

    let certs = tempfile::tempdir()?;
    shoal::certs::init_ca(certs.path(), "shoal", false)?;
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let name = format!("bench-{i}");
        shoal::certs::issue_node(certs.path(), &name, &[LOCAL], &[], 1)?;
        let mut b = NodeBuilder::new()
            .name(&name)
            .gossip(SocketAddr::new(LOCAL, 0))
            .resp(SocketAddr::new(LOCAL, 0))
            .replicas(replicas)
            .certs(certs.path());
        if let Some(seed) = nodes
            .first()
            .and_then(|n: &shoal::Node| n.core().gossip_addr())
        {
            b = b.seed(seed.to_string());
        }
        nodes.push(b.start().await?);
    }
    for n in &nodes {
        let mut st = n.subscribe_membership().expect("cluster mode");
        tokio::time::timeout(
            Duration::from_secs(30),
            st.wait_for(|s| s.ring.members().len() == 3),
        )
        .await??;
        n.ready().await;
    }
    let seed = nodes[0].core().resp_addr();
    let routed = Client::builder([seed]).connect().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(routed.members().len() == 3 && routed.routable()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "client never saw 3 routable members"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        routed.refresh().await?;
    }
    let value = vec![b'x'; 100];
    for k in 0..keys {
        routed.set(format!("k{k}"), &value, None).await?;
    }
    let forwarded = Client::builder([seed]).routing(false).connect().await?;

    println!(
        "3 nodes in-process (R = {replicas}), {tasks} tasks, {secs} s per mode, {keys} keys, 90% GET"
    );
    println!(
        "{:<10} {:>10} {:>9} {:>9} {:>9} {:>11}",
        "mode", "ops/s", "p50 us", "p99 us", "p999 us", "forwards"
    );
    for (label, client) in [
        ("forwarded", forwarded.clone()),
        ("routed", routed.clone()),
        ("forwarded", forwarded),
        ("routed", routed),
    ] {
        let fw = |ns: &[shoal::Node]| -> u64 {
            ns.iter()
                .map(|n| {
                    n.core()
                        .router()
                        .map_or(0, |r| r.stats.forwarded.load(Ordering::Relaxed))
                })
                .sum()
        };
        let fw0 = fw(&nodes);
        let (ops, mut lat) = run(
            client,
            tasks,
            Duration::from_secs(secs),
            keys,
            value.clone(),
        )
        .await;
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "{:<10} {:>10.0} {:>9} {:>9} {:>9} {:>11}",
            label,
            ops as f64 / secs as f64,
            pct(0.50),
            pct(0.99),
            pct(0.999),
            fw(&nodes) - fw0
        );
    }
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

/// Run the load; total ops and every latency in microseconds.
async fn run(
    client: Client,
    tasks: usize,
    dur: Duration,
    keys: u64,
    value: Vec<u8>,
) -> (u64, Vec<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let client = client.clone();
        let stop = stop.clone();
        let value = value.clone();
        set.spawn(async move {
            let mut lat = Vec::new();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = format!("k{}", x % keys);
                let start = Instant::now();
                let ok = if x % 10 == 0 {
                    client.set(&key, &value, None).await.is_ok()
                } else {
                    client.get(&key).await.is_ok()
                };
                if ok {
                    lat.push(start.elapsed().as_micros() as u64);
                }
            }
            lat
        });
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    while let Some(Ok(l)) = set.join_next().await {
        all.extend(l);
    }
    (all.len() as u64, all)
}
