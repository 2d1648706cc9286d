//! The Redis cache of the production deployment.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use redis::{aio::ConnectionManager, FromRedisValue, Script};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::hub::Hub;

/// How long a command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis connection (multiplexed, reconnecting) plus a pub/sub listener that feeds the local
/// hub. Every key and channel is prefixed. Cheap to clone.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    hub: Hub,
    /// Stops the pub/sub listener when the last handle is dropped.
    _listening: Arc<DropGuard>,
}

impl RedisCache {
    /// Connects and starts listening to this prefix's channels (one `PSUBSCRIBE` for all of
    /// them, so a new local subscriber is effective at once).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("parsing the Redis URL")?;
        // redis-rs gives up on a response after 500 ms by default. A slow answer is not a
        // failed command (a gate script may have run), so wait much longer before calling it one.
        let config =
            redis::aio::ConnectionManagerConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .context("connecting to Redis")?;
        let hub = Hub::default();
        let pattern = format!("{prefix}chan:*");
        let mut pubsub = client.get_async_pubsub().await.context("Redis pub/sub")?;
        pubsub.psubscribe(&pattern).await.context("PSUBSCRIBE")?;
        let stop = CancellationToken::new();
        tokio::spawn(listen(client, pubsub, pattern, hub.clone(), stop.clone()));
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            hub,
            _listening: Arc::new(stop.drop_guard()),
        })
    }

    /// The full Redis key of `key` (with this deployment's prefix).
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// A connection for commands of a context's own (keys must go through [`Self::key`]).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs a Lua `script` atomically (EVALSHA, loading it on first use) with `keys` prefixed.
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> anyhow::Result<T> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> anyhow::Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        cmd.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// See [`crate::Cache::hit`].
    pub async fn hit(&self, key: &str, window: Duration) -> anyhow::Result<(u64, Duration)> {
        static HIT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                "local n = redis.call('INCR', KEYS[1]) \
                 local ttl = redis.call('PTTL', KEYS[1]) \
                 if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) ttl = tonumber(ARGV[1]) end \
                 return {n, ttl}",
            )
        });
        let window = window.as_millis().max(1).to_string();
        let (count, ttl): (u64, u64) = self.script(&HIT, &[key], &[window]).await?;
        Ok((count, Duration::from_millis(ttl)))
    }

    /// See [`crate::Cache::forgive`].
    pub async fn forgive(&self, key: &str) -> anyhow::Result<()> {
        static FORGIVE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
            Script::new(
                "local n = tonumber(redis.call('GET', KEYS[1])) \
                 if n and n > 0 then redis.call('DECR', KEYS[1]) end \
                 return 0",
            )
        });
        self.script::<i64>(&FORGIVE, &[key], &[]).await?;
        Ok(())
    }

    pub async fn publish(&self, channel: &str, message: &str) -> anyhow::Result<()> {
        redis::cmd("PUBLISH")
            .arg(format!("{}chan:{channel}", self.prefix))
            .arg(message)
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// Feeds pub/sub messages to the hub; reconnects when the connection drops (messages sent
/// meanwhile are lost, which subscribers tolerate: they re-read the stored state).
async fn listen(
    client: redis::Client,
    pubsub: redis::aio::PubSub,
    pattern: String,
    hub: Hub,
    stop: CancellationToken,
) {
    let strip = pattern.trim_end_matches('*').len();
    let mut pubsub = Some(pubsub);
    while !stop.is_cancelled() {
        let current = match pubsub.take() {
            Some(p) => p,
            None => match reconnect(&client, &pattern).await {
                Ok(p) => p,
                Err(error) => {
                    tracing::warn!(%error, "Redis pub/sub reconnect failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let mut messages = current.into_on_message();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = stop.cancelled() => return,
            };
            let Some(message) = message else { break };
            if let Ok(payload) = message.get_payload::<String>() {
                let channel = message.get_channel_name();
                hub.deliver(channel.get(strip..).unwrap_or(channel), &payload);
            }
        }
        tracing::warn!("Redis pub/sub connection closed; reconnecting");
    }
}

async fn reconnect(client: &redis::Client, pattern: &str) -> anyhow::Result<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    Ok(pubsub)
}
