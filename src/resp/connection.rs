//! One client connection: read, parse every complete request in the buffer,
//! execute them in order, write all replies with one write, repeat.
//!
//! In a cluster, the commands of a batch that run whole on another node,
//! and the replicated writes on this one, are not awaited one by one: they
//! are offered to the connection's [`Pipeline`], which sends them grouped
//! by owner (and applies this node's, their replica legs together) when
//! the batch ends (or before a command that must not overtake them), and
//! their replies are spliced into the write buffer at their requests'
//! places.
//!
//! Owns the connection's buffers and [`Session`]; must not know any
//! command's semantics (that is `commands`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use super::codec::{Limits, parse_request, peek_keys};
use super::commands::{Step, execute, execute_step};
use super::hook::Pipeline;
use super::limits::{RATE_LIMIT_ERROR, RateLimiter, WriteEnd, write_limited};
use super::multi::{self, Intercept};
use super::reply::Reply;
use super::state::{ClientMeta, Session, Shared};
use crate::admin::LocalCommandStats;
use crate::shutdown::Shutdown;

/// Initial size of the read and write buffers.
const BUF_SIZE: usize = 16 * 1024;

/// Flush replies mid-batch once this many bytes are waiting.
const FLUSH_AT: usize = 1024 * 1024;

/// Most commands queued in the pipeline before it is flushed mid-batch
/// (bounds a peer batch request and the work per wake-up).
const MAX_QUEUED: usize = 256;

/// A read shorter than this holds at most one ordinary request: no
/// prefetch pass (two of the shortest GETs are 40+ bytes).
const PREFETCH_MIN_BYTES: usize = 40;

/// Most bytes one client may have buffered unparsed (Redis's
/// `client-query-buffer-limit`, 1 GB): past it the client is closed.
const MAX_QUERY_BUFFER: usize = 1 << 30;

/// Unregisters a client however its task ends.
struct Registered {
    /// The server's shared state.
    shared: Arc<Shared>,
    /// This client's id.
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.clients.remove(self.id);
        self.shared
            .stats
            .connected_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serve one accepted connection until the client leaves, a protocol error,
/// QUIT, or shutdown. The caller already counted it in `connected_clients`.
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, shutdown: Shutdown) {
    let (Ok(addr), Ok(laddr)) = (stream.peer_addr(), stream.local_addr()) else {
        drop(Registered {
            id: shared.clients.next_id(),
            shared,
        });
        return;
    };
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    serve_stream(shared, stream, (addr, laddr), shutdown).await;
}

/// Like [`serve`] for any byte stream (a TLS session over an accepted TCP
/// socket); `addrs` are the peer's and our own socket addresses.
pub(crate) async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut stream: S,
    addrs: (std::net::SocketAddr, std::net::SocketAddr),
    shutdown: Shutdown,
) {
    let id = shared.clients.next_id();
    let _registered = Registered {
        shared: shared.clone(),
        id,
    };
    let (addr, laddr) = addrs;
    let meta = Arc::new(ClientMeta::new(id, addr, laddr));
    shared.clients.insert(meta.clone());
    tracing::debug!(client = id, %addr, "client connected");
    let limiter = RateLimiter::new(shared.client_limits.ops_per_sec, Instant::now());
    let pipeline = conn_pipeline(&shared);
    let mut conn = Conn {
        session: Session::new(meta, shared.secret.is_some()),
        shared,
        rbuf: BytesMut::with_capacity(BUF_SIZE),
        wbuf: BytesMut::with_capacity(BUF_SIZE),
        args: Vec::new(),
        limiter,
        timings: LocalCommandStats::default(),
        pipeline,
        holes: Vec::new(),
        txn: multi::Txn::default(),
    };
    let end = conn.run(&mut stream, &shutdown).await;
    tracing::debug!(client = id, reason = end, "client disconnected");
}

