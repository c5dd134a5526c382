//! The published membership view.
//!
//! # What this module owns
//! [`View`] (every member foca knows, ourselves included, with state and
//! metadata), and the comparison of two views that yields one info-level
//! log line per membership change.
//!
//! # What it must not do
//! Touch foca or the network; the view is a plain value sent on a `watch`
//! channel.

use serde::Serialize;

use super::identity::NodeIdentity;
use super::meta::NodeMeta;
use crate::transport::NodeName;

/// How the cluster sees a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Failed a probe; declared down unless it refutes in time.
    Suspect,
    /// Declared down, or left.
    Down,
}

impl From<foca::State> for MemberState {
    fn from(s: foca::State) -> Self {
        match s {
            foca::State::Alive => MemberState::Alive,
            foca::State::Suspect => MemberState::Suspect,
            foca::State::Down => MemberState::Down,
        }
    }
}

/// One member of the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Its identity (name, gossip address, generation).
    pub identity: NodeIdentity,
    /// Its state as we see it.
    pub state: MemberState,
    /// Its SWIM incarnation (bumped when it refutes a suspicion).
    pub incarnation: u16,
    /// Its metadata, once received for this generation.
    pub meta: Option<NodeMeta>,
    /// Whether this entry is the local node.
    pub is_local: bool,
}

impl MemberInfo {
    /// Alive or suspect: still counted as a member.
    pub fn is_active(&self) -> bool {
        self.state != MemberState::Down
    }
}

/// Everything the local node knows about the cluster, sorted by name.
/// Serializes (e.g. to JSON for the admin endpoint) as-is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct View {
    /// Members sorted by node name; one entry per gossip address.
    pub members: Vec<MemberInfo>,
}

impl View {
    /// The entry of the member named `name` (the newest generation if
    /// several share the name).
    pub fn get(&self, name: &str) -> Option<&MemberInfo> {
        self.members
            .iter()
            .filter(|m| m.identity.name.as_str() == name)
            .max_by_key(|m| m.identity.generation)
    }

    /// The local node's entry.
    pub fn local(&self) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.is_local)
    }

    /// Members that are alive or suspect (ourselves included while we are
    /// in the cluster).
    pub fn active(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| m.is_active())
    }

    /// Sorted names of the active members: the ring's input.
    pub fn active_names(&self) -> Vec<NodeName> {
        let mut v: Vec<NodeName> = self.active().map(|m| m.identity.name.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Whether `name` is in the view with state `state`.
    pub fn is(&self, name: &str, state: MemberState) -> bool {
        self.get(name).is_some_and(|m| m.state == state)
    }
}

/// How many members changed to each state between two views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Became alive (joined, refuted, or restarted).
    pub up: u64,
    /// Became suspect.
    pub suspect: u64,
    /// Became down.
    pub down: u64,
}

/// Log one info line per member whose presence, state or generation
/// changed between `old` and `new`; returns the counts.
pub fn log_changes(local: &NodeName, old: &View, new: &View) -> Changes {
    let mut changes = Changes::default();
    for m in &new.members {
        let before = old
            .members
            .iter()
            .find(|o| o.identity.addr == m.identity.addr);
        let name = &m.identity.name;
        let addr = m.identity.addr;
        match before {
            Some(o) if o.identity.generation != m.identity.generation => tracing::info!(
                node = %local, member = %name, %addr, state = ?m.state,
                "member restarted (new generation replaces old)"
            ),
            Some(o) if o.state == m.state => {}
            _ => match m.state {
                MemberState::Alive => {
                    changes.up += 1;
                    tracing::info!(node = %local, member = %name, %addr, "member up")
                }
                MemberState::Suspect => {
                    changes.suspect += 1;
                    tracing::info!(node = %local, member = %name, %addr, "member suspect")
                }
                MemberState::Down => {
                    changes.down += 1;
                    tracing::info!(node = %local, member = %name, %addr, "member down")
                }
            },
        }
    }
    for o in &old.members {
        if !new
            .members
            .iter()
            .any(|m| m.identity.addr == o.identity.addr)
        {
            tracing::info!(
                node = %local, member = %o.identity.name, addr = %o.identity.addr,
                "member forgotten"
            );
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::membership::identity::{ClusterId, Generation};

    fn info(name: &str, generation: u64, state: MemberState) -> MemberInfo {
        MemberInfo {
            identity: NodeIdentity {
                cluster: ClusterId::new("c"),
                name: NodeName::new(name),
                addr: SocketAddr::from(([10, 0, 0, 1], 7000)),
                generation: Generation(generation),
            },
            state,
            incarnation: 0,
            meta: None,
            is_local: false,
        }
    }

    #[test]
    fn active_names_skip_down_members_and_are_sorted() {
        let view = View {
            members: vec![
                info("c", 1, MemberState::Alive),
                info("a", 1, MemberState::Suspect),
                info("b", 1, MemberState::Down),
            ],
        };
        let names: Vec<_> = view.active_names().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(view.is("b", MemberState::Down));
        assert!(!view.is("z", MemberState::Alive));
    }

    #[test]
    fn get_prefers_the_newest_generation() {
        let view = View {
            members: vec![
                info("a", 1, MemberState::Down),
                info("a", 2, MemberState::Alive),
            ],
        };
        assert_eq!(
            view.get("a").map(|m| m.identity.generation),
            Some(Generation(2))
        );
    }
}
