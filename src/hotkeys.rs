//! Hot keys at the primary, and coherence of near caches.
//!
//! # What this module owns
//! [`HotTracker`], one per node (the RESP server's shared state holds it;
//! the router and the embedded API reach the same one):
//! - **The primary's sketch.** Commands this node runs for keys it owns —
//!   its own clients' ([`HotTracker::observe_local`]) and those peers
//!   forward to it ([`HotTracker::observe_forwarded`]) — are sampled, about
//!   one in [`SAMPLE_EVERY`], into a decaying space-saving top-k
//!   ([`crate::api::hot::HotKeys`]). The sampling decision is a per-thread
//!   countdown, so an unsampled request touches no shared memory at all.
//!   `SHOAL HOTKEYS` and the `shoal_hotkey_*` metrics read the sketch.
//! - **Near-copy holders.** A near cache fills through
//!   [`NearRequest::Read`] at the key's primary, which answers the value
//!   with its version and remembers who holds a copy of which version, and
//!   until when. The invalidator task ([`run_invalidator`]) compares the
//!   remembered versions with the store every [`POLL`] while any holder is
//!   registered, and sends each holder of a changed key a
//!   [`NearRequest::Invalidate`] (key, new version).
//! - **Near caches living here** (held weakly): an invalidation that
//!   arrives drops the key from each of them at once.
//!
//! # Why the invalidator compares versions instead of hooking writes
//! Every path that changes a key — a local write, a forwarded one, a
//! replicated record, a failover write, an anti-entropy repair, expiry,
//! eviction — changes (or removes) its versioned entry in the store.
//! Comparing the versions of the few keys held near catches all of them
//! without a hook in any write path, for one partition lock per held key
//! per poll, and nothing at all while no copy is held. The price is a lag
//! of at most one [`POLL`] before the invalidation leaves.
//!
//! # What it must not do
//! Lock, allocate or read a clock on unsampled requests; grow without
//! bound (the sketch has a capacity, holders at most [`MAX_HELD_KEYS`]
//! keys); block the request path on a peer.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::hot::{HotKey, HotKeys, HotKeysConfig};
use crate::cluster::Router;
use crate::proto::{self, Request};
use crate::resp::clock::Clock;
use crate::resp::commands::{CommandSpec, lookup};
use crate::shutdown::Shutdown;
use crate::store::{Store, partition_of};
use crate::transport::NodeName;

/// One request in this many (on average) updates the primary's sketch.
pub const SAMPLE_EVERY: u32 = 64;

/// How often the invalidator compares held versions while copies exist.
pub const POLL: Duration = Duration::from_millis(5);

/// Most keys with registered near copies; reads beyond it are answered
/// but not watched (the reader does not keep a copy).
pub const MAX_HELD_KEYS: usize = 4096;

/// How far ahead a watch that would overflow the clock is set instead
/// (a TTL of centuries: the watch outlives any copy).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Forwarded payloads larger than this are not decoded for sampling (a
/// single-key read or a pipelined batch of them is far smaller; big
/// writes are not worth decoding twice).
const MAX_SAMPLED_PAYLOAD: usize = 64 * 1024;

/// How long an invalidation may take to reach a holder.
const INVALIDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// The version of a key's entry as near caches compare it: the store's
/// version and its node tie-break; `NearVersion::ABSENT` when no entry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct NearVersion {
    /// The entry's version (hybrid logical clock, or a local counter).
    pub version: u64,
    /// The tie-break of the node that stamped it.
    pub node: u16,
}

impl NearVersion {
    /// No entry.
    pub const ABSENT: NearVersion = NearVersion {
        version: 0,
        node: 0,
    };
}

/// Near-cache peer requests (inside [`crate::proto::Request::Near`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearRequest {
    /// To a key's primary: the value and its version; the sender keeps a
    /// near copy for `ttl_ms` and wants an invalidation if it changes.
    Read {
        /// The full key.
        key: Bytes,
        /// Lifetime of the sender's copy (capped by the primary).
        ttl_ms: u64,
    },
    /// From a primary to a holder: these keys changed; drop their copies.
    Invalidate {
        /// Each key with its new version ([`NearVersion::ABSENT`] if gone).
        keys: Vec<(Bytes, NearVersion)>,
    },
}

