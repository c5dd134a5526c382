//! Snapshots: the node's partitions written to `--data-dir` on demand
//! (SAVE, BGSAVE) and at graceful shutdown, and loaded at start.
//!
//! # What this module owns
//! - The file format (`format.rs`): magic, version, header, entries
//!   partition by partition, checksum; [`decode_snapshot`] is a pure
//!   function over bytes (the fuzz target's entry point).
//! - The file handling (`file.rs`): temp file, fsync, atomic rename,
//!   directory fsync.
//! - [`Persistence`]: one node's save/load state and counters (LASTSAVE,
//!   INFO `# Persistence`, `/metrics`).
//!
//! # What is kept
//! Every live, unexpired key of every partition with its value, version
//! (and the stamping node's tag) and absolute expiry, plus tombstones
//! (cluster mode keeps versioned deletes). At load, entries whose expiry
//! has passed are skipped and the rest are merged through the store's
//! replica path ([`Store::apply`]), so versions decide: a newer copy that
//! anti-entropy or a partition sync brings later still wins. Tombstones
//! wait until the store stamps versions (cluster mode turns them on after
//! the load): [`Persistence::load_tombstones`] applies those still within
//! the tombstone lifetime, so a key deleted before the save does not come
//! back from a replica that missed the delete.
//!
//! # What it must not do
//! Hold a partition lock for a whole save (it copies one partition at a
//! time), panic on any file content, or load anything from a file that
//! fails any check (a refused snapshot leaves the store empty).

mod file;
mod format;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

pub use file::{SNAPSHOT_FILE, snapshot_path};
pub use format::{
    ENTRIES_PER_FRAME, FORMAT_VERSION, Frame, MAGIC, SnapEntry, Snapshot, SnapshotError,
    SnapshotHeader, SnapshotWriter, decode_snapshot, encode_snapshot,
};

use crate::clock::physical;
use crate::resp::clock::Clock;
use crate::resp::state::Shared;
use crate::store::{PartitionId, Record, Store};

/// Why a save or load failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// No `data-dir` is configured: nothing can be saved.
    #[error("no data-dir configured")]
    NoDataDir,
    /// A save is already running (BGSAVE, or SAVE during a BGSAVE).
    #[error("Background save already in progress")]
    InProgress,
    /// A file-system call failed; the previous snapshot is untouched.
    #[error("snapshot file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The snapshot could not be encoded or decoded.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Counters and gauges of saves and loads (INFO and `/metrics`).
#[derive(Debug, Default)]
pub struct PersistStats {
    /// Unix seconds of the last successful save (0: none yet; after a load,
    /// the loaded snapshot's creation time).
    pub last_save_unix: AtomicU64,
    /// Milliseconds the last successful save took.
    pub last_save_duration_ms: AtomicU64,
    /// Bytes of the last snapshot written.
    pub last_save_bytes: AtomicU64,
    /// Entries (keys and tombstones) in the last snapshot written.
    pub last_save_entries: AtomicU64,
    /// Successful saves since start.
    pub saves: AtomicU64,
    /// Failed saves since start.
    pub save_failures: AtomicU64,
    /// Whether the last save (of any kind) succeeded.
    pub last_save_ok: AtomicBool,
    /// Whether the last BGSAVE succeeded (Redis `rdb_last_bgsave_status`).
    pub last_bgsave_ok: AtomicBool,
    /// Keys loaded from the snapshot at start.
    pub loaded_keys: AtomicU64,
    /// Entries of the snapshot skipped at start because they had expired.
    pub loaded_expired: AtomicU64,
    /// Snapshots refused at start (torn, corrupt, unreadable).
    pub load_failures: AtomicU64,
    /// Tombstones loaded from the snapshot at start (cluster mode).
    pub loaded_tombstones: AtomicU64,
    /// The highest version loaded from the snapshot at start.
    pub max_loaded_version: AtomicU64,
    /// Write commands counted at the last save (for
    /// `rdb_changes_since_last_save`).
    pub writes_at_last_save: AtomicU64,
}

impl PersistStats {
    /// The highest version loaded from the snapshot at start (0: none).
    pub fn max_loaded_version(&self) -> u64 {
        self.max_loaded_version.load(Ordering::Relaxed)
    }
}

