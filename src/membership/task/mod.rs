//! The gossip task: the one owner of foca (STYLE.md rule 2).
//!
//! # What this module owns
//! The loop that feeds foca datagrams, timers and commands, drains foca's
//! runtime after every call (sends never wait; timers go to the min-heap;
//! notifications update our state), re-announces to seeds while alone,
//! runs the push-pull sync, and publishes the [`View`].
//!
//! # What it must not do
//! Await anything but its inputs: no network round trip, no lock held
//! across an await. Nothing else touches foca.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use foca::{AccumulatingRuntime, Codec, Foca, Message, OwnedNotification, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

mod inbound;
mod pace;
mod publish;

use super::MembershipError;
use super::config::MembershipConfig;
use super::envelope::{Envelope, Kind};
use super::health::LocalHealth;
use super::identity::NodeIdentity;
use super::meta::{MetaHandler, MetaRecord, MetaTable, NodeMeta};
use super::seeds::{Announcer, resolve_seeds};
use super::stats::{MembershipStats, RejectLog};
use super::view::View;
use crate::shutdown::Shutdown;
use crate::transport::{Incoming, MAX_DATAGRAM, NodeName, PeerAddr, Transport};

/// The foca instance this task owns.
type Swim = Foca<NodeIdentity, PostcardCodec, StdRng, MetaHandler>;

/// A change to our metadata, applied inside the task.
pub type MetaUpdate = Box<dyn FnOnce(&mut NodeMeta) + Send>;

/// A datagram for membership, as the node's dispatcher hands it over.
#[derive(Debug, Clone)]
pub struct InboundDatagram {
    /// The peer name the transport authenticated.
    pub from: NodeName,
    /// The peer's address as seen by the transport.
    pub addr: SocketAddr,
    /// The datagram.
    pub payload: Bytes,
}

impl InboundDatagram {
    /// Take a datagram out of the transport's [`Incoming`]; a request is
    /// handed back untouched (the dispatcher routes it elsewhere).
    pub fn from_incoming(msg: Incoming) -> Result<InboundDatagram, Incoming> {
        match msg {
            Incoming::Datagram {
                from,
                addr,
                payload,
            } => Ok(InboundDatagram {
                from,
                addr,
                payload,
            }),
            other => Err(other),
        }
    }
}

/// What a [`super::MembershipHandle`] asks of the task.
pub(crate) enum Command {
    /// Announce to these addresses now.
    Announce(Vec<SocketAddr>),
    /// Leave the cluster, linger, then stop.
    Leave,
    /// Change our metadata and gossip it.
    UpdateMeta(MetaUpdate, oneshot::Sender<Result<(), MembershipError>>),
    /// Run a push-pull sync with a random member now.
    SyncNow,
}

/// Shortest time between two sync answers to the same member.
const SYNC_REPLY_EVERY: Duration = Duration::from_secs(1);

/// How often a leaving node repeats its goodbye while lingering.
const LEAVE_GOSSIP_EVERY: Duration = Duration::from_millis(200);

/// Channels the task talks through.
pub(crate) struct Channels {
    /// Commands from handles.
    pub commands: mpsc::Receiver<Command>,
    /// Datagrams from the dispatcher.
    pub datagrams: mpsc::Receiver<InboundDatagram>,
    /// Where the view is published.
    pub view: watch::Sender<View>,
    /// Set to `true` when the task has ended.
    pub stopped: watch::Sender<bool>,
}

/// The gossip task's state. Built by [`super::Membership::build`]; run it
/// with [`MembershipTask::run`].
pub struct MembershipTask {
    /// Settings.
    cfg: MembershipConfig,
    /// The SWIM state machine (ours alone).
    foca: Swim,
    /// Where foca's outputs accumulate until drained.
    runtime: AccumulatingRuntime<NodeIdentity>,
    /// Foca's pending timers.
    timers: super::timers::TimerQueue,
    /// How datagrams leave.
    transport: Arc<dyn Transport>,
    /// Our envelope (prefix and checks).
    envelope: Envelope,
    /// Metadata of every member (shared with foca's broadcast handler).
    table: MetaTable,
    /// Our current metadata record.
    own_meta: MetaRecord,
    /// Counters.
    stats: Arc<MembershipStats>,
    /// Rate limiter for rejection logs.
    rejects: RejectLog,
    /// Inputs and outputs.
    io: Channels,
    /// Seed re-announce state.
    announcer: Announcer,
    /// Resolved seed addresses coming back from resolver tasks.
    resolved_rx: mpsc::Receiver<Vec<SocketAddr>>,
    /// Sender half handed to resolver tasks.
    resolved_tx: mpsc::Sender<Vec<SocketAddr>>,
    /// Stop signal.
    shutdown: Shutdown,
    /// Our own RNG (foca's is private to it): sync peer choice, jitter.
    rng: StdRng,
    /// When the next push-pull sync is due.
    next_sync: Instant,
    /// Cluster size at the last periodic sync (a change means the view is
    /// still moving: the next sync comes sooner).
    synced_size: usize,
    /// Set by `leave`: when to stop, and when to repeat the goodbye.
    leaving: Option<(Instant, Instant)>,
    /// Cluster size foca's config was last tuned for.
    tuned_for: usize,
    /// Foca's packet budget (datagram minus envelope).
    max_packet: usize,
    /// Last sync answer per member, to bound answers.
    sync_answered: HashMap<NodeName, Instant>,
    /// When the view was last built (and published if it changed).
    view_built: Instant,
    /// A view build postponed by coalescing is due then.
    view_due: Option<Instant>,
    /// Members to connect to ahead of the first probe, and when.
    connect_ahead: Vec<(Instant, PeerAddr)>,
    /// Our local health: stretches probe timers while we are starved.
    health: LocalHealth,
}

