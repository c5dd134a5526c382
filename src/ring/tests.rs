//! Behaviour of the ring and the rebalance plan: unit tests and properties.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn names(list: &[&str]) -> Vec<NodeName> {
    list.iter().map(NodeName::new).collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<NodeName> {
    (0..n)
        .map(|i| NodeName::new(format!("{prefix}{i}")))
        .collect()
}

fn ring(members: &[NodeName], p: u32, r: u32) -> Ring {
    Ring::new(members.iter().cloned(), p, r).expect("valid ring parameters")
}

/// max/mean of `count(member)` over the ring's members.
fn max_over_mean(ring: &Ring, count: impl Fn(Ownership) -> u32) -> f64 {
    let counts: Vec<u32> = ring
        .members()
        .iter()
        .map(|m| count(ring.partitions_of(m)))
        .collect();
    let total: u32 = counts.iter().sum();
    let max = counts.iter().copied().max().unwrap_or(0);
    f64::from(max) * counts.len() as f64 / f64::from(total)
}

#[test]
fn rings_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Ring>();
    shareable::<Transfer>();
}

#[test]
fn zero_partitions_or_replicas_is_refused() {
    let m = numbered("n", 3);
    assert_eq!(
        Ring::new(m.clone(), 0, 2).err(),
        Some(RingError::ZeroPartitions)
    );
    assert_eq!(Ring::new(m, 16, 0).err(), Some(RingError::ZeroReplicas));
}

#[test]
fn empty_ring_has_no_owners() {
    let r = ring(&[], 16, 3);
    assert!(r.replicas(PartitionId(0)).is_empty());
    assert_eq!(r.primary(PartitionId(3)), None);
    assert!(r.members().is_empty());
}

#[test]
fn partition_out_of_range_has_no_replicas() {
    let r = ring(&numbered("n", 4), 16, 2);
    assert!(r.replicas(PartitionId(16)).is_empty());
    assert!(r.replicas(PartitionId(u32::MAX)).is_empty());
}

#[test]
fn replica_lists_are_distinct_and_start_with_the_primary() {
    let r = ring(&numbered("node-", 7), 256, 3);
    for p in r.partition_ids() {
        let reps = r.replicas(p);
        assert_eq!(reps.len(), 3);
        assert_eq!(r.primary(p), reps.first());
        let set: BTreeSet<_> = reps.iter().collect();
        assert_eq!(set.len(), 3, "{p} has a repeated replica");
    }
}

#[test]
fn fewer_members_than_replicas_lists_every_member() {
    let m = numbered("node-", 2);
    let r = ring(&m, 64, 3);
    for p in r.partition_ids() {
        let set: BTreeSet<_> = r.replicas(p).iter().cloned().collect();
        assert_eq!(set, m.iter().cloned().collect());
    }
    assert_eq!(r.replication(), 3);
}

#[test]
fn duplicates_and_order_do_not_change_the_ring() {
    let a = ring(&names(&["c", "a", "b"]), 128, 2);
    let b = ring(&names(&["a", "b", "c", "a", "b"]), 128, 2);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.members(), &names(&["a", "b", "c"])[..]);
    for p in a.partition_ids() {
        assert_eq!(a.replicas(p), b.replicas(p));
    }
}

#[test]
fn ownership_counts_add_up() {
    let m = numbered("node-", 5);
    let r = ring(&m, 1000, 3);
    let primaries: u32 = m.iter().map(|n| r.partitions_of(n).primary).sum();
    let total: u32 = m.iter().map(|n| r.partitions_of(n).total()).sum();
    assert_eq!(primaries, 1000);
    assert_eq!(total, 3000);
    for n in &m {
        assert_eq!(r.held_by(n).count() as u32, r.partitions_of(n).total());
    }
    assert_eq!(
        r.partitions_of(&NodeName::new("stranger")),
        Ownership::default()
    );
}

#[test]
fn digest_is_pinned_for_every_build() {
    // A change here changes every deployed cluster's view name: nodes of
    // different builds would refuse each other's forwards.
    let r = ring(&names(&["alpha", "beta", "gamma"]), 4096, 2);
    assert_eq!(r.digest(), RingDigest(0x1144_67cb_3f6d_632d));
    assert_eq!(r.digest().to_string(), "114467cb3f6d632d");
}

