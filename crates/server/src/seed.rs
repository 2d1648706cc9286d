//! `stampede seed`: test data for a load test, written straight into a deployment's database —
//! users sharing one password hash, an admin, products with stock, coupons — and a file of
//! their ids and access tokens signed with the deployment's secret. Running it again finds what
//! the first run made and makes only what is missing.

use std::io::Write as _;

use anyhow::Context as _;
use catalog::{NewOption, NewProduct};
use coupons::{DiscountType, NewCoupon};
use db::{on_db, sqlx, Db};
pub use loadkit::{Seeded, SeededUser};
use points::users::seed::{seed_email, SEED_DOMAIN};
use secrecy::ExposeSecret as _;

use crate::{operations::progress, startup::connect_database, tokens::Tokens, Settings};

/// The password every seeded account shares. Test data only: never seed a real deployment.
pub const SEED_PASSWORD: &str = "load-test-only";

/// What to seed.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedPlan {
    /// Users `seed-{i}@load.stampede.invalid`.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Products, each with three options.
    #[arg(long, default_value_t = 20)]
    pub products: usize,
    /// Stock of every option.
    #[arg(long, default_value_t = 1_000_000)]
    pub stock: i64,
    /// Coupons (FIXED 1,000 KRW, expiring in 30 days).
    #[arg(long, default_value_t = 3)]
    pub coupons: usize,
    /// Units of each coupon.
    #[arg(long, default_value_t = 1_000)]
    pub coupon_quantity: i64,
    /// How long the written tokens stay valid, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    pub token_ttl_secs: u64,
}

/// Seeds `plan` into the deployment of `settings`, reporting progress on stderr.
pub async fn seed(settings: &Settings, plan: &SeedPlan) -> anyhow::Result<Seeded> {
    let db = connect_database(settings).await?;
    let cache = cache::Cache::connect(settings.cache_url.expose_secret(), &settings.cache_prefix)
        .await
        .context("cache")?;
    let mut token_settings = settings.clone();
    token_settings.token_ttl_secs = plan.token_ttl_secs;
    let tokens = Tokens::load(&token_settings, &db).await?;

    let hash = points::users::hash_password(SEED_PASSWORD)?;
    let total = plan.users;
    let ids = points::users::seed::seed(&db, total, &hash, |done| {
        progress(&format!("users {done}/{total}"));
    })
    .await?;
    let users = ids
        .into_iter()
        .map(|id| {
            Ok(SeededUser {
                id,
                token: tokens.issue(id, false)?.0,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    eprintln!();

    let admin_email = format!("seed-admin@{SEED_DOMAIN}");
    let admin_id =
        match points::users::create_admin(&db, &admin_email, SEED_PASSWORD, "seed admin").await? {
            points::users::AdminCreated::Created { id }
            | points::users::AdminCreated::Promoted { id } => id,
        };
    let admin = SeededUser {
        id: admin_id,
        token: tokens.issue(admin_id, true)?.0,
    };

    let catalog = catalog::Catalog::new(db.clone(), cache.clone());
    let mut products = seeded(&db, "products", "Load product ").await?;
    for i in products.len()..plan.products {
        let options = ["S", "M", "L"]
            .iter()
            .enumerate()
            .map(|(k, size)| NewOption {
                name: format!("size {size}"),
                price: 10_000 + 1_000 * (i as i64 % 10) + 500 * k as i64,
                stock: plan.stock,
            })
            .collect();
        let new = NewProduct {
            name: format!("Load product {i}"),
            category: "load test".into(),
            description: "A product seeded for load tests.".into(),
            options,
        };
        products.push(catalog::product::create(&catalog, new).await?.id);
        progress(&format!("products {}/{}", i + 1, plan.products));
    }
    products.truncate(plan.products);

    let bus = eventbus::EventBus::connect(&settings.bus_url, db.clone(), settings.bus_settings())
        .await
        .context("event bus")?;
    let coupons_context = coupons::Coupons::new(db.clone(), cache, bus);
    let mut coupons = seeded(&db, "coupons", "Load coupon ").await?;
    for i in coupons.len()..plan.coupons {
        let new = NewCoupon {
            name: format!("Load coupon {i}"),
            discount_type: DiscountType::Fixed,
            discount_value: 1_000,
            total_quantity: plan.coupon_quantity,
            expires_at: chrono::Utc::now() + chrono::Duration::days(30),
        };
        coupons.push(coupons::definition::create(&coupons_context, new).await?.id);
    }
    coupons.truncate(plan.coupons);
    eprintln!(
        "\nseeded: {} users (password {SEED_PASSWORD:?}, e.g. {}), an admin, {} products, {} coupons",
        users.len(),
        seed_email(0),
        products.len(),
        coupons.len()
    );
    db.close().await;
    Ok(Seeded {
        admin,
        users,
        products,
        coupons,
    })
}

/// Writes `seeded` to `path` as JSON.
pub fn write(seeded: &Seeded, path: &std::path::Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut out, seeded)?;
    out.flush()?;
    Ok(())
}

/// Ids of the rows of `table` (`products` or `coupons`) a seed made earlier, by name prefix.
async fn seeded(db: &Db, table: &str, prefix: &str) -> anyhow::Result<Vec<i64>> {
    let sql = format!("SELECT id FROM {table} WHERE name LIKE $1 ORDER BY id");
    let ids: Vec<i64> = on_db!(db, c => sqlx::query_scalar(&sql)
        .bind(format!("{prefix}%"))
        .fetch_all(c)
        .await)?;
    Ok(ids)
}
