//! A unit the database still has is never left unsold because the gate lost count of it: a
//! Redis failover can lose the last writes before it (replication is asynchronous), and a take
//! replayed after its record was lost, or a lost give-back, leaves the gate counting fewer
//! units than the database. Once a live coupon's sale is quiet (no unit taken for a while, no
//! request unpublished), its gate is raised to what the database has left.

use std::time::Duration;

use chrono::Utc;
use db::{on_db, sqlx};
use metrics::counter;

use crate::Coupons;

/// Raises the gate of every live coupon with units left to the database's count, where the
/// sale has been quiet for `quiet` (`IssueSettings::restock_after`; were units on their way
/// counted twice, the database would still refuse the extra requests: it is the judge);
/// returns the units reopened.
pub async fn restock_lost_units(coupons: &Coupons, quiet: Duration) -> anyhow::Result<i64> {
    let live: Vec<(i64, i64)> = on_db!(&coupons.db, c => sqlx::query_as(
        "SELECT id, total_quantity - issued_quantity FROM coupons \
         WHERE expires_at > $1 AND issued_quantity < total_quantity ORDER BY id",
    )
    .bind(Utc::now())
    .fetch_all(c)
    .await)?;
    let mut reopened = 0;
    for (coupon, remaining) in live {
        let units = coupons.gate.restock(coupon, remaining, quiet).await?;
        if units > 0 {
            tracing::warn!(
                coupon_id = coupon,
                units,
                "reopened units the coupon gate had lost count of (a write lost by the cache)"
            );
            counter!("stampede_coupon_units_reopened_total").increment(units as u64);
            reopened += units;
        }
    }
    Ok(reopened)
}
