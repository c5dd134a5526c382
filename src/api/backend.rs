//! Write-through and write-behind to the service's own store.
//!
//! # What this module owns
//! The [`Backend`] trait a service implements (its database), the
//! [`WritePolicy`] of a typed cache, and the write-behind queue: writes
//! coalesced per key, flushed in batches of at most `max_batch` keys when
//! the batch is full or its oldest write is `max_delay` old, retried with
//! exponential backoff, and flushed on [`crate::api::Node::shutdown`].
//!
//! # Failure semantics
//! - **Through**: the backend is written first. If it fails, the call
//!   returns [`crate::api::Error::Backend`] and the cache is not touched.
//!   If the backend succeeds and the cache write then fails, the key is
//!   deleted from the cache (best effort) so no stale value is served.
//! - **Behind**: the call returns once the cache holds the value (on the
//!   key's primary). The backend write is queued *on the node that took the
//!   call*; a failed backend write is retried (a newer value for the same
//!   key replaces the one being retried) until it succeeds or shutdown's
//!   flush gives up. If that node crashes, its queued writes are **lost**
//!   (at most `max_delay` of writes plus whatever was failing); the cache
//!   still holds the values. Replicas do not yet hold the queue: a service
//!   that cannot lose writes uses `Through`.
//!
//! # What it must not do
//! Block a caller on the backend in `Behind` mode, or reorder two writes of
//! one key (one flush runs at a time; a key's newest value wins).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::transport::BoxFuture;

/// An error from the service's backend (its message is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// The service's store of record for a typed cache.
///
/// ```
/// use shoal::api::{Backend, BackendError};
/// use shoal::transport::BoxFuture;
///
/// struct Db;
/// impl Backend<u64, String> for Db {
///     fn load<'a>(&'a self, key: &'a u64) -> BoxFuture<'a, Result<Option<String>, BackendError>> {
///         Box::pin(async move { Ok(Some(format!("row {key}"))) })
///     }
///     fn store<'a>(&'a self, _k: &'a u64, _v: &'a String) -> BoxFuture<'a, Result<(), BackendError>> {
///         Box::pin(async { Ok(()) })
///     }
///     fn remove<'a>(&'a self, _k: &'a u64) -> BoxFuture<'a, Result<(), BackendError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait Backend<K, V>: Send + Sync + 'static {
    /// Read the row for `key`; `None` when there is none.
    fn load<'a>(&'a self, key: &'a K) -> BoxFuture<'a, Result<Option<V>, BackendError>>;
    /// Write `value` for `key`.
    fn store<'a>(&'a self, key: &'a K, value: &'a V) -> BoxFuture<'a, Result<(), BackendError>>;
    /// Delete the row for `key`.
    fn remove<'a>(&'a self, key: &'a K) -> BoxFuture<'a, Result<(), BackendError>>;
}

/// How a typed cache writes to its [`Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePolicy {
    /// Backend first, then cache; acknowledged when both took it.
    Through,
    /// Cache now, backend later in coalesced batches.
    Behind {
        /// Most keys written per flush.
        max_batch: usize,
        /// Longest a queued write waits before a flush.
        max_delay: Duration,
    },
}

/// A snapshot of a write-behind queue's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteBehindStats {
    /// Writes queued (every `set`/`delete`).
    pub queued: u64,
    /// Queued writes that replaced an older pending write of the same key.
    pub coalesced: u64,
    /// Backend writes that succeeded.
    pub written: u64,
    /// Backend writes that failed (each retry counts).
    pub failures: u64,
    /// Flushes run (each writes at most `max_batch` keys).
    pub flushes: u64,
    /// Keys waiting now.
    pub pending: u64,
    /// Age of the oldest waiting write, in milliseconds (the lag).
    pub lag_ms: u64,
}

/// A queued backend operation.
enum Op<V> {
    /// Write this value.
    Store(V),
    /// Delete the row.
    Remove,
}

/// One queued write: encoded key, typed key, operation.
type Queued<K, V> = (Vec<u8>, (K, Op<V>));

/// Pending writes by encoded key.
struct Pending<K, V> {
    /// Newest operation per key.
    ops: HashMap<Vec<u8>, (K, Op<V>)>,
    /// When the oldest pending write was queued.
    oldest: Option<Instant>,
}

/// Backoff after a failed flush starts here and doubles up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest backoff between failed flushes.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Attempts of the final flush at shutdown before queued writes are dropped.
const FINAL_FLUSH_ATTEMPTS: u32 = 10;

/// The write-behind queue of one typed cache on one node.
pub(crate) struct WriteBehind<K, V> {
    /// Where writes go.
    backend: Arc<dyn Backend<K, V>>,
    /// Most keys per flush.
    max_batch: usize,
    /// Longest wait before a flush.
    max_delay: Duration,
    /// The queue.
    pending: Mutex<Pending<K, V>>,
    /// One flush at a time, so a key's writes never reorder.
    flushing: tokio::sync::Mutex<()>,
    /// Wakes the worker (first write, full batch, stop).
    wake: Notify,
    /// Set by shutdown: the worker ends.
    stopped: AtomicBool,
    /// Counters.
    queued: AtomicU64,
    /// See [`WriteBehindStats::coalesced`].
    coalesced: AtomicU64,
    /// See [`WriteBehindStats::written`].
    written: AtomicU64,
    /// See [`WriteBehindStats::failures`].
    failures: AtomicU64,
    /// See [`WriteBehindStats::flushes`].
    flushes: AtomicU64,
    /// The value type.
    _v: PhantomData<fn() -> V>,
}

