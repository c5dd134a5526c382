//! Fuzz the bulk partition transfer: the `Pull` answer a syncing node
//! decodes (`Response::Records` inside the peer envelope), merges into its
//! store record by record (`Store::apply`, as `cluster::rebalance` and
//! anti-entropy repair do), and later serves onward in chunks
//! (`Store::export`, the `Pull` side).
//!
//! Input: byte 0 picks the store (bit 0: a small memory limit, so merges
//! evict or fail) and whether a valid envelope header is put in front of
//! the rest (bit 1); the rest is the encoded answer.
//!
//! Properties checked:
//! - no panic, whatever the records (huge versions, expired values,
//!   tombstones, duplicate keys, keys of any partition);
//! - without a memory limit, every key whose newest record is a live value
//!   or a tombstone ends with exactly that record's stamp (last writer
//!   wins, whatever the order);
//! - exporting a partition chunk by chunk, resuming after the last key as a
//!   puller does, yields each key once, in key order, exactly the keys of
//!   one whole export of that partition, and ends.

#![no_main]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shoal::clock::{NodeTag, SharedHlc};
use shoal::proto::{self, Response};
use shoal::store::{Body, EvictionPolicy, PartitionId, Record, Store, StoreConfig, UnixMillis};

/// The cluster name the decoder expects.
const CLUSTER: &str = "shoal";

/// Partitions of the receiving store (small, so keys share partitions).
const PARTITIONS: u32 = 8;

/// The receiver's wall clock (Unix ms): records may expire before it.
const NOW: u64 = 1_700_000_000_000;

/// Records per exported chunk (small, so resumption is exercised).
const CHUNK: usize = 3;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut wire = if mode & 2 != 0 {
        proto::encode(CLUSTER, &()).to_vec()
    } else {
        Vec::new()
    };
    wire.extend_from_slice(rest);
    let Ok(Response::Records { records, .. }) = proto::decode::<Response>(CLUSTER, &wire) else {
        return;
    };
    let limited = mode & 1 != 0;
    let store = Store::new(StoreConfig {
        partitions: PARTITIONS,
        maxmemory: if limited { 4096 } else { 0 },
        policy: EvictionPolicy::default(),
    });
    store.enable_versions(Arc::new(SharedHlc::new(NodeTag(7))), 60_000);
    let now = UnixMillis(NOW);
    for rec in &records {
        let _ = store.apply(rec, now);
    }
    if !limited {
        check_last_writer_wins(&store, &records, now);
    }
    for p in 0..PARTITIONS {
        check_export(&store, PartitionId(p), now);
    }
});

/// Keys whose newest record is live (or a tombstone) hold that stamp.
fn check_last_writer_wins(store: &Store, records: &[Record], now: UnixMillis) {
    let mut newest: HashMap<&Bytes, &Record> = HashMap::new();
    for rec in records {
        let e = newest.entry(&rec.key).or_insert(rec);
        if rec.stamp() > e.stamp() {
            *e = rec;
        }
    }
    for (key, rec) in newest {
        let live = match &rec.body {
            Body::Value { expires_at, .. } => *expires_at == 0 || *expires_at > now.0,
            Body::Tombstone => true,
        };
        if live {
            let held = store.record(key, now).map(|r| r.stamp());
            assert_eq!(held, Some(rec.stamp()), "key {key:?} lost its newest write");
        }
    }
}

/// Export `partition` in chunks the way a puller asks for it; the keys
/// must be those of one export of the whole partition, in the same order.
fn check_export(store: &Store, partition: PartitionId, now: UnixMillis) {
    let (all, more) = store.export(partition, None, usize::MAX, now);
    assert!(!more, "a whole export says more follow");
    let mut after: Option<Bytes> = None;
    let mut keys = Vec::new();
    loop {
        let (chunk, more) = store.export(partition, after.as_deref(), CHUNK, now);
        assert!(chunk.len() <= CHUNK, "chunk of {} records", chunk.len());
        for rec in &chunk {
            assert_eq!(
                store.partition_of(&rec.key),
                partition,
                "record of another partition"
            );
            if let Some(prev) = &after {
                assert!(rec.key > *prev, "keys out of order or repeated");
            }
            after = Some(rec.key.clone());
            keys.push(rec.key.clone());
        }
        if !more || chunk.is_empty() {
            break;
        }
    }
    let whole: Vec<Bytes> = all.into_iter().map(|r| r.key).collect();
    assert_eq!(keys, whole, "chunked export differs from the whole");
}
