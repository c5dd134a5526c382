//! Server commands: INFO, CONFIG GET/SET/RESETSTAT, TIME, MEMORY USAGE.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::{CmdError, CmdResult, CommandSpec, DataCtx, Flag, Handler, help, is};
use crate::config::parse_size;
use crate::resp::codec::Proto;
use crate::resp::glob::glob_match;
use crate::resp::hook::Deferred;
use crate::resp::reply::Reply;
use crate::resp::state::Shared;
use crate::store::EvictionPolicy;

pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "info",
        arity: -1,
        flags: &[Flag::Loading, Flag::Stale],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["slow", "dangerous"],
        summary: "Returns information and statistics about the server.",
        group: "server",
        since: "1.0.0",
        handler: Handler::Node(info),
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: &[Flag::Admin, Flag::Noscript, Flag::Loading, Flag::Stale],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["admin", "slow", "dangerous"],
        summary: "A container for server configuration commands.",
        group: "server",
        since: "2.0.0",
        handler: Handler::Node(config),
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: &[Flag::Loading, Flag::Stale, Flag::Fast],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["fast"],
        summary: "Returns the server time.",
        group: "server",
        since: "2.6.0",
        handler: Handler::Data(time),
    },
    CommandSpec {
        name: "memory",
        arity: -2,
        flags: &[Flag::Readonly],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["read", "slow"],
        summary: "A container for memory diagnostics commands.",
        group: "server",
        since: "4.0.0",
        handler: Handler::Data(memory),
    },
];

/// Sections INFO knows, in output order (`cluster` only on cluster peers).
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "cluster",
    "keyspace",
];

fn info(shared: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let text = render_info(shared, args, None);
    reply.verbatim(b"txt", text.as_bytes());
    Ok(())
}

/// INFO on a cluster peer: the keyspace section counts every member's keys
/// (gathered from the peers), the cluster section describes the ring.
pub(super) fn info_cluster_wide(
    shared: Arc<Shared>,
    args: &[Bytes],
    proto: Proto,
) -> Deferred<Bytes> {
    let args = args.to_vec();
    Box::pin(async move {
        let wants_keyspace = args.len() == 1
            || args[1..].iter().any(|a| {
                is(a, "keyspace") || is(a, "all") || is(a, "everything") || is(a, "default")
            });
        let keyspace = match shared.hook.get() {
            Some(hook) if wants_keyspace => Some(hook.clone().keyspace().await),
            _ => None,
        };
        let text = render_info(&shared, &args, keyspace);
        let mut out = BytesMut::new();
        Reply::new(&mut out, proto).verbatim(b"txt", text.as_bytes());
        out.freeze()
    })
}

/// The INFO text for `args`; `keyspace` (keys, expires) overrides the local
/// counts when the cluster's totals are known.
fn render_info(shared: &Shared, args: &[Bytes], keyspace: Option<(u64, u64)>) -> String {
    let everything = args[1..]
        .iter()
        .any(|a| is(a, "all") || is(a, "everything") || is(a, "default"));
    let wanted: Vec<&str> = if args.len() == 1 || everything {
        SECTIONS.to_vec()
    } else {
        SECTIONS
            .iter()
            .copied()
            .filter(|s| args[1..].iter().any(|a| is(a, s)))
            .collect()
    };
    let mut text = String::new();
    for s in wanted {
        if *s == *"cluster" && shared.hook.get().is_none() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        section(shared, s, keyspace, &mut text);
    }
    text
}

/// `1.50M`-style sizes as Redis's `*_human` fields.
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    }
}

