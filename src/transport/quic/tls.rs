//! TLS for the QUIC transport: rustls configurations (ring provider chosen
//! here, TLS 1.3 only, ALPN `shoal/1`, mutual authentication against the
//! cluster CA) and reading the proven peer name off a connection.
//!
//! Owns certificate verification policy; must not rely on a process-wide
//! crypto provider (rustls panics when several are compiled in).

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{HandshakeData, QuicClientConfig, QuicServerConfig};
use quinn::{Connection, TransportConfig, VarInt};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::QuicError;
use crate::certs::{NodeTls, node_name_of};
use crate::transport::NodeName;

/// The one application protocol peers speak.
pub const ALPN: &[u8] = b"shoal/1";

/// Server name sent when dialling a seed whose node name we don't know yet;
/// the seed verifier ignores it and checks the certificate's own name.
pub const SEED_SERVER_NAME: &str = "seed.shoal.invalid";

/// The crypto provider, always ring, always chosen here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The cluster CA as a root store.
fn roots(tls: &NodeTls) -> Result<Arc<RootCertStore>, QuicError> {
    let mut roots = RootCertStore::empty();
    for cert in &tls.ca {
        roots.add(cert.clone())?;
    }
    Ok(Arc::new(roots))
}

/// QUIC transport parameters: idle timeout and keep-alive.
pub fn transport_config(
    idle_timeout: Duration,
    keep_alive: Duration,
) -> Result<Arc<TransportConfig>, QuicError> {
    let idle = VarInt::try_from(idle_timeout.as_millis() as u64)
        .map_err(|_| QuicError::Config("idle timeout out of range".into()))?;
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(idle.into()));
    t.keep_alive_interval(Some(keep_alive));
    t.max_concurrent_bidi_streams(VarInt::from_u32(256));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    Ok(Arc::new(t))
}

/// The server side: our certificate, and a client certificate chaining to
/// the CA is required.
pub fn server_config(
    tls: &NodeTls,
    transport: Arc<TransportConfig>,
) -> Result<quinn::ServerConfig, QuicError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(tls)?, provider())
        .build()
        .map_err(|e| QuicError::Config(e.to_string()))?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// The two client configurations.
#[derive(Debug, Clone)]
pub struct ClientConfigs {
    /// For peers whose name we know: the server name must be on the cert.
    pub named: quinn::ClientConfig,
    /// For seeds dialled by address: any name on a cert chaining to the CA.
    pub seed: quinn::ClientConfig,
}

/// Build both client configurations (both present our certificate).
pub fn client_configs(
    tls: &NodeTls,
    transport: Arc<TransportConfig>,
) -> Result<ClientConfigs, QuicError> {
    let webpki = WebPkiServerVerifier::builder_with_provider(roots(tls)?, provider())
        .build()
        .map_err(|e| QuicError::Config(e.to_string()))?;
    let named = client_config(tls, webpki.clone(), transport.clone())?;
    let seed_verifier = Arc::new(SeedVerifier { inner: webpki });
    let seed = client_config(tls, seed_verifier, transport)?;
    Ok(ClientConfigs { named, seed })
}

/// One client configuration with the given server verifier.
fn client_config(
    tls: &NodeTls,
    verifier: Arc<dyn ServerCertVerifier>,
    transport: Arc<TransportConfig>,
) -> Result<quinn::ClientConfig, QuicError> {
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport);
    Ok(cfg)
}

/// Verifies a seed's certificate without knowing its name in advance: the
/// chain, validity and signatures are checked exactly as for a named peer,
/// using the certificate's own node name (first DNS SAN) as the name.
#[derive(Debug)]
struct SeedVerifier {
    /// The standard verifier every check is delegated to.
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for SeedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = node_name_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let own = ServerName::try_from(name.as_str().to_owned()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &own, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The node name proven by the peer's certificate on an established
/// connection (first DNS SAN of its end-entity certificate).
pub fn peer_name(conn: &Connection) -> Option<NodeName> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    node_name_of(chain.first()?).ok()
}

/// Whether the connection negotiated ALPN `shoal/1`.
pub fn speaks_shoal(conn: &Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| d.downcast::<HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN)
}
