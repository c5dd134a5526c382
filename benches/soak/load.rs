//! A memtier-style mixed load: closed-loop connections spread over the
//! nodes, each sending SET or GET (ratio `sets : gets`) on keys drawn
//! uniformly from a key space much larger than the cluster's memory.
//!
//! Owns: the worker tasks and the [`Meter`] they report into (operations,
//! errors, latencies). Must not: sample, judge or print results.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// What the load looks like.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Distinct keys (`soak:0` .. `soak:{keys-1}`).
    pub keys: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// SETs per `sets + gets` operations.
    pub sets: u32,
    /// GETs per `sets + gets` operations.
    pub gets: u32,
    /// Connections per node.
    pub conns_per_node: usize,
}

/// Latencies are handed to the meter in batches of this many.
const BATCH: usize = 256;

/// Counters the workers add to and the sampler drains.
#[derive(Debug, Default)]
pub struct Meter {
    /// Operations completed (successes and errors) since the last drain.
    ops: AtomicU64,
    /// Errors since the start (error replies, I/O errors, reconnects).
    errors: AtomicU64,
    /// Latencies in microseconds since the last drain.
    latencies: Mutex<Vec<u32>>,
    /// The first few error texts, to print.
    first_errors: Mutex<Vec<String>>,
    /// Set to stop the workers.
    stop: AtomicBool,
}

/// One interval's figures.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    /// Operations in the interval.
    pub ops: u64,
    /// Median latency, microseconds.
    pub p50_us: u32,
    /// 99th percentile latency, microseconds.
    pub p99_us: u32,
    /// Errors since the start.
    pub errors: u64,
}

impl Meter {
    /// Take the figures accumulated since the last call.
    pub fn drain(&self) -> Interval {
        let ops = self.ops.swap(0, Ordering::Relaxed);
        let mut lat =
            std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        lat.sort_unstable();
        Interval {
            ops,
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Errors since the start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The first error texts seen.
    pub fn first_errors(&self) -> Vec<String> {
        self.first_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ask the workers to stop after their current operation.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn error(&self, text: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if first.len() < 5 {
            first.push(text);
        }
    }

    fn record(&self, batch: &mut Vec<u32>) {
        self.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(batch);
    }
}

/// The value at quantile `q` of sorted `v` (0 if empty).
fn percentile(v: &[u32], q: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// Start `conns_per_node` workers per address.
pub fn spawn(addrs: &[SocketAddr], opts: &LoadOptions, meter: &Arc<Meter>) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        for c in 0..opts.conns_per_node {
            let seed = 0x9e37_79b9_7f4a_7c15 ^ ((n as u64) << 32 | c as u64);
            out.push(tokio::spawn(worker(
                *addr,
                opts.clone(),
                meter.clone(),
                seed,
            )));
        }
    }
    out
}

/// One closed-loop connection: an operation, its reply, the next.
async fn worker(addr: SocketAddr, opts: LoadOptions, meter: Arc<Meter>, seed: u64) {
    let mut rng = SplitMix(seed);
    let value = vec![b'x'; opts.value_size];
    let mut batch = Vec::with_capacity(BATCH);
    let mut con = None;
    while !meter.stop.load(Ordering::Relaxed) {
        let c = match con.as_mut() {
            Some(c) => c,
            None => match connect(addr).await {
                Ok(c) => con.insert(c),
                Err(e) => {
                    meter.error(format!("connect {addr}: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let key = format!("soak:{}", rng.next() % opts.keys);
        let set = rng.next() % u64::from(opts.sets + opts.gets) < u64::from(opts.sets);
        let mut cmd = redis::cmd(if set { "SET" } else { "GET" });
        cmd.arg(&key);
        if set {
            cmd.arg(&value[..]);
        }
        let t = Instant::now();
        let res: redis::RedisResult<redis::Value> = cmd.query_async(c).await;
        let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
        match res {
            Ok(redis::Value::ServerError(e)) => meter.error(format!("{addr}: {e:?}")),
            Ok(_) => {}
            Err(e) => {
                meter.error(format!("{addr}: {e}"));
                if e.is_io_error() || e.is_connection_dropped() {
                    con = None;
                }
            }
        }
        batch.push(us);
        if batch.len() >= BATCH {
            meter.record(&mut batch);
        }
    }
    meter.record(&mut batch);
}

/// A reply slower than this counts as an error (the redis crate's default,
/// 500 ms, is shorter than what a loaded 2-core machine sometimes takes;
/// slow replies show in p99 instead).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to `addr`.
async fn connect(addr: SocketAddr) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT));
    redis::Client::open(format!("redis://{addr}/"))?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// SplitMix64: a tiny, seeded generator (key and operation choice).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
