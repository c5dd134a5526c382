//! Membership: foca identity, the gossip task, the published view.
//!
//! # What this module owns
//! Who is in the cluster. SWIM (foca 2.0) runs in one task
//! ([`MembershipTask`]) that alone owns the foca state; everything else
//! talks to it through a [`MembershipHandle`] and reads the [`View`] from a
//! `watch` channel.
//!
//! # What it must not do
//! Own the transport's incoming channel (the node's dispatcher forwards
//! datagrams here as [`InboundDatagram`]s), compute the ring, or move data.
//!
//! # Life of a datagram
//! 1. The dispatcher receives `Incoming::Datagram { from, addr, payload }`
//!    and sends it on the membership channel.
//! 2. [`envelope`]: version, cluster and partition count are checked from
//!    the prefix; another version, cluster or P is refused and counted.
//! 3. For a foca packet, the header is decoded and its sender's name
//!    compared with the transport-authenticated `from` (a peer with a
//!    certificate for `b` cannot speak as `c`); for a sync chunk, the same
//!    check on its sender, who must be a current member.
//! 4. Foca handles it; its runtime is drained at once: packets go out with
//!    `send_datagram` (never waits), timers into a min-heap, notifications
//!    update the task.
//! 5. The view is rebuilt from foca's member list and the metadata table;
//!    if it changed it is published and each change logged once.
//!
//! # SWIM tuning and foca quirks
//! - Timings are foca's `new_lan` (probe every 1 s, 500 ms ack deadline,
//!   suspicion `max(1, log10 N) * 4` probe periods), but every update is
//!   piggybacked at least 10 times instead of ⌊4·log10(N+1)⌋ (DESIGN.md §3),
//!   and foca's packet size is `MAX_DATAGRAM` minus our envelope. The
//!   config is re-fed to foca whenever the member count changes.
//! - Push-pull: every `push_pull_interval` (20 s) and right after joining,
//!   our whole member list and metadata table go to one random member, who
//!   applies them (`apply_many`) and answers with its own.
//! - Foca 2.0 sends `TurnUndead` from its suspicion timer even when the
//!   suspect refuted in time; the victim then renews its identity (a false
//!   Down). The task drops such a notice when the member is active in our
//!   state: at 5 % loss this took N=3 from ~50 false Downs per node-hour to
//!   none in the membership_loss tests.
//! - Seeds are announced to with backoff (200 ms .. 5 s) while alone, and
//!   every 60 s once joined, so clusters that formed apart merge.
//! - Under load (measured with 100 nodes in one process on 2 cores, where
//!   `shoal::ring::place` took a third of the CPU and false suspicions fed
//!   on themselves): view builds are coalesced (at most one per
//!   4 ms × N, cap 500 ms, so a burst of joins costs each subscriber one
//!   ring rebuild); datagrams already queued are handled before foca's
//!   timers, and after a late wake-up the task yields so the transport's
//!   tasks can deliver an ack that came in time; a node that keeps waking
//!   up late stretches its probe timers (local health, [`health`]);
//!   connections to new members are opened ahead of the first probe
//!   (`Transport::prepare`); push-pull slows down beyond 32 members.
//!
//! # Files
//! - [`identity`]: `NodeIdentity` (cluster, name, address, generation).
//! - [`meta`]: member metadata and its foca custom broadcast.
//! - [`envelope`]: the versioned wire prefix.
//! - [`health`]: local health (starved nodes stretch their probes).
//! - [`sync`]: push-pull state sync chunks.
//! - [`seeds`]: announce backoff and seed resolution.
//! - [`timers`]: the ordered timer queue.
//! - [`view`]: the published view.
//! - [`stats`]: counters and rate-limited rejection logs.
//! - [`config`]: settings and SWIM tuning.
//! - `task`: the gossip loop.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::shutdown::Shutdown;
use crate::transport::{NodeName, Transport};

pub mod config;
pub mod envelope;
pub mod health;
pub mod identity;
pub mod meta;
pub mod seeds;
pub mod stats;
pub mod sync;
mod task;
pub mod timers;
pub mod view;

pub use config::MembershipConfig;
pub use envelope::PROTOCOL_VERSION;
pub use identity::{ClusterId, Generation, NodeIdentity};
pub use meta::NodeMeta;
pub use stats::MembershipStats;
pub use task::{InboundDatagram, MembershipTask, MetaUpdate};
pub use view::{MemberInfo, MemberState, View};

use task::{Channels, Command};

