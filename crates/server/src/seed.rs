//! `stampede seed`: test data for a load test, written straight into a deployment's database —
//! users sharing one password hash, an admin, products with stock, coupons — and a file of
//! their ids and access tokens signed with the deployment's secret. Running it again finds what
//! the first run made and makes only what is missing.
//!
//! Each run draws a new random password for the seeded accounts (and re-keys those an earlier
//! run made), written only to the seed file, which is readable by its owner alone: a seeded
//! deployment has no login anyone could know from this code. A database holding accounts the
//! seed did not make is refused unless `--force`.

use std::io::Write as _;

use anyhow::Context as _;
use catalog::{NewOption, NewProduct};
use coupons::{DiscountType, NewCoupon};
use db::{on_db, sqlx, Db};
pub use loadkit::{Seeded, SeededUser};
use points::users::seed::{seed_email, SEED_DOMAIN};
use secrecy::ExposeSecret as _;

use crate::{operations::progress, startup::connect_database, tokens::Tokens, Settings};

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
    /// How long the written tokens stay valid, in seconds (60 to 7 days).
    #[arg(long, default_value_t = 24 * 3600,
        value_parser = clap::value_parser!(u64).range(60..=7 * 24 * 3600))]
    pub token_ttl_secs: u64,
    /// Seed even though the database holds accounts the seed did not make (a deployment with
    /// real users): the seeded admin and users are added beside them.
    #[arg(long)]
    pub force: bool,
}

/// Seeds `plan` into the deployment of `settings`, reporting progress on stderr.
pub async fn seed(settings: &Settings, plan: &SeedPlan) -> anyhow::Result<Seeded> {
    let db = connect_database(settings).await?;
    let cache = cache::Cache::connect(settings.cache.url.expose_secret(), &settings.cache.prefix)
        .await
        .context("cache")?;
    let ttl = std::time::Duration::from_secs(plan.token_ttl_secs);
    let tokens = Tokens::load(settings.jwt_secret.as_ref(), ttl, &db).await?;
    let others = points::users::seed::other_accounts(&db).await?;
    anyhow::ensure!(
        others == 0 || plan.force,
        "the database holds {others} account(s) that `seed` did not make: seeding would add an \
         admin and test accounts beside real users. Seed a deployment of its own, or pass \
         --force if this one is only for load tests"
    );

    let password = random_password();
    let hash = points::users::hash_password(&password)?;
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
        match points::users::create_admin(&db, &admin_email, &password, "seed admin").await? {
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

    let bus = eventbus::EventBus::connect(&settings.bus.url, db.clone(), settings.bus_settings())
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
        "\nseeded: {} users (e.g. {}), an admin ({admin_email}), {} products, {} coupons; \
         their password is in the seed file",
        users.len(),
        seed_email(0),
        products.len(),
        coupons.len()
    );
    db.close().await;
    Ok(Seeded {
        password,
        admin,
        users,
        products,
        coupons,
    })
}

/// A password of 24 random hex digits (96 bits: the first 12 digits of a v4 UUID are all
/// random), within the 5–30 characters every password has.
fn random_password() -> String {
    let (one, two) = (uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    format!("{}{}", &one.to_string()[..12], &two.to_string()[..12])
}

/// Writes `seeded` to `path` as JSON, readable and writable by its owner only (it holds the
/// accounts' password and admin token).
pub fn write(seeded: &Seeded, path: &std::path::Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
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