impl<K, V> WriteBehind<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A queue writing to `backend`; its worker is spawned on the current
    /// Tokio runtime.
    pub(crate) fn start(
        backend: Arc<dyn Backend<K, V>>,
        max_batch: usize,
        max_delay: Duration,
    ) -> Arc<Self> {
        let wb = Arc::new(WriteBehind {
            backend,
            max_batch: max_batch.max(1),
            max_delay,
            pending: Mutex::new(Pending {
                ops: HashMap::new(),
                oldest: None,
            }),
            flushing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            _v: PhantomData,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(wb.clone().run());
        } else {
            tracing::warn!("write-behind created outside a Tokio runtime: flushes only on demand");
        }
        wb
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending<K, V>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a write of `value` (or a delete when `None`) for `key`.
    pub(crate) fn enqueue(&self, encoded: Vec<u8>, key: K, value: Option<V>) {
        let op = value.map_or(Op::Remove, Op::Store);
        let (len, first) = {
            let mut p = self.lock();
            let first = p.ops.is_empty();
            if p.ops.insert(encoded, (key, op)).is_some() {
                self.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            if p.oldest.is_none() {
                p.oldest = Some(Instant::now());
            }
            (p.ops.len(), first)
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if first || len >= self.max_batch {
            self.wake.notify_one();
        }
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> WriteBehindStats {
        let (pending, lag_ms) = {
            let p = self.lock();
            let lag = p.oldest.map_or(0, |t| {
                u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
            });
            (p.ops.len() as u64, lag)
        };
        WriteBehindStats {
            queued: self.queued.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            pending,
            lag_ms,
        }
    }

    /// The worker: flush when a batch is full or its oldest write is due.
    async fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_START;
        while !self.stopped.load(Ordering::Acquire) {
            let (len, oldest) = {
                let p = self.lock();
                (p.ops.len(), p.oldest)
            };
            let Some(oldest) = oldest.filter(|_| len > 0) else {
                self.wake.notified().await;
                continue;
            };
            let due = oldest + self.max_delay;
            if len < self.max_batch && Instant::now() < due {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = self.wake.notified() => {}
                }
                continue;
            }
            if self.flush_once().await {
                backoff = BACKOFF_START;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = self.wake.notified() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }

    /// Write one batch (at most `max_batch` keys). Failed writes go back in
    /// the queue unless a newer write of the key arrived. `true` if every
    /// write succeeded.
    pub(crate) async fn flush_once(&self) -> bool {
        let _one = self.flushing.lock().await;
        let batch: Vec<Queued<K, V>> = {
            let mut p = self.lock();
            let keys: Vec<Vec<u8>> = p.ops.keys().take(self.max_batch).cloned().collect();
            let batch = keys
                .into_iter()
                .filter_map(|k| p.ops.remove_entry(&k))
                .collect();
            p.oldest = if p.ops.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
            batch
        };
        if batch.is_empty() {
            return true;
        }
        self.flushes.fetch_add(1, Ordering::Relaxed);
        let mut all_ok = true;
        for (encoded, (key, op)) in batch {
            let result = match &op {
                Op::Store(v) => self.backend.store(&key, v).await,
                Op::Remove => self.backend.remove(&key).await,
            };
            match result {
                Ok(()) => {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    all_ok = false;
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "write-behind backend write failed; will retry");
                    let mut p = self.lock();
                    p.ops.entry(encoded).or_insert((key, op));
                    if p.oldest.is_none() {
                        p.oldest = Some(Instant::now());
                    }
                }
            }
        }
        all_ok
    }

    /// Write everything queued now, retrying failures with backoff up to
    /// [`FINAL_FLUSH_ATTEMPTS`] times. `true` when the queue emptied.
    pub(crate) async fn flush_all(&self) -> bool {
        let mut backoff = BACKOFF_START;
        let mut failed_rounds = 0;
        loop {
            if self.lock().ops.is_empty() {
                return true;
            }
            if !self.flush_once().await {
                failed_rounds += 1;
                if failed_rounds >= FINAL_FLUSH_ATTEMPTS {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

/// A queue `Node::shutdown` flushes.
pub(crate) trait Flush: Send + Sync {
    /// Stop the worker and write everything queued.
    fn flush_and_stop(&self) -> BoxFuture<'_, ()>;
}

impl<K, V> Flush for WriteBehind<K, V>
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    fn flush_and_stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.stopped.store(true, Ordering::Release);
            self.wake.notify_one();
            if !self.flush_all().await {
                let left = self.lock().ops.len();
                tracing::warn!(
                    left,
                    "write-behind: backend still failing at shutdown; writes dropped"
                );
            }
        })
    }
}
