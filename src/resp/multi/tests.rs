//! Unit tests of `resp::multi`: a transaction's shape, units and their
//! watches.

use super::*;
use crate::resp::codec::Proto;
use crate::store::UnixMillis;

fn cmd(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::from(p.to_string())).collect()
}

fn store() -> Store {
    Store::new(crate::store::StoreConfig::default())
}

#[test]
fn keys_sharing_a_hash_tag_run_as_one_unit() {
    let s = store();
    let cmds = [
        cmd(&["INCR", "{u}a"]),
        cmd(&["PING"]),
        cmd(&["MGET", "{u}a", "{u}b"]),
    ];
    assert!(matches!(shape(&s, &cmds, &[]), Shape::Unit(_)));
}

#[test]
fn keys_over_partitions_run_in_order_and_refuse_watches() {
    let s = store();
    let n = s.partitions();
    let other = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| partition_of(k.as_bytes(), n) != partition_of(b"{u}a", n))
        .expect("a key elsewhere");
    let cmds = [cmd(&["INCR", "{u}a"]), cmd(&["INCR", &other])];
    assert!(matches!(shape(&s, &cmds, &[]), Shape::InOrder));
    let w = [(Bytes::from_static(b"{u}a"), KeyStamp::Absent)];
    assert!(matches!(shape(&s, &cmds, &w), Shape::CrossSlot));
    let walk = [cmd(&["INCR", "{u}a"]), cmd(&["KEYS", "*"])];
    assert!(matches!(shape(&s, &walk, &w), Shape::CrossSlot));
}

#[test]
fn a_unit_aborts_when_a_watched_key_changed() {
    let s = store();
    let now = UnixMillis(1);
    let p = s.partition_of(b"{u}a").0;
    let unit = |watches| Unit {
        partition: p,
        watches,
        commands: vec![cmd(&["INCR", "{u}a"]), cmd(&["INCR", "{u}b"])],
    };
    let before = s.stamp(b"{u}a", now);
    assert_eq!(
        run_unit(
            &s,
            now,
            &unit(vec![(Bytes::from_static(b"{u}a"), before)]),
            Proto::Resp2,
            &TxnStats::default()
        ),
        UnitOutcome::Ran(vec![
            Bytes::from_static(b":1\r\n"),
            Bytes::from_static(b":1\r\n")
        ])
    );
    // The unit's own write changed the key: the same watch now fails.
    assert_eq!(
        run_unit(
            &s,
            now,
            &unit(vec![(Bytes::from_static(b"{u}a"), before)]),
            Proto::Resp2,
            &TxnStats::default()
        ),
        UnitOutcome::Aborted
    );
    assert_eq!(s.get(b"{u}b", now).as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_unit_with_a_key_elsewhere_is_not_one_partition() {
    let s = store();
    let n = s.partitions();
    let p = s.partition_of(b"{u}a").0;
    let mut unit = Unit {
        partition: p,
        watches: Vec::new(),
        commands: vec![cmd(&["SET", "{u}a", "1"])],
    };
    assert!(unit.is_one_partition(n));
    unit.commands.push(cmd(&["PING"]));
    assert!(!unit.is_one_partition(n), "only keyed data commands travel");
    unit.commands.pop();
    unit.watches
        .push((Bytes::from_static(b"{v}x"), KeyStamp::Absent));
    assert!(!unit.is_one_partition(n));
}