#[test]
fn placement_is_pinned_for_every_build() {
    // A change here moves every key of every deployed cluster.
    let r = ring(&names(&["alpha", "beta", "gamma", "delta"]), 4096, 2);
    let got: Vec<Vec<&str>> = [0, 1, 4095]
        .into_iter()
        .map(|p| {
            r.replicas(PartitionId(p))
                .iter()
                .map(NodeName::as_str)
                .collect()
        })
        .collect();
    assert_eq!(
        got,
        vec![
            vec!["beta", "delta"],
            vec!["beta", "gamma"],
            vec!["alpha", "gamma"]
        ]
    );
}

#[test]
fn digest_changes_with_members_partitions_and_replication() {
    let m = numbered("node-", 4);
    let base = ring(&m, 4096, 2).digest();
    assert_ne!(base, ring(&m[..3], 4096, 2).digest());
    assert_ne!(base, ring(&m, 2048, 2).digest());
    assert_ne!(base, ring(&m, 4096, 3).digest());
    // Name boundaries are part of the encoding: {"ab","c"} is not {"a","bc"}.
    assert_ne!(
        ring(&names(&["ab", "c"]), 64, 1).digest(),
        ring(&names(&["a", "bc"]), 64, 1).digest()
    );
}

#[test]
fn ten_members_are_balanced_within_fifteen_percent() {
    let sets = [
        numbered("node-", 10),
        numbered("shoal-", 10),
        (0..10)
            .map(|i| NodeName::new(format!("10.0.0.{}:7000", i + 1)))
            .collect(),
        (0..10)
            .map(|i| NodeName::new(format!("cache-{i}.prod.internal")))
            .collect(),
    ];
    for m in &sets {
        for r in [1, 2, 3] {
            let ring = ring(m, 4096, r);
            let primary = max_over_mean(&ring, |o| o.primary);
            let held = max_over_mean(&ring, Ownership::total);
            assert!(primary <= 1.15, "{m:?} R={r}: primaries {primary:.3}");
            assert!(held <= 1.15, "{m:?} R={r}: replica lists {held:.3}");
        }
    }
}

#[test]
fn adding_an_eleventh_member_moves_about_one_eleventh_only_to_it() {
    let m = numbered("node-", 11);
    let newcomer = &m[10];
    let old = ring(&m[..10], 4096, 3);
    let new = ring(&m, 4096, 3);
    let moved: Vec<PartitionId> = old
        .partition_ids()
        .filter(|&p| old.primary(p) != new.primary(p))
        .collect();
    for &p in &moved {
        assert_eq!(new.primary(p), Some(newcomer));
    }
    let share = moved.len() as f64 / 4096.0;
    assert!((share - 1.0 / 11.0).abs() < 0.02, "moved {share:.4}");
    // Replica sets: at most one member swapped per partition, for the newcomer.
    for p in old.partition_ids() {
        let before: BTreeSet<_> = old.replicas(p).iter().collect();
        let after: BTreeSet<_> = new.replicas(p).iter().collect();
        let gained: Vec<_> = after.difference(&before).collect();
        assert!(gained.is_empty() || gained == vec![&newcomer]);
    }
}

#[test]
fn newcomer_plans_to_pull_from_old_holders() {
    let m = numbered("node-", 4);
    let me = NodeName::new("node-new");
    let old = ring(&m, 256, 2);
    let new = ring(&[m.clone(), vec![me.clone()]].concat(), 256, 2);
    let transfers = plan(&old, &new, &me).expect("same P");
    let mine: Vec<PartitionId> = new.held_by(&me).collect();
    assert_eq!(
        transfers.iter().map(|t| t.partition).collect::<Vec<_>>(),
        mine
    );
    for t in &transfers {
        assert!(t.sources_alive);
        assert_eq!(t.sources, old.replicas(t.partition));
    }
    assert!(released(&old, &new, &me).expect("same P").is_empty());
}

#[test]
fn survivor_pulls_from_live_holders_when_a_peer_dies() {
    let m = numbered("node-", 4);
    let dead = &m[0];
    let me = &m[1];
    let old = ring(&m, 512, 2);
    let new = ring(&m[1..], 512, 2);
    let transfers = plan(&old, &new, me).expect("same P");
    assert!(!transfers.is_empty());
    for t in &transfers {
        assert!(
            old.is_replica(t.partition, dead),
            "{} did not move",
            t.partition
        );
        assert!(t.sources_alive);
        assert!(!t.sources.contains(dead));
        assert!(!t.sources.contains(me));
    }
}

