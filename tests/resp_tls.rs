//! RESP over TLS (`tls-listen`): a client trusting the right CA talks RESP
//! over the TLS port, `redis-cli --tls` works, a client trusting another CA
//! is refused, and with `tls-client-ca` a client without a certificate is
//! refused while one with a certificate from that CA is served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shoal::config::Config;
use shoal::resp::Server;
use shoal::resp::state::Shared;
use shoal::shutdown::Shutdown;
use shoal::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A CA directory with a server certificate (`server`, SAN 127.0.0.1) and
/// a client certificate (`client`).
struct Pki {
    /// The directory (removed on drop).
    dir: tempfile::TempDir,
}

impl Pki {
    fn new(cluster: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        shoal::certs::init_ca(dir.path(), cluster, false).expect("CA");
        let lo = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        shoal::certs::issue_node(dir.path(), "server", &lo, &[], 30).expect("server cert");
        shoal::certs::issue_node(dir.path(), "client", &[], &[], 30).expect("client cert");
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// A running server with a TLS port.
struct TlsServer {
    /// The TLS port.
    tls: SocketAddr,
    /// Counters.
    shared: Arc<Shared>,
    /// Stops it.
    shutdown: Shutdown,
    /// The server task.
    task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    async fn start(pki: &Pki, client_ca: Option<PathBuf>) -> TlsServer {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().expect("literal"),
            tls_listen: Some("127.0.0.1:0".parse().expect("literal")),
            tls_cert: Some(pki.path("server.crt")),
            tls_key: Some(pki.path("server.key")),
            tls_client_ca: client_ca,
            partitions: 16,
            io_threads: 1,
            ..Config::default()
        };
        let store = Arc::new(Store::new(cfg.store()));
        let server = Server::bind(&cfg, store).await.expect("bind");
        let tls = server.tls_addr().expect("TLS port bound");
        let shared = server.shared();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TlsServer {
            tls,
            shared,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("server ends cleanly");
    }

    /// Wait (event-driven, bounded) until the server counted `n` failed
    /// handshakes.
    async fn handshake_failures_reach(&self, n: u64) -> bool {
        for _ in 0..500 {
            if self
                .shared
                .stats
                .tls_handshake_failures
                .load(Ordering::Relaxed)
                >= n
            {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }
}

/// A client configuration trusting `ca`, optionally presenting a cert.
fn connector(ca: &Path, client: Option<(&Path, &Path)>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("read cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert pem");
            let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(cfg))
}

/// Connect and handshake.
async fn dial(addr: SocketAddr, tls: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    tls.connect(name, tcp).await
}

/// Send inline commands and read until `want` bytes arrived (or close).
async fn exchange(stream: &mut TlsStream<TcpStream>, req: &[u8], want: usize) -> Vec<u8> {
    stream.write_all(req).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while out.len() < want {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[tokio::test]
async fn a_client_trusting_the_ca_talks_resp_over_tls() {
    let pki = Pki::new("tlsok");
    let server = TlsServer::start(&pki, None).await;
    let tls = connector(&pki.path("ca.crt"), None);
    let mut s = dial(server.tls, &tls).await.expect("handshake");
    let want = b"+PONG\r\n+OK\r\n$5\r\nhello\r\n";
    let got = exchange(&mut s, b"PING\r\nSET k hello\r\nGET k\r\n", want.len()).await;
    assert_eq!(got, want);
    server.stop().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused() {
    let pki = Pki::new("tlsok");
    let other = Pki::new("other");
    let server = TlsServer::start(&pki, None).await;
    let tls = connector(&other.path("ca.crt"), None);
    assert!(dial(server.tls, &tls).await.is_err());
    assert!(server.handshake_failures_reach(1).await);
    server.stop().await;
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let pki = Pki::new("tlsmutual");
    let server = TlsServer::start(&pki, Some(pki.path("ca.crt"))).await;
    // Without a certificate: TLS 1.3 finishes the client's side of the
    // handshake, then the server's alert ends the first exchange.
    let bare = connector(&pki.path("ca.crt"), None);
    if let Ok(mut s) = dial(server.tls, &bare).await {
        assert!(exchange(&mut s, b"PING\r\n", 7).await.is_empty());
    }
    assert!(server.handshake_failures_reach(1).await);
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    let with_cert = connector(&pki.path("ca.crt"), Some((&cert, &key)));
    let mut s = dial(server.tls, &with_cert).await.expect("handshake");
    assert_eq!(exchange(&mut s, b"PING\r\n", 7).await, b"+PONG\r\n");
    server.stop().await;
}

#[tokio::test]
async fn redis_cli_with_tls_gets_replies() {
    let pki = Pki::new("tlscli");
    let server = TlsServer::start(&pki, None).await;
    let ca = pki.path("ca.crt");
    let port = server.tls.port().to_string();
    let set = redis_cli(&ca, &port, &["SET", "cli", "yes"]).await;
    assert_eq!(set, "OK");
    assert_eq!(redis_cli(&ca, &port, &["GET", "cli"]).await, "yes");
    server.stop().await;
}

/// Run `redis-cli --tls` (Debian's is built with TLS) on a blocking thread;
/// its trimmed stdout.
async fn redis_cli(ca: &Path, port: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.arg("--tls").arg("--cacert").arg(ca);
    cmd.args(["-h", "127.0.0.1", "-p", port]).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("redis-cli is installed (.ci/run installs redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
