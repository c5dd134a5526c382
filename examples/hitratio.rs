//! Hit ratio of every eviction policy of the real `Store` on Zipf
//! workloads, next to an exact LRU and Belady's offline optimum.
//!
//! Workload: 1,000,000 keys (16-byte names, 16-byte values), Zipf with
//! alpha 0.9 and 0.99, 10,000,000 requests (`get`; on a miss `set`), one
//! millisecond of simulated clock per request, fixed seed. Cache sizes: 1%
//! and 10% of the keyspace in keys. The store runs with its default 4096
//! partitions and `maxmemory` set to exactly that many entries times the
//! (fixed) charge of one entry, so the store evicts by bytes and the
//! reference algorithms count entries: the two agree because every entry
//! costs the same. For the volatile-* policies every key is written with a
//! TTL of one year (so all keys are candidates; volatile-ttl then evicts in
//! insertion order); for the others keys have no TTL. noeviction fills the
//! cache once and then refuses writes.
//!
//! `cargo run --release --example hitratio [-- --requests N] [--policies a,b]`

use std::collections::BinaryHeap;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use shoal::store::{EvictionPolicy, Store, StoreConfig, UnixMillis};

/// Number of distinct keys.
const KEYS: usize = 1_000_000;
/// Trace seed.
const SEED: u64 = 0x5eed_cafe;

