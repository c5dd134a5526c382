//! Transactions on one node: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with
//! Redis 7's replies, RESP2 and RESP3, pipelined in one write, and
//! isolated from concurrent readers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::{Raw, TestServer, encode_request, error, simple};
use shoal::resp::codec::Frame;
use tokio::io::AsyncReadExt;

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// Send `args` and read exactly `expected.len()` bytes: the reply's exact
/// encoding (the connection must hold no unread reply).
async fn exact(r: &mut Raw, args: &[&[u8]], expected: &[u8]) {
    r.send(args).await;
    let mut got = vec![0u8; expected.len()];
    r.stream.read_exact(&mut got).await.expect("reply bytes");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "reply to {:?}",
        args.iter()
            .map(|a| String::from_utf8_lossy(a))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn multi_queues_commands_and_exec_answers_each_in_order() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    exact(&mut r, &[b"MULTI"], b"+OK\r\n").await;
    exact(&mut r, &[b"SET", b"k", b"v"], b"+QUEUED\r\n").await;
    exact(&mut r, &[b"INCR", b"n"], b"+QUEUED\r\n").await;
    exact(&mut r, &[b"GET", b"k"], b"+QUEUED\r\n").await;
    exact(&mut r, &[b"PING"], b"+QUEUED\r\n").await;
    // Nothing ran before EXEC.
    assert_eq!(s.store.get(b"k", common::T0), None);
    exact(
        &mut r,
        &[b"EXEC"],
        b"*4\r\n+OK\r\n:1\r\n$1\r\nv\r\n+PONG\r\n",
    )
    .await;
    // The transaction is over: commands run at once again.
    exact(&mut r, &[b"INCR", b"n"], b":2\r\n").await;
    s.stop().await;
}

#[tokio::test]
async fn a_failing_command_is_one_error_element_and_the_others_still_run() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"SET", b"s", b"text"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"INCR", b"s"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"SET", b"t", b"1"]).await, simple("QUEUED"));
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        Frame::Array(vec![
            error("ERR value is not an integer or out of range"),
            simple("OK"),
        ])
    );
    assert_eq!(r.call(&[b"GET", b"t"]).await, bulk("1"));
    s.stop().await;
}

#[tokio::test]
async fn a_command_refused_while_queuing_aborts_the_transaction() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"k", b"v"]).await, simple("QUEUED"));
    assert_eq!(
        r.call(&[b"NOSUCH", b"x"]).await,
        error("ERR unknown command 'NOSUCH', with args beginning with: 'x' ")
    );
    assert_eq!(
        r.call(&[b"GET"]).await,
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(r.call(&[b"GET", b"k"]).await, Frame::Null, "nothing ran");
    // The transaction is gone.
    assert_eq!(r.call(&[b"EXEC"]).await, error("ERR EXEC without MULTI"));
    s.stop().await;
}

#[tokio::test]
async fn nested_multi_and_exec_or_discard_without_multi_are_errors() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"EXEC"]).await, error("ERR EXEC without MULTI"));
    assert_eq!(
        r.call(&[b"DISCARD"]).await,
        error("ERR DISCARD without MULTI")
    );
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(
        r.call(&[b"MULTI"]).await,
        error("ERR MULTI calls can not be nested")
    );
    assert_eq!(
        r.call(&[b"WATCH", b"k"]).await,
        error("ERR WATCH inside MULTI is not allowed")
    );
    assert_eq!(r.call(&[b"SET", b"k", b"v"]).await, simple("QUEUED"));
    // Neither error aborts the transaction (as in Redis).
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![simple("OK")]));
    s.stop().await;
}

#[tokio::test]
async fn discard_drops_the_queue_and_the_watches() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"k", b"v"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"DISCARD"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"k"]).await, Frame::Null);
    // The watch went with it: a change of `w` no longer aborts.
    assert_eq!(other.call(&[b"SET", b"w", b"1"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"k", b"v"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![simple("OK")]));
    s.stop().await;
}

#[tokio::test]
async fn exec_answers_a_null_array_when_another_connection_wrote_a_watched_key() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    assert_eq!(r.call(&[b"SET", b"w", b"0"]).await, simple("OK"));
    assert_eq!(r.call(&[b"WATCH", b"w", b"{w}x"]).await, simple("OK"));
    // Another client writes the same value: still a change.
    assert_eq!(other.call(&[b"SET", b"w", b"0"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"{w}k", b"v"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    assert_eq!(r.call(&[b"GET", b"{w}k"]).await, Frame::Null, "nothing ran");
    // EXEC dropped the watches: the next transaction runs.
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"k", b"v"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![simple("OK")]));
    s.stop().await;
}

