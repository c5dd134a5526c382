//! Read-through with single-flight at the key's primary.
//!
//! # What this module owns
//! - [`FlightTable`]: on every node, the load slots of keys it is primary
//!   for. The first miss for a key becomes the *leader* (or, when a loader
//!   for that cache is registered on the primary, the primary loads
//!   itself); later misses, from any node, wait on the same slot and get
//!   the leader's value or its error. A leader that neither releases nor
//!   answers within its lease is given up on and its waiters fail.
//! - [`get_or_load`]: the caller's side of the exchange.
//!
//! # What it must not do
//! Know key or value types: everything here is bytes. Cache nothing on a
//! loader error. An empty value is a *negative entry* ("no such row"),
//! stored with the short negative TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::Error;
use super::exec::Exec;
use super::wire::{FlightOutcome, FlightRequest, FlightResponse};
use crate::resp::codec::Frame;
use crate::transport::BoxFuture;

/// What a load yields: a value (empty = none) or an error message.
type Outcome = Option<Result<Bytes, String>>;

/// A type-erased loader registered on a node for one cache: it receives the
/// encoded key (the part after `<cache>:`, hex-decoded) and returns the
/// encoded value, `None` for "no such row", or an error message.
pub type RawLoader =
    Arc<dyn Fn(Bytes) -> BoxFuture<'static, Result<Option<Bytes>, String>> + Send + Sync>;

/// A loader registered for one cache, with the policy to store its results.
#[derive(Clone)]
pub struct Registered {
    /// The loader.
    pub loader: RawLoader,
    /// TTL of loaded values (`None` = no expiry).
    pub ttl: Option<Duration>,
    /// TTL of negative entries.
    pub negative_ttl: Duration,
    /// How long one load may take.
    pub timeout: Duration,
}

/// One load in flight.
struct Flight {
    /// Identifies the leader's release.
    token: u64,
    /// Publishes the outcome to every waiter.
    tx: watch::Sender<Outcome>,
}

/// Counters for the single-flight table.
#[derive(Debug, Default)]
pub struct FlightStats {
    /// Loads started (one per flight).
    pub loads: AtomicU64,
    /// Acquires that joined a running load instead of starting one.
    pub joined: AtomicU64,
    /// Loads that failed or timed out.
    pub failed: AtomicU64,
    /// Leaders given up on after their lease.
    pub expired: AtomicU64,
}

/// The load slots of one node, and the loaders registered on it.
#[derive(Default)]
pub struct FlightTable {
    /// Loads in flight by full key.
    flights: Mutex<HashMap<Bytes, Flight>>,
    /// Loaders by cache name.
    loaders: Mutex<HashMap<String, Registered>>,
    /// Next flight token.
    next_token: AtomicU64,
    /// Counters.
    pub stats: FlightStats,
}

impl FlightTable {
    /// Register (or replace) the loader this node runs for `cache`.
    pub fn register(&self, cache: &str, loader: Registered) {
        lock(&self.loaders).insert(cache.to_string(), loader);
    }

