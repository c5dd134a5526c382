//! Unit tests of `marks.rs`: the marks' cap and charge, lossy windows,
//! tombstone charges, a full replica refusing repairs.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::clock::{NodeTag, SharedHlc};
use crate::store::{Body, Origin, Record, StoreConfig, UnixMillis, Version};

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

fn versioned(partitions: u32, maxmemory: u64) -> Store {
    let s = Store::new(StoreConfig {
        partitions,
        maxmemory,
        ..StoreConfig::default()
    });
    s.enable_versions(Arc::new(SharedHlc::new(NodeTag(2))), 60_000);
    s
}

fn value(key: &str, version: u64) -> Record {
    Record {
        key: Bytes::copy_from_slice(key.as_bytes()),
        version: Version(version << 16),
        node: 1,
        body: Body::Value {
            value: Bytes::from(vec![b'v'; 100]),
            expires_at: 0,
        },
    }
}

/// The sum of every live entry's charge (what `used_memory` was
/// before marks and tombstones were charged).
fn entries_bytes(s: &Store) -> u64 {
    (0..s.partitions())
        .map(|p| {
            let part = s.lock(p);
            part.slots
                .iter()
                .filter(|e| e.is_live())
                .map(|e| e.cost())
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn marks_stay_under_their_share_of_maxmemory_under_sustained_eviction() {
    let s = versioned(4, 256 * 1024);
    for i in 0..50_000u64 {
        s.apply(&value(&format!("k{i}"), i + 1), NOW).unwrap();
    }
    let st = s.mark_stats();
    assert!(s.stats().evicted > 40_000, "the store evicted");
    assert_eq!(st.cap_bytes, 256 * 1024 / MARK_SHARE);
    assert!(st.marks > 0, "marks are kept up to the cap");
    assert!(
        st.bytes <= st.cap_bytes,
        "{} bytes of marks over the cap {} ({} marks, cap {} a partition, bound {})",
        st.bytes,
        st.cap_bytes,
        st.marks,
        s.marks_cap(),
        bytes_bound(s.marks_cap())
    );
    assert_eq!(st.marks, 4 * s.marks_cap() as u64);
    assert_eq!(st.lossy_partitions, 4, "every partition forgot marks");
    assert_eq!(
        s.stats().used_memory,
        entries_bytes(&s) + st.bytes + s.queues.bytes(),
        "marks (and the eviction queues) are charged to used_memory"
    );
    assert!(s.stats().used_memory <= 256 * 1024);
    let big = versioned(4096, 64 << 20);
    assert_eq!(big.marks_cap(), 6, "the figure in the module docs");
    assert_eq!(versioned(64, 64 * 1024).marks_cap(), 0);
}

#[test]
fn tombstones_are_charged_until_purged() {
    let s = versioned(2, 0);
    s.set(b"held", Bytes::from_static(b"v"), None, NOW).unwrap();
    let before = s.stats().used_memory;
    assert!(s.delete(b"held", NOW));
    let mut tomb = value("gone", 1);
    tomb.body = Body::Tombstone;
    assert!(s.apply(&tomb, NOW).unwrap());
    let want = tomb_cost(4) + tomb_cost(4);
    assert_eq!(s.stats().used_memory, want);
    assert!(
        before >= tomb_cost(4),
        "a delete frees at least its tombstone"
    );
    assert_eq!(s.mark_stats().tombstone_bytes, want);
    assert_eq!(s.purge_tombstones(NOW.plus(60_001)), 2);
    assert_eq!(s.stats().used_memory, 0);
    s.apply(&tomb, NOW).unwrap();
    s.flush();
    assert_eq!(s.stats().used_memory, 0, "a flush gives the charge back");
}

#[test]
fn a_full_replica_refuses_repairs_of_keys_it_lacks_but_applies_updates_and_tombstones() {
    let s = versioned(1, 32 * 1024);
    let mut v = 1;
    let mut i = 0;
    while s.stats().evicted == 0 {
        s.apply(&value(&format!("k{i}"), v), NOW).unwrap();
        i += 1;
        v += 1;
    }
    let held: Vec<String> = (0..i)
        .map(|n| format!("k{n}"))
        .filter(|k| s.get(k.as_bytes(), NOW).is_some())
        .collect();
    let (keys, used) = (s.stats().keys, s.stats().used_memory);
    // A repair of a key not held: refused, nothing evicted for it.
    let evicted = s.stats().evicted;
    let fresh = value("fresh", v);
    assert!(!s.apply_from(&fresh, NOW, Origin::Repair).unwrap());
    assert!(s.get(b"fresh", NOW).is_none());
    assert_eq!(s.stats().evicted, evicted, "nothing evicted for it");
    assert_eq!(s.mark_stats().refused, 1);
    assert!(
        !s.apply_from(&fresh, NOW, Origin::Repair).unwrap(),
        "the mark keeps its resend out"
    );
    assert_eq!(s.stats().keys, keys);
    assert!(s.stats().used_memory <= used + 256, "only a mark more");
    // An update of a held key applies.
    let update = value(&held[0], v + 1);
    assert!(s.apply_from(&update, NOW, Origin::Repair).unwrap());
    assert_eq!(s.record(held[0].as_bytes(), NOW), Some(update));
    // A tombstone of a held key applies.
    let mut tomb = value(&held[1], v + 2);
    tomb.body = Body::Tombstone;
    assert!(s.apply_from(&tomb, NOW, Origin::Repair).unwrap());
    assert!(s.get(held[1].as_bytes(), NOW).is_none());
    assert_eq!(s.record(held[1].as_bytes(), NOW), Some(tomb));
    // A live replicated write of a new key is stored, evicting others.
    let write = value("written", v + 3);
    assert!(s.apply_from(&write, NOW, Origin::Write).unwrap());
    assert!(s.get(b"written", NOW).is_some());
    assert!(s.stats().evicted > evicted);
}

#[test]
fn a_lossy_partition_compares_equal_to_any_copy() {
    let full = versioned(1, 16 * 1024);
    let other = versioned(1, 0);
    for i in 0..2_000u64 {
        let r = value(&format!("k{i}"), i + 1);
        full.apply(&r, NOW).unwrap();
        other.apply(&r, NOW).unwrap();
    }
    let p = crate::store::PartitionId(0);
    let (a, b) = (full.digest_or_empty(p, NOW), other.digest_or_empty(p, NOW));
    assert_ne!(a, b, "the full copy reports the lossy digest");
    assert_eq!(a.differing(&b), 0, "nothing to repair while lossy");
    let later = NOW.plus(LOSSY_MS);
    let a = full.digest_or_empty(p, later);
    assert_ne!(a.differing(&other.digest_or_empty(p, later)), 0);
}

fn mark(v: u64) -> EvictMark {
    EvictMark {
        version: v,
        node: 1,
        expires_at: 0,
    }
}

#[test]
fn a_partition_at_its_cap_forgets_its_oldest_mark_and_turns_lossy() {
    let mut m = Marks::default();
    for h in 0..10u64 {
        m.insert(h, mark(h), 10, 1_000);
    }
    assert!(!m.is_lossy(1_000), "nothing forgotten yet");
    m.insert(10, mark(10), 10, 1_000);
    assert_eq!(m.len(), 10);
    assert!(m.get(0).is_none(), "the oldest went first");
    assert!(m.get(10).is_some());
    assert!(m.is_lossy(1_000));
    assert!(!m.is_lossy(1_000 + LOSSY_MS), "the window ends");
}

#[test]
fn a_new_lossy_window_waits_until_the_real_digest_was_taken() {
    let mut m = Marks::default();
    m.lose(1_000);
    let after = 1_000 + LOSSY_MS;
    m.lose(after);
    assert!(!m.is_lossy(after), "no digest compared since the window");
    assert!(!m.digest_is_lossy(after));
    m.lose(after + 1);
    assert!(m.digest_is_lossy(after + 1), "compared: a loss reopens it");
}

#[test]
fn the_ring_stays_bounded_when_marks_come_and_go() {
    let mut m = Marks::default();
    for i in 0..10_000u64 {
        m.insert(i % 7, mark(i), 8, 1);
        m.remove(i % 7);
    }
    assert!(m.order.len() <= ring_max(8));
    for i in 0..10_000u64 {
        m.insert(i % 100, mark(i), 8, 1);
        assert!(m.bytes() <= bytes_bound(8));
    }
}

#[test]
fn the_charge_follows_the_table_capacity() {
    let mut m = Marks::default();
    assert_eq!(m.bytes(), 0);
    for h in 0..100u64 {
        m.insert(h, mark(h), 1000, 1);
    }
    let per_mark = m.bytes() / 100;
    assert!((40..=120).contains(&per_mark), "{per_mark} bytes a mark");
    m.retain(|_, _| false);
    assert!(m.bytes() < 200, "an emptied table gives its memory back");
}
