//! Transaction counters of a standalone node: an `EXEC` that ran, one
//! aborted by a watched key, an `EXECABORT`, a `CROSSSLOT` refusal and a
//! `DISCARD` each move their `/metrics` counter and `INFO stats` field by
//! exactly one, and the units' gate waits are counted.

mod admin_support;

use std::collections::HashMap;

use admin_support::*;
use prometheus_parse::Sample;
use redis::Value;
use redis::aio::MultiplexedConnection;
use shoal::config::Config;
use shoal::node::Node;
use shoal::store::partition_of;

fn standalone() -> Config {
    Config {
        listen: ANY_PORT,
        admin: Some(ANY_PORT),
        log_level: "warn".into(),
        ..Config::default()
    }
}

async fn client(node: &Node) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", node.resp_addr()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Send one command; its reply, or the error it answered as text.
async fn call(c: &mut MultiplexedConnection, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<Value>(c).await.map_err(|e| e.to_string())
}

/// `INFO stats` as field -> value.
async fn info_stats(c: &mut MultiplexedConnection) -> HashMap<String, u64> {
    let text: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(c)
        .await
        .expect("INFO stats");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// What the transaction families read in one scrape.
fn txn_counts(samples: &[Sample]) -> Vec<(String, f64)> {
    let mut out = vec![
        (
            "exec".to_string(),
            value(samples, "shoal_txn_exec_total", &[]),
        ),
        (
            "discard".to_string(),
            value(samples, "shoal_txn_discard_total", &[]),
        ),
        (
            "gate_waits".to_string(),
            value(samples, "shoal_txn_gate_wait_seconds", &[]),
        ),
    ];
    for reason in [
        "watch",
        "execabort",
        "crossslot",
        "syncing",
        "outcome_unknown",
        "failed",
    ] {
        out.push((
            format!("aborted_{reason}"),
            value(samples, "shoal_txn_aborted_total", &[("reason", reason)]),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transaction_outcome_moves_its_counter_by_one() {
    let node = Node::start(standalone()).await.expect("node starts");
    let addr = admin(&node);
    let mut c = client(&node).await;
    let mut other = client(&node).await;
    let before = txn_counts(&scrape(addr).await);
    let info_before = info_stats(&mut c).await;
    assert!(
        find(
            &scrape(addr).await,
            "shoal_txn_aborted_total",
            &[("reason", "watch")]
        )
        .is_some(),
        "every reason is exported, even at zero"
    );

    // An EXEC that ran (one unit: one gate wait).
    assert_eq!(call(&mut c, &["MULTI"]).await, Ok(Value::Okay));
    call(&mut c, &["SET", "{t}a", "1"]).await.expect("queued");
    call(&mut c, &["INCR", "{t}a"]).await.expect("queued");
    let ran = call(&mut c, &["EXEC"]).await.expect("EXEC");
    assert_eq!(ran, Value::Array(vec![Value::Okay, Value::Int(2)]));

    // A watched key changed by another connection: the null reply (the
    // unit still took its gate to check the watch).
    assert_eq!(call(&mut c, &["WATCH", "{t}a"]).await, Ok(Value::Okay));
    call(&mut other, &["SET", "{t}a", "9"]).await.expect("SET");
    assert_eq!(call(&mut c, &["MULTI"]).await, Ok(Value::Okay));
    call(&mut c, &["GET", "{t}a"]).await.expect("queued");
    assert_eq!(call(&mut c, &["EXEC"]).await, Ok(Value::Nil));

    // A command refused while queuing: EXECABORT.
    assert_eq!(call(&mut c, &["MULTI"]).await, Ok(Value::Okay));
    assert!(call(&mut c, &["NOSUCHCOMMAND"]).await.is_err());
    let aborted = call(&mut c, &["EXEC"]).await.expect_err("EXECABORT");
    assert!(
        aborted.to_ascii_uppercase().contains("EXECABORT"),
        "{aborted}"
    );

    // Watches over two partitions: CROSSSLOT.
    let n = Config::default().partitions;
    let far = (0..)
        .map(|i| format!("far{i}"))
        .find(|k| partition_of(k.as_bytes(), n) != partition_of(b"{t}a", n))
        .expect("a key in another partition");
    assert_eq!(call(&mut c, &["WATCH", "{t}a"]).await, Ok(Value::Okay));
    assert_eq!(call(&mut c, &["MULTI"]).await, Ok(Value::Okay));
    call(&mut c, &["SET", &far, "1"]).await.expect("queued");
    let cross = call(&mut c, &["EXEC"]).await.expect_err("CROSSSLOT");
    assert!(cross.to_ascii_uppercase().contains("CROSSSLOT"), "{cross}");

    // A DISCARD.
    assert_eq!(call(&mut c, &["MULTI"]).await, Ok(Value::Okay));
    call(&mut c, &["SET", "{t}b", "1"]).await.expect("queued");
    assert_eq!(call(&mut c, &["DISCARD"]).await, Ok(Value::Okay));

    let after = txn_counts(&scrape(addr).await);
    let moved: Vec<(String, f64)> = before
        .iter()
        .zip(&after)
        .map(|((name, b), (_, a))| (name.clone(), a - b))
        .collect();
    let expected: Vec<(String, f64)> = [
        ("exec", 1.0),
        ("discard", 1.0),
        ("gate_waits", 2.0),
        ("aborted_watch", 1.0),
        ("aborted_execabort", 1.0),
        ("aborted_crossslot", 1.0),
        ("aborted_syncing", 0.0),
        ("aborted_outcome_unknown", 0.0),
        ("aborted_failed", 0.0),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), *v))
    .collect();
    assert_eq!(moved, expected);

    let info = info_stats(&mut c).await;
    for (field, delta) in [
        ("txn_exec", 1),
        ("txn_discard", 1),
        ("txn_gate_waits", 2),
        ("txn_aborted_watch", 1),
        ("txn_aborted_execabort", 1),
        ("txn_aborted_crossslot", 1),
        ("txn_aborted_syncing", 0),
        ("txn_aborted_outcome_unknown", 0),
        ("txn_aborted_failed", 0),
    ] {
        let (Some(b), Some(a)) = (info_before.get(field), info.get(field)) else {
            panic!("INFO stats lacks {field}: {info:?}");
        };
        assert_eq!(a - b, delta, "{field}");
    }
    assert!(info.contains_key("txn_gate_wait_usec"));
    drop((c, other));
    node.shutdown().await;
}
