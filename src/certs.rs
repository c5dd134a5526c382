//! The cluster CA and node certificates, made with rcgen.
//!
//! # What this module owns
//! - [`init_ca`]: the cluster CA (`ca.crt`, `ca.key`) in a directory;
//! - [`issue_node`]: a node certificate (`NAME.crt`, `NAME.key`) signed by
//!   that CA, carrying the node name as a DNS SAN plus any IPs and DNS names
//!   asked for, usable for both TLS server and client authentication;
//! - [`load_node_tls`] / [`NodeTls::from_pem`]: the PEM files turned into
//!   what the QUIC transport needs (CA roots, chain, key, proven node name);
//! - [`list`]: what certificates a directory holds (for `shoal certs list`);
//! - [`TestPki`]: an in-memory CA for tests and `shoal up`.
//!
//! Private keys are written with mode 0600 (on Unix).
//!
//! # What it must not do
//! It does no networking and never panics on file contents: every problem is
//! a [`CertError`]. It chooses no crypto provider for the process; the
//! transport chooses ring in code.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::transport::NodeName;

/// File name of the CA certificate inside a certs directory.
pub const CA_CERT: &str = "ca.crt";
/// File name of the CA private key inside a certs directory.
pub const CA_KEY: &str = "ca.key";
/// Default validity of a node certificate, in days.
pub const DEFAULT_NODE_DAYS: u32 = 365;
/// Validity of the CA certificate, in days (10 years).
pub const CA_DAYS: u32 = 3650;
/// How far back `not_before` is set, to tolerate small clock skew between
/// nodes (seconds).
const BACKDATE_SECS: i64 = 3600;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory could not be read or written. Nothing else was
    /// changed by the failing call beyond files already written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The CA (or a node's files) already exist and `force` was not given;
    /// nothing was written.
    #[error("{0} already exists (use --force to overwrite)")]
    Exists(PathBuf),
    /// A node name or DNS name is not a valid DNS-style name (letters,
    /// digits, '-', '.'; no empty labels; at most 253 characters).
    #[error("invalid name {0:?}: use letters, digits, '-' and '.'")]
    InvalidName(String),
    /// The requested validity is zero days.
    #[error("validity must be at least one day")]
    InvalidValidity,
    /// rcgen refused to build or sign a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable item of the expected kind or is malformed.
    #[error("{path}: bad PEM: {reason}")]
    Pem {
        /// The file (or `<memory>` for in-memory PEM).
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A certificate could not be parsed as X.509.
    #[error("cannot parse certificate: {0}")]
    Parse(String),
    /// The node certificate carries no DNS SAN, so no node name.
    #[error("certificate carries no DNS name (SAN); cannot tell the node name")]
    NoName,
    /// The node certificate does not chain to the given CA (or is expired,
    /// or is not valid for its own name).
    #[error("node certificate is not trusted by the CA: {0}")]
    NotTrusted(String),
}

/// Shorthand for this module's results.
pub type Result<T, E = CertError> = std::result::Result<T, E>;

/// Where [`init_ca`] wrote the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    /// The CA certificate (PEM), shared with every node.
    pub cert: PathBuf,
    /// The CA private key (PEM, mode 0600); keep it off the nodes.
    pub key: PathBuf,
}

/// Where [`issue_node`] wrote a node's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// The node certificate (PEM).
    pub cert: PathBuf,
    /// The node private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// What the transport needs to speak mutual TLS: the CA to trust, our chain
/// and key, and the node name our certificate proves.
pub struct NodeTls {
    /// Trust anchors: the cluster CA certificate(s).
    pub ca: Vec<CertificateDer<'static>>,
    /// Our certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    /// The node name carried by our certificate (first DNS SAN).
    pub name: NodeName,
}

impl Clone for NodeTls {
    fn clone(&self) -> Self {
        NodeTls {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            name: self.name.clone(),
        }
    }
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("name", &self.name)
            .field("ca", &self.ca.len())
            .field("chain", &self.chain.len())
            .field("key", &"[elided]")
            .finish()
    }
}

/// Create the cluster CA in `dir` (created if missing): `ca.crt` and
/// `ca.key` (mode 0600). The CA's common name is the cluster name; it is
/// valid for ten years and may only sign certificates.
///
/// Refuses ([`CertError::Exists`]) when either file exists, unless `force`.
pub fn init_ca(dir: &Path, cluster: &str, force: bool) -> Result<CaPaths> {
    validate_name(cluster)?;
    let paths = CaPaths {
        cert: dir.join(CA_CERT),
        key: dir.join(CA_KEY),
    };
    refuse_existing(&[&paths.cert, &paths.key], force)?;
    let (cert_pem, key) = make_ca(cluster)?;
    create_dir(dir)?;
    write_private(&paths.key, &key.serialize_pem())?;
    write_public(&paths.cert, &cert_pem)?;
    Ok(paths)
}