/// Why a membership operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// A setting is out of range or inconsistent; nothing was started.
    #[error("invalid membership setting: {0}")]
    Config(String),
    /// Our own metadata could not be encoded; nothing was changed.
    #[error("cannot encode metadata: {0}")]
    Encode(postcard::Error),
    /// A metadata update tried to change the cluster, the protocol version
    /// or the partition count, which are fixed for the life of the node;
    /// nothing changed.
    #[error("cluster, protocol version and partitions cannot change at run time")]
    MetaImmutable,
    /// The membership task has stopped; the request was not applied.
    #[error("membership task has stopped")]
    Stopped,
}

/// Entry points.
#[derive(Debug)]
pub struct Membership;

impl Membership {
    /// Build the gossip task without starting it: spawn
    /// [`MembershipTask::run`] yourself (e.g. in the node's `TaskSet`).
    pub fn build(
        cfg: MembershipConfig,
        transport: Arc<dyn Transport>,
        datagrams: mpsc::Receiver<InboundDatagram>,
        shutdown: Shutdown,
    ) -> Result<(MembershipHandle, MembershipTask), MembershipError> {
        cfg.validate()?;
        let identity = NodeIdentity {
            cluster: cfg.cluster.clone(),
            name: cfg.node.clone(),
            addr: cfg.gossip_addr,
            generation: cfg.generation.unwrap_or_else(Generation::fresh),
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(cfg.command_capacity);
        let (view_tx, view_rx) = watch::channel(View::default());
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let stats = Arc::new(MembershipStats::default());
        let io = Channels {
            commands: cmd_rx,
            datagrams,
            view: view_tx,
            stopped: stopped_tx,
        };
        let local = cfg.node.clone();
        let task = MembershipTask::new(cfg, identity, transport, io, shutdown, stats.clone())?;
        let handle = MembershipHandle {
            commands: cmd_tx,
            view: view_rx,
            stopped: stopped_rx,
            stats,
            local,
        };
        Ok((handle, task))
    }

    /// Build the gossip task and spawn it on the current tokio runtime.
    pub fn start(
        cfg: MembershipConfig,
        transport: Arc<dyn Transport>,
        datagrams: mpsc::Receiver<InboundDatagram>,
        shutdown: Shutdown,
    ) -> Result<MembershipHandle, MembershipError> {
        let (handle, task) = Self::build(cfg, transport, datagrams, shutdown)?;
        tokio::spawn(task.run());
        Ok(handle)
    }
}

/// A cheap, cloneable handle to the gossip task.
#[derive(Debug, Clone)]
pub struct MembershipHandle {
    /// Commands to the task.
    commands: mpsc::Sender<Command>,
    /// The published view.
    view: watch::Receiver<View>,
    /// Becomes `true` when the task has ended.
    stopped: watch::Receiver<bool>,
    /// The task's counters.
    stats: Arc<MembershipStats>,
    /// Our node name.
    local: NodeName,
}

impl MembershipHandle {
    /// The current view (a clone).
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new view.
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.view.clone()
    }

    /// The task's counters.
    pub fn stats(&self) -> &Arc<MembershipStats> {
        &self.stats
    }

    /// Our node name.
    pub fn local_name(&self) -> &NodeName {
        &self.local
    }

    /// Send a command; fails if the task has stopped.
    async fn send(&self, cmd: Command) -> Result<(), MembershipError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| MembershipError::Stopped)
    }

    /// Leave gracefully: tell the cluster we are going, keep answering for
    /// the configured linger, and return when the task has ended.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.send(Command::Leave).await?;
        self.stopped().await;
        Ok(())
    }

    /// Change our metadata (e.g. readiness) and gossip it. The cluster,
    /// protocol and partitions fields cannot change.
    pub async fn update_meta(
        &self,
        f: impl FnOnce(&mut NodeMeta) + Send + 'static,
    ) -> Result<(), MembershipError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::UpdateMeta(Box::new(f), tx)).await?;
        rx.await.map_err(|_| MembershipError::Stopped)?
    }

    /// Announce to these addresses now (in addition to the seeds).
    pub async fn announce(&self, addrs: Vec<SocketAddr>) -> Result<(), MembershipError> {
        self.send(Command::Announce(addrs)).await
    }

    /// Run a push-pull sync with a random member now.
    pub async fn sync_now(&self) -> Result<(), MembershipError> {
        self.send(Command::SyncNow).await
    }

    /// Wait until the task has ended.
    pub async fn stopped(&self) {
        let mut rx = self.stopped.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}
