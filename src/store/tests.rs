//! Behaviour tests of the whole store (single-threaded, controlled clock).

use bytes::Bytes;

use super::entry::entry_cost;
use super::*;

const T0: UnixMillis = UnixMillis(1_000_000);

fn store(partitions: u32, maxmemory: u64, policy: EvictionPolicy) -> Store {
    Store::new(StoreConfig {
        partitions,
        maxmemory,
        policy,
    })
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:08}").into_bytes()
}

fn val(n: usize) -> Bytes {
    Bytes::from(vec![b'v'; n])
}

#[test]
fn set_then_get_returns_the_value() {
    let s = store(16, 0, EvictionPolicy::default());
    s.set(b"a", Bytes::from_static(b"1"), None, T0).unwrap();
    assert_eq!(s.get(b"a", T0), Some(Bytes::from_static(b"1")));
    assert_eq!(s.get(b"b", T0), None);
    let st = s.stats();
    assert_eq!((st.hits, st.misses, st.keys), (1, 1, 1));
}

#[test]
fn expired_key_is_invisible_and_reclaimed_on_access() {
    let s = store(16, 0, EvictionPolicy::default());
    s.set(b"a", val(3), Some(T0.plus(10)), T0).unwrap();
    assert!(s.get(b"a", T0.plus(9)).is_some());
    assert!(s.get(b"a", T0.plus(10)).is_none());
    let st = s.stats();
    assert_eq!(
        (st.keys, st.expired, st.keys_with_ttl, st.used_memory),
        (0, 1, 0, 0)
    );
}

#[test]
fn update_sees_the_live_entry_and_keep_changes_nothing() {
    let s = store(4, 0, EvictionPolicy::default());
    s.set(b"n", Bytes::from_static(b"41"), None, T0).unwrap();
    let v1 = s.peek(b"n", T0, |e| e.map(|e| e.version)).unwrap();
    let seen = s
        .update(b"n", T0, |e| (Mutation::Keep, e.map(|e| e.value.to_vec())))
        .unwrap();
    assert_eq!(seen, Some(b"41".to_vec()));
    assert_eq!(s.peek(b"n", T0, |e| e.map(|e| e.version)), Some(v1));
    s.update(b"n", T0, |_| {
        (
            Mutation::Set {
                value: Bytes::from_static(b"42"),
                expires_at: None,
            },
            (),
        )
    })
    .unwrap();
    assert!(s.peek(b"n", T0, |e| e.map(|e| e.version)).unwrap() > v1);
}

#[test]
fn set_expiry_changes_ttl_and_counts() {
    let s = store(4, 0, EvictionPolicy::default());
    s.set(b"a", val(1), None, T0).unwrap();
    s.update(b"a", T0, |_| (Mutation::SetExpiry(Some(T0.plus(5))), ()))
        .unwrap();
    assert_eq!(s.stats().keys_with_ttl, 1);
    assert_eq!(
        s.peek(b"a", T0, |e| e.and_then(|e| e.expires_at)),
        Some(T0.plus(5))
    );
    s.update(b"a", T0, |_| (Mutation::SetExpiry(None), ()))
        .unwrap();
    assert_eq!(s.stats().keys_with_ttl, 0);
    assert!(s.get(b"a", T0.plus(100)).is_some());
}

#[test]
fn delete_reports_whether_a_live_key_was_removed() {
    let s = store(4, 0, EvictionPolicy::default());
    s.set(b"a", val(1), Some(T0.plus(1)), T0).unwrap();
    s.set(b"b", val(1), None, T0).unwrap();
    assert!(!s.delete(b"a", T0.plus(2)));
    assert!(s.delete(b"b", T0));
    assert!(!s.delete(b"b", T0));
}

#[test]
fn memory_accounting_returns_to_zero_after_deleting_everything() {
    let s = store(8, 0, EvictionPolicy::default());
    for i in 0..500 {
        s.set(&key(i), val(i % 50), None, T0).unwrap();
    }
    for i in 0..500 {
        s.set(
            &key(i),
            val(i % 7),
            (i % 2 == 0).then_some(T0.plus(100)),
            T0,
        )
        .unwrap();
    }
    assert_eq!(
        s.memory_usage(&key(3), T0),
        Some(entry_cost(12, 3) as usize)
    );
    for i in 0..500 {
        assert!(s.delete(&key(i), T0));
    }
    let st = s.stats();
    assert_eq!((st.keys, st.keys_with_ttl, st.used_memory), (0, 0, 0));
}

