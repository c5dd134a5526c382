//! What arrives: envelope and sender checks, foca packets, push-pull sync
//! chunks; and the sync we send.
//!
//! Part of the gossip task (same owner of foca); split out to keep files
//! small. Nothing here awaits.

use std::sync::atomic::Ordering;

use foca::{Codec, PostcardCodec};
use rand::seq::IteratorRandom;
use tokio::time::Instant;

use super::{InboundDatagram, MembershipTask, SYNC_REPLY_EVERY};
use crate::membership::envelope::{EnvelopeError, Kind};
use crate::membership::identity::NodeIdentity;
use crate::membership::meta::record_is_acceptable;
use crate::membership::stats::Rejection;
use crate::membership::sync::{SyncMessage, encode_chunks};
use crate::transport::MAX_DATAGRAM;

impl MembershipTask {
    /// Check and route one datagram.
    pub(super) fn on_datagram(&mut self, d: InboundDatagram) {
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let payload = d.payload.clone();
        match self.envelope.open(&payload) {
            Ok((Kind::Swim, body)) => self.on_swim(&d, body),
            Ok((Kind::Sync, body)) => self.on_sync(&d, body),
            Err(e) => {
                let reason = match e {
                    EnvelopeError::Version(_) => Rejection::Version,
                    EnvelopeError::Cluster(_) => Rejection::Cluster,
                    EnvelopeError::Partitions(_) => Rejection::Partitions,
                    EnvelopeError::Malformed | EnvelopeError::Kind(_) => Rejection::Malformed,
                };
                self.reject(reason, &d, &e);
            }
        }
    }

    /// Count and log a refused datagram.
    pub(super) fn reject(
        &mut self,
        reason: Rejection,
        d: &InboundDatagram,
        detail: &dyn std::fmt::Display,
    ) {
        self.rejects
            .reject(&self.stats, reason, &d.from, d.addr, detail);
    }

    /// A foca packet: check the claimed sender, then hand it to foca.
    pub(super) fn on_swim(&mut self, d: &InboundDatagram, body: &[u8]) {
        let header = match Codec::<NodeIdentity>::decode_header(&mut PostcardCodec, body) {
            Ok(h) => h,
            Err(e) => return self.reject(Rejection::Malformed, d, &e),
        };
        let src: &NodeIdentity = &header.src;
        if src.name != d.from {
            let detail = format!("claims to be {}", src.name);
            return self.reject(Rejection::Sender, d, &detail);
        }
        if !same_addr(src.addr, d.addr) {
            // A certificate proves a name, not an address: a member that
            // claimed another's address would take its place in every view.
            let detail = format!("claims address {} but sends from {}", src.addr, d.addr);
            return self.reject(Rejection::Sender, d, &detail);
        }
        if src.cluster != self.cfg.cluster {
            let detail = format!("identity of cluster {}", src.cluster);
            return self.reject(Rejection::Cluster, d, &detail);
        }
        if let Err(e) = self.foca.handle_data(body, &mut self.runtime) {
            self.reject(Rejection::Foca, d, &e);
        }
        self.drain();
    }

    /// A sync chunk: only from a current member, about our cluster.
    pub(super) fn on_sync(&mut self, d: &InboundDatagram, body: &[u8]) {
        let msg: SyncMessage = match crate::membership::sync::decode(body) {
            Ok(m) => m,
            Err(e) => return self.reject(Rejection::Sync, d, &e),
        };
        if msg.sender.name != d.from || !same_addr(msg.sender.addr, d.addr) {
            let detail = format!(
                "sync claims to be {} at {}",
                msg.sender.name, msg.sender.addr
            );
            return self.reject(Rejection::Sender, d, &detail);
        }
        let cluster = self.cfg.cluster.clone();
        if msg.sender.cluster != cluster || msg.sender.is_placeholder() {
            return self.reject(Rejection::Cluster, d, &"sync sender of another cluster");
        }
        // Like any foca packet, an authenticated sync is evidence its sender
        // is alive (it may be a joiner we have not heard of yet); one we
        // hold down (or an older generation) stays refused.
        let alive = foca::Member::alive(msg.sender.clone());
        let r = self
            .foca
            .apply_many(std::iter::once(alive), true, &mut self.runtime);
        self.after_call(r, "apply sender");
        if !self.foca.iter_members().any(|m| *m.id() == msg.sender) {
            return self.reject(Rejection::Sync, d, &"sync from a non-member");
        }
        let members = msg
            .members
            .into_iter()
            .filter(|m| m.id().cluster == cluster && !m.id().is_placeholder());
        let r = self.foca.apply_many(members, true, &mut self.runtime);
        self.after_call(r, "apply_many");
        for rec in &msg.metas {
            if rec.node == self.cfg.node {
                continue;
            }
            if record_is_acceptable(rec, &cluster) {
                self.table.offer(rec);
            } else {
                self.stats.meta_rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stats.sync_applied.fetch_add(1, Ordering::Relaxed);
        if msg.reply {
            let now = Instant::now();
            let recent = self
                .sync_answered
                .get(&msg.sender.name)
                .is_some_and(|t| now.duration_since(*t) < SYNC_REPLY_EVERY);
            if !recent {
                self.sync_answered.insert(msg.sender.name.clone(), now);
                self.send_sync(&msg.sender, false);
            }
        }
    }

    /// Push our state to one random active member, asking for theirs.
    pub(super) fn push_pull(&mut self) {
        if self.leaving.is_some() {
            return;
        }
        let peer = self
            .foca
            .iter_members()
            .map(|m| m.id())
            .choose(&mut self.rng)
            .cloned();
        if let Some(peer) = peer {
            self.send_sync(&peer, true);
        }
    }

    /// Send our full state to `to`, in as many chunks as needed.
    pub(super) fn send_sync(&self, to: &NodeIdentity, reply: bool) {
        let members = self.foca.iter_membership_state().cloned().collect();
        let budget = MAX_DATAGRAM.saturating_sub(self.envelope.overhead());
        let chunks = encode_chunks(
            self.foca.identity(),
            reply,
            members,
            self.table.records(),
            budget,
        );
        for chunk in chunks {
            self.send(to, Kind::Sync, &chunk);
            self.stats.sync_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a claimed gossip address is the one a packet came from
/// (IPv4-mapped IPv6 addresses compare equal to their IPv4 form).
fn same_addr(claimed: std::net::SocketAddr, seen: std::net::SocketAddr) -> bool {
    claimed.port() == seen.port() && claimed.ip().to_canonical() == seen.ip().to_canonical()
}
