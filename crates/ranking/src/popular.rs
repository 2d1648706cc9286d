//! `GET /api/products/popular`: the products with the most paid units over the last `days`
//! days, best first, ties by product id; each answer kept briefly in this process.

use std::{collections::HashMap, sync::RwLock, time::Instant};

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{rebuild::rebuild_if_missing, Ranking, RankingError, MAX_DAYS, MAX_LIMIT};

/// One product of the ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PopularProduct {
    /// From 1, best first.
    pub rank: u32,
    pub product_id: i64,
    pub name: String,
    pub category: String,
    pub sold_quantity: i64,
}

/// Serialized answers by `(days, limit)`, with when they were made.
#[derive(Default)]
pub(crate) struct Answers {
    kept: RwLock<HashMap<(u32, u32), (Instant, Bytes)>>,
    /// One computation at a time, so an expired answer is made once, not by every waiter.
    making: tokio::sync::Mutex<()>,
}

impl Answers {
    /// The kept answer of `key` and whether it is younger than `ttl`.
    fn kept(&self, key: (u32, u32), ttl: std::time::Duration) -> Option<(Bytes, bool)> {
        let kept = self.kept.read().expect("answers lock");
        kept.get(&key)
            .map(|(made, body)| (body.clone(), made.elapsed() < ttl))
    }
}

/// The ranking as its JSON array, from this process's kept answers when one is fresh. While
/// another request makes answers, or when making one fails (the cache is down), the last
/// answer is served as it is, if there is one.
pub async fn popular_json(ranking: &Ranking, days: i64, limit: i64) -> Result<Bytes, RankingError> {
    let key = validate(days, limit)?;
    let ttl = ranking.settings.answer_ttl;
    let answers = &ranking.answers;
    let stale = match answers.kept(key, ttl) {
        Some((body, true)) => return Ok(body),
        Some((body, false)) => Some(body),
        None => None,
    };
    let _making = match (answers.making.try_lock(), &stale) {
        (Ok(making), _) => making,
        (Err(_), Some(stale)) => return Ok(stale.clone()),
        (Err(_), None) => answers.making.lock().await,
    };
    if let Some((body, true)) = answers.kept(key, ttl) {
        return Ok(body);
    }
    let list = match popular(ranking, days, limit).await {
        Ok(list) => list,
        Err(error) => {
            let Some(stale) = stale else {
                return Err(error);
            };
            tracing::warn!(
                error = format!("{error:#}"),
                "the ranking could not be read; serving the last answer"
            );
            return Ok(stale);
        }
    };
    let body = Bytes::from(serde_json::to_vec(&list).map_err(anyhow::Error::from)?);
    answers
        .kept
        .write()
        .expect("answers lock")
        .insert(key, (Instant::now(), body.clone()));
    Ok(body)
}

/// The ranking as it is now (nothing kept): the `limit` products with the most units paid
/// over the last `days` days.
pub async fn popular(
    ranking: &Ranking,
    days: i64,
    limit: i64,
) -> Result<Vec<PopularProduct>, RankingError> {
    let (days, limit) = validate(days, limit)?;
    let window = ranking.window(Utc::now(), days);
    let totals = match ranking.store.totals(&window).await? {
        Some(totals) => totals,
        None => rebuild_if_missing(ranking, &window).await?,
    };
    let mut best: Vec<(i64, i64)> = totals.into_iter().filter(|(_, units)| *units > 0).collect();
    best.sort_unstable_by_key(|&(product, units)| (std::cmp::Reverse(units), product));
    best.truncate(limit as usize);
    let ids: Vec<i64> = best.iter().map(|(product, _)| *product).collect();
    let names: HashMap<i64, catalog::product::ProductName> =
        catalog::product::names(&ranking.db, &ids)
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
    Ok(best
        .into_iter()
        .filter_map(|(product, units)| names.get(&product).map(|p| (p, units)))
        .enumerate()
        .map(|(n, (p, units))| PopularProduct {
            rank: n as u32 + 1,
            product_id: p.id,
            name: p.name.clone(),
            category: p.category.clone(),
            sold_quantity: units,
        })
        .collect())
}

/// `(days, limit)` when both are in range.
fn validate(days: i64, limit: i64) -> Result<(u32, u32), RankingError> {
    if !(1..=i64::from(MAX_DAYS)).contains(&days) {
        return Err(RankingError::Invalid {
            field: "days",
            message: "must be 1 to 30",
        });
    }
    if !(1..=i64::from(MAX_LIMIT)).contains(&limit) {
        return Err(RankingError::Invalid {
            field: "limit",
            message: "must be 1 to 100",
        });
    }
    Ok((days as u32, limit as u32))
}
