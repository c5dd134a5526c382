//! Client connections run on a fixed set of I/O threads, each a
//! single-threaded event loop (a tokio `current_thread` runtime), the way
//! Redis runs one loop per thread.
//!
//! # Why
//! A connection's work is short (parse, one store operation, one write).
//! On a work-stealing runtime every wake-up may hop threads and every idle
//! worker is parked and unparked with a futex; measured with
//! `redis-benchmark -P 1` on two cores this cost ~15% more CPU per request
//! than a single loop. Pinning each connection to one loop removes that
//! traffic while still using every core: connections are dealt to the loops
//! round-robin by the acceptor.
//!
//! # What it must not do
//! Know what a connection does: it runs the future it is given until the
//! shutdown signal, and reports when every connection has ended.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::shutdown::{Shutdown, TaskSet};

/// Work for an I/O thread: turn the accepted socket into a connection
/// future (on that thread's runtime) and run it.
pub(crate) type Job = Box<dyn FnOnce() -> Option<ConnFuture> + Send>;

/// A connection's future.
pub(crate) type ConnFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The I/O threads and the round-robin dealer.
pub(crate) struct IoThreads {
    /// One queue per thread.
    queues: Vec<mpsc::UnboundedSender<Job>>,
    /// Resolves when the matching thread's loop has ended.
    done: Vec<oneshot::Receiver<()>>,
    /// Next thread to deal to.
    next: AtomicUsize,
}

impl IoThreads {
    /// Start `n` (at least one) I/O threads that stop on `shutdown`.
    pub(crate) fn start(n: usize, shutdown: &Shutdown) -> std::io::Result<IoThreads> {
        let mut queues = Vec::new();
        let mut done = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let (done_tx, done_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let stop = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("shoal-io-{i}"))
                .spawn(move || {
                    // Forwarded commands leave on this thread's own QUIC
                    // endpoint, so their replies wake no other thread.
                    crate::transport::quic::use_thread_endpoints();
                    runtime.block_on(serve_loop(rx, stop));
                    drop(runtime);
                    // What this thread allocated or freed since its last
                    // flush stays counted (the counting allocator, if any).
                    crate::memory::flush_thread();
                    let _ = done_tx.send(());
                })?;
            queues.push(tx);
            done.push(done_rx);
        }
        Ok(IoThreads {
            queues,
            done,
            next: AtomicUsize::new(0),
        })
    }

    /// Hand a connection to the next thread.
    pub(crate) fn deal(&self, job: Job) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        if self.queues[i].send(job).is_err() {
            tracing::debug!(thread = i, "I/O thread already stopped; connection dropped");
        }
    }

    /// Wait until every thread has ended (after shutdown was triggered).
    pub(crate) async fn join(self) {
        drop(self.queues);
        for d in self.done {
            let _ = d.await;
        }
    }
}

/// One thread's loop: run each dealt connection until shutdown, then wait
/// for them all to end.
async fn serve_loop(mut jobs: mpsc::UnboundedReceiver<Job>, shutdown: Shutdown) {
    let tasks = TaskSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            job = jobs.recv() => match job {
                Some(job) => {
                    if let Some(conn) = job() {
                        tasks.spawn(conn);
                    }
                }
                None => break,
            },
        }
    }
    tasks.join_all().await;
}
