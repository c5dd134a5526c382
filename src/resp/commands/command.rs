//! COMMAND, COMMAND COUNT/INFO/DOCS/LIST/GETKEYS: answered from the table,
//! enough for redis-cli and client libraries to start cleanly.

use bytes::Bytes;

use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, all_commands, help, is, lookup};
use crate::resp::reply::Reply;
use crate::resp::state::Shared;

pub(super) const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "command",
    arity: -1,
    flags: &[Flag::Loading, Flag::Stale],
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: &["slow", "connection"],
    summary: "Returns detailed information about all commands.",
    group: "server",
    since: "2.8.13",
    handler: Handler::Node(command),
}];

const HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands in this server.",
    "LIST",
    "    Return a list of all commands in this server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple commands.",
    "GETKEYS <full-command>",
    "    Return the keys from a full command.",
    "HELP",
    "    Print this help.",
];

fn command(_: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let all = all_commands();
    let Some(sub) = args.get(1) else {
        reply.array(all.len());
        for s in all {
            write_info(s, reply);
        }
        return Ok(());
    };
    if is(sub, "COUNT") {
        reply.int(all.len() as i64);
    } else if is(sub, "LIST") {
        reply.array(all.len());
        for s in all {
            reply.bulk(s.name.as_bytes());
        }
    } else if is(sub, "INFO") {
        if args.len() == 2 {
            reply.array(all.len());
            for s in all {
                write_info(s, reply);
            }
        } else {
            reply.array(args.len() - 2);
            for name in &args[2..] {
                match lookup(name) {
                    Some((_, s)) => write_info(s, reply),
                    None => reply.null(),
                }
            }
        }
    } else if is(sub, "DOCS") {
        let specs: Vec<&CommandSpec> = if args.len() == 2 {
            all.to_vec()
        } else {
            args[2..]
                .iter()
                .filter_map(|n| lookup(n).map(|(_, s)| s))
                .collect()
        };
        reply.map(specs.len());
        for s in specs {
            reply.bulk(s.name.as_bytes());
            write_docs(s, reply);
        }
    } else if is(sub, "GETKEYS") {
        getkeys(&args[2..], reply)?;
    } else if is(sub, "HELP") {
        help(reply, HELP);
    } else {
        return Err(CmdError::unknown_sub(sub, "COMMAND"));
    }
    Ok(())
}

/// One COMMAND INFO entry, Redis 7 shape: name, arity, flags, first key,
/// last key, step, ACL categories, tips, key specs, subcommands.
fn write_info(s: &CommandSpec, reply: &mut Reply<'_>) {
    reply.array(10);
    reply.bulk(s.name.as_bytes());
    reply.int(i64::from(s.arity));
    reply.set(s.flags.len());
    for f in s.flags {
        reply.simple(f.name());
    }
    reply.int(i64::from(s.first_key));
    reply.int(i64::from(s.last_key));
    reply.int(i64::from(s.step));
    reply.set(s.acl.len());
    for a in s.acl {
        reply.simple(&format!("@{a}"));
    }
    reply.array(0);
    reply.array(0);
    reply.array(0);
}

fn write_docs(s: &CommandSpec, reply: &mut Reply<'_>) {
    reply.map(3);
    reply.bulk(b"summary");
    reply.bulk(s.summary.as_bytes());
    reply.bulk(b"since");
    reply.bulk(s.since.as_bytes());
    reply.bulk(b"group");
    reply.bulk(s.group.as_bytes());
}

fn getkeys(cmd: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let Some(name) = cmd.first().filter(|_| cmd.len() >= 2) else {
        return Err(CmdError::WrongArity("command|getkeys".into()));
    };
    let Some((_, s)) = lookup(name) else {
        return Err(CmdError::Other("ERR Invalid command specified".into()));
    };
    if !s.arity_ok(cmd.len()) {
        return Err(CmdError::Other(
            "ERR Invalid number of arguments specified for command".into(),
        ));
    }
    let keys: Vec<&Bytes> = s.keys(cmd).collect();
    if keys.is_empty() {
        return Err(CmdError::Other(
            "ERR The command has no key arguments".into(),
        ));
    }
    reply.array(keys.len());
    for k in keys {
        reply.bulk(k);
    }
    Ok(())
}
