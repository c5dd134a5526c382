//! Write-through and write-behind on an embedded (standalone) node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal::api::{Backend, BackendError, WritePolicy};
use shoal::transport::BoxFuture;
use shoal::{Error, Node};

/// A backend in memory that counts writes and can fail the next N.
#[derive(Clone, Default)]
struct MemDb {
    /// Rows.
    rows: Arc<Mutex<HashMap<u32, u64>>>,
    /// Writes (store + remove) that reached the backend, failed ones too.
    calls: Arc<AtomicU64>,
    /// Writes still to fail.
    fail_next: Arc<AtomicU64>,
}

impl MemDb {
    fn failing(n: u64) -> Self {
        let db = MemDb::default();
        db.fail_next.store(n, Ordering::SeqCst);
        db
    }

    fn should_fail(&self) -> bool {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn rows(&self) -> HashMap<u32, u64> {
        self.rows.lock().expect("rows lock").clone()
    }
}

impl Backend<u32, u64> for MemDb {
    fn load<'a>(&'a self, key: &'a u32) -> BoxFuture<'a, Result<Option<u64>, BackendError>> {
        Box::pin(async move { Ok(self.rows().get(key).copied()) })
    }

    fn store<'a>(
        &'a self,
        key: &'a u32,
        value: &'a u64,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if self.should_fail() {
                return Err(BackendError("database is down".into()));
            }
            self.rows.lock().expect("rows lock").insert(*key, *value);
            Ok(())
        })
    }

    fn remove<'a>(&'a self, key: &'a u32) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if self.should_fail() {
                return Err(BackendError("database is down".into()));
            }
            self.rows.lock().expect("rows lock").remove(key);
            Ok(())
        })
    }
}

/// Flushes only when asked (or at shutdown).
const NEVER: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn write_through_backend_error_is_not_acknowledged_and_cache_keeps_old_value() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::default();
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), WritePolicy::Through);
    cache.set(&1, &10).await.expect("first write");
    db.fail_next.store(1, Ordering::SeqCst);
    let err = cache.set(&1, &20).await.expect_err("backend refused");
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert_eq!(cache.get(&1).await.expect("get"), Some(10));
    assert_eq!(db.rows().get(&1), Some(&10));
    node.shutdown().await;
}

#[tokio::test]
async fn write_behind_coalesces_ten_thousand_writes_to_a_hundred_keys() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::default();
    let policy = WritePolicy::Behind {
        max_batch: 1000,
        max_delay: NEVER,
    };
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), policy);
    for i in 0..10_000u64 {
        cache.set(&((i % 100) as u32), &i).await.expect("set");
    }
    assert_eq!(
        db.calls.load(Ordering::SeqCst),
        0,
        "nothing written before the flush"
    );
    assert!(cache.flush().await);
    let stats = cache.write_behind_stats().expect("behind mode");
    assert_eq!(stats.flushes, 1);
    assert!(db.calls.load(Ordering::SeqCst) <= 100);
    let rows = db.rows();
    assert_eq!(rows.len(), 100);
    for k in 0..100u32 {
        assert_eq!(rows[&k], 9_900 + u64::from(k), "last value of key {k}");
    }
    assert_eq!(stats.coalesced, 9_900);
    node.shutdown().await;
}

#[tokio::test]
async fn a_failing_then_recovering_backend_receives_every_last_value() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::failing(150);
    let policy = WritePolicy::Behind {
        max_batch: 100,
        max_delay: NEVER,
    };
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), policy);
    for round in 0..3u64 {
        for k in 0..100u32 {
            cache
                .set(&k, &(round * 1000 + u64::from(k)))
                .await
                .expect("set");
        }
    }
    cache.delete(&7).await.expect("delete");
    assert!(
        cache.flush().await,
        "queue drains once the backend recovers"
    );
    let stats = cache.write_behind_stats().expect("behind mode");
    assert!(stats.failures >= 100, "{stats:?}");
    assert_eq!(stats.pending, 0);
    let rows = db.rows();
    assert_eq!(rows.len(), 99);
    assert!(!rows.contains_key(&7));
    for k in (0..100u32).filter(|k| *k != 7) {
        assert_eq!(rows[&k], 2000 + u64::from(k));
    }
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_flushes_queued_writes() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::default();
    let policy = WritePolicy::Behind {
        max_batch: 1000,
        max_delay: NEVER,
    };
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), policy);
    for k in 0..10u32 {
        cache.set(&k, &u64::from(k)).await.expect("set");
    }
    node.shutdown().await;
    assert_eq!(db.rows().len(), 10);
}

#[tokio::test]
async fn a_full_batch_is_written_without_waiting_for_the_delay() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::default();
    let policy = WritePolicy::Behind {
        max_batch: 10,
        max_delay: NEVER,
    };
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), policy);
    for k in 0..10u32 {
        cache.set(&k, &1).await.expect("set");
    }
    // The worker flushes the full batch; wait for it by polling its counter.
    while cache.write_behind_stats().expect("behind").written < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(db.rows().len(), 10);
    node.shutdown().await;
}

#[tokio::test]
async fn load_reads_through_the_backend_once() {
    let node = Node::builder().start().await.expect("node starts");
    let db = MemDb::default();
    db.rows.lock().expect("lock").insert(5, 55);
    let cache = node
        .cache::<u32, u64>("stock")
        .expect("name")
        .with_backend(db.clone(), WritePolicy::Through);
    assert_eq!(cache.load(&5).await.expect("load"), Some(55));
    db.rows.lock().expect("lock").insert(5, 66);
    assert_eq!(cache.load(&5).await.expect("cached"), Some(55));
    assert!(cache.invalidate(&5).await.expect("invalidate"));
    assert_eq!(cache.load(&5).await.expect("reload"), Some(66));
    node.shutdown().await;
}

#[tokio::test]
async fn a_near_cache_serves_repeated_reads_locally_and_forgets_on_local_writes() {
    let node = Node::builder().start().await.expect("node starts");
    let cache = node
        .cache::<u32, u64>("hot")
        .expect("name")
        .with_near_cache(100, Duration::from_secs(60));
    cache.set(&1, &10).await.expect("set");
    assert_eq!(cache.get(&1).await.expect("get"), Some(10));
    // Another writer (here: raw bytes under the same key) is not seen while
    // the near copy lives...
    let raw_key = cache.key(&1).expect("key");
    node.set(&raw_key, postcard::to_stdvec(&20u64).expect("encode"), None)
        .await
        .expect("raw set");
    assert_eq!(cache.get(&1).await.expect("near hit"), Some(10));
    let stats = cache.near_stats().expect("near enabled");
    assert_eq!(stats.hits, 1);
    // ...and a write or invalidation through this cache drops it at once.
    cache.invalidate(&1).await.expect("invalidate");
    assert_eq!(cache.get(&1).await.expect("get"), None);
    cache.set(&1, &30).await.expect("set");
    assert_eq!(cache.get(&1).await.expect("get"), Some(30));
    node.shutdown().await;
}