    /// Answer one single-flight request (we are the key's primary).
    pub async fn serve(self: &Arc<Self>, exec: &Exec, req: FlightRequest) -> FlightResponse {
        match req {
            FlightRequest::Acquire {
                cache,
                key,
                wait_ms,
                lease_ms,
            } => self.acquire(exec, &cache, key, wait_ms, lease_ms).await,
            FlightRequest::Release {
                key,
                token,
                outcome,
            } => self.release(exec, key, token, outcome).await,
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        exec: &Exec,
        cache: &str,
        key: Bytes,
        wait_ms: u64,
        lease_ms: u64,
    ) -> FlightResponse {
        match exec
            .run(vec![Bytes::from_static(b"GET"), key.clone()])
            .await
        {
            Ok(Frame::Bulk(v)) => return FlightResponse::Hit(v),
            Ok(_) => {}
            Err(e) => return FlightResponse::Failed(e.to_string()),
        }
        let (rx, lead) = self.join_or_start(&key);
        let mut rx = match lead {
            None => rx,
            Some(token) => {
                // Until the flight is handed to a lease or a load, this
                // request is all that can end it: if it is dropped here (the
                // peer's connection went away), the guard ends the flight,
                // or every later request for the key would join it forever.
                let mut started = Started {
                    table: self,
                    key: &key,
                    token,
                    armed: true,
                };
                // A load may have finished between our GET and our slot:
                // its value is stored before its slot is freed, so look again.
                if let Ok(Frame::Bulk(v)) = exec
                    .run(vec![Bytes::from_static(b"GET"), key.clone()])
                    .await
                {
                    started.armed = false;
                    self.finish(&key, token, Ok(v.clone()));
                    return FlightResponse::Hit(v);
                }
                started.armed = false;
                let registered = lock(&self.loaders).get(cache).cloned();
                let Some(reg) = registered else {
                    self.spawn_lease(key.clone(), token, Duration::from_millis(lease_ms));
                    return FlightResponse::Lead { token };
                };
                self.spawn_primary_load(exec, cache, key.clone(), token, reg);
                rx
            }
        };
        let wait =
            tokio::time::timeout(Duration::from_millis(wait_ms), rx.wait_for(|o| o.is_some()));
        match wait.await {
            Ok(Ok(o)) => match o.clone() {
                Some(Ok(v)) => FlightResponse::Done(v),
                Some(Err(msg)) => FlightResponse::Failed(msg),
                None => FlightResponse::Pending,
            },
            // The flight was dropped without an outcome: ask again.
            Ok(Err(_)) => FlightResponse::Pending,
            Err(_) => FlightResponse::Pending,
        }
    }

    /// Join the flight for `key`, or start one (then the token is returned).
    fn join_or_start(&self, key: &Bytes) -> (watch::Receiver<Outcome>, Option<u64>) {
        let mut flights = lock(&self.flights);
        if let Some(f) = flights.get(key) {
            self.stats.joined.fetch_add(1, Ordering::Relaxed);
            return (f.tx.subscribe(), None);
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), Flight { token, tx });
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        (rx, Some(token))
    }

    /// End the flight `token` of `key` (if still current) with `result`.
    fn finish(&self, key: &Bytes, token: u64, result: Result<Bytes, String>) {
        let mut flights = lock(&self.flights);
        if flights.get(key).is_some_and(|f| f.token == token)
            && let Some(f) = flights.remove(key)
        {
            f.tx.send_replace(Some(result));
        }
    }

    /// Run the loader registered here for `cache`, then release.
    fn spawn_primary_load(
        self: &Arc<Self>,
        exec: &Exec,
        cache: &str,
        key: Bytes,
        token: u64,
        reg: Registered,
    ) {
        let me = self.clone();
        let exec = exec.clone();
        let prefix = cache.len() + 1;
        tokio::spawn(async move {
            let outcome = match key.get(prefix..).and_then(hex_decode) {
                Some(raw) => {
                    run_loader(
                        (reg.loader)(Bytes::from(raw)),
                        reg.timeout,
                        reg.ttl,
                        reg.negative_ttl,
                    )
                    .await
                }
                None => FlightOutcome::Failed("key is not <cache>:<hex>".into()),
            };
            me.release(&exec, key, token, outcome).await;
        });
    }