/// What a successful save did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveReport {
    /// Entries written (keys and tombstones).
    pub entries: u64,
    /// Bytes of the file.
    pub bytes: u64,
    /// How long it took, ms.
    pub millis: u64,
}

/// What a load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Live keys applied to the store.
    pub keys: u64,
    /// Tombstones applied.
    pub tombstones: u64,
    /// Entries skipped because they had expired.
    pub expired: u64,
    /// The highest version read (a node's clock should not stamp below it).
    pub max_version: u64,
}

/// One node's snapshot state. Shared by the RESP commands, the admin
/// endpoint and the node's shutdown.
pub struct Persistence {
    /// The data directory; `None` = snapshots off.
    dir: Option<PathBuf>,
    /// The store saved and loaded.
    store: Arc<Store>,
    /// This node's name, for the header.
    node: String,
    /// The cluster name, for the header.
    cluster: String,
    /// Where "now" comes from (expiry at load; created-at).
    clock: Clock,
    /// Counters.
    pub stats: PersistStats,
    /// Held for the whole of one save: saves never interleave.
    saving: Mutex<()>,
    /// True while a BGSAVE runs (Redis `rdb_bgsave_in_progress`).
    bgsave_running: AtomicBool,
    /// The RESP server's state, whose command counters give the number of
    /// write commands run (`rdb_changes_since_last_save`).
    server: OnceLock<Weak<Shared>>,
    /// The loaded snapshot's tombstones, kept from the load until
    /// [`Persistence::load_tombstones`] (the store is not versioned yet
    /// when the snapshot is loaded).
    tombstones: Mutex<Vec<Record>>,
}

impl std::fmt::Debug for Persistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persistence")
            .field("dir", &self.dir)
            .field("node", &self.node)
            .finish()
    }
}

impl Persistence {
    /// Snapshot state for `store`; `dir` `None` turns snapshots off.
    pub fn new(
        dir: Option<PathBuf>,
        store: Arc<Store>,
        node: String,
        cluster: String,
        clock: Clock,
    ) -> Arc<Persistence> {
        let p = Persistence {
            dir,
            store,
            node,
            cluster,
            clock,
            stats: PersistStats::default(),
            saving: Mutex::new(()),
            bgsave_running: AtomicBool::new(false),
            server: OnceLock::new(),
            tombstones: Mutex::new(Vec::new()),
        };
        p.stats.last_save_ok.store(true, Ordering::Relaxed);
        p.stats.last_bgsave_ok.store(true, Ordering::Relaxed);
        Arc::new(p)
    }

    /// The data directory, if snapshots are on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The snapshot file's path, if snapshots are on.
    pub fn path(&self) -> Option<PathBuf> {
        self.dir.as_deref().map(snapshot_path)
    }

    /// Count write commands from this server's command statistics.
    pub fn attach(&self, server: &Arc<Shared>) {
        let _ = self.server.set(Arc::downgrade(server));
    }

    /// Whether a BGSAVE is running.
    pub fn bgsave_in_progress(&self) -> bool {
        self.bgsave_running.load(Ordering::Relaxed)
    }

    /// Write commands run since the last successful save.
    pub fn changes_since_last_save(&self) -> u64 {
        self.writes()
            .saturating_sub(self.stats.writes_at_last_save.load(Ordering::Relaxed))
    }

    fn writes(&self) -> u64 {
        let Some(shared) = self.server.get().and_then(Weak::upgrade) else {
            return 0;
        };
        let specs = crate::resp::commands::all_commands();
        shared
            .stats
            .commands
            .snapshot()
            .iter()
            .filter(|c| {
                specs
                    .get(c.index)
                    .is_some_and(|s| s.has(crate::resp::commands::Flag::Write))
            })
            .map(|c| c.count)
            .sum()
    }

    /// SAVE: write a snapshot now, on this thread.
    pub fn save(&self) -> Result<SaveReport, PersistError> {
        if self.dir.is_none() {
            return Err(PersistError::NoDataDir);
        }
        let Ok(guard) = self.saving.try_lock() else {
            return Err(PersistError::InProgress);
        };
        let r = self.save_locked();
        drop(guard);
        r
    }

