//! The bus conformance suite: the guarantees of `eventbus`, checked on every bus.
//!
//! - `sqlite_db_bus`: the embedded default, in every `cargo test`;
//! - `postgres_db_bus`: when `STAMPEDE_TEST_DATABASE_URL` is set;
//! - `kafka_bus`: when `STAMPEDE_TEST_BUS_URL` is set (on PostgreSQL when that is set too).
//!
//! Each test gets its own SQLite file or PostgreSQL schema and its own topic prefix, so the
//! tests run in parallel. No test sleeps: they wait for the bus to be idle.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use db::{exec, on_db, sqlx, Backend, Db, Tx};
use eventbus::{BusSettings, EventBus, Handler, RetryPolicy};
use events::Envelope;
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "conformance";
const IDLE: Duration = Duration::from_secs(60);

struct Fixture {
    /// Workers of one group run at the same time (PostgreSQL row claims), so both must get work.
    concurrent_workers: bool,
    db: Db,
    bus_url: String,
    settings: BusSettings,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn sqlite() -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bus.db", dir.path().display());
        Self::build(Db::connect(&url, None).await.unwrap(), "db://".into(), dir).await
    }

    async fn postgres() -> Option<Self> {
        init_logs();
        let url = env_or_skip("STAMPEDE_TEST_DATABASE_URL")?;
        let db = Db::connect(&url, Some(&unique("t_"))).await.unwrap();
        let mut fixture = Self::build(db, "db://".into(), tempfile::tempdir().unwrap()).await;
        fixture.concurrent_workers = true;
        Some(fixture)
    }

    async fn kafka() -> Option<Self> {
        init_logs();
        let bus_url = env_or_skip("STAMPEDE_TEST_BUS_URL")?;
        let dir = tempfile::tempdir().unwrap();
        let db = match std::env::var("STAMPEDE_TEST_DATABASE_URL") {
            Ok(url) => Db::connect(&url, Some(&unique("t_"))).await.unwrap(),
            Err(_) => Db::connect(&format!("sqlite://{}/bus.db", dir.path().display()), None)
                .await
                .unwrap(),
        };
        Some(Self::build(db, bus_url, dir).await)
    }

    async fn build(db: Db, bus_url: String, dir: tempfile::TempDir) -> Self {
        db.migrate().await.unwrap();
        let id_column = match db.backend() {
            Backend::Sqlite => "id INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "id BIGSERIAL PRIMARY KEY",
        };
        let mut tx = db.begin().await.unwrap();
        exec!(
            tx,
            &format!(
                "CREATE TABLE effects ({id_column}, consumer TEXT NOT NULL, event_id TEXT NOT NULL, \
                 event_key TEXT NOT NULL, n BIGINT NOT NULL, worker TEXT NOT NULL)"
            )
        )
        .unwrap();
        tx.commit().await.unwrap();
        let settings = BusSettings {
            partitions: 4,
            topic_prefix: unique("t-") + "-",
            extra_topics: vec![TOPIC.into()],
            batch_size: 64,
            retry: RetryPolicy {
                max_attempts: 3,
                first_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
            ..BusSettings::default()
        };
        Self {
            concurrent_workers: false,
            db,
            bus_url,
            settings,
            _dir: dir,
        }
    }

    /// A bus as one process would have it, with its relay running.
    async fn process(&self, shutdown: &CancellationToken) -> EventBus {
        let bus = EventBus::connect(&self.bus_url, self.db.clone(), self.settings.clone())
            .await
            .unwrap();
        bus.start(shutdown).await.unwrap();
        bus
    }

    async fn append(&self, bus: &EventBus, events: &[Envelope]) {
        let mut tx = self.db.begin().await.unwrap();
        bus.outbox().append(&mut tx, events).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// Effects recorded by `group`, in the order they were applied.
    async fn effects(&self, group: &str) -> Vec<Effect> {
        on_db!(&self.db, c => sqlx::query_as(
            "SELECT event_id, event_key, n, worker FROM effects WHERE consumer = $1 ORDER BY id",
        )
        .bind(group)
        .fetch_all(c)
        .await)
        .unwrap()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct Effect {
    event_id: String,
    event_key: String,
    n: i64,
    worker: String,
}

/// Logs to the test output when `TEST_LOG` is set (quiet otherwise).
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

fn env_or_skip(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("skipped: {name} is not set");
    }
    value
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

fn event(key: &str, n: i64) -> Envelope {
    Envelope::raw(
        TOPIC,
        key,
        key.into(),
        None,
        1,
        serde_json::json!({ "n": n }),
    )
}

/// Records each event as a row of `effects`, in the consumer's transaction. Fails (and counts
/// the attempt) for the events whose `n` is listed in `poison` while `poisoned` is set, or
/// while `outage` is above 0 (counting it down) as if a dependency refused connections.
struct Recorder {
    group: String,
    worker: String,
    poison: Vec<i64>,
    poisoned: Arc<AtomicBool>,
    poison_attempts: Arc<AtomicUsize>,
    outage: Arc<AtomicUsize>,
}

impl Recorder {
    fn new(group: &str, worker: &str) -> Self {
        Self {
            group: group.into(),
            worker: worker.into(),
            poison: Vec::new(),
            poisoned: Arc::new(AtomicBool::new(false)),
            poison_attempts: Arc::new(AtomicUsize::new(0)),
            outage: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[async_trait]
impl Handler for Recorder {
    fn group(&self) -> &str {
        &self.group
    }

    fn topics(&self) -> Vec<String> {
        vec![TOPIC.into()]
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let n = event.payload["n"].as_i64().unwrap_or_default();
        exec!(
            tx,
            "INSERT INTO effects (consumer, event_id, event_key, n, worker) VALUES ($1, $2, $3, $4, $5)",
            &self.group,
            event.id.to_string(),
            &event.key,
            n,
            &self.worker
        )?;
        let down = || {
            self.outage
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        };
        if self.poison.contains(&n) && down() {
            self.poison_attempts.fetch_add(1, Ordering::SeqCst);
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(anyhow::Error::from(refused).context("the cache is down"));
        }
        if self.poison.contains(&n) && self.poisoned.load(Ordering::SeqCst) {
            self.poison_attempts.fetch_add(1, Ordering::SeqCst);
            anyhow::bail!("poisoned event {n}");
        }
        Ok(())
    }
}

/// Per key, the `n`s in the order they were applied.
fn by_key(effects: &[Effect]) -> BTreeMap<String, Vec<i64>> {
    let mut keys: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for effect in effects {
        keys.entry(effect.event_key.clone())
            .or_default()
            .push(effect.n);
    }
    keys
}

fn assert_each_once(effects: &[Effect], expected: usize) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for effect in effects {
        *seen.entry(&effect.event_id).or_default() += 1;
    }
    let doubles: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubles.is_empty(), "events applied twice: {doubles:?}");
    assert_eq!(seen.len(), expected, "every event applied once");
}

async fn events_with_one_key_are_consumed_in_the_order_written(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("orderly", "w1")), &shutdown);
    for round in 0..20 {
        let batch: Vec<_> = (0..10)
            .map(|i| event(&format!("key-{}", i % 5), round * 10 + i))
            .collect();
        f.append(&bus, &batch).await;
    }
    bus.wait_idle(IDLE).await.unwrap();
    let effects = f.effects("orderly").await;
    assert_each_once(&effects, 200);
    for (key, ns) in by_key(&effects) {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "events of {key} out of order");
        assert_eq!(ns.len(), 40);
    }
    shutdown.cancel();
}

async fn a_consumer_restarted_mid_stream_loses_nothing(f: Fixture) {
    let relay = CancellationToken::new();
    let bus = f.process(&relay).await;
    let first = CancellationToken::new();
    let consumers = bus.spawn_consumer(Arc::new(Recorder::new("restarts", "first")), &first);
    let batch: Vec<_> = (0..200).map(|n| event(&format!("k{}", n % 7), n)).collect();
    f.append(&bus, &batch).await;
    while f.effects("restarts").await.is_empty() {
        tokio::task::yield_now().await;
    }
    first.cancel();
    for task in consumers {
        task.await.unwrap();
    }
    let stopped_at = f.effects("restarts").await.len();
    let more: Vec<_> = (200..300)
        .map(|n| event(&format!("k{}", n % 7), n))
        .collect();
    f.append(&bus, &more).await;

    let second = CancellationToken::new();
    let bus = f.process(&second).await;
    bus.spawn_consumer(Arc::new(Recorder::new("restarts", "second")), &second);
    bus.wait_idle(IDLE).await.unwrap();
    let effects = f.effects("restarts").await;
    assert_each_once(&effects, 300);
    assert!(effects.iter().any(|e| e.worker == "second"));
    eprintln!("first consumer stopped after {stopped_at} of 200 events");
    for (key, ns) in by_key(&effects) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key} out of order");
    }
    relay.cancel();
    second.cancel();
}