/// The answer to a [`NearRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NearResponse {
    /// The value (none: absent) and version at the primary.
    Value {
        /// The value.
        value: Option<Bytes>,
        /// Its version.
        version: NearVersion,
        /// Whether the primary will invalidate the copy; if not (too many
        /// keys held) the reader must not keep one.
        watched: bool,
    },
    /// The receiver is not the key's primary (views are changing, or the
    /// partition is still being pulled): read normally, keep no copy.
    NotPrimary,
    /// Invalidations applied.
    Done,
}

/// Who holds a near copy of a key, of which version, until when.
#[derive(Debug, Clone)]
struct Holder {
    /// The peer, or `None` for a near cache on this node.
    peer: Option<NodeName>,
    /// The version it was given.
    version: NearVersion,
    /// When its copy expires (the registration ends then).
    until: Instant,
}

/// What a near cache must do for the tracker: drop a key at a version.
pub(crate) trait NearSink: Send + Sync {
    /// Drop the copy of `key` (older than `version`) and refuse fills of
    /// older versions that are still in flight.
    fn invalidate(&self, key: &Bytes, version: NearVersion);
}

/// Counters of a tracker, for metrics.
#[derive(Debug, Default)]
pub struct HotTrackerStats {
    /// Near reads answered as a primary (copies registered).
    pub near_reads: AtomicU64,
    /// Keys whose holders were sent an invalidation.
    pub invalidations_sent: AtomicU64,
    /// Invalidation messages that did not reach their holder.
    pub invalidation_errors: AtomicU64,
    /// Keys invalidated here by a primary's message (or our own poller).
    pub invalidations_received: AtomicU64,
    /// Near reads answered without a watch (too many keys held).
    pub unwatched: AtomicU64,
}

/// Hot keys and near-copy bookkeeping of one node. `Send + Sync`; share it.
pub struct HotTracker {
    /// The primary's sketch of request rates.
    sketch: HotKeys,
    /// Keys served to near caches, with their holders.
    holders: Mutex<HashMap<Bytes, Vec<Holder>>>,
    /// Wakes the invalidator when the first holder registers.
    wake: Notify,
    /// Near caches living on this node.
    nears: Mutex<Vec<Weak<dyn NearSink>>>,
    /// The near cache of RESP reads this node forwards (`near-cache-*`
    /// settings; unset when off). See `cluster::near_reads`.
    forward: std::sync::OnceLock<Arc<crate::api::near::Near>>,
    /// Counters.
    pub stats: HotTrackerStats,
}

impl Default for HotTracker {
    fn default() -> Self {
        HotTracker::for_node()
    }
}

thread_local! {
    /// Requests left before this thread samples one.
    static COUNTDOWN: Cell<u32> = const { Cell::new(1) };
    /// xorshift state for the next gap.
    static RNG: Cell<u32> = const { Cell::new(0x9e37_79b9) };
}

/// Whether this request is sampled: a per-thread countdown whose gaps are
/// random in `1..2 * SAMPLE_EVERY` (mean `SAMPLE_EVERY`), so periodic
/// traffic cannot line up with the sampling.
fn sampled() -> bool {
    COUNTDOWN.with(|c| {
        let left = c.get();
        if left > 1 {
            c.set(left - 1);
            return false;
        }
        let gap = RNG.with(|r| {
            let mut x = r.get();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            r.set(x);
            1 + x % (2 * SAMPLE_EVERY - 1)
        });
        c.set(gap);
        true
    })
}

impl HotTracker {
    /// A tracker whose sketch is configured by `cfg` (`sample_every` is the
    /// weight of one sampled request; pass 1 when feeding it unsampled).
    pub fn new(cfg: HotKeysConfig) -> HotTracker {
        HotTracker {
            sketch: HotKeys::new(cfg),
            holders: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            nears: Mutex::new(Vec::new()),
            forward: std::sync::OnceLock::new(),
            stats: HotTrackerStats::default(),
        }
    }

    /// The tracker a node uses: [`HotKeysConfig::default`] weighted by
    /// [`SAMPLE_EVERY`].
    pub fn for_node() -> HotTracker {
        HotTracker::new(HotKeysConfig {
            sample_every: u64::from(SAMPLE_EVERY),
            ..HotKeysConfig::default()
        })
    }

