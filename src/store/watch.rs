//! What `WATCH` remembers of a key and what `EXEC` checks against it.
//!
//! # What this module owns
//! - [`KeyStamp`]: a key's state when watched: the version of its value or
//!   tombstone, or, for a key absent then, the creation mark of its
//!   partition on this store ([`KeyStamp::AbsentSince`]).
//! - [`Store::stamp`] (at `WATCH`) and [`Store::unchanged`] (at `EXEC`,
//!   under the partition's gate).
//!
//! # How a key absent at `WATCH` is checked
//! Redis 7 aborts when a key absent at `WATCH` was created before `EXEC`,
//! even if it is gone again by then (expired, evicted, deleted). A
//! version cannot tell that: the key left nothing behind (no tombstone
//! for an expiry or an eviction, and none at all standalone or at R = 1).
//! So each partition counts the keys it creates (`Partition::created`),
//! and once a key absent there has been watched it also keeps, for each
//! of [`BORN_BUCKETS`] buckets of key hashes, the count just after the
//! bucket's last creation (`Partition::born`). The stamp records the
//! count; `EXEC` sees a change when the key's bucket had a creation since.
//! Another key of the same partition and bucket created in between aborts
//! too (a false abort: one creation in 64 of that partition's, far rarer
//! than Redis's own spurious ones); writes that create nothing (an
//! overwrite, a delete, an expiry) never do. It costs an add per created
//! key, and 512 bytes for each partition where an absent key was ever
//! watched.
//!
//! The mark means something only on the store that made it: compared on
//! another (the unit failed over to another replica, the partition moved,
//! the node restarted), an absent stamp counts as changed, and the client
//! retries, as after any abort.
//!
//! # What it must not do
//! Say "unchanged" when it cannot tell: an unknown store, a mark from
//! before a restart, are changes.

use serde::{Deserialize, Serialize};

use super::engine::Store;
use super::partition::{BORN_BUCKETS, Partition, born_bucket, key_hash};
use super::types::UnixMillis;

/// A key's state as `WATCH` sees it at the key's primary. On the wire
/// (peer `Stamps` answers and `Txn` units): new variants go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStamp {
    /// No live key and no tombstone, stamped without a creation mark (by
    /// an older node, or for one): a key created and gone again before
    /// `EXEC` is not seen.
    Absent,
    /// A live key whose last write had this `(version, node)`.
    Live(u64, u16),
    /// A tombstone (cluster mode) of a delete with this `(version, node)`.
    Deleted(u64, u16),
    /// No live key and no tombstone on store `store`, whose partition had
    /// created `created` keys: a key of its bucket created after that is a
    /// change, even if gone again.
    AbsentSince {
        /// The store that stamped it (its random id).
        store: u64,
        /// The partition's creation count then.
        created: u64,
    },
}

impl KeyStamp {
    /// As an older node stamps: [`KeyStamp::AbsentSince`] becomes
    /// [`KeyStamp::Absent`] (for a peer that asked with the old request).
    pub fn without_mark(self) -> KeyStamp {
        match self {
            KeyStamp::AbsentSince { .. } => KeyStamp::Absent,
            other => other,
        }
    }
}

impl Store {
    /// What `WATCH` remembers of `key` now (an expired key is absent).
    pub fn stamp(&self, key: &[u8], now: UnixMillis) -> KeyStamp {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        if let Some(s) = self.present(pid, &mut part, key, h, now) {
            return s;
        }
        part.born.get_or_insert_with(|| Box::new([0; BORN_BUCKETS]));
        KeyStamp::AbsentSince {
            store: self.id,
            created: part.created,
        }
    }

    /// Whether `key` is as `watched` recorded it: the same version, or
    /// still absent with no key of its bucket created since (see the
    /// module docs).
    pub fn unchanged(&self, key: &[u8], watched: &KeyStamp, now: UnixMillis) -> bool {
        let pid = self.partition_of(key).0;
        let h = key_hash(key, self.seed);
        let mut part = self.lock(pid);
        let present = self.present(pid, &mut part, key, h, now);
        match *watched {
            KeyStamp::Live(..) | KeyStamp::Deleted(..) => present == Some(*watched),
            KeyStamp::Absent => present.is_none(),
            KeyStamp::AbsentSince { store, created } => {
                store == self.id && present.is_none() && !created_since(&part, h, created)
            }
        }
    }

    /// `key`'s live value or tombstone as a stamp, `None` when absent.
    fn present(
        &self,
        pid: u32,
        part: &mut Partition,
        key: &[u8],
        h: u64,
        now: UnixMillis,
    ) -> Option<KeyStamp> {
        if let Some(slot) = self.find_live(pid, part, key, h, now.0) {
            let e = &part.slots[slot as usize];
            return Some(KeyStamp::Live(e.version, e.node));
        }
        part.tombs
            .get(key)
            .map(|t| KeyStamp::Deleted(t.version, t.node))
    }
}

