//! Shared helpers for the RESP integration tests: an in-process server on
//! 127.0.0.1:0 with a manual clock, a `redis` crate connection, and a raw
//! RESP client for exact reply bytes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use shoal::config::Config;
use shoal::resp::codec::{Frame, parse_frame};
use shoal::resp::{ManualClock, Server};
use shoal::shutdown::Shutdown;
use shoal::store::{Store, UnixMillis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running server and the handles a test needs.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The server's clock; advance it to expire keys.
    pub clock: ManualClock,
    /// The store behind the server.
    pub store: Arc<Store>,
    /// Stops the server.
    pub shutdown: Shutdown,
    /// The server task.
    pub task: tokio::task::JoinHandle<()>,
}

/// A fixed, realistic start time (2026-01-01T00:00:00Z).
pub const T0: UnixMillis = UnixMillis(1_767_225_600_000);

impl TestServer {
    /// Start with default settings.
    pub async fn start() -> TestServer {
        Self::with(|_| {}).await
    }

    /// Start after adjusting the config.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            partitions: 64,
            ..Config::default()
        };
        adjust(&mut cfg);
        let store = Arc::new(Store::new(cfg.store()));
        let clock = ManualClock::new(T0);
        let server = Server::bind_with_clock(&cfg, store.clone(), clock.clock())
            .await
            .expect("bind 127.0.0.1:0");
        let addr = server.local_addr();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addr,
            clock,
            store,
            shutdown,
            task,
        }
    }

    /// A `redis` crate connection (RESP2).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.conn_url(&format!("redis://{}/", self.addr)).await
    }

    /// A `redis` crate connection from a URL.
    pub async fn conn_url(&self, url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    }

    /// A raw RESP client.
    pub async fn raw(&self) -> Raw {
        Raw::connect(self.addr).await
    }

    /// Trigger shutdown and wait for the server to end.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("server task ends cleanly");
    }
}

/// `CODE detail` of a server error, as the server sent it.
pub fn err_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(c), Some(d)) => format!("{c} {d}"),
        (Some(c), None) => c.to_string(),
        _ => e.to_string(),
    }
}

/// Run a command through the `redis` crate.
pub async fn run<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con).await
}

/// Run a command that must fail; its error text.
pub async fn fails(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> String {
    match run::<redis::Value>(con, args).await {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => err_text(&e),
    }
}

/// A raw RESP connection: send requests, read frames.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
}

impl Raw {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    /// Send raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Send one multibulk request.
    pub async fn send(&mut self, args: &[&[u8]]) {
        self.send_raw(&encode_request(args)).await;
    }

    /// Read one frame; `None` if the server closed the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            let snapshot = Bytes::copy_from_slice(&self.buf);
            if let Some((f, n)) = parse_frame(&snapshot).expect("server sends valid RESP") {
                let _ = self.buf.split_to(n);
                return Some(f);
            }
            let n = self.stream.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Send a request and read its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Frame {
        self.send(args).await;
        self.recv().await.expect("a reply")
    }

    /// Read everything until the server closes; the bytes received.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = self.buf.to_vec();
        let _ = self.stream.read_to_end(&mut out).await;
        out
    }
}

/// The multibulk encoding of a request.
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// An error frame with this exact text.
pub fn error(text: &str) -> Frame {
    Frame::Error(Bytes::copy_from_slice(text.as_bytes()))
}

/// A bulk frame.
pub fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// A simple-string frame.
pub fn simple(text: &str) -> Frame {
    Frame::Simple(Bytes::copy_from_slice(text.as_bytes()))
}