    /// Give up on a leader that did not release within `lease`.
    fn spawn_lease(self: &Arc<Self>, key: Bytes, token: u64, lease: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            let mut flights = lock(&me.flights);
            if flights.get(&key).is_some_and(|f| f.token == token)
                && let Some(f) = flights.remove(&key)
            {
                me.stats.expired.fetch_add(1, Ordering::Relaxed);
                me.stats.failed.fetch_add(1, Ordering::Relaxed);
                f.tx.send_replace(Some(Err("the load did not finish within its lease".into())));
            }
        });
    }

    async fn release(
        &self,
        exec: &Exec,
        key: Bytes,
        token: u64,
        outcome: FlightOutcome,
    ) -> FlightResponse {
        let result = match outcome {
            FlightOutcome::Loaded { value, ttl_ms } => {
                let mut args = vec![Bytes::from_static(b"SET"), key.clone(), value.clone()];
                if ttl_ms > 0 {
                    args.push(Bytes::from_static(b"PX"));
                    args.push(Bytes::from(ttl_ms.to_string()));
                }
                match exec.run(args).await {
                    Ok(_) => Ok(value),
                    Err(e) => Err(format!("loaded, but storing failed: {e}")),
                }
            }
            FlightOutcome::Failed(msg) => Err(msg),
        };
        if result.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.finish(&key, token, result.clone());
        match result {
            Ok(v) => FlightResponse::Done(v),
            Err(msg) => FlightResponse::Failed(msg),
        }
    }
}

/// Lock a mutex, recovering from a poisoned one (the data stays valid:
/// every critical section here is a single map operation).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run a load with a timeout and turn its result into an outcome.
pub(crate) async fn run_loader(
    load: BoxFuture<'static, Result<Option<Bytes>, String>>,
    timeout: Duration,
    ttl: Option<Duration>,
    negative_ttl: Duration,
) -> FlightOutcome {
    match tokio::time::timeout(timeout, load).await {
        Ok(Ok(Some(value))) => FlightOutcome::Loaded {
            value,
            ttl_ms: ttl.map_or(0, millis),
        },
        Ok(Ok(None)) => FlightOutcome::Loaded {
            value: Bytes::new(),
            ttl_ms: millis(negative_ttl).max(1),
        },
        Ok(Err(msg)) => FlightOutcome::Failed(msg),
        Err(_) => FlightOutcome::Failed(format!("loader timed out after {timeout:?}")),
    }
}

/// Whole milliseconds, at least 1 for a non-zero duration.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Policy for one read-through call.
pub struct LoadPolicy {
    /// The cache's name.
    pub cache: String,
    /// TTL of loaded values.
    pub ttl: Option<Duration>,
    /// TTL of negative entries.
    pub negative_ttl: Duration,
    /// How long the loader may take.
    pub timeout: Duration,
}

/// How long the primary holds an acquire before answering `Pending` (below
/// the transport's request deadline).
const WAIT_PER_ROUND: Duration = Duration::from_secs(2);

/// Grace a leader gets beyond its loader timeout before the primary gives up.
const LEASE_GRACE: Duration = Duration::from_secs(2);

/// Read `key` through single-flight at its primary, running `loader` here
/// if we become the leader. Returns the encoded value; empty = negative.
pub async fn get_or_load(
    exec: &Exec,
    key: Bytes,
    policy: &LoadPolicy,
    loader: BoxFuture<'static, Result<Option<Bytes>, String>>,
) -> Result<Bytes, Error> {
    let deadline = tokio::time::Instant::now() + policy.timeout + LEASE_GRACE + WAIT_PER_ROUND;
    let mut loader = Some(loader);
    loop {
        let req = FlightRequest::Acquire {
            cache: policy.cache.clone(),
            key: key.clone(),
            wait_ms: millis(WAIT_PER_ROUND),
            lease_ms: millis(policy.timeout + LEASE_GRACE),
        };
        match exec.flight(&key, req).await? {
            FlightResponse::Hit(v) | FlightResponse::Done(v) => return Ok(v),
            FlightResponse::Failed(msg) => return Err(Error::Loader(msg)),
            FlightResponse::Pending => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
            }
            FlightResponse::Lead { token } => {
                let Some(load) = loader.take() else {
                    return Err(Error::Server("led a second load for one call".into()));
                };
                let mut guard = LeadGuard {
                    exec: exec.clone(),
                    key: key.clone(),
                    token,
                    armed: true,
                };
                let outcome =
                    run_loader(load, policy.timeout, policy.ttl, policy.negative_ttl).await;
                let release = FlightRequest::Release {
                    key: key.clone(),
                    token,
                    outcome,
                };
                let answer = exec.flight(&key, release).await;
                guard.armed = false;
                return match answer? {
                    FlightResponse::Done(v) | FlightResponse::Hit(v) => Ok(v),
                    FlightResponse::Failed(msg) => Err(Error::Loader(msg)),
                    other => Err(Error::Server(format!(
                        "unexpected release answer {other:?}"
                    ))),
                };
            }
        }
    }
}

