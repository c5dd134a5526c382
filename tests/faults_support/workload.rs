//! A writer thread: unique keys, one SET each, spread over the target
//! nodes in turn; every write the server acknowledged with OK is recorded
//! with its value. A write that failed or timed out is unacknowledged: it
//! may or may not have been applied, and is not checked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::cluster::connect;
use super::wait_until;

/// A client's patience with one request; longer than any replica timeout a
/// write may wait for, shorter than a test's bounds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two writes: keeps the load modest on a 2-core machine.
const PACE: Duration = Duration::from_millis(2);

/// Pause after a failed write before the next target is tried.
const BACKOFF: Duration = Duration::from_millis(50);

/// What a workload thread was told and did.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    /// Every acknowledged write, in order: (key, value).
    pub writes: Vec<(String, String)>,
    /// Writes that failed or timed out (unacknowledged).
    pub failed: u64,
}

/// A running writer; [`Workload::stop`] joins it.
pub struct Workload {
    /// Tells the thread to finish.
    stop: Arc<AtomicBool>,
    /// Acknowledged writes so far.
    acked: Arc<AtomicU64>,
    /// Failed writes so far.
    failed: Arc<AtomicU64>,
    /// Where the thread sends its writes; tests may change it.
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    /// The thread.
    handle: Option<JoinHandle<Acked>>,
}

impl Workload {
    /// Start writing keys `{prefix}:{n}` through `targets`, in turn.
    pub fn start(prefix: &str, targets: Vec<SocketAddr>) -> Workload {
        assert!(!targets.is_empty(), "a workload needs a target");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let targets = Arc::new(Mutex::new(targets));
        let run = Runner {
            prefix: prefix.to_string(),
            stop: stop.clone(),
            acked: acked.clone(),
            failed: failed.clone(),
            targets: targets.clone(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("workload-{prefix}"))
            .spawn(move || run.run())
            .expect("spawn workload thread");
        Workload {
            stop,
            acked,
            failed,
            targets,
            handle: Some(handle),
        }
    }

    /// Acknowledged writes so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Failed writes so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Replace the nodes written through.
    pub fn set_targets(&self, targets: Vec<SocketAddr>) {
        assert!(!targets.is_empty(), "a workload needs a target");
        if let Ok(mut t) = self.targets.lock() {
            *t = targets;
        }
    }

    /// Wait until `more` further writes were acknowledged; panics after
    /// `limit` (the cluster stopped accepting writes).
    pub fn wait_for_more(&self, more: u64, limit: Duration) {
        let goal = self.acked() + more;
        let ok = wait_until(limit, || self.acked() >= goal);
        assert!(
            ok.is_some(),
            "the workload got only {} of {goal} acknowledged writes within {limit:?} ({} failed)",
            self.acked(),
            self.failed()
        );
    }

    /// Stop the thread; everything it did.
    pub fn stop(mut self) -> Acked {
        self.finish()
    }

    fn finish(&mut self) -> Acked {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("workload thread panicked"))
            .unwrap_or_default()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The thread's side.
struct Runner {
    /// Key prefix.
    prefix: String,
    /// Set when the thread must finish.
    stop: Arc<AtomicBool>,
    /// Acknowledged counter.
    acked: Arc<AtomicU64>,
    /// Failed counter.
    failed: Arc<AtomicU64>,
    /// Nodes to write through.
    targets: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Runner {
    fn run(self) -> Acked {
        let mut out = Acked::default();
        let mut cons: Vec<(SocketAddr, redis::Connection)> = Vec::new();
        let mut turn = 0usize;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let targets = self.targets.lock().map(|t| t.clone()).unwrap_or_default();
            if targets.is_empty() {
                std::thread::sleep(BACKOFF);
                continue;
            }
            let addr = targets[turn % targets.len()];
            turn += 1;
            seq += 1;
            let key = format!("{}:{seq}", self.prefix);
            let value = format!("{}-v{seq}", self.prefix);
            match set(&mut cons, addr, &key, &value) {
                Ok(()) => {
                    out.writes.push((key, value));
                    self.acked.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(PACE);
                }
                Err(_) => {
                    out.failed += 1;
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    cons.retain(|(a, _)| *a != addr);
                    std::thread::sleep(BACKOFF);
                }
            }
        }
        out
    }
}

/// SET `key` `value` through `addr`, reusing a cached connection.
fn set(
    cons: &mut Vec<(SocketAddr, redis::Connection)>,
    addr: SocketAddr,
    key: &str,
    value: &str,
) -> redis::RedisResult<()> {
    let pos = match cons.iter().position(|(a, _)| *a == addr) {
        Some(p) => p,
        None => {
            cons.push((addr, connect(addr, REQUEST_TIMEOUT)?));
            cons.len() - 1
        }
    };
    let con = &mut cons[pos].1;
    redis::cmd("SET").arg(key).arg(value).query::<()>(con)
}
