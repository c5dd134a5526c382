//! One RESP connection of the thin client, and its per-node pool.
//!
//! # What this module owns
//! A TCP connection speaking RESP2 through the crate's own codec
//! ([`crate::resp::codec::frame`]): a batch of commands is written in one
//! go and its replies are read back in order (pipelining). A [`Pool`]
//! holds a few such connections to one node, opened lazily and dropped
//! after any I/O or protocol error (the next use reconnects).
//!
//! # What it must not do
//! Route, retry or interpret replies: that is [`super::client`]'s job.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::Error;
use crate::resp::codec::Proto;
use crate::resp::codec::{Frame, encode, parse_frame};

/// Largest reply buffer a connection accepts before it gives up on a peer.
const MAX_BUFFER: usize = 600 * 1024 * 1024;

/// One open connection.
struct Conn {
    /// The socket.
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, Error> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|e| Error::Unavailable(format!("connect {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Write every command, then read one reply per command, in order.
    async fn batch(&mut self, cmds: &[Vec<Bytes>]) -> Result<Vec<Frame>, Error> {
        let mut out = BytesMut::new();
        for cmd in cmds {
            let frame = Frame::Array(cmd.iter().cloned().map(Frame::Bulk).collect());
            encode(&frame, Proto::Resp2, &mut out);
        }
        self.stream.write_all(&out).await.map_err(io_error)?;
        let mut replies = Vec::with_capacity(cmds.len());
        while replies.len() < cmds.len() {
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
    /// Connect and per-batch timeout.
    timeout: Duration,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, size: usize, timeout: Duration) -> Pool {
        Pool {
            addr,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Run `cmds` pipelined on one connection; replies in order. A failed
    /// connection is dropped so the next call opens a fresh one.
    pub(crate) async fn batch(&self, cmds: &[Vec<Bytes>]) -> Result<Vec<Frame>, Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[i].lock().await;
        let run = async {
            if slot.is_none() {
                *slot = Some(Conn::open(self.addr, self.timeout).await?);
            }
            match slot.as_mut() {
                Some(conn) => conn.batch(cmds).await,
                None => Err(Error::Unavailable("no connection".into())),
            }
        };
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout),
        };
        if result.is_err() {
            *slot = None;
        }
        result
    }
}