impl MembershipTask {
    /// Build the task (foca, runtime, first metadata broadcast).
    pub(crate) fn new(
        cfg: MembershipConfig,
        identity: NodeIdentity,
        transport: Arc<dyn Transport>,
        io: Channels,
        shutdown: Shutdown,
        stats: Arc<MembershipStats>,
    ) -> Result<Self, MembershipError> {
        let envelope = Envelope::new(cfg.cluster.clone(), cfg.meta.partitions);
        let max_packet = MAX_DATAGRAM.saturating_sub(envelope.overhead());
        let foca_cfg = cfg.foca_config(1, max_packet)?;
        let (foca_rng, rng) = match cfg.rng_seed {
            Some(s) => (StdRng::seed_from_u64(s), StdRng::seed_from_u64(s ^ 0x5eed)),
            None => (rand::make_rng(), rand::make_rng()),
        };
        let table = MetaTable::new();
        let handler = MetaHandler::new(table.clone(), cfg.cluster.clone(), stats.clone());
        let foca = Foca::with_custom_broadcast(
            identity.clone(),
            foca_cfg,
            foca_rng,
            PostcardCodec,
            handler,
        );
        let own_meta = MetaRecord {
            node: identity.name.clone(),
            generation: identity.generation,
            version: 1,
            meta: cfg.meta.clone(),
        };
        let (resolved_tx, resolved_rx) = mpsc::channel(4);
        let now = Instant::now();
        let local_health_max = cfg.local_health_max;
        let mut task = MembershipTask {
            announcer: Announcer::new(
                cfg.announce_min,
                cfg.announce_max,
                cfg.seed_refresh_interval,
                !cfg.seeds.is_empty(),
            ),
            next_sync: now + cfg.push_pull_interval,
            synced_size: 1,
            cfg,
            foca,
            runtime: AccumulatingRuntime::new(),
            timers: super::timers::TimerQueue::new(),
            transport,
            envelope,
            table,
            own_meta,
            stats,
            rejects: RejectLog::default(),
            io,
            resolved_rx,
            resolved_tx,
            shutdown,
            rng,
            leaving: None,
            tuned_for: 1,
            max_packet,
            sync_answered: HashMap::new(),
            view_built: now,
            view_due: None,
            connect_ahead: Vec::new(),
            health: LocalHealth::new(local_health_max),
        };
        task.publish_own_meta()?;
        task.refresh_view();
        Ok(task)
    }

    /// Run until shutdown, or until a leave has lingered long enough.
    pub async fn run(self) {
        let span = tracing::info_span!("membership", node = %self.cfg.node);
        self.run_loop().instrument(span).await
    }

    /// The loop behind [`MembershipTask::run`].
    async fn run_loop(mut self) {
        tracing::info!(node = %self.cfg.node, identity = %self.foca.identity(), "membership started");
        loop {
            let wake = self.next_wake();
            tokio::select! {
                _ = self.shutdown.wait() => break,
                Some(cmd) = self.io.commands.recv() => self.on_command(cmd),
                Some(addrs) = self.resolved_rx.recv() => {
                    self.announcer.resolved();
                    if self.leaving.is_none() {
                        self.announce_to(&addrs);
                    }
                }
                Some(d) = self.io.datagrams.recv() => self.on_datagram(d),
                _ = sleep_until(wake) => {
                    self.catch_up(wake).await;
                    if self.on_tick() {
                        break;
                    }
                }
            }
            self.after_input();
        }
        self.refresh_view();
        self.io.stopped.send_replace(true);
        tracing::info!(node = %self.cfg.node, "membership stopped");
    }

