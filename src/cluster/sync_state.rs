//! Which partitions this node is still pulling (and from whom), and
//! which ones it pulled recently (settling).
//!
//! Owns only that bookkeeping, under std mutexes held for a few
//! instructions; must not pull, read or decide anything (the rebalance
//! task starts and finishes pulls; the router asks for a read's source).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::PartitionId;
use crate::transport::NodeName;

/// Which partitions this node is still pulling, and from whom.
///
/// A partition stays *settling* after its pull finished (for two
/// anti-entropy intervals, at most the old holders' grace period): a
/// write its old primary acknowledged after the pull copied the partition
/// (a node that had not yet seen the new ring routed it there) is not here
/// until anti-entropy brings it, so a read that misses here meanwhile
/// still asks the old holder, as during the pull.
/// Settling partitions are synced: they do not count as syncing.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Partition -> the old holder that serves its reads meanwhile.
    syncing: Mutex<HashMap<PartitionId, NodeName>>,
    /// Partitions settling, and when the last of them ends.
    settling: Mutex<Settling>,
    /// How long a partition settles after its pull (0: not at all).
    settle_for: Duration,
    /// True when `syncing` or `settling` is not empty (a lock-free check
    /// for reads).
    busy: AtomicBool,
}

/// The settling partitions.
#[derive(Debug, Default)]
struct Settling {
    /// Partition -> its old holder and when reads stop asking it.
    by_part: HashMap<PartitionId, (NodeName, Instant)>,
    /// The latest end among them: past it, all are dropped at once, so a
    /// read never walks the map.
    end: Option<Instant>,
}

impl SyncState {
    /// Nothing syncing; pulled partitions settle for `settle_for`.
    pub fn new(settle_for: Duration) -> Self {
        SyncState {
            settle_for,
            ..SyncState::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartitionId, NodeName>> {
        self.syncing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_settling(&self) -> std::sync::MutexGuard<'_, Settling> {
        self.settling.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark `p` as being pulled from `source`.
    pub fn start(&self, p: PartitionId, source: NodeName) {
        let mut s = self.lock();
        s.insert(p, source);
        self.lock_settling().by_part.remove(&p);
        self.busy.store(true, Ordering::Release);
    }

    /// Mark `p` as synced; it settles (see the type's docs).
    pub fn finish(&self, p: PartitionId) {
        let mut s = self.lock();
        let source = s.remove(&p);
        let mut settling = self.lock_settling();
        if let Some(source) = source
            && !self.settle_for.is_zero()
        {
            let until = Instant::now() + self.settle_for;
            settling.by_part.insert(p, (source, until));
            settling.end = Some(settling.end.map_or(until, |e| e.max(until)));
        }
        self.busy.store(
            !s.is_empty() || !settling.by_part.is_empty(),
            Ordering::Release,
        );
    }

    /// The old holder a read of `p` that misses here asks: while `p` is
    /// being pulled, and while it settles.
    pub fn source(&self, p: PartitionId) -> Option<NodeName> {
        if !self.busy.load(Ordering::Acquire) {
            return None;
        }
        let s = self.lock();
        if let Some(n) = s.get(&p) {
            return Some(n.clone());
        }
        let mut settling = self.lock_settling();
        let now = Instant::now();
        if settling.end.is_some_and(|end| end <= now) {
            settling.by_part.clear();
            settling.end = None;
            self.busy.store(!s.is_empty(), Ordering::Release);
        }
        match settling.by_part.get(&p) {
            Some((n, until)) if *until > now => Some(n.clone()),
            _ => None,
        }
    }

    /// Whether `p` is being pulled (settling is not).
    pub fn is_syncing(&self, p: PartitionId) -> bool {
        self.lock().contains_key(&p)
    }

    /// Partitions being pulled.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Partitions settling now (see the type's docs).
    pub fn settling(&self) -> usize {
        let now = Instant::now();
        let settling = self.lock_settling();
        settling
            .by_part
            .values()
            .filter(|(_, until)| *until > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_state_tracks_sources() {
        let s = SyncState::default();
        assert!(!s.is_syncing(PartitionId(3)));
        s.start(PartitionId(3), NodeName::new("a"));
        assert_eq!(s.source(PartitionId(3)), Some(NodeName::new("a")));
        assert_eq!(s.count(), 1);
        s.finish(PartitionId(3));
        assert_eq!(s.count(), 0);
        assert!(!s.is_syncing(PartitionId(3)));
        assert_eq!(s.source(PartitionId(3)), None, "no settling by default");
    }

    #[test]
    fn a_pulled_partition_settles_then_reads_stop_asking_its_old_holder() {
        let s = SyncState::new(Duration::from_secs(3600));
        s.start(PartitionId(3), NodeName::new("a"));
        s.finish(PartitionId(3));
        assert!(!s.is_syncing(PartitionId(3)));
        assert_eq!(s.count(), 0, "settling is synced");
        assert_eq!(s.source(PartitionId(3)), Some(NodeName::new("a")));
        assert_eq!(s.source(PartitionId(4)), None);

        let brief = SyncState::new(Duration::from_millis(1));
        brief.start(PartitionId(3), NodeName::new("a"));
        brief.finish(PartitionId(3));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(brief.source(PartitionId(3)), None, "settling ended");
        // A new pull replaces a settling entry.
        s.start(PartitionId(3), NodeName::new("b"));
        assert_eq!(s.source(PartitionId(3)), Some(NodeName::new("b")));
    }
}
