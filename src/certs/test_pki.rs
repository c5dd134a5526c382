//! An in-memory CA for tests and `shoal up`.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::KeyPair;

use super::files::{create_dir, write_private, write_public};
use super::{
    CA_CERT, CA_KEY, CaPaths, DEFAULT_NODE_DAYS, NodeSpec, NodeTls, Result, make_ca, sign_node,
    validate_name,
};

/// An in-memory cluster CA that issues node certificates without touching
/// the disk. Meant for tests and for `shoal up` (throw-away local clusters);
/// production clusters use [`init_ca`](super::init_ca) and [`issue_node`](super::issue_node).
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate, PEM.
    ca_pem: String,
    /// The CA key, shared so clones issue under the same CA.
    ca_key: Arc<KeyPair>,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    /// A fresh CA whose common name is `cluster`.
    pub fn new(cluster: &str) -> Result<TestPki> {
        validate_name(cluster)?;
        let (ca_pem, ca_key) = make_ca(cluster)?;
        Ok(TestPki {
            ca_pem,
            ca_key: Arc::new(ca_key),
        })
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// TLS material for node `name`, valid for 127.0.0.1 and ::1 too.
    pub fn node(&self, name: &str) -> Result<NodeTls> {
        let loopback = [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
        self.node_with(name, &loopback, &[], DEFAULT_NODE_DAYS)
    }

    /// TLS material for node `name` with the given SANs and validity.
    pub fn node_with(
        &self,
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        days: u32,
    ) -> Result<NodeTls> {
        let (cert_pem, key_pem) = self.node_pem(name, ips, dns, days)?;
        NodeTls::from_pem(&self.ca_pem, &cert_pem, &key_pem)
    }

    /// PEM certificate and key for node `name` (for writing to files).
    pub fn node_pem(
        &self,
        name: &str,
        ips: &[IpAddr],
        dns: &[String],
        days: u32,
    ) -> Result<(String, String)> {
        let spec = NodeSpec {
            name,
            ips,
            dns,
            days,
        };
        spec.validate()?;
        sign_node(&self.ca_pem, &self.ca_key, &spec)
    }

    /// Write this CA to `dir` as `ca.crt` / `ca.key` (overwriting), so
    /// [`issue_node`](super::issue_node) can issue under it.
    pub fn write_ca(&self, dir: &Path) -> Result<CaPaths> {
        let paths = CaPaths {
            cert: dir.join(CA_CERT),
            key: dir.join(CA_KEY),
        };
        create_dir(dir)?;
        write_private(&paths.key, &self.ca_key.serialize_pem())?;
        write_public(&paths.cert, &self.ca_pem)?;
        Ok(paths)
    }
}
