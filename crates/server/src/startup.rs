//! Building and running the application (the server as an object, so tests run the real thing
//! on port 0).

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use cache::Cache;
use db::Db;
use eventbus::{EventBus, Handler};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Role, Settings},
    http::{self, place_streams::PlaceStreams},
    serve::{serve, ConnectionLimits},
    state::{AppState, Handles},
};

/// A built application: adapters connected, migrations applied, listener bound.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects what `settings` name ([`connect`]) and binds the listener. Fails with a message
    /// naming the part that could not start.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        hold_what_the_process_can(&mut settings);
        let bind = settings.bind;
        let state = connect(settings).await?;
        let listener = listen(bind).with_context(|| format!("binding {bind}"))?;
        tracing::info!(deployment = state.settings.describe(), "started");
        Ok(Self { listener, state })
    }

    pub fn address(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.address().port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting requests, ends open streams,
    /// lets in-flight requests finish and event batches too, and closes the database, all
    /// within the grace period (what still runs at its end is dropped).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self { listener, state } = self;
        let stop = CancellationToken::new();
        let mut tasks = state.bus.start(&stop).await.context("starting the relay")?;
        if state.settings.role != Role::Api {
            for handler in consumers(&state) {
                tasks.extend(state.bus.spawn_consumer(handler, &stop));
            }
            tasks.push(tokio::spawn(orders::sweeper::run(
                state.orders.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(coupons::issue::reconcile::run(
                state.coupons.clone(),
                stop.clone(),
            )));
        }
        // Every role ticks the rooms: admission is idempotent across instances, and the api
        // instances refresh the streams they hold.
        tasks.push(tokio::spawn(rooms::tick::run(
            state.rooms.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(housekeeping(state.db.clone(), stop.clone())));
        tasks.push(tokio::spawn(crate::refusals::run(stop.clone())));
        let address = listener.local_addr()?;
        tracing::info!("listening on http://{address}");
        let settings = &state.settings;
        let limits = ConnectionLimits {
            header_timeout: Duration::from_millis(settings.http.header_timeout_ms),
            max_connections: settings.http.max_connections,
            request_timeout: Duration::from_millis(settings.http.request_timeout_ms),
            grace: Duration::from_millis(settings.shutdown_grace_ms),
        };
        let router = http::router(state.clone(), settings.role);
        let place_streams = (settings.role != Role::Worker)
            .then(|| PlaceStreams::new(state.clone(), limits.header_timeout));
        let began = serve(
            listener,
            router,
            limits,
            shutdown,
            state.shutdown.clone(),
            place_streams,
        )
        .await;
        stop.cancel();
        // The background work (a relay's publish, a consumer's batch, a tick) finishes within
        // what is left of the grace, and is dropped after: each is at-least-once, so what it
        // had not committed is done again by the next instance.
        let finishing = async {
            for task in tasks.iter_mut() {
                let _ = task.await;
            }
            state.db.close().await;
        };
        if tokio::time::timeout_at(began + limits.grace, finishing)
            .await
            .is_err()
        {
            let unfinished = tasks.iter().filter(|task| !task.is_finished()).count();
            tracing::warn!(
                unfinished,
                "grace period over; stopping the background work still running"
            );
            for task in &tasks {
                task.abort();
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The connections the kernel queues for the server before it accepts them: a sale's opening
/// rush arrives faster than one accept loop, and a short queue (128, the usual default) drops
/// the excess SYNs, which costs each such client a second or more of retransmission (the
/// kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 65_535;

fn listen(bind: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if bind.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(bind)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises the descriptor limit to the hard limit and sets the connection and stream caps to
/// what the descriptors and memory allow (`limits::Capacity`), saying so in the log.
fn hold_what_the_process_can(settings: &mut Settings) {
    let descriptors = match crate::limits::Descriptors::raise() {
        Ok((before, after)) => {
            tracing::info!(
                soft = after.soft,
                hard = after.hard,
                was = before.soft,
                "file descriptors: raised to the hard limit"
            );
            after.soft
        }
        Err(error) => {
            let soft = crate::limits::Descriptors::current().map_or(1_024, |d| d.soft);
            tracing::warn!(%error, soft, "file descriptors: the limit could not be raised");
            soft
        }
    };
    let capacity = crate::limits::Capacity::plan(descriptors, &settings.http, &settings.sse);
    for cut in &capacity.cut {
        tracing::warn!("{cut}");
    }
    tracing::info!(
        connections = capacity.connections,
        streams = capacity.streams,
        by_descriptors = capacity.by_descriptors,
        by_memory = capacity.by_memory,
        "capacity: connections and streams held at once"
    );
    settings.http.max_connections = capacity.connections;
    settings.sse.max_streams = capacity.streams;
}

/// Connects the database (applying migrations), the cache and the bus named by `settings`, and
/// builds the contexts on them: the state a server runs on, and what the operations commands
/// read.
pub async fn connect(settings: Settings) -> anyhow::Result<AppState> {
    let db = connect_database(&settings).await?;
    let cache = Cache::connect(settings.cache.url.expose_secret(), &settings.cache.prefix)
        .await
        .context("cache")?;
    let bus = EventBus::connect(&settings.bus.url, db.clone(), settings.bus_settings())
        .await
        .context("event bus")?;
    anyhow::ensure!(
        settings.role == Role::All || cache.kind() != "memory",
        "--role api and --role worker share coupon gates and task results through the cache: \
         set STAMPEDE_CACHE_URL to a redis:// URL (memory:// serves one process, --role all)"
    );
    let tokens = crate::tokens::Tokens::load(
        settings.jwt_secret.as_ref(),
        Duration::from_secs(settings.token_ttl_secs),
        &db,
    );
    let tokens = Arc::new(tokens.await?);
    let coupons = coupons::Coupons::new(db.clone(), cache.clone(), bus.clone())
        .with_settings(settings.coupon.settings()?);
    let catalog = catalog::Catalog::new(db.clone(), cache.clone());
    let orders = orders::Orders::new(
        db.clone(),
        cache.clone(),
        bus.clone(),
        settings.orders.settings(),
    );
    let ranking = ranking::Ranking::new(db.clone(), &cache, settings.ranking.settings()?);
    let rooms = rooms::Rooms::new(
        db.clone(),
        cache.clone(),
        tokens.place_key(),
        settings.room.clone(),
        Arc::new(crate::sales::Sales { db: db.clone() }),
    );
    Ok(AppState::new(Handles {
        hashing: points::users::Hashing::new(settings.password.limits()),
        limits: Arc::new(crate::limits::Limits::new(
            &settings.http,
            &settings.sse,
            &settings.rate,
        )?),
        settings: Arc::new(settings),
        db,
        cache,
        bus,
        metrics: http::metrics::recorder(),
        metrics_refresh: crate::limits::Throttle::new(Duration::from_secs(1)),
        tokens,
        coupons,
        catalog,
        orders,
        ranking,
        rooms,
        shutdown: CancellationToken::new(),
    }))
}

/// Hourly clean-up of what the HTTP layer keeps: idempotency keys past their retention.
async fn housekeeping(db: Db, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            () = stop.cancelled() => return,
        }
        match crate::idempotency::prune(&db, crate::idempotency::RETENTION).await {
            Ok(pruned) => tracing::debug!(pruned, "idempotency keys pruned"),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "pruning idempotency keys failed"
            ),
        }
    }
}

/// Connects the configured database and applies the migrations.
pub async fn connect_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(
        &settings.database_url(),
        settings.database.schema.as_deref(),
    )
    .await
    .context("database")?;
    db.migrate().await.context("applying database migrations")?;
    Ok(db)
}

/// The event consumers of a worker: the coupon issuance flow, every step of the order saga
/// and the ranking.
pub fn consumers(state: &AppState) -> Vec<Arc<dyn Handler>> {
    [
        state.coupons.handlers(),
        state.catalog.handlers(&state.bus),
        state.orders.handlers(),
        state.ranking.handlers(),
    ]
    .concat()
}
