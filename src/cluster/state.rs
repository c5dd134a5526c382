//! The cluster as the router sees it: the ring derived from the current
//! membership view and the address of every active member.
//!
//! # What this module owns
//! [`ClusterState`], a plain value rebuilt on every view change and
//! published on a `watch` channel, and the task that rebuilds it.
//!
//! # What it must not do
//! Talk to peers or touch the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::membership::{MemberState, View};
use crate::ring::{Ring, RingDigest};
use crate::shutdown::Shutdown;
use crate::store::PartitionId;
use crate::transport::{NodeName, PeerAddr};

/// How to reach one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its gossip (QUIC) address and certificate name.
    pub addr: PeerAddr,
    /// Its RESP address, once its metadata arrived.
    pub resp: Option<SocketAddr>,
    /// Its TLS RESP address (`tls-listen`), once its metadata arrived.
    pub tls: Option<SocketAddr>,
    /// Its state in our view.
    pub state: MemberState,
    /// Whether it reported holding every partition it owns.
    pub ready: bool,
}

/// The ring and the members' addresses for one view.
#[derive(Debug, Clone)]
pub struct ClusterState {
    /// Our own name.
    pub me: NodeName,
    /// Placement derived from the active members.
    pub ring: Arc<Ring>,
    /// Every member of the view by name (down ones included, for display).
    pub peers: HashMap<NodeName, Peer>,
    /// The view it was derived from (for introspection).
    pub view: View,
}

impl ClusterState {
    /// The state of a node alone: it owns everything.
    pub fn alone(me: NodeName, partitions: u32, replicas: u32) -> Self {
        let ring = Arc::new(build_ring(vec![me.clone()], partitions, replicas));
        ClusterState {
            me,
            ring,
            peers: HashMap::new(),
            view: View::default(),
        }
    }

    /// Derive the state from a view. Members alive or suspect are in the
    /// ring (a suspect may refute; dropping it at once would move its
    /// partitions back and forth); down members are not. We are always in
    /// our own ring while we run.
    pub fn from_view(me: &NodeName, view: &View, partitions: u32, replicas: u32) -> Self {
        Self::from_view_reusing(me, view, partitions, replicas, None)
    }

    /// Like [`from_view`](Self::from_view), but keeps `previous` when the
    /// active member set is unchanged: most view changes (a suspicion, a
    /// refutation, new metadata) do not move a single partition, and a
    /// rebuild costs milliseconds at a hundred members. When the set did
    /// change, `previous` is updated rather than rebuilt
    /// ([`Ring::with_members`]).
    pub fn from_view_reusing(
        me: &NodeName,
        view: &View,
        partitions: u32,
        replicas: u32,
        previous: Option<&Arc<Ring>>,
    ) -> Self {
        let mut names = view.active_names();
        if !names.contains(me) {
            names.push(me.clone());
            names.sort();
        }
        let ring = match previous {
            Some(prev) if prev.members() == names.as_slice() => prev.clone(),
            // Same P and R: update the previous ring (only the partitions a
            // joiner or leaver ranks in are touched; same result).
            Some(prev)
                if prev.partitions() == partitions.max(1)
                    && prev.replication() == replicas.max(1) =>
            {
                Arc::new(prev.with_members(names))
            }
            _ => Arc::new(build_ring(names, partitions, replicas)),
        };
        let mut peers = HashMap::new();
        for m in &view.members {
            let name = m.identity.name.clone();
            // Several generations of one name: keep the newest.
            let newer = peers
                .get(&name)
                .is_none_or(|p: &(u64, Peer)| m.identity.generation.0 >= p.0);
            if newer {
                let peer = Peer {
                    addr: PeerAddr {
                        addr: m.identity.addr,
                        name: Some(name.clone()),
                    },
                    // Port 0: the member runs no RESP listener (listen = off).
                    resp: m
                        .meta
                        .as_ref()
                        .map(|meta| meta.resp_addr)
                        .filter(|a| a.port() != 0),
                    tls: m.meta.as_ref().and_then(|meta| meta.tls_addr),
                    state: m.state,
                    ready: m.meta.as_ref().is_some_and(|meta| meta.ready),
                };
                peers.insert(name, (m.identity.generation.0, peer));
            }
        }
        ClusterState {
            me: me.clone(),
            ring,
            peers: peers.into_iter().map(|(k, (_, p))| (k, p)).collect(),
            view: view.clone(),
        }
    }

