//! One RESP connection of the thin client, and its per-node pool.
//!
//! # What this module owns
//! A TCP connection, optionally TLS (rustls with the ring provider, as
//! `redis-cli --tls`), speaking RESP2 through the crate's own codec
//! ([`crate::resp::codec::frame`]); when credentials are configured it
//! sends `AUTH [user] password` first. A batch of commands is written in
//! one go and its replies are read back in order (pipelining). A [`Pool`]
//! holds a few such connections to one node, opened lazily and dropped
//! after any I/O or protocol error (the next use reconnects). A failed
//! batch says whether it was written ([`BatchError::sent`]): before, the
//! node cannot have run any of it; after, it may have run some. An idle
//! connection the node has closed is noticed, and replaced, before a batch
//! is written on it.
//!
//! # What it must not do
//! Route, retry or interpret replies: that is [`super::client`]'s job.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use super::Error;
use crate::resp::codec::Proto;
use crate::resp::codec::{Frame, encode, parse_frame};

/// Largest reply buffer a connection accepts before it gives up on a peer.
const MAX_BUFFER: usize = 600 * 1024 * 1024;

/// TLS to the RESP port: whom to trust and which name to expect.
#[derive(Clone)]
pub(crate) struct TlsOptions {
    /// The rustls client configuration.
    pub(crate) connector: TlsConnector,
    /// The name the server's certificate must carry; `None`: the IP
    /// address connected to.
    pub(crate) server_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// Trust the CA certificates in the PEM file `ca`; present the
    /// certificate chain and key in `client` if given (for nodes started
    /// with `tls-client-ca`).
    pub(crate) fn from_files(
        ca: &Path,
        client: Option<(&Path, &Path)>,
    ) -> Result<TlsOptions, Error> {
        let tls_err =
            |what: &str, e: &dyn std::fmt::Display| Error::Start(format!("TLS {what}: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca).map_err(|e| tls_err("CA file", &e))?;
        for cert in certs {
            let cert = cert.map_err(|e| tls_err("CA file", &e))?;
            roots.add(cert).map_err(|e| tls_err("CA certificate", &e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("protocol versions", &e))?
            .with_root_certificates(roots);
        let cfg = match client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| tls_err("client certificate", &e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| tls_err("client certificate", &e))?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("client key", &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_err("client certificate", &e))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsOptions {
            connector: TlsConnector::from(Arc::new(cfg)),
            server_name: None,
        })
    }
}

/// How connections are opened: timeout, TLS, credentials.
#[derive(Debug, Clone)]
pub(crate) struct ConnOptions {
    /// Connect and per-batch timeout.
    pub(crate) timeout: Duration,
    /// TLS, when the nodes' RESP port speaks it.
    pub(crate) tls: Option<TlsOptions>,
    /// `AUTH` sent on every new connection: (user, password); no user
    /// means the `default` user (`requirepass`).
    pub(crate) auth: Option<(Option<String>, String)>,
}

/// A byte stream: plain TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One open connection.
struct Conn {
    /// The socket (TCP, or TLS over it).
    stream: Box<dyn Stream>,
    /// Bytes read but not yet parsed.
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, opts: &ConnOptions) -> Result<Conn, Error> {
        let tcp = tokio::time::timeout(opts.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|e| Error::Unavailable(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &opts.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = match &tls.server_name {
                    Some(n) => ServerName::try_from(n.clone())
                        .map_err(|e| Error::Start(format!("TLS server name '{n}': {e}")))?,
                    None => ServerName::IpAddress(addr.ip().into()),
                };
                let handshake = tls.connector.connect(name, tcp);
                let s = tokio::time::timeout(opts.timeout, handshake)
                    .await
                    .map_err(|_| Error::Timeout)?
                    .map_err(|e| Error::Unavailable(format!("TLS handshake with {addr}: {e}")))?;
                Box::new(s)
            }
        };
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        };
        if let Some((user, password)) = &opts.auth {
            let mut cmd = vec![Bytes::from_static(b"AUTH")];
            cmd.extend(user.iter().map(|u| Bytes::copy_from_slice(u.as_bytes())));
            cmd.push(Bytes::copy_from_slice(password.as_bytes()));
            match conn.batch(&[cmd]).await?.first() {
                Some(Frame::Error(e)) => {
                    return Err(Error::NotAuthenticated(
                        String::from_utf8_lossy(e).into_owned(),
                    ));
                }
                Some(_) => {}
                None => return Err(Error::Server("AUTH: no reply".into())),
            }
        }
        Ok(conn)
    }

    /// Write every command, then read one reply per command, in order.
    async fn batch(&mut self, cmds: &[Vec<Bytes>]) -> Result<Vec<Frame>, Error> {
        self.write(cmds).await?;
        self.read_replies(cmds.len()).await
    }

    /// Write every command of `cmds` in one go.
    async fn write(&mut self, cmds: &[Vec<Bytes>]) -> Result<(), Error> {
        let mut out = BytesMut::new();
        for cmd in cmds {
            let frame = Frame::Array(cmd.iter().cloned().map(Frame::Bulk).collect());
            encode(&frame, Proto::Resp2, &mut out);
        }
        self.stream.write_all(&out).await.map_err(io_error)
    }

    /// Whether this idle connection is of no further use: the node closed
    /// it (or it failed), or it holds bytes no request asked for. Looks
    /// without waiting.
    fn stale(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut probe = [0u8; 1];
        // Ready now: end of stream, an error, or unasked-for bytes.
        self.stream.read(&mut probe).now_or_never().is_some()
    }

    /// Read `n` replies, in order.
    async fn read_replies(&mut self, n: usize) -> Result<Vec<Frame>, Error> {
        let mut replies = Vec::with_capacity(n);
        while replies.len() < n {
            replies.push(self.read_frame().await?);
        }
        Ok(replies)
    }

    async fn read_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if !self.buf.is_empty() {
                let snapshot = Bytes::copy_from_slice(&self.buf);
                match parse_frame(&snapshot) {
                    Ok(Some((frame, used))) => {
                        let _ = self.buf.split_to(used);
                        return Ok(frame);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(Error::Server(format!("bad reply: {e}"))),
                }
            }
            if self.buf.len() > MAX_BUFFER {
                return Err(Error::TooLarge(
                    "reply larger than the client accepts".into(),
                ));
            }
            self.buf.reserve(16 * 1024);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(io_error)?;
            if n == 0 {
                return Err(Error::Unavailable("connection closed by the node".into()));
            }
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Unavailable(format!("connection: {e}"))
}

/// A few connections to one node, used round-robin.
pub(crate) struct Pool {
    /// The node's RESP address.
    addr: SocketAddr,
    /// Slots; `None` until first use or after an error.
    slots: Vec<Mutex<Option<Conn>>>,
    /// Next slot to try.
    next: AtomicUsize,
    /// How connections are opened.
    opts: Arc<ConnOptions>,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, size: usize, opts: Arc<ConnOptions>) -> Pool {
        Pool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            opts,
        }
    }

