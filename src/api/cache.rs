//! [`Cache`]: a typed view of the keyspace (serde + postcard).
//!
//! # What this module owns
//! The key scheme (`<name>:<hex of postcard(key)>`, versioned keys add
//! `:v<N>`), value encoding (`postcard(value)`; empty = negative entry),
//! the cache's TTLs, read-through (`get_or_load`), and its write policy.
//!
//! # What it must not do
//! Route or store anything itself: every operation is a command on the
//! [`Node`], so typed keys are ordinary keys any RESP client can read.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backend::{Backend, WriteBehind, WriteBehindStats, WritePolicy};
use super::loader::{self, LoadPolicy, RawLoader, hex_encode};
use super::near::{Near, NearStats};
use super::{Error, Node};

/// Default TTL of negative entries (a loader found no row).
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// Default time a loader may take.
pub const DEFAULT_LOADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A typed cache named `name` on a [`Node`].
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let node = shoal::Node::builder().start().await?;
/// let products = node
///     .cache::<String, u32>("products")?
///     .with_ttl(std::time::Duration::from_secs(300));
/// let price = products
///     .get_or_load(&"sku-1".to_string(), || async { Ok::<_, String>(Some(1299)) })
///     .await?;
/// assert_eq!(price, Some(1299));
/// // The same entry, as a RESP client sees it: `products:<hex>`.
/// assert!(node.get(products.key(&"sku-1".to_string())?).await?.is_some());
/// node.shutdown().await;
/// # Ok::<(), shoal::Error>(())
/// # });
/// ```
pub struct Cache<K, V> {
    /// The node every operation runs on.
    node: Node,
    /// The cache's name: the key prefix.
    name: Arc<str>,
    /// TTL of values written or loaded (`None` = no expiry).
    ttl: Option<Duration>,
    /// TTL of negative entries.
    negative_ttl: Duration,
    /// How long a loader may take.
    loader_timeout: Duration,
    /// Backend and write policy, when attached.
    writer: Option<Arc<Writer<K, V>>>,
    /// Local copies of reads, when enabled.
    near: Option<Arc<Near>>,
    /// The key and value types.
    _types: PhantomData<fn(K) -> V>,
}

/// A backend with its policy.
struct Writer<K, V> {
    /// The service's store.
    backend: Arc<dyn Backend<K, V>>,
    /// The write-behind queue, in `Behind` mode.
    behind: Option<Arc<WriteBehind<K, V>>>,
}

impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Cache {
            node: self.node.clone(),
            name: self.name.clone(),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            loader_timeout: self.loader_timeout,
            writer: self.writer.clone(),
            near: self.near.clone(),
            _types: PhantomData,
        }
    }
}

