//! Membership: foca identity, the gossip task, the published view.