/// Ends a flight the primary started for a request that was dropped (its
/// peer's connection went away) before it handed the flight on to a lease,
/// a load or a value found meanwhile: nothing else would end it, and every
/// later request for the key would join it and wait forever.
struct Started<'a> {
    /// The table holding the flight.
    table: &'a FlightTable,
    /// The flight's key.
    key: &'a Bytes,
    /// The flight's token.
    token: u64,
    /// Still to end (cleared once handed on).
    armed: bool,
}

impl Drop for Started<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.table.stats.failed.fetch_add(1, Ordering::Relaxed);
            self.table.finish(
                self.key,
                self.token,
                Err("the request that started the load went away".into()),
            );
        }
    }
}

/// Releases a flight whose leader was dropped mid-load (its caller gave
/// up), so waiters fail at once instead of at the end of the lease.
struct LeadGuard {
    /// Where to send the release.
    exec: Exec,
    /// The key led.
    key: Bytes,
    /// The flight's token.
    token: u64,
    /// Still to release (cleared once the leader released itself).
    armed: bool,
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let exec = self.exec.clone();
        let key = self.key.clone();
        let release = FlightRequest::Release {
            key: key.clone(),
            token: self.token,
            outcome: FlightOutcome::Failed("the loading caller gave up".into()),
        };
        rt.spawn(async move {
            let _ = exec.flight(&key, release).await;
        });
    }
}

/// Lower-case hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Decode hex (either case); `None` on anything else. A `:` ends the hex
/// part (versioned keys carry `:v<N>` after it).
pub fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let end = text.iter().position(|&b| b == b':').unwrap_or(text.len());
    let text = &text[..end];
    if text.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_stops_at_a_colon() {
        let raw = [0u8, 1, 0xab, 0xff];
        let text = hex_encode(&raw);
        assert_eq!(text, "0001abff");
        assert_eq!(hex_decode(text.as_bytes()), Some(raw.to_vec()));
        assert_eq!(hex_decode(b"0001abff:v3"), Some(raw.to_vec()));
        assert_eq!(hex_decode(b"0g"), None);
        assert_eq!(hex_decode(b"abc"), None);
    }

    #[test]
    fn a_flight_whose_starting_request_is_dropped_ends_and_the_next_one_leads() {
        let table = FlightTable::default();
        let key = Bytes::from_static(b"users:6b");
        let (_, lead) = table.join_or_start(&key);
        let token = lead.expect("the first request leads");
        let (waiter, joined) = table.join_or_start(&key);
        assert_eq!(joined, None, "a second request joins the flight");
        drop(Started {
            table: &table,
            key: &key,
            token,
            armed: true,
        });
        assert!(
            matches!(&*waiter.borrow(), Some(Err(_))),
            "the waiter learns the flight failed"
        );
        let (_, next) = table.join_or_start(&key);
        assert!(next.is_some(), "the next request starts a new flight");
        // Handed on (disarmed), the guard leaves the new flight alone.
        let (rx, _) = table.join_or_start(&key);
        drop(Started {
            table: &table,
            key: &key,
            token: next.unwrap_or_default(),
            armed: false,
        });
        assert!(rx.borrow().is_none(), "the flight is still in the air");
    }
}
