//! Seeds: announcing to them while alone.
//!
//! # What this module owns
//! The re-announce schedule (exponential backoff between a minimum and a
//! maximum while the node is alone in its view; a slow refresh once it has
//! company, so clusters that formed apart at boot merge when a seed becomes
//! reachable) and the resolution of seed
//! names (`tokio::net::lookup_host`, done again at every retry so a seed
//! whose address changed is found).
//!
//! # What it must not do
//! Touch foca: the gossip task announces; resolution runs in a spawned
//! task so the gossip loop never waits on DNS.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::stats::MembershipStats;

/// When to announce next.
#[derive(Debug)]
pub struct Announcer {
    /// First delay after a (re)start.
    min: Duration,
    /// Cap of the delay.
    max: Duration,
    /// Interval of announces while we have company (`None`: never).
    refresh: Option<Duration>,
    /// Delay before the announce after the next one.
    delay: Duration,
    /// When the next announce is due; `None` when none is planned.
    next: Option<Instant>,
    /// Whether we have seeds at all.
    enabled: bool,
    /// Whether a resolution task is in flight (at most one).
    resolving: bool,
}

impl Announcer {
    /// A schedule that announces at once (if there are seeds).
    pub fn new(min: Duration, max: Duration, refresh: Option<Duration>, enabled: bool) -> Self {
        Announcer {
            min,
            max,
            refresh,
            delay: min,
            next: enabled.then(Instant::now),
            enabled,
            resolving: false,
        }
    }

    /// When the next announce is due.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Whether an announce is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|t| t <= now)
    }

    /// An announce was sent at `now`: back off while `alone`, else plan
    /// the next refresh.
    pub fn fired(&mut self, now: Instant, alone: bool) {
        if alone {
            self.next = Some(now + self.delay);
            self.delay = (self.delay * 2).min(self.max);
        } else {
            self.joined(now);
        }
    }

    /// We joined at `now`: only the slow refresh from here on.
    pub fn joined(&mut self, now: Instant) {
        self.delay = self.min;
        self.next = self.refresh.filter(|_| self.enabled).map(|r| now + r);
    }

    /// We are leaving: no more announces.
    pub fn stop(&mut self) {
        self.next = None;
        self.enabled = false;
    }

    /// We are alone again: announce now and back off from the minimum.
    pub fn restart(&mut self, now: Instant) {
        if self.enabled {
            self.delay = self.min;
            self.next = Some(now);
        }
    }

    /// Claim the resolver slot; false if a resolution is in flight.
    pub fn start_resolving(&mut self) -> bool {
        !std::mem::replace(&mut self.resolving, true)
    }

    /// The in-flight resolution finished.
    pub fn resolved(&mut self) {
        self.resolving = false;
    }
}

/// Resolve every seed name; failures are counted and logged, not fatal.
pub async fn resolve_seeds(names: &[String], stats: &MembershipStats) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => {
                stats.seed_resolve_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(seed = %name, error = %e, "cannot resolve seed");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_cap_and_restarts_from_the_minimum() {
        let min = Duration::from_millis(200);
        let max = Duration::from_secs(5);
        let refresh = Duration::from_secs(60);
        let mut a = Announcer::new(min, max, Some(refresh), true);
        let t0 = Instant::now();
        assert!(a.due(t0));
        let mut gaps = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            a.fired(now, true);
            let next = a.next().expect("scheduled");
            gaps.push(next - now);
            now = next;
        }
        assert_eq!(gaps[0], min);
        assert_eq!(gaps[1], min * 2);
        assert_eq!(*gaps.last().expect("gaps"), max);
        a.joined(now);
        assert_eq!(a.next().map(|n| n - now), Some(refresh));
        a.restart(now);
        a.fired(now, true);
        assert_eq!(a.next().map(|n| n - now), Some(min));
        a.stop();
        assert!(a.next().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn no_seeds_means_no_announces() {
        let mut a = Announcer::new(
            Duration::from_millis(1),
            Duration::from_millis(2),
            Some(Duration::from_secs(1)),
            false,
        );
        assert!(a.next().is_none());
        a.restart(Instant::now());
        assert!(a.next().is_none());
        a.joined(Instant::now());
        assert!(a.next().is_none());
    }

    #[tokio::test]
    async fn localhost_seed_resolves() {
        let stats = MembershipStats::default();
        let addrs = resolve_seeds(&["localhost:7000".to_string()], &stats).await;
        assert!(addrs.iter().all(|a| a.port() == 7000));
        assert!(!addrs.is_empty());
    }
}
