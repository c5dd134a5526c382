//! [`ClientBuilder`]: the options of a [`Client`] and the connect step.
//!
//! # What this module owns
//! The builder's options (seeds, pool size, refresh period, timeout,
//! routing on or off, TLS and `AUTH`), [`Client::builder`] with their
//! defaults, and [`ClientBuilder::connect`]: the first ring fetch and the
//! start of the refresh task.
//!
//! # What it must not do
//! Open connections or fetch the ring itself: that is
//! [`super::routing`]'s job; this module only assembles the shared parts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::routing::{Inner, View, refresh_loop};
use super::{Client, ClientStats};
use crate::api::Error;
use crate::api::client_conn::{ConnOptions, TlsOptions};

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    /// Nodes to learn the ring from (any member will do).
    pub(super) seeds: Vec<SocketAddr>,
    /// Connections per node.
    pub(super) pool_size: usize,
    /// Time between background ring refreshes.
    pub(super) refresh_interval: Duration,
    /// Connect and per-batch timeout.
    pub(super) timeout: Duration,
    /// Whether to route by key (off: every command goes to the first
    /// seed, which forwards; for comparisons).
    pub(super) routing: bool,
    /// TLS to the RESP port, when set.
    pub(super) tls: Option<TlsOptions>,
    /// `AUTH` on every connection: (user, password).
    pub(super) auth: Option<(Option<String>, String)>,
}

impl ClientBuilder {
    /// Connections per node (default 4).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Background refresh period (default 1 s).
    pub fn refresh_interval(mut self, every: Duration) -> Self {
        self.refresh_interval = every;
        self
    }

    /// Connect and request timeout (default 5 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Route each key to its primary (default `true`); `false` sends
    /// everything to the first seed and lets the cluster forward.
    pub fn routing(mut self, on: bool) -> Self {
        self.routing = on;
        self
    }

    /// Authenticate every connection as the `default` user with
    /// `password` (the nodes' `requirepass`): `AUTH password`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.auth = Some((None, password.into()));
        self
    }

    /// Authenticate every connection as ACL user `user`:
    /// `AUTH user password`.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Some((Some(user.into()), password.into()));
        self
    }

    /// Speak TLS to the seeds (the nodes' `tls-listen` port), trusting the
    /// CA certificates in the PEM file `ca`, as `redis-cli --tls --cacert`
    /// does. The server certificate must name the IP address connected to
    /// unless [`ClientBuilder::tls_server_name`] says otherwise.
    ///
    /// Members gossip their TLS RESP address too (`SHOAL RING` names it
    /// as `tls`), so a TLS client routes by key like a plain one, to each
    /// primary's TLS port. Members that do not report one (no
    /// `tls-listen`, an older build) are reached through the seeds, which
    /// forward.
    pub fn tls(mut self, ca: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let keep = self.tls.as_ref().and_then(|t| t.server_name.clone());
        let mut tls = TlsOptions::from_files(ca.as_ref(), None)?;
        tls.server_name = keep;
        self.tls = Some(tls);
        Ok(self)
    }

    /// Like [`ClientBuilder::tls`], also presenting the client
    /// certificate chain `cert` and its key `key` (PEM), for nodes started
    /// with `tls-client-ca`.
    pub fn tls_with_client_cert(
        mut self,
        ca: impl AsRef<std::path::Path>,
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<Self, Error> {
        let keep = self.tls.as_ref().and_then(|t| t.server_name.clone());
        let client = Some((cert.as_ref(), key.as_ref()));
        let mut tls = TlsOptions::from_files(ca.as_ref(), client)?;
        tls.server_name = keep;
        self.tls = Some(tls);
        Ok(self)
    }

    /// The name the nodes' TLS certificates carry (default: the IP
    /// address connected to). Takes effect with [`ClientBuilder::tls`].
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        if let Some(tls) = &mut self.tls {
            tls.server_name = Some(name.into());
        }
        self
    }

    /// Fetch the ring from a seed and start the refresh task. Fails when
    /// no seed answers.
    pub async fn connect(self) -> Result<Client, Error> {
        let conn = Arc::new(ConnOptions {
            timeout: self.timeout,
            tls: self.tls.clone(),
            auth: self.auth.clone(),
        });
        let inner = Arc::new(Inner {
            conn,
            opts: self,
            view: RwLock::new(Arc::new(View::default())),
            pools: RwLock::new(HashMap::new()),
            stats: ClientStats::default(),
        });
        inner.refresh().await?;
        let weak = Arc::downgrade(&inner);
        let every = inner.opts.refresh_interval;
        tokio::spawn(refresh_loop(weak, every));
        Ok(Client { inner })
    }
}

impl Client {
    /// Options, learning the ring from `seeds` (RESP addresses of any
    /// members).
    pub fn builder(seeds: impl IntoIterator<Item = SocketAddr>) -> ClientBuilder {
        ClientBuilder {
            seeds: seeds.into_iter().collect(),
            pool_size: 4,
            refresh_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            routing: true,
            tls: None,
            auth: None,
        }
    }
}
