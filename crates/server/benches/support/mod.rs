//! What the server benches share: the deployments they measure and how they start them (they
//! send their load with the load kit's `loadkit::batch`).

// Not every bench uses every helper.
#![allow(dead_code)]

use server::Settings;
use testkit::SharedServices;

/// The deployments to measure, by name: the embedded default always, production (in a
/// namespace of its own) when the `STAMPEDE_TEST_*` URLs are set. Files go under `dir`.
pub fn deployments(dir: &std::path::Path) -> Vec<(&'static str, Settings)> {
    let settings = || {
        let mut settings = Settings {
            bind: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.to_owned(),
            ..Settings::default()
        };
        // A bench's few users place many orders each: the per-user abuse limits would refuse
        // them (they have tests of their own).
        settings.orders.max_open = i64::MAX;
        settings.rate.orders = u64::MAX;
        settings
    };
    let mut deployments = vec![("embedded", settings())];
    if let Some(services) = SharedServices::from_env() {
        let mut production = settings();
        let namespace = format!("bench_{}", uuid::Uuid::now_v7().simple());
        production.share_services(
            &services.database,
            &services.cache,
            &services.bus,
            &namespace,
        );
        deployments.push(("production", production));
    }
    deployments
}

/// Creates, as `admin`, a FIXED coupon of `stock` units that expires in an hour; its id.
pub async fn create_coupon(
    address: std::net::SocketAddr,
    admin: &str,
    stock: usize,
) -> anyhow::Result<i64> {
    let body = serde_json::json!({
        "name": "bench flash sale",
        "discountType": "FIXED",
        "discountValue": 1000,
        "totalQuantity": stock,
        "expiresAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
    });
    let created = loadkit::batch::send_once(
        address,
        &loadkit::batch::post("/api/admin/coupons", admin, &body.to_string()),
    )
    .await?;
    let coupon: serde_json::Value = serde_json::from_str(&created)?;
    coupon["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no coupon id in {created}"))
}

/// The number in environment variable `name`, or `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The app serving in this process, until [`Running::stop`].
pub struct Running {
    pub address: std::net::SocketAddr,
    pub state: server::AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds the app of `settings` and serves it on a task of this runtime.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let app = server::Application::build(settings).await?;
    let (address, state) = (app.address(), app.state().clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Ok(Running {
        address,
        state,
        stop,
        server,
    })
}

impl Running {
    /// Stops the app gracefully and waits until it has.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await?
    }
}
