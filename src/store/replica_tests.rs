//! Unit tests of `replica.rs`: merge order, tombstones, digests, eviction
//! marks, export.

use super::*;
use crate::clock::NodeTag;
use crate::store::StoreConfig;

fn versioned(tag: u16) -> Store {
    let s = Store::new(StoreConfig {
        partitions: 8,
        ..StoreConfig::default()
    });
    s.enable_versions(Arc::new(SharedHlc::new(NodeTag(tag))), 60_000);
    s
}

const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

#[test]
fn a_newer_record_wins_and_an_older_one_changes_nothing() {
    let a = versioned(1);
    let b = versioned(2);
    a.set(b"k", Bytes::from_static(b"old"), None, NOW).unwrap();
    let old = a.record(b"k", NOW).unwrap();
    a.set(b"k", Bytes::from_static(b"new"), None, NOW.plus(1))
        .unwrap();
    let new = a.record(b"k", NOW).unwrap();
    assert!(b.apply(&new, NOW).unwrap());
    assert!(!b.apply(&old, NOW).unwrap(), "older write must lose");
    assert!(!b.apply(&new, NOW).unwrap(), "replay is a no-op");
    assert_eq!(b.get(b"k", NOW).as_deref(), Some(&b"new"[..]));
    assert_eq!(
        a.digest(a.partition_of(b"k"), NOW),
        b.digest(b.partition_of(b"k"), NOW)
    );
}

#[test]
fn a_tombstone_hides_the_key_and_blocks_older_writes() {
    let a = versioned(1);
    let b = versioned(2);
    a.set(b"k", Bytes::from_static(b"v"), None, NOW).unwrap();
    let live = a.record(b"k", NOW).unwrap();
    assert!(a.delete(b"k", NOW));
    let tomb = a.record(b"k", NOW).unwrap();
    assert_eq!(tomb.body, Body::Tombstone);
    assert_eq!(a.stats().keys, 0, "tombstones are not keys");
    assert!(b.apply(&tomb, NOW).unwrap());
    assert!(!b.apply(&live, NOW).unwrap());
    assert_eq!(b.get(b"k", NOW), None);
    let (recs, more) = b.export(b.partition_of(b"k"), None, 10, NOW);
    assert_eq!(recs.len(), 1);
    assert!(!more);
    assert_eq!(b.purge_tombstones(NOW.plus(60_001)), 1);
    assert!(b.record(b"k", NOW).is_none());
}

#[test]
fn equal_versions_break_ties_on_the_node_tag() {
    let a = versioned(1);
    let mk = |node, v: &'static [u8]| Record {
        key: Bytes::from_static(b"k"),
        version: Version(5 << 16),
        node,
        body: Body::Value {
            value: Bytes::from_static(v),
            expires_at: 0,
        },
    };
    assert!(a.apply(&mk(9, b"nine"), NOW).unwrap());
    assert!(!a.apply(&mk(3, b"three"), NOW).unwrap());
    assert_eq!(a.get(b"k", NOW).as_deref(), Some(&b"nine"[..]));
}

#[test]
fn digests_differ_by_bucket_and_drop_partition_empties_it() {
    let a = versioned(1);
    let b = versioned(2);
    for i in 0..50u32 {
        let k = format!("key{i}");
        a.set(k.as_bytes(), Bytes::from_static(b"v"), None, NOW)
            .unwrap();
        let r = a.record(k.as_bytes(), NOW).unwrap();
        if i != 7 {
            b.apply(&r, NOW).unwrap();
        }
    }
    let p = a.partition_of(b"key7");
    let mask = a
        .digest_or_empty(p, NOW)
        .differing(&b.digest_or_empty(p, NOW));
    assert_eq!(mask, 1 << bucket_of(b"key7"));
    for r in a.bucket_records(p, mask, NOW) {
        b.apply(&r, NOW).unwrap();
    }
    assert_eq!(a.digest(p, NOW), b.digest(p, NOW));
    let held = b.partition_len(p);
    assert_eq!(b.drop_partition(p), held);
    assert_eq!(b.digest(p, NOW), None);
}

#[test]
fn an_evicted_key_refuses_its_old_copy_takes_a_newer_one_and_a_del_leaves_a_tombstone() {
    let a = versioned(1);
    let small = Store::new(StoreConfig {
        partitions: 1,
        maxmemory: 16 * 1024,
        ..StoreConfig::default()
    });
    small.enable_versions(Arc::new(SharedHlc::new(NodeTag(2))), 60_000);
    let mut records = Vec::new();
    for i in 0..400u32 {
        let k = format!("k{i}");
        a.set(k.as_bytes(), Bytes::from(vec![b'v'; 100]), None, NOW)
            .unwrap();
        let r = a.record(k.as_bytes(), NOW).unwrap();
        small.apply(&r, NOW).unwrap();
        records.push(r);
    }
    assert!(small.stats().evicted > 0, "the small store evicted");
    // Marks are capped (the oldest go first): take keys still marked.
    let marked = |r: &&Record| {
        small.get(&r.key, NOW).is_none() && small.lock(0).evicted.get(digest_hash(&r.key)).is_some()
    };
    let gone = records
        .iter()
        .rev()
        .find(marked)
        .expect("an evicted key")
        .clone();
    assert!(
        !small.apply(&gone, NOW).unwrap(),
        "its evicted copy stays out"
    );
    assert!(small.record(&gone.key, NOW).is_none(), "no tombstone");
    let newer = Record {
        version: Version(gone.version.0 + 1),
        ..gone.clone()
    };
    assert!(small.apply(&newer, NOW).unwrap(), "a newer write is stored");
    assert!(small.get(&gone.key, NOW).is_some());
    // A DEL of a key evicted here leaves a tombstone for the others.
    let other = records
        .iter()
        .rev()
        .find(marked)
        .expect("another evicted key");
    assert!(!small.delete(&other.key, NOW));
    let tomb = small.record(&other.key, NOW).expect("a tombstone");
    assert_eq!(tomb.body, Body::Tombstone);
}

#[test]
fn export_pages_through_a_partition_in_key_order() {
    let a = versioned(1);
    for i in 0..40u32 {
        a.set(
            format!("{{t}}{i:03}").as_bytes(),
            Bytes::from_static(b"v"),
            None,
            NOW,
        )
        .unwrap();
    }
    let p = a.partition_of(b"{t}");
    let mut after: Option<Bytes> = None;
    let mut seen = 0;
    loop {
        let (recs, more) = a.export(p, after.as_deref(), 7, NOW);
        seen += recs.len();
        after = recs.last().map(|r| r.key.clone());
        if !more {
            break;
        }
    }
    assert_eq!(seen, 40);
}
