//! Joining: nodes find each other through seeds and learn each other's
//! metadata. Deterministic: in-memory network, paused tokio time.

mod membership_support;

use std::time::Duration;

use membership_support::*;
use shoal::membership::MemberState;
use shoal::transport::mem::MemNetwork;

const LIMIT: Duration = Duration::from_secs(30);

async fn n_nodes_join_through_one_seed(n: u8) {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, n);
    let names = names(&nodes);
    let took = wait_until("every node sees every node alive", LIMIT, || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    eprintln!("{n} nodes: all alive everywhere after {took:?} (virtual)");
    wait_until("every node knows every node's metadata", LIMIT, || {
        nodes.iter().all(|n| {
            let v = n.view();
            nodes.iter().all(|m| {
                v.get(&m.name)
                    .and_then(|i| i.meta.as_ref())
                    .is_some_and(|meta| meta.resp_addr == resp_addr_of(m.addr))
            })
        })
    })
    .await;
    for node in &nodes {
        assert_eq!(node.view().members.len(), usize::from(n), "{}", node.name);
    }
}

#[tokio::test(start_paused = true)]
async fn three_nodes_join_through_one_seed_and_see_each_other_alive() {
    n_nodes_join_through_one_seed(3).await;
}

#[tokio::test(start_paused = true)]
async fn five_nodes_join_through_one_seed_and_see_each_other_alive() {
    n_nodes_join_through_one_seed(5).await;
}

#[tokio::test(start_paused = true)]
async fn two_nodes_started_at_once_as_each_others_seed_form_one_cluster() {
    init_tracing();
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[2]));
    let b = start(&net, NodeSpec::new(2, &[1]));
    wait_until("a and b see each other", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn seed_that_starts_late_is_found_by_re_announcing() {
    init_tracing();
    let net = MemNetwork::new();
    let b = start(&net, NodeSpec::new(2, &[1]));
    // Nobody at the seed's address for a while: b keeps re-announcing.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        b.handle
            .stats()
            .announces
            .load(std::sync::atomic::Ordering::Relaxed)
            > 3
    );
    let a = start(&net, NodeSpec::new(1, &[]));
    wait_until("a and b see each other", LIMIT, || {
        all_see_alive(&[&a, &b], &["n1", "n2"])
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn seed_given_by_dns_name_is_resolved() {
    init_tracing();
    let net = MemNetwork::new();
    // "localhost" resolves to loopback; the in-memory seed lives there.
    let mut seed = NodeSpec::new(1, &[]);
    seed.addr = "127.0.0.1:7000".parse().expect("addr");
    let seed = start(&net, seed);
    let mut joiner = NodeSpec::new(2, &[]);
    joiner.seeds = vec!["localhost:7000".into()];
    let joiner = start(&net, joiner);
    wait_until("joiner and seed see each other", LIMIT, || {
        all_see_alive(&[&seed, &joiner], &["n1", "n2"])
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn metadata_update_reaches_every_member() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 4);
    let names = names(&nodes);
    wait_until("cluster formed", LIMIT, || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    wait_until("everyone knows n3 is not ready", LIMIT, || {
        nodes.iter().all(|n| {
            n.view()
                .get("n3")
                .and_then(|m| m.meta.as_ref())
                .is_some_and(|m| !m.ready)
        })
    })
    .await;
    nodes[2]
        .handle
        .update_meta(|m| m.ready = true)
        .await
        .expect("update accepted");
    let took = wait_until("everyone sees n3 ready", LIMIT, || {
        nodes.iter().all(|n| {
            n.view()
                .get("n3")
                .and_then(|m| m.meta.as_ref())
                .is_some_and(|m| m.ready)
        })
    })
    .await;
    eprintln!("readiness of n3 known everywhere after {took:?} (virtual)");
    assert!(nodes.iter().all(|n| n.view().is("n3", MemberState::Alive)));
}

#[tokio::test(start_paused = true)]
async fn cluster_name_in_metadata_cannot_change() {
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    let r = a
        .handle
        .update_meta(|m| m.cluster = shoal::membership::ClusterId::new("elsewhere"))
        .await;
    assert!(matches!(
        r,
        Err(shoal::membership::MembershipError::MetaImmutable)
    ));
}

#[tokio::test(start_paused = true)]
async fn twenty_five_nodes_converge_with_metadata() {
    init_tracing();
    let net = MemNetwork::new();
    let nodes = start_cluster(&net, 25);
    let names = names(&nodes);
    let took = wait_until("every node sees every node alive", LIMIT, || {
        all_see_alive(&refs(&nodes), &names)
    })
    .await;
    let with_meta = wait_until("every node knows every node's metadata", LIMIT, || {
        nodes
            .iter()
            .all(|n| n.view().members.iter().all(|m| m.meta.is_some()))
    })
    .await;
    eprintln!(
        "25 nodes: all alive everywhere after {took:?}, metadata after {with_meta:?} (virtual)"
    );
}

#[tokio::test(start_paused = true)]
async fn handle_reports_a_stopped_task() {
    let net = MemNetwork::new();
    let a = start(&net, NodeSpec::new(1, &[]));
    a.shutdown.trigger();
    a.handle.stopped().await;
    let r = a.handle.update_meta(|m| m.ready = true).await;
    assert!(matches!(
        r,
        Err(shoal::membership::MembershipError::Stopped)
    ));
    assert!(matches!(
        a.handle.leave().await,
        Err(shoal::membership::MembershipError::Stopped)
    ));
    // The final view shows us down.
    assert!(a.view().is("n1", MemberState::Down));
}
