//! Client limits: the idle timeout closes an idle client, a client that
//! never reads its replies is closed at the output buffer limit (and the
//! node's memory stays bounded), clients beyond `maxclients` are refused
//! with Redis's error, and the per-client rate limit refuses the excess.
//! Each limit moves its counter.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Raw, encode_request, error, simple};
use shoal::config::Config;
use shoal::resp::Server;
use shoal::resp::limits::RATE_LIMIT_ERROR;
use shoal::resp::state::Shared;
use shoal::shutdown::Shutdown;
use shoal::store::Store;
use tokio::io::AsyncWriteExt;

/// A running server and its counters.
struct Limited {
    /// The plain RESP port.
    addr: std::net::SocketAddr,
    /// Counters.
    shared: Arc<Shared>,
    /// Stops it.
    shutdown: Shutdown,
    /// The server task.
    task: tokio::task::JoinHandle<()>,
}

impl Limited {
    async fn start(adjust: impl FnOnce(&mut Config)) -> Limited {
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().expect("literal"),
            partitions: 16,
            io_threads: 1,
            ..Config::default()
        };
        adjust(&mut cfg);
        let store = Arc::new(Store::new(cfg.store()));
        let server = Server::bind(&cfg, store).await.expect("bind");
        let addr = server.local_addr();
        let shared = server.shared();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Limited {
            addr,
            shared,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.expect("server ends cleanly");
    }
}

/// Wait (bounded) until `counter` reaches `n`.
async fn reaches(counter: &AtomicU64, n: u64) -> bool {
    for _ in 0..1000 {
        if counter.load(Ordering::Relaxed) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// This process's resident set size in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn an_idle_client_is_closed_after_the_timeout() {
    let server = Limited::start(|c| c.timeout = 1).await;
    let mut idle = Raw::connect(server.addr).await;
    assert_eq!(idle.call(&[b"PING"]).await, simple("PONG"));
    // Nothing more is sent: the server closes the connection by itself.
    assert!(idle.read_to_close().await.is_empty());
    assert_eq!(server.shared.stats.idle_timeouts.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_at_the_output_limit() {
    let server = Limited::start(|c| c.client_output_buffer_limit = 256 * 1024).await;
    let mut writer = Raw::connect(server.addr).await;
    let value = vec![b'v'; 100 * 1024];
    assert_eq!(writer.call(&[b"SET", b"big", &value]).await, simple("OK"));
    let before = rss();
    // 4000 GETs ask for ~400 MB of replies; the client reads none of them.
    let get = encode_request(&[b"GET", b"big"]);
    let batch: Vec<u8> = get.iter().copied().cycle().take(get.len() * 4000).collect();
    let _ = writer.stream.write_all(&batch).await;
    let stats = &server.shared.stats;
    assert!(reaches(&stats.output_limit_disconnects, 1).await);
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 * 1024 * 1024, "RSS grew by {grown} bytes");
    assert!(reaches_zero_clients(&server.shared).await);
    server.stop().await;
}

/// Wait (bounded) until no client is connected.
async fn reaches_zero_clients(shared: &Shared) -> bool {
    for _ in 0..1000 {
        if shared.stats.connected_clients.load(Ordering::Relaxed) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn connections_beyond_maxclients_are_refused_with_the_error() {
    let server = Limited::start(|c| c.maxclients = 100).await;
    let mut admitted = Vec::new();
    for _ in 0..100 {
        let mut c = Raw::connect(server.addr).await;
        assert_eq!(c.call(&[b"PING"]).await, simple("PONG"));
        admitted.push(c);
    }
    for _ in 0..200 {
        let mut c = Raw::connect(server.addr).await;
        assert_eq!(
            c.recv().await,
            Some(error("ERR max number of clients reached"))
        );
    }
    let stats = &server.shared.stats;
    assert_eq!(stats.rejected_connections.load(Ordering::Relaxed), 200);
    // The admitted clients are still served.
    assert_eq!(admitted[0].call(&[b"PING"]).await, simple("PONG"));
    drop(admitted);
    server.stop().await;
}

#[tokio::test]
async fn commands_beyond_the_rate_limit_are_refused() {
    let server = Limited::start(|c| c.client_rate_limit = 5).await;
    let mut c = Raw::connect(server.addr).await;
    let ping = encode_request(&[b"PING"]);
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 20).collect();
    c.send_raw(&batch).await;
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(c.recv().await.expect("a reply"));
    }
    assert!(replies[..5].iter().all(|r| *r == simple("PONG")));
    let refused = replies
        .iter()
        .filter(|r| **r == error(RATE_LIMIT_ERROR))
        .count();
    assert!(refused >= 10, "only {refused} refused");
    let stats = &server.shared.stats;
    assert_eq!(stats.rate_limited.load(Ordering::Relaxed), refused as u64);
    server.stop().await;
}
