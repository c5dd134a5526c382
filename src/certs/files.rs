//! File helpers of the certs module: reading PEM text, writing
//! certificates (public) and keys (owner-only, 0600 on Unix).

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{CertError, Result};

/// Fail with [`CertError::Exists`] if any path exists and not `force`.
pub(super) fn refuse_existing(paths: &[&Path], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertError::Exists(p.to_path_buf())),
        None => Ok(()),
    }
}

/// Create a directory and its parents.
pub(super) fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| io_err(dir, source))
}

/// Read a whole file as UTF-8 text.
pub(super) fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

/// Write a public file (certificate).
pub(super) fn write_public(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|source| io_err(path, source))
}

/// Write a private key readable by its owner only (0600 on Unix), also
/// when the file already existed with wider permissions.
pub(super) fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path).map_err(|source| io_err(path, source))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|source| io_err(path, source))?;
    }
    file.write_all(text.as_bytes())
        .map_err(|source| io_err(path, source))
}

/// Attach a path to an I/O error.
pub(super) fn io_err(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}