/// Whether `name` may name a cache.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl<K, V> Cache<K, V> {
    pub(crate) fn new(node: Node, name: &str) -> Self {
        Cache {
            node,
            name: Arc::from(name),
            ttl: None,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            loader_timeout: DEFAULT_LOADER_TIMEOUT,
            writer: None,
            near: None,
            _types: PhantomData,
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TTL of values written or loaded.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// TTL of negative entries.
    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }

    /// How long a loader may take.
    pub fn loader_timeout(&self) -> Duration {
        self.loader_timeout
    }

    /// Values expire after `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Negative entries ("no such row") expire after `ttl`.
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Keep local copies of up to `capacity` reads for `ttl` (see
    /// [`crate::api::DEFAULT_NEAR_TTL`]): a hot key's reads stay on this
    /// node. Writes through this cache on this node drop the copy at once;
    /// a write anywhere else makes the key's primary send an invalidation
    /// that drops it within milliseconds ([`crate::hotkeys`]); `ttl` bounds
    /// the staleness if that message is lost.
    pub fn with_near_cache(self, capacity: usize, ttl: Duration) -> Self {
        self.attach_near(Near::new(capacity, ttl))
    }

    /// Use `near` and let invalidations that reach this node drop its
    /// copies.
    fn attach_near(mut self, near: Near) -> Self {
        let near = Arc::new(near);
        if let Some(hot) = self.node.exec().hot() {
            let sink: Arc<dyn crate::hotkeys::NearSink> = near.clone();
            hot.register_near(Arc::downgrade(&sink));
        }
        self.near = Some(near);
        self
    }

    /// Like [`Cache::with_near_cache`], but a copy is kept only while its
    /// key is read on this node more than `threshold` times per second
    /// (a decaying top-k sketch, [`crate::api::hot::HotKeys`], counts the
    /// reads): one hot key's reads stay here instead of pinning its owner,
    /// and cold keys are always read from the owner.
    pub fn with_hot_near_cache(self, capacity: usize, ttl: Duration, threshold: f64) -> Self {
        let cfg = crate::api::hot::HotKeysConfig {
            threshold,
            sample_every: 1,
            ..Default::default()
        };
        self.attach_near(Near::hot_only(capacity, ttl, cfg))
    }

    /// The hottest keys read through this cache on this node (stored key,
    /// estimated reads per second), when the near cache admits by heat.
    pub fn hot_keys(&self, n: usize) -> Vec<crate::api::hot::HotKey> {
        self.near
            .as_ref()
            .and_then(|near| near.hot_keys())
            .map(|h| h.top(n, std::time::Instant::now()))
            .unwrap_or_default()
    }

    /// The near cache's counters, when enabled.
    pub fn near_stats(&self) -> Option<NearStats> {
        self.near.as_ref().map(|n| n.stats())
    }

    /// Drop the local copy of a full key.
    fn forget(&self, full: &Bytes) {
        if let Some(n) = &self.near {
            n.remove(full);
        }
    }

    /// Read a full key at its owner. With a near cache that admits the
    /// key, the read is a watched one at the primary and the copy is kept;
    /// otherwise (or if the primary declines to watch) no copy is kept.
    async fn fetch(&self, full: &Bytes) -> Result<Option<Bytes>, Error> {
        use crate::hotkeys::NearResponse;
        if let Some(near) = &self.near
            && near.admits(full)
        {
            let read = self.node.exec().near_read(full.clone(), near.ttl()).await;
            if let Ok(NearResponse::Value {
                value,
                version,
                watched,
            }) = read
            {
                if let Some(raw) = &value
                    && watched
                {
                    near.put_versioned(full.clone(), raw.clone(), version);
                }
                return Ok(value);
            }
        }
        self.node.get(full.clone()).await
    }

    /// A local copy of a full key's value.
    fn recall(&self, full: &Bytes) -> Option<Bytes> {
        self.near.as_ref().and_then(|n| n.get(full))
    }

    /// A load taking longer than `timeout` fails every waiting caller.
    pub fn with_loader_timeout(mut self, timeout: Duration) -> Self {
        self.loader_timeout = timeout;
        self
    }
}

impl<K, V> Cache<K, V>
where
    K: Serialize + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Attach the service's store with a write policy (`set` and `delete`
    /// then write it too; [`Cache::load`] reads it on a miss).
    pub fn with_backend(mut self, backend: impl Backend<K, V>, policy: WritePolicy) -> Self {
        let backend: Arc<dyn Backend<K, V>> = Arc::new(backend);
        let behind = match policy {
            WritePolicy::Through => None,
            WritePolicy::Behind {
                max_batch,
                max_delay,
            } => {
                let wb = WriteBehind::start(backend.clone(), max_batch, max_delay);
                self.node.add_flusher(wb.clone());
                Some(wb)
            }
        };
        self.writer = Some(Arc::new(Writer { backend, behind }));
        self
    }

    /// The write-behind counters, in `Behind` mode.
    pub fn write_behind_stats(&self) -> Option<WriteBehindStats> {
        self.writer
            .as_ref()
            .and_then(|w| w.behind.as_ref())
            .map(|b| b.stats())
    }

    /// Write queued write-behind entries now (retrying failures a few
    /// times). `true` when nothing is left queued.
    pub async fn flush(&self) -> bool {
        match self.writer.as_ref().and_then(|w| w.behind.as_ref()) {
            Some(b) => b.flush_all().await,
            None => true,
        }
    }
}

impl<K: Serialize, V> Cache<K, V> {
    /// The key under which `key` is stored: `<name>:<hex of postcard(key)>`.
    pub fn key(&self, key: &K) -> Result<Bytes, Error> {
        Ok(Bytes::from(self.key_string(key)?))
    }

    fn key_string(&self, key: &K) -> Result<String, Error> {
        let raw = postcard::to_stdvec(key).map_err(|e| Error::Codec(e.to_string()))?;
        Ok(format!("{}:{}", self.name, hex_encode(&raw)))
    }

