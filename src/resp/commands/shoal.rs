//! `SHOAL ...`: Shoal's own introspection commands.
//!
//! - `SHOAL MEMBERS`: one entry per member (name, gossip address, RESP
//!   address, state, partitions it is primary and replica for), as a map per
//!   member in RESP3 and a flat field/value array in RESP2.
//! - `SHOAL PARTITION <key>`: the key's partition id, then the names of its
//!   replicas in ring order (primary first); standalone: `standalone`.
//! - `SHOAL LOCAL <key>`: the value in THIS node's store, without routing
//!   (nil if absent): how tests check each copy.
//! - `SHOAL DIGEST <partition>`: hex digest of this node's copy of the
//!   partition (live keys and their versions; tombstones excluded), or nil
//!   when this node holds no live key of it.
//! - `SHOAL HOTKEYS [COUNT n]`: the `n` (default 10) keys this node served
//!   most as their primary, hottest first, each `[key, estimated rate/s]`
//!   (a sampled, decaying sketch: `crate::hotkeys`).
//! - `SHOAL NEAR`: the counters of this node's near cache of forwarded
//!   RESP reads (`crate::cluster` `near_reads`): `enabled`, `hits`,
//!   `misses`, `fills`, `entries`, `invalidations`, `write_drops`; a map
//!   in RESP3, a flat field/value array in RESP2.
//! - `SHOAL RING`: what a client needs to compute placement itself:
//!   `partitions` (P), `replicas` (R), `placement` and `key_hash` (the
//!   algorithms, named below), `hash_seed`, the ring `digest` (16 hex
//!   digits) and `members`, each `name`, `resp` address, `tls` address
//!   (`tls-listen`; `-` when it has none or it is not known yet), `state`
//!   and `ring` (1 when placement counts it). A map in RESP3, a flat field/value array
//!   in RESP2.
//!
//! # Placement, as `SHOAL RING` names it
//! `key_hash` `xxh3_64`: a key's partition is `xxh3_64(k, seed 0) % P`,
//! where `k` is the key's hash tag (`{...}`) if it has one. `placement`
//! `rendezvous-xxh3`: see [`crate::ring`]; each ring member `m` weighs
//! `xxh3_64_with_seed(p as u32 LE, xxh3_64(m, seed 0))` for partition `p`,
//! and the R heaviest hold it, heaviest first (the primary).

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, help, int_arg, is};
use crate::resp::hook::RingInfo;
use crate::resp::reply::Reply;
use crate::resp::state::Shared;

pub(super) const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "shoal",
    arity: -2,
    flags: &[Flag::Loading, Flag::Stale],
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: &["slow"],
    summary: "Shoal cluster introspection: SHOAL MEMBERS|PARTITION|LOCAL|DIGEST|HOTKEYS|NEAR|RING|HELP.",
    group: "server",
    since: "0.1.0",
    handler: Handler::Node(shoal),
}];

/// The placement algorithm `SHOAL RING` names (see the module docs).
pub const PLACEMENT: &str = "rendezvous-xxh3";

/// The key hash `SHOAL RING` names.
pub const KEY_HASH: &str = "xxh3_64";

/// Keys `SHOAL HOTKEYS` lists without `COUNT`.
const DEFAULT_HOTKEYS: usize = 10;

/// Most keys `SHOAL HOTKEYS` lists.
const MAX_HOTKEYS: usize = 1000;

fn shoal(shared: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let sub = &args[1];
    if is(sub, "hotkeys") {
        hotkeys(shared, &args[2..], reply)
    } else if is(sub, "near") && args.len() == 2 {
        near(shared, reply);
        Ok(())
    } else if is(sub, "ring") && args.len() == 2 {
        ring(shared, reply);
        Ok(())
    } else if is(sub, "members") && args.len() == 2 {
        members(shared, reply);
        Ok(())
    } else if is(sub, "partition") && args.len() == 3 {
        partition(shared, &args[2], reply);
        Ok(())
    } else if is(sub, "local") && args.len() == 3 {
        let now = (shared.clock)();
        match shared.store.peek(&args[2], now, |e| {
            e.map(|e| Bytes::copy_from_slice(e.value))
        }) {
            Some(v) => reply.bulk(&v),
            None => reply.null(),
        }
        Ok(())
    } else if is(sub, "digest") && args.len() == 3 {
        let p = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|p| *p < shared.store.partitions())
            .ok_or_else(|| CmdError::Other("ERR invalid partition".into()))?;
        let now = (shared.clock)();
        match shared.store.digest(crate::store::PartitionId(p), now) {
            Some(d) => reply.bulk(d.hex().as_bytes()),
            None => reply.null(),
        }
        Ok(())
    } else if is(sub, "help") {
        help(
            reply,
            &[
                "SHOAL <subcommand>. Subcommands are:",
                "MEMBERS",
                "    The cluster's members: name, gossip and RESP addresses, state,",
                "    partitions owned as primary and as replica.",
                "PARTITION <key>",
                "    The key's partition, then its replicas in ring order (primary first).",
                "LOCAL <key>",
                "    The value held in this node's store, without routing (nil if absent).",
                "DIGEST <partition>",
                "    Hex digest of this node's copy of a partition (nil if it holds none).",
                "HOTKEYS [COUNT <n>]",
                "    The keys this node served most as primary, with estimated requests/s.",
                "NEAR",
                "    Counters of the near cache of hot keys' forwarded reads.",
                "RING",
                "    Partitions, replicas, placement algorithm, hash seed, digest and members:",
                "    what a client needs to send each key to its primary.",
                "HELP",
                "    Print this help.",
            ],
        );
        Ok(())
    } else {
        Err(CmdError::UnknownSubcommand {
            sub: String::from_utf8_lossy(sub).into_owned(),
            cmd: "SHOAL",
        })
    }
}