#[test]
fn plan_falls_back_to_departed_holders_when_none_survive() {
    let m = numbered("node-", 3);
    let me = NodeName::new("node-late");
    let old = ring(&m[..1], 64, 1);
    let new = ring(&[m[1].clone(), m[2].clone(), me.clone()], 64, 1);
    let transfers = plan(&old, &new, &me).expect("same P");
    assert_eq!(transfers.len() as u32, new.partitions_of(&me).total());
    for t in &transfers {
        assert!(!t.sources_alive);
        assert_eq!(t.sources, vec![m[0].clone()]);
    }
}

#[test]
fn first_view_needs_no_transfers() {
    let me = NodeName::new("solo");
    let old = ring(&[], 64, 2);
    let new = ring(std::slice::from_ref(&me), 64, 2);
    assert!(plan(&old, &new, &me).expect("same P").is_empty());
}

#[test]
fn departing_holder_releases_what_moved_away() {
    let m = numbered("node-", 3);
    let me = &m[0];
    let old = ring(&m, 128, 1);
    let new = ring(&[m.clone(), numbered("extra-", 2)].concat(), 128, 1);
    let dropped = released(&old, &new, me).expect("same P");
    assert!(!dropped.is_empty());
    for p in dropped {
        assert_eq!(old.primary(p), Some(me));
        assert_ne!(new.primary(p), Some(me));
    }
}

#[test]
fn plan_between_different_partition_counts_is_refused() {
    let m = numbered("node-", 2);
    let err = plan(&ring(&m, 64, 1), &ring(&m, 128, 1), &m[0]);
    assert_eq!(err, Err(RingError::PartitionsDiffer { old: 64, new: 128 }));
}

fn member_set(max: usize) -> impl Strategy<Value = Vec<NodeName>> {
    prop::collection::btree_set("[a-z0-9:.-]{1,12}", 1..max)
        .prop_map(|s| s.into_iter().map(NodeName::new).collect())
}

proptest! {
    #[test]
    fn any_order_builds_the_same_ring(
        (m, shuffled) in member_set(12).prop_flat_map(|m| (Just(m.clone()), Just(m).prop_shuffle())),
        p in 1u32..200,
        r in 1u32..5,
    ) {
        let a = ring(&m, p, r);
        let b = ring(&shuffled, p, r);
        prop_assert_eq!(a.digest(), b.digest());
        for id in a.partition_ids() {
            prop_assert_eq!(a.replicas(id), b.replicas(id));
        }
    }

    #[test]
    fn replica_lists_hold_min_r_n_distinct_members(
        m in member_set(12), p in 1u32..200, r in 1u32..5,
    ) {
        let ring = ring(&m, p, r);
        let want = m.len().min(r as usize);
        for id in ring.partition_ids() {
            let reps = ring.replicas(id);
            prop_assert_eq!(reps.len(), want);
            let set: BTreeSet<_> = reps.iter().collect();
            prop_assert_eq!(set.len(), want);
            prop_assert!(reps.iter().all(|n| ring.contains(n)));
        }
    }

    #[test]
    fn a_join_moves_partitions_only_to_the_newcomer(
        m in member_set(12), newcomer in "[A-Z]{1,8}", p in 1u32..200, r in 1u32..5,
    ) {
        let newcomer = NodeName::new(newcomer);
        let old = ring(&m, p, r);
        let new = ring(&[m.clone(), vec![newcomer.clone()]].concat(), p, r);
        for id in old.partition_ids() {
            // The new list is the old one with the newcomer inserted
            // somewhere and, if the list was full, its last entry dropped.
            let without: Vec<&NodeName> =
                new.replicas(id).iter().filter(|n| **n != newcomer).collect();
            let old_list: Vec<&NodeName> = old.replicas(id).iter().collect();
            prop_assert!(old_list.starts_with(&without));
            prop_assert!(old_list.len() - without.len() <= 1);
            if old.primary(id) != new.primary(id) {
                prop_assert_eq!(new.primary(id), Some(&newcomer));
            }
        }
    }

    #[test]
    fn a_departure_moves_only_the_departed_members_partitions(
        m in member_set(12), gone in any::<prop::sample::Index>(), p in 1u32..200, r in 1u32..5,
    ) {
        let gone = m[gone.index(m.len())].clone();
        let old = ring(&m, p, r);
        let rest: Vec<NodeName> = m.iter().filter(|n| **n != gone).cloned().collect();
        let new = ring(&rest, p, r);
        for id in old.partition_ids() {
            let old_list = old.replicas(id);
            let new_list = new.replicas(id);
            if old_list.contains(&gone) {
                // The departed member is removed and the rest keep their
                // order; the next in rank joins at the end.
                let kept: Vec<&NodeName> = old_list.iter().filter(|n| **n != gone).collect();
                let head: Vec<&NodeName> = new_list.iter().take(kept.len()).collect();
                prop_assert_eq!(head, kept);
            } else {
                prop_assert_eq!(old_list, new_list);
            }
        }
    }
}