    /// A view of `key` at `version`: stored under `<key>:v<version>`, so a
    /// new version is a new entry and old ones simply expire (the
    /// `user_profile_v42` pattern, without deletes across the cluster).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let node = shoal::Node::builder().start().await?;
    /// let profiles = node.cache::<u64, String>("profiles")?;
    /// profiles.versioned(&42, 1).set(&"old".to_string()).await?;
    /// profiles.versioned(&42, 2).set(&"new".to_string()).await?;
    /// assert_eq!(profiles.versioned(&42, 2).get().await?, Some("new".to_string()));
    /// # node.shutdown().await;
    /// # Ok::<(), shoal::Error>(())
    /// # });
    /// ```
    pub fn versioned<'a>(&'a self, key: &'a K, version: u64) -> Versioned<'a, K, V> {
        Versioned {
            cache: self,
            key,
            version,
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, Error> {
    postcard::to_stdvec(v)
        .map(Bytes::from)
        .map_err(|e| Error::Codec(e.to_string()))
}

/// Decode a stored value; empty = negative entry = `None`.
fn decode<V: DeserializeOwned>(raw: &[u8]) -> Result<Option<V>, Error> {
    if raw.is_empty() {
        return Ok(None);
    }
    postcard::from_bytes(raw)
        .map(Some)
        .map_err(|e| Error::Codec(e.to_string()))
}

impl<K, V> Cache<K, V>
where
    K: Serialize + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The value of `key` (`None` when absent or a negative entry).
    pub async fn get(&self, key: &K) -> Result<Option<V>, Error> {
        self.get_raw(self.key(key)?).await
    }

    /// The value of `key` read from its owner even when the near cache
    /// holds a copy (the per-read opt-out of the near cache); the copy is
    /// replaced with what the owner returned.
    pub async fn get_fresh(&self, key: &K) -> Result<Option<V>, Error> {
        let full = self.key(key)?;
        self.forget(&full);
        match self.fetch(&full).await? {
            Some(raw) => decode(&raw),
            None => Ok(None),
        }
    }

    async fn get_raw(&self, full: Bytes) -> Result<Option<V>, Error> {
        if let Some(raw) = self.recall(&full) {
            return decode(&raw);
        }
        match self.fetch(&full).await? {
            Some(raw) => decode(&raw),
            None => Ok(None),
        }
    }

    /// Set `key` to `value` with the cache's TTL, through its write policy.
    pub async fn set(&self, key: &K, value: &V) -> Result<(), Error> {
        let full = self.key(key)?;
        self.set_raw(full, key, value, self.ttl).await
    }

    /// Set with an explicit TTL (e.g. sessions).
    pub async fn set_with_ttl(&self, key: &K, value: &V, ttl: Duration) -> Result<(), Error> {
        let full = self.key(key)?;
        self.set_raw(full, key, value, Some(ttl)).await
    }

    async fn set_raw(
        &self,
        full: Bytes,
        key: &K,
        value: &V,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let encoded = encode(value)?;
        self.forget(&full);
        let Some(w) = &self.writer else {
            return self.node.set(full, encoded, ttl).await;
        };
        match &w.behind {
            None => {
                w.backend
                    .store(key, value)
                    .await
                    .map_err(|e| Error::Backend(e.0))?;
                if let Err(e) = self.node.set(full.clone(), encoded, ttl).await {
                    let _ = self.node.delete(full).await;
                    return Err(e);
                }
                Ok(())
            }
            Some(queue) => {
                self.node.set(full.clone(), encoded, ttl).await?;
                queue.enqueue(full.to_vec(), key.clone(), Some(value.clone()));
                Ok(())
            }
        }
    }

    /// Delete `key` from the cache and, with a backend, from the backend
    /// (through or behind). `true` when the cache held it.
    pub async fn delete(&self, key: &K) -> Result<bool, Error> {
        let full = self.key(key)?;
        self.forget(&full);
        let Some(w) = &self.writer else {
            return self.node.delete(full).await;
        };
        match &w.behind {
            None => {
                w.backend
                    .remove(key)
                    .await
                    .map_err(|e| Error::Backend(e.0))?;
                self.node.delete(full).await
            }
            Some(queue) => {
                let existed = self.node.delete(full.clone()).await?;
                queue.enqueue(full.to_vec(), key.clone(), None);
                Ok(existed)
            }
        }
    }

    /// Drop `key` from the cache everywhere (its primary; the next read
    /// loads afresh). The backend is not touched. `true` when it was held.
    pub async fn invalidate(&self, key: &K) -> Result<bool, Error> {
        let full = self.key(key)?;
        self.forget(&full);
        self.node.delete(full).await
    }

    /// Read `key`; on a miss run `loader` under single-flight at the key's
    /// primary: concurrent misses anywhere in the cluster share one load
    /// (the primary's registered loader if it has one, else one caller's).
    /// `Ok(None)` is cached as a negative entry for the negative TTL; a
    /// loader error reaches every waiting caller and is not cached.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Display + 'static,
    {
        let full = self.key(key)?;
        self.load_raw(full, loader).await
    }

    async fn load_raw<F, Fut, E>(&self, full: Bytes, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Display + 'static,
    {
        if let Some(raw) = self.recall(&full) {
            return decode(&raw);
        }
        if let Some(raw) = self.fetch(&full).await? {
            return decode(&raw);
        }
        let fut = loader();
        let boxed = Box::pin(async move {
            match fut.await {
                Ok(Some(v)) => postcard::to_stdvec(&v)
                    .map(|b| Some(Bytes::from(b)))
                    .map_err(|e| format!("cannot encode the loaded value: {e}")),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        });
        let policy = LoadPolicy {
            cache: self.name.to_string(),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            timeout: self.loader_timeout,
        };
        // The next read keeps a watched copy; this one keeps none.
        let raw = loader::get_or_load(self.node.exec(), full, &policy, boxed).await?;
        decode(&raw)
    }

    /// Read-through from the attached backend (`Backend::load`), with
    /// single-flight; without a backend, a plain `get`.
    pub async fn load(&self, key: &K) -> Result<Option<V>, Error> {
        let Some(w) = &self.writer else {
            return self.get(key).await;
        };
        let backend = w.backend.clone();
        let k = key.clone();
        self.get_or_load(key, move || async move { backend.load(&k).await })
            .await
    }
}

/// One key at one version of a [`Cache`]; see [`Cache::versioned`].
pub struct Versioned<'a, K, V> {
    /// The cache.
    cache: &'a Cache<K, V>,
    /// The key.
    key: &'a K,
    /// Its version.
    version: u64,
}

impl<K, V> Versioned<'_, K, V>
where
    K: Serialize + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `<name>:<hex>:v<version>`.
    pub fn key(&self) -> Result<Bytes, Error> {
        let base = self.cache.key_string(self.key)?;
        Ok(Bytes::from(format!("{base}:v{}", self.version)))
    }

    /// The value at this version.
    pub async fn get(&self) -> Result<Option<V>, Error> {
        self.cache.get_raw(self.key()?).await
    }

    /// Set this version (cache only: versions are cache entries).
    pub async fn set(&self, value: &V) -> Result<(), Error> {
        let full = self.key()?;
        self.cache.forget(&full);
        self.cache
            .node
            .set(full, encode(value)?, self.cache.ttl)
            .await
    }

    /// Read-through for this version, with single-flight.
    pub async fn get_or_load<F, Fut, E>(&self, loader: F) -> Result<Option<V>, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Display + 'static,
    {
        self.cache.load_raw(self.key()?, loader).await
    }

    /// Drop this version from the cache.
    pub async fn invalidate(&self) -> Result<bool, Error> {
        let full = self.key()?;
        self.cache.forget(&full);
        self.cache.node.delete(full).await
    }
}

/// Erase a typed loader into the bytes form the primary runs.
pub(crate) fn erase_loader<K, V, F, Fut, E>(loader: F) -> RawLoader
where
    K: DeserializeOwned + Send + 'static,
    V: Serialize + Send + 'static,
    F: Fn(K) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    E: Display + 'static,
{
    let loader = Arc::new(loader);
    Arc::new(move |raw: Bytes| {
        let loader = loader.clone();
        Box::pin(async move {
            let key: K = postcard::from_bytes(&raw).map_err(|e| format!("bad key: {e}"))?;
            match loader(key).await {
                Ok(Some(v)) => postcard::to_stdvec(&v)
                    .map(|b| Some(Bytes::from(b)))
                    .map_err(|e| format!("cannot encode the loaded value: {e}")),
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    })
}
