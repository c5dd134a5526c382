//! Datagram loss: SWIM must not flap under moderate loss, and the
//! push-pull sync must repair what a lost broadcast missed. The in-memory
//! network drops datagrams with a seeded RNG; time is virtual.
//!
//! False Down events are counted from generations: a live node declared
//! down renews its identity (generation + 1) to rejoin, so the sum of
//! generation bumps is the number of false Down declarations.

mod membership_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use membership_support::*;
use shoal::transport::mem::MemNetwork;

/// Run `n` nodes under `loss` for `minutes` of virtual time; returns the
/// number of false Down declarations.
async fn false_downs_under_loss(n: u8, loss: f64, minutes: u64) -> u64 {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, n);
    let names = names(&nodes);
    wait_until("cluster formed", Duration::from_secs(30), || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    let before: Vec<u64> = nodes.iter().map(|n| n.generation().0).collect();
    net.set_loss(loss, 42);
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    net.set_loss(0.0, 0);
    // Whatever happened, the cluster converges once the loss stops.
    wait_until(
        "all alive after loss stops",
        Duration::from_secs(120),
        || all_see_alive(&refs(&nodes), &names),
    )
    .await;
    let bumps: u64 = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| n.generation().0 - b)
        .sum();
    let suspicions: u64 = nodes
        .iter()
        .map(|n| n.handle.stats().suspected.load(Ordering::Relaxed))
        .sum();
    let suppressed: u64 = nodes
        .iter()
        .map(|n| {
            n.handle
                .stats()
                .turn_undead_suppressed
                .load(Ordering::Relaxed)
        })
        .sum();
    let node_hours = f64::from(n) * minutes as f64 / 60.0;
    eprintln!(
        "N={n}, loss {:.0}%, {minutes} min (virtual): {bumps} false Down events ({:.2} per \
         node-hour), {suspicions} suspicions, {suppressed} spurious TurnUndead suppressed",
        loss * 100.0,
        bumps as f64 / node_hours
    );
    bumps
}

#[tokio::test(start_paused = true)]
async fn three_nodes_under_five_percent_loss_rarely_declare_a_live_node_down() {
    let downs = false_downs_under_loss(3, 0.05, 30).await;
    // 1.5 node-hours. Before the TurnUndead workaround: ~75.
    assert!(downs <= 10, "{downs} false Down events in 1.5 node-hours");
}

#[tokio::test(start_paused = true)]
async fn five_nodes_under_five_percent_loss_rarely_declare_a_live_node_down() {
    let downs = false_downs_under_loss(5, 0.05, 30).await;
    // 2.5 node-hours; DESIGN.md §3 measured <= 0.34 per node-hour at N >= 5.
    assert!(downs <= 5, "{downs} false Down events in 2.5 node-hours");
}

#[tokio::test(start_paused = true)]
async fn push_pull_sync_repairs_a_missed_metadata_broadcast() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes: Vec<TestNode> = (1..=4)
        .map(|i| {
            let mut spec = NodeSpec::new(i, &[1]);
            spec.tweak = Some(|c| {
                c.suspicion_multiplier = 100.0;
                c.push_pull_interval = Duration::from_secs(5);
            });
            start(&net, spec)
        })
        .collect();
    let names = names(&nodes);
    wait_until("cluster formed", Duration::from_secs(30), || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    wait_until("metadata known", Duration::from_secs(30), || {
        nodes
            .iter()
            .all(|n| n.view().get("n1").is_some_and(|m| m.meta.is_some()))
    })
    .await;
    // n4 hears nothing while n1's update is gossiped to exhaustion.
    net.isolate("n4");
    nodes[0]
        .handle
        .update_meta(|m| m.ready = true)
        .await
        .expect("update");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let n1_ready_at = |n: &TestNode| {
        n.view()
            .get("n1")
            .and_then(|m| m.meta.as_ref())
            .is_some_and(|m| m.ready)
    };
    assert!(!n1_ready_at(&nodes[3]), "isolated node cannot know yet");
    net.rejoin("n4");
    let took = wait_until("n4 learns n1 is ready", Duration::from_secs(60), || {
        n1_ready_at(&nodes[3])
    })
    .await;
    eprintln!("missed broadcast repaired {took:?} after the network healed (virtual)");
}
