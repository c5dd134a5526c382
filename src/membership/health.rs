//! Local health (after Lifeguard's local health multiplier): a node whose
//! own thread is starved stretches its probe timing, so that its late view
//! of the world does not turn into suspicions of healthy peers.
//!
//! # What this module owns
//! [`LocalHealth`]: a score from 0 to a cap, raised by each badly late
//! wake-up of the gossip task, lowered by each probe period that passes
//! without one; and the factor `1 + score` by which the gossip task delays
//! foca's probe timers (`ProbeRandomMember` and `SendIndirectProbe`, both,
//! so their order within a probe cycle is kept).
//!
//! # What it must not do
//! Touch foca or sleep: the gossip task reports wake-ups and applies the
//! factor when it schedules timers. Foca's own `probe_rtt` and
//! `probe_period` cannot change at run time; the suspicion timeout, which
//! does not scale here, keeps failure detection bounded.

use std::time::Duration;

/// A wake-up at least this late counts against our health.
pub const BADLY_LATE: Duration = Duration::from_millis(100);

/// The local health score.
#[derive(Debug, Clone)]
pub struct LocalHealth {
    /// 0 (healthy) ..= `cap`.
    score: u32,
    /// Highest score.
    cap: u32,
    /// Whether a late wake-up happened since the last probe.
    late_since_probe: bool,
}

impl LocalHealth {
    /// A healthy node whose score cannot exceed `cap` (0 disables).
    pub fn new(cap: u32) -> Self {
        LocalHealth {
            score: 0,
            cap,
            late_since_probe: false,
        }
    }

    /// The gossip task woke up `lateness` after it asked to.
    pub fn woke(&mut self, lateness: Duration) {
        if lateness >= BADLY_LATE {
            self.late_since_probe = true;
            self.score = (self.score + 1).min(self.cap);
        }
    }

    /// A probe period started: recover one step if it was on time.
    pub fn probe_started(&mut self) {
        if !std::mem::take(&mut self.late_since_probe) {
            self.score = self.score.saturating_sub(1);
        }
    }

    /// The current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// How much to stretch a probe timer's delay.
    pub fn stretch(&self, after: Duration) -> Duration {
        after.saturating_mul(self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_wake_ups_raise_the_score_up_to_the_cap() {
        let mut h = LocalHealth::new(3);
        h.woke(Duration::from_millis(5));
        assert_eq!(h.score(), 0);
        for _ in 0..10 {
            h.woke(Duration::from_millis(300));
        }
        assert_eq!(h.score(), 3);
        assert_eq!(
            h.stretch(Duration::from_millis(500)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn on_time_probe_periods_bring_the_score_back_down() {
        let mut h = LocalHealth::new(3);
        h.woke(Duration::from_millis(300));
        h.woke(Duration::from_millis(300));
        h.probe_started();
        assert_eq!(h.score(), 2, "a late period does not recover");
        h.probe_started();
        h.probe_started();
        assert_eq!(h.score(), 0);
        assert_eq!(h.stretch(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn cap_zero_never_stretches() {
        let mut h = LocalHealth::new(0);
        h.woke(Duration::from_secs(5));
        assert_eq!(h.stretch(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