async fn a_redelivered_event_has_one_effect(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("dedupe", "w1")), &shutdown);
    let once = event("dup", 1);
    // A relay that crashed after publishing and before marking re-sends the same envelope.
    f.append(&bus, std::slice::from_ref(&once)).await;
    f.append(&bus, &[once.clone(), event("dup", 2), once.clone()])
        .await;
    bus.wait_idle(IDLE).await.unwrap();
    let effects = f.effects("dedupe").await;
    assert_each_once(&effects, 2);
    assert_eq!(by_key(&effects)["dup"], vec![1, 2]);
    shutdown.cancel();
}

async fn an_event_that_keeps_failing_is_dead_lettered_and_can_be_replayed(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    let mut recorder = Recorder::new("poisoned", "w1");
    recorder.poison = vec![1];
    recorder.poisoned.store(true, Ordering::SeqCst);
    let (poisoned, attempts) = (recorder.poisoned.clone(), recorder.poison_attempts.clone());
    bus.spawn_consumer(Arc::new(recorder), &shutdown);
    let bad = event("poison", 1);
    f.append(&bus, &[event("poison", 0), bad.clone(), event("poison", 2)])
        .await;
    bus.wait_idle(IDLE).await.unwrap();

    assert_eq!(attempts.load(Ordering::SeqCst), 3, "max_attempts = 3");
    let letters = eventbus::dead_letters::pending(&f.db).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event_id, bad.id);
    assert_eq!(letters[0].consumer, "poisoned");
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].error.contains("poisoned event 1"),
        "{}",
        letters[0].error
    );
    // The effect of a failed attempt was rolled back; the events after it went on, in order.
    assert_eq!(by_key(&f.effects("poisoned").await)["poison"], vec![0, 2]);

    poisoned.store(false, Ordering::SeqCst);
    let chosen = [letters[0].id];
    assert_eq!(
        eventbus::dead_letters::replay(&f.db, bus.outbox(), &chosen, |_| {})
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        eventbus::dead_letters::replay(&f.db, bus.outbox(), &chosen, |_| {})
            .await
            .unwrap(),
        0,
        "a letter is replayed once"
    );
    bus.wait_idle(IDLE).await.unwrap();
    assert_eq!(
        by_key(&f.effects("poisoned").await)["poison"],
        vec![0, 2, 1]
    );
    assert!(eventbus::dead_letters::pending(&f.db)
        .await
        .unwrap()
        .is_empty());
    shutdown.cancel();
}