fn section(shared: &Shared, name: &str, keyspace: Option<(u64, u64)>, t: &mut String) {
    let st = &shared.stats;
    let store = shared.store_stats();
    let (keys, expires) = keyspace.unwrap_or((store.keys, store.keys_with_ttl));
    let r = Ordering::Relaxed;
    // Writing to a String cannot fail.
    let _ = match name {
        "server" => {
            let up = shared.started.elapsed().as_secs();
            write!(
                t,
                "# Server\r\nredis_version:{}\r\nshoal_version:{}\r\nredis_mode:standalone\r\n\
                 os:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\ntcp_port:{}\r\n\
                 uptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nhz:10\r\n",
                crate::resp::REDIS_COMPAT_VERSION,
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH,
                usize::BITS,
                std::process::id(),
                shared.local_addr.port(),
                up / 86_400
            )
        }
        "clients" => write!(
            t,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n",
            st.connected_clients.load(r),
            shared.maxclients
        ),
        "memory" => {
            let max = shared.store.maxmemory();
            // Walks every partition: INFO is not on the request path.
            let marks = shared.store.mark_stats();
            write!(
                t,
                "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nmaxmemory:{max}\r\n\
                 maxmemory_human:{}\r\nmaxmemory_policy:{}\r\nevict_marks:{}\r\n\
                 evict_marks_bytes:{}\r\nevict_marks_cap_bytes:{}\r\nlossy_partitions:{}\r\n\
                 tombstones:{}\r\ntombstones_bytes:{}\r\nrepair_inserts_refused:{}\r\n\
                 memory_guard_overhead:{}\r\nmaxmemory_effective:{}\r\n{}",
                store.used_memory,
                human(store.used_memory),
                human(max),
                shared.store.policy(),
                marks.marks,
                marks.bytes,
                marks.cap_bytes,
                marks.lossy_partitions,
                marks.tombstones,
                marks.tombstone_bytes,
                marks.refused,
                shared.store.overhead(),
                shared.store.limit(),
                process_memory()
            )
        }
        "stats" => write!(
            t,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             instantaneous_ops_per_sec:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\n\
             rejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:{}\r\nkeyspace_hits:{}\r\n\
             keyspace_misses:{}\r\ntotal_error_replies:0\r\nprotocol_errors:{}\r\n{}",
            st.total_connections_received.load(r),
            st.total_commands_processed.load(r),
            st.instantaneous_ops(),
            st.net_input_bytes.load(r),
            st.net_output_bytes.load(r),
            st.rejected_connections.load(r),
            store.expired,
            store.evicted,
            store.hits,
            store.misses,
            st.protocol_errors.load(r),
            txn_fields(&st.txn)
        ),
        "keyspace" => {
            let _ = t.write_str("# Keyspace\r\n");
            if keys > 0 {
                write!(t, "db0:keys={keys},expires={expires},avg_ttl=0\r\n")
            } else {
                Ok(())
            }
        }
        "persistence" => match shared.persist.get() {
            Some(p) => write!(t, "# Persistence\r\n{}", p.info_fields()),
            None => t.write_str("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\n"),
        },
        "cluster" => match shared.hook.get() {
            Some(hook) => write!(t, "# Cluster\r\n{}", hook.info_cluster()),
            None => Ok(()),
        },
        _ => Ok(()),
    };
}

/// INFO stats' transaction fields (`txn_*`; Redis has none for MULTI).
fn txn_fields(t: &crate::resp::multi::TxnStats) -> String {
    use crate::resp::multi::Abort;
    let mut out = format!("txn_exec:{}\r\ntxn_discard:{}\r\n", t.execs(), t.discards());
    for why in Abort::ALL {
        let _ = write!(out, "txn_aborted_{}:{}\r\n", why.label(), t.aborts(why));
    }
    let (count, usec) = t
        .gate_waits()
        .map_or((0, 0), |w| (w.count, (w.sum_seconds * 1e6).round() as u64));
    let _ = write!(
        out,
        "txn_gate_waits:{count}\r\ntxn_gate_wait_usec:{usec}\r\n"
    );
    out
}

/// Parameters CONFIG GET answers, with their current values.
fn config_params(shared: &Shared) -> Vec<(&'static str, String)> {
    vec![
        ("maxmemory", shared.store.maxmemory().to_string()),
        ("maxmemory-policy", shared.store.policy().name().to_string()),
        ("maxclients", shared.maxclients.to_string()),
        ("port", shared.local_addr.port().to_string()),
        ("bind", shared.local_addr.ip().to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("timeout", "0".to_string()),
        ("tcp-keepalive", "0".to_string()),
        ("hz", "10".to_string()),
        ("proto-max-bulk-len", shared.limits.max_bulk_len.to_string()),
        ("cluster-enabled", "no".to_string()),
    ]
}

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value> (maxmemory, maxmemory-policy).",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "HELP",
    "    Print this help.",
];

fn config(shared: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let sub = &args[1];
    if is(sub, "GET") {
        if args.len() < 3 {
            return Err(CmdError::WrongArity("config|get".into()));
        }
        let found: Vec<_> = config_params(shared)
            .into_iter()
            .filter(|(name, _)| {
                args[2..]
                    .iter()
                    .any(|p| glob_match(p, name.as_bytes(), true))
            })
            .collect();
        reply.map(found.len());
        for (name, value) in found {
            reply.bulk(name.as_bytes());
            reply.bulk(value.as_bytes());
        }
    } else if is(sub, "SET") {
        if args.len() < 4 || args.len() % 2 != 0 {
            return Err(CmdError::WrongArity("config|set".into()));
        }
        config_set(shared, &args[2..])?;
        reply.ok();
    } else if is(sub, "RESETSTAT") {
        if args.len() != 2 {
            return Err(CmdError::WrongArity("config|resetstat".into()));
        }
        shared.stats.reset(shared.store.stats());
        reply.ok();
    } else if is(sub, "HELP") {
        help(reply, CONFIG_HELP);
    } else {
        return Err(CmdError::unknown_sub(sub, "CONFIG"));
    }
    Ok(())
}

