//! The process-level fault harness: real `shoal serve` processes on
//! loopback, real faults, and a checker of what clients were promised.
//!
//! # What it owns
//! - [`cluster`]: N `shoal serve` children with generated certificates on
//!   free loopback ports; `kill -9`, SIGSTOP/SIGCONT, graceful restart
//!   (SIGTERM, then the same name on the same ports), joins; `INFO cluster`
//!   reads; every child killed on drop, log tails printed when a test fails.
//! - [`netsplit`]: network partitions between groups of nodes as nftables
//!   rules on their gossip (QUIC/UDP) ports, in a table of their own that
//!   is deleted on drop; rules name only that test's ports, so tests running
//!   in parallel cannot cut each other.
//! - [`workload`]: a client thread writing unique keys and recording every
//!   acknowledged write.
//! - [`check`]: reads every acknowledged key back (ok / lost / stale), and
//!   the convergence checks (`SHOAL DIGEST` across each partition's holders,
//!   `SHOAL LOCAL` on each replica `SHOAL PARTITION` names,
//!   `cluster_partitions_underreplicated` on every node).
//!
//! # What it must not do
//! Touch anything but its own processes, ports and nftables tables; sleep
//! where a condition can be polled; assert on timing (bounds are generous
//! and only catch a hang).

#![allow(dead_code)]

pub mod check;
pub mod cluster;
pub mod netsplit;
pub mod workload;

use std::time::{Duration, Instant};

/// Poll `check` every 100 ms until it holds or `limit` passes; the time it
/// took when it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like [`wait_until`], for a check that explains what is still wrong:
/// `Ok(elapsed)` once it returns no problems, else the last problems seen.
pub fn wait_clean(
    limit: Duration,
    mut problems: impl FnMut() -> Vec<String>,
) -> Result<Duration, Vec<String>> {
    let start = Instant::now();
    loop {
        let now = problems();
        if now.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(now);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The first `n` problems, one per line, and how many there were.
pub fn show(problems: &[String], n: usize) -> String {
    let mut s = format!("{} problem(s)", problems.len());
    for p in problems.iter().take(n) {
        s.push_str("\n  ");
        s.push_str(p);
    }
    s
}
