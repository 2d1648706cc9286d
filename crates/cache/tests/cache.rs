//! Cache conformance: the same behaviour from the in-process cache, from one Redis node
//! (`STAMPEDE_TEST_CACHE_URL`) and from a Redis Cluster (`STAMPEDE_TEST_CLUSTER_URL`), each
//! test under its own key prefix.

use std::time::Duration;

use cache::Cache;

fn prefix() -> String {
    format!("t{}:", uuid::Uuid::now_v7().simple())
}

/// The Redis deployments configured (one node, a cluster), each skipped when not set.
fn redis_urls() -> Vec<String> {
    let urls: Vec<String> = ["STAMPEDE_TEST_CACHE_URL", "STAMPEDE_TEST_CLUSTER_URL"]
        .into_iter()
        .filter_map(|name| match std::env::var(name) {
            Ok(url) => Some(url),
            Err(_) => {
                eprintln!("skipped on it: {name} is not set");
                None
            }
        })
        .collect();
    urls
}

async fn connect(url: &str, prefix: &str) -> Cache {
    Cache::connect(url, prefix).await.unwrap()
}

async fn values_expire_and_can_be_deleted(cache: Cache) {
    cache.set("a", "1", None).await.unwrap();
    cache
        .set("b", "2", Some(Duration::from_millis(30)))
        .await
        .unwrap();
    assert_eq!(cache.get("a").await.unwrap().as_deref(), Some("1"));
    assert_eq!(cache.get("b").await.unwrap().as_deref(), Some("2"));
    // Waiting out a TTL is what this test is about; there is no event to wait for instead.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(cache.get("b").await.unwrap(), None);
    cache.delete("a").await.unwrap();
    assert_eq!(cache.get("a").await.unwrap(), None);
    cache.ping().await.unwrap();
}

async fn a_subscriber_gets_messages_published_after_it_subscribed(
    publisher: Cache,
    subscriber: Cache,
) {
    let mut results = subscriber.subscribe("task:1");
    let mut other = subscriber.subscribe("task:2");
    publisher.publish("task:1", "SUCCESS").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), results.recv())
        .await
        .expect("message delivered");
    assert_eq!(got.as_deref(), Some("SUCCESS"));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), other.recv())
            .await
            .is_err(),
        "other channels get nothing"
    );
}

#[tokio::test]
async fn memory_values_expire_and_can_be_deleted() {
    values_expire_and_can_be_deleted(Cache::connect("memory://", "").await.unwrap()).await;
}

#[tokio::test]
async fn redis_values_expire_and_can_be_deleted() {
    for url in redis_urls() {
        values_expire_and_can_be_deleted(connect(&url, &prefix()).await).await;
    }
}

#[tokio::test]
async fn memory_subscribers_get_messages() {
    let cache = Cache::connect("memory://", "").await.unwrap();
    a_subscriber_gets_messages_published_after_it_subscribed(cache.clone(), cache).await;
}

#[tokio::test]
async fn redis_messages_reach_subscribers_of_another_instance_with_the_same_prefix_only() {
    for url in redis_urls() {
        let prefix = prefix();
        let (one, two) = (connect(&url, &prefix).await, connect(&url, &prefix).await);
        let stranger = connect(&url, &format!("other-{prefix}")).await;
        let mut strangers = stranger.subscribe("task:1");
        a_subscriber_gets_messages_published_after_it_subscribed(one, two).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), strangers.recv())
                .await
                .is_err(),
            "another prefix is another deployment"
        );
    }
}

#[tokio::test]
async fn redis_messages_of_many_channels_each_reach_their_subscribers() {
    // On a cluster the channels spread over the shard channels, and so over the primaries.
    for url in redis_urls() {
        let prefix = prefix();
        let (publisher, subscriber) = (connect(&url, &prefix).await, connect(&url, &prefix).await);
        let mut subscriptions: Vec<_> = (0..200)
            .map(|n| subscriber.subscribe(&format!("order:{n}")))
            .collect();
        for n in 0..200 {
            publisher
                .publish(&format!("order:{n}"), &format!("PAID {n}"))
                .await
                .unwrap();
        }
        for (n, subscription) in subscriptions.iter_mut().enumerate() {
            let got = tokio::time::timeout(Duration::from_secs(5), subscription.recv())
                .await
                .expect("message delivered");
            assert_eq!(got, Some(format!("PAID {n}")), "{url}");
        }
    }
}

#[tokio::test]
async fn redis_scripts_run_atomically_on_prefixed_keys() {
    for url in redis_urls() {
        let prefix = prefix();
        let Cache::Redis(redis) = connect(&url, &prefix).await else {
            unreachable!("a Redis URL")
        };
        let take = redis::Script::new(
            "local left = tonumber(redis.call('GET', KEYS[1]) or ARGV[1]) \
             if left <= 0 then return -1 end \
             redis.call('SET', KEYS[1], left - 1) return left - 1",
        );
        let mut handles = Vec::new();
        for _ in 0..50 {
            let (redis, take) = (redis.clone(), take.clone());
            handles.push(tokio::spawn(async move {
                redis
                    .script::<i64>(&take, &["stock"], &["10".into()])
                    .await
                    .unwrap()
            }));
        }
        let mut taken = 0;
        for handle in handles {
            if handle.await.unwrap() >= 0 {
                taken += 1;
            }
        }
        assert_eq!(taken, 10, "exactly the stock is taken");
        let raw: Option<String> = redis::cmd("GET")
            .arg(format!("{prefix}stock"))
            .query_async(&mut redis.connection())
            .await
            .unwrap();
        assert_eq!(raw.as_deref(), Some("0"), "the key carries the prefix");
    }
}

async fn hits_are_counted_per_key_until_the_window_ends(cache: Cache) {
    let window = Duration::from_millis(300);
    for expected in 1..=3 {
        let (count, left) = cache.hit("login:a@b.co", window).await.unwrap();
        assert_eq!(count, expected);
        assert!(left <= window && !left.is_zero(), "{left:?}");
    }
    assert_eq!(cache.hit("login:c@d.co", window).await.unwrap().0, 1);
    cache.forgive("login:a@b.co").await.unwrap();
    assert_eq!(
        cache.hit("login:a@b.co", window).await.unwrap().0,
        3,
        "a forgiven hit does not count"
    );
    cache.forgive("login:never@b.co").await.unwrap();
    assert_eq!(cache.get("login:never@b.co").await.unwrap(), None);
    // The window's end is what this test is about; there is no event to wait for instead.
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    assert_eq!(
        cache.hit("login:a@b.co", window).await.unwrap().0,
        1,
        "a new window"
    );
}

#[tokio::test]
async fn memory_hits_are_counted_per_key_until_the_window_ends() {
    hits_are_counted_per_key_until_the_window_ends(Cache::connect("memory://", "").await.unwrap())
        .await;
}

#[tokio::test]
async fn redis_hits_are_counted_per_key_until_the_window_ends() {
    for url in redis_urls() {
        hits_are_counted_per_key_until_the_window_ends(connect(&url, &prefix()).await).await;
    }
}

#[tokio::test]
async fn a_channel_is_forgotten_with_its_last_subscription() {
    let cache = Cache::connect("memory://", "").await.unwrap();
    let first = cache.subscribe("order:1");
    let second = cache.subscribe("order:1");
    let other = cache.subscribe("order:2");
    assert_eq!(cache.subscribed_channels(), 2);
    drop(first);
    assert_eq!(
        cache.subscribed_channels(),
        2,
        "order:1 still has a subscriber"
    );
    drop((second, other));
    assert_eq!(cache.subscribed_channels(), 0);
}
