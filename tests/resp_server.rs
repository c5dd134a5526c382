//! Server commands: INFO, CONFIG, TIME, MEMORY USAGE, DBSIZE.

mod common;

use std::collections::HashMap;

use common::{T0, TestServer, fails, run};

/// INFO text as `field -> value`.
fn fields(info: &str) -> HashMap<String, String> {
    info.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
        .collect()
}

#[tokio::test]
async fn info_reports_sections_and_counters() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "a", "1"]).await.unwrap();
    run::<()>(&mut c, &["SET", "b", "2", "EX", "100"])
        .await
        .unwrap();
    run::<Option<String>>(&mut c, &["GET", "a"]).await.unwrap();
    run::<Option<String>>(&mut c, &["GET", "nope"])
        .await
        .unwrap();
    let info: String = run(&mut c, &["INFO"]).await.unwrap();
    for section in ["# Server", "# Clients", "# Memory", "# Stats", "# Keyspace"] {
        assert!(info.contains(section), "{section} missing in {info}");
    }
    let f = fields(&info);
    assert_eq!(f["keyspace_hits"], "1");
    assert_eq!(f["keyspace_misses"], "1");
    assert_eq!(f["db0"], "keys=2,expires=1,avg_ttl=0");
    assert!(f["total_commands_processed"].parse::<u64>().unwrap() >= 4);
    assert!(f["used_memory"].parse::<u64>().unwrap() > 0);
    for k in [
        "evicted_keys",
        "expired_keys",
        "instantaneous_ops_per_sec",
        "connected_clients",
        "maxmemory_policy",
    ] {
        assert!(f.contains_key(k), "{k} missing");
    }
    let only: String = run(&mut c, &["INFO", "keyspace"]).await.unwrap();
    assert!(
        only.starts_with("# Keyspace") && !only.contains("# Server"),
        "{only}"
    );
    let two: String = run(&mut c, &["INFO", "server", "STATS"]).await.unwrap();
    assert!(two.contains("# Server") && two.contains("# Stats") && !two.contains("# Memory"));
    let all: String = run(&mut c, &["INFO", "everything"]).await.unwrap();
    assert!(all.contains("# Memory"));
    // RESETSTAT zeroes the hit counters.
    assert_eq!(
        run::<String>(&mut c, &["CONFIG", "RESETSTAT"])
            .await
            .unwrap(),
        "OK"
    );
    let f = fields(&run::<String>(&mut c, &["INFO", "stats"]).await.unwrap());
    assert_eq!(f["keyspace_hits"], "0");
    assert_eq!(f["keyspace_misses"], "0");
    s.stop().await;
}

#[tokio::test]
async fn config_get_and_set() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    let got: HashMap<String, String> = run(&mut c, &["CONFIG", "GET", "maxmemory*"]).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got["maxmemory"], "0");
    let tools: HashMap<String, String> = run(&mut c, &["CONFIG", "GET", "save", "appendonly"])
        .await
        .unwrap();
    assert_eq!(tools["save"], "");
    assert_eq!(tools["appendonly"], "no");
    let none: HashMap<String, String> = run(&mut c, &["CONFIG", "GET", "nosuch"]).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(
        run::<String>(&mut c, &["CONFIG", "SET", "maxmemory", "100mb"])
            .await
            .unwrap(),
        "OK"
    );
    assert_eq!(s.store.maxmemory(), 100 << 20);
    assert_eq!(
        run::<String>(
            &mut c,
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]
        )
        .await
        .unwrap(),
        "OK"
    );
    let got: HashMap<String, String> = run(&mut c, &["CONFIG", "GET", "MAXMEMORY*"]).await.unwrap();
    assert_eq!(got["maxmemory"], (100u64 << 20).to_string());
    assert_eq!(got["maxmemory-policy"], "allkeys-lru");
    assert_eq!(
        fails(&mut c, &["CONFIG", "SET", "maxmemory", "lots"]).await,
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
    );
    assert!(fails(&mut c, &["CONFIG", "SET", "maxmemory-policy", "lru"]).await.starts_with(
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: noeviction"
    ));
    assert_eq!(
        fails(&mut c, &["CONFIG", "SET", "foo", "bar"]).await,
        "ERR Unknown option or number of arguments for CONFIG SET - 'foo'"
    );
    // All or nothing: a bad pair leaves the good one unapplied.
    assert!(
        fails(&mut c, &["CONFIG", "SET", "maxmemory", "1mb", "foo", "x"])
            .await
            .starts_with("ERR Unknown option")
    );
    assert_eq!(s.store.maxmemory(), 100 << 20);
    assert_eq!(
        fails(&mut c, &["CONFIG", "FOO"]).await,
        "ERR unknown subcommand 'FOO'. Try CONFIG HELP."
    );
    assert_eq!(
        fails(&mut c, &["CONFIG", "GET"]).await,
        "ERR wrong number of arguments for 'config|get' command"
    );
    s.stop().await;
}

#[tokio::test]
async fn time_follows_the_server_clock() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    s.clock.advance(1_234);
    let (secs, micros): (String, String) = run(&mut c, &["TIME"]).await.unwrap();
    assert_eq!(secs, (T0.0 / 1000 + 1).to_string());
    assert_eq!(micros, "234000");
    s.stop().await;
}

#[tokio::test]
async fn memory_usage_and_dbsize() {
    let s = TestServer::start().await;
    let mut c = s.conn().await;
    run::<()>(&mut c, &["SET", "k", &"x".repeat(100)])
        .await
        .unwrap();
    let used: i64 = run(&mut c, &["MEMORY", "USAGE", "k"]).await.unwrap();
    assert!(used >= 101, "{used}");
    let with_samples: i64 = run(&mut c, &["MEMORY", "USAGE", "k", "SAMPLES", "5"])
        .await
        .unwrap();
    assert_eq!(with_samples, used);
    assert_eq!(
        run::<Option<i64>>(&mut c, &["MEMORY", "USAGE", "nope"])
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        fails(&mut c, &["MEMORY", "USAGE", "k", "SAMPLES"]).await,
        "ERR syntax error"
    );
    assert_eq!(
        fails(&mut c, &["MEMORY", "FOO"]).await,
        "ERR unknown subcommand 'FOO'. Try MEMORY HELP."
    );
    assert_eq!(run::<i64>(&mut c, &["DBSIZE"]).await.unwrap(), 1);
    s.stop().await;
}
