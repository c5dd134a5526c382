//! Where the server's "now" comes from: the wall clock by default, a
//! [`ManualClock`] in tests so TTLs expire without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::UnixMillis;

/// A source of wall-clock time, shared by every connection and the expiry task.
pub type Clock = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(UnixMillis::now)
}

/// A clock tests move by hand. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    /// Milliseconds since the Unix epoch.
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: UnixMillis) -> Self {
        ManualClock {
            now: Arc::new(AtomicU64::new(start.0)),
        }
    }

    /// The current reading.
    pub fn now(&self) -> UnixMillis {
        UnixMillis(self.now.load(Ordering::SeqCst))
    }

    /// Move forward by `ms` milliseconds.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Set the reading.
    pub fn set(&self, t: UnixMillis) {
        self.now.store(t.0, Ordering::SeqCst);
    }

    /// This clock as a [`Clock`] for the server.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || UnixMillis(now.load(Ordering::SeqCst)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UnixMillis(1000));
        let f = c.clock();
        assert_eq!(f(), UnixMillis(1000));
        c.advance(500);
        assert_eq!(f(), UnixMillis(1500));
    }
}
