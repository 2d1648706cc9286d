//! The `product-sold` consumer: adds a paid line's units to its sale day, once per line.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use db::Tx;
use eventbus::Handler;
use events::{order::ProductSold, topics, Envelope};
use metrics::counter;

use crate::{store::Line, Ranking};

/// Consumer group `ranking`. Its effect is in the cache, not in the transaction: the store
/// counts each line once, so a delivery whose transaction rolled back and comes again adds
/// nothing.
pub struct RecordSale {
    ranking: Ranking,
}

impl RecordSale {
    pub fn new(ranking: Ranking) -> Self {
        Self { ranking }
    }
}

#[async_trait]
impl Handler for RecordSale {
    fn group(&self) -> &str {
        "ranking"
    }

    fn topics(&self) -> Vec<String> {
        vec![topics::PRODUCT_SOLD.to_owned()]
    }

    async fn handle(&self, _tx: &mut Tx, event: &Envelope) -> anyhow::Result<()> {
        let sold: ProductSold = event.decode()?;
        let line = Line {
            order_id: sold.order_id,
            product_option_id: sold.product_option_id,
            product_id: sold.product_id,
            quantity: sold.quantity,
        };
        record(&self.ranking, sold.sold_at, &[line]).await?;
        Ok(())
    }
}

/// Counts `lines` sold at `at` on their day, unless the day is past every window; how many
/// lines were new.
pub(crate) async fn record(
    ranking: &Ranking,
    at: DateTime<Utc>,
    lines: &[Line],
) -> anyhow::Result<u64> {
    let day = ranking.day_of(at);
    let expires = ranking.day_expiry(day);
    if expires <= Utc::now() {
        return Ok(0);
    }
    let added = ranking.store.add(day, expires, lines).await?;
    counter!("stampede_ranking_lines_counted_total").increment(added);
    Ok(added)
}