    /// A command of `spec` ran here for its keys (we own them): maybe
    /// count its first key. Unsampled: a thread-local decrement.
    pub fn observe_local(&self, spec: &CommandSpec, args: &[Bytes]) {
        if !sampled() {
            return;
        }
        if let Some(key) = spec.keys(args).next() {
            self.sketch.record_sampled(key, Instant::now().into_std());
        }
    }

    /// A peer's request arrived (`payload` in its envelope): when sampled
    /// and it carries forwarded commands (one, or a pipelined batch),
    /// count each command's first key.
    pub fn observe_forwarded(&self, cluster: &str, payload: &[u8]) {
        if !sampled() || payload.len() > MAX_SAMPLED_PAYLOAD {
            return;
        }
        let now = Instant::now().into_std();
        match proto::decode::<Request>(cluster, payload) {
            Ok(Request::Command {
                local: false, args, ..
            }) => self.record_first_key(&args, now),
            Ok(Request::Batch { commands, .. }) => {
                for args in &commands {
                    self.record_first_key(args, now);
                }
            }
            _ => {}
        }
    }

    fn record_first_key(&self, args: &[Bytes], now: std::time::Instant) {
        let Some((_, spec)) = args.first().and_then(|n| lookup(n)) else {
            return;
        };
        if let Some(key) = spec.keys(args).next() {
            self.sketch.record_sampled(key, now);
        }
    }

    /// The `n` hottest keys this node served as primary, hottest first.
    pub fn top(&self, n: usize) -> Vec<HotKey> {
        self.sketch.top(n, Instant::now().into_std())
    }

    /// Keys whose estimated rate is at or above the hot threshold.
    pub fn over_threshold(&self) -> usize {
        let threshold = self.sketch.threshold();
        self.top(usize::MAX)
            .iter()
            .filter(|k| k.rate >= threshold)
            .count()
    }

    /// The sketch's counters.
    pub fn sketch_stats(&self) -> crate::api::hot::HotKeyStats {
        self.sketch.stats()
    }

    /// Keys with registered near copies now.
    pub fn held_keys(&self) -> usize {
        self.lock_holders().len()
    }

