//! Explicit shutdown: one [`Shutdown`] signal every long-running task selects
//! on, and a [`TaskSet`] that owns spawned tasks so a node can wait for all of
//! them to end.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinSet;

/// A cloneable shutdown signal. `trigger` once; every clone's `wait`
/// resolves.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// `true` once shutdown was triggered; receivers see it at once.
    rx: watch::Receiver<bool>,
    /// Shared sender so any clone can trigger.
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            tx: Arc::new(tx),
        }
    }

    /// Ask every task to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which also means "stop".
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Owner of spawned tasks: each task is spawned through it, and
/// [`TaskSet::join_all`] waits for every one to end (after the shutdown
/// signal told them to).
#[derive(Debug, Clone, Default)]
pub struct TaskSet {
    /// The tasks; a std mutex is enough: it is held only to spawn or drain.
    inner: Arc<Mutex<JoinSet<()>>>,
}

impl TaskSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawn `fut` on the current runtime, owned by this set.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Reap finished tasks so a long-lived set does not grow.
        while set.try_join_next().is_some() {}
        set.spawn(fut);
    }

    /// Wait for every task to end. Tasks spawned while waiting are awaited
    /// too.
    pub async fn join_all(&self) {
        loop {
            let mut set = {
                let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                std::mem::take(&mut *guard)
            };
            if set.is_empty() {
                return;
            }
            while let Some(res) = set.join_next().await {
                if let Err(e) = res
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "a task panicked");
                }
            }
        }
    }

    /// Abort every task (used when a graceful stop took too long).
    pub fn abort_all(&self) {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let s = Shutdown::new();
        let c = s.clone();
        let waiter = tokio::spawn(async move { c.wait().await });
        s.trigger();
        waiter.await.expect("waiter ends");
        assert!(s.is_triggered());
    }

    #[tokio::test]
    async fn join_all_waits_for_tasks_that_honour_shutdown() {
        let s = Shutdown::new();
        let tasks = TaskSet::new();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let s = s.clone();
            let done = done.clone();
            tasks.spawn(async move {
                s.wait().await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        s.trigger();
        tasks.join_all().await;
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