/// Asserts that `got` is the same ring as `want` in every observable way
/// (and in its ranked slots, which the next update builds on).
fn assert_same_ring(got: &Ring, want: &Ring) {
    assert_eq!(got.members(), want.members());
    assert_eq!(got.digest(), want.digest());
    assert_eq!(got.ranks, want.ranks);
    for p in want.partition_ids() {
        assert_eq!(got.replicas(p), want.replicas(p), "{p}");
    }
    for m in want.members() {
        assert_eq!(got.partitions_of(m), want.partitions_of(m), "{m}");
    }
}

#[test]
fn one_join_at_a_hundred_members_updates_to_the_full_build() {
    let m = numbered("node-", 101);
    let before = ring(&m[..100], 4096, 2);
    assert_same_ring(&before.with_members(m.clone()), &ring(&m, 4096, 2));
}

#[test]
fn one_departure_at_a_hundred_members_updates_to_the_full_build() {
    let m = numbered("node-", 100);
    let before = ring(&m, 4096, 3);
    let rest: Vec<NodeName> = m
        .iter()
        .filter(|n| n.as_str() != "node-42")
        .cloned()
        .collect();
    assert_same_ring(&before.with_members(rest.clone()), &ring(&rest, 4096, 3));
}

#[test]
fn crossing_the_replication_factor_updates_to_the_full_build() {
    let m = numbered("n", 4);
    let small = ring(&m[..2], 64, 3);
    let grown = small.with_members(m.clone());
    assert_same_ring(&grown, &ring(&m, 64, 3));
    assert_same_ring(&grown.with_members(m[..1].to_vec()), &ring(&m[..1], 64, 3));
    assert_same_ring(&grown.with_members(Vec::new()), &ring(&[], 64, 3));
}

#[test]
fn equal_weights_rank_by_name_in_updates_too() {
    // Two members with one seed tie on every partition: the earlier name
    // must win whether the tie is met in a full build or in an update.
    let seeds = [7u64, 7];
    let mut top = Vec::new();
    top_by_weight(&seeds, PartitionId(3), 1, &mut top);
    assert_eq!(top.first().map(|s| s.member), Some(0));
    let mut updated = vec![Slot {
        weight: weight(7, PartitionId(3)),
        member: 1,
    }];
    insert_ranked(
        &mut updated,
        1,
        Slot {
            weight: weight(7, PartitionId(3)),
            member: 0,
        },
    );
    assert_eq!(updated, top);
}

/// One step of a membership history: a member joins (or, if present,
/// leaves); the name comes from a small pool so both happen often.
fn history() -> impl Strategy<Value = (Vec<NodeName>, Vec<Vec<usize>>)> {
    (
        prop::collection::btree_set("[a-z0-9:.-]{1,10}", 1..24)
            .prop_map(|s| s.into_iter().map(NodeName::new).collect::<Vec<_>>()),
        prop::collection::vec(prop::collection::vec(0usize..24, 1..4), 1..12),
    )
}

proptest! {
    #[test]
    fn updates_through_any_join_and_departure_sequence_equal_full_builds(
        (pool, steps) in history(), p in 1u32..300, r in 1u32..5,
    ) {
        let mut current: BTreeSet<NodeName> = BTreeSet::new();
        let mut ring_now = ring(&[], p, r);
        for step in steps {
            // Each step toggles one to three members of the pool at once
            // (a burst of joins and departures seen in one view).
            for i in step {
                let name = pool[i % pool.len()].clone();
                if !current.remove(&name) {
                    current.insert(name);
                }
            }
            let set: Vec<NodeName> = current.iter().cloned().collect();
            ring_now = ring_now.with_members(set.clone());
            let full = ring(&set, p, r);
            prop_assert_eq!(ring_now.members(), full.members());
            prop_assert_eq!(ring_now.digest(), full.digest());
            prop_assert_eq!(&ring_now.ranks, &full.ranks);
            for id in full.partition_ids() {
                prop_assert_eq!(ring_now.replicas(id), full.replicas(id));
            }
            for m in full.members() {
                prop_assert_eq!(ring_now.partitions_of(m), full.partitions_of(m));
            }
        }
    }
}
