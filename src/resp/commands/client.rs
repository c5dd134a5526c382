//! CLIENT subcommands: ID, SETNAME, GETNAME, INFO, LIST, SETINFO, HELP,
//! plus NO-EVICT / NO-TOUCH accepted as no-ops for client libraries.

use bytes::Bytes;

use super::connection::valid_client_name;
use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, help, is};
use crate::resp::reply::Reply;
use crate::resp::state::{Session, Shared};

pub(super) const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "client",
    arity: -2,
    flags: &[Flag::Noscript, Flag::Loading, Flag::Stale],
    first_key: 0,
    last_key: 0,
    step: 0,
    acl: &["slow", "connection"],
    summary: "A container for client connection commands.",
    group: "connection",
    since: "2.4.0",
    handler: Handler::Conn(client),
}];

const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "LIST [TYPE normal] [ID id [id ...]]",
    "    Return information about client connections.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
];

fn arity(sub: &str) -> CmdError {
    CmdError::WrongArity(format!("client|{sub}"))
}

fn client(
    session: &mut Session,
    shared: &Shared,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> CmdResult {
    let sub = &args[1];
    let n = args.len();
    if is(sub, "ID") {
        if n != 2 {
            return Err(arity("id"));
        }
        reply.int(session.meta.id as i64);
    } else if is(sub, "GETNAME") {
        if n != 2 {
            return Err(arity("getname"));
        }
        let name = session.meta.names().name;
        if name.is_empty() {
            reply.null();
        } else {
            reply.bulk(name.as_bytes());
        }
    } else if is(sub, "SETNAME") {
        if n != 3 {
            return Err(arity("setname"));
        }
        if !valid_client_name(&args[2]) {
            return Err(CmdError::Other(
                "ERR Client names cannot contain spaces, newlines or special characters.".into(),
            ));
        }
        let name = String::from_utf8_lossy(&args[2]).into_owned();
        session.meta.with_names(|n| n.name = name);
        reply.ok();
    } else if is(sub, "SETINFO") {
        if n != 4 {
            return Err(arity("setinfo"));
        }
        set_info(session, &args[2], &args[3])?;
        reply.ok();
    } else if is(sub, "INFO") {
        if n != 2 {
            return Err(arity("info"));
        }
        let mut line = session.meta.info_line();
        line.push('\n');
        reply.verbatim(b"txt", line.as_bytes());
    } else if is(sub, "LIST") {
        list(shared, &args[2..], reply)?;
    } else if is(sub, "NO-EVICT") || is(sub, "NO-TOUCH") {
        if n != 3 || !(is(&args[2], "ON") || is(&args[2], "OFF")) {
            return Err(CmdError::Syntax);
        }
        reply.ok();
    } else if is(sub, "HELP") {
        help(reply, HELP);
    } else {
        return Err(CmdError::unknown_sub(sub, "CLIENT"));
    }
    Ok(())
}

fn set_info(session: &Session, attr: &[u8], value: &[u8]) -> CmdResult {
    if !valid_client_name(value) && !value.is_empty() {
        return Err(CmdError::Other(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr).to_ascii_lowercase()
        )));
    }
    let value = String::from_utf8_lossy(value).into_owned();
    if is(attr, "LIB-NAME") {
        session.meta.with_names(|n| n.lib_name = value);
    } else if is(attr, "LIB-VER") {
        session.meta.with_names(|n| n.lib_ver = value);
    } else {
        return Err(CmdError::Other(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        )));
    }
    Ok(())
}

fn list(shared: &Shared, opts: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 0;
    while i < opts.len() {
        if is(&opts[i], "TYPE") && i + 1 < opts.len() {
            let t = &opts[i + 1];
            if !(is(t, "normal") || is(t, "master") || is(t, "replica") || is(t, "pubsub")) {
                return Err(CmdError::Other(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                )));
            }
            if !is(t, "normal") {
                ids = Some(Vec::new());
            }
            i += 2;
        } else if is(&opts[i], "ID") && i + 1 < opts.len() {
            let mut v = Vec::new();
            for a in &opts[i + 1..] {
                match crate::resp::codec::parse_i64(a) {
                    Some(id) if id > 0 => v.push(id as u64),
                    _ => return Err(CmdError::Other("ERR Invalid client ID".into())),
                }
            }
            ids = Some(v);
            i = opts.len();
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let mut text = String::new();
    for c in shared.clients.all() {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        text.push_str(&c.info_line());
        text.push('\n');
    }
    reply.verbatim(b"txt", text.as_bytes());
    Ok(())
}
