//! `stampede`: serve, migrate, administer.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use eventbus::EventBus;
use points::users::{create_admin, AdminCreated};
use secrecy::ExposeSecret;
use server::{
    operations::{events_status, progress},
    startup::connect_database,
    telemetry, Application, Role, Settings,
};

// The allocator was chosen on measurements (ARCHITECTURE.md, "Memory").
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "stampede",
    version,
    about = "E-commerce backend for flash-sale traffic"
)]
struct Cli {
    /// Configuration file (TOML); default: ./stampede.toml if present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the API and the event consumers.
    Serve {
        /// Which parts to run (overrides the configuration).
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Applies database migrations.
    Migrate,
    /// Administrator accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The event pipeline: its status, and dead-lettered events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Orders, as the deployment's records tell them.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Waiting rooms: their status, rate and line.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The popular-products ranking.
    #[command(subcommand)]
    Ranking(RankingCommand),
    /// Test data for load tests, written into the deployment's database: users sharing one
    /// password, an admin, products and coupons; and a file of their ids and tokens.
    Seed {
        #[command(flatten)]
        plan: server::seed::SeedPlan,
        /// Where to write the ids and tokens.
        #[arg(long, default_value = "stampede-seed.json")]
        out: PathBuf,
    },
    /// Prints the OpenAPI document an `all` or `api` instance serves (docs/openapi.json).
    Openapi,
    /// Drives a deployment with a scenario, reports latency per step and checks the
    /// invariants afterwards (exits non-zero when one is broken).
    Load(loadkit::cli::LoadArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints the effective configuration (defaults, file, environment), one key a line,
    /// secrets and URL passwords redacted.
    Show,
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// The saga of one order: each event, when it was written and published, which consumer
    /// groups applied it and how long after, and its dead letters.
    Trace {
        /// The order's id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum RoomsCommand {
    /// The newest rooms, one a line: status, sale, rate, waiting and admitted.
    List,
    /// One room: its definition, its line's figures and its rate history.
    Show {
        /// The room's id.
        id: i64,
    },
}

#[derive(Subcommand)]
enum RankingCommand {
    /// Drops the ranking's counts in the cache and counts them again from the paid orders of
    /// the last 30 days (a server also does this by itself when it finds them missing).
    Rebuild,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates an admin account, or promotes the account that has this email.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "admin")]
        name: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// The outbox backlog, and each consumer group's lag and pending dead letters.
    Status,
    /// Lists dead-lettered events that were neither replayed nor discarded (one JSON object a
    /// line), oldest first.
    DeadLetters {
        #[command(flatten)]
        filter: DeadLetterFilter,
    },
    /// Marks dead letters as not to be replayed (they stay on record): one with --id, or every
    /// pending one the filters select (at least one filter).
    Discard {
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        filter: DeadLetterFilter,
    },
    /// Publishes dead-lettered events again: one with --id, the pending ones the filters
    /// select, or every pending one with --all. A letter discarded meanwhile is skipped.
    Replay {
        #[arg(long)]
        id: Option<i64>,
        #[command(flatten)]
        filter: DeadLetterFilter,
        /// Every pending dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

/// Which dead letters a command means.
#[derive(clap::Args)]
struct DeadLetterFilter {
    /// Only this topic's.
    #[arg(long)]
    topic: Option<String>,
    /// Only this consumer group's.
    #[arg(long)]
    group: Option<String>,
    /// Only those dead-lettered since: a duration back from now (30m, 2h, 7d) or an RFC 3339
    /// time.
    #[arg(long, value_parser = parse_since)]
    since: Option<chrono::DateTime<chrono::Utc>>,
}

impl DeadLetterFilter {
    fn is_empty(&self) -> bool {
        self.topic.is_none() && self.group.is_none() && self.since.is_none()
    }

    fn into_filter(self) -> eventbus::dead_letters::Filter {
        eventbus::dead_letters::Filter {
            topic: self.topic,
            consumer: self.group,
            since: self.since,
        }
    }
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.into());
    }
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let amount: i64 = number.parse().map_err(|_| {
        format!("{text:?} is neither a duration (30m, 2h, 7d) nor an RFC 3339 time")
    })?;
    let span = match unit {
        "s" => chrono::Duration::seconds(amount),
        "m" => chrono::Duration::minutes(amount),
        "h" => chrono::Duration::hours(amount),
        "d" => chrono::Duration::days(amount),
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    Ok(chrono::Utc::now() - span)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    telemetry::init(settings.log_format);
    match cli.command {
        Command::Serve { role } => serve(settings, role).await,
        Command::Migrate => {
            connect_database(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin(AdminCommand::Create {
            email,
            password,
            name,
        }) => create_admin_account(&settings, &email, &password, &name).await,
        Command::Ranking(RankingCommand::Rebuild) => rebuild_ranking(&settings).await,
        Command::Load(args) => {
            // A crowd holds a connection per virtual user; its worker processes inherit this.
            if let Err(error) = server::limits::Descriptors::raise() {
                eprintln!("could not raise the file-descriptor limit: {error}");
            }
            loadkit::cli::load(args).await
        }
        Command::Openapi => {
            let document = server::http::openapi(Role::All);
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        Command::Seed { plan, out } => seed(&settings, &plan, &out).await,
        Command::Config(ConfigCommand::Show) => {
            print!("{}", settings.show());
            Ok(())
        }
        Command::Orders(OrdersCommand::Trace { id }) => trace_order(&settings, id).await,
        Command::Rooms(command) => {
            let state = server::startup::connect(settings).await?;
            let now = chrono::Utc::now();
            let shown = match command {
                RoomsCommand::List => rooms::report::list(&state.rooms, now).await,
                RoomsCommand::Show { id } => rooms::report::show(&state.rooms, id, now).await,
            };
            match shown {
                Ok(text) => print!("{text}"),
                Err(rooms::RoomError::NotFound) => anyhow::bail!("no such room"),
                Err(error) => return Err(error.into()),
            }
            Ok(())
        }
        Command::Events(EventsCommand::Status) => {
            let state = server::startup::connect(settings).await?;
            print!("{}", events_status(&state).await?);
            Ok(())
        }
        Command::Events(EventsCommand::DeadLetters { filter }) => {
            list_dead_letters(&settings, filter).await
        }
        Command::Events(EventsCommand::Discard { id, filter }) => {
            discard_dead_letters(&settings, id, filter).await
        }
        Command::Events(EventsCommand::Replay { id, filter, all }) => {
            replay_dead_letters(&settings, id, filter, all).await
        }
    }
}

/// `serve`: the server, as `role` (or the configured role), until SIGINT or SIGTERM.
async fn serve(mut settings: Settings, role: Option<Role>) -> anyhow::Result<()> {
    for (old, now) in server::config::renamed_variables() {
        tracing::info!("{old} is read as {now}, the name it has since configuration has sections");
    }
    if let Some(role) = role {
        settings.role = role;
    }
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// `admin create`.
async fn create_admin_account(
    settings: &Settings,
    email: &str,
    password: &str,
    name: &str,
) -> anyhow::Result<()> {
    let db = connect_database(settings).await?;
    match create_admin(&db, email, password, name).await? {
        AdminCreated::Created { id } => println!("admin {email} created (user {id})"),
        AdminCreated::Promoted { id } => println!("user {id} ({email}) is now an admin"),
    }
    Ok(())
}

/// `ranking rebuild`: drops the counts in Redis and recounts them from paid orders.
async fn rebuild_ranking(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.cache.url.expose_secret();
    if url.starts_with("memory:") {
        println!(
            "the embedded ranking lives in the server's memory and is rebuilt from the \
             database when it starts: nothing to do"
        );
        return Ok(());
    }
    let db = connect_database(settings).await?;
    let cache = cache::Cache::connect(url, &settings.cache.prefix).await?;
    let ranking = ranking::Ranking::new(db, &cache, settings.ranking.settings()?);
    let added = ranking::rebuild::rebuild_from_scratch(&ranking, |read| {
        progress(&format!("paid order lines read: {read}"));
    })
    .await?;
    eprintln!();
    println!("ranking rebuilt: {added} paid order lines counted");
    Ok(())
}

/// `seed`: load-test data in the database, and its file.
async fn seed(
    settings: &Settings,
    plan: &server::seed::SeedPlan,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let seeded = server::seed::seed(settings, plan).await?;
    server::seed::write(&seeded, out)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `orders trace`.
async fn trace_order(settings: &Settings, id: i64) -> anyhow::Result<()> {
    let db = connect_database(settings).await?;
    match orders::trace::trace(&db, id).await {
        Ok(trace) => print!("{trace}"),
        Err(orders::OrderError::NotFound) => anyhow::bail!("no order {id}"),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

/// `events dead-letters`: one JSON object a line.
async fn list_dead_letters(settings: &Settings, filter: DeadLetterFilter) -> anyhow::Result<()> {
    let db = connect_database(settings).await?;
    let filter = filter.into_filter();
    for letter in eventbus::dead_letters::pending(&db).await? {
        if filter.matches(&letter) {
            println!("{}", serde_json::to_string(&letter)?);
        }
    }
    Ok(())
}

/// `events discard`: needs a selection.
async fn discard_dead_letters(
    settings: &Settings,
    id: Option<i64>,
    filter: DeadLetterFilter,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        id.is_some() || !filter.is_empty(),
        "name the dead letters to discard: --id N, or --topic / --group / --since"
    );
    let db = connect_database(settings).await?;
    let ids = chosen_letters(&db, id, filter).await?;
    let discarded = eventbus::dead_letters::discard(&db, &ids).await?;
    println!("{discarded} dead letter(s) discarded");
    Ok(())
}

/// `events replay`: needs a selection, or `--all`.
async fn replay_dead_letters(
    settings: &Settings,
    id: Option<i64>,
    filter: DeadLetterFilter,
    all: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        id.is_some() || !filter.is_empty() || all,
        "name the dead letters to replay: --id N, --topic / --group / --since, or --all"
    );
    let db = connect_database(settings).await?;
    let ids = chosen_letters(&db, id, filter).await?;
    let bus = EventBus::connect(&settings.bus.url, db.clone(), settings.bus_settings()).await?;
    let replayed = eventbus::dead_letters::replay(&db, bus.outbox(), &ids, |done| {
        progress(&format!("replayed: {done}"));
    })
    .await?;
    if replayed > 0 {
        eprintln!();
    }
    println!("{replayed} dead-lettered event(s) sent to the outbox again");
    Ok(())
}

/// The pending dead letters `id` and `filter` select (all of them when neither says more).
async fn chosen_letters(
    db: &db::Db,
    id: Option<i64>,
    filter: DeadLetterFilter,
) -> anyhow::Result<Vec<i64>> {
    let filter = filter.into_filter();
    Ok(eventbus::dead_letters::pending(db)
        .await?
        .into_iter()
        .filter(|letter| id.is_none_or(|id| letter.id == id) && filter.matches(letter))
        .map(|letter| letter.id)
        .collect())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight work");
}
