//! Counters of the QUIC transport: plain atomics, read by tests now and by
//! the metrics endpoint later.
//!
//! Owns the classification of handshake failures into reasons; must not log
//! (callers log once, with context).

use std::sync::atomic::{AtomicU64, Ordering};

use quinn::ConnectionError;

/// Why a TLS handshake failed, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The peer presented no certificate (client without client auth).
    NoCert,
    /// The peer's certificate does not chain to the cluster CA.
    UnknownCa,
    /// The certificate does not carry the expected node name (or none).
    BadName,
    /// The peer did not speak ALPN `shoal/1`.
    BadAlpn,
    /// Anything else (timeouts, protocol errors, expired certificates...).
    Other,
}

/// TLS alert codes (RFC 8446 §6) used to classify failures.
mod alert {
    /// bad_certificate
    pub const BAD_CERTIFICATE: u64 = 42;
    /// unknown_ca
    pub const UNKNOWN_CA: u64 = 48;
    /// certificate_required
    pub const CERTIFICATE_REQUIRED: u64 = 116;
    /// no_application_protocol
    pub const NO_APPLICATION_PROTOCOL: u64 = 120;
}

impl HandshakeFailure {
    /// Classify a handshake error, whether we detected it (local TLS error)
    /// or the peer did and closed with an alert.
    pub fn classify(err: &ConnectionError) -> HandshakeFailure {
        match err {
            ConnectionError::TransportError(e) => Self::from_parts(u64::from(e.code), &e.reason),
            ConnectionError::ConnectionClosed(close) => {
                let reason = String::from_utf8_lossy(&close.reason);
                Self::from_parts(u64::from(close.error_code), &reason)
            }
            _ => HandshakeFailure::Other,
        }
    }

    /// Classify from a QUIC error code (TLS alerts are 0x100 + alert) and
    /// the reason text rustls gave.
    pub fn from_parts(code: u64, reason: &str) -> HandshakeFailure {
        let reason = reason.to_ascii_lowercase();
        if reason.contains("no certificates") {
            return HandshakeFailure::NoCert;
        }
        if reason.contains("unknownissuer") || reason.contains("unknown issuer") {
            return HandshakeFailure::UnknownCa;
        }
        if reason.contains("not valid for name") || reason.contains("notvalidforname") {
            return HandshakeFailure::BadName;
        }
        if reason.contains("application protocol") || reason.contains("known protocol") {
            return HandshakeFailure::BadAlpn;
        }
        if !(0x100..0x200).contains(&code) {
            return HandshakeFailure::Other;
        }
        match code - 0x100 {
            alert::CERTIFICATE_REQUIRED => HandshakeFailure::NoCert,
            alert::UNKNOWN_CA => HandshakeFailure::UnknownCa,
            alert::BAD_CERTIFICATE => HandshakeFailure::BadName,
            alert::NO_APPLICATION_PROTOCOL => HandshakeFailure::BadAlpn,
            _ => HandshakeFailure::Other,
        }
    }

    /// Whether the error looks like a refused handshake (a TLS alert or
    /// one of our own refusals) rather than an unreachable peer.
    pub fn is_tls_refusal(err: &ConnectionError) -> bool {
        let code = match err {
            ConnectionError::TransportError(e) => u64::from(e.code),
            ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
            _ => return false,
        };
        (0x100..0x200).contains(&code)
    }
}

/// Handshake failures by reason.
#[derive(Debug, Default)]
pub struct HandshakeFailures {
    /// Peer sent no certificate.
    pub no_cert: AtomicU64,
    /// Certificate from another CA.
    pub unknown_ca: AtomicU64,
    /// Certificate without the expected name.
    pub bad_name: AtomicU64,
    /// Wrong or missing ALPN.
    pub bad_alpn: AtomicU64,
    /// Any other handshake failure.
    pub other: AtomicU64,
}

/// Every counter the transport keeps. All monotonic.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Handshakes that failed, by reason (both directions).
    pub handshake_failures: HandshakeFailures,
    /// Handshakes that completed (both directions).
    pub handshakes_ok: AtomicU64,
    /// Per-thread client endpoints opened (one per RESP I/O thread that
    /// forwarded a request; see `quic::local`).
    pub thread_endpoints: AtomicU64,
    /// Authenticated connections that ended (closed by either side, idle
    /// timeout, shutdown).
    pub connections_closed: AtomicU64,
    /// Datagrams delivered to the incoming channel.
    pub datagrams_in: AtomicU64,
    /// Datagrams handed to quinn for sending.
    pub datagrams_out: AtomicU64,
    /// Datagrams dropped: too large, queue full, no connection, channel full.
    pub datagrams_dropped: AtomicU64,
    /// Requests received and delivered to the incoming channel.
    pub requests_in: AtomicU64,
    /// Requests we sent that got a reply.
    pub requests_out: AtomicU64,
    /// Requests we sent that failed (unreachable, timeout, bad frame...).
    pub requests_failed: AtomicU64,
    /// Frames refused for exceeding the maximum frame size (either way).
    pub frames_rejected: AtomicU64,
    /// Payload bytes received (datagrams and frames).
    pub bytes_in: AtomicU64,
    /// Payload bytes sent (datagrams and frames).
    pub bytes_out: AtomicU64,
}