    /// The earliest moment something is due.
    fn next_wake(&self) -> Instant {
        let mut wake = self.next_sync;
        for t in [
            self.timers.next_deadline(),
            self.announcer.next(),
            self.leaving.map(|(end, _)| end),
            self.leaving.map(|(_, gossip)| gossip),
            self.view_due,
            self.connect_ahead.iter().map(|(t, _)| *t).min(),
        ]
        .into_iter()
        .flatten()
        {
            wake = wake.min(t);
        }
        wake
    }

    /// Handle whatever is due; says whether the task should stop.
    fn on_tick(&mut self) -> bool {
        let now = Instant::now();
        while let Some(timer) = self.timers.pop_due(now) {
            self.on_timer(timer);
        }
        if let Some((end, gossip)) = self.leaving {
            if now >= end {
                return true;
            }
            if now >= gossip {
                self.leaving = Some((end, now + LEAVE_GOSSIP_EVERY));
                if self.foca.updates_backlog() > 0 {
                    let r = self.foca.gossip(&mut self.runtime);
                    self.after_call(r, "gossip");
                }
            }
        }
        if self.announcer.due(now) {
            self.announce_to_seeds(now);
        }
        self.connect_due(now);
        if now >= self.next_sync {
            let jitter = self.rng.random_range(0.9..1.1);
            let size = self.foca.num_members() + 1;
            let moving = size != self.synced_size;
            self.synced_size = size;
            let every = self.cfg.push_pull_next(self.tuned_for, moving);
            self.next_sync = now + every.mul_f64(jitter);
            self.push_pull();
            self.forget_unknown_meta();
        }
        false
    }

    /// Deliver one foca timer.
    fn on_timer(&mut self, timer: Timer<NodeIdentity>) {
        if matches!(timer, Timer::ProbeRandomMember(_)) {
            self.health.probe_started();
            let score = u64::from(self.health.score());
            self.stats.local_health.store(score, Ordering::Relaxed);
        }
        let r = self.foca.handle_timer(timer, &mut self.runtime);
        self.after_call(r, "timer");
    }

    /// Log a foca error (foca is tolerant; nothing to undo) and drain.
    fn after_call(&mut self, r: Result<(), foca::Error>, what: &'static str) {
        if let Err(e) = r {
            tracing::debug!(node = %self.cfg.node, error = %e, what, "foca call failed");
        }
        self.drain();
    }

