//! Snapshot files on disk: written to a temporary file in the data
//! directory, fsynced, renamed over the old snapshot atomically, and the
//! directory fsynced; read back whole.
//!
//! Owns paths and file-system calls; must not know the format beyond
//! handing a writer to [`SnapshotWriter`] (see `format.rs`).

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::PersistError;
use super::format::{SnapshotHeader, SnapshotWriter};

/// The snapshot's file name inside the data directory.
pub const SNAPSHOT_FILE: &str = "shoal.snap";

/// The snapshot's path inside `dir`.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// The temporary file a save writes before renaming it.
fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{SNAPSHOT_FILE}.tmp-{}", std::process::id()))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a finished write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Entries written (tombstones included).
    pub entries: u64,
    /// Bytes of the file.
    pub bytes: u64,
}

/// Write a snapshot atomically: `fill` appends the partitions to the
/// writer; on success the file replaces `dir/shoal.snap`, on failure the
/// old snapshot is left as it was and the temporary file removed.
pub fn write_atomically(
    dir: &Path,
    header: &SnapshotHeader,
    fill: impl FnOnce(&mut SnapshotWriter<BufWriter<File>>) -> Result<(), PersistError>,
) -> Result<Written, PersistError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = temp_path(dir);
    let result = write_temp(&tmp, header, fill).and_then(|w| {
        let dest = snapshot_path(dir);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_dir(dir)?;
        Ok(w)
    });
    if result.is_err() {
        // Best effort: the temp file may not exist.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn write_temp(
    tmp: &Path,
    header: &SnapshotHeader,
    fill: impl FnOnce(&mut SnapshotWriter<BufWriter<File>>) -> Result<(), PersistError>,
) -> Result<Written, PersistError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)
        .map_err(io(tmp))?;
    let mut w = SnapshotWriter::new(BufWriter::with_capacity(1 << 20, file), header)?;
    fill(&mut w)?;
    let (buf, entries, bytes) = w.finish()?;
    let file = buf.into_inner().map_err(|e| PersistError::Io {
        path: tmp.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(tmp))?;
    Ok(Written { entries, bytes })
}

/// fsync a directory so a rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    let d = File::open(dir).map_err(io(dir))?;
    d.sync_all().map_err(io(dir))
}

/// The bytes of `dir/shoal.snap`, or `None` when there is no snapshot.
pub fn read_snapshot(dir: &Path) -> Result<Option<Vec<u8>>, PersistError> {
    let path = snapshot_path(dir);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Io { path, source }),
    }
}
