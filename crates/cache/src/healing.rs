//! A Redis Cluster connection that is replaced when it has stopped answering altogether.
//!
//! The redis crate's cluster client (1.8) can wedge after a failover under load: a node
//! reconnection queued on the client's connection lock is granted the lock, but is no longer
//! polled once a slot refresh has begun, and the refresh waits on that lock for ever. From then
//! on every command times out, whatever its slot (seen with 1,000 connections asking for one
//! coupon while its primary was killed: the replica was promoted 6 s later, the api instance
//! never recovered). So once every command has failed to reach the cluster for
//! [`REPLACE_AFTER`], a fresh connection is made from the client and takes over; commands in
//! flight on the old one end by their response timeout, and the old one is dropped with them.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use redis::{
    aio::ConnectionLike, cluster::ClusterClient, cluster_async::ClusterConnection, Cmd, ErrorKind,
    Pipeline, RedisError, RedisFuture, RedisResult, Value,
};

/// How long every command must have failed to reach the cluster before the connection is
/// replaced: longer than a command's response timeout, short beside the failover it follows.
pub(crate) const REPLACE_AFTER: Duration = Duration::from_secs(8);

/// A cluster connection and the client to make a new one with. Cheap to clone.
#[derive(Clone)]
pub struct Healing {
    inner: Arc<Inner>,
}

struct Inner {
    client: ClusterClient,
    current: RwLock<ClusterConnection>,
    /// Since when every command has failed to reach the cluster (`None`: one just did).
    failing_since: Mutex<Option<Instant>>,
    replacing: AtomicBool,
}

impl Healing {
    pub(crate) async fn connect(client: ClusterClient) -> RedisResult<Self> {
        let current = client.get_async_connection().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                current: RwLock::new(current),
                failing_since: Mutex::new(None),
                replacing: AtomicBool::new(false),
            }),
        })
    }

    fn current(&self) -> ClusterConnection {
        self.inner
            .current
            .read()
            .expect("cluster connection")
            .clone()
    }

    /// Notes whether a command sent at `sent` reached the cluster, and starts a replacement
    /// once none sent for [`REPLACE_AFTER`] has (the clock starts when the first failed command
    /// was sent, not when its timeout ended). An error the cluster answered (a script's, a
    /// wrong type) is an answer.
    fn observe<T>(&self, sent: Instant, result: &RedisResult<T>) {
        let unreached = match result {
            Ok(_) => false,
            Err(error) => unreachable(error),
        };
        let mut since = self.inner.failing_since.lock().expect("failure clock");
        if !unreached {
            *since = None;
            return;
        }
        let started = *since.get_or_insert(sent);
        if started.elapsed() < REPLACE_AFTER || self.inner.replacing.swap(true, Ordering::AcqRel) {
            return;
        }
        *since = None;
        drop(since);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match inner.client.get_async_connection().await {
                Ok(fresh) => {
                    *inner.current.write().expect("cluster connection") = fresh;
                    tracing::warn!(
                        after_secs = REPLACE_AFTER.as_secs(),
                        "no command reached the Redis Cluster; replaced the connection"
                    );
                }
                Err(error) => tracing::warn!(
                    %error,
                    "no command reached the Redis Cluster, and a new connection failed too"
                ),
            }
            inner.replacing.store(false, Ordering::Release);
        });
    }

    #[cfg(test)]
    fn replace_now(&self) -> bool {
        *self.inner.failing_since.lock().expect("failure clock") =
            Instant::now().checked_sub(REPLACE_AFTER);
        let before = self.inner.replacing.load(Ordering::Acquire);
        self.observe::<()>(
            Instant::now(),
            &Err(RedisError::from((ErrorKind::Io, "test"))),
        );
        !before && self.inner.replacing.load(Ordering::Acquire)
    }
}

/// Whether `error` says the command did not reach the cluster (or got no answer).
fn unreachable(error: &RedisError) -> bool {
    error.is_timeout()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
}

impl ConnectionLike for Healing {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (mut conn, sent) = (self.current(), Instant::now());
        Box::pin(async move {
            let result = conn.req_packed_command(cmd).await;
            self.observe(sent, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let (mut conn, sent) = (self.current(), Instant::now());
        Box::pin(async move {
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.observe(sent, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the cluster of `STAMPEDE_TEST_CLUSTER_URL` (skipped when it is not set, as the
    /// cache conformance tests are): the clock and the replacement, not the wedge itself, which
    /// only a failover under load brings about (`scripts/cluster-bench`, its failover run).
    #[tokio::test]
    async fn failures_for_the_whole_period_replace_the_connection_once_and_an_answer_resets_the_clock(
    ) {
        let Ok(url) = std::env::var("STAMPEDE_TEST_CLUSTER_URL") else {
            eprintln!("skipped: STAMPEDE_TEST_CLUSTER_URL is not set");
            return;
        };
        let nodes = crate::redis_cache::cluster_nodes(&url)
            .expect("a redis+cluster:// URL")
            .expect("its nodes");
        let client = ClusterClient::new(nodes).expect("cluster URL");
        let healing = Healing::connect(client).await.expect("cluster");

        // A failure alone starts the clock, an answer stops it.
        let now = Instant::now;
        healing.observe::<()>(now(), &Err(RedisError::from((ErrorKind::Io, "test"))));
        assert!(healing.inner.failing_since.lock().unwrap().is_some());
        healing.observe(now(), &Ok(()));
        assert!(healing.inner.failing_since.lock().unwrap().is_none());
        // An error the cluster answered is an answer too.
        healing.observe::<()>(now(), &Err(RedisError::from((ErrorKind::Io, "test"))));
        healing.observe::<()>(
            now(),
            &Err(RedisError::from((
                ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                "WRONGTYPE",
            ))),
        );
        assert!(healing.inner.failing_since.lock().unwrap().is_none());

        // Failing for the whole period replaces it, once at a time, and the new one answers.
        assert!(healing.replace_now(), "a replacement starts");
        assert!(!healing.replace_now(), "not a second one meanwhile");
        for _ in 0..100 {
            if !healing.inner.replacing.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!healing.inner.replacing.load(Ordering::Acquire));
        let mut conn = healing.clone();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        assert_eq!(pong, "PONG");
    }
}
