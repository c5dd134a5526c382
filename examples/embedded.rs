//! Three embedded Shoal peers in one process forming a cluster over QUIC +
//! mutual TLS on loopback: write through one peer, read through another,
//! and one read-through load shared by concurrent misses on every peer.
//!
//! ```text
//! cargo run --example embedded
//! ```
//! Certificates come from a throw-away CA in a temporary directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal::{Node, NodeBuilder};

/// A product, stored typed (postcard) in the `products` cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    /// Display name.
    name: String,
    /// Price in cents.
    price: u32,
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    shoal::certs::init_ca(certs.path(), "shoal", false)?;
    let mut peers: Vec<Node> = Vec::new();
    for i in 1..=3 {
        let name = format!("peer-{i}");
        shoal::certs::issue_node(certs.path(), &name, &[LOCAL], &[], 1)?;
        let mut b = NodeBuilder::new()
            .name(&name)
            .gossip(SocketAddr::new(LOCAL, 0))
            .certs(certs.path());
        if let Some(seed) = peers.first().and_then(|p| p.core().gossip_addr()) {
            b = b.seed(seed.to_string());
        }
        let peer = b.start().await?;
        println!(
            "started {name}: gossip {:?}, RESP {}",
            peer.core().gossip_addr(),
            peer.core().resp_addr()
        );
        peers.push(peer);
    }
    let mut state = peers[2].subscribe_membership().expect("cluster mode");
    tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| s.ring.members().len() == 3),
    )
    .await??;
    for p in &peers {
        p.ready().await;
    }
    println!("\nmembers seen by peer-3:");
    for m in peers[2].members() {
        println!(
            "  {} {} primary of {} partitions",
            m.name, m.state, m.primary
        );
    }

    println!("\n-- bytes: write through peer-1, read through peer-2");
    for k in 0..5 {
        peers[0]
            .set(format!("greeting:{k}"), format!("hello {k}"), None)
            .await?;
    }
    for k in 0..5 {
        let v = peers[1].get(format!("greeting:{k}")).await?;
        println!(
            "  peer-2 GET greeting:{k} -> {:?}",
            v.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    }

    println!("\n-- typed cache: set on peer-2, read on peer-3");
    let products = peers[1].cache::<String, Product>("products")?;
    let mug = Product {
        name: "blue mug".into(),
        price: 1299,
    };
    products.set(&"sku-1".to_string(), &mug).await?;
    let on3 = peers[2].cache::<String, Product>("products")?;
    println!(
        "  peer-3 get sku-1 -> {:?}",
        on3.get(&"sku-1".to_string()).await?
    );
    println!(
        "  (RESP clients read it as GET {})",
        String::from_utf8_lossy(&products.key(&"sku-1".to_string())?)
    );

    println!("\n-- read-through: 30 concurrent misses for sku-2 spread over 3 peers");
    let loads = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for i in 0..30 {
        let cache = peers[i % 3].cache::<String, Product>("products")?;
        let loads = loads.clone();
        calls.push(tokio::spawn(async move {
            cache
                .get_or_load(&"sku-2".to_string(), move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await; // "the database"
                    Ok::<_, String>(Some(Product {
                        name: "red teapot".into(),
                        price: 3450,
                    }))
                })
                .await
        }));
    }
    let mut ok = 0;
    for c in calls {
        if c.await?.is_ok() {
            ok += 1;
        }
    }
    println!(
        "  {ok}/30 callers got the value; the loader ran {} time(s)",
        loads.load(Ordering::SeqCst)
    );

    for p in peers {
        p.shutdown().await;
    }
    println!("\nall peers left the cluster");
    Ok(())
}
