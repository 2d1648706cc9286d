//! The Redis cache of the production deployment: one Redis node (`redis://`), or a Redis
//! Cluster (`redis+cluster://host:port,host:port,…`) on which every script's keys share a slot
//! and pub/sub is sharded.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::StreamExt as _;
use redis::{
    aio::{ConnectionLike, ConnectionManager},
    cluster_routing::Slot,
    Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value,
};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{healing::Healing, hub::Hub};

/// How long a command may take before it counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The sharded channels a cluster deployment's messages travel on (`SPUBLISH`): each message
/// goes to the one that its channel hashes to, each on the node owning its slot, and every
/// process listens to all of them, so a local subscription is effective at once.
const SHARDS: u16 = 64;

/// A Redis connection (multiplexed, reconnecting) plus a pub/sub listener that feeds the local
/// hub. Every key and channel is prefixed. Cheap to clone.
#[derive(Clone)]
pub struct RedisCache {
    conn: Connection,
    prefix: String,
    hub: Hub,
    /// Stops the pub/sub listener when the last handle is dropped.
    _listening: Arc<DropGuard>,
}

/// A connection to one node or to a cluster (which routes each command by its key's slot and
/// follows the cluster's moves and failovers); both run the same commands and scripts.
#[derive(Clone)]
pub enum Connection {
    Node(ConnectionManager),
    Cluster(Healing),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Node(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Node(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Node(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

impl RedisCache {
    /// Connects and starts listening to this prefix's channels, so a new local subscriber is
    /// effective at once: one `PSUBSCRIBE` on one node, every shard channel on a cluster.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.contains(['{', '}']),
            "the cache prefix may not hold braces: they would make every key one cluster slot"
        );
        if let Some(nodes) = cluster_nodes(url) {
            return Self::connect_cluster(&nodes?, prefix).await;
        }
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
            conn: Connection::Node(conn),
            prefix: prefix.to_owned(),
            hub,
            _listening: Arc::new(stop.drop_guard()),
        })
    }

    async fn connect_cluster(nodes: &[String], prefix: &str) -> anyhow::Result<Self> {
        let client = redis::cluster::ClusterClient::builder(nodes.to_vec())
            .response_timeout(RESPONSE_TIMEOUT)
            .connection_timeout(Duration::from_secs(2))
            .build()
            .context("parsing the Redis Cluster URL")?;
        let conn = Healing::connect(client)
            .await
            .context("connecting to the Redis Cluster")?;
        // Subscriptions on a connection of their own (RESP3 pushes), which the client
        // subscribes again after a reconnection or a failover.
        let (pushes, mut received) = tokio::sync::mpsc::unbounded_channel();
        let listener = redis::cluster::ClusterClient::builder(nodes.to_vec())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .context("parsing the Redis Cluster URL")?;
        let mut subscriber = listener
            .get_async_connection()
            .await
            .context("connecting to the Redis Cluster for pub/sub")?;
        for shard in 0..SHARDS {
            subscriber
                .ssubscribe(shard_channel(prefix, shard))
                .await
                .context("SSUBSCRIBE")?;
        }
        let hub = Hub::default();
        let stop = CancellationToken::new();
        let (delivering, stopped) = (hub.clone(), stop.clone());
        tokio::spawn(async move {
            // Holding the subscriber keeps its subscriptions.
            let _subscriber = subscriber;
            loop {
                let push = tokio::select! {
                    push = received.recv() => push,
                    () = stopped.cancelled() => return,
                };
                let Some(push) = push else { return };
                if push.kind != redis::PushKind::SMessage {
                    continue;
                }
                let Some(Ok(payload)) = push.data.get(1).map(String::from_redis_value_ref) else {
                    continue;
                };
                if let Some((channel, message)) = payload.split_once('\n') {
                    delivering.deliver(channel, message);
                }
            }
        });
        Ok(Self {
            conn: Connection::Cluster(conn),
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
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    /// Runs a Lua `script` atomically (EVALSHA, loading it on first use) with `keys` prefixed.
    /// The keys must share a cluster slot (a hash tag): debug builds check it on every call.
    pub async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> anyhow::Result<T> {
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        debug_assert!(
            one_slot(&keys),
            "a script's keys must share a cluster slot: {keys:?}"
        );
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
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

    /// `PUBLISH` on one node; on a cluster `SPUBLISH` on the shard channel `channel` hashes
    /// to, the channel's name leading the message.
    pub async fn publish(&self, channel: &str, message: &str) -> anyhow::Result<()> {
        let publish = match &self.conn {
            Connection::Node(_) => {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(format!("{}chan:{channel}", self.prefix))
                    .arg(message);
                cmd
            }
            Connection::Cluster(_) => {
                let shard = shard_of(channel);
                let mut cmd = redis::cmd("SPUBLISH");
                cmd.arg(shard_channel(&self.prefix, shard))
                    .arg(format!("{channel}\n{message}"));
                cmd
            }
        };
        publish.query_async::<()>(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// One round trip (to every primary of a cluster).
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

/// Whether `keys` all live in one cluster slot (as one script's keys must on a cluster).
fn one_slot(keys: &[String]) -> bool {
    keys.windows(2)
        .all(|pair| Slot::for_key(&pair[0]) == Slot::for_key(&pair[1]))
}

/// The shard channel a message for `channel` travels on: any spread will do, since every
/// process listens to all of them and reads the channel from the message.
fn shard_of(channel: &str) -> u16 {
    channel.bytes().fold(0u16, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u16::from(byte))
    }) % SHARDS
}

/// The shard channel `shard` of the deployment under `prefix`; its hash tag picks its slot.
fn shard_channel(prefix: &str, shard: u16) -> String {
    format!("{prefix}chan:{{{shard}}}")
}

/// The node URLs of a `redis+cluster://[user:password@]host:port,host:port,…` URL (or
/// `rediss+cluster://` for TLS); `None` for any other URL.
pub(crate) fn cluster_nodes(url: &str) -> Option<anyhow::Result<Vec<String>>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis", rest)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    let (authority, query) = rest
        .split_once(['/', '?'])
        .map_or((rest, ""), |(a, _)| (a, &rest[a.len()..]));
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{credentials}{host}{query}"))
        .collect();
    Some(if nodes.is_empty() {
        Err(anyhow::anyhow!(
            "a redis+cluster:// URL names at least one node"
        ))
    } else {
        Ok(nodes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_hash_tag_share_a_slot_and_others_need_not() {
        let keys = |keys: &[&str]| keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert!(one_slot(&keys(&[
            "p:coupon:{c:1}",
            "p:coupon:{c:1}:users",
            "p:coupon:{c:1}:takes"
        ])));
        assert!(!one_slot(&keys(&["p:coupon:{c:1}", "p:coupon:{c:2}"])));
        assert!(one_slot(&[]));
    }

    #[test]
    fn channels_spread_over_every_shard() {
        let used: std::collections::HashSet<u16> = (0..10_000)
            .map(|n| shard_of(&format!("order:{n}")))
            .collect();
        assert_eq!(used.len(), usize::from(SHARDS));
    }

    #[test]
    fn a_cluster_url_names_each_node_with_the_same_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
                .unwrap()
                .unwrap(),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://u:p@a:1,b:2/?protocol=3")
                .unwrap()
                .unwrap(),
            [
                "rediss://u:p@a:1/?protocol=3",
                "rediss://u:p@b:2/?protocol=3"
            ]
        );
        assert!(cluster_nodes("redis+cluster://").unwrap().is_err());
        assert!(cluster_nodes("redis://127.0.0.1:6379").is_none());
    }
}