/// A validated CONFIG SET change.
enum Change {
    /// New memory limit.
    MaxMemory(u64),
    /// New eviction policy.
    Policy(EvictionPolicy),
}

fn config_set(shared: &Shared, pairs: &[Bytes]) -> CmdResult {
    // Validate every pair first: CONFIG SET applies all or nothing.
    let mut changes = Vec::new();
    for kv in pairs.chunks_exact(2) {
        let value = String::from_utf8_lossy(&kv[1]);
        if is(&kv[0], "maxmemory") {
            let bytes = parse_size(&value).map_err(|_| {
                CmdError::Other(
                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value"
                        .into(),
                )
            })?;
            changes.push(Change::MaxMemory(bytes));
        } else if is(&kv[0], "maxmemory-policy") {
            let policy = value.parse::<EvictionPolicy>().map_err(|_| {
                let names: Vec<&str> = EvictionPolicy::ALL.iter().map(|p| p.name()).collect();
                CmdError::Other(format!(
                    "ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: {}",
                    names.join(", ")
                ))
            })?;
            changes.push(Change::Policy(policy));
        } else {
            return Err(CmdError::Other(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                String::from_utf8_lossy(&kv[0])
            )));
        }
    }
    for c in changes {
        match c {
            Change::MaxMemory(b) => shared.store.set_maxmemory(b),
            Change::Policy(p) => shared.store.set_policy(p),
        }
    }
    Ok(())
}

fn time(ctx: &DataCtx<'_>, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let ms = ctx.now.0;
    reply.array(2);
    reply.bulk((ms / 1000).to_string().as_bytes());
    reply.bulk(((ms % 1000) * 1000).to_string().as_bytes());
    Ok(())
}

fn memory(ctx: &DataCtx<'_>, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let sub = &args[1];
    if is(sub, "USAGE") {
        match &args[2..] {
            [_key] => {}
            [_key, s, n] if is(s, "SAMPLES") => {
                super::int_arg(n)?;
            }
            [] => return Err(CmdError::WrongArity("memory|usage".into())),
            _ => return Err(CmdError::Syntax),
        }
        match ctx.store.memory_usage(&args[2], ctx.now) {
            Some(n) => reply.int(n as i64),
            None => reply.null(),
        }
    } else if is(sub, "HELP") {
        help(
            reply,
            &[
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value.",
                "HELP",
                "    Print this help.",
            ],
        );
    } else {
        return Err(CmdError::unknown_sub(sub, "MEMORY"));
    }
    Ok(())
}

/// INFO memory's process figures (after `memory_guard_overhead`: bytes
/// counted against `maxmemory` besides the store's charge (not Redis's
/// `used_memory_overhead`, which is part of `used_memory`), set by the
/// memory guard, see `crate::memory::guard`; and `maxmemory_effective`:
/// the limit `used_memory` is held under): `used_memory_rss` (resident
/// set size), and when the counting allocator is installed (`shoal serve`)
/// `allocator_allocated` (bytes of the chunks malloc handed out, Redis's
/// name and meaning), `used_memory_startup` (what the process allocated
/// while the store was empty: the guard's baseline) and
/// `mem_fragmentation_ratio` (RSS / `allocator_allocated`; RSS includes
/// the binary and thread stacks, so it is high on an empty node).
fn process_memory() -> String {
    let mut t = String::new();
    let rss = crate::memory::rss();
    if let Some(rss) = rss {
        let _ = write!(t, "used_memory_rss:{rss}\r\n");
    }
    // With several nodes in the process (`shoal up`) the allocator's
    // figures are the process's, not this node's: left out.
    if let Some(alloc) =
        crate::memory::allocated().filter(|_| crate::memory::nodes_in_process() <= 1)
    {
        let _ = write!(t, "allocator_allocated:{alloc}\r\n");
        if let Some(base) = crate::memory::baseline() {
            let _ = write!(t, "used_memory_startup:{base}\r\n");
        }
        if let Some(rss) = rss.filter(|_| alloc > 0) {
            let _ = write!(
                t,
                "mem_fragmentation_ratio:{:.2}\r\n",
                rss as f64 / alloc as f64
            );
        }
    }
    t
}