#[tokio::test]
async fn a_watched_key_deleted_expired_or_flushed_aborts_exec() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    // Deleted.
    assert_eq!(r.call(&[b"SET", b"w", b"1"]).await, simple("OK"));
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    assert_eq!(other.call(&[b"DEL", b"w"]).await, int(1));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"PING"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    // Expired.
    assert_eq!(
        r.call(&[b"SET", b"w", b"1", b"PX", b"100"]).await,
        simple("OK")
    );
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    s.clock.advance(200);
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"PING"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    // Flushed.
    assert_eq!(r.call(&[b"SET", b"w", b"1"]).await, simple("OK"));
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    assert_eq!(other.call(&[b"FLUSHALL"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"PING"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    s.stop().await;
}

/// As Redis 7: a key absent at WATCH and created before EXEC is a change
/// even if it is gone again (expired, deleted: standalone keeps no
/// tombstone); a delete of the still absent key, a write of another key or
/// a FLUSHALL are not.
#[tokio::test]
async fn a_key_absent_at_watch_created_and_gone_again_aborts_exec() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    // Created, then expired.
    assert_eq!(r.call(&[b"WATCH", b"{a}e"]).await, simple("OK"));
    assert_eq!(
        other.call(&[b"SET", b"{a}e", b"v", b"PX", b"50"]).await,
        simple("OK")
    );
    s.clock.advance(200);
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"{a}e"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    // Created, then deleted.
    assert_eq!(r.call(&[b"WATCH", b"{a}d"]).await, simple("OK"));
    assert_eq!(other.call(&[b"SET", b"{a}d", b"v"]).await, simple("OK"));
    assert_eq!(other.call(&[b"DEL", b"{a}d"]).await, int(1));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"{a}d"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    // Never created: a DEL of it, another key written (in another
    // partition: one of its own could share its bucket), a FLUSHALL.
    let n = s.store.partitions();
    let elsewhere = (0..)
        .map(|i| format!("o{i}"))
        .find(|k| {
            shoal::store::partition_of(k.as_bytes(), n) != shoal::store::partition_of(b"{a}n", n)
        })
        .expect("a key in another partition");
    assert_eq!(r.call(&[b"WATCH", b"{a}n"]).await, simple("OK"));
    assert_eq!(other.call(&[b"DEL", b"{a}n"]).await, int(0));
    assert_eq!(
        other.call(&[b"SET", elsewhere.as_bytes(), b"v"]).await,
        simple("OK")
    );
    assert_eq!(other.call(&[b"FLUSHALL"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"{a}n"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*1\r\n$-1\r\n").await;
    s.stop().await;
}

#[tokio::test]
async fn exec_answers_resp3_null_after_hello_3() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    let _ = r.call(&[b"HELLO", b"3"]).await;
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    assert_eq!(other.call(&[b"SET", b"w", b"1"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"w"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"_\r\n").await;
    // And a transaction that runs answers an array of RESP3 replies.
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"GET", b"nope"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"INCR", b"c"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*2\r\n_\r\n:1\r\n").await;
    s.stop().await;
}

#[tokio::test]
async fn watch_succeeds_when_nobody_changed_the_keys_and_unwatch_forgets_them() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    assert_eq!(r.call(&[b"SET", b"w", b"1"]).await, simple("OK"));
    assert_eq!(r.call(&[b"WATCH", b"w", b"{w}missing"]).await, simple("OK"));
    // Reads by others are not changes.
    assert_eq!(other.call(&[b"GET", b"w"]).await, bulk("1"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"INCR", b"w"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![int(2)]));
    // UNWATCH: a later change does not abort.
    assert_eq!(r.call(&[b"WATCH", b"w"]).await, simple("OK"));
    assert_eq!(r.call(&[b"UNWATCH"]).await, simple("OK"));
    assert_eq!(other.call(&[b"SET", b"w", b"9"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"INCR", b"w"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![int(10)]));
    s.stop().await;
}

#[tokio::test]
async fn watch_over_keys_of_several_partitions_is_refused_at_exec() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let n = s.store.partitions();
    let elsewhere = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| {
            shoal::store::partition_of(k.as_bytes(), n) != shoal::store::partition_of(b"{u}a", n)
        })
        .expect("a key of another partition");
    assert_eq!(r.call(&[b"WATCH", b"{u}a"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(
        r.call(&[b"SET", elsewhere.as_bytes(), b"1"]).await,
        simple("QUEUED")
    );
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        error("CROSSSLOT Keys in request don't hash to the same slot")
    );
    assert_eq!(r.call(&[b"GET", elsewhere.as_bytes()]).await, Frame::Null);
    // Without WATCH the same keys run, in order.
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"{u}a", b"1"]).await, simple("QUEUED"));
    assert_eq!(
        r.call(&[b"SET", elsewhere.as_bytes(), b"2"]).await,
        simple("QUEUED")
    );
    assert_eq!(
        r.call(&[b"MGET", b"{u}a", elsewhere.as_bytes()]).await,
        simple("QUEUED")
    );
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        Frame::Array(vec![
            simple("OK"),
            simple("OK"),
            Frame::Array(vec![bulk("1"), bulk("2")])
        ])
    );
    s.stop().await;
}

#[tokio::test]
async fn a_transaction_pipelined_in_one_write_answers_in_order() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let mut batch = Vec::new();
    for req in [
        &[&b"SET"[..], b"before", b"1"][..],
        &[b"MULTI"],
        &[b"INCR", b"before"],
        &[b"SET", b"{t}a", b"x"],
        &[b"GET", b"{t}a"],
        &[b"EXEC"],
        &[b"GET", b"before"],
    ] {
        batch.extend_from_slice(&encode_request(req));
    }
    r.send_raw(&batch).await;
    let expected =
        b"+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n:2\r\n+OK\r\n$1\r\nx\r\n$1\r\n2\r\n";
    let mut got = vec![0u8; expected.len()];
    r.stream.read_exact(&mut got).await.expect("replies");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
    s.stop().await;
}

