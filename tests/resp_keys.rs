//! Keyspace commands through the `redis` crate, TTLs driven by the manual clock.

mod common;

use std::collections::BTreeSet;

use common::{T0, TestServer, fails, run};

#[tokio::test]
async fn del_unlink_exists_type_touch() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["MSET", "a", "1", "b", "2", "c", "3"])
        .await
        .unwrap();
    assert_eq!(
        run::<i64>(&mut c, &["EXISTS", "a", "a", "nope"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        run::<String>(&mut c, &["TYPE", "a"]).await.unwrap(),
        "string"
    );
    assert_eq!(
        run::<String>(&mut c, &["TYPE", "nope"]).await.unwrap(),
        "none"
    );
    assert_eq!(
        run::<i64>(&mut c, &["TOUCH", "a", "b", "nope"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(run::<i64>(&mut c, &["DEL", "a", "nope"]).await.unwrap(), 1);
    assert_eq!(run::<i64>(&mut c, &["UNLINK", "b", "c"]).await.unwrap(), 2);
    assert_eq!(
        run::<i64>(&mut c, &["EXISTS", "a", "b", "c"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        fails(&mut c, &["DEL"]).await,
        "ERR wrong number of arguments for 'del' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn expire_family_sets_deadlines_and_honours_conditions() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "k", "v"]).await.unwrap();
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), -1);
    assert_eq!(run::<i64>(&mut c, &["TTL", "nope"]).await.unwrap(), -2);
    assert_eq!(run::<i64>(&mut c, &["PTTL", "nope"]).await.unwrap(), -2);
    assert_eq!(run::<i64>(&mut c, &["EXPIRETIME", "k"]).await.unwrap(), -1);
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "nope", "10"]).await.unwrap(),
        0
    );
    // XX needs a TTL; NX needs none.
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "10", "XX"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "10", "NX"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "20", "NX"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), 10);
    // GT only raises, LT only lowers.
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "5", "GT"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "50", "GT"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRE", "k", "60", "LT"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        run::<i64>(&mut c, &["PEXPIRE", "k", "40000", "LT"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(run::<i64>(&mut c, &["PTTL", "k"]).await.unwrap(), 40_000);
    let at = (T0.0 / 1000 + 100).to_string();
    assert_eq!(
        run::<i64>(&mut c, &["EXPIREAT", "k", &at]).await.unwrap(),
        1
    );
    assert_eq!(
        run::<i64>(&mut c, &["EXPIRETIME", "k"]).await.unwrap(),
        T0.0 as i64 / 1000 + 100
    );
    let pat = (T0.0 + 200_500).to_string();
    assert_eq!(
        run::<i64>(&mut c, &["PEXPIREAT", "k", &pat]).await.unwrap(),
        1
    );
    assert_eq!(
        run::<i64>(&mut c, &["PEXPIRETIME", "k"]).await.unwrap(),
        T0.0 as i64 + 200_500
    );
    assert_eq!(run::<i64>(&mut c, &["PERSIST", "k"]).await.unwrap(), 1);
    assert_eq!(run::<i64>(&mut c, &["PERSIST", "k"]).await.unwrap(), 0);
    assert_eq!(run::<i64>(&mut c, &["TTL", "k"]).await.unwrap(), -1);
    // A past deadline deletes the key.
    assert_eq!(run::<i64>(&mut c, &["EXPIRE", "k", "-1"]).await.unwrap(), 1);
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "k"]).await.unwrap(), 0);
    assert_eq!(
        fails(&mut c, &["EXPIRE", "k", "10", "NX", "XX"]).await,
        "ERR NX and XX, GT or LT options at the same time are not compatible"
    );
    assert_eq!(
        fails(&mut c, &["EXPIRE", "k", "10", "GT", "LT"]).await,
        "ERR GT and LT options at the same time are not compatible"
    );
    assert_eq!(
        fails(&mut c, &["EXPIRE", "k", "10", "FOO"]).await,
        "ERR Unsupported option FOO"
    );
    assert_eq!(
        fails(&mut c, &["EXPIRE", "k", "x"]).await,
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        fails(&mut c, &["EXPIRE", "k", "9223372036854775807"]).await,
        "ERR invalid expire time in 'expire' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn keys_expire_when_the_clock_passes_their_deadline() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "short", "v", "PX", "100"])
        .await
        .unwrap();
    run::<()>(&mut c, &["SET", "long", "v", "EX", "100"])
        .await
        .unwrap();
    s.clock.advance(99);
    assert_eq!(run::<i64>(&mut c, &["PTTL", "short"]).await.unwrap(), 1);
    s.clock.advance(1);
    assert_eq!(
        run::<Option<String>>(&mut c, &["GET", "short"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(run::<i64>(&mut c, &["TTL", "short"]).await.unwrap(), -2);
    assert_eq!(run::<i64>(&mut c, &["TTL", "long"]).await.unwrap(), 100);
    s.clock.advance(100_000);
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "long"]).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn rename_moves_value_and_ttl() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "a", "1", "EX", "50"])
        .await
        .unwrap();
    run::<()>(&mut c, &["SET", "b", "2"]).await.unwrap();
    assert_eq!(
        run::<String>(&mut c, &["RENAME", "a", "c"]).await.unwrap(),
        "OK"
    );
    assert_eq!(run::<String>(&mut c, &["GET", "c"]).await.unwrap(), "1");
    assert_eq!(run::<i64>(&mut c, &["TTL", "c"]).await.unwrap(), 50);
    assert_eq!(run::<i64>(&mut c, &["EXISTS", "a"]).await.unwrap(), 0);
    assert_eq!(
        fails(&mut c, &["RENAME", "a", "d"]).await,
        "ERR no such key"
    );
    assert_eq!(
        run::<i64>(&mut c, &["RENAMENX", "c", "b"]).await.unwrap(),
        0
    );
    assert_eq!(
        run::<i64>(&mut c, &["RENAMENX", "c", "d"]).await.unwrap(),
        1
    );
    assert_eq!(
        run::<String>(&mut c, &["RENAME", "b", "d"]).await.unwrap(),
        "OK"
    );
    assert_eq!(run::<String>(&mut c, &["GET", "d"]).await.unwrap(), "2");
    assert_eq!(
        run::<String>(&mut c, &["RENAME", "d", "d"]).await.unwrap(),
        "OK"
    );
    s.stop().await;
}

