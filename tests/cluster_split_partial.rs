//! A multi-key command split over owners, one of which cannot be reached
//! (in-memory network, R = 1, so nothing fails over): when some parts ran
//! and another did not, a command that is not harmless to run again whole
//! (DEL) answers `-TRYAGAIN outcome unknown ...` rather than a plain
//! `-TRYAGAIN` that invites a retry; MSET and MGET keep the plain one.
//! And at R = 1, a single command whose answer was lost.

mod replication_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use replication_support::*;
use shoal::node::Node;
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;

const LIMIT: Duration = Duration::from_secs(120);

/// A key (with `prefix`) whose primary is node `owner`.
fn key_on(via: &Node, prefix: &str, owner: usize) -> String {
    let st = via.cluster_state().expect("cluster mode");
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| st.primary(partition_of(k.as_bytes(), PARTITIONS)).as_str() == name(owner))
        .expect("a key of that node")
}

#[tokio::test(start_paused = true)]
async fn a_split_command_that_partly_ran_does_not_invite_a_blind_retry() {
    let net = MemNetwork::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(&net, i, 1).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    let near = key_on(&nodes[0], "a", 3);
    let far = key_on(&nodes[0], "b", 2);
    for k in [&near, &far] {
        assert_eq!(
            command(&nodes[0], &[b"SET", k.as_bytes(), b"v"]).await,
            "+OK\r\n"
        );
    }

    net.cut(&name(1), &name(2));
    let reply = command(&nodes[0], &[b"DEL", near.as_bytes(), far.as_bytes()]).await;
    assert!(
        reply.starts_with(b"-TRYAGAIN outcome unknown: part of the command ran"),
        "{reply:?}"
    );
    // The reachable part ran: a retry would answer 1 for a DEL that removed 2.
    assert_eq!(
        nodes[2].store().get(near.as_bytes(), UnixMillis::now()),
        None
    );
    assert!(
        nodes[1]
            .store()
            .get(far.as_bytes(), UnixMillis::now())
            .is_some()
    );

    // Harmless to run again whole: the plain TRYAGAIN stays.
    let reply = command(
        &nodes[0],
        &[b"MSET", near.as_bytes(), b"w", far.as_bytes(), b"w"],
    )
    .await;
    assert!(reply.starts_with(b"-TRYAGAIN owner"), "{reply:?}");
    let reply = command(&nodes[0], &[b"MGET", near.as_bytes(), far.as_bytes()]).await;
    assert!(reply.starts_with(b"-TRYAGAIN owner"), "{reply:?}");

    net.heal(&name(1), &name(2));

    // At R = 1 a single command whose answer is lost: a read may be retried
    // (plain TRYAGAIN), an INCR may have run (outcome unknown, not retried).
    let counter = key_on(&nodes[0], "n", 3);
    let set = command(&nodes[0], &[b"SET", counter.as_bytes(), b"5"]).await;
    assert_eq!(set, "+OK\r\n");
    net.lose_replies(&name(1), &name(3));
    let reply = command(&nodes[0], &[b"GET", counter.as_bytes()]).await;
    assert!(
        reply.starts_with(b"-TRYAGAIN owner n3 gave no answer"),
        "{reply:?}"
    );
    let reply = command(&nodes[0], &[b"INCR", counter.as_bytes()]).await;
    assert!(reply.starts_with(b"-TRYAGAIN outcome unknown"), "{reply:?}");
    net.keep_replies(&name(1), &name(3));
    // The DEL and the INCR, on the node that answered them.
    let stats = &nodes[0].router().expect("cluster mode").stats;
    assert_eq!(stats.forward_unknown.load(Ordering::Relaxed), 2);
    let router = nodes[0].router().expect("cluster mode").clone();
    let info = shoal::resp::hook::ClusterHook::info_cluster(router.as_ref());
    assert!(
        info.contains("cluster_forward_outcome_unknown:2\r\n"),
        "{info}"
    );
    let reply = command(&nodes[0], &[b"GET", counter.as_bytes()]).await;
    assert_eq!(reply, "$1\r\n6\r\n", "the INCR ran once");
    for n in nodes {
        n.shutdown().await;
    }
}
