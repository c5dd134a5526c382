//! Bytes per key of the store: insert 1,000,000 keys (16-byte keys,
//! 100-byte values) into a default `Store` (4096 partitions, no limit) and
//! print the RSS growth per key (from `/proc/self/statm`) next to the
//! `used_memory` the store charges per key.
//!
//! `cargo run --release --example store_bytes_per_key [-- KEYS [VALUE_LEN]]`

use bytes::Bytes;
use shoal::store::{Store, StoreConfig, UnixMillis};

/// Resident set size in bytes, or 0 where `/proc` is not available.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let keys: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let value_len: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let value = Bytes::from(vec![b'x'; value_len]);
    let now = UnixMillis::now();
    let store = Store::new(StoreConfig::default());
    let before = rss_bytes();
    for i in 0..keys {
        let key = format!("key:{i:012}");
        if store.set(key.as_bytes(), value.clone(), None, now).is_err() {
            eprintln!("write refused at key {i}");
            return;
        }
    }
    let after = rss_bytes();
    let stats = store.stats();
    println!("keys:                 {}", stats.keys);
    println!("partitions:           {}", store.partitions());
    println!("key + value bytes:    {}", 16 + value_len);
    println!(
        "RSS delta per key:    {:.1} bytes",
        after.saturating_sub(before) as f64 / keys as f64
    );
    println!(
        "used_memory per key:  {:.1} bytes",
        stats.used_memory as f64 / keys as f64
    );
}
