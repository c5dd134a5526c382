//! Forwarding a command to its primary with failover: when the ring's
//! primary cannot be reached and replication is on, the command runs on
//! the next live replica as the acting primary (`Request::Owned`).
//!
//! Owns the failover decision (only commands whose keys share one
//! partition fail over); must not replicate by itself (the acting primary
//! runs [`Router::execute_owned`]) or change placement.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::first_partition;
use crate::cluster::router::{Router, RouterStats, error_bytes};
use crate::cluster::state::ClusterState;
use crate::proto::{Request, Response};
use crate::resp::codec::Proto;
use crate::resp::commands::{CommandSpec, Flag};
use crate::store::{PartitionId, partition_of};
use crate::transport::NodeName;

impl Router {
    /// Send `args` to the primary `owner`; if it cannot be reached and
    /// replication is on, run it on the next live replica instead.
    pub(crate) async fn forward_or_failover(
        &self,
        st: &ClusterState,
        owner: &NodeName,
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        proto: Proto,
        hops: u8,
    ) -> Bytes {
        if self.replicating(st).is_none() {
            return self.forward(st, owner, args, proto, hops, false).await;
        }
        let req = Request::Command {
            digest: st.digest().0,
            hops,
            resp: proto.number() as u8,
            local: false,
            args: args.clone(),
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        match self.send(st, owner, &req).await {
            Ok(Response::Reply(bytes)) => return bytes,
            Ok(Response::WrongOwner { .. }) => {
                return error_bytes(proto, crate::cluster::router::WRONG_OWNER);
            }
            Ok(other) => {
                tracing::warn!(%owner, answer = ?other, "unexpected answer to a forwarded command");
                return error_bytes(proto, &format!("TRYAGAIN unexpected answer from {owner}"));
            }
            Err(e) => {
                self.stats.forward_errors.fetch_add(1, Ordering::Relaxed);
                if e.maybe_delivered && !replay_safe(spec, &args) {
                    tracing::debug!(%owner, error = %e, "forward may have run; not failing over");
                    return unknown_outcome(&self.stats, proto, owner, &e.why);
                }
                tracing::debug!(%owner, error = %e, "primary unreachable; failing over");
            }
        }
        let Some(p) = first_partition(st, spec, &args) else {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        };
        // Only a command whose keys share one partition fails over: another
        // partition may have other replicas, and the acting primary would
        // keep a stray copy of a partition it does not hold.
        let parts = st.ring.partitions();
        if spec.keys(&args).any(|k| partition_of(k, parts) != p) {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        }
        self.fail_over(st, p, owner, args, proto).await
    }

    /// Run `args` (keys of partition `p` only) on the first reachable
    /// replica of `p` other than `owner`, its unreachable primary, as the
    /// acting primary. Versions make a retry of a write that did land on
    /// `owner` harmless.
    pub(crate) async fn fail_over(
        &self,
        st: &ClusterState,
        p: PartitionId,
        owner: &NodeName,
        args: Vec<Bytes>,
        proto: Proto,
    ) -> Bytes {
        let Some(repl) = self.replicating(st) else {
            return error_bytes(proto, &format!("TRYAGAIN owner {owner} unreachable"));
        };
        for next in st.ring.replicas(p).iter().filter(|r| *r != owner) {
            repl.stats.failovers.fetch_add(1, Ordering::Relaxed);
            if *next == st.me {
                return self.execute_owned(st, &args, proto).await;
            }
            let req = Request::Owned {
                resp: proto.number() as u8,
                args: args.clone(),
            };
            match self.send(st, next, &req).await {
                Ok(Response::Reply(bytes)) => return bytes,
                Err(e) if e.maybe_delivered && !replay_safe_args(&args) => {
                    return unknown_outcome(&self.stats, proto, next, &e.why);
                }
                _ => {}
            }
        }
        error_bytes(proto, &format!("TRYAGAIN no replica of {p} reachable"))
    }
}

/// How the reply to a command that may have run (its request went out, no
/// answer came) starts. The command is not run again elsewhere.
pub(crate) const OUTCOME_UNKNOWN: &str = "TRYAGAIN outcome unknown";

/// The reply to a command that `node` may have run without answering,
/// counted in `stats`.
pub(crate) fn unknown_outcome(
    stats: &RouterStats,
    proto: Proto,
    node: &NodeName,
    why: &str,
) -> Bytes {
    stats.forward_unknown.fetch_add(1, Ordering::Relaxed);
    error_bytes(
        proto,
        &format!(
            "{OUTCOME_UNKNOWN}: {node} may have run the command but gave no answer ({why}); check before retrying"
        ),
    )
}

/// Whether running `args` a second time, after a first run whose answer
/// was lost, is harmless: the data ends as after one run and the reply is
/// the one the first run gave. Reads, and writes that set a value outright
/// (`SET` without `NX`/`XX`/`GET`, `SETEX`, `PSETEX`, `MSET`, `SETRANGE`).
/// Not counters, `APPEND`, `DEL`/`UNLINK` (their count), `GETSET`/`GETDEL`/
/// `SET .. GET` (the old value), `SETNX`, `MSETNX`, `RENAME`, `PERSIST`, the
/// `EXPIRE` family (a deadline already past deletes the key: the second run
/// answers 0).
pub(crate) fn replay_safe(spec: &CommandSpec, args: &[Bytes]) -> bool {
    if !spec.has(Flag::Write) {
        return true;
    }
    let option = |names: &[&[u8]]| {
        args.iter()
            .skip(3)
            .any(|a| names.iter().any(|n| a.eq_ignore_ascii_case(n)))
    };
    match spec.name {
        "setex" | "psetex" | "mset" | "setrange" => true,
        "set" => !option(&[b"nx", b"xx", b"get"]),
        _ => false,
    }
}

/// [`replay_safe`] for a command known only by its arguments.
pub(crate) fn replay_safe_args(args: &[Bytes]) -> bool {
    args.first()
        .and_then(|name| crate::resp::commands::lookup(name))
        .is_some_and(|(_, spec)| replay_safe(spec, args))
}
