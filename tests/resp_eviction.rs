//! Memory limits through the server: eviction keeps `used_memory` near the
//! limit; `noeviction` answers the OOM error.

mod common;

use common::{TestServer, fails, run};
use shoal::store::EvictionPolicy;

/// Bytes `used_memory` may exceed `maxmemory` by: one entry in flight
/// (value + key + overhead), as the store documents.
const SLACK: u64 = 4 * 1024;

const LIMIT: u64 = 1 << 20;

async fn fill(c: &mut redis::aio::MultiplexedConnection, bytes: u64) {
    let value = "x".repeat(1000);
    let n = bytes / 1000;
    let mut i = 0;
    while i < n {
        let mut p = redis::pipe();
        for j in i..(i + 100).min(n) {
            p.cmd("SET").arg(format!("key:{j}")).arg(&value).ignore();
        }
        p.query_async::<()>(c)
            .await
            .expect("writes succeed under eviction");
        i += 100;
    }
}

/// A numeric field of an INFO section.
fn field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO has no numeric {name}: {info}"))
}

fn used_memory(info: &str) -> u64 {
    field(info, "used_memory")
}

#[tokio::test]
async fn writing_five_times_the_limit_stays_under_it_with_every_evicting_policy() {
    for policy in [
        EvictionPolicy::S3Fifo,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::Fifo,
    ] {
        let s = TestServer::with(|c| {
            c.maxmemory = LIMIT;
            c.eviction = policy;
        })
        .await;
        let mut c = s.conn().await;
        fill(&mut c, 5 * LIMIT).await;
        let info: String = run(&mut c, &["INFO", "memory"]).await.unwrap();
        let used = used_memory(&info);
        assert!(
            used <= LIMIT + SLACK,
            "{policy}: used {used} > limit {LIMIT} + {SLACK}"
        );
        // Eviction marks are capped at a sixteenth of the limit and
        // charged inside used_memory.
        let cap = field(&info, "evict_marks_cap_bytes");
        assert_eq!(cap, LIMIT / 16, "{policy}");
        assert!(field(&info, "evict_marks_bytes") <= cap, "{policy}: {info}");
        let stats: String = run(&mut c, &["INFO", "stats"]).await.unwrap();
        assert!(
            !stats.contains("evicted_keys:0\r\n"),
            "{policy}: keys were evicted"
        );
        let keys: i64 = run(&mut c, &["DBSIZE"]).await.unwrap();
        assert!(keys > 0 && keys < 5000, "{policy}: {keys} keys");
        s.stop().await;
    }
}

#[tokio::test]
async fn noeviction_answers_oom_and_still_serves_reads_and_deletes() {
    let s = TestServer::with(|c| {
        c.maxmemory = LIMIT;
        c.eviction = EvictionPolicy::NoEviction;
    })
    .await;
    let mut c = s.conn().await;
    let value = "x".repeat(1000);
    let mut refused = None;
    for i in 0..5000 {
        let k = format!("key:{i}");
        if let Err(e) = run::<()>(&mut c, &["SET", &k, &value]).await {
            refused = Some((i, common::err_text(&e)));
            break;
        }
    }
    let (at, text) = refused.expect("writes are refused before 5x the limit");
    assert_eq!(
        text,
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert!(at > 100, "about a megabyte fits, refused at {at}");
    assert_eq!(
        run::<String>(&mut c, &["GET", "key:0"]).await.unwrap(),
        value
    );
    assert_eq!(
        fails(&mut c, &["APPEND", "key:0", &"y".repeat(20_000)]).await,
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(
        run::<i64>(&mut c, &["DEL", "key:0", "key:1"])
            .await
            .unwrap(),
        2
    );
    // Raising the limit at run time lets writes in again.
    run::<()>(&mut c, &["CONFIG", "SET", "maxmemory", "10mb"])
        .await
        .unwrap();
    run::<()>(&mut c, &["SET", "after", &value]).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn lowering_maxmemory_at_run_time_evicts_on_the_next_writes() {
    let s = TestServer::with(|c| c.maxmemory = 4 * LIMIT).await;
    let mut c = s.conn().await;
    fill(&mut c, 3 * LIMIT).await;
    run::<()>(&mut c, &["CONFIG", "SET", "maxmemory", &LIMIT.to_string()])
        .await
        .unwrap();
    run::<()>(&mut c, &["SET", "trigger", "x"]).await.unwrap();
    fill(&mut c, LIMIT / 10).await;
    let info: String = run(&mut c, &["INFO", "memory"]).await.unwrap();
    let used = used_memory(&info);
    assert!(
        used <= LIMIT + SLACK,
        "used {used} after lowering the limit"
    );
    s.stop().await;
}
