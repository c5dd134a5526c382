//! A forwarded command whose request reached its primary but whose answer
//! was lost (in-memory network, R = 2): the primary may have run it, so a
//! command that is not harmless to run twice (INCR, APPEND, DEL ...) is not
//! failed over to another replica, where it would run a second time; the
//! client gets `-TRYAGAIN outcome unknown`. A read or a plain SET still
//! fails over and succeeds. Both ways in are covered: the single-command
//! path (through the router) and the batch path a RESP connection uses.
//! The thin client's fallback follows the same rule: of a pipeline it
//! sends on to another node only what did not run (a plain TRYAGAIN, a
//! batch never written), and of a batch written without an answer (the
//! connection closed, a timeout; stand-in nodes on loopback) only what is
//! harmless to run twice.

mod replication_support;

use std::time::Duration;

use bytes::Bytes;
use replication_support::*;
use shoal::api::exec::Exec;
use shoal::node::Node;
use shoal::store::{UnixMillis, partition_of};
use shoal::transport::mem::MemNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

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

/// A key (with `prefix`) whose only copy (R = 1) is on node `i`.
fn key_only_on(via: &Node, i: usize, prefix: &str) -> String {
    let st = via.cluster_state().expect("cluster mode");
    (0..100_000)
        .map(|k| format!("{prefix}{k}"))
        .find(|k| {
            let r = st.ring.replicas(partition_of(k.as_bytes(), PARTITIONS));
            r.len() == 1 && r[0].as_str() == name(i)
        })
        .expect("a key of that node")
}

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn bulk(v: &str) -> shoal::resp::codec::Frame {
    shoal::resp::codec::Frame::Bulk(Bytes::copy_from_slice(v.as_bytes()))
}

/// A pipeline through n1 (R = 1) where one key's owner cannot be reached
/// from n1: the command n1 ran (forwarded to n3) is not run again by the
/// client's fallback,
/// only the one answered with a plain TRYAGAIN goes to the next node, and
/// the replies keep their order. Real time: the client's sockets are real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_on_only_the_commands_that_did_not_run() {
    let net = MemNetwork::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        nodes.push(start(&net, i, 1).await);
    }
    converge(&nodes.iter().collect::<Vec<_>>(), LIMIT).await;
    // The counter lives on n3, which every node reaches; `far` on n2,
    // which n1 will not reach.
    let counter = key_only_on(&nodes[0], 3, "c");
    let far = key_only_on(&nodes[0], 2, "f");
    assert!(set(&nodes[0], &counter, "5").await);
    assert!(set(&nodes[0], &far, "v").await);
    // Unrouted: to n1 first; the fallback is the next member (n2).
    let client = shoal::Client::builder([nodes[0].resp_addr(), nodes[2].resp_addr()])
        .routing(false)
        .connect()
        .await
        .expect("client connects");

    net.cut(&name(1), &name(2));
    let got = client
        .pipeline(vec![
            (Bytes::from(counter.clone()), args(&["INCR", &counter])),
            (Bytes::from(far.clone()), args(&["GET", &far])),
        ])
        .await
        .expect("pipeline answered");
    net.heal(&name(1), &name(2));
    assert_eq!(
        got,
        vec![shoal::resp::codec::Frame::Integer(6), bulk("v")],
        "INCR ran once (through n1), GET went on to the next node"
    );
    assert_eq!(
        command(&nodes[0], &[b"GET", counter.as_bytes()]).await,
        "$1\r\n6\r\n"
    );
    drop(client);
    for n in nodes {
        n.shutdown().await;
    }
}

/// How a stand-in node treats each connection, once the client wrote.
#[derive(Clone, Copy)]
enum Fake {
    /// Read, then close without an answer.
    CloseAfterRead,
    /// Read, never answer, keep the connection open.
    Hold,
    /// Read, answer `:1`, then close.
    AnswerThenClose,
}

/// A stand-in node on 127.0.0.1:0 treating connections as `mode` says;
/// its address, and a channel told each time it is done with one.
async fn fake_node(mode: Fake) -> (std::net::SocketAddr, UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (done, rx) = unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            // The client writes a batch in one go.
            if !matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {
                continue;
            }
            match mode {
                Fake::CloseAfterRead => drop(sock),
                Fake::Hold => held.push(sock),
                Fake::AnswerThenClose => {
                    let _ = sock.write_all(b":1\r\n").await;
                    drop(sock);
                }
            }
            let _ = done.send(());
        }
    });
    (addr, rx)
}