#[tokio::test]
async fn redis_crate_atomic_pipelines_work() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    let (n, ttl): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("rate:1")
        .cmd("EXPIRE")
        .arg("rate:1")
        .arg(60)
        .ignore()
        .cmd("TTL")
        .arg("rate:1")
        .query_async(&mut c)
        .await
        .expect("atomic pipeline");
    assert_eq!((n, ttl), (1, 60));
    // A failed WATCH comes back as nil through the crate too.
    let _: () = redis::cmd("WATCH")
        .arg("rate:1")
        .query_async(&mut c)
        .await
        .expect("WATCH");
    let mut other = s.conn().await;
    let _: i64 = redis::cmd("INCR")
        .arg("rate:1")
        .query_async(&mut other)
        .await
        .expect("INCR");
    let aborted: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("rate:1")
        .query_async(&mut c)
        .await
        .expect("EXEC");
    assert_eq!(aborted, None);
    s.stop().await;
}

/// Read one frame from `r`, failing (not hanging) if none comes.
async fn recv(r: &mut Raw) -> Option<Frame> {
    tokio::time::timeout(std::time::Duration::from_secs(60), r.recv())
        .await
        .expect("a reply in time")
}

/// Many `MULTI; INCR {k}a; INCR {k}b; EXEC` against readers that
/// `MGET {k}a {k}b`: a reader must never see the two differ. Two I/O
/// threads whatever the machine's cores (with one, every connection
/// shares a thread and nothing runs in parallel to be isolated from).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_never_see_half_a_transaction() {
    let s = TestServer::with(|c| c.io_threads = 2).await;
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut r = Raw::connect(addr).await;
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                r.send(&[b"MGET", b"{k}a", b"{k}b"]).await;
                let f = recv(&mut r).await.expect("a reply");
                let Frame::Array(v) = f else {
                    panic!("MGET answered {f:?}")
                };
                assert_eq!(v[0], v[1], "a reader saw half a transaction");
                reads += 1;
            }
            reads
        }));
    }
    // Reads of another key of the partition between the two INCRs widen
    // the window a reader could slip into without isolation.
    const FILL: usize = 32;
    const ROUNDS: usize = 300;
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(tokio::spawn(async move {
            let mut r = Raw::connect(addr).await;
            let mut batch = encode_request(&[b"MULTI"]);
            batch.extend_from_slice(&encode_request(&[b"INCR", b"{k}a"]));
            for _ in 0..FILL {
                batch.extend_from_slice(&encode_request(&[b"GET", b"{k}c"]));
            }
            batch.extend_from_slice(&encode_request(&[b"INCR", b"{k}b"]));
            batch.extend_from_slice(&encode_request(&[b"EXEC"]));
            for _ in 0..ROUNDS {
                r.send_raw(&batch).await;
                assert_eq!(recv(&mut r).await, Some(simple("OK")));
                for _ in 0..FILL + 2 {
                    assert_eq!(recv(&mut r).await, Some(simple("QUEUED")));
                }
                let Some(Frame::Array(v)) = recv(&mut r).await else {
                    panic!("EXEC did not answer an array")
                };
                assert_eq!(v.len(), FILL + 2);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.await.expect("reader") > 0);
    }
    let total = (3 * ROUNDS).to_string();
    for key in [&b"{k}a"[..], b"{k}b"] {
        assert_eq!(
            s.store.get(key, common::T0).as_deref(),
            Some(total.as_bytes())
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_command_the_acl_refuses_while_queuing_aborts_the_transaction() {
    let s = TestServer::with(|c| {
        c.users = vec!["user rw on >pw ~app:* +@read +@write +@transaction".into()];
    })
    .await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"AUTH", b"rw", b"pw"]).await, simple("OK"));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"app:1", b"v"]).await, simple("QUEUED"));
    assert_eq!(
        r.call(&[b"SET", b"other", b"v"]).await,
        error("NOPERM this user has no permissions to access one of the keys used as arguments")
    );
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(r.call(&[b"GET", b"app:1"]).await, Frame::Null);
    // Without @transaction, MULTI itself is refused.
    let s2 = TestServer::with(|c| {
        c.users = vec!["user plain on >pw ~* +@read +@write".into()];
    })
    .await;
    let mut p = s2.raw().await;
    assert_eq!(p.call(&[b"AUTH", b"plain", b"pw"]).await, simple("OK"));
    assert!(matches!(p.call(&[b"MULTI"]).await, Frame::Error(e) if e.starts_with(b"NOPERM")));
    s.stop().await;
    s2.stop().await;
}

