//! Failures: crashes, cut links, graceful leave, restarts. Deterministic:
//! in-memory network, paused tokio time; virtual durations are printed.

mod membership_support;

use std::time::Duration;

use membership_support::*;
use shoal::membership::{Generation, MemberState};
use shoal::transport::mem::MemNetwork;

const LIMIT: Duration = Duration::from_secs(60);

async fn formed(nodes: &[TestNode]) {
    let names = names(nodes);
    wait_until("cluster formed", LIMIT, || {
        all_see_alive(&refs(nodes), &names)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn node_that_stops_answering_is_declared_down_by_all_others() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 5);
    formed(&nodes).await;
    let (victim, others) = nodes.split_last().expect("nodes");
    net.isolate(&victim.name);
    let took = wait_until("all others see the victim down", LIMIT, || {
        all_see(&refs(others), &victim.name, MemberState::Down)
    })
    .await;
    eprintln!("isolated node declared down by all 4 others after {took:?} (virtual)");
    // Nobody else was hurt.
    let rest: Vec<&str> = others.iter().map(|n| n.name.as_str()).collect();
    assert!(all_see_alive(&refs(others), &rest));
}

#[tokio::test(start_paused = true)]
async fn crashed_node_is_declared_down_by_all_others() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 3);
    formed(&nodes).await;
    nodes[1].crash().await;
    let others = [&nodes[0], &nodes[2]];
    let took = wait_until("all others see n2 down", LIMIT, || {
        all_see(&others, "n2", MemberState::Down)
    })
    .await;
    eprintln!("crashed node declared down by both others after {took:?} (virtual)");
}