/// A connection's buffers and state.
struct Conn {
    /// Connection-level state (protocol, auth, names).
    session: Session,
    /// Server-wide state.
    shared: Arc<Shared>,
    /// Bytes read and not yet parsed.
    rbuf: BytesMut,
    /// Replies not yet written.
    wbuf: BytesMut,
    /// The current request's arguments (reused).
    args: Vec<Bytes>,
    /// The per-client rate limit (`client-rate-limit`).
    limiter: RateLimiter,
    /// Calls and latencies of this batch, flushed to the server's
    /// per-command histograms at its end.
    timings: LocalCommandStats,
    /// Queues commands that run on other nodes (cluster mode only).
    pipeline: Option<Box<dyn Pipeline>>,
    /// Where the queued commands' replies go in `wbuf`, in order.
    holes: Vec<Hole>,
    /// The open transaction and the watched keys (`MULTI`, `WATCH`).
    txn: multi::Txn,
}

/// The place of a queued command's reply.
struct Hole {
    /// Offset in `wbuf` where its reply belongs.
    at: usize,
    /// Its command table index, for timing (`usize::MAX`: not timed).
    cmd: usize,
    /// When its parse started (its time runs to the pipeline's answer).
    since: Instant,
}

/// The pipeline of a connection to a cluster node; none when standalone.
fn conn_pipeline(shared: &Arc<Shared>) -> Option<Box<dyn Pipeline>> {
    shared.hook.get().and_then(|h| h.clone().pipeline())
}

/// What the batch loop decided.
enum Next {
    /// Read more input.
    Read,
    /// Write what is pending, then close.
    Close(&'static str),
}

impl Conn {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        shutdown: &Shutdown,
    ) -> &'static str {
        loop {
            let next = match self.process(stream, shutdown).await {
                Ok(n) => n,
                Err(reason) => return reason,
            };
            if let Err(reason) = self.flush(stream, shutdown).await {
                return reason;
            }
            if let Next::Close(reason) = next {
                return reason;
            }
            if self.rbuf.is_empty() && self.rbuf.capacity() > FLUSH_AT {
                // A large request is done: give its buffer back.
                self.rbuf = BytesMut::with_capacity(BUF_SIZE);
            }
            if self.rbuf.capacity() - self.rbuf.len() < BUF_SIZE / 4 {
                self.rbuf.reserve(BUF_SIZE);
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => return "shutdown",
                _ = self.shared.client_limits.idle() => {
                    self.shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(client = self.session.meta.id, "closing idle client (timeout)");
                    return "idle timeout";
                }
                r = stream.read_buf(&mut self.rbuf) => match r {
                    Ok(0) => return "closed by client",
                    Ok(n) => {
                        self.shared.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(_) => return "read error",
                },
            }
        }
    }