/// A transaction past `multi-max-commands` or `multi-max-bytes`: the
/// command is refused, the transaction flagged, `EXEC` answers
/// `EXECABORT` and nothing runs (an unbounded queue held memory and the
/// gate for as long as a client liked).
#[tokio::test]
async fn a_transaction_past_its_limits_is_refused_and_aborts() {
    let s = TestServer::with(|c| {
        c.multi_max_commands = 3;
        c.multi_max_bytes = 1024;
    })
    .await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    for k in [b"a", b"b", b"c"] {
        assert_eq!(r.call(&[b"SET", k, b"1"]).await, simple("QUEUED"));
    }
    assert!(matches!(
        r.call(&[b"SET", b"d", b"1"]).await,
        Frame::Error(e) if e.starts_with(b"ERR transaction too large: more than 3 commands")
    ));
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(r.call(&[b"GET", b"a"]).await, Frame::Null);

    // Bytes: two 600-byte values do not fit in 1 KiB.
    let big = vec![b'x'; 600];
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"a", &big]).await, simple("QUEUED"));
    assert!(matches!(
        r.call(&[b"SET", b"b", &big]).await,
        Frame::Error(e) if e.starts_with(b"ERR transaction too large: more than 1024 bytes")
    ));
    assert_eq!(
        r.call(&[b"EXEC"]).await,
        error("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(r.call(&[b"GET", b"a"]).await, Frame::Null);

    // A new transaction starts from zero.
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"a", b"1"]).await, simple("QUEUED"));
    assert_eq!(r.call(&[b"EXEC"]).await, Frame::Array(vec![simple("OK")]));
    s.stop().await;
}

/// Watched keys count once however often they are watched (the first
/// stamp is kept, as Redis does) and are bounded by `multi-max-commands`.
#[tokio::test]
async fn watched_keys_are_deduplicated_and_bounded() {
    let s = TestServer::with(|c| c.multi_max_commands = 3).await;
    let mut r = s.raw().await;
    let mut other = s.raw().await;
    assert_eq!(
        r.call(&[b"WATCH", b"{w}a", b"{w}a", b"{w}a", b"{w}a"])
            .await,
        simple("OK")
    );
    // A change, then the same key watched again: the first stamp stays.
    assert_eq!(
        other.call(&[b"SET", b"{w}a", b"theirs"]).await,
        simple("OK")
    );
    assert_eq!(
        r.call(&[b"WATCH", b"{w}a", b"{w}b", b"{w}c"]).await,
        simple("OK")
    );
    assert!(matches!(
        r.call(&[b"WATCH", b"{w}d"]).await,
        Frame::Error(e) if e.starts_with(b"ERR too many watched keys")
    ));
    assert_eq!(r.call(&[b"MULTI"]).await, simple("OK"));
    assert_eq!(r.call(&[b"SET", b"{w}a", b"mine"]).await, simple("QUEUED"));
    exact(&mut r, &[b"EXEC"], b"*-1\r\n").await;
    assert_eq!(r.call(&[b"GET", b"{w}a"]).await, bulk("theirs"));
    // EXEC dropped the watches: room again.
    assert_eq!(
        r.call(&[b"WATCH", b"{w}d", b"{w}e", b"{w}f"]).await,
        simple("OK")
    );
    s.stop().await;
}
