//! Rebuilding the day counts from the paid orders in the database, when the cache lost them
//! (automatically, on the first read that finds them missing) or on an operator's command.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use metrics::counter;
use orders::sales::{paid_since, Cursor};

use crate::{record::record, store::Line, Ranking, MAX_DAYS};

/// Payments read per page.
const PAGE: i64 = 1_000;

/// Counts every line paid within the longest window that the counts do not hold yet, then
/// marks them built; how many lines were added. Safe beside a running consumer: each line
/// counts once, whoever adds it first. Sales paid after the last page reach the counts
/// through `product-sold`, which the outbox wrote with their payment.
pub async fn rebuild(ranking: &Ranking) -> anyhow::Result<u64> {
    rebuild_reporting(ranking, &mut |_| {}).await
}

/// [`rebuild`], calling `progress` with the number of paid lines read after each page.
async fn rebuild_reporting(
    ranking: &Ranking,
    progress: &mut (dyn FnMut(usize) + Send),
) -> anyhow::Result<u64> {
    let started = std::time::Instant::now();
    let window = ranking.window(Utc::now(), MAX_DAYS);
    let since = ranking.day_start(*window.last().expect("a window has days"));
    let (mut cursor, mut added, mut read) = (Cursor::default(), 0, 0);
    loop {
        let (sales, next) = paid_since(&ranking.db, since, cursor, PAGE).await?;
        read += sales.len();
        progress(read);
        let mut by_day: BTreeMap<NaiveDate, (chrono::DateTime<Utc>, Vec<Line>)> = BTreeMap::new();
        for sale in sales {
            by_day
                .entry(ranking.day_of(sale.paid_at))
                .or_insert_with(|| (sale.paid_at, Vec::new()))
                .1
                .push(Line {
                    order_id: sale.order_id,
                    product_option_id: sale.product_option_id,
                    product_id: sale.product_id,
                    quantity: sale.quantity,
                });
        }
        for (at, lines) in by_day.into_values() {
            added += record(ranking, at, &lines).await?;
        }
        match next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    ranking.store.mark_built().await?;
    counter!("stampede_ranking_rebuilds_total").increment(1);
    tracing::info!(
        lines_read = read,
        lines_added = added,
        took_ms = started.elapsed().as_millis() as u64,
        "ranking rebuilt from paid orders"
    );
    Ok(added)
}

/// Forgets every count of the window, then rebuilds them from the database: what an operator
/// runs when the counts are in doubt. Readers meanwhile may see partial counts for a moment.
/// `progress` hears the number of paid lines read after each page.
pub async fn rebuild_from_scratch(
    ranking: &Ranking,
    mut progress: impl FnMut(usize) + Send,
) -> anyhow::Result<u64> {
    forget(ranking).await?;
    rebuild_reporting(ranking, &mut progress).await
}

/// Drops the counts from the cache, as a flush or a restart of Redis would: the next read
/// rebuilds them.
pub async fn forget(ranking: &Ranking) -> anyhow::Result<()> {
    // A day past the window and one ahead, for clocks and time zones that disagree.
    let now = Utc::now() + chrono::Days::new(1);
    ranking
        .store
        .clear(&ranking.window(now, MAX_DAYS + 2))
        .await
}

/// [`rebuild`]s unless another caller of this process did while this one waited, or the
/// counts are built by now.
pub(crate) async fn rebuild_if_missing(
    ranking: &Ranking,
    days: &[NaiveDate],
) -> anyhow::Result<std::collections::HashMap<i64, i64>> {
    let _one = ranking.rebuilding.lock().await;
    if let Some(totals) = ranking.store.totals(days).await? {
        return Ok(totals);
    }
    rebuild(ranking).await?;
    Ok(ranking.store.totals(days).await?.unwrap_or_default())
}