    /// BGSAVE: write a snapshot on a background thread. Refused while
    /// another save runs.
    pub fn bgsave(self: &Arc<Self>) -> Result<(), PersistError> {
        if self.dir.is_none() {
            return Err(PersistError::NoDataDir);
        }
        if self
            .bgsave_running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(PersistError::InProgress);
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("shoal-bgsave".into())
            .spawn(move || {
                let ok = match me.saving.lock() {
                    Ok(guard) => {
                        let r = me.save_locked().is_ok();
                        drop(guard);
                        r
                    }
                    Err(_) => false,
                };
                me.stats.last_bgsave_ok.store(ok, Ordering::Relaxed);
                me.bgsave_running.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            self.bgsave_running.store(false, Ordering::Release);
            return Err(PersistError::Io {
                path: self.path().unwrap_or_default(),
                source: e,
            });
        }
        Ok(())
    }

    /// At graceful shutdown: wait for a running BGSAVE, then save (when a
    /// data dir is set). Logs the outcome; never fails the shutdown.
    pub fn save_at_shutdown(&self) {
        if self.dir.is_none() {
            return;
        }
        let guard = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        match self.save_locked() {
            Ok(r) => tracing::info!(
                entries = r.entries,
                bytes = r.bytes,
                ms = r.millis,
                "snapshot written at shutdown"
            ),
            Err(e) => tracing::error!(error = %e, "snapshot at shutdown failed"),
        }
        drop(guard);
    }

    /// The save itself; the caller holds `saving`.
    fn save_locked(&self) -> Result<SaveReport, PersistError> {
        let Some(dir) = self.dir.as_deref() else {
            return Err(PersistError::NoDataDir);
        };
        let started = Instant::now();
        let writes = self.writes();
        let now = (self.clock)();
        let header = SnapshotHeader {
            node: self.node.clone(),
            cluster: self.cluster.clone(),
            created_at_ms: now.0,
            partitions: self.store.partitions(),
        };
        let result = file::write_atomically(dir, &header, |w| {
            for pid in 0..self.store.partitions() {
                // One partition's lock at a time, held only while copying.
                let (records, _) = self.store.export(PartitionId(pid), None, usize::MAX, now);
                if records.is_empty() {
                    continue;
                }
                w.partition(
                    pid,
                    records.into_iter().map(SnapEntry::from_record).collect(),
                )?;
            }
            Ok(())
        });
        let st = &self.stats;
        match result {
            Ok(written) => {
                let millis = started.elapsed().as_millis() as u64;
                st.last_save_unix.store(now.0 / 1000, Ordering::Relaxed);
                st.last_save_duration_ms.store(millis, Ordering::Relaxed);
                st.last_save_bytes.store(written.bytes, Ordering::Relaxed);
                st.last_save_entries
                    .store(written.entries, Ordering::Relaxed);
                st.writes_at_last_save.store(writes, Ordering::Relaxed);
                st.saves.fetch_add(1, Ordering::Relaxed);
                st.last_save_ok.store(true, Ordering::Relaxed);
                tracing::info!(
                    path = %snapshot_path(dir).display(),
                    entries = written.entries,
                    bytes = written.bytes,
                    ms = millis,
                    "snapshot saved"
                );
                Ok(SaveReport {
                    entries: written.entries,
                    bytes: written.bytes,
                    millis,
                })
            }
            Err(e) => {
                st.save_failures.fetch_add(1, Ordering::Relaxed);
                st.last_save_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "snapshot save failed; the previous snapshot is kept");
                Err(e)
            }
        }
    }