/// One node (R = 1) holding c = 5, d = v; a client unrouted, to `first`
/// then to the node.
async fn node_behind(
    first: std::net::SocketAddr,
    timeout: Duration,
) -> (MemNetwork, Node, shoal::Client) {
    let net = MemNetwork::new();
    let node = start(&net, 1, 1).await;
    assert!(set(&node, "c", "5").await);
    assert!(set(&node, "d", "v").await);
    let client = shoal::Client::builder([first, node.resp_addr()])
        .routing(false)
        .pool_size(1)
        .timeout(timeout)
        .refresh_interval(Duration::from_secs(3600))
        .connect()
        .await
        .expect("client connects");
    (net, node, client)
}

fn one(key: &str, words: &[&str]) -> (Bytes, Vec<Bytes>) {
    (Bytes::copy_from_slice(key.as_bytes()), args(words))
}

fn is_unknown(f: &shoal::resp::codec::Frame) -> bool {
    matches!(f, shoal::resp::codec::Frame::Error(e) if unknown(&[b"-", &e[..]].concat()))
}

/// The first node reads the client's batch and closes the connection
/// without an answer: it may have run any of it. Only what is harmless to
/// run twice, and not followed in the batch by a write of its keys, goes
/// on to the next node; the rest answers "outcome unknown".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_written_to_a_node_that_then_closed_sends_on_only_what_is_harmless_twice() {
    let (fake, mut done) = fake_node(Fake::CloseAfterRead).await;
    let (_net, node, client) = node_behind(fake, Duration::from_secs(30)).await;
    done.recv()
        .await
        .expect("the ring fetch reached the stand-in");

    let got = client
        .pipeline(vec![
            one("c", &["INCR", "c"]),
            one("d", &["GET", "d"]),
            one("e", &["SET", "e", "w"]),
            one("k", &["SET", "k", "a"]),
            one("k", &["DEL", "k"]),
        ])
        .await
        .expect("pipeline answered");
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(is_unknown(&got[0]), "INCR: {:?}", got[0]);
    assert_eq!(got[1], bulk("v"));
    assert_eq!(
        got[2],
        shoal::resp::codec::Frame::Simple(Bytes::from_static(b"OK"))
    );
    assert!(
        is_unknown(&got[3]),
        "SET before a DEL of its key: {:?}",
        got[3]
    );
    assert!(is_unknown(&got[4]), "DEL: {:?}", got[4]);
    assert_eq!(command(&node, &[b"GET", b"c"]).await, "$1\r\n5\r\n");
    assert_eq!(command(&node, &[b"GET", b"k"]).await, "$-1\r\n");
    // The typed API reads it as the cluster being unavailable.
    assert!(matches!(
        client.delete("d").await,
        Err(shoal::Error::Unavailable(m)) if m.starts_with("TRYAGAIN outcome unknown")
    ));
    drop(client);
    node.shutdown().await;
}

/// The first node reads the batch and never answers: after the client's
/// timeout an INCR may have run there and is not sent anywhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_timed_out_after_it_was_written_is_not_sent_again() {
    let (fake, mut done) = fake_node(Fake::Hold).await;
    let (_net, node, client) = node_behind(fake, Duration::from_secs(1)).await;
    done.recv()
        .await
        .expect("the ring fetch reached the stand-in");

    let got = client
        .command(b"c", args(&["INCR", "c"]))
        .await
        .expect("answered");
    assert!(is_unknown(&got), "{got:?}");
    assert_eq!(command(&node, &[b"GET", b"c"]).await, "$1\r\n5\r\n");
    drop(client);
    node.shutdown().await;
}

/// A first node that refuses connections never saw the batch: all of it,
/// INCR included, runs on the next node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_written_goes_whole_to_the_next_node() {
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("local address")
    };
    let (_net, node, client) = node_behind(refused, Duration::from_secs(30)).await;
    let got = client
        .pipeline(vec![one("c", &["INCR", "c"]), one("d", &["GET", "d"])])
        .await
        .expect("pipeline answered");
    assert_eq!(got, vec![shoal::resp::codec::Frame::Integer(6), bulk("v")]);
    drop(client);
    node.shutdown().await;
}

/// A pooled connection the node closed while it was idle is replaced
/// before the next batch is written on it, so an INCR on it is not taken
/// for one that may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_node_closed_is_replaced_before_a_write() {
    let (fake, mut done) = fake_node(Fake::AnswerThenClose).await;
    let (_net, node, client) = node_behind(fake, Duration::from_secs(30)).await;
    // The ring fetch was answered (`:1`, not a ring: the client fetched
    // it from the node) and its connection, still pooled, then closed.
    done.recv()
        .await
        .expect("the ring fetch reached the stand-in");
    let got = client
        .command(b"c", args(&["INCR", "c"]))
        .await
        .expect("answered");
    assert_eq!(got, shoal::resp::codec::Frame::Integer(1));
    drop(client);
    node.shutdown().await;
}