async fn an_event_whose_dependency_is_down_waits_for_it_and_is_never_dead_lettered(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    let mut recorder = Recorder::new("waiting", "w1");
    recorder.poison = vec![1];
    // Three times the attempts that dead-letter an event that is itself at fault.
    recorder.outage.store(9, Ordering::SeqCst);
    let (outage, attempts) = (recorder.outage.clone(), recorder.poison_attempts.clone());
    bus.spawn_consumer(Arc::new(recorder), &shutdown);
    f.append(
        &bus,
        &[event("wait", 0), event("wait", 1), event("wait", 2)],
    )
    .await;
    bus.wait_idle(IDLE).await.unwrap();

    assert_eq!(outage.load(Ordering::SeqCst), 0);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        9,
        "every failure was retried"
    );
    assert!(eventbus::dead_letters::pending(&f.db)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(by_key(&f.effects("waiting").await)["wait"], vec![0, 1, 2]);
    shutdown.cancel();
}

/// Records like [`Recorder`], but its first call never returns: the worker hangs, as one does
/// whose broker connection is wedged.
struct Hangs {
    recorder: Recorder,
    hung: AtomicBool,
}

#[async_trait]
impl Handler for Hangs {
    fn group(&self) -> &str {
        self.recorder.group()
    }

    fn topics(&self) -> Vec<String> {
        self.recorder.topics()
    }

