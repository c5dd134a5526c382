//! Save and load through real files in a temporary directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::*;
use crate::clock::{NodeTag, SharedHlc};
use crate::store::{StoreConfig, UnixMillis};

const T0: u64 = 1_764_300_000_000;

fn store() -> Arc<Store> {
    Arc::new(Store::new(StoreConfig {
        partitions: 32,
        ..StoreConfig::default()
    }))
}

fn manual(at: &Arc<AtomicU64>) -> Clock {
    let at = at.clone();
    Arc::new(move || UnixMillis(at.load(Ordering::Relaxed)))
}

fn persistence(dir: Option<&Path>, store: &Arc<Store>, at: &Arc<AtomicU64>) -> Arc<Persistence> {
    Persistence::new(
        dir.map(Path::to_path_buf),
        store.clone(),
        "n1".into(),
        "shoal".into(),
        manual(at),
    )
}

fn value(s: &Store, k: &str, now: u64) -> Option<Bytes> {
    s.get(k.as_bytes(), UnixMillis(now))
}

#[test]
fn a_saved_store_loads_back_without_its_expired_keys() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let a = store();
    let now = UnixMillis(T0);
    a.set(b"plain", Bytes::from_static(b"1"), None, now)
        .unwrap();
    a.set(
        b"long",
        Bytes::from_static(b"2"),
        Some(now.plus(60_000)),
        now,
    )
    .unwrap();
    a.set(
        b"short",
        Bytes::from_static(b"3"),
        Some(now.plus(1_000)),
        now,
    )
    .unwrap();
    let p = persistence(Some(dir.path()), &a, &at);
    let report = p.save().unwrap();
    assert_eq!(report.entries, 3);
    assert_eq!(p.stats.last_save_unix.load(Ordering::Relaxed), T0 / 1000);

    at.store(T0 + 2_000, Ordering::Relaxed);
    let b = store();
    let loaded = persistence(Some(dir.path()), &b, &at).load().unwrap();
    assert_eq!((loaded.keys, loaded.expired), (2, 1));
    let later = T0 + 2_000;
    assert_eq!(value(&b, "plain", later).as_deref(), Some(&b"1"[..]));
    assert_eq!(value(&b, "long", later).as_deref(), Some(&b"2"[..]));
    assert_eq!(value(&b, "short", later), None);
    let exp = b.read(b"long", UnixMillis(later), |e| e.and_then(|e| e.expires_at));
    assert_eq!(exp, Some(UnixMillis(T0 + 60_000)), "absolute expiry kept");
}

#[test]
fn versions_and_tombstones_survive_a_versioned_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let a = store();
    a.enable_versions(Arc::new(SharedHlc::new(NodeTag(7))), 3_600_000);
    let now = UnixMillis(T0);
    a.set(b"k", Bytes::from_static(b"v"), None, now).unwrap();
    a.set(b"d", Bytes::from_static(b"x"), None, now).unwrap();
    assert!(a.delete(b"d", now));
    persistence(Some(dir.path()), &a, &at).save().unwrap();

    let b = store();
    b.enable_versions(Arc::new(SharedHlc::new(NodeTag(9))), 3_600_000);
    let r = persistence(Some(dir.path()), &b, &at).load().unwrap();
    assert_eq!((r.keys, r.tombstones), (1, 1));
    assert_eq!(b.record(b"k", now), a.record(b"k", now));
    assert_eq!(b.record(b"d", now), a.record(b"d", now));
    assert!(r.max_version >= a.record(b"k", now).unwrap().version.0);
}

#[test]
fn a_newer_copy_in_the_store_wins_over_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let a = store();
    let now = UnixMillis(T0);
    a.set(b"k", Bytes::from_static(b"old"), None, now).unwrap();
    persistence(Some(dir.path()), &a, &at).save().unwrap();
    let b = store();
    let newer = crate::store::Record {
        key: Bytes::from_static(b"k"),
        version: crate::store::Version(u64::MAX - 1),
        node: 1,
        body: crate::store::Body::Value {
            value: Bytes::from_static(b"new"),
            expires_at: 0,
        },
    };
    b.apply(&newer, now).unwrap();
    persistence(Some(dir.path()), &b, &at).load().unwrap();
    assert_eq!(value(&b, "k", T0).as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_torn_or_flipped_snapshot_is_refused_counted_and_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let a = store();
    for i in 0..100 {
        let k = format!("key{i}");
        a.set(k.as_bytes(), Bytes::from_static(b"v"), None, UnixMillis(T0))
            .unwrap();
    }
    persistence(Some(dir.path()), &a, &at).save().unwrap();
    let path = snapshot_path(dir.path());
    let good = std::fs::read(&path).unwrap();

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let b = store();
    let p = persistence(Some(dir.path()), &b, &at);
    assert!(p.load().is_err());
    assert_eq!(p.stats.load_failures.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats().keys, 0);

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0xff;
    std::fs::write(&path, &flipped).unwrap();
    assert!(p.load().is_err());
    assert_eq!(p.stats.load_failures.load(Ordering::Relaxed), 2);
    assert_eq!(b.stats().keys, 0);
}

#[test]
fn no_snapshot_file_means_an_empty_start_without_error() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let p = persistence(Some(dir.path()), &store(), &at);
    assert_eq!(p.load().unwrap(), LoadReport::default());
    assert_eq!(p.stats.load_failures.load(Ordering::Relaxed), 0);
}

#[test]
fn without_a_data_dir_saves_are_refused() {
    let at = Arc::new(AtomicU64::new(T0));
    let p = persistence(None, &store(), &at);
    assert!(matches!(p.save(), Err(PersistError::NoDataDir)));
    assert!(matches!(p.bgsave(), Err(PersistError::NoDataDir)));
    assert_eq!(p.load().unwrap(), LoadReport::default());
}

#[test]
fn a_save_replaces_the_previous_snapshot_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let a = store();
    let p = persistence(Some(dir.path()), &a, &at);
    p.save().unwrap();
    a.set(b"k", Bytes::from_static(b"v"), None, UnixMillis(T0))
        .unwrap();
    assert_eq!(p.save().unwrap().entries, 1);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![SNAPSHOT_FILE.to_string()]);
}

#[test]
fn a_second_bgsave_while_one_runs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let at = Arc::new(AtomicU64::new(T0));
    let p = persistence(Some(dir.path()), &store(), &at);
    // Hold the save lock so the first BGSAVE cannot finish yet.
    let guard = p.saving.lock().unwrap();
    p.bgsave().unwrap();
    assert!(matches!(p.bgsave(), Err(PersistError::InProgress)));
    assert!(matches!(p.save(), Err(PersistError::InProgress)));
    assert!(p.bgsave_in_progress());
    drop(guard);
    while p.bgsave_in_progress() {
        std::thread::yield_now();
    }
    assert!(p.stats.last_bgsave_ok.load(Ordering::Relaxed));
    assert!(snapshot_path(dir.path()).exists());
}
