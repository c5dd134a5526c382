//! One hot key read by every task through the two non-owner peers of a
//! 3-peer cluster, with and without the near cache: throughput, the
//! owner's peer requests served (the load one hot key pins on its owner),
//! and the process's CPU time per read. Then: how long after a write the
//! readers' near copies are invalidated by the owner, what the owner's
//! primary-side sketch (`SHOAL HOTKEYS`) reports, and what the sketch costs
//! per request on the request path.
//!
//! ```text
//! cargo run --release --example hotkey_bench -- [tasks] [seconds]
//! ```
//! Defaults: 32 tasks, 5 s per mode. The peers run in this process (QUIC +
//! mTLS on loopback), so CPU is the whole process's (utime + stime from
//! /proc/self/stat): the owner's share is the `served` column.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal::api::DEFAULT_NEAR_TTL;
use shoal::hotkeys::HotTracker;
use shoal::{Node, NodeBuilder};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// CPU seconds used by this process so far (Linux), if readable.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let tasks = arg(1, 32) as usize;
    let secs = arg(2, 5);

    let certs = tempfile::tempdir()?;
    shoal::certs::init_ca(certs.path(), "shoal", false)?;
    let mut peers: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("hot-{i}");
        shoal::certs::issue_node(certs.path(), &name, &[LOCAL], &[], 1)?;
        let mut b = NodeBuilder::new()
            .name(&name)
            .gossip(SocketAddr::new(LOCAL, 0))
            .certs(certs.path());
        if let Some(seed) = peers.first().and_then(|p| p.core().gossip_addr()) {
            b = b.seed(seed.to_string());
        }
        peers.push(b.start().await?);
    }
    for p in &peers {
        let mut st = p.subscribe_membership().expect("cluster mode");
        tokio::time::timeout(
            Duration::from_secs(30),
            st.wait_for(|s| s.ring.members().len() == 3),
        )
        .await??;
        p.ready().await;
    }
    let products = peers[0].cache::<String, String>("products")?;
    let key = "sku-hot".to_string();
    products.set(&key, &"blue mug".to_string()).await?;
    let full = products.key(&key)?;
    let state = peers[0].core().cluster_state().expect("cluster mode");
    let owner_name = state
        .ring
        .primary(shoal::store::partition_of(&full, state.ring.partitions()))
        .cloned()
        .expect("a primary");
    let owner = peers
        .iter()
        .position(|p| p.core().name() == Some(&owner_name))
        .expect("owner is a peer");
    let readers: Vec<Node> = peers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != owner)
        .map(|(_, p)| p.clone())
        .collect();
    println!(
        "3 peers in-process; key owned by {owner_name}; {tasks} tasks reading through the 2 others; {secs} s per mode"
    );
    println!(
        "{:<12} {:>10} {:>14} {:>14} {:>10}",
        "mode", "reads/s", "owner served", "CPU us/read", "near hits"
    );
    let served = |p: &Node| {
        p.core()
            .router()
            .map_or(0, |r| r.stats.served.load(Ordering::Relaxed))
    };
    for near in [false, true, false, true] {
        let caches: Vec<_> = readers
            .iter()
            .map(|r| {
                let c = r.cache::<String, String>("products").expect("name");
                if near {
                    c.with_near_cache(1024, DEFAULT_NEAR_TTL)
                } else {
                    c
                }
            })
            .collect();
        let served0 = served(&peers[owner]);
        let cpu0 = cpu_secs();
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = tokio::task::JoinSet::new();
        for t in 0..tasks {
            let cache = caches[t % caches.len()].clone();
            let stop = stop.clone();
            let key = key.clone();
            set.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if cache.get(&key).await.is_ok() {
                        n += 1;
                    }
                    // Yield so near-cache hits do not starve the timer.
                    tokio::task::yield_now().await;
                }
                n
            });
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let mut reads = 0u64;
        while let Some(Ok(n)) = set.join_next().await {
            reads += n;
        }
        let cpu = match (cpu0, cpu_secs()) {
            (Some(a), Some(b)) => format!("{:.1}", (b - a) * 1e6 / reads.max(1) as f64),
            _ => "-".into(),
        };
        let hits: u64 = caches
            .iter()
            .filter_map(|c| c.near_stats())
            .map(|s| s.hits)
            .sum();
        println!(
            "{:<12} {:>10.0} {:>14} {:>14} {:>10}",
            if near { "near cache" } else { "no near" },
            reads as f64 / secs as f64,
            served(&peers[owner]) - served0,
            cpu,
            hits
        );
    }

    // Invalidation: the owner watches the readers' copies; a write through
    // the owner drops them long before their TTL.
    let caches: Vec<_> = readers
        .iter()
        .map(|r| {
            r.cache::<String, String>("products")
                .expect("name")
                .with_near_cache(1024, Duration::from_secs(30))
        })
        .collect();
    for c in &caches {
        c.get(&key).await?;
    }
    let owner_cache = peers[owner].cache::<String, String>("products")?;
    let mut delays = Vec::new();
    for round in 0..20 {
        let before: u64 = caches
            .iter()
            .filter_map(|c| c.near_stats())
            .map(|s| s.invalidations)
            .sum();
        let t0 = Instant::now();
        owner_cache.set(&key, &format!("mug v{round}")).await?;
        loop {
            let now: u64 = caches
                .iter()
                .filter_map(|c| c.near_stats())
                .map(|s| s.invalidations)
                .sum();
            if now >= before + caches.len() as u64 || t0.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(t0.elapsed().as_secs_f64() * 1e3);
        for c in &caches {
            c.get(&key).await?;
        }
    }
    delays.sort_by(f64::total_cmp);
    println!(
        "invalidation of {} near copies (30 s TTL) after a write: p50 {:.1} ms, max {:.1} ms over 20 writes",
        caches.len(),
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );

    // The owner's primary-side sketch (what SHOAL HOTKEYS answers).
    println!(
        "owner's SHOAL HOTKEYS (sampled 1/{}):",
        shoal::hotkeys::SAMPLE_EVERY
    );
    for k in peers[owner].core().hot().top(3) {
        println!("  {:<40} ~{:.0}/s", String::from_utf8_lossy(&k.key), k.rate);
    }

    // The sketch's cost on the request path: one hot key among 100 000
    // cold ones, 3/4 of the requests to the hot one.
    let tracker = HotTracker::for_node();
    let (_, get) = shoal::resp::commands::lookup(b"get").expect("GET");
    let keys: Vec<[bytes::Bytes; 2]> = (0..100_000u64)
        .map(|i| {
            [
                bytes::Bytes::from("GET"),
                bytes::Bytes::from(format!("cold-{i}")),
            ]
        })
        .collect();
    let hot = [
        bytes::Bytes::from("GET"),
        bytes::Bytes::from("products:sku-hot"),
    ];
    let t0 = Instant::now();
    for i in 0..4_000_000usize {
        if i % 4 == 0 {
            tracker.observe_local(get, &keys[(i / 4) % keys.len()]);
        } else {
            tracker.observe_local(get, &hot);
        }
    }
    let per = t0.elapsed().as_nanos() as f64 / 4e6;
    println!(
        "sketch: {per:.1} ns per request (sampled 1/{}); top:",
        shoal::hotkeys::SAMPLE_EVERY
    );
    for k in tracker.top(3) {
        println!(
            "  {:<24} rate~{:.0}",
            String::from_utf8_lossy(&k.key),
            k.rate
        );
    }
    for p in peers {
        p.shutdown().await;
    }
    Ok(())
}
