//! Which commands of a batch the thin client may send to another node
//! after the first node failed some or all of them.
//!
//! # What this module owns
//! The decision, command by command, from what came back: a reply, a plain
//! `TRYAGAIN` (the command did not run), `TRYAGAIN outcome unknown` (it may
//! have run), or no reply at all after the batch was written (every
//! command may have run). A command that may have run is sent again only
//! when running it twice is harmless
//! ([`replay_safe_args`]). And no command is sent again when a later
//! command of the batch that ran (or may have run) writes one of its keys:
//! sent again, it would run after that write, not before it as the caller
//! asked.
//!
//! # What it must not do
//! Any I/O, or decide where the commands go: [`super::routing`] does.

use bytes::Bytes;

use crate::cluster::replication::{OUTCOME_UNKNOWN, replay_safe_args};
use crate::resp::codec::Frame;
use crate::resp::commands::{Flag, lookup};

/// What became of one command of a batch sent to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// The node did not run it (a plain `TRYAGAIN`, or the batch never
    /// left the client).
    NotRun,
    /// The node may have run it; its answer is unknown.
    MaybeRan,
    /// The node ran it (or refused it for good) and answered.
    Answered,
}

impl Fate {
    /// The fate of a command whose reply is `reply`.
    pub(super) fn of_reply(reply: &Frame) -> Fate {
        match reply {
            Frame::Error(e) if is_outcome_unknown(e) => Fate::MaybeRan,
            Frame::Error(e) if e.starts_with(b"TRYAGAIN") => Fate::NotRun,
            _ => Fate::Answered,
        }
    }
}

/// `TRYAGAIN ... outcome unknown`: a node forwarded the command (or a
/// transaction) and got no answer; it may have run.
fn is_outcome_unknown(e: &[u8]) -> bool {
    e.starts_with(OUTCOME_UNKNOWN.as_bytes())
        || e.starts_with(b"TRYAGAIN transaction outcome unknown")
}

/// For each of `cmds` (one batch, in the order it was sent) whose fates
/// are `fates`: whether it may be sent to another node. A command that did
/// not run may; one that may have run only if harmless to run twice; one
/// that answered never. In each case only if no later command that ran or
/// may have run writes one of its keys.
pub(super) fn resendable(cmds: &[Vec<Bytes>], fates: &[Fate]) -> Vec<bool> {
    cmds.iter()
        .zip(fates)
        .enumerate()
        .map(|(i, (cmd, fate))| {
            let allowed = match fate {
                Fate::NotRun => true,
                Fate::MaybeRan => replay_safe_args(cmd),
                Fate::Answered => false,
            };
            allowed
                && !cmds
                    .iter()
                    .zip(fates)
                    .skip(i + 1)
                    .any(|(later, fate)| *fate != Fate::NotRun && writes_a_key_of(later, cmd))
        })
        .collect()
}

/// Whether `later` writes a key that `cmd` names. A command the client
/// does not know is taken to write every key.
fn writes_a_key_of(later: &[Bytes], cmd: &[Bytes]) -> bool {
    let Some((_, later_spec)) = later.first().and_then(|n| lookup(n)) else {
        return true;
    };
    if !later_spec.has(Flag::Write) {
        return false;
    }
    let Some((_, spec)) = cmd.first().and_then(|n| lookup(n)) else {
        return true;
    };
    later_spec
        .keys(later)
        .any(|k| spec.keys(cmd).any(|mine| mine == k))
}