    /// Execute every complete request in the read buffer.
    async fn process<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        shutdown: &Shutdown,
    ) -> Result<Next, &'static str> {
        let mut done = 0u64;
        self.prefetch();
        // One clock read per command: each command's time runs from the
        // previous mark (its parse included) to the end of its reply.
        let mut mark = Instant::now();
        let next = loop {
            let limits = Limits {
                pre_auth: !self.session.authenticated,
                ..self.shared.limits
            };
            match parse_request(&mut self.rbuf, &mut self.args, &limits) {
                Ok(true) if self.args.is_empty() => continue,
                Ok(true) => {
                    // Unknown or refused commands leave it unset (CLIENT
                    // LIST shows cmd=NULL then, as Redis) and are not timed.
                    self.session
                        .meta
                        .last_cmd
                        .store(usize::MAX, Ordering::Relaxed);
                    let mut reply = Reply::new(&mut self.wbuf, self.session.proto);
                    if !self.limiter.allow(Instant::now) {
                        self.shared
                            .stats
                            .rate_limited
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(client = self.session.meta.id, "rate limited");
                        reply.error(RATE_LIMIT_ERROR);
                        done += 1;
                        continue;
                    }
                    let intercepted = multi::intercept(
                        &mut self.txn,
                        &self.session,
                        &self.shared,
                        &self.args,
                        &mut reply,
                    );
                    let step = match intercepted {
                        Intercept::Pass => match self.pipeline.as_deref_mut() {
                            Some(p) => execute_step(
                                &mut self.session,
                                &self.shared,
                                &self.args,
                                &mut reply,
                                p,
                            ),
                            None => match execute(
                                &mut self.session,
                                &self.shared,
                                &self.args,
                                &mut reply,
                            ) {
                                Some(fut) => Step::Deferred(fut),
                                None => Step::Done,
                            },
                        },
                        Intercept::Done => Step::Done,
                        Intercept::Watch(keys) => {
                            // After what is queued: a pipelined write
                            // before the WATCH is not a change after it.
                            self.resolve(shutdown).await?;
                            self.watch(keys, shutdown).await?;
                            Step::Done
                        }
                        Intercept::Exec(txn) => {
                            self.resolve(shutdown).await?;
                            let bytes = tokio::select! {
                                biased;
                                _ = shutdown.wait() => return Err("shutdown"),
                                bytes = multi::exec(&mut self.session, &self.shared, txn) => bytes,
                            };
                            self.wbuf.extend_from_slice(&bytes);
                            Step::Done
                        }
                    };
                    match step {
                        Step::Done => {}
                        Step::Queued => {
                            self.holes.push(Hole {
                                at: self.wbuf.len(),
                                cmd: self.session.meta.last_cmd.load(Ordering::Relaxed),
                                since: mark,
                            });
                            done += 1;
                            mark = Instant::now();
                            if self.holes.len() >= MAX_QUEUED {
                                self.resolve(shutdown).await?;
                                mark = Instant::now();
                            }
                            continue;
                        }
                        Step::Deferred(fut) => {
                            // Runs elsewhere (split, aggregate, a write the
                            // pipeline did not take): after what is queued,
                            // and awaited so replies keep the order of
                            // requests.
                            self.resolve(shutdown).await?;
                            let bytes = tokio::select! {
                                biased;
                                _ = shutdown.wait() => return Err("shutdown"),
                                bytes = fut => bytes,
                            };
                            self.wbuf.extend_from_slice(&bytes);
                        }
                        Step::Barrier => {
                            self.resolve(shutdown).await?;
                            mark = Instant::now();
                            let mut reply = Reply::new(&mut self.wbuf, self.session.proto);
                            let deferred =
                                execute(&mut self.session, &self.shared, &self.args, &mut reply);
                            if let Some(fut) = deferred {
                                let bytes = tokio::select! {
                                    biased;
                                    _ = shutdown.wait() => return Err("shutdown"),
                                    bytes = fut => bytes,
                                };
                                self.wbuf.extend_from_slice(&bytes);
                            }
                        }
                    }
                    let now = Instant::now();
                    let idx = self.session.meta.last_cmd.load(Ordering::Relaxed);
                    if idx != usize::MAX {
                        self.timings.record(idx, now.duration_since(mark));
                    }
                    mark = now;
                    done += 1;
                    if self.session.closing {
                        break Next::Close("quit");
                    }
                    if self.wbuf.len() >= FLUSH_AT {
                        self.resolve(shutdown).await?;
                        self.flush(stream, shutdown).await?;
                        mark = Instant::now();
                    }
                }
                Ok(false) if self.rbuf.len() > MAX_QUERY_BUFFER => {
                    tracing::warn!(client = self.session.meta.id, "query buffer limit reached");
                    break Next::Close("query buffer limit");
                }
                Ok(false) => break Next::Read,
                Err(e) => {
                    self.shared
                        .stats
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(client = self.session.meta.id, error = %e, "protocol error");
                    Reply::new(&mut self.wbuf, self.session.proto).error(&format!("ERR {e}"));
                    break Next::Close("protocol error");
                }
            }
        };
        self.resolve(shutdown).await?;
        self.args.clear();
        let stats = &self.shared.stats;
        stats
            .total_commands_processed
            .fetch_add(done, Ordering::Relaxed);
        if !self.timings.is_empty() {
            stats.commands.flush(&mut self.timings);
        }
        let meta = &self.session.meta;
        meta.last_active_ms
            .store(meta.created.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(next)
    }

    /// `WATCH keys`: stamp them at their primaries, remember them, answer.
    async fn watch(&mut self, keys: Vec<Bytes>, shutdown: &Shutdown) -> Result<(), &'static str> {
        let stamps = tokio::select! {
            biased;
            _ = shutdown.wait() => return Err("shutdown"),
            stamps = multi::stamps(&self.shared, keys.clone()) => stamps,
        };
        let mut reply = Reply::new(&mut self.wbuf, self.session.proto);
        match stamps {
            Ok(stamps) => {
                self.txn.watch(keys, stamps);
                reply.ok();
            }
            Err(e) => reply.error(&e),
        }
        Ok(())
    }

    /// Send the queued forwarded commands and splice their replies into
    /// `wbuf` at their places.
    async fn resolve(&mut self, shutdown: &Shutdown) -> Result<(), &'static str> {
        if self.holes.is_empty() {
            return Ok(());
        }
        let Some(pipeline) = self.pipeline.as_deref_mut() else {
            self.holes.clear();
            return Ok(());
        };
        let replies = tokio::select! {
            biased;
            _ = shutdown.wait() => return Err("shutdown"),
            replies = pipeline.flush() => replies,
        };
        let now = Instant::now();
        let holes = std::mem::take(&mut self.holes);
        for h in &holes {
            if h.cmd != usize::MAX {
                self.timings.record(h.cmd, now.duration_since(h.since));
            }
        }
        let mut replies = replies.into_iter();
        let end = self.wbuf.len();
        // Nothing written after the queued commands (-P 1, or a batch of
        // forwards only): append in place; else splice into a new buffer.
        let splicing = holes.iter().any(|h| h.at != end);
        let mut out = if splicing {
            BytesMut::with_capacity(end + 64 * holes.len())
        } else {
            std::mem::take(&mut self.wbuf)
        };
        let mut from = 0;
        for h in &holes {
            if splicing {
                out.extend_from_slice(&self.wbuf[from..h.at]);
                from = h.at;
            }
            match replies.next() {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => Reply::new(&mut out, self.session.proto)
                    .error("TRYAGAIN a forwarded command got no reply"),
            }
        }
        if splicing {
            out.extend_from_slice(&self.wbuf[from..]);
        }
        self.wbuf = out;
        Ok(())
    }

    /// Warm the CPU caches for the keys of a pipelined batch before running
    /// it, so the store's cache misses for all of them overlap (see
    /// [`crate::store::Store::prefetch`]). A lone request skips this.
    fn prefetch(&self) {
        if self.rbuf.len() < PREFETCH_MIN_BYTES {
            return;
        }
        let keys = peek_keys(&self.rbuf);
        if keys.len() > 1 {
            self.shared.store.prefetch(keys.iter(&self.rbuf));
        }
    }

    /// Write every pending reply (one write per batch).
    async fn flush<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        shutdown: &Shutdown,
    ) -> Result<(), &'static str> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = shutdown.wait() => return Err("shutdown"),
            r = write_limited(stream, &self.wbuf, self.shared.client_limits.output_buffer) => match r {
                Ok(()) => {}
                Err(WriteEnd::Io) => return Err("write error"),
                Err(WriteEnd::OverLimit) => {
                    self.shared.stats.output_limit_disconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        client = self.session.meta.id,
                        pending = self.wbuf.len(),
                        "closing client: output buffer limit reached (it does not read its replies)"
                    );
                    return Err("output buffer limit");
                }
            },
        }
        let n = self.wbuf.len() as u64;
        self.shared
            .stats
            .net_output_bytes
            .fetch_add(n, Ordering::Relaxed);
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * FLUSH_AT {
            self.wbuf = BytesMut::with_capacity(BUF_SIZE);
        }
        Ok(())
    }
}
