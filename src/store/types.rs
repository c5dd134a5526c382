//! The store's vocabulary: time, versions, partitions, policies, mutations.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

/// Wall-clock time in milliseconds since the Unix epoch.
///
/// Redis semantics (EXPIREAT, EXPIRETIME, TIME) are in wall-clock time, so the
/// store keeps absolute deadlines rather than monotonic instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(since.as_millis() as u64)
    }

    /// This instant plus `ms` milliseconds, saturating.
    pub fn plus(self, ms: u64) -> Self {
        UnixMillis(self.0.saturating_add(ms))
    }
}

/// The version a write carries, so replicas converge (last writer wins).
///
/// For a single node it is a per-node monotone counter; the cluster makes it
/// a hybrid logical clock with a node tie-break.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Version(pub u64);

/// One of the P fixed partitions a key hashes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// The part of a key that is hashed: the content of the first `{...}` with at
/// least one byte inside (a Redis hash tag), else the whole key.
pub fn hash_slice(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The partition of `key` among `partitions`: xxh3-64 with seed 0 over the
/// hash slice, modulo P. Fixed and specified: every node and every version
/// of Shoal must agree on it.
pub fn partition_of(key: &[u8], partitions: u32) -> PartitionId {
    let h = xxhash_rust::xxh3::xxh3_64(hash_slice(key));
    PartitionId((h % u64::from(partitions.max(1))) as u32)
}

/// What to do when a write would take memory over `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EvictionPolicy {
    /// Refuse writes that need memory (`-OOM ...`).
    NoEviction,
    /// Approximated LRU over all keys (sampling).
    AllKeysLru,
    /// Approximated LFU with decay over all keys.
    AllKeysLfu,
    /// A random key.
    AllKeysRandom,
    /// Approximated LRU among keys with a TTL.
    VolatileLru,
    /// Approximated LFU among keys with a TTL.
    VolatileLfu,
    /// A random key among keys with a TTL.
    VolatileRandom,
    /// The key with the nearest expiry (sampled).
    VolatileTtl,
    /// First in, first out.
    Fifo,
    /// S3-FIFO (small + main FIFO with a ghost queue): scan resistant; the default.
    #[default]
    S3Fifo,
}

impl EvictionPolicy {
    /// Every policy, in the order `CONFIG GET` and docs list them.
    pub const ALL: [EvictionPolicy; 10] = [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::Fifo,
        EvictionPolicy::S3Fifo,
    ];

    /// The Redis-style name (`allkeys-lru`, ..., `s3-fifo`).
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::Fifo => "fifo",
            EvictionPolicy::S3Fifo => "s3-fifo",
        }
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EvictionPolicy {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        EvictionPolicy::ALL
            .into_iter()
            .find(|p| p.name() == lower)
            .ok_or_else(|| StoreError::UnknownPolicy(s.to_string()))
    }
}

impl serde::Serialize for EvictionPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for EvictionPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a [`Store`](super::Store) is sized and governed.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Number of partitions P (default 4096). Part of the cluster identity.
    pub partitions: u32,
    /// Memory limit in bytes; 0 means unlimited.
    pub maxmemory: u64,
    /// What to evict when the limit is reached.
    pub policy: EvictionPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            partitions: 4096,
            maxmemory: 0,
            policy: EvictionPolicy::default(),
        }
    }
}

/// A live entry as a command sees it inside [`Store::update`](super::Store::update)
/// or [`Store::read`](super::Store::read).
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    /// The value bytes.
    pub value: &'a [u8],
    /// Absolute expiry, if the key has a TTL.
    pub expires_at: Option<UnixMillis>,
    /// The version of the write that produced this entry.
    pub version: Version,
    /// The tie-break of the node that stamped `version` (0 standalone).
    pub node: u16,
}

/// What an [`update`](super::Store::update) closure wants done to the key.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Leave the key as it is (no version bump, no memory change).
    Keep,
    /// Store `value` with `expires_at` (the closure passes the old expiry
    /// through for KEEPTTL-like semantics). A new version is stamped.
    Set {
        /// The new value.
        value: Bytes,
        /// The new absolute expiry, or none.
        expires_at: Option<UnixMillis>,
    },
    /// Change only the expiry of an existing key (EXPIRE, PERSIST, GETEX).
    SetExpiry(Option<UnixMillis>),
    /// Remove the key.
    Delete,
}

/// Why a store operation failed. Failed operations changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The write needs memory above `maxmemory` and the policy is
    /// `noeviction` (or nothing evictable is left, e.g. volatile-* with no
    /// TTL keys).
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// A policy name that is not one of [`EvictionPolicy::ALL`].
    #[error("unknown eviction policy '{0}'")]
    UnknownPolicy(String),
}

/// Counters the store keeps for INFO and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Lookups (`get`/`read`) that found a live key.
    pub hits: u64,
    /// Lookups that found nothing (or an expired key).
    pub misses: u64,
    /// Keys removed because their TTL passed (lazily or actively).
    pub expired: u64,
    /// Keys removed by the eviction policy.
    pub evicted: u64,
    /// Keys currently held (expired-but-not-yet-reclaimed included, as Redis).
    pub keys: u64,
    /// Keys that carry a TTL.
    pub keys_with_ttl: u64,
    /// Bytes counted against `maxmemory`.
    pub used_memory: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_selects_the_braced_part() {
        assert_eq!(hash_slice(b"{user:1}:cart"), b"user:1");
        assert_eq!(hash_slice(b"a{b}c{d}"), b"b");
        assert_eq!(hash_slice(b"{}x"), b"{}x");
        assert_eq!(hash_slice(b"no-tag"), b"no-tag");
        assert_eq!(hash_slice(b"open{only"), b"open{only");
    }

    #[test]
    fn tagged_keys_share_a_partition() {
        assert_eq!(
            partition_of(b"{user:1}:cart", 4096),
            partition_of(b"{user:1}:profile", 4096)
        );
    }

    #[test]
    fn partition_hash_is_fixed() {
        // xxh3-64 seed 0 of "foo" is fixed by the spec; a change here would
        // move every key in every deployed cluster.
        assert_eq!(
            xxhash_rust::xxh3::xxh3_64(b"foo"),
            partition_hash_reference()
        );
    }

    fn partition_hash_reference() -> u64 {
        0xab6e5f64077e7d8a
    }

    #[test]
    fn policy_names_round_trip() {
        for p in EvictionPolicy::ALL {
            assert_eq!(p.name().parse::<EvictionPolicy>(), Ok(p));
        }
        assert!("lru".parse::<EvictionPolicy>().is_err());
    }
}
