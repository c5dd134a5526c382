//! [`ClientCache`]: typed views through a thin [`Client`].
//!
//! # What this module owns
//! The typed cache of a client: key encoding (`<name>:<hex of
//! postcard(key)>`), postcard values and the default TTL of its writes.
//!
//! # What it must not do
//! Diverge from [`crate::Cache`]'s key and value scheme (an embedded peer
//! and a thin client share entries), or cache values itself.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Client;
use crate::api::Error;

/// A typed cache seen through a [`Client`]: the same keys and encoding as
/// [`crate::Cache`], so an embedded peer and a thin client share entries.
pub struct ClientCache<K, V> {
    /// The client.
    client: Client,
    /// The cache's name (key prefix).
    name: String,
    /// Default TTL of writes.
    ttl: Option<Duration>,
    /// The key and value types.
    types: PhantomData<fn(K) -> V>,
}

impl<K: Serialize, V: Serialize + DeserializeOwned> ClientCache<K, V> {
    /// Writes expire after `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The stored key of `key`: `<name>:<hex of postcard(key)>`.
    pub fn key(&self, key: &K) -> Result<Bytes, Error> {
        let raw = postcard::to_stdvec(key).map_err(|e| Error::Codec(e.to_string()))?;
        let mut s = String::with_capacity(self.name.len() + 1 + raw.len() * 2);
        s.push_str(&self.name);
        s.push(':');
        for b in raw {
            s.push_str(&format!("{b:02x}"));
        }
        Ok(Bytes::from(s))
    }

    /// The value of `key` (`None` when absent or a negative entry).
    pub async fn get(&self, key: &K) -> Result<Option<V>, Error> {
        match self.client.get(self.key(key)?).await? {
            Some(raw) if !raw.is_empty() => postcard::from_bytes(&raw)
                .map(Some)
                .map_err(|e| Error::Codec(e.to_string())),
            _ => Ok(None),
        }
    }

    /// Store `value` under `key` with the cache's TTL.
    pub async fn set(&self, key: &K, value: &V) -> Result<(), Error> {
        let raw = postcard::to_stdvec(value).map_err(|e| Error::Codec(e.to_string()))?;
        self.client.set(self.key(key)?, raw, self.ttl).await
    }

    /// Delete `key`; `true` when it existed.
    pub async fn delete(&self, key: &K) -> Result<bool, Error> {
        self.client.delete(self.key(key)?).await
    }
}

impl Client {
    /// A typed view named `name`, sharing keys with [`crate::Node::cache`].
    pub fn cache<K, V>(&self, name: &str) -> Result<ClientCache<K, V>, Error> {
        if !crate::api::cache::valid_name(name) {
            return Err(Error::CacheName(name.to_string()));
        }
        Ok(ClientCache {
            client: self.clone(),
            name: name.to_string(),
            ttl: None,
            types: PhantomData,
        })
    }
}
