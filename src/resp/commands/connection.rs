//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.
//! PING and ECHO are data-free; the others act on the [`Session`].

use bytes::Bytes;
use ring::digest::{SHA256, digest};

use super::{CmdError, CmdResult, CommandSpec, Flag, Handler, int_arg, is};
use crate::resp::codec::Proto;
use crate::resp::reply::Reply;
use crate::resp::state::{Session, Shared};

/// The configured password, kept as a SHA-256 digest so that checking a
/// candidate takes the same time whatever it shares with the password.
pub struct Secret {
    /// SHA-256 of the password.
    digest: [u8; 32],
}

impl Secret {
    /// Hash `password`.
    pub fn new(password: &[u8]) -> Self {
        Secret {
            digest: sha256(password),
        }
    }

    /// Constant-time check of a candidate password: both sides are
    /// fixed-size digests, compared with a branch-free fold (ring's
    /// `verify_slices_are_equal` is deprecated in 0.17.14).
    pub fn verify(&self, candidate: &[u8]) -> bool {
        let other = sha256(candidate);
        let diff = self
            .digest
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest(&SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

const CONN: &[&str] = &["fast", "connection"];

pub(super) const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &[Flag::Fast, Flag::Stale],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Returns the server's liveliness response.",
        group: "connection",
        since: "1.0.0",
        handler: Handler::Conn(ping),
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &[Flag::Fast, Flag::Stale],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Returns the given string.",
        group: "connection",
        since: "1.0.0",
        handler: Handler::Conn(echo),
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: &[
            Flag::NoAuth,
            Flag::Fast,
            Flag::Noscript,
            Flag::Loading,
            Flag::Stale,
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Handshakes with the Redis server.",
        group: "connection",
        since: "6.0.0",
        handler: Handler::Conn(hello),
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: &[
            Flag::NoAuth,
            Flag::Fast,
            Flag::Noscript,
            Flag::Loading,
            Flag::Stale,
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Authenticates the connection.",
        group: "connection",
        since: "1.0.0",
        handler: Handler::Conn(auth),
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &[Flag::Fast, Flag::Loading, Flag::Stale],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Changes the selected database (only 0 exists).",
        group: "connection",
        since: "1.0.0",
        handler: Handler::Conn(select),
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: &[
            Flag::NoAuth,
            Flag::Fast,
            Flag::Noscript,
            Flag::Loading,
            Flag::Stale,
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Closes the connection.",
        group: "connection",
        since: "1.0.0",
        handler: Handler::Conn(quit),
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: &[
            Flag::NoAuth,
            Flag::Fast,
            Flag::Noscript,
            Flag::Loading,
            Flag::Stale,
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: CONN,
        summary: "Resets the connection.",
        group: "connection",
        since: "6.2.0",
        handler: Handler::Conn(reset),
    },
];

fn ping(_: &mut Session, _: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    match args {
        [_] => reply.simple("PONG"),
        [_, msg] => reply.bulk(msg),
        _ => return Err(CmdError::WrongArity("ping".into())),
    }
    Ok(())
}

fn echo(_: &mut Session, _: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    reply.bulk(&args[1]);
    Ok(())
}

/// Check a user/password pair: `default` (the `requirepass` password) or
/// a configured ACL user.
fn check_credentials(
    session: &mut Session,
    shared: &Shared,
    user: &[u8],
    pass: &[u8],
) -> CmdResult {
    let found = if user == b"default" {
        let ok = match &shared.secret {
            Some(secret) => secret.verify(pass),
            None => true,
        };
        ok.then_some(None)
    } else {
        shared.acl.authenticate(user, pass).map(Some)
    };
    let Some(acl_user) = found else {
        tracing::debug!(client = session.meta.id, "authentication failed");
        return Err(CmdError::WrongPass);
    };
    session.user = acl_user;
    session.authenticated = true;
    Ok(())
}

fn auth(
    session: &mut Session,
    shared: &Shared,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> CmdResult {
    match args {
        [_, pass] => {
            if shared.secret.is_none() {
                return Err(CmdError::Other(
                    "ERR AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?"
                        .into(),
                ));
            }
            check_credentials(session, shared, b"default", pass)?;
        }
        [_, user, pass] => check_credentials(session, shared, user, pass)?,
        _ => return Err(CmdError::Syntax),
    }
    reply.ok();
    Ok(())
}

/// Valid client names have no spaces, newlines or other special characters.
pub(super) fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn hello(
    session: &mut Session,
    shared: &Shared,
    args: &[Bytes],
    reply: &mut Reply<'_>,
) -> CmdResult {
    let mut proto = session.proto;
    if let Some(v) = args.get(1) {
        let n = int_arg(v).map_err(|_| {
            CmdError::Other("ERR Protocol version is not an integer or out of range".into())
        })?;
        proto = match n {
            2 => Proto::Resp2,
            3 => Proto::Resp3,
            _ => {
                return Err(CmdError::Other(
                    "NOPROTO unsupported protocol version".into(),
                ));
            }
        };
    }
    let mut creds = None;
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "AUTH") && more >= 2 {
            creds = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if is(&args[i], "SETNAME") && more >= 1 {
            name = Some(&args[i + 1]);
            i += 2;
        } else {
            return Err(CmdError::Other(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    if let Some((user, pass)) = creds {
        check_credentials(session, shared, user, pass)?;
    }
    if !session.authenticated {
        return Err(CmdError::Other(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time"
                .into(),
        ));
    }
    if let Some(name) = name {
        if !valid_client_name(name) {
            return Err(CmdError::Other(
                "ERR Client names cannot contain spaces, newlines or special characters.".into(),
            ));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        session.meta.with_names(|n| n.name = name);
    }
    session.set_proto(proto);
    reply.set_proto(proto);
    reply.map(7);
    reply.bulk(b"server");
    reply.bulk(b"redis");
    reply.bulk(b"version");
    reply.bulk(crate::resp::REDIS_COMPAT_VERSION.as_bytes());
    reply.bulk(b"proto");
    reply.int(proto.number());
    reply.bulk(b"id");
    reply.int(session.meta.id as i64);
    reply.bulk(b"mode");
    reply.bulk(b"standalone");
    reply.bulk(b"role");
    reply.bulk(b"master");
    reply.bulk(b"modules");
    reply.array(0);
    Ok(())
}

fn select(_: &mut Session, _: &Shared, args: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    let db = int_arg(&args[1])?;
    if db != 0 {
        return Err(CmdError::Other("ERR DB index is out of range".into()));
    }
    reply.ok();
    Ok(())
}

fn quit(session: &mut Session, _: &Shared, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    session.closing = true;
    reply.ok();
    Ok(())
}

fn reset(session: &mut Session, shared: &Shared, _: &[Bytes], reply: &mut Reply<'_>) -> CmdResult {
    session.set_proto(Proto::Resp2);
    reply.set_proto(Proto::Resp2);
    session.authenticated = shared.secret.is_none();
    session.user = None;
    session.meta.with_names(|n| n.name.clear());
    reply.simple("RESET");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_accepts_only_the_password() {
        let s = Secret::new(b"hunter2");
        assert!(s.verify(b"hunter2"));
        assert!(!s.verify(b"hunter"));
        assert!(!s.verify(b""));
    }

    #[test]
    fn client_names_refuse_spaces() {
        assert!(valid_client_name(b"worker-1"));
        assert!(!valid_client_name(b"a b"));
        assert!(!valid_client_name(b"a\nb"));
    }
}