    fn lock_holders(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Vec<Holder>>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_nears(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn NearSink>>> {
        self.nears.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A near cache on this node: invalidations reach it until dropped.
    pub(crate) fn register_near(&self, near: Weak<dyn NearSink>) {
        let mut nears = self.lock_nears();
        nears.retain(|n| n.strong_count() > 0);
        nears.push(near);
    }

    /// Keep near copies of the hot keys whose RESP reads this node
    /// forwards: at most `keys` copies, each for `ttl`, of keys read here
    /// at `threshold` reads per second or more (0: every forwarded read
    /// fills a copy). Call once at start; later calls are ignored.
    pub fn enable_forward_near(&self, keys: usize, ttl: Duration, threshold: u64) {
        use crate::api::near::Near;
        let near = if threshold == 0 {
            Near::new(keys, ttl)
        } else {
            Near::hot_only(
                keys,
                ttl,
                HotKeysConfig {
                    threshold: threshold as f64,
                    ..HotKeysConfig::default()
                },
            )
        };
        let near = Arc::new(near);
        if self.forward.set(near.clone()).is_ok() {
            let sink: Arc<dyn NearSink> = near;
            self.register_near(Arc::downgrade(&sink));
        }
    }

    /// The near cache of forwarded RESP reads, when enabled.
    pub(crate) fn forward_near(&self) -> Option<&Arc<crate::api::near::Near>> {
        self.forward.get()
    }

    /// Counters of the near cache of forwarded RESP reads, when enabled.
    pub fn forward_near_stats(&self) -> Option<crate::api::NearStats> {
        self.forward.get().map(|n| n.stats())
    }

    /// Drop `keys` from every near cache on this node.
    pub(crate) fn invalidate_here(&self, keys: &[(Bytes, NearVersion)]) {
        let nears: Vec<Arc<dyn NearSink>> =
            self.lock_nears().iter().filter_map(Weak::upgrade).collect();
        for (key, version) in keys {
            for near in &nears {
                near.invalidate(key, *version);
            }
        }
        self.stats
            .invalidations_received
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
    }

    /// Read `key` from `store` as its primary for a near cache of `peer`
    /// (none: this node) keeping a copy for `ttl`, and register the copy.
    pub(crate) fn near_read(
        &self,
        store: &Store,
        now: crate::store::UnixMillis,
        key: Bytes,
        ttl: Duration,
        peer: Option<NodeName>,
    ) -> NearResponse {
        let (value, version) = store.read(&key, now, |e| match e {
            Some(e) => (
                Some(Bytes::copy_from_slice(e.value)),
                NearVersion {
                    version: e.version.0,
                    node: e.node,
                },
            ),
            None => (None, NearVersion::ABSENT),
        });
        self.stats.near_reads.fetch_add(1, Ordering::Relaxed);
        // The watch lasts as long as the copy can: the reader's copy lives
        // `ttl` from before this read, so from here is never too short.
        let now = Instant::now();
        let holder = Holder {
            peer,
            version,
            until: now.checked_add(ttl).unwrap_or(now + FOREVER),
        };
        let watched = {
            let mut held = self.lock_holders();
            let first = held.is_empty();
            let room = held.len() < MAX_HELD_KEYS;
            let watched = match held.get_mut(&key) {
                Some(list) => {
                    // A refill renews this holder's watch of this version;
                    // a registration of an older version stays until the
                    // invalidator reports it (another near cache of the
                    // same node may still hold that copy).
                    match list
                        .iter_mut()
                        .find(|h| h.peer == holder.peer && h.version == holder.version)
                    {
                        Some(h) => h.until = h.until.max(holder.until),
                        None => list.push(holder),
                    }
                    true
                }
                None if room => {
                    held.insert(key, vec![holder]);
                    true
                }
                None => false,
            };
            if first && watched {
                self.wake.notify_one();
            }
            watched
        };
        if !watched {
            self.stats.unwatched.fetch_add(1, Ordering::Relaxed);
        }
        NearResponse::Value {
            value,
            version,
            watched,
        }
    }

    /// One pass of the invalidator: holders of keys whose version differs
    /// from the store's, grouped by holder (`None`: this node). Expired
    /// registrations are dropped.
    fn changed(
        &self,
        store: &Store,
        now: crate::store::UnixMillis,
    ) -> HashMap<Option<NodeName>, Vec<(Bytes, NearVersion)>> {
        let at = Instant::now();
        let mut out: HashMap<Option<NodeName>, Vec<(Bytes, NearVersion)>> = HashMap::new();
        let mut held = self.lock_holders();
        held.retain(|key, list| {
            list.retain(|h| h.until > at);
            if list.is_empty() {
                return false;
            }
            let current = store.peek(key, now, |e| {
                e.map_or(NearVersion::ABSENT, |e| NearVersion {
                    version: e.version.0,
                    node: e.node,
                })
            });
            list.retain(|h| {
                if h.version == current {
                    return true;
                }
                out.entry(h.peer.clone())
                    .or_default()
                    .push((key.clone(), current));
                false
            });
            !list.is_empty()
        });
        out
    }

    /// Wait until some holder is registered (or `shutdown`).
    async fn until_held(&self, shutdown: &Shutdown) -> bool {
        loop {
            let notified = self.wake.notified();
            if !self.lock_holders().is_empty() {
                return true;
            }
            tokio::select! {
                _ = shutdown.wait() => return false,
                _ = notified => {}
            }
        }
    }
}

impl std::fmt::Debug for HotTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotTracker")
            .field("sketch", &self.sketch.stats())
            .field("held_keys", &self.held_keys())
            .finish()
    }
}

/// Answer a peer's near request (the router calls this for
/// [`Request::Near`]).
pub(crate) fn serve(router: &Router, from: &NodeName, req: NearRequest) -> NearResponse {
    let Some(hot) = router.hot.get() else {
        return NearResponse::NotPrimary;
    };
    match req {
        NearRequest::Read { key, ttl_ms } => {
            if !owns_ready(router, &key) {
                return NearResponse::NotPrimary;
            }
            let now = (router.clock)();
            let ttl = Duration::from_millis(ttl_ms);
            hot.near_read(&router.store, now, key, ttl, Some(from.clone()))
        }
        NearRequest::Invalidate { keys } => {
            hot.invalidate_here(&keys);
            NearResponse::Done
        }
    }
}

/// Whether this node is `key`'s primary and its copy is the one the router
/// would serve: the partition is synced, or (while it is still being
/// pulled) the key is already here, as the router decides for reads.
pub(crate) fn owns_ready(router: &Router, key: &[u8]) -> bool {
    let st = router.current();
    let p = partition_of(key, st.ring.partitions());
    if *st.primary(p) != st.me {
        return false;
    }
    let syncing = router.replication().is_some_and(|r| r.sync.is_syncing(p));
    !syncing || router.store.peek(key, (router.clock)(), |e| e.is_some())
}

/// Compare held versions every [`POLL`] while copies are held and send
/// invalidations to the holders of changed keys, until `shutdown`.
/// `router` is none on a standalone node (only local near caches).
pub async fn run_invalidator(
    hot: Arc<HotTracker>,
    store: Arc<Store>,
    clock: Clock,
    router: Option<Arc<Router>>,
    shutdown: Shutdown,
) {
    loop {
        if !hot.until_held(&shutdown).await {
            return;
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        for (peer, keys) in hot.changed(&store, clock()) {
            hot.stats
                .invalidations_sent
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            match (peer, &router) {
                (None, _) => hot.invalidate_here(&keys),
                (Some(peer), Some(router)) => send(&hot, router, peer, keys),
                (Some(_), None) => {}
            }
        }
    }
}

/// Send one invalidation message to `peer` without waiting for it.
fn send(
    hot: &Arc<HotTracker>,
    router: &Arc<Router>,
    peer: NodeName,
    keys: Vec<(Bytes, NearVersion)>,
) {
    let st = router.current();
    let Some(addr) = st.peer_addr(&peer).cloned() else {
        hot.stats
            .invalidation_errors
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    let payload = proto::encode(
        router.cluster.as_str(),
        &Request::Near(NearRequest::Invalidate { keys }),
    );
    let request = router.transport.request(&addr, payload);
    let hot = hot.clone();
    tokio::spawn(async move {
        let ok = matches!(
            tokio::time::timeout(INVALIDATE_TIMEOUT, request).await,
            Ok(Ok(_))
        );
        if !ok {
            hot.stats
                .invalidation_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "near-cache invalidation not delivered");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreConfig, UnixMillis};

    struct Sink(Mutex<Vec<(Bytes, NearVersion)>>);

    impl NearSink for Sink {
        fn invalidate(&self, key: &Bytes, version: NearVersion) {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key.clone(), version));
        }
    }

    fn set(store: &Store, key: &str, value: &str) {
        store
            .set(
                key.as_bytes(),
                Bytes::copy_from_slice(value.as_bytes()),
                None,
                UnixMillis(1),
            )
            .expect("set");
    }

    #[test]
    fn about_one_request_in_sample_every_is_sampled() {
        let n = 160_000;
        let hits = (0..n).filter(|_| sampled()).count();
        let expected = n / SAMPLE_EVERY as usize;
        assert!(
            hits > expected * 8 / 10 && hits < expected * 12 / 10,
            "{hits} sampled of {n}"
        );
    }

    #[tokio::test]
    async fn a_changed_key_is_reported_to_its_holders_once() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        set(&store, "other", "x");
        let peer = NodeName::new("b");
        let now = UnixMillis(1);
        let ttl = Duration::from_secs(30);
        let read = hot.near_read(&store, now, Bytes::from("k"), ttl, Some(peer.clone()));
        assert!(matches!(read, NearResponse::Value { watched: true, .. }));
        hot.near_read(&store, now, Bytes::from("other"), ttl, None);
        assert!(hot.changed(&store, now).is_empty());
        set(&store, "k", "v2");
        let changed = hot.changed(&store, now);
        assert_eq!(changed.len(), 1);
        let keys = &changed[&Some(peer)];
        assert_eq!(keys[0].0, Bytes::from("k"));
        assert_ne!(keys[0].1, NearVersion::ABSENT);
        assert!(hot.changed(&store, now).is_empty(), "reported once");
        assert_eq!(hot.held_keys(), 1, "`other` is still held");
    }

    #[tokio::test]
    async fn a_deleted_key_is_reported_as_absent() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        let ttl = Duration::from_secs(30);
        hot.near_read(&store, UnixMillis(1), Bytes::from("k"), ttl, None);
        store.delete(b"k", UnixMillis(1));
        let changed = hot.changed(&store, UnixMillis(1));
        assert_eq!(
            changed[&None],
            vec![(Bytes::from("k"), NearVersion::ABSENT)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_registration_ends_with_the_copys_ttl() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        let ttl = Duration::from_secs(1);
        hot.near_read(&store, UnixMillis(1), Bytes::from("k"), ttl, None);
        tokio::time::advance(Duration::from_millis(1001)).await;
        set(&store, "k", "v2");
        assert!(hot.changed(&store, UnixMillis(1)).is_empty());
        assert_eq!(hot.held_keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_lasts_as_long_as_a_long_near_ttl() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        let ttl = Duration::from_secs(3600);
        let peer = Some(NodeName::new("b"));
        hot.near_read(&store, UnixMillis(1), Bytes::from("k"), ttl, peer.clone());
        // Well past the old 300 s cap, well within the copy's hour.
        tokio::time::advance(Duration::from_secs(1800)).await;
        set(&store, "k", "v2");
        let changed = hot.changed(&store, UnixMillis(1));
        assert_eq!(changed.get(&peer).map(Vec::len), Some(1), "still watched");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refill_renews_the_watch() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        let ttl = Duration::from_secs(10);
        let key = Bytes::from("k");
        hot.near_read(&store, UnixMillis(1), key.clone(), ttl, None);
        tokio::time::advance(Duration::from_secs(8)).await;
        hot.near_read(&store, UnixMillis(1), key.clone(), ttl, None);
        tokio::time::advance(Duration::from_secs(8)).await;
        set(&store, "k", "v2");
        assert_eq!(hot.changed(&store, UnixMillis(1)).len(), 1, "renewed");
    }

    #[tokio::test]
    async fn a_refill_at_a_new_version_keeps_the_older_copy_watched() {
        let store = Store::new(StoreConfig::default());
        let hot = HotTracker::default();
        set(&store, "k", "v1");
        let ttl = Duration::from_secs(30);
        let key = Bytes::from("k");
        // Two near caches on one node: one holds v1, the other reads v2
        // before the invalidator ran; the v1 copy must still be reported.
        hot.near_read(&store, UnixMillis(1), key.clone(), ttl, None);
        set(&store, "k", "v2");
        hot.near_read(&store, UnixMillis(1), key.clone(), ttl, None);
        let changed = hot.changed(&store, UnixMillis(1));
        assert_eq!(changed.get(&None).map(Vec::len), Some(1));
        assert_eq!(hot.held_keys(), 1, "the v2 copy stays watched");
    }

    #[test]
    fn invalidations_reach_every_live_near_cache_here() {
        let hot = HotTracker::default();
        let a = Arc::new(Sink(Mutex::new(Vec::new())));
        let gone = Arc::new(Sink(Mutex::new(Vec::new())));
        let weak_a: Weak<dyn NearSink> = Arc::downgrade(&a) as Weak<dyn NearSink>;
        let weak_gone: Weak<dyn NearSink> = Arc::downgrade(&gone) as Weak<dyn NearSink>;
        hot.register_near(weak_a);
        hot.register_near(weak_gone);
        drop(gone);
        let v = NearVersion {
            version: 7,
            node: 1,
        };
        hot.invalidate_here(&[(Bytes::from("k"), v)]);
        assert_eq!(hot.stats.invalidations_received.load(Ordering::Relaxed), 1);
        let got = a.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(got, vec![(Bytes::from("k"), v)]);
        assert_eq!(
            hot.lock_nears()
                .iter()
                .filter(|n| n.strong_count() > 0)
                .count(),
            1
        );
    }

    #[test]
    fn the_primary_sketch_ranks_the_hot_key_first() {
        let hot = HotTracker::for_node();
        let (_, get) = lookup(b"get").expect("GET exists");
        let hot_args = [Bytes::from("GET"), Bytes::from("hot")];
        for i in 0..20_000u32 {
            hot.observe_local(get, &hot_args);
            if i % 10 == 0 {
                let cold = [Bytes::from("GET"), Bytes::from(format!("cold-{i}"))];
                hot.observe_local(get, &cold);
            }
        }
        let top = hot.top(3);
        assert_eq!(top[0].key, Bytes::from("hot"));
        assert!(hot.sketch_stats().sampled < 20_000 / 4);
    }
}
