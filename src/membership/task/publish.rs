//! Publishing the view: rebuilt from foca's member list and the metadata
//! table after every input, sent on the `watch` channel when it changed,
//! each change logged once and counted.
//!
//! Part of the gossip task; split out to keep files small.

use std::sync::atomic::Ordering;

use super::MembershipTask;
use crate::membership::view::{MemberInfo, MemberState, View, log_changes};
use crate::transport::NodeName;

impl MembershipTask {
    /// Rebuild the view; publish and log if it changed.
    pub(super) fn refresh_view(&mut self) {
        let view = self.build_view();
        let changes = {
            // Compare in place: no clone of the published view per input.
            let old = self.io.view.borrow();
            (*old != view).then(|| log_changes(&self.cfg.node, &old, &view))
        };
        if let Some(c) = changes {
            self.stats.suspected.fetch_add(c.suspect, Ordering::Relaxed);
            self.stats
                .declared_down
                .fetch_add(c.down, Ordering::Relaxed);
            self.io.view.send_replace(view);
            self.stats.view_changes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The view as foca and the metadata table see it now.
    pub(super) fn build_view(&self) -> View {
        let me = self.foca.identity().clone();
        let mut members: Vec<MemberInfo> = self
            .foca
            .iter_membership_state()
            .map(|m| MemberInfo {
                meta: self.table.meta_of(m.id()),
                identity: m.id().clone(),
                state: m.state().into(),
                incarnation: m.incarnation(),
                is_local: false,
            })
            .collect();
        let state = if self.leaving.is_some() || self.shutdown.is_triggered() {
            MemberState::Down
        } else {
            MemberState::Alive
        };
        members.push(MemberInfo {
            identity: me,
            state,
            incarnation: 0,
            meta: Some(self.own_meta.meta.clone()),
            is_local: true,
        });
        members.sort_by(|a, b| {
            (&a.identity.name, a.identity.addr).cmp(&(&b.identity.name, b.identity.addr))
        });
        View { members }
    }

    /// Drop metadata (and sync bookkeeping) of members foca no longer
    /// knows.
    pub(super) fn forget_unknown_meta(&mut self) {
        let mut known: Vec<NodeName> = self
            .foca
            .iter_membership_state()
            .map(|m| m.id().name.clone())
            .collect();
        known.push(self.cfg.node.clone());
        self.table.retain(|n| known.contains(n));
        self.sync_answered.retain(|n, _| known.contains(n));
    }
}
