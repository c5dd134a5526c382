//! Fuzz the snapshot loader: `shoal::persist::decode_snapshot` (a pure
//! function over a file's bytes), then the merge of what it returns into a
//! store the way a starting node loads it (expired values skipped, every
//! other entry through `Store::apply`).
//!
//! Input: byte 0 says what the harness adds so the fuzzer gets past the
//! checks it cannot guess: bit 0 puts the magic and format version in
//! front, bit 1 appends the right checksum; the rest is the file.
//!
//! Properties checked: no panic; a snapshot that decodes re-encodes
//! (`encode_snapshot`) to bytes that decode to the same header and the
//! same entries, partition by partition in the same order.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use shoal::clock::{NodeTag, SharedHlc};
use shoal::persist::{FORMAT_VERSION, MAGIC, Snapshot, decode_snapshot, encode_snapshot};
use shoal::store::{EvictionPolicy, Store, StoreConfig, UnixMillis};

/// The loading node's wall clock (Unix ms).
const NOW: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = Vec::with_capacity(rest.len() + 18);
    if mode & 1 != 0 {
        file.extend_from_slice(&MAGIC);
        file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    }
    file.extend_from_slice(rest);
    if mode & 2 != 0 {
        let sum = xxhash_rust::xxh3::xxh3_64(&file);
        file.extend_from_slice(&sum.to_le_bytes());
    }
    let Ok(snap) = decode_snapshot(&file) else {
        return;
    };
    check_round_trip(&snap);
    load(snap, mode & 4 != 0);
});

/// Re-encode and decode: same header, same entries per partition.
fn check_round_trip(snap: &Snapshot) {
    let again = encode_snapshot(&snap.header, snap.entries.iter().cloned());
    let back = decode_snapshot(&again).expect("a re-encoded snapshot decodes");
    assert_eq!(back.header, snap.header);
    // The encoder groups entries by partition (ascending), keeping their
    // order within a partition.
    let mut want = snap.entries.clone();
    want.sort_by_key(|(p, _)| *p);
    assert_eq!(back.entries, want);
}

/// Merge the entries into a fresh versioned store, as a node's start does;
/// `limited` gives the store a small memory limit.
fn load(snap: Snapshot, limited: bool) {
    let store = Store::new(StoreConfig {
        partitions: 16,
        maxmemory: if limited { 4096 } else { 0 },
        policy: EvictionPolicy::default(),
    });
    store.enable_versions(Arc::new(SharedHlc::new(NodeTag(1))), 60_000);
    let now = UnixMillis(NOW);
    for (_, e) in snap.entries {
        if e.is_expired(now.0) {
            continue;
        }
        let _ = store.apply(&e.into_record(), now);
    }
}