/// A copy of every counter at one instant, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`HandshakeFailures::no_cert`].
    pub handshake_no_cert: u64,
    /// See [`HandshakeFailures::unknown_ca`].
    pub handshake_unknown_ca: u64,
    /// See [`HandshakeFailures::bad_name`].
    pub handshake_bad_name: u64,
    /// See [`HandshakeFailures::bad_alpn`].
    pub handshake_bad_alpn: u64,
    /// See [`HandshakeFailures::other`].
    pub handshake_other: u64,
    /// See [`TransportStats::handshakes_ok`].
    pub handshakes_ok: u64,
    /// See [`TransportStats::thread_endpoints`].
    pub thread_endpoints: u64,
    /// See [`TransportStats::connections_closed`].
    pub connections_closed: u64,
    /// See [`TransportStats::datagrams_in`].
    pub datagrams_in: u64,
    /// See [`TransportStats::datagrams_out`].
    pub datagrams_out: u64,
    /// See [`TransportStats::datagrams_dropped`].
    pub datagrams_dropped: u64,
    /// See [`TransportStats::requests_in`].
    pub requests_in: u64,
    /// See [`TransportStats::requests_out`].
    pub requests_out: u64,
    /// See [`TransportStats::requests_failed`].
    pub requests_failed: u64,
    /// See [`TransportStats::frames_rejected`].
    pub frames_rejected: u64,
    /// See [`TransportStats::bytes_in`].
    pub bytes_in: u64,
    /// See [`TransportStats::bytes_out`].
    pub bytes_out: u64,
}

impl TransportStats {
    /// Count one handshake failure.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        let f = &self.handshake_failures;
        let counter = match why {
            HandshakeFailure::NoCert => &f.no_cert,
            HandshakeFailure::UnknownCa => &f.unknown_ca,
            HandshakeFailure::BadName => &f.bad_name,
            HandshakeFailure::BadAlpn => &f.bad_alpn,
            HandshakeFailure::Other => &f.other,
        };
        bump(counter);
    }

    /// Read every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let f = &self.handshake_failures;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            handshake_no_cert: get(&f.no_cert),
            handshake_unknown_ca: get(&f.unknown_ca),
            handshake_bad_name: get(&f.bad_name),
            handshake_bad_alpn: get(&f.bad_alpn),
            handshake_other: get(&f.other),
            handshakes_ok: get(&self.handshakes_ok),
            thread_endpoints: get(&self.thread_endpoints),
            connections_closed: get(&self.connections_closed),
            datagrams_in: get(&self.datagrams_in),
            datagrams_out: get(&self.datagrams_out),
            datagrams_dropped: get(&self.datagrams_dropped),
            requests_in: get(&self.requests_in),
            requests_out: get(&self.requests_out),
            requests_failed: get(&self.requests_failed),
            frames_rejected: get(&self.frames_rejected),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }
}

/// Add one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Add `n` to a counter.
pub fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_reasons_map_to_failure_kinds() {
        let tls = |a: u64| 0x100 + a;
        assert_eq!(
            HandshakeFailure::from_parts(tls(116), "peer sent no certificates"),
            HandshakeFailure::NoCert
        );
        assert_eq!(
            HandshakeFailure::from_parts(tls(48), "invalid peer certificate: UnknownIssuer"),
            HandshakeFailure::UnknownCa
        );
        assert_eq!(
            HandshakeFailure::from_parts(
                tls(42),
                "invalid peer certificate: certificate not valid for name \"a\""
            ),
            HandshakeFailure::BadName
        );
        assert_eq!(
            HandshakeFailure::from_parts(tls(120), "peer doesn't support any known protocol"),
            HandshakeFailure::BadAlpn
        );
        assert_eq!(
            HandshakeFailure::from_parts(tls(48), ""),
            HandshakeFailure::UnknownCa
        );
        assert_eq!(
            HandshakeFailure::from_parts(1, "timeout"),
            HandshakeFailure::Other
        );
    }
}