fn partition(shared: &Shared, key: &[u8], reply: &mut Reply<'_>) {
    let p = shared.store.partition_of(key).0;
    let names = match shared.hook.get() {
        Some(hook) => hook.replicas_of(p),
        None => vec!["standalone".to_string()],
    };
    reply.array(names.len() + 1);
    reply.int(i64::from(p));
    for n in names {
        reply.bulk(n.as_bytes());
    }
}

fn members(shared: &Shared, reply: &mut Reply<'_>) {
    let Some(hook) = shared.hook.get() else {
        // Standalone: the node alone, owning every partition.
        reply.array(1);
        member(
            reply,
            "standalone",
            "-",
            &shared.local_addr.to_string(),
            "alive",
            u64::from(shared.store.partitions()),
            0,
            true,
        );
        return;
    };
    let rows = hook.members();
    reply.array(rows.len());
    for r in rows {
        member(
            reply,
            &r.name,
            &r.gossip.to_string(),
            &r.resp.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            r.state,
            u64::from(r.primary),
            u64::from(r.replica),
            r.myself,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn member(
    reply: &mut Reply<'_>,
    name: &str,
    gossip: &str,
    resp: &str,
    state: &str,
    primary: u64,
    replica: u64,
    myself: bool,
) {
    reply.map(7);
    reply.bulk(b"name");
    reply.bulk(name.as_bytes());
    reply.bulk(b"gossip");
    reply.bulk(gossip.as_bytes());
    reply.bulk(b"resp");
    reply.bulk(resp.as_bytes());
    reply.bulk(b"state");
    reply.bulk(state.as_bytes());
    reply.bulk(b"partitions_primary");
    reply.int(primary as i64);
    reply.bulk(b"partitions_replica");
    reply.int(replica as i64);
    reply.bulk(b"myself");
    reply.int(i64::from(myself));
}

fn hotkeys(shared: &Shared, opts: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let n = match opts {
        [] => DEFAULT_HOTKEYS,
        [word, n] if is(word, "count") => {
            let n = int_arg(n)?;
            if n < 0 {
                return Err(CmdError::Other("ERR COUNT must be positive".into()));
            }
            (n as usize).min(MAX_HOTKEYS)
        }
        _ => return Err(CmdError::Syntax),
    };
    let top = shared.hot.top(n);
    reply.array(top.len());
    for k in top {
        reply.array(2);
        reply.bulk(&k.key);
        reply.double((k.rate * 10.0).round() / 10.0);
    }
    Ok(())
}

/// `SHOAL NEAR`: the forwarded-read near cache's counters.
fn near(shared: &Shared, reply: &mut Reply<'_>) {
    let stats = shared.hot.forward_near_stats();
    let s = stats.unwrap_or_default();
    let fields: [(&str, u64); 7] = [
        ("enabled", u64::from(stats.is_some())),
        ("hits", s.hits),
        ("misses", s.misses),
        ("fills", s.fills),
        ("entries", s.entries),
        ("invalidations", s.invalidations),
        ("write_drops", s.write_drops),
    ];
    reply.map(fields.len());
    for (name, n) in fields {
        reply.bulk(name.as_bytes());
        reply.int(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// The ring of a standalone node: itself, named `standalone`.
fn standalone_ring(shared: &Shared) -> RingInfo {
    let name = crate::transport::NodeName::new("standalone");
    let p = shared.store.partitions();
    let digest = crate::ring::Ring::new(vec![name], p, 1)
        .map(|r| r.digest().0)
        .unwrap_or_default();
    RingInfo {
        partitions: p,
        replicas: 1,
        digest,
        ring_members: vec!["standalone".into()],
    }
}

fn ring(shared: &Shared, reply: &mut Reply<'_>) {
    let hook = shared.hook.get();
    let info = hook
        .and_then(|h| h.ring_info())
        .unwrap_or_else(|| standalone_ring(shared));
    let addr = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".into(), |a| a.to_string());
    let rows: Vec<(String, String, String, &str)> = match hook {
        Some(h) => h
            .members()
            .into_iter()
            .map(|r| (r.name, addr(r.resp), addr(r.tls), r.state))
            .collect(),
        None => vec![(
            "standalone".into(),
            shared.local_addr.to_string(),
            "-".into(),
            "alive",
        )],
    };
    reply.map(7);
    reply.bulk(b"partitions");
    reply.int(i64::from(info.partitions));
    reply.bulk(b"replicas");
    reply.int(i64::from(info.replicas));
    reply.bulk(b"placement");
    reply.bulk(PLACEMENT.as_bytes());
    reply.bulk(b"key_hash");
    reply.bulk(KEY_HASH.as_bytes());
    reply.bulk(b"hash_seed");
    reply.int(0);
    reply.bulk(b"digest");
    reply.bulk(format!("{:016x}", info.digest).as_bytes());
    reply.bulk(b"members");
    reply.array(rows.len());
    for (name, resp, tls, state) in rows {
        let in_ring = info.ring_members.contains(&name);
        reply.map(5);
        reply.bulk(b"name");
        reply.bulk(name.as_bytes());
        reply.bulk(b"resp");
        reply.bulk(resp.as_bytes());
        reply.bulk(b"tls");
        reply.bulk(tls.as_bytes());
        reply.bulk(b"state");
        reply.bulk(state.as_bytes());
        reply.bulk(b"ring");
        reply.int(i64::from(in_ring));
    }
}
