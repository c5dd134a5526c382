//! A forwarded command whose request reached its primary but whose answer
//! was lost (in-memory network, R = 2): the primary may have run it, so a
//! command that is not harmless to run twice (INCR, APPEND, DEL ...) is not
//! failed over to another replica, where it would run a second time; the
//! client gets `-TRYAGAIN outcome unknown`. A read or a plain SET still
//! fails over and succeeds. Both ways in are covered: the single-command
//! path (through the router) and the batch path a RESP connection uses.

mod replication_support;

use std::time::Duration;

use bytes::Bytes;
use replication_support::*;
use shoal::api::exec::Exec;
use shoal::node::Node;
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(120);

/// Three nodes, R = 2, converged.
async fn cluster(net: &MemNetwork) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(net, i, 2).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    nodes
}

/// A key (with `prefix`) whose primary is `n2` and whose other replica is
/// `n3`, so a command through `n1` is forwarded to n2 and fails over to n3.
fn key_on_n2(via: &Node, prefix: &str) -> String {
    let st = via.cluster_state().expect("cluster mode");
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| {
            let r = st.ring.replicas(partition_of(k.as_bytes(), PARTITIONS));
            r.len() == 2 && r[0].as_str() == name(2) && r[1].as_str() == name(3)
        })
        .expect("a key of n2 replicated on n3")
}

/// The value of `key` in the stores of n2 and n3.
fn held(nodes: &[Node], key: &str) -> Vec<Option<String>> {
    let now = UnixMillis::now();
    nodes[1..]
        .iter()
        .map(|n| {
            n.store()
                .get(key.as_bytes(), now)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        })
        .collect()
}