#[test]
fn noeviction_refuses_writes_that_need_memory_but_allows_deletes() {
    let per = entry_cost(12, 10);
    let s = store(8, per * 10, EvictionPolicy::NoEviction);
    for i in 0..10 {
        s.set(&key(i), val(10), None, T0).unwrap();
    }
    assert_eq!(
        s.set(&key(10), val(10), None, T0),
        Err(StoreError::OutOfMemory)
    );
    assert_eq!(s.get(&key(10), T0), None);
    s.set(&key(0), val(5), None, T0).unwrap();
    assert!(s.delete(&key(1), T0));
    s.set(&key(10), val(10), None, T0).unwrap();
}

#[test]
fn every_policy_keeps_used_memory_under_the_limit() {
    let per = entry_cost(12, 20);
    for policy in EvictionPolicy::ALL {
        let s = store(64, per * 100, policy);
        for i in 0..1000 {
            let ttl = Some(T0.plus(1_000 + i as u64));
            let r = s.set(&key(i), val(20), ttl, T0);
            if policy != EvictionPolicy::NoEviction {
                assert_eq!(r, Ok(()), "{policy}");
            }
            assert!(s.stats().used_memory <= per * 100, "{policy}");
        }
        // The limit is used well: keys (and the FIFO queues' own memory,
        // 0 for the other policies) fill at least 90% of it.
        let held = s.stats().keys * per + s.queues.bytes();
        assert!(held >= per * 90, "{policy}: {}", s.stats().keys);
    }
}

#[test]
fn volatile_policies_never_evict_keys_without_ttl() {
    let per = entry_cost(12, 20);
    for policy in [
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ] {
        let s = store(64, per * 50, policy);
        for i in 0..30 {
            s.set(&key(i), val(20), None, T0).unwrap();
        }
        for i in 30..200 {
            s.set(&key(i), val(20), Some(T0.plus(10_000)), T0).unwrap();
        }
        for i in 0..30 {
            assert!(s.get(&key(i), T0).is_some(), "{policy} evicted {i}");
        }
        let s2 = store(64, per * 10, policy);
        for i in 0..10 {
            s2.set(&key(i), val(20), None, T0).unwrap();
        }
        assert_eq!(
            s2.set(&key(99), val(20), None, T0),
            Err(StoreError::OutOfMemory)
        );
    }
}

#[test]
fn volatile_ttl_evicts_the_nearest_expiry_first() {
    let per = entry_cost(12, 20);
    let s = store(64, per * 20, EvictionPolicy::VolatileTtl);
    for i in 0..20 {
        s.set(&key(i), val(20), Some(T0.plus(1000 * (i as u64 + 1))), T0)
            .unwrap();
    }
    s.set(&key(100), val(20), Some(T0.plus(1_000_000)), T0)
        .unwrap();
    assert!(s.get(&key(19), T0).is_some());
    assert_eq!(s.stats().evicted, 1);
}

/// Reads a hot set, then streams one-time keys through: S3-FIFO keeps the
/// hot set, FIFO loses it.
fn hot_keys_surviving_a_scan(policy: EvictionPolicy) -> usize {
    let per = entry_cost(12, 20);
    let s = store(4096, per * 1000, policy);
    for round in 0..3 {
        for i in 0..500 {
            if s.get(&key(i), T0.plus(round)).is_none() {
                s.set(&key(i), val(20), None, T0).unwrap();
            }
        }
    }
    for i in 10_000..30_000 {
        s.set(&key(i), val(20), None, T0.plus(10)).unwrap();
        if i % 20 == 0 {
            // The hot set stays hot during the scan.
            for h in 0..500 {
                s.get(&key(h), T0.plus(10));
            }
        }
    }
    (0..500)
        .filter(|&i| s.peek(&key(i), T0, |e| e.is_some()))
        .count()
}

#[test]
fn s3_fifo_is_scan_resistant() {
    let s3 = hot_keys_surviving_a_scan(EvictionPolicy::S3Fifo);
    let fifo = hot_keys_surviving_a_scan(EvictionPolicy::Fifo);
    assert!(s3 >= 450, "s3-fifo kept {s3} of 500");
    assert!(fifo < s3, "fifo kept {fifo}, s3-fifo {s3}");
}

