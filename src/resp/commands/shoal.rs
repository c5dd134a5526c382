//! `SHOAL ...`: Shoal's own introspection commands.
//!
//! - `SHOAL MEMBERS`: one entry per member (name, gossip address, RESP
//!   address, state, partitions it is primary and replica for), as a map per
//!   member in RESP3 and a flat field/value array in RESP2.

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, help, is};
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
    summary: "Shoal cluster introspection: SHOAL MEMBERS, SHOAL HELP.",
    group: "server",
    since: "0.1.0",
    handler: Handler::Node(shoal),
}];

fn shoal(shared: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let sub = &args[1];
    if is(sub, "members") && args.len() == 2 {
        members(shared, reply);
        Ok(())
    } else if is(sub, "help") {
        help(
            reply,
            &[
                "SHOAL <subcommand>. Subcommands are:",
                "MEMBERS",
                "    The cluster's members: name, gossip and RESP addresses, state,",
                "    partitions owned as primary and as replica.",
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
