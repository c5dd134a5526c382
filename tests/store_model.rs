//! Property tests of the store against a simple model, with a controlled
//! clock: random operation sequences, memory bounds under every policy,
//! volatile-* sparing keys without TTL, SCAN completeness.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use shoal::store::{EvictionPolicy, Mutation, Store, StoreConfig, StoreError, UnixMillis};

const T0: u64 = 1_700_000_000_000;
/// Distinct keys the operations draw from (enough for partitions to grow
/// past the compaction threshold and shrink again).
const KEYSPACE: u8 = 48;

#[derive(Debug, Clone)]
enum Op {
    Set { key: u8, len: u8, ttl: Option<u16> },
    Get(u8),
    Delete(u8),
    Expire { key: u8, ttl: Option<u16> },
    Append { key: u8, byte: u8 },
    Advance(u16),
    ExpireCycle(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..KEYSPACE, any::<u8>(), proptest::option::of(1u16..500))
            .prop_map(|(key, len, ttl)| Op::Set { key, len, ttl }),
        3 => (0u8..KEYSPACE).prop_map(Op::Get),
        2 => (0u8..KEYSPACE).prop_map(Op::Delete),
        1 => (0u8..KEYSPACE, proptest::option::of(1u16..500)).prop_map(|(key, ttl)| Op::Expire { key, ttl }),
        1 => (0u8..KEYSPACE, any::<u8>()).prop_map(|(key, byte)| Op::Append { key, byte }),
        1 => (0u16..300).prop_map(Op::Advance),
        1 => (1u8..50).prop_map(Op::ExpireCycle),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// The model: key -> (value, absolute expiry).
type Model = BTreeMap<u8, (Vec<u8>, Option<u64>)>;

fn live(model: &Model, k: u8, now: u64) -> Option<&Vec<u8>> {
    model
        .get(&k)
        .filter(|(_, exp)| exp.is_none_or(|e| e > now))
        .map(|(v, _)| v)
}

fn apply(store: &Store, model: &mut Model, now: &mut u64, op: &Op) {
    let t = UnixMillis(*now);
    match *op {
        Op::Set { key: k, len, ttl } => {
            let value = vec![k; usize::from(len)];
            let exp = ttl.map(|d| *now + u64::from(d));
            store
                .set(&key(k), Bytes::from(value.clone()), exp.map(UnixMillis), t)
                .unwrap();
            model.insert(k, (value, exp));
        }
        Op::Get(k) => {
            let got = store.get(&key(k), t).map(|b| b.to_vec());
            assert_eq!(got.as_ref(), live(model, k, *now));
        }
        Op::Delete(k) => {
            let was = live(model, k, *now).is_some();
            assert_eq!(store.delete(&key(k), t), was);
            model.remove(&k);
        }
        Op::Expire { key: k, ttl } => {
            let exp = ttl.map(|d| *now + u64::from(d));
            store
                .update(&key(k), t, |e| match e {
                    Some(_) => (Mutation::SetExpiry(exp.map(UnixMillis)), ()),
                    None => (Mutation::Keep, ()),
                })
                .unwrap();
            if live(model, k, *now).is_some()
                && let Some(entry) = model.get_mut(&k)
            {
                entry.1 = exp;
            }
        }
        Op::Append { key: k, byte } => {
            store
                .update(&key(k), t, |e| {
                    let (mut v, exp) =
                        e.map_or((Vec::new(), None), |e| (e.value.to_vec(), e.expires_at));
                    v.push(byte);
                    (
                        Mutation::Set {
                            value: Bytes::from(v),
                            expires_at: exp,
                        },
                        (),
                    )
                })
                .unwrap();
            let (mut v, exp) = live(model, k, *now)
                .map(|v| (v.clone(), model[&k].1))
                .unwrap_or_default();
            v.push(byte);
            model.insert(k, (v, exp));
        }
        Op::Advance(ms) => *now += u64::from(ms),
        Op::ExpireCycle(budget) => {
            store.expire_cycle(t, usize::from(budget));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn store_matches_a_map_model_with_ttl(ops in proptest::collection::vec(op(), 1..300), parts in 1u32..8) {
        let store = Store::new(StoreConfig { partitions: parts, ..StoreConfig::default() });
        let mut model = Model::new();
        let mut now = T0;
        for op in &ops {
            apply(&store, &mut model, &mut now, op);
        }
        let t = UnixMillis(now);
        for k in 0u8..KEYSPACE {
            let got = store.peek(&key(k), t, |e| e.map(|e| e.value.to_vec()));
            prop_assert_eq!(got.as_ref(), live(&model, k, now));
        }
        let mut scanned = HashSet::new();
        let mut cursor = 0;
        loop {
            let page = store.scan(cursor, 5, t, |_| true);
            scanned.extend(page.keys.iter().map(|k| k.to_vec()));
            cursor = page.cursor;
            if cursor == 0 { break; }
        }
        let expected: HashSet<Vec<u8>> =
            (0u8..KEYSPACE).filter(|&k| live(&model, k, now).is_some()).map(key).collect();
        prop_assert_eq!(scanned, expected);
        for k in 0u8..KEYSPACE {
            store.delete(&key(k), t);
        }
        let st = store.stats();
        prop_assert_eq!((st.keys, st.keys_with_ttl, st.used_memory), (0, 0, 0));
    }

    #[test]
    fn used_memory_stays_within_maxmemory_plus_one_entry(
        policy_ix in 0usize..EvictionPolicy::ALL.len(),
        writes in proptest::collection::vec((0u16..2000, 0usize..400, any::<bool>()), 1..400),
        maxmemory in 1_000u64..40_000,
    ) {
        let policy = EvictionPolicy::ALL[policy_ix];
        let store = Store::new(StoreConfig { partitions: 64, maxmemory, policy });
        let t = UnixMillis(T0);
        let mut largest = 0u64;
        let mut kept: HashSet<u16> = HashSet::new();
        for (k, len, ttl) in writes {
            let name = format!("key{k}");
            let exp = ttl.then_some(t.plus(60_000));
            match store.set(name.as_bytes(), Bytes::from(vec![1; len]), exp, t) {
                Ok(()) => {
                    largest = largest.max(store.memory_usage(name.as_bytes(), t).unwrap_or(0) as u64);
                    if ttl { kept.remove(&k); } else { kept.insert(k); }
                }
                Err(StoreError::OutOfMemory) => {}
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
            prop_assert!(store.stats().used_memory <= maxmemory + largest, "{policy}");
        }
        if policy.name().starts_with("volatile") || policy == EvictionPolicy::NoEviction {
            for k in kept {
                let name = format!("key{k}");
                prop_assert!(store.peek(name.as_bytes(), t, |e| e.is_some()), "{policy} lost key{k}");
            }
        }
    }
}
