//! The single-flight messages embedded peers send a key's primary.
//!
//! # What this module owns
//! The bodies of [`crate::proto::Request::Flight`] and
//! [`crate::proto::Response::Flight`]: acquire a key's load slot (or wait on
//! the load already running), and release it with the loaded value or the
//! loader's error.
//!
//! # What it must not do
//! No I/O and no decisions: data only, postcard-encoded inside the
//! versioned peer envelope.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A single-flight request to the primary of `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlightRequest {
    /// Return the value if the primary holds it; else join the load in
    /// flight, or become its leader.
    Acquire {
        /// The typed cache's name (selects a loader registered there).
        cache: String,
        /// The full key in the keyspace (`<cache>:<hex>`).
        key: Bytes,
        /// How long the primary waits on a running load before answering
        /// [`FlightResponse::Pending`] (the caller asks again).
        wait_ms: u64,
        /// How long a leader may hold the slot before the primary gives up
        /// on it and fails its waiters (a leader that died or hung).
        lease_ms: u64,
    },
    /// The leader's outcome; wakes every waiter.
    Release {
        /// The full key.
        key: Bytes,
        /// The token from [`FlightResponse::Lead`].
        token: u64,
        /// What the load produced.
        outcome: FlightOutcome,
    },
}

/// What a load produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlightOutcome {
    /// A value (an empty value is a negative entry) to store with a TTL.
    Loaded {
        /// The encoded value; empty for "no such row".
        value: Bytes,
        /// Time to live in milliseconds; 0 = no expiry.
        ttl_ms: u64,
    },
    /// The loader failed or timed out; nothing is cached.
    Failed(String),
}

/// The primary's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlightResponse {
    /// The primary holds the key: its value (empty = negative entry).
    Hit(Bytes),
    /// No load was running: the caller runs the loader and releases.
    Lead {
        /// Identifies this flight in [`FlightRequest::Release`].
        token: u64,
    },
    /// A load finished while waiting: its value (empty = negative entry).
    Done(Bytes),
    /// The load failed: every waiter gets this message; nothing was cached.
    Failed(String),
    /// Still loading after `wait_ms`: ask again.
    Pending,
}
