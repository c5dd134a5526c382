//! Store micro-benchmarks: a hit, a miss, an overwrite, and an insert that
//! has to evict (S3-FIFO and sampled LRU), single-threaded.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use shoal::store::{EvictionPolicy, Store, StoreConfig, UnixMillis};

const KEYS: u64 = 100_000;
const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

fn name(i: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(format!("key:{i:012}").as_bytes());
    out
}

fn filled(maxmemory: u64, policy: EvictionPolicy) -> Store {
    let store = Store::new(StoreConfig {
        maxmemory,
        policy,
        ..StoreConfig::default()
    });
    let value = Bytes::from_static(&[b'v'; 100]);
    for i in 0..KEYS {
        let _ = store.set(&name(i), value.clone(), None, NOW);
    }
    store
}

fn lookups(c: &mut Criterion) {
    let store = filled(0, EvictionPolicy::default());
    let mut i = 0u64;
    c.bench_function("store_get_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get(&name(i), NOW))
        })
    });
    c.bench_function("store_get_miss", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.get(&name(i + KEYS), NOW))
        })
    });
    let value = Bytes::from_static(&[b'w'; 100]);
    c.bench_function("store_set_overwrite", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            black_box(store.set(&name(i), value.clone(), None, NOW))
        })
    });
}

fn evicting_inserts(c: &mut Criterion) {
    let value = Bytes::from_static(&[b'v'; 100]);
    for policy in [EvictionPolicy::S3Fifo, EvictionPolicy::AllKeysLru] {
        let probe = filled(0, policy);
        let limit = probe.stats().used_memory / 2;
        drop(probe);
        let store = filled(limit, policy);
        let mut i = KEYS;
        c.bench_function(&format!("store_set_evicting_{policy}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(store.set(&name(i), value.clone(), None, NOW))
            })
        });
    }
}

/// A pipelined batch of 16 GETs, as the RESP server runs one: cold, and
/// with the batch's keys prefetched first.
fn batched_lookups(c: &mut Criterion) {
    let store = filled(0, EvictionPolicy::default());
    let mut i = 0u64;
    let mut batch = [[0u8; 16]; 16];
    for prefetch in [false, true] {
        let label = if prefetch { "prefetched" } else { "cold" };
        c.bench_function(&format!("store_get_batch16_{label}"), |b| {
            b.iter(|| {
                for k in batch.iter_mut() {
                    i = (i + 7919) % KEYS;
                    *k = name(i);
                }
                if prefetch {
                    store.prefetch(batch.iter().map(|k| &k[..]));
                }
                for k in &batch {
                    black_box(store.get(k, NOW));
                }
            })
        });
    }
}

criterion_group!(benches, lookups, batched_lookups, evicting_inserts);
criterion_main!(benches);