    /// Run `cmds` pipelined on one connection; replies in order. A failed
    /// connection is dropped so the next call opens a fresh one. The error
    /// says whether the batch had started to go out.
    pub(crate) async fn batch(&self, cmds: &[Vec<Bytes>]) -> Result<Vec<Frame>, BatchError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        let mut sent = Sent::No;
        let run = async {
            if slot.as_mut().is_some_and(Conn::stale) {
                *slot = None;
            }
            if slot.is_none() {
                *slot = Some(Conn::open(self.addr, &self.opts).await?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(Error::Unavailable("no connection".into()));
            };
            // From the first byte on, the node may read (and run) a prefix
            // of the batch, even if the write then fails.
            sent = Sent::Maybe;
            conn.write(cmds).await?;
            conn.read_replies(cmds.len()).await
        };
        let result = match tokio::time::timeout(self.opts.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        };
        result.map_err(|error| {
            *slot = None;
            BatchError { error, sent }
        })
    }
}

/// Whether a failed batch had started to go out to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// No byte of it was written: the node ran none of it.
    No,
    /// Writing had started: the node may have run any of it.
    Maybe,
}

/// A batch that failed, and whether it had gone out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchError {
    /// Why it failed.
    pub(crate) error: Error,
    /// Whether the node may have read (and run) some of it.
    pub(crate) sent: Sent,
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Error {
        e.error
    }
}