async fn scan_all(c: &mut redis::aio::MultiplexedConnection, extra: &[&str]) -> BTreeSet<String> {
    let mut cursor = "0".to_string();
    let mut seen = BTreeSet::new();
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let (next, keys): (String, Vec<String>) = run(c, &args).await.unwrap();
        seen.extend(keys);
        if next == "0" {
            return seen;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn scan_keys_randomkey_dbsize_flush() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(
        run::<Option<String>>(&mut c, &["RANDOMKEY"]).await.unwrap(),
        None
    );
    for i in 0..200 {
        let k = format!("user:{i}");
        run::<()>(&mut c, &["SET", &k, "v"]).await.unwrap();
    }
    run::<()>(&mut c, &["SET", "other", "v"]).await.unwrap();
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 201);
    assert_eq!(scan_all(&mut c, &[]).await.len(), 201);
    let users = scan_all(&mut c, &["MATCH", "user:*", "COUNT", "7"]).await;
    assert_eq!(users.len(), 200);
    assert!(users.contains("user:199"));
    assert_eq!(
        scan_all(&mut c, &["MATCH", "user:1?", "TYPE", "string"])
            .await
            .len(),
        10
    );
    assert!(scan_all(&mut c, &["TYPE", "hash"]).await.is_empty());
    assert_eq!(fails(&mut c, &["SCAN", "x"]).await, "ERR invalid cursor");
    assert_eq!(
        fails(&mut c, &["SCAN", "0", "COUNT", "0"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["SCAN", "0", "FOO", "1"]).await,
        "ERR syntax error"
    );
    let mut keys: Vec<String> = run(&mut c, &["KEYS", "user:1[0-2]"]).await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["user:10", "user:11", "user:12"]);
    assert_eq!(
        run::<Vec<String>>(&mut c, &["KEYS", "*"])
            .await
            .unwrap()
            .len(),
        201
    );
    let rk: String = run(&mut c, &["RANDOMKEY"]).await.unwrap();
    assert!(rk == "other" || rk.starts_with("user:"));
    assert_eq!(run::<String>(&mut c, &["FLUSHDB"]).await.unwrap(), "OK");
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 0);
    run::<()>(&mut c, &["SET", "x", "1"]).await.unwrap();
    assert_eq!(
        run::<String>(&mut c, &["FLUSHALL", "ASYNC"]).await.unwrap(),
        "OK"
    );
    assert_eq!(
        run::<String>(&mut c, &["FLUSHALL", "SYNC"]).await.unwrap(),
        "OK"
    );
    assert_eq!(
        fails(&mut c, &["FLUSHALL", "LATER"]).await,
        "ERR syntax error"
    );
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn unknown_commands_name_their_arguments_like_redis() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(
        fails(&mut c, &["LPUSH", "a", "b"]).await,
        "ERR unknown command 'LPUSH', with args beginning with: 'a' 'b' "
    );
    assert_eq!(
        fails(&mut c, &["hset", "h"]).await,
        "ERR unknown command 'hset', with args beginning with: 'h' "
    );
    s.stop().await;
}

#[tokio::test]
async fn active_expiry_reclaims_keys_nobody_reads() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    for i in 0..100 {
        run::<()>(&mut c, &["SET", &format!("t{i}"), "v", "PX", "10"])
            .await
            .unwrap();
    }
    run::<()>(&mut c, &["SET", "keep", "v"]).await.unwrap();
    s.clock.advance(11);
    // The server's cron (10 runs a second) removes them without any access;
    // poll its counter instead of sleeping a fixed time.
    let mut expired = 0;
    for _ in 0..500 {
        let info: String = run(&mut c, &["INFO", "stats"]).await.unwrap();
        expired = info
            .lines()
            .find_map(|l| l.strip_prefix("expired_keys:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if expired == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(expired, 100);
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 1);
    s.stop().await;
}