#[test]
fn lowering_maxmemory_at_run_time_evicts_on_the_next_writes() {
    let per = entry_cost(12, 20);
    for policy in [EvictionPolicy::S3Fifo, EvictionPolicy::AllKeysLru] {
        let s = store(64, 0, policy);
        for i in 0..1000 {
            s.set(&key(i), val(20), None, T0).unwrap();
        }
        s.set_maxmemory(per * 100);
        s.set(&key(5000), val(20), None, T0).unwrap();
        assert!(s.stats().used_memory <= per * 100, "{policy}");
        s.set_policy(EvictionPolicy::Fifo);
        s.set_policy(EvictionPolicy::AllKeysLfu);
        s.set_policy(EvictionPolicy::S3Fifo);
        for i in 6000..7000 {
            s.set(&key(i), val(20), None, T0).unwrap();
        }
        assert!(s.stats().used_memory <= per * 100, "{policy}");
        s.set_maxmemory(0);
        for i in 0..1000 {
            s.set(&key(i), val(20), None, T0).unwrap();
        }
        assert!(s.stats().keys >= 1000);
    }
}

#[test]
fn a_value_larger_than_maxmemory_is_refused() {
    let s = store(8, 1000, EvictionPolicy::AllKeysLru);
    s.set(b"small", val(10), None, T0).unwrap();
    assert_eq!(
        s.set(b"big", val(5000), None, T0),
        Err(StoreError::OutOfMemory)
    );
}

#[test]
fn scan_returns_every_key_once_even_when_tables_grow() {
    for partitions in [1, 7, 4096] {
        let s = store(partitions, 0, EvictionPolicy::default());
        for i in 0..300 {
            s.set(&key(i), val(1), None, T0).unwrap();
        }
        let mut seen = std::collections::HashMap::new();
        let mut cursor = 0;
        let mut extra = 1000;
        loop {
            let page = s.scan(cursor, 10, T0, |_| true);
            for k in page.keys {
                *seen.entry(k).or_insert(0) += 1;
            }
            for _ in 0..20 {
                s.set(&key(extra), val(1), None, T0).unwrap();
                extra += 1;
            }
            cursor = page.cursor;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..300 {
            assert_eq!(seen.get(&key(i)[..]), Some(&1), "P={partitions} key {i}");
        }
    }
}

#[test]
fn scan_filter_and_expiry_hide_keys() {
    let s = store(16, 0, EvictionPolicy::default());
    s.set(b"a1", val(1), None, T0).unwrap();
    s.set(b"a2", val(1), Some(T0.plus(1)), T0).unwrap();
    s.set(b"b1", val(1), None, T0).unwrap();
    let page = s.scan(0, 1000, T0.plus(5), |k| k.starts_with(b"a"));
    assert_eq!(page.keys, vec![Bytes::from_static(b"a1")]);
    assert_eq!(page.cursor, 0);
}

#[test]
fn expire_cycle_reclaims_expired_keys_nobody_reads() {
    let s = store(64, 0, EvictionPolicy::default());
    for i in 0..1000 {
        let ttl = if i % 4 == 0 { None } else { Some(T0.plus(10)) };
        s.set(&key(i), val(1), ttl, T0).unwrap();
    }
    let mut removed = 0;
    for _ in 0..100 {
        removed += s.expire_cycle(T0.plus(10), 200);
    }
    assert_eq!(removed, 750);
    let st = s.stats();
    assert_eq!((st.keys, st.expired, st.keys_with_ttl), (250, 750, 0));
}

#[test]
fn expire_cycle_is_bounded_by_its_budget() {
    let s = store(4, 0, EvictionPolicy::default());
    for i in 0..1000 {
        s.set(&key(i), val(1), Some(T0.plus(1)), T0).unwrap();
    }
    assert!(s.expire_cycle(T0.plus(1), 50) <= 50);
}

#[test]
fn random_key_finds_a_live_key() {
    let s = store(4096, 0, EvictionPolicy::default());
    assert_eq!(s.random_key(T0), None);
    s.set(b"only", val(1), None, T0).unwrap();
    s.set(b"gone", val(1), Some(T0.plus(1)), T0).unwrap();
    assert_eq!(s.random_key(T0.plus(2)), Some(Bytes::from_static(b"only")));
}

#[test]
fn flush_removes_everything() {
    let s = store(16, 10_000, EvictionPolicy::S3Fifo);
    for i in 0..50 {
        s.set(&key(i), val(1), Some(T0.plus(100)), T0).unwrap();
    }
    s.flush();
    let st = s.stats();
    assert_eq!((st.keys, st.keys_with_ttl, st.used_memory), (0, 0, 0));
    assert_eq!(s.get(&key(1), T0), None);
    for i in 0..500 {
        s.set(&key(i), val(1), None, T0).unwrap();
    }
    assert!(s.stats().used_memory <= 10_000);
}

#[test]
fn lfu_keeps_frequently_read_keys() {
    let per = entry_cost(12, 20);
    let s = store(64, per * 100, EvictionPolicy::AllKeysLfu);
    for i in 0..50 {
        s.set(&key(i), val(20), None, T0).unwrap();
        for _ in 0..50 {
            s.get(&key(i), T0);
        }
    }
    for i in 1000..3000 {
        s.set(&key(i), val(20), None, T0).unwrap();
    }
    let kept = (0..50)
        .filter(|&i| s.peek(&key(i), T0, |e| e.is_some()))
        .count();
    assert!(kept >= 45, "kept {kept}");
}

#[test]
fn concurrent_writers_evict_without_deadlock_and_respect_the_limit() {
    let per = entry_cost(12, 20);
    for policy in [
        EvictionPolicy::S3Fifo,
        EvictionPolicy::Fifo,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::VolatileTtl,
    ] {
        let s = std::sync::Arc::new(store(8, per * 200, policy));
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let k = key(t * 100_000 + i);
                        s.set(&k, val(20), Some(T0.plus(1_000_000)), T0).unwrap();
                        if i % 7 == 0 {
                            s.delete(&key(t * 100_000 + i / 2), T0);
                        }
                        s.get(&key(t * 100_000 + i / 3), T0);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let st = s.stats();
        // Racing writers may each add one entry after the same check.
        assert!(st.used_memory <= per * 204, "{policy}: {}", st.used_memory);
        assert!(st.keys > 100, "{policy}: {}", st.keys);
        // The FIFO queues' own memory counts too (0 for the others).
        let queues = s.queues.bytes();
        assert_eq!(st.used_memory, st.keys * per + queues, "{policy}");
    }
}

#[test]
fn a_deadline_in_the_past_removes_the_key_at_once() {
    let s = store(4, 0, EvictionPolicy::default());
    s.set(b"a", val(1), Some(T0), T0).unwrap();
    assert_eq!(s.stats().keys, 0);
    s.set(b"b", val(1), None, T0).unwrap();
    s.update(b"b", T0, |_| (Mutation::SetExpiry(Some(UnixMillis(5))), ()))
        .unwrap();
    let st = s.stats();
    assert_eq!((st.keys, st.used_memory), (0, 0));
}

#[test]
fn store_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
}

