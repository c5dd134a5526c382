//! Certificate rotation without restart: watch the node's CA bundle,
//! certificate and key files (modification time and size, polled) and
//! reload them on change or on SIGHUP, so that new QUIC connections use
//! the new material; warn when the node certificate expires within 30 days.
//!
//! Owns the watch loop and its counters; must not build TLS configurations
//! itself (that is [`QuicTransport::reload_tls`]). A bad new file never
//! replaces working material: the reload is refused and logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::QuicTransport;
use crate::certs::{NodeTls, load_node_tls};
use crate::shutdown::Shutdown;

/// Below this many seconds of validity left the node warns (30 days).
pub const EXPIRY_WARNING: i64 = 30 * 86_400;

/// The files a node's QUIC TLS comes from.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA bundle (old and new CAs during a CA rotation).
    pub ca: PathBuf,
    /// The node certificate chain.
    pub cert: PathBuf,
    /// The node private key.
    pub key: PathBuf,
}

/// Counters and gauges of the watcher (for metrics).
#[derive(Debug, Default)]
pub struct CertWatch {
    /// Successful reloads.
    pub reloads: AtomicU64,
    /// Reloads refused (unreadable or invalid files); the old material
    /// stays in use.
    pub reload_failures: AtomicU64,
    /// Seconds until the node certificate in use expires (negative:
    /// expired).
    pub expires_in_secs: AtomicI64,
    /// Seconds until the first of the trusted CA certificates in use
    /// expires (negative: expired).
    pub ca_expires_in_secs: AtomicI64,
    /// Unix seconds when the two values above were computed (at start and
    /// at each reload), so readers can count down from them.
    pub noted_at_unix: AtomicI64,
}

/// What identifies a version of the files: (modified, length) of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &CertFiles) -> Stamp {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// Seconds until the leaf certificate of `tls` expires.
fn expires_in(tls: &NodeTls) -> Option<i64> {
    let leaf = tls.chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(cert.validity().not_after.timestamp() - now)
}

/// Seconds until the first trusted CA certificate of `tls` expires.
fn ca_expires_in(tls: &NodeTls) -> Option<i64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    tls.ca
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| c.validity().not_after.timestamp() - now)
        .min()
}

/// Record (and warn about) the expiry of the certificate in use.
fn note_expiry(watch: &CertWatch, tls: &NodeTls, cert: &Path) {
    if let Some(ca_left) = ca_expires_in(tls) {
        watch.ca_expires_in_secs.store(ca_left, Ordering::Relaxed);
    }
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        watch
            .noted_at_unix
            .store(now.as_secs() as i64, Ordering::Relaxed);
    }
    let Some(left) = expires_in(tls) else {
        return;
    };
    watch.expires_in_secs.store(left, Ordering::Relaxed);
    if left < EXPIRY_WARNING {
        tracing::warn!(
            cert = %cert.display(),
            days_left = left / 86_400,
            "node certificate expires within 30 days: issue a new one (`shoal certs issue`); \
             it is picked up without a restart"
        );
    }
}

/// Start watching: check the files every `poll` and on SIGHUP; stop on
/// `shutdown`. `current` is the material the transport was bound with.
pub fn spawn(
    transport: Arc<QuicTransport>,
    files: CertFiles,
    current: &NodeTls,
    poll: Duration,
    shutdown: Shutdown,
) -> Arc<CertWatch> {
    let watch = Arc::new(CertWatch::default());
    note_expiry(&watch, current, &files.cert);
    if transport.inner.cert_watch.set(watch.clone()).is_err() {
        tracing::warn!("a certificate watcher already runs; its counters stay the ones exported");
    }
    let w = watch.clone();
    tokio::spawn(async move {
        let mut hup = hangup();
        let mut last = stamp(&files);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                _ = recv_hangup(&mut hup) => true,
                _ = tick.tick() => false,
            };
            let now = stamp(&files);
            if forced || now != last {
                last = now;
                reload(&transport, &files, &w);
            }
        }
    });
    watch
}

/// Load the files and hand them to the transport; log the outcome.
pub fn reload(transport: &QuicTransport, files: &CertFiles, watch: &CertWatch) -> bool {
    let result = load_node_tls(&files.ca, &files.cert, &files.key)
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            transport.reload_tls(&tls).map_err(|e| e.to_string())?;
            Ok(tls)
        });
    match result {
        Ok(tls) => {
            watch.reloads.fetch_add(1, Ordering::Relaxed);
            tracing::info!(cert = %files.cert.display(), cas = tls.ca.len(), "reloaded node certificate");
            note_expiry(watch, &tls, &files.cert);
            true
        }
        Err(e) => {
            watch.reload_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "certificate reload refused; keeping the current one");
            false
        }
    }
}

/// The SIGHUP stream, if it can be installed.
fn hangup() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; certificate files are still polled");
            None
        }
    }
}

/// Resolves on the next SIGHUP; never without a handler.
async fn recv_hangup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
