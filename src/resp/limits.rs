//! Per-client limits the connection loop enforces: the idle timeout (Redis
//! `timeout`), the output buffer limit (a client that does not read its
//! replies is closed instead of holding memory), an optional per-client
//! rate limit (operations per second), and the size of a transaction
//! (`MULTI` queue and watched keys, enforced by `resp::multi`).
//!
//! Owns the limit settings and the small mechanisms behind them; must not
//! parse or execute commands, nor keep counters (the connection bumps
//! [`ServerStats`](super::state::ServerStats)).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;

/// The error a rate-limited command gets (Redis has no such limit; the text
/// follows its `-ERR max number of clients reached` style).
pub const RATE_LIMIT_ERROR: &str =
    "ERR max number of operations per second reached for this client";

/// Default `multi-max-commands`.
pub const MULTI_MAX_COMMANDS: usize = 100_000;

/// Default `multi-max-bytes` (well under the 64 MiB peer frame a unit
/// travels in).
pub const MULTI_MAX_BYTES: usize = 16 << 20;

/// The limits of every client of one server.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Close a client idle this long (`timeout`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Close a client whose unsent replies exceed this many bytes while its
    /// socket accepts no more (`client-output-buffer-limit`); 0: no limit.
    pub output_buffer: usize,
    /// Commands per second one client may run (`client-rate-limit`); 0: no
    /// limit.
    pub ops_per_sec: u32,
    /// Commands one `MULTI` may queue, and keys one connection may watch
    /// (`multi-max-commands`).
    pub multi_commands: usize,
    /// Bytes of arguments one `MULTI` may queue, watched keys included
    /// (`multi-max-bytes`).
    pub multi_bytes: usize,
}

impl Default for ClientLimits {
    /// No idle timeout, output or rate limit; the default transaction
    /// limits.
    fn default() -> Self {
        ClientLimits {
            idle_timeout: None,
            output_buffer: 0,
            ops_per_sec: 0,
            multi_commands: MULTI_MAX_COMMANDS,
            multi_bytes: MULTI_MAX_BYTES,
        }
    }
}

impl ClientLimits {
    /// Resolves when a client idle since now has been idle too long; never
    /// when there is no idle timeout.
    pub async fn idle(&self) {
        match self.idle_timeout {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    }
}

/// Why [`write_limited`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteEnd {
    /// The socket failed or closed.
    Io,
    /// The socket stopped accepting bytes while more than the limit was
    /// still pending.
    OverLimit,
}

/// Write all of `buf`. While the socket accepts bytes this behaves like
/// `write_all`; when it would block with more than `limit` bytes (non-zero)
/// still unsent, it gives up: the client is not reading.
pub async fn write_limited<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &[u8],
    limit: usize,
) -> Result<(), WriteEnd> {
    let mut off = 0;
    while off < buf.len() {
        let n = poll_fn(|cx| {
            let rest = &buf[off..];
            match Pin::new(&mut *stream).poll_write(cx, rest) {
                Poll::Pending if limit > 0 && rest.len() > limit => {
                    Poll::Ready(Err(WriteEnd::OverLimit))
                }
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(WriteEnd::Io)),
                Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
            }
        })
        .await?;
        off += n;
    }
    poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx))
        .await
        .map_err(|_| WriteEnd::Io)
}

/// A token bucket of `ops_per_sec` tokens refilled continuously (one
/// second of burst).
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens per second; 0 = unlimited.
    rate: u32,
    /// Tokens available now.
    tokens: f64,
    /// When `tokens` was last refilled.
    last: Instant,
}

impl RateLimiter {
    /// A full bucket of `rate` tokens (0 = unlimited).
    pub fn new(rate: u32, now: Instant) -> RateLimiter {
        RateLimiter {
            rate,
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Take one token; `false` when the client is over its rate. `now` is
    /// read only when a rate is set (no clock read per command otherwise).
    pub fn allow(&mut self, now: impl FnOnce() -> Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now = now();
        let rate = f64::from(self.rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_refills_with_time() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(3, t0);
        assert!(r.allow(|| t0) && r.allow(|| t0) && r.allow(|| t0));
        assert!(!r.allow(|| t0));
        assert!(r.allow(|| t0 + Duration::from_millis(400)));
        assert!(!r.allow(|| t0 + Duration::from_millis(400)));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(0, t0);
        assert!((0..10_000).all(|_| r.allow(|| t0)));
    }

    #[tokio::test]
    async fn a_writer_whose_peer_never_reads_stops_at_the_limit() {
        let (mut a, _b) = tokio::io::duplex(1024);
        let big = vec![b'x'; 64 * 1024];
        assert_eq!(
            write_limited(&mut a, &big, 4096).await,
            Err(WriteEnd::OverLimit)
        );
    }

    #[tokio::test]
    async fn a_writer_under_the_limit_waits_for_the_reader() {
        let (mut a, mut b) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut out)
                .await
                .map(|_| out.len())
        });
        write_limited(&mut a, &[b'y'; 1000], 4096).await.unwrap();
        drop(a);
        assert_eq!(reader.await.unwrap().unwrap(), 1000);
    }
}