#[test]
fn mass_deletes_shrink_the_partitions() {
    let s = store(4, 0, EvictionPolicy::default());
    for i in 0..10_000 {
        s.set(&key(i), val(1), None, T0).unwrap();
    }
    for i in 10..10_000 {
        assert!(s.delete(&key(i), T0));
    }
    let slots: usize = (0..4).map(|p| s.lock(p).slots.len()).sum();
    assert!(slots < 200, "{slots} slots kept for 10 keys");
    for i in 0..10 {
        assert!(s.get(&key(i), T0).is_some());
    }
}

#[test]
fn an_overhead_makes_every_policy_evict_earlier() {
    let per = entry_cost(12, 20);
    for policy in EvictionPolicy::ALL {
        if policy == EvictionPolicy::NoEviction {
            continue;
        }
        let with = store(64, per * 100, policy);
        with.set_overhead(per * 40);
        assert_eq!(with.limit(), per * 60);
        let without = store(64, per * 100, policy);
        for i in 0..1000 {
            let ttl = Some(T0.plus(1_000 + i as u64));
            with.set(&key(i), val(20), ttl, T0).unwrap();
            without.set(&key(i), val(20), ttl, T0).unwrap();
            // Within one entry of the lowered limit, as without overhead
            // within one entry of maxmemory (the queues' growth is
            // estimated).
            let used = with.stats().used_memory;
            assert!(used <= per * 61, "{policy} after {i}: {used}");
        }
        let (a, b) = (with.stats().keys, without.stats().keys);
        assert!(a <= 60 && a < b, "{policy}: {a} keys with, {b} without");
    }
}

#[test]
fn an_overhead_never_takes_the_limit_below_half_of_maxmemory() {
    let per = entry_cost(12, 20);
    let s = store(64, per * 100, EvictionPolicy::AllKeysLru);
    s.set_overhead(per * 1000);
    assert_eq!(s.limit(), per * 50);
    for i in 0..1000 {
        s.set(&key(i), val(20), None, T0).unwrap();
    }
    let used = s.stats().used_memory;
    assert!((per * 45..=per * 50).contains(&used), "used {used}");
}

#[test]
fn noeviction_refuses_writes_past_the_lowered_limit() {
    let per = entry_cost(12, 20);
    let s = store(64, per * 100, EvictionPolicy::NoEviction);
    s.set_overhead(per * 40);
    let stored = (0..100)
        .filter(|&i| s.set(&key(i), val(20), None, T0).is_ok())
        .count();
    assert!(stored <= 60, "stored {stored}");
}
