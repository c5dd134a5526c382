//! String commands through the `redis` crate, against an in-process server.

mod common;

use common::{TestServer, fails, run};
use redis::Value;

#[tokio::test]
async fn get_set_and_their_options_behave_like_redis() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "k"]).await.unwrap(),
        None
    );
    assert_eq!(
        run::<String>(&mut c, &["SET", "k", "v"]).await.unwrap(),
        "OK"
    );
    assert_eq!(run::<String>(&mut c, &["GET", "k"]).await.unwrap(), "v");
    // NX refuses an existing key, XX a missing one: null reply.
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "k", "x", "NX"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "nope", "x", "XX"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "k", "w", "XX", "GET"])
            .await
            .unwrap(),
        Some("v".into())
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["SET", "new", "1", "GET"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(run::<String>(&mut c, &["GET", "k"]).await.unwrap(), "w");
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "NX", "XX"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "EX", "1", "PX", "5"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "EX"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "BOGUS"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "EX", "0"]).await,
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "PX", "-5"]).await,
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "EX", "9223372036854775807"]).await,
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(
        fails(&mut c, &["SET", "k", "v", "EX", "abc"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        fails(&mut c, &["GET"]).await,
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        fails(&mut c, &["GET", "a", "b"]).await,
        "ERR wrong number of arguments for 'get' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn set_expiry_options_and_keepttl_use_the_server_clock() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "ex", "v", "EX", "10"])
        .await
        .unwrap();
    run::<()>(&mut c, &["SET", "px", "v", "PX", "1500"])
        .await
        .unwrap();
    let at = (common::T0.0 / 1000 + 20).to_string();
    run::<()>(&mut c, &["SET", "exat", "v", "EXAT", &at])
        .await
        .unwrap();
    let pat = (common::T0.0 + 30_000).to_string();
    run::<()>(&mut c, &["SET", "pxat", "v", "PXAT", &pat])
        .await
        .unwrap();
    assert_eq!(run::<i64>(&mut c, &["TTL", "ex"]).await.unwrap(), 10);
    assert_eq!(run::<i64>(&mut c, &["PTTL", "px"]).await.unwrap(), 1500);
    assert_eq!(run::<i64>(&mut c, &["TTL", "exat"]).await.unwrap(), 20);
    assert_eq!(run::<i64>(&mut c, &["PTTL", "pxat"]).await.unwrap(), 30_000);
    // KEEPTTL keeps it; a plain SET clears it.
    run::<()>(&mut c, &["SET", "ex", "v2", "KEEPTTL"])
        .await
        .unwrap();
    assert_eq!(run::<i64>(&mut c, &["TTL", "ex"]).await.unwrap(), 10);
    run::<()>(&mut c, &["SET", "pxat", "v2"]).await.unwrap();
    assert_eq!(run::<i64>(&mut c, &["TTL", "pxat"]).await.unwrap(), -1);
    s.clock.advance(1_500);
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "px"]).await.unwrap(),
        None
    );
    assert_eq!(run::<String>(&mut c, &["GET", "ex"]).await.unwrap(), "v2");
    s.clock.advance(8_500);
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "ex"]).await.unwrap(),
        None
    );
    // An absolute time in the past stores nothing.
    run::<()>(&mut c, &["SET", "past", "v", "PXAT", "1"])
        .await
        .unwrap();
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "past"]).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn setnx_setex_psetex_getset_getdel() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(run::<i64>(&mut c, &["SETNX", "k", "1"]).await.unwrap(), 1);
    assert_eq!(run::<i64>(&mut c, &["SETNX", "k", "2"]).await.unwrap(), 0);
    assert_eq!(
        run::<String>(&mut c, &["SETEX", "e", "5", "v"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "e"]).await.unwrap(), 5);
    assert_eq!(
        fails(&mut c, &["SETEX", "e", "0", "v"]).await,
        "ERR invalid expire time in 'setex' command"
    );
    assert_eq!(
        fails(&mut c, &["SETEX", "e", "x", "v"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        run::<String>(&mut c, &["PSETEX", "p", "2500", "v"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(run::<i64>(&mut c, &["PTTL", "p"]).await.unwrap(), 2500);
    assert_eq!(
        fails(&mut c, &["PSETEX", "p", "-1", "v"]).await,
        "ERR invalid expire time in 'psetex' command"
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["GETSET", "g", "a"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        run::<String>(&mut c, &["GETSET", "g", "b"]).await.unwrap(),
        "a"
    );
    run::<()>(&mut c, &["EXPIRE", "g", "100"]).await.unwrap();
    assert_eq!(
        run::<String>(&mut c, &["GETSET", "g", "c"]).await.unwrap(),
        "b"
    );
    assert_eq!(
        run::<i64>(&mut c, &["TTL", "g"]).await.unwrap(),
        -1,
        "GETSET clears the TTL"
    );
    assert_eq!(run::<String>(&mut c, &["GETDEL", "g"]).await.unwrap(), "c");
    assert_eq!(
        run::<Option<String>>(&mut c, &["GETDEL", "g"])
            .await
            .unwrap(),
        None
    );
    s.stop().await;
}

#[tokio::test]
async fn getex_changes_or_removes_the_ttl() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "k", "v"]).await.unwrap();
    assert_eq!(run::<String>(&mut c, &["GETEX", "k"]).await.unwrap(), "v");
    assert_eq!(
        run::<String>(&mut c, &["GETEX", "k", "EX", "100"])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), 100);
    assert_eq!(
        run::<String>(&mut c, &["GETEX", "k", "PX", "5000"])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(run::<i64>(&mut c, &["PTTL", "k"]).await.unwrap(), 5000);
    assert_eq!(
        run::<String>(&mut c, &["GETEX", "k", "PERSIST"])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), -1);
    let at = (common::T0.0 / 1000 + 50).to_string();
    assert_eq!(
        run::<String>(&mut c, &["GETEX", "k", "EXAT", &at])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), 50);
    let pat = (common::T0.0 + 60_000).to_string();
    assert_eq!(
        run::<String>(&mut c, &["GETEX", "k", "PXAT", &pat])
            .await
            .unwrap(),
        "v"
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), 60);
    // Like Redis, the expire time is checked only for an existing key.
    assert_eq!(
        run::<Option<String>>(&mut c, &["GETEX", "missing", "EX", "0"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["GETEX", "missing", "EX", "5"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        fails(&mut c, &["GETEX", "k", "EX", "0"]).await,
        "ERR invalid expire time in 'getex' command"
    );
    assert_eq!(
        fails(&mut c, &["GETEX", "k", "EX", "5", "PX", "5"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["GETEX", "k", "FOO"]).await,
        "ERR syntax error"
    );
    s.stop().await;
}

#[tokio::test]
async fn mget_mset_msetnx() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(
        run::<String>(&mut c, &["MSET", "a", "1", "b", "2"])
            .await
            .unwrap(),
        "OK"
    );
    let got: Vec<Option<String>> = run(&mut c, &["MGET", "a", "nope", "b"]).await.unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(
        fails(&mut c, &["MSET", "a", "1", "b"]).await,
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        run::<i64>(&mut c, &["MSETNX", "c", "3", "a", "9"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "c"]).await.unwrap(),
        None
    );
    assert_eq!(
        run::<i64>(&mut c, &["MSETNX", "c", "3", "d", "4"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(run::<String>(&mut c, &["GET", "d"]).await.unwrap(), "4");
    assert_eq!(
        fails(&mut c, &["MSETNX", "x", "1", "y"]).await,
        "ERR wrong number of arguments for 'msetnx' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn append_strlen_getrange_setrange() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(
        run::<i64>(&mut c, &["APPEND", "k", "Hello"]).await.unwrap(),
        5
    );
    assert_eq!(
        run::<i64>(&mut c, &["APPEND", "k", " World"])
            .await
            .unwrap(),
        11
    );
    assert_eq!(run::<i64>(&mut c, &["STRLEN", "k"]).await.unwrap(), 11);
    assert_eq!(run::<i64>(&mut c, &["STRLEN", "nope"]).await.unwrap(), 0);
    assert_eq!(
        run::<String>(&mut c, &["GETRANGE", "k", "0", "4"])
            .await
            .unwrap(),
        "Hello"
    );
    assert_eq!(
        run::<String>(&mut c, &["GETRANGE", "k", "-5", "-1"])
            .await
            .unwrap(),
        "World"
    );
    assert_eq!(
        run::<String>(&mut c, &["GETRANGE", "k", "5", "2"])
            .await
            .unwrap(),
        ""
    );
    assert_eq!(
        run::<String>(&mut c, &["GETRANGE", "k", "0", "1000"])
            .await
            .unwrap(),
        "Hello World"
    );
    assert_eq!(
        run::<String>(&mut c, &["GETRANGE", "nope", "0", "-1"])
            .await
            .unwrap(),
        ""
    );
    assert_eq!(
        fails(&mut c, &["GETRANGE", "k", "a", "1"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        run::<i64>(&mut c, &["SETRANGE", "k", "6", "Redis"])
            .await
            .unwrap(),
        11
    );
    assert_eq!(
        run::<String>(&mut c, &["GET", "k"]).await.unwrap(),
        "Hello Redis"
    );
    assert_eq!(
        run::<i64>(&mut c, &["SETRANGE", "pad", "3", "x"])
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        run::<Vec<u8>>(&mut c, &["GET", "pad"]).await.unwrap(),
        b"\0\0\0x"
    );
    assert_eq!(
        run::<i64>(&mut c, &["SETRANGE", "empty", "5", ""])
            .await
            .unwrap(),
        0
    );
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "empty"]).await.unwrap(), 0);
    assert_eq!(
        fails(&mut c, &["SETRANGE", "k", "-1", "x"]).await,
        "ERR offset is out of range"
    );
    assert_eq!(
        fails(&mut c, &["SETRANGE", "k", "536870911", "xx"]).await,
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    s.stop().await;
}

#[tokio::test]
async fn counters_check_integers_and_overflow() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(run::<i64>(&mut c, &["INCR", "n"]).await.unwrap(), 1);
    assert_eq!(
        run::<i64>(&mut c, &["INCRBY", "n", "10"]).await.unwrap(),
        11
    );
    assert_eq!(run::<i64>(&mut c, &["DECR", "n"]).await.unwrap(), 10);
    assert_eq!(
        run::<i64>(&mut c, &["DECRBY", "n", "15"]).await.unwrap(),
        -5
    );
    run::<()>(&mut c, &["SET", "s", "abc"]).await.unwrap();
    assert_eq!(
        fails(&mut c, &["INCR", "s"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        fails(&mut c, &["INCRBY", "n", "1.5"]).await,
        "ERR value is not an integer or out of range"
    );
    run::<()>(&mut c, &["SET", "max", "9223372036854775807"])
        .await
        .unwrap();
    assert_eq!(
        fails(&mut c, &["INCR", "max"]).await,
        "ERR increment or decrement would overflow"
    );
    assert_eq!(
        fails(&mut c, &["DECRBY", "n", "-9223372036854775808"]).await,
        "ERR decrement would overflow"
    );
    // INCR keeps the TTL.
    run::<()>(&mut c, &["SET", "t", "1", "EX", "100"])
        .await
        .unwrap();
    run::<i64>(&mut c, &["INCR", "t"]).await.unwrap();
    assert_eq!(run::<i64>(&mut c, &["TTL", "t"]).await.unwrap(), 100);
    assert_eq!(
        run::<String>(&mut c, &["INCRBYFLOAT", "f", "10.5"])
            .await
            .unwrap(),
        "10.5"
    );
    assert_eq!(
        run::<String>(&mut c, &["INCRBYFLOAT", "f", "0.1"])
            .await
            .unwrap(),
        "10.6"
    );
    assert_eq!(
        run::<String>(&mut c, &["INCRBYFLOAT", "f", "-5e1"])
            .await
            .unwrap(),
        "-39.4"
    );
    assert_eq!(
        run::<String>(&mut c, &["INCRBYFLOAT", "n", "5"])
            .await
            .unwrap(),
        "0"
    );
    assert_eq!(
        fails(&mut c, &["INCRBYFLOAT", "s", "1"]).await,
        "ERR value is not a valid float"
    );
    assert_eq!(
        fails(&mut c, &["INCRBYFLOAT", "f", "abc"]).await,
        "ERR value is not a valid float"
    );
    assert_eq!(
        fails(&mut c, &["INCRBYFLOAT", "f", "inf"]).await,
        "ERR increment would produce NaN or Infinity"
    );
    let v: Value = run(&mut c, &["GET", "f"]).await.unwrap();
    assert_eq!(v, Value::BulkString(b"-39.4".to_vec()));
    s.stop().await;
}
