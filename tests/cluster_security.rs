//! Refused joins at cluster level: a two-node cluster of real nodes over
//! QUIC + mTLS on loopback, and an intruder knocking on node-1's gossip
//! address. Each test checks that the intruder is refused, that the refusal
//! is counted on the cluster side (transport handshake failures by reason,
//! or membership rejections), and that the cluster is unchanged: both rings
//! still hold node-1 and node-2 with the same digest, and the intruder's
//! name appears in no view. The views are checked only after the cluster
//! has counted several refused attempts, so the intruder had its chances.
//!
//! A positive control shows the same harness does see a legitimate join.

mod cluster_security_support;

use cluster_security_support::*;
use shoal::node::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legitimate_third_node_joins_and_nothing_is_counted_as_refused() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (mut nodes, digest) = start_pair(&pki).await;
    let seed = nodes[0].gossip_addr();
    pki.issue("node-3");
    let joiner = Node::start(node_config(pki.path(), "node-3", seed))
        .await
        .expect("node-3 starts");
    nodes.push(joiner);

    let grown = converge(&nodes, 3).await;
    assert_ne!(grown, digest, "a new member changes the ring");
    // The check the refusal tests rely on does see a join.
    let changes = cluster_changes(&nodes[..2], digest, &["node-3"]);
    assert!(
        changes.iter().any(|c| c.contains("let node-3 into")),
        "{changes:?}"
    );
    for node in &nodes {
        let s = state(node);
        assert!(s.view.get("node-3").is_some(), "node-3 missing from a view");
        let t = transport_stats(node);
        let refused = t.handshake_no_cert
            + t.handshake_unknown_ca
            + t.handshake_bad_name
            + t.handshake_bad_alpn;
        assert_eq!(refused, 0, "legitimate traffic refused: {t:?}");
        let m = membership_stats(node);
        assert_eq!(read(&m.rejected_sender) + read(&m.rejected_cluster), 0);
    }
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_certificate_from_another_ca_is_refused_at_the_handshake() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let before = transport_stats(&nodes[0]).handshake_unknown_ca;

    // A complete node with its own CA, pointed at node-1.
    let rogue_pki = Pki::new("rogue");
    rogue_pki.issue("rogue");
    let rogue = Node::start(node_config(
        rogue_pki.path(),
        "rogue",
        nodes[0].gossip_addr(),
    ))
    .await
    .expect("rogue starts");

    wait_transport_refusals(&nodes[0], "unknown-CA refusals at node-1", before, |s| {
        s.handshake_unknown_ca
    })
    .await;
    assert_eq!(
        state(&rogue).ring.members().len(),
        1,
        "the rogue stays alone"
    );
    assert_cluster_unchanged(&nodes, digest, &["rogue"]);
    stop(vec![rogue]).await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_a_foreign_certificate_is_refused_even_when_it_trusts_the_cluster_ca() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let before = transport_stats(&nodes[0]).handshake_unknown_ca;

    // Its certificate is foreign, but it trusts the (public) cluster CA
    // too, so it accepts node-1 and only node-1's check can stop it.
    let rogue_pki = Pki::new("rogue");
    rogue_pki.issue("rogue");
    let both = rogue_pki.path().join("trust.crt");
    let pems = [
        std::fs::read_to_string(rogue_pki.ca_cert()).expect("rogue CA"),
        std::fs::read_to_string(pki.ca_cert()).expect("cluster CA"),
    ];
    std::fs::write(&both, pems.concat()).expect("write trust file");
    let mut cfg = node_config(rogue_pki.path(), "rogue", nodes[0].gossip_addr());
    cfg.ca_cert = Some(both);
    let rogue = Node::start(cfg).await.expect("rogue starts");

    wait_transport_refusals(&nodes[0], "unknown-CA refusals at node-1", before, |s| {
        s.handshake_unknown_ca
    })
    .await;
    assert_eq!(
        state(&rogue).ring.members().len(),
        1,
        "the rogue stays alone"
    );
    assert_cluster_unchanged(&nodes, digest, &["rogue"]);
    stop(vec![rogue]).await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_without_a_client_certificate_is_refused_at_the_handshake() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let to = nodes[0].gossip_addr().expect("gossip address");
    let before = transport_stats(&nodes[0]).handshake_no_cert;

    // Trusts the cluster CA, speaks shoal/1, presents no certificate.
    let mut crypto = rustls_client(&pki.tls("probe")).with_no_client_auth();
    crypto.alpn_protocols = vec![shoal::transport::quic::ALPN.to_vec()];
    let (ep, cfg) = raw_client(crypto);
    for _ in 0..ATTEMPTS {
        raw_attempt_is_refused(&ep, cfg.clone(), to, "node-1").await;
    }

    wait_transport_refusals(
        &nodes[0],
        "no-certificate refusals at node-1",
        before,
        |s| s.handshake_no_cert,
    )
    .await;
    assert_cluster_unchanged(&nodes, digest, &["probe"]);
    ep.close(0u32.into(), b"done");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_whose_certificate_names_another_node_than_it_claims_is_refused() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let seed = nodes[0].gossip_addr().expect("gossip address");
    let before = read(&membership_stats(&nodes[0]).rejected_sender);

    // A valid cluster certificate for node-y, gossiping as node-x.
    let impostor = Impostor::start(pki.tls("node-y"), "node-x", "shoal", seed);

    wait_membership_refusals(&nodes[0], "sender refusals at node-1", before, |m| {
        read(&m.rejected_sender)
    })
    .await;
    assert_eq!(
        impostor.handle.view().members.len(),
        1,
        "the impostor stays alone"
    );
    assert_cluster_unchanged(&nodes, digest, &["node-x", "node-y"]);
    impostor.stop().await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_claiming_a_members_name_with_its_own_certificate_is_refused() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let seed = nodes[0].gossip_addr().expect("gossip address");
    let real = state(&nodes[0])
        .view
        .get("node-2")
        .expect("node-2 in node-1's view")
        .identity
        .clone();
    let before = read(&membership_stats(&nodes[0]).rejected_sender);

    // A valid cluster certificate for node-y, gossiping as node-2.
    let impostor = Impostor::start(pki.tls("node-y"), "node-2", "shoal", seed);

    wait_membership_refusals(&nodes[0], "sender refusals at node-1", before, |m| {
        read(&m.rejected_sender)
    })
    .await;
    assert_cluster_unchanged(&nodes, digest, &["node-y"]);
    let now = state(&nodes[0]);
    let seen = now.view.get("node-2").expect("node-2 still a member");
    assert_eq!(seen.identity, real, "node-2's identity was overwritten");
    impostor.stop().await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_of_another_cluster_name_is_refused_by_membership() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let before = read(&membership_stats(&nodes[0]).rejected_cluster);

    // Valid certificate from the cluster CA, but cluster "other".
    pki.issue("stranger");
    let mut cfg = node_config(pki.path(), "stranger", nodes[0].gossip_addr());
    cfg.cluster = "other".into();
    let stranger = Node::start(cfg).await.expect("stranger starts");

    wait_membership_refusals(&nodes[0], "cluster refusals at node-1", before, |m| {
        read(&m.rejected_cluster)
    })
    .await;
    assert_eq!(
        state(&stranger).ring.members().len(),
        1,
        "the stranger stays alone"
    );
    assert_cluster_unchanged(&nodes, digest, &["stranger"]);
    stop(vec![stranger]).await;
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_speaking_the_wrong_alpn_is_refused_at_the_handshake() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let to = nodes[0].gossip_addr().expect("gossip address");
    let before = transport_stats(&nodes[0]).handshake_bad_alpn;

    // A valid cluster certificate, but another application protocol.
    let me = pki.tls("node-w");
    let mut crypto = rustls_client(&me)
        .with_client_auth_cert(me.chain.clone(), me.key.clone_key())
        .expect("client auth");
    crypto.alpn_protocols = vec![b"shoal/2".to_vec()];
    let (ep, cfg) = raw_client(crypto);
    for _ in 0..ATTEMPTS {
        raw_attempt_is_refused(&ep, cfg.clone(), to, "node-1").await;
    }

    wait_transport_refusals(&nodes[0], "ALPN refusals at node-1", before, |s| {
        s.handshake_bad_alpn
    })
    .await;
    assert_cluster_unchanged(&nodes, digest, &["node-w"]);
    ep.close(0u32.into(), b"done");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_claiming_a_members_gossip_address_is_refused() {
    init_tracing();
    let pki = Pki::new("shoal");
    let (nodes, digest) = start_pair(&pki).await;
    let seed = nodes[0].gossip_addr().expect("gossip address");
    let node2_addr = nodes[1].gossip_addr().expect("gossip address");
    let before = read(&membership_stats(&nodes[0]).rejected_sender);

    // A valid cluster certificate for node-y, under its own name, but
    // announcing node-2's gossip address: were it admitted, it would take
    // node-2's place in node-1's view (members are keyed by address).
    let impostor =
        Impostor::start_claiming(pki.tls("node-y"), "node-y", "shoal", seed, Some(node2_addr));

    wait_membership_refusals(&nodes[0], "sender refusals at node-1", before, |m| {
        read(&m.rejected_sender)
    })
    .await;
    assert_cluster_unchanged(&nodes, digest, &["node-y"]);
    impostor.stop().await;
    stop(nodes).await;
}