/// The reply given for a command the node at `node` may have run, the batch
/// written but no answer read (`why`); the server's wording for the same
/// case.
pub(super) fn unknown_outcome(node: &std::net::SocketAddr, why: &str) -> Frame {
    Frame::Error(Bytes::from(format!(
        "{OUTCOME_UNKNOWN}: {node} may have run the command but gave no answer ({why}); check before retrying"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &str) -> Vec<Bytes> {
        words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn cmds(lines: &[&str]) -> Vec<Vec<Bytes>> {
        lines.iter().map(|l| cmd(l)).collect()
    }

    fn error(text: &'static str) -> Frame {
        Frame::Error(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn replies_tell_not_run_from_may_have_run_from_answered() {
        assert_eq!(
            Fate::of_reply(&error("TRYAGAIN owner n2 unreachable")),
            Fate::NotRun
        );
        assert_eq!(
            Fate::of_reply(&error("TRYAGAIN outcome unknown: n2 may have run it")),
            Fate::MaybeRan
        );
        assert_eq!(
            Fate::of_reply(&error("TRYAGAIN transaction outcome unknown (n2)")),
            Fate::MaybeRan
        );
        assert_eq!(Fate::of_reply(&error("ERR wrong type")), Fate::Answered);
        assert_eq!(Fate::of_reply(&Frame::Integer(6)), Fate::Answered);
    }

    #[test]
    fn only_the_command_that_did_not_run_is_sent_again() {
        let batch = cmds(&["INCR a", "GET b"]);
        let fates = [Fate::Answered, Fate::NotRun];
        assert_eq!(resendable(&batch, &fates), [false, true]);
    }

    #[test]
    fn a_command_that_may_have_run_is_sent_again_only_if_harmless_twice() {
        let batch = cmds(&["INCR a", "SET b 1", "SET c 1 NX", "GET d", "DEL e"]);
        let fates = [Fate::MaybeRan; 5];
        assert_eq!(
            resendable(&batch, &fates),
            [false, true, false, true, false]
        );
    }

    #[test]
    fn a_command_followed_by_a_write_of_its_key_that_ran_is_not_sent_again() {
        // SET k 1 did not run, DEL k did: sent again, SET k 1 would bring
        // k back after the DEL the caller asked for after it.
        let batch = cmds(&["SET k 1", "DEL k"]);
        assert_eq!(
            resendable(&batch, &[Fate::NotRun, Fate::Answered]),
            [false, false]
        );
        assert_eq!(
            resendable(&batch, &[Fate::NotRun, Fate::MaybeRan]),
            [false, false]
        );
        // Neither ran: both go again, in their order.
        assert_eq!(
            resendable(&batch, &[Fate::NotRun, Fate::NotRun]),
            [true, true]
        );
    }

    #[test]
    fn a_later_read_or_a_write_of_another_key_does_not_hold_a_command_back() {
        let batch = cmds(&["SET k 1", "GET k", "INCR other"]);
        let fates = [Fate::NotRun, Fate::Answered, Fate::Answered];
        assert_eq!(resendable(&batch, &fates), [true, false, false]);
    }

    #[test]
    fn after_a_lost_batch_a_harmless_write_followed_by_a_write_of_its_key_stays() {
        // The batch was written and no answer came: every command may have
        // run. SET k 1 then DEL k: SET sent again would come after DEL.
        let batch = cmds(&["SET k 1", "DEL k", "SET j 2", "GET j"]);
        let fates = [Fate::MaybeRan; 4];
        assert_eq!(resendable(&batch, &fates), [false, false, true, true]);
    }

    #[test]
    fn an_unknown_later_command_holds_back_what_precedes_it() {
        let batch = cmds(&["GET k", "FROB k"]);
        let fates = [Fate::NotRun, Fate::Answered];
        assert_eq!(resendable(&batch, &fates), [false, false]);
    }

    #[test]
    fn the_lost_batch_reply_reads_as_outcome_unknown() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7000));
        let reply = unknown_outcome(&addr, "connection closed by the node");
        assert_eq!(Fate::of_reply(&reply), Fate::MaybeRan);
        assert!(matches!(
            crate::api::Error::from_reply(match &reply {
                Frame::Error(e) => e,
                _ => &[][..],
            }),
            crate::api::Error::Unavailable(_)
        ));
    }
}
