//! Reading certificates back: the node name a certificate proves and what
//! a certs directory holds. Parses with x509-parser; never verifies trust
//! (that is rustls' job).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;

use super::files::{io_err, read_text};
use super::{CertError, Result, parse_certs};
use crate::transport::NodeName;

/// One certificate found by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// The `.crt` file.
    pub path: PathBuf,
    /// The subject distinguished name, as text.
    pub subject: String,
    /// DNS names in the SAN extension.
    pub dns: Vec<String>,
    /// IP addresses in the SAN extension.
    pub ips: Vec<IpAddr>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// Whether this is a CA certificate.
    pub is_ca: bool,
}

/// The node name a certificate proves: its first DNS subject alternative
/// name. Used by the transport on the peer's certificate.
pub fn node_name_of(cert: &CertificateDer<'_>) -> Result<NodeName> {
    let info = CertInfo::parse(cert)?;
    info.dns
        .into_iter()
        .next()
        .map(NodeName::new)
        .ok_or(CertError::NoName)
}

/// Every `.crt` in `dir`, sorted by file name, with subject, SANs and
/// validity. Files that do not parse are reported as errors.
pub fn list(dir: &Path) -> Result<Vec<CertEntry>> {
    let read = fs::read_dir(dir).map_err(|source| io_err(dir, source))?;
    let mut paths = Vec::new();
    for entry in read {
        let path = entry.map_err(|source| io_err(dir, source))?.path();
        if path.extension().is_some_and(|e| e == "crt") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        for der in parse_certs(&read_text(&path)?, &path)? {
            let info = CertInfo::parse(&der)?;
            out.push(CertEntry {
                path: path.clone(),
                subject: info.subject,
                dns: info.dns,
                ips: info.ips,
                not_before: info.not_before,
                not_after: info.not_after,
                is_ca: info.is_ca,
            });
        }
    }
    Ok(out)
}

/// The fields of a certificate this module reports.
struct CertInfo {
    /// Subject DN as text.
    subject: String,
    /// DNS SANs, in order.
    dns: Vec<String>,
    /// IP SANs, in order.
    ips: Vec<IpAddr>,
    /// Validity start (Unix seconds).
    not_before: i64,
    /// Validity end (Unix seconds).
    not_after: i64,
    /// CA flag from basic constraints.
    is_ca: bool,
}

impl CertInfo {
    /// Parse a DER certificate with x509-parser.
    fn parse(der: &CertificateDer<'_>) -> Result<CertInfo> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CertError::Parse(e.to_string()))?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(raw) => {
                    if let Some(ip) = ip_from_bytes(raw) {
                        ips.push(ip);
                    }
                }
                _ => {}
            }
        }
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            dns,
            ips,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            is_ca: cert.is_ca(),
        })
    }
}

/// An IP address from a SAN's raw bytes (4 or 16 of them).
fn ip_from_bytes(raw: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(raw) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(raw).ok().map(IpAddr::from)
}
