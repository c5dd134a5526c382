//! The memory guard of a lone node, in a test binary that installs the
//! counting allocator (as the `shoal` binary does): the process's
//! allocations are counted against `maxmemory`, and INFO memory shows the
//! figures.

use std::time::Duration;

use shoal::config::Config;
use shoal::memory::CountingAlloc;
use shoal::memory::guard::HEAP_RESERVE_SHARE;
use shoal::node::Node;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const LIMIT: u64 = 8 << 20;

/// A numeric field of an INFO section.
fn field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_lowers_its_limit_by_what_the_process_holds_and_reports_it() {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        admin: None,
        maxmemory: LIMIT,
        partitions: 64,
        ..Config::default()
    };
    let node = Node::start(cfg).await.expect("node starts");
    // The guard's first tick sets the overhead: at least the heap reserve.
    let reserve = LIMIT / HEAP_RESERVE_SHARE;
    let mut waited = 0;
    while node.store().overhead() < reserve && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(node.store().overhead() >= reserve, "no overhead was set");
    assert!(node.store().limit() <= LIMIT - reserve);
    assert!(node.store().limit() >= LIMIT / 2);

    let client = redis::Client::open(format!("redis://{}/", node.resp_addr())).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    let allocated = field(&info, "allocator_allocated").expect("allocator_allocated");
    assert!(allocated > 0, "{info}");
    assert!(field(&info, "used_memory_startup").is_some(), "{info}");
    assert!(
        field(&info, "memory_guard_overhead").unwrap_or(0) >= reserve,
        "{info}"
    );
    assert!(
        field(&info, "maxmemory_effective").unwrap_or(LIMIT) < LIMIT,
        "{info}"
    );
    node.shutdown().await;
}