/// Wait (at most 10 s) until n2 and n3 hold `want` for `key`: a replica
/// may apply a replicated write just after the primary answered.
async fn held_soon(nodes: &[Node], key: &str, want: Option<&str>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let want = vec![want.map(str::to_string); 2];
    loop {
        let got = held(nodes, key);
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn unknown(reply: &[u8]) -> bool {
    reply.starts_with(b"-TRYAGAIN outcome unknown")
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_does_not_run_a_counter_twice_through_the_router() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let counter = key_on_n2(&nodes[0], "c");
    let plain = key_on_n2(&nodes[0], "s");
    let pair = key_on_n2(&nodes[0], "d");
    assert_eq!(
        command(&nodes[0], &[b"SET", counter.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );

    net.lose_replies(&name(1), &name(2));
    let reply = command(&nodes[0], &[b"INCR", counter.as_bytes()]).await;
    assert!(unknown(&reply), "{reply:?}");
    let reply = command(&nodes[0], &[b"APPEND", counter.as_bytes(), b"x"]).await;
    assert!(unknown(&reply), "{reply:?}");
    // Ran once each on n2, which replicated them to n3 before answering.
    let once = Some("6x".to_string());
    assert_eq!(held(&nodes, &counter), vec![once.clone(), once]);

    // A plain SET is harmless to run again: it fails over and is acknowledged.
    let reply = command(&nodes[0], &[b"SET", plain.as_bytes(), b"v"]).await;
    assert_eq!(reply, "+OK\r\n");
    assert_eq!(
        held(&nodes, &plain),
        vec![Some("v".into()), Some("v".into())]
    );
    // So is a read.
    let reply = command(&nodes[0], &[b"GET", counter.as_bytes()]).await;
    assert_eq!(reply, "$2\r\n6x\r\n");
    // A DEL split over owners: the part on n2 may have run, and a second
    // run would count differently, so the whole reply says so.
    let other = (0..100_000)
        .map(|i| format!("o{i}"))
        .find(|k| {
            let st = nodes[0].cluster_state().expect("cluster");
            st.primary(partition_of(k.as_bytes(), PARTITIONS)).as_str() != name(2)
        })
        .expect("a key not on n2");
    assert_eq!(
        command(&nodes[0], &[b"SET", other.as_bytes(), b"1"]).await,
        "+OK\r\n"
    );
    let reply = command(&nodes[0], &[b"DEL", pair.as_bytes(), other.as_bytes()]).await;
    assert!(unknown(&reply), "{reply:?}");

    net.keep_replies(&name(1), &name(2));
    assert_eq!(
        command(&nodes[0], &[b"INCR", plain.as_bytes()]).await,
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        command(&nodes[0], &[b"GET", counter.as_bytes()]).await,
        "$2\r\n6x\r\n"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

/// The embedded API runs commands through the same router, and retries a
/// `TRYAGAIN` reply a few times: an answer that may have been acted on is
/// not one of those, or the counter would move once per attempt.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_not_retried_by_the_embedded_api() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let counter = key_on_n2(&nodes[0], "c");
    assert_eq!(
        command(&nodes[0], &[b"SET", counter.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );
    let exec = Exec::Cluster(nodes[0].router().expect("cluster mode").clone());

    net.lose_replies(&name(1), &name(2));
    let got = exec
        .run(vec![
            Bytes::from_static(b"INCR"),
            Bytes::from(counter.clone()),
        ])
        .await;
    assert!(
        matches!(&got, Err(shoal::Error::Unavailable(m)) if unknown(format!("-{m}").as_bytes())),
        "{got:?}"
    );
    assert_eq!(
        held(&nodes, &counter),
        vec![Some("6".into()), Some("6".into())]
    );
    net.keep_replies(&name(1), &name(2));
    for n in nodes {
        n.shutdown().await;
    }
}

/// The thin client falls back to another node when a reply says
/// `TRYAGAIN`: not when it says the outcome is unknown, or the command
/// runs again through that node. Real time: the client's sockets are real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_not_sent_again_by_the_client() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let counter = key_on_n2(&nodes[0], "c");
    assert_eq!(
        command(&nodes[0], &[b"SET", counter.as_bytes(), b"5"]).await,
        "+OK\r\n"
    );
    // Unrouted, through n1 first (which forwards to n2), n3 as a fallback.
    let client = shoal::Client::builder([nodes[0].resp_addr(), nodes[2].resp_addr()])
        .routing(false)
        .connect()
        .await
        .expect("client connects");

    net.lose_replies(&name(1), &name(2));
    let got = client
        .command(
            counter.as_bytes(),
            vec![Bytes::from_static(b"INCR"), Bytes::from(counter.clone())],
        )
        .await;
    net.keep_replies(&name(1), &name(2));
    assert!(
        matches!(&got, Ok(shoal::resp::codec::Frame::Error(e)) if unknown(&[b"-", &e[..]].concat())),
        "{got:?}"
    );
    held_soon(&nodes, &counter, Some("6")).await;
    drop(client);
    for n in nodes {
        n.shutdown().await;
    }
}

/// Send `cmd` (inline) on a RESP connection and read one reply line.
async fn roundtrip(conn: &mut TcpStream, cmd: &str) -> String {
    conn.write_all(format!("{cmd}\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n")
        || (got.starts_with(b"$") && got.iter().filter(|&&b| b == b'\n').count() < 2)
    {
        let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("a reply within 30 s")
            .expect("read");
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Send `cmds` (inline, CRLF-separated) at once and read `n` one-line
/// replies.
async fn roundtrip_n(conn: &mut TcpStream, cmds: &str, n: usize) -> Vec<String> {
    conn.write_all(format!("{cmds}\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while got.windows(2).filter(|w| w == b"\r\n").count() < n {
        let k = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .expect("replies within 30 s")
            .expect("read");
        assert!(k > 0, "connection closed");
        got.extend_from_slice(&buf[..k]);
    }
    String::from_utf8_lossy(&got)
        .split_terminator("\r\n")
        .map(str::to_string)
        .collect()
}

/// The same through a client connection, whose commands travel to their
/// owner in batches (the coalescing lanes). Real time: the client socket
/// is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_batch_answer_does_not_run_a_counter_twice_through_a_connection() {
    let net = MemNetwork::new();
    let nodes = cluster(&net).await;
    let counter = key_on_n2(&nodes[0], "c");
    let plain = key_on_n2(&nodes[0], "s");
    let mut conn = TcpStream::connect(nodes[0].resp_addr())
        .await
        .expect("connect to n1");
    assert_eq!(
        roundtrip(&mut conn, &format!("SET {counter} 5")).await,
        "+OK\r\n"
    );

    net.lose_replies(&name(1), &name(2));
    let reply = roundtrip(&mut conn, &format!("INCR {counter}")).await;
    assert!(unknown(reply.as_bytes()), "{reply:?}");
    held_soon(&nodes, &counter, Some("6")).await;
    assert_eq!(
        roundtrip(&mut conn, &format!("SET {plain} v")).await,
        "+OK\r\n"
    );
    assert_eq!(
        roundtrip(&mut conn, &format!("GET {counter}")).await,
        "$1\r\n6\r\n"
    );
    // A pipelined SET then DEL of one key: the owner ran both. Running the
    // SET again (harmless alone) would bring back the key the DEL removed.
    let gone = key_on_n2(&nodes[0], "g");
    let replies = roundtrip_n(&mut conn, &format!("SET {gone} a\r\nDEL {gone}"), 2).await;
    assert!(replies.iter().all(|r| unknown(r.as_bytes())), "{replies:?}");
    held_soon(&nodes, &gone, None).await;

    net.keep_replies(&name(1), &name(2));
    assert_eq!(
        roundtrip(&mut conn, &format!("INCR {counter}")).await,
        ":7\r\n"
    );
    held_soon(&nodes, &counter, Some("7")).await;
    drop(conn);
    for n in nodes {
        n.shutdown().await;
    }
}