    async fn handle(&self, tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        if !self.hung.swap(true, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.recorder.handle(tx, event).await
    }
}

async fn a_consumer_that_stops_handling_while_events_wait_is_reported_and_restarted(
    mut f: Fixture,
) {
    f.settings.stall_after = Duration::from_millis(300);
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(
        Arc::new(Hangs {
            recorder: Recorder::new("hangs", "w1"),
            hung: AtomicBool::new(false),
        }),
        &shutdown,
    );
    f.append(&bus, &[event("stall", 0), event("stall", 1)])
        .await;
    let reported = tokio::time::timeout(IDLE, async {
        while bus.stalled().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bus.stalled()
    })
    .await
    .expect("the stall is reported");
    assert_eq!(reported, ["hangs"]);
    bus.wait_idle(IDLE).await.unwrap();
    assert_eq!(by_key(&f.effects("hangs").await)["stall"], vec![0, 1]);
    let cleared = tokio::time::timeout(IDLE, async {
        while !bus.stalled().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(cleared.is_ok(), "the report clears once events are handled");
    shutdown.cancel();
}

async fn two_consumer_groups_each_see_every_event(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("group-a", "a")), &shutdown);
    bus.spawn_consumer(Arc::new(Recorder::new("group-b", "b")), &shutdown);
    let batch: Vec<_> = (0..150)
        .map(|n| event(&format!("k{}", n % 11), n))
        .collect();
    f.append(&bus, &batch).await;
    bus.wait_idle(IDLE).await.unwrap();
    assert_each_once(&f.effects("group-a").await, 150);
    assert_each_once(&f.effects("group-b").await, 150);
    shutdown.cancel();
}

async fn two_workers_of_one_group_split_the_work_with_no_double_effect(f: Fixture) {
    let shutdown = CancellationToken::new();
    let one = f.process(&shutdown).await;
    let two = f.process(&shutdown).await;
    one.spawn_consumer(Arc::new(Recorder::new("shared", "one")), &shutdown);
    two.spawn_consumer(Arc::new(Recorder::new("shared", "two")), &shutdown);
    for chunk in 0..20 {
        let batch: Vec<_> = (0..25)
            .map(|i| chunk * 25 + i)
            .map(|n| event(&format!("k{}", n % 13), n))
            .collect();
        f.append(&one, &batch).await;
    }
    one.wait_idle(IDLE).await.unwrap();
    two.wait_idle(IDLE).await.unwrap();
    let effects = f.effects("shared").await;
    assert_each_once(&effects, 500);
    for (key, ns) in by_key(&effects) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key} out of order");
    }
    let by_one = effects.iter().filter(|e| e.worker == "one").count();
    eprintln!(
        "worker one applied {by_one} of 500, worker two {}",
        500 - by_one
    );
    if f.concurrent_workers {
        assert!(by_one > 0 && by_one < 500, "both workers took a share");
    }
    shutdown.cancel();
}