#[tokio::test(start_paused = true)]
async fn cut_link_makes_neither_end_down_and_heals() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 3);
    formed(&nodes).await;
    let generations: Vec<Generation> = nodes.iter().map(|n| n.generation()).collect();
    net.cut("n1", "n2");
    // Run long enough for many probe rounds and several suspicion timeouts.
    tokio::time::sleep(Duration::from_secs(60)).await;
    for n in &nodes {
        let v = n.view();
        for (m, generation) in nodes.iter().zip(&generations) {
            let info = v.get(&m.name).expect("member known");
            assert_ne!(
                info.state,
                MemberState::Down,
                "{} sees {} down",
                n.name,
                m.name
            );
            assert_eq!(
                info.identity.generation, *generation,
                "{} was renewed",
                m.name
            );
        }
    }
    net.heal("n1", "n2");
    let names = names(&nodes);
    wait_until("all alive after heal", LIMIT, || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn graceful_leave_is_seen_at_once_not_after_suspicion() {
    init_tracing();
    let net = MemNetwork::new();
    // Suspicion of 100 probe periods: a leave that fell back on suspicion
    // would take well over the wait limit below.
    let nodes: Vec<TestNode> = (1..=5)
        .map(|i| {
            let mut spec = NodeSpec::new(i, &[1]);
            spec.tweak = Some(|c| c.suspicion_multiplier = 100.0);
            start(&net, spec)
        })
        .collect();
    formed(&nodes).await;
    let (leaver, others) = nodes.split_last().expect("nodes");
    let handle = leaver.handle.clone();
    let leaving = tokio::spawn(async move { handle.leave().await });
    let took = wait_until(
        "all others see the leaver down",
        Duration::from_secs(10),
        || all_see(&refs(others), &leaver.name, MemberState::Down),
    )
    .await;
    eprintln!("leave seen by all 4 others {took:?} after leave() was called (virtual)");
    leaving.await.expect("leave task").expect("leave");
    assert!(leaver.view().is(&leaver.name, MemberState::Down));
}

#[tokio::test(start_paused = true)]
async fn restart_with_same_name_replaces_the_old_incarnation() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 3);
    formed(&nodes).await;
    let old = nodes[2].generation();
    // Restart quickly: the others still think the old one is alive.
    nodes[2].crash().await;
    let mut spec = NodeSpec::new(3, &[1]);
    spec.generation = Some(Generation(old.0 + 1));
    let new = start(&net, spec);
    let others = [&nodes[0], &nodes[1]];
    let took = wait_until("others see the new generation alive", LIMIT, || {
        others.iter().all(|n| {
            n.view().get("n3").is_some_and(|m| {
                m.identity.generation.0 == old.0 + 1 && m.state == MemberState::Alive
            })
        })
    })
    .await;
    eprintln!("restarted node replaced its old incarnation after {took:?} (virtual)");
    for n in others {
        let v = n.view();
        let entries: Vec<_> = v
            .members
            .iter()
            .filter(|m| m.identity.name.as_str() == "n3")
            .collect();
        assert_eq!(entries.len(), 1, "one entry for n3 in {}'s view", n.name);
    }
    wait_until("restarted node sees the others", LIMIT, || {
        all_see_alive(&[&new], &["n1", "n2", "n3"])
    })
    .await;
    // Metadata of the new generation arrives too.
    wait_until("others know the new generation's metadata", LIMIT, || {
        others
            .iter()
            .all(|n| n.view().get("n3").is_some_and(|m| m.meta.is_some()))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn restart_after_being_declared_down_rejoins() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 3);
    formed(&nodes).await;
    nodes[2].crash().await;
    let others = [&nodes[0], &nodes[1]];
    wait_until("n3 down", LIMIT, || {
        all_see(&others, "n3", MemberState::Down)
    })
    .await;
    let new = start(&net, NodeSpec::new(3, &[1]));
    let names = ["n1", "n2", "n3"];
    wait_until("all alive again", LIMIT, || {
        all_see_alive(&[&nodes[0], &nodes[1], &new], &names)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn isolated_node_that_comes_back_rejoins_with_a_new_generation() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 3);
    formed(&nodes).await;
    let old = nodes[2].generation();
    net.isolate("n3");
    wait_until("n3 down", LIMIT, || {
        all_see(&[&nodes[0], &nodes[1]], "n3", MemberState::Down)
    })
    .await;
    net.rejoin("n3");
    let names = names(&nodes);
    let took = wait_until("all alive again", Duration::from_secs(300), || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    eprintln!("isolated node back in every view {took:?} after the network healed (virtual)");
    assert!(nodes[2].generation() > old);
    // The renewed identity republished its metadata under the new
    // generation.
    wait_until("others know the renewed node's metadata", LIMIT, || {
        [&nodes[0], &nodes[1]]
            .iter()
            .all(|n| n.view().get("n3").is_some_and(|m| m.meta.is_some()))
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn clusters_formed_apart_merge_once_the_seed_is_reachable() {
    init_tracing();
    let net = MemNetwork::new();
    // n2's seed n1 is unreachable at boot; n3 joins n2 instead.
    net.cut("n1", "n2");
    let n1 = start(&net, NodeSpec::new(1, &[]));
    let n2 = start(&net, NodeSpec::new(2, &[1]));
    let n3 = start(&net, NodeSpec::new(3, &[2]));
    wait_until("n2 and n3 formed", LIMIT, || {
        all_see_alive(&[&n2, &n3], &["n2", "n3"])
    })
    .await;
    assert_eq!(n1.view().members.len(), 1);
    net.heal("n1", "n2");
    let took = wait_until("one cluster of three", Duration::from_secs(180), || {
        all_see_alive(&[&n1, &n2, &n3], &["n1", "n2", "n3"])
    })
    .await;
    eprintln!("split clusters merged {took:?} after the seed became reachable (virtual)");
}

#[tokio::test(start_paused = true)]
async fn every_death_in_a_25_node_cluster_reaches_every_survivor() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 25);
    formed(&nodes).await;
    let mut times = Vec::new();
    // Crash five nodes one after another (not the seed).
    for victim in (20..25).rev() {
        nodes[victim].crash().await;
        let survivors: Vec<&TestNode> = nodes[..victim].iter().collect();
        let name = nodes[victim].name.clone();
        let took = wait_until("every survivor sees the death", LIMIT, || {
            all_see(&survivors, &name, MemberState::Down)
        })
        .await;
        times.push(took);
    }
    eprintln!(
        "25 nodes, 5 successive crashes: last survivor learned each death after {times:?} (virtual)"
    );
}
