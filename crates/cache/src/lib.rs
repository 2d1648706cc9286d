//! Cache, atomic scripts and cross-instance pub/sub, for both deployments.
//!
//! [`Cache::Memory`] keeps everything in this process (the embedded default); [`Cache::Redis`]
//! keeps it in Redis (production), under a key prefix so that several deployments or test runs
//! share one server. Contexts build their own atomic operations on top: a Lua script beside the
//! context for Redis (run with [`RedisCache::script`]), and the same logic over a lock in
//! process — one conformance suite per operation keeps the two equal.

use std::time::Duration;

mod healing;
mod hub;
mod memory;
mod redis_cache;

pub use hub::{Subscription, RECHECK};
pub use memory::{MemoryBounds, MemoryCache};
pub use redis::RedisError;
pub use redis_cache::{Connection, RedisCache};

/// Whether `err` says Redis could not be reached or answer in time (a refused or dropped
/// connection, a timeout, a server still loading or failing over), rather than that the
/// command is wrong. Retrying later may succeed.
pub fn is_transient(err: &redis::RedisError) -> bool {
    err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_io_error()
        || matches!(err.retry_method(), redis::RetryMethod::WaitAndRetry)
}

/// A cache handle; cheap to clone.
#[derive(Clone)]
pub enum Cache {
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl Cache {
    /// Connects the cache named by `url`: `memory://`, `redis://host:port[/db]` or
    /// `redis+cluster://host:port,host:port,…` (`rediss` for TLS). Keys and
    /// channels are prefixed with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        if url.starts_with("memory:") {
            Ok(Cache::Memory(MemoryCache::new()))
        } else if [
            "redis://",
            "rediss://",
            "redis+cluster://",
            "rediss+cluster://",
        ]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        {
            Ok(Cache::Redis(RedisCache::connect(url, prefix).await?))
        } else {
            anyhow::bail!(
                "unsupported cache URL scheme (expected memory://, redis:// or redis+cluster://)"
            )
        }
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Memory(_) => "memory",
            Cache::Redis(_) => "redis",
        }
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self {
            Cache::Memory(m) => Ok(m.get(key)),
            Cache::Redis(r) => r.get(key).await,
        }
    }

    /// Stores `value` under `key`, expiring after `ttl` if given.
    pub async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> anyhow::Result<()> {
        match self {
            Cache::Memory(m) => {
                m.set(key, value, ttl);
                Ok(())
            }
            Cache::Redis(r) => r.set(key, value, ttl).await,
        }
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Cache::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Cache::Redis(r) => r.delete(key).await,
        }
    }

    /// Counts one hit on `key` in a fixed window of length `window` that starts with the first
    /// hit: returns the hits counted in the current window (this one included) and the time
    /// until that window ends. Atomic across instances sharing the cache.
    pub async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<(u64, Duration)> {
        match self {
            Cache::Memory(m) => Ok(m.hit(key, window)),
            Cache::Redis(r) => r.hit(key, window).await,
        }
    }

    /// Takes back one hit counted on `key` in its current window (an attempt that turned out
    /// not to count, such as a successful login); nothing when the window has ended.
    pub async fn forgive(&self, key: &str) -> anyhow::Result<()> {
        match self {
            Cache::Memory(m) => {
                m.forgive(key);
                Ok(())
            }
            Cache::Redis(r) => r.forgive(key).await,
        }
    }

    /// Sends `message` to every subscriber of `channel`, in every instance sharing this cache.
    /// Delivery is best effort (at most once): callers keep the state in a store and use the
    /// message only as a wake-up.
    pub async fn publish(&self, channel: &str, message: &str) -> anyhow::Result<()> {
        match self {
            Cache::Memory(m) => {
                m.hub().deliver(channel, message);
                Ok(())
            }
            Cache::Redis(r) => r.publish(channel, message).await,
        }
    }

    /// Subscribes to `channel`; effective as soon as this returns, so a caller can subscribe,
    /// then read the stored state, and miss nothing.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        match self {
            Cache::Memory(m) => m.hub().subscribe(channel),
            Cache::Redis(r) => r.hub().subscribe(channel),
        }
    }

    /// Channels with a live subscription in this process (each is forgotten with its last
    /// subscription).
    pub fn subscribed_channels(&self) -> usize {
        match self {
            Cache::Memory(m) => m.hub().channels(),
            Cache::Redis(r) => r.hub().channels(),
        }
    }

    /// One round trip (readiness).
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Cache::Memory(_) => Ok(()),
            Cache::Redis(r) => r.ping().await,
        }
    }
}