async fn published_events_and_dedupe_records_past_retention_are_pruned(mut f: Fixture) {
    f.settings.retention = Duration::ZERO;
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("pruned", "w1")), &shutdown);
    f.append(&bus, &[event("k", 1), event("k", 2)]).await;
    bus.wait_idle(IDLE).await.unwrap();
    assert_eq!(
        bus.prune().await.unwrap(),
        4,
        "2 outbox rows and 2 dedupe records"
    );
    let left: i64 = on_db!(&f.db, c => sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(c)
        .await)
    .unwrap();
    assert_eq!(left, 0);
    f.append(&bus, &[event("k", 3)]).await;
    bus.wait_idle(IDLE).await.unwrap();
    assert_eq!(by_key(&f.effects("pruned").await)["k"], vec![1, 2, 3]);
    shutdown.cancel();
}

async fn events_published_directly_are_consumed_like_outbox_ones(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("direct", "w1")), &shutdown);
    for chunk in 0..5 {
        let batch: Vec<_> = (0..20)
            .map(|i| chunk * 20 + i)
            .map(|n| event(&format!("k{}", n % 3), n))
            .collect();
        bus.publish_now(&batch).await.unwrap();
    }
    bus.wait_idle(IDLE).await.unwrap();
    let effects = f.effects("direct").await;
    assert_each_once(&effects, 100);
    for (key, ns) in by_key(&effects) {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key} out of order");
    }
    shutdown.cancel();
}

async fn concurrent_direct_publishers_each_land_once(f: Fixture) {
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("concurrent", "w1")), &shutdown);
    let publishers = (0..200).map(|n| {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish_now(&[event(&format!("k{}", n % 7), n)]).await })
    });
    for published in futures::future::join_all(publishers).await {
        published.unwrap().unwrap();
    }
    bus.wait_idle(IDLE).await.unwrap();
    assert_each_once(&f.effects("concurrent").await, 200);
    shutdown.cancel();
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite_db_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Fixture::sqlite().await).await
            })*
        }
        mod postgres_db_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(fixture) = super::Fixture::postgres().await {
                    super::$test(fixture).await
                }
            })*
        }
        mod kafka_bus {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(fixture) = super::Fixture::kafka().await {
                    super::$test(fixture).await
                }
            })*
        }
    };
}

conformance!(
    events_with_one_key_are_consumed_in_the_order_written,
    a_consumer_restarted_mid_stream_loses_nothing,
    a_redelivered_event_has_one_effect,
    an_event_that_keeps_failing_is_dead_lettered_and_can_be_replayed,
    an_event_whose_dependency_is_down_waits_for_it_and_is_never_dead_lettered,
    a_consumer_that_stops_handling_while_events_wait_is_reported_and_restarted,
    two_consumer_groups_each_see_every_event,
    two_workers_of_one_group_split_the_work_with_no_double_effect,
    published_events_and_dedupe_records_past_retention_are_pruned,
    events_published_directly_are_consumed_like_outbox_ones,
    concurrent_direct_publishers_each_land_once,
);

/// A message that is not an event (from some other producer) is skipped and committed past,
/// even when it is the last one of its partition.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumers_skip_and_commit_past_a_message_that_is_not_an_event() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(f) = Fixture::kafka().await else {
        return;
    };
    let shutdown = CancellationToken::new();
    let bus = f.process(&shutdown).await;
    bus.spawn_consumer(Arc::new(Recorder::new("strict", "w1")), &shutdown);
    bus.publish_now(&[event("same-key", 1)]).await.unwrap();
    let brokers = f.bus_url.trim_start_matches("kafka://");
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let topic = format!("{}{TOPIC}", f.settings.topic_prefix);
    producer
        .send(
            FutureRecord::to(&topic)
                .key("same-key")
                .payload("not an envelope"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    bus.wait_idle(IDLE).await.unwrap();
    assert_eq!(by_key(&f.effects("strict").await)["same-key"], vec![1]);
    shutdown.cancel();
}