/// Whether a key of hash `h`'s bucket was created in `part` after its
/// creation count was `mark`.
fn created_since(part: &Partition, h: u64, mark: u64) -> bool {
    match part.born.as_deref() {
        Some(born) => born[born_bucket(h)] > mark,
        // Never allocated since the mark was taken: it cannot be this
        // store's mark; any creation counts.
        None => part.created > mark,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::StoreConfig;

    const NOW: UnixMillis = UnixMillis(1_000);

    fn store() -> Store {
        Store::new(StoreConfig {
            partitions: 4,
            ..StoreConfig::default()
        })
    }

    fn set(s: &Store, key: &[u8], until: Option<UnixMillis>) {
        s.set(key, Bytes::from_static(b"v"), until, NOW)
            .expect("set");
    }

    /// A key of `key`'s partition whose bucket is (or is not) `key`'s.
    fn neighbour(s: &Store, key: &[u8], same_bucket: bool) -> Vec<u8> {
        let bucket = |k: &[u8]| born_bucket(key_hash(k, s.seed));
        (0..100_000)
            .map(|i| format!("n{i}").into_bytes())
            .find(|k| {
                s.partition_of(k) == s.partition_of(key)
                    && (bucket(k) == bucket(key)) == same_bucket
            })
            .expect("a neighbour")
    }

    #[test]
    fn a_stamp_changes_with_every_write_and_delete() {
        let s = store();
        let absent = s.stamp(b"k", NOW);
        assert!(matches!(absent, KeyStamp::AbsentSince { .. }));
        assert!(s.unchanged(b"k", &absent, NOW));
        set(&s, b"k", None);
        let first = s.stamp(b"k", NOW);
        set(&s, b"k", None);
        let second = s.stamp(b"k", NOW);
        assert!(matches!(first, KeyStamp::Live(..)));
        assert!(
            !s.unchanged(b"k", &first, NOW),
            "the same value again is a change"
        );
        assert!(s.unchanged(b"k", &second, NOW));
        s.delete(b"k", NOW);
        assert!(!s.unchanged(b"k", &second, NOW));
        assert!(matches!(s.stamp(b"k", NOW), KeyStamp::AbsentSince { .. }));
    }

    /// Redis 7 aborts here; a version alone cannot tell (the key left no
    /// tombstone). Fails without the creation marks.
    #[test]
    fn a_key_absent_when_watched_created_and_gone_again_is_a_change() {
        let s = store();
        let watched = s.stamp(b"e", NOW);
        set(&s, b"e", Some(UnixMillis(1_500)));
        assert!(
            !s.unchanged(b"e", &watched, UnixMillis(2_000)),
            "created, then expired"
        );

        let watched = s.stamp(b"d", NOW);
        set(&s, b"d", None);
        assert!(s.delete(b"d", NOW));
        assert!(
            !s.unchanged(b"d", &watched, NOW),
            "created, then deleted (standalone: no tombstone)"
        );

        let watched = s.stamp(b"f", NOW);
        set(&s, b"f", None);
        s.flush();
        assert!(!s.unchanged(b"f", &watched, NOW), "created, then flushed");
    }

    /// Created, then evicted: the fillers live in other partitions, so
    /// only the watched key's own creation can abort.
    #[test]
    fn a_key_absent_when_watched_created_and_evicted_is_a_change() {
        let s = Store::new(StoreConfig {
            partitions: 16,
            maxmemory: 64 * 1024,
            policy: crate::store::EvictionPolicy::AllKeysLru,
        });
        let watched = s.stamp(b"k", NOW);
        set(&s, b"k", None);
        let mine = s.partition_of(b"k");
        let fillers = (0..100_000)
            .map(|i| format!("f{i}").into_bytes())
            .filter(|f| s.partition_of(f) != mine);
        for f in fillers {
            set(&s, &f, None);
            if s.get(b"k", NOW).is_none() {
                break;
            }
        }
        assert!(s.get(b"k", NOW).is_none(), "k was evicted");
        assert!(!s.unchanged(b"k", &watched, NOW));
    }

    #[test]
    fn other_keys_of_the_partition_change_nothing_unless_they_share_the_bucket() {
        let s = store();
        let watched = s.stamp(b"k", NOW);
        let other = neighbour(&s, b"k", false);
        set(&s, &other, None);
        s.delete(&other, NOW);
        s.flush();
        assert!(
            s.unchanged(b"k", &watched, NOW),
            "another bucket's key, a flush"
        );
        // The documented false abort: a key of the same bucket created.
        let twin = neighbour(&s, b"k", true);
        set(&s, &twin, None);
        assert!(!s.unchanged(b"k", &watched, NOW));
    }

    #[test]
    fn an_absent_stamp_from_another_store_or_an_older_node_is_judged_safely() {
        let (a, b) = (store(), store());
        let watched = a.stamp(b"k", NOW);
        assert!(
            !b.unchanged(b"k", &watched, NOW),
            "another store's mark is a change"
        );
        // An older node's stamp keeps the old meaning: absent is unchanged.
        let old = watched.without_mark();
        assert_eq!(old, KeyStamp::Absent);
        assert!(b.unchanged(b"k", &old, NOW));
        set(&b, b"k", None);
        assert!(!b.unchanged(b"k", &old, NOW));
    }

    /// Standalone, a record merged from a snapshot keeps its version: the
    /// store's counter must move past it, or a later write of the key can
    /// get the very version a WATCH recorded and EXEC misses the change.
    #[test]
    fn a_loaded_record_moves_the_version_counter_past_it() {
        let a = store();
        for _ in 0..5 {
            set(&a, b"k", None);
        }
        let rec = a.record(b"k", NOW).expect("a record");
        let b = store();
        assert!(b.apply(&rec, NOW).expect("merged"), "the load applies it");
        let watched = b.stamp(b"k", NOW);
        for i in 0..4 {
            set(&b, format!("o{i}").as_bytes(), None);
        }
        set(&b, b"k", None);
        assert!(!b.unchanged(b"k", &watched, NOW), "the write is a change");
    }

    #[test]
    fn an_expired_key_stamps_absent() {
        let s = store();
        set(&s, b"k", Some(UnixMillis(1_500)));
        assert!(matches!(s.stamp(b"k", NOW), KeyStamp::Live(..)));
        let later = UnixMillis(2_000);
        let watched = s.stamp(b"k", later);
        assert!(matches!(watched, KeyStamp::AbsentSince { .. }));
        assert!(
            s.unchanged(b"k", &watched, later),
            "expired before WATCH: no change"
        );
    }
}
