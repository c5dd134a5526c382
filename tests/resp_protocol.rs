//! The wire: pipelining, inline commands, protocol errors, limits, hostile
//! input, max clients and shutdown.

mod common;

use common::{Raw, TestServer, bulk, encode_request, error, simple};
use proptest::prelude::*;
use shoal::resp::codec::Frame;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_thousand_pipelined_commands_are_answered_in_order() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    for i in 0..1000 {
        p.cmd("GET").arg(format!("k{i}"));
    }
    let got: Vec<i64> = p.query_async(&mut c).await.unwrap();
    assert_eq!(got, (0..1000).collect::<Vec<i64>>());
    // The same batch in one raw write.
    let mut r = s.raw().await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(encode_request(&[b"INCR", b"counter"]));
        let _ = i;
    }
    r.send_raw(&batch).await;
    for i in 1..=1000 {
        assert_eq!(r.recv().await, Some(Frame::Integer(i)));
    }
    s.stop().await;
}

#[tokio::test]
async fn inline_commands_work_like_telnet() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    r.send_raw(b"SET greeting \"hello world\"\r\nGET greeting\nPING\r\n\r\n")
        .await;
    assert_eq!(r.recv().await, Some(simple("OK")));
    assert_eq!(r.recv().await, Some(bulk("hello world")));
    assert_eq!(r.recv().await, Some(simple("PONG")));
    s.stop().await;
}

async fn error_then_close(s: &TestServer, input: &[u8], text: &str) {
    let mut r = s.raw().await;
    r.send_raw(input).await;
    assert_eq!(
        r.recv().await,
        Some(error(text)),
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    assert_eq!(
        r.read_to_close().await,
        b"",
        "connection closes after a protocol error"
    );
}

#[tokio::test]
async fn protocol_errors_reply_then_close() {
    let s = TestServer::with(|c| c.proto_max_bulk_len = 1024).await;
    error_then_close(
        &s,
        b"*x\r\n",
        "ERR Protocol error: invalid multibulk length",
    )
    .await;
    error_then_close(
        &s,
        b"*1\r\n+PING\r\n",
        "ERR Protocol error: expected '$', got '+'",
    )
    .await;
    error_then_close(
        &s,
        b"*1\r\n$-5\r\n",
        "ERR Protocol error: invalid bulk length",
    )
    .await;
    error_then_close(
        &s,
        b"*1\r\n$2048\r\n",
        "ERR Protocol error: invalid bulk length",
    )
    .await;
    error_then_close(
        &s,
        b"GET \"abc\n",
        "ERR Protocol error: unbalanced quotes in request",
    )
    .await;
    error_then_close(
        &s,
        &vec![b'A'; 70_000],
        "ERR Protocol error: too big inline request",
    )
    .await;
    let mut long = b"*".to_vec();
    long.extend(vec![b'1'; 70_000]);
    error_then_close(&s, &long, "ERR Protocol error: too big mbulk count string").await;
    // Replies to the requests before the bad one still arrive.
    let mut r = s.raw().await;
    r.send_raw(b"PING\r\n*1\r\n:1\r\n").await;
    assert_eq!(r.recv().await, Some(simple("PONG")));
    assert_eq!(
        r.recv().await,
        Some(error("ERR Protocol error: expected '$', got ':'"))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_large_value_arriving_in_pieces_is_assembled() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    let value = vec![b'v'; 3 * 1024 * 1024];
    let req = encode_request(&[b"SET", b"big", &value]);
    for chunk in req.chunks(100_000) {
        r.stream.write_all(chunk).await.unwrap();
    }
    assert_eq!(r.recv().await, Some(simple("OK")));
    let got = r.call(&[b"GET", b"big"]).await;
    assert_eq!(got, Frame::Bulk(value.into()));
    s.stop().await;
}

#[tokio::test]
async fn max_clients_refuses_the_extra_connection() {
    let s = TestServer::with(|c| c.maxclients = 2).await;
    let mut a = s.raw().await;
    let mut b = s.raw().await;
    assert_eq!(a.call(&[b"PING"]).await, simple("PONG"));
    assert_eq!(b.call(&[b"PING"]).await, simple("PONG"));
    let mut extra = s.raw().await;
    assert_eq!(
        extra.recv().await,
        Some(error("ERR max number of clients reached"))
    );
    assert_eq!(extra.recv().await, None);
    drop(a);
    // Once a slot frees, a new client gets in (the server notices the close).
    // Attempts made before the server noticed the close are refused too;
    // each is counted, so the total below must account for them.
    let mut ok = false;
    let mut refused_again = 0u64;
    for _ in 0..200 {
        let mut c = s.raw().await;
        c.send(&[b"PING"]).await;
        match c.recv().await {
            Some(f) if f == simple("PONG") => {
                ok = true;
                break;
            }
            Some(f) if f == error("ERR max number of clients reached") => refused_again += 1,
            _ => {}
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(ok, "a freed slot is reusable");
    let Frame::Bulk(info) = b.call(&[b"INFO", b"stats"]).await else {
        panic!("INFO is a bulk string in RESP2");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    let want = format!("rejected_connections:{}\r\n", 1 + refused_again);
    assert!(info.contains(&want), "want {want:?} in {info}");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_ends_the_server() {
    let s = TestServer::start().await;
    let mut r = s.raw().await;
    assert_eq!(r.call(&[b"PING"]).await, simple("PONG"));
    s.shutdown.trigger();
    assert_eq!(r.recv().await, None, "the server closes idle connections");
    s.task.await.unwrap();
}

fn hostile_inputs() -> impl Strategy<Value = Vec<u8>> {
    let fragments = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"99999999999".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"SET".to_vec()),
        Just(b"GET".to_vec()),
        Just(b"HELLO 3".to_vec()),
        Just(b"CLIENT".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
        "[0-9]{1,3}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(fragments, 0..40).prop_map(|v| v.concat())
}

#[test]
fn random_and_truncated_streams_never_take_the_server_down() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(TestServer::start());
    let addr = s.addr;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(hostile_inputs(), any::<prop::sample::Index>()),
            |(input, cut)| {
                rt.block_on(async {
                    let mut r = Raw::connect(addr).await;
                    // Random bytes, or a valid pipeline cut short.
                    r.send_raw(&input).await;
                    let valid = [
                        encode_request(&[b"SET", b"k", b"v"]),
                        encode_request(&[b"GET", b"k"]),
                    ]
                    .concat();
                    let _ = r.stream.write_all(&valid[..cut.index(valid.len())]).await;
                    drop(r);
                    let mut probe = Raw::connect(addr).await;
                    assert_eq!(probe.call(&[b"PING"]).await, simple("PONG"));
                });
                Ok(())
            },
        )
        .unwrap();
    rt.block_on(s.stop());
}