/// Inverse-CDF Zipf sampler over ranks `0..n`.
struct Zipf {
    /// Cumulative probabilities, ascending, ending at 1.
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for rank in 1..=n {
            sum += 1.0 / (rank as f64).powf(alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> u32 {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32
    }
}

fn trace(alpha: f64, requests: usize) -> Vec<u32> {
    let zipf = Zipf::new(KEYS, alpha);
    let mut rng = StdRng::seed_from_u64(SEED);
    (0..requests).map(|_| zipf.sample(&mut rng)).collect()
}

/// Exact LRU over key ids with an intrusive doubly-linked list.
fn exact_lru(trace: &[u32], capacity: usize) -> f64 {
    const NIL: u32 = u32::MAX;
    let mut prev = vec![NIL; KEYS];
    let mut next = vec![NIL; KEYS];
    let mut present = vec![false; KEYS];
    let (mut head, mut tail, mut len, mut hits) = (NIL, NIL, 0usize, 0u64);
    for &k in trace {
        let ku = k as usize;
        if present[ku] {
            hits += 1;
            if head == k {
                continue;
            }
            let (p, n) = (prev[ku], next[ku]);
            next[p as usize] = n;
            if n != NIL {
                prev[n as usize] = p;
            } else {
                tail = p;
            }
        } else {
            if len == capacity {
                let victim = tail;
                tail = prev[victim as usize];
                next[tail as usize] = NIL;
                present[victim as usize] = false;
                len -= 1;
            }
            present[ku] = true;
            len += 1;
        }
        prev[ku] = NIL;
        next[ku] = head;
        if head != NIL {
            prev[head as usize] = k;
        }
        head = k;
        if tail == NIL {
            tail = k;
        }
    }
    hits as f64 / trace.len() as f64
}

/// Belady's MIN: on a miss with a full cache, evict the key used furthest
/// in the future (every missed key is admitted).
fn belady(trace: &[u32], capacity: usize) -> f64 {
    let mut next_use = vec![u32::MAX; trace.len()];
    let mut last = vec![u32::MAX; KEYS];
    for i in (0..trace.len()).rev() {
        next_use[i] = last[trace[i] as usize];
        last[trace[i] as usize] = i as u32;
    }
    let mut current = vec![u32::MAX; KEYS];
    let mut present = vec![false; KEYS];
    let mut heap = BinaryHeap::new();
    let (mut len, mut hits) = (0usize, 0u64);
    for (i, &k) in trace.iter().enumerate() {
        let ku = k as usize;
        if present[ku] {
            hits += 1;
        } else {
            while len == capacity {
                let Some((nu, v)) = heap.pop() else { break };
                if present[v as usize] && current[v as usize] == nu {
                    present[v as usize] = false;
                    len -= 1;
                }
            }
            present[ku] = true;
            len += 1;
        }
        current[ku] = next_use[i];
        heap.push((next_use[i], k));
    }
    hits as f64 / trace.len() as f64
}

fn key_name(k: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(format!("key:{k:012}").as_bytes());
    out
}

/// The real store under `policy`, sized to hold exactly `capacity` entries.
fn store_hit_ratio(
    trace: &[u32],
    capacity: usize,
    policy: EvictionPolicy,
    names: &[[u8; 16]],
) -> f64 {
    let value = Bytes::from_static(&[b'v'; 16]);
    let t0 = UnixMillis(1_700_000_000_000);
    let probe = Store::new(StoreConfig::default());
    let _ = probe.set(&names[0], value.clone(), None, t0);
    let per_entry = probe.stats().used_memory;
    let store = Store::new(StoreConfig {
        maxmemory: per_entry * capacity as u64,
        policy,
        ..StoreConfig::default()
    });
    let ttl_ms = policy
        .name()
        .starts_with("volatile")
        .then_some(365 * 24 * 3600 * 1000);
    let mut hits = 0u64;
    for (i, &k) in trace.iter().enumerate() {
        let now = t0.plus(i as u64);
        let name = &names[k as usize];
        if store.read(name, now, |e| e.is_some()) {
            hits += 1;
        } else {
            // noeviction refuses once full; that is its hit ratio.
            let _ = store.set(name, value.clone(), ttl_ms.map(|ms| now.plus(ms)), now);
        }
    }
    hits as f64 / trace.len() as f64
}

struct Args {
    requests: usize,
    policies: Vec<EvictionPolicy>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 10_000_000,
        policies: EvictionPolicy::ALL.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--requests" => args.requests = v.parse().map_err(|e| format!("--requests: {e}"))?,
            "--policies" => {
                args.policies = v
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("{e}")))
                    .collect::<Result<_, String>>()?
            }
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\nusage: hitratio [--requests N] [--policies a,b,...]");
            std::process::exit(2);
        }
    };
    let names: Vec<[u8; 16]> = (0..KEYS as u32).map(key_name).collect();
    let points = [(0.9, 0.01), (0.9, 0.10), (0.99, 0.01), (0.99, 0.10)];
    let mut columns: Vec<Vec<(String, f64)>> = Vec::new();
    for alpha in [0.9, 0.99] {
        let tr = trace(alpha, args.requests);
        for &(a, frac) in points.iter().filter(|(a, _)| *a == alpha) {
            let _ = a;
            let cap = (KEYS as f64 * frac) as usize;
            let mut col = vec![
                ("exact LRU".to_string(), exact_lru(&tr, cap)),
                ("Belady (MIN)".to_string(), belady(&tr, cap)),
            ];
            for &p in &args.policies {
                let started = std::time::Instant::now();
                col.push((p.name().to_string(), store_hit_ratio(&tr, cap, p, &names)));
                eprintln!(
                    "alpha={alpha} cache={}% {p}: {:.1?}",
                    frac * 100.0,
                    started.elapsed()
                );
            }
            columns.push(col);
        }
    }
    println!(
        "hit ratio, {} requests, {KEYS} keys, Zipf, store with 4096 partitions",
        args.requests
    );
    println!(
        "{:<16}{:>14}{:>14}{:>14}{:>14}",
        "policy", "a=0.9 c=1%", "a=0.9 c=10%", "a=0.99 c=1%", "a=0.99 c=10%"
    );
    for row in 0..columns[0].len() {
        print!("{:<16}", columns[0][row].0);
        for col in &columns {
            print!("{:>13.1}%", col[row].1 * 100.0);
        }
        println!();
    }
}