    /// At start: load the snapshot in the data dir, if any. A missing file
    /// is not an error; a refused one is logged, counted, and nothing of it
    /// is applied (the node starts empty).
    pub fn load(&self) -> Result<LoadReport, PersistError> {
        let Some(dir) = self.dir.as_deref() else {
            return Ok(LoadReport::default());
        };
        let path = snapshot_path(dir);
        let loaded = file::read_snapshot(dir).and_then(|bytes| match bytes {
            None => Ok(None),
            Some(b) => decode_snapshot(&b).map(Some).map_err(PersistError::from),
        });
        let snap = match loaded {
            Ok(None) => {
                tracing::info!(path = %path.display(), "no snapshot to load; starting empty");
                return Ok(LoadReport::default());
            }
            Ok(Some(s)) => s,
            Err(e) => {
                self.stats.load_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "snapshot refused; starting empty (the file is left in place; the next save replaces it)"
                );
                return Err(e);
            }
        };
        let report = self.apply(snap);
        Ok(report)
    }

    /// Merge a decoded snapshot into the store (replica path: versions
    /// decide).
    fn apply(&self, snap: Snapshot) -> LoadReport {
        let now = (self.clock)();
        let versioned = self.store.is_versioned();
        let mut r = LoadReport::default();
        if snap.header.cluster != self.cluster || snap.header.node != self.node {
            tracing::warn!(
                snapshot_node = %snap.header.node,
                snapshot_cluster = %snap.header.cluster,
                "the snapshot was written by another node or cluster; loading it anyway"
            );
        }
        for (_, e) in snap.entries {
            if e.is_expired(now.0) {
                r.expired += 1;
                continue;
            }
            r.max_version = r.max_version.max(e.version);
            if e.value.is_none() && !versioned {
                // Not stamping yet: cluster mode turns versions on after
                // the load and then calls `load_tombstones`; a standalone
                // node never does (it keeps no tombstones).
                self.lock_tombstones().push(e.into_record());
                continue;
            }
            let tomb = e.value.is_none();
            match self.store.apply(&e.into_record(), now) {
                Ok(true) if tomb => r.tombstones += 1,
                Ok(true) => r.keys += 1,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "snapshot entry not loaded (memory limit)");
                }
            }
        }
        let st = &self.stats;
        st.loaded_keys.store(r.keys, Ordering::Relaxed);
        st.loaded_expired.store(r.expired, Ordering::Relaxed);
        st.max_loaded_version
            .store(r.max_version, Ordering::Relaxed);
        st.last_save_unix
            .store(snap.header.created_at_ms / 1000, Ordering::Relaxed);
        tracing::info!(
            keys = r.keys,
            tombstones = r.tombstones,
            expired_skipped = r.expired,
            created_at_ms = snap.header.created_at_ms,
            "snapshot loaded"
        );
        r
    }

    /// Apply the loaded snapshot's tombstones once the store stamps
    /// versions (cluster mode, after replication is on): those deleted
    /// less than `lifetime` ago are merged like any replicated delete
    /// (versions decide), older ones are dropped as their peers' copies
    /// are. Returns how many changed something. A store without versions
    /// drops them all.
    pub fn load_tombstones(&self, lifetime: Duration) -> u64 {
        let tombs = std::mem::take(&mut *self.lock_tombstones());
        if tombs.is_empty() || !self.store.is_versioned() {
            return 0;
        }
        let now = (self.clock)();
        let lifetime = lifetime.as_millis() as u64;
        let (mut loaded, mut expired) = (0u64, 0u64);
        for rec in &tombs {
            if physical(rec.version).0.saturating_add(lifetime) <= now.0 {
                expired += 1;
                continue;
            }
            match self.store.apply(rec, now) {
                Ok(true) => loaded += 1,
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "snapshot tombstone not loaded"),
            }
        }
        self.stats
            .loaded_tombstones
            .store(loaded, Ordering::Relaxed);
        tracing::info!(
            tombstones = loaded,
            expired_skipped = expired,
            "snapshot tombstones loaded"
        );
        loaded
    }

    /// The kept tombstones; a poisoned lock only means a panic elsewhere.
    fn lock_tombstones(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.tombstones.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The INFO `# Persistence` section's fields (without the title).
    pub fn info_fields(&self) -> String {
        let st = &self.stats;
        let r = Ordering::Relaxed;
        let status = |ok: bool| if ok { "ok" } else { "err" };
        format!(
            "loading:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\n\
             rdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\n\
             rdb_saves:{}\r\nshoal_snapshot_enabled:{}\r\nshoal_snapshot_path:{}\r\n\
             shoal_snapshot_bytes:{}\r\nshoal_snapshot_keys:{}\r\nshoal_snapshot_loaded_keys:{}\r\n\
             shoal_snapshot_load_failures:{}\r\n",
            self.changes_since_last_save(),
            u8::from(self.bgsave_in_progress()),
            st.last_save_unix.load(r),
            status(st.last_bgsave_ok.load(r)),
            st.last_save_duration_ms.load(r) / 1000,
            st.saves.load(r),
            u8::from(self.dir.is_some()),
            self.path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            st.last_save_bytes.load(r),
            st.last_save_entries.load(r),
            st.loaded_keys.load(r),
            st.load_failures.load(r),
        )
    }
}

#[cfg(test)]
mod tests;