    /// The ring's digest.
    pub fn digest(&self) -> RingDigest {
        self.ring.digest()
    }

    /// The primary of `partition` (ourselves when the ring is empty).
    pub fn primary(&self, partition: PartitionId) -> &NodeName {
        self.ring.primary(partition).unwrap_or(&self.me)
    }

    /// Where to send requests for `name`.
    pub fn peer_addr(&self, name: &NodeName) -> Option<&PeerAddr> {
        self.peers.get(name).map(|p| &p.addr)
    }

    /// Active members, sorted by name (ourselves included).
    pub fn active_members(&self) -> &[NodeName] {
        self.ring.members()
    }
}

/// Build a ring; P and R are clamped to at least 1 (the config refuses 0
/// already), which is the only way `Ring::new` fails.
fn build_ring(names: Vec<NodeName>, partitions: u32, replicas: u32) -> Ring {
    match Ring::new(names, partitions.max(1), replicas.max(1)) {
        Ok(ring) => ring,
        Err(e) => unreachable!("ring with P, R >= 1 cannot fail: {e}"),
    }
}

/// Follow membership views and publish a new [`ClusterState`] for each,
/// until `shutdown`. Returns the receiver and the task to spawn.
pub fn follow(
    me: NodeName,
    mut views: watch::Receiver<View>,
    partitions: u32,
    replicas: u32,
    shutdown: Shutdown,
) -> (
    watch::Receiver<Arc<ClusterState>>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let first = ClusterState::from_view(&me, &views.borrow_and_update(), partitions, replicas);
    let (tx, rx) = watch::channel(Arc::new(first));
    let task = async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                changed = views.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let previous = tx.borrow().ring.clone();
            let next = ClusterState::from_view_reusing(
                &me,
                &views.borrow_and_update(),
                partitions,
                replicas,
                Some(&previous),
            );
            let old_digest = tx.borrow().digest();
            if next.digest() != old_digest {
                tracing::info!(
                    members = next.ring.members().len(),
                    digest = %next.digest(),
                    "ring changed"
                );
            }
            tx.send_replace(Arc::new(next));
        }
    };
    (rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{ClusterId, Generation, MemberInfo, NodeIdentity};

    fn member(name: &str, port: u16, state: MemberState) -> MemberInfo {
        MemberInfo {
            identity: NodeIdentity {
                cluster: ClusterId::new("c"),
                name: NodeName::new(name),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                generation: Generation(1),
            },
            state,
            incarnation: 0,
            meta: None,
            is_local: name == "a",
        }
    }

    fn view(states: &[(&str, MemberState)]) -> View {
        View {
            members: states
                .iter()
                .enumerate()
                .map(|(i, (n, s))| member(n, 7000 + i as u16, *s))
                .collect(),
        }
    }

    #[test]
    fn a_suspicion_keeps_the_same_ring() {
        let me = NodeName::new("a");
        let v1 = view(&[("a", MemberState::Alive), ("b", MemberState::Alive)]);
        let v2 = view(&[("a", MemberState::Alive), ("b", MemberState::Suspect)]);
        let s1 = ClusterState::from_view(&me, &v1, 64, 2);
        let s2 = ClusterState::from_view_reusing(&me, &v2, 64, 2, Some(&s1.ring));
        assert!(
            Arc::ptr_eq(&s1.ring, &s2.ring),
            "same members, same ring object"
        );
        assert_eq!(s2.peers[&NodeName::new("b")].state, MemberState::Suspect);
    }

    #[test]
    fn a_death_rebuilds_the_ring_without_the_dead() {
        let me = NodeName::new("a");
        let v1 = view(&[("a", MemberState::Alive), ("b", MemberState::Alive)]);
        let v2 = view(&[("a", MemberState::Alive), ("b", MemberState::Down)]);
        let s1 = ClusterState::from_view(&me, &v1, 64, 2);
        let s2 = ClusterState::from_view_reusing(&me, &v2, 64, 2, Some(&s1.ring));
        assert!(!Arc::ptr_eq(&s1.ring, &s2.ring));
        assert_eq!(s2.ring.members(), std::slice::from_ref(&me));
        assert_ne!(s1.digest(), s2.digest());
    }
}