    /// Drain foca's runtime: send, schedule, react.
    fn drain(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            if self.is_spurious_turn_undead(&to, &data) {
                self.stats
                    .turn_undead_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.send(&to, Kind::Swim, &data);
        }
        let now = Instant::now();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let after = match timer {
                Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => {
                    self.health.stretch(after)
                }
                _ => after,
            };
            self.timers.push(now + after, timer);
        }
        while let Some(n) = self.runtime.to_notify() {
            self.on_notification(n);
        }
    }

    /// Foca 2.0 sends `TurnUndead` when a suspicion timer fires even if the
    /// member refuted the suspicion meanwhile (the timer's condition fails
    /// but the notice still goes out), which makes a live member renew its
    /// identity: a false Down. Such a notice to a member we still consider
    /// active is dropped; one to a member we hold down goes out.
    fn is_spurious_turn_undead(&self, to: &NodeIdentity, data: &[u8]) -> bool {
        let Ok(header) = Codec::<NodeIdentity>::decode_header(&mut PostcardCodec, data) else {
            return false;
        };
        header.message == Message::TurnUndead && self.foca.iter_members().any(|m| m.id() == to)
    }

    /// Wrap and send one datagram; never waits.
    fn send(&self, to: &NodeIdentity, kind: Kind, body: &[u8]) {
        let wire = self.envelope.wrap(kind, body);
        if wire.len() > MAX_DATAGRAM {
            self.stats.oversize_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let peer = PeerAddr {
            addr: to.addr,
            name: (!to.is_placeholder()).then(|| to.name.clone()),
        };
        let len = wire.len() as u64;
        self.transport.send_datagram(&peer, wire);
        self.stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_out.fetch_add(len, Ordering::Relaxed);
    }

    /// React to a foca notification.
    fn on_notification(&mut self, n: OwnedNotification<NodeIdentity>) {
        let node = self.cfg.node.clone();
        match n {
            OwnedNotification::Active => {
                tracing::info!(%node, "joined the cluster");
                self.announcer.joined(Instant::now());
                // Learn everyone's metadata at once instead of waiting
                // for the periodic sync, and again soon after: the member
                // we synced with may not know everyone yet either.
                self.push_pull();
                let soon = Instant::now() + self.cfg.push_pull_forming;
                self.next_sync = self.next_sync.min(soon);
            }
            OwnedNotification::MemberUp(id) => self.plan_connect(&id),
            OwnedNotification::Idle if self.leaving.is_none() => {
                tracing::info!(%node, "alone: no other active member; re-announcing to seeds");
                self.announcer.restart(Instant::now());
            }
            OwnedNotification::Defunct if self.leaving.is_none() => {
                tracing::warn!(%node, "declared down by the cluster and unable to rejoin");
            }
            OwnedNotification::Rejoin(id) => {
                tracing::info!(%node, identity = %id, "declared down; rejoined with a new generation");
                self.own_meta.generation = id.generation;
                self.own_meta.version += 1;
                if let Err(e) = self.publish_own_meta() {
                    tracing::warn!(%node, error = %e, "cannot republish metadata");
                }
            }
            _ => {}
        }
    }

    /// Handle a command from a handle.
    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Announce(addrs) => self.announce_to(&addrs),
            Command::Leave => self.leave(),
            Command::UpdateMeta(f, reply) => {
                let r = self.update_meta(f);
                let _ = reply.send(r);
            }
            Command::SyncNow => self.push_pull(),
        }
    }

    /// Leave the cluster: declare ourselves down, keep running briefly.
    fn leave(&mut self) {
        if self.leaving.is_some() {
            return;
        }
        tracing::info!(node = %self.cfg.node, "leaving the cluster");
        self.announcer.stop();
        // Set first: the Defunct notification foca emits is expected now.
        let now = Instant::now();
        self.leaving = Some((now + self.cfg.leave_linger, now + LEAVE_GOSSIP_EVERY));
        let r = self.foca.leave_cluster(&mut self.runtime);
        self.after_call(r, "leave");
    }

    /// Apply a metadata change and gossip it.
    fn update_meta(&mut self, f: MetaUpdate) -> Result<(), MembershipError> {
        let mut meta = self.own_meta.meta.clone();
        f(&mut meta);
        let fixed = &self.own_meta.meta;
        if meta.cluster != fixed.cluster
            || meta.protocol != fixed.protocol
            || meta.partitions != fixed.partitions
        {
            return Err(MembershipError::MetaImmutable);
        }
        if meta == self.own_meta.meta {
            return Ok(());
        }
        self.own_meta.meta = meta;
        self.own_meta.version += 1;
        self.publish_own_meta()?;
        let r = self.foca.broadcast(&mut self.runtime);
        self.after_call(r, "broadcast");
        Ok(())
    }

    /// Store our record and queue it as a custom broadcast.
    fn publish_own_meta(&mut self) -> Result<(), MembershipError> {
        let bytes = super::meta::encode_record(&self.own_meta).map_err(MembershipError::Encode)?;
        self.table.offer(&self.own_meta);
        self.foca
            .add_broadcast(&bytes)
            .map_err(|e| MembershipError::Config(format!("metadata not accepted: {e}")))?;
        Ok(())
    }

    /// The announce timer fired: resolve the seeds and announce (backing
    /// off while alone, refreshing slowly otherwise).
    fn announce_to_seeds(&mut self, now: Instant) {
        if self.leaving.is_some() {
            self.announcer.stop();
            return;
        }
        self.announcer.fired(now, self.foca.num_members() == 0);
        let (addrs, names) = split_seeds(&self.cfg.seeds);
        self.announce_to(&addrs);
        if !names.is_empty() && self.announcer.start_resolving() {
            let tx = self.resolved_tx.clone();
            let stats = self.stats.clone();
            tokio::spawn(async move {
                let addrs = resolve_seeds(&names, &stats).await;
                let _ = tx.send(addrs).await;
            });
        }
    }

    /// Announce to each address (but not to ourselves).
    fn announce_to(&mut self, addrs: &[SocketAddr]) {
        for &addr in addrs {
            if addr == self.cfg.gossip_addr {
                continue;
            }
            let dst = NodeIdentity::seed(self.cfg.cluster.clone(), addr);
            let r = self.foca.announce(dst, &mut self.runtime);
            self.stats.announces.fetch_add(1, Ordering::Relaxed);
            self.after_call(r, "announce");
        }
    }

    /// After every input: retune foca for the cluster size, publish the
    /// view if it changed.
    fn after_input(&mut self) {
        let size = self.foca.num_members() + 1;
        if size != self.tuned_for {
            match self.cfg.foca_config(size, self.max_packet) {
                Ok(c) => match self.foca.set_config(c) {
                    Ok(()) => self.tuned_for = size,
                    Err(e) => tracing::warn!(error = %e, "foca refused the new config"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot tune foca"),
            }
        }
        self.coalesced_refresh();
    }
}

/// Split seeds into literal socket addresses and names to resolve.
fn split_seeds(seeds: &[String]) -> (Vec<SocketAddr>, Vec<String>) {
    let mut addrs = Vec::new();
    let mut names = Vec::new();
    for s in seeds {
        match s.parse::<SocketAddr>() {
            Ok(a) => addrs.push(a),
            Err(_) => names.push(s.clone()),
        }
    }
    (addrs, names)
}