/// Issue a node certificate signed by the CA in `dir`: writes `NAME.crt`
/// and `NAME.key` (mode 0600) there, overwriting an older pair.
///
/// The certificate's subject CN and first DNS SAN are `name`; `ips` and
/// `dns` are added as further SANs. It is valid from an hour ago for
/// `days` days, for TLS server and client authentication.
pub fn issue_node(
    dir: &Path,
    name: &str,
    ips: &[IpAddr],
    dns: &[String],
    days: u32,
) -> Result<NodePaths> {
    let spec = NodeSpec {
        name,
        ips,
        dns,
        days,
    };
    spec.validate()?;
    let ca_pem = read_text(&dir.join(CA_CERT))?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_key = KeyPair::from_pem(&read_text(&ca_key_path)?).map_err(|e| CertError::Pem {
        path: ca_key_path.clone(),
        reason: e.to_string(),
    })?;
    let (cert_pem, key_pem) = sign_node(&ca_pem, &ca_key, &spec)?;
    let paths = NodePaths {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    write_private(&paths.key, &key_pem)?;
    write_public(&paths.cert, &cert_pem)?;
    Ok(paths)
}

/// Load a node's TLS material from PEM files: the CA certificate(s), the
/// node's chain and its private key. Checks that the chain is trusted by
/// the CA and valid for the node name it carries.
pub fn load_node_tls(ca: &Path, cert: &Path, key: &Path) -> Result<NodeTls> {
    let ca_pem = read_text(ca)?;
    let cert_pem = read_text(cert)?;
    let key_pem = read_text(key)?;
    NodeTls::from_pem_named((&ca_pem, ca), (&cert_pem, cert), (&key_pem, key))
}

impl NodeTls {
    /// Build from PEM text held in memory (see [`load_node_tls`]).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<NodeTls> {
        let mem = Path::new("<memory>");
        NodeTls::from_pem_named((ca_pem, mem), (cert_pem, mem), (key_pem, mem))
    }

    /// Shared body of the loaders; each PEM comes with the path to report.
    fn from_pem_named(
        ca: (&str, &Path),
        cert: (&str, &Path),
        key: (&str, &Path),
    ) -> Result<NodeTls> {
        let ca_certs = parse_certs(ca.0, ca.1)?;
        let chain = parse_certs(cert.0, cert.1)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(key.0.as_bytes()).map_err(|e| CertError::Pem {
                path: key.1.to_path_buf(),
                reason: e.to_string(),
            })?;
        let (leaf, intermediates) = chain.split_first().ok_or_else(|| CertError::Pem {
            path: cert.1.to_path_buf(),
            reason: "no certificate found".into(),
        })?;
        let name = node_name_of(leaf)?;
        check_trusted(&ca_certs, leaf, intermediates, &name)?;
        Ok(NodeTls {
            ca: ca_certs,
            chain,
            key: key_der,
            name,
        })
    }
}

/// What a node certificate should carry.
struct NodeSpec<'a> {
    /// Node name: CN and first DNS SAN.
    name: &'a str,
    /// Extra IP SANs.
    ips: &'a [IpAddr],
    /// Extra DNS SANs.
    dns: &'a [String],
    /// Validity in days from now.
    days: u32,
}

impl NodeSpec<'_> {
    /// Check names and validity before any work.
    fn validate(&self) -> Result<()> {
        validate_name(self.name)?;
        for d in self.dns {
            validate_name(d)?;
        }
        if self.days == 0 {
            return Err(CertError::InvalidValidity);
        }
        Ok(())
    }
}

/// Make a self-signed CA certificate (PEM) and its key.
fn make_ca(cluster: &str) -> Result<(String, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cluster);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// Sign a node certificate under the CA; returns (cert PEM, key PEM).
fn sign_node(ca_pem: &str, ca_key: &KeyPair, spec: &NodeSpec<'_>) -> Result<(String, String)> {
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(spec.name);
    params.subject_alt_names = node_sans(spec)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, spec.days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The SAN list: node name first, then extra DNS names, then IPs.
fn node_sans(spec: &NodeSpec<'_>) -> Result<Vec<SanType>> {
    let mut sans = Vec::with_capacity(1 + spec.dns.len() + spec.ips.len());
    for name in std::iter::once(spec.name).chain(spec.dns.iter().map(String::as_str)) {
        let ia5 = Ia5String::try_from(name).map_err(|_| CertError::InvalidName(name.to_owned()))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(sans)
}

/// A distinguished name with only a common name.
fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// Valid from an hour ago (clock skew) for `days` days from now.
fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(BACKDATE_SECS);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Accept DNS-style names: ASCII letters, digits, '-' and '.', non-empty
/// labels of at most 63 characters, not starting or ending with '-', at
/// most 253 characters in all, and not all digits and dots (that would read
/// as an IP address).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = || CertError::InvalidName(name.to_owned());
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(bad());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad());
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    Ok(())
}

/// Check `leaf` (with `intermediates`) is trusted by `ca` and valid for
/// `name`, with rustls' own verifier and the ring provider.
fn check_trusted(
    ca: &[CertificateDer<'static>],
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    name: &NodeName,
) -> Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert.clone())
            .map_err(|e| CertError::NotTrusted(format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| CertError::NotTrusted(e.to_string()))?;
    let server_name = ServerName::try_from(name.as_str().to_owned())
        .map_err(|_| CertError::InvalidName(name.to_string()))?;
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
        .map_err(|e| CertError::NotTrusted(e.to_string()))?;
    Ok(())
}

/// Every certificate in a PEM text; at least one.
fn parse_certs(pem: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_path_buf(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

mod files;
mod inspect;
mod test_pki;

use self::files::{create_dir, read_text, refuse_existing, write_private, write_public};
pub use self::inspect::{CertEntry, list, node_name_of};
pub use self::test_pki::TestPki;

#[cfg(test)]
mod tests;
