//! The counts on Redis: one sorted set per day (product → units) and the set of the lines it
//! counted, changed together by one Lua script so that a line counts once.

use std::{collections::HashMap, sync::LazyLock};

use cache::RedisCache;
use chrono::{DateTime, NaiveDate, Utc};
use redis::Script;

use super::{day_key, lines_key, Line, BUILT_KEY};

/// KEYS: day, day's lines. ARGV: expiry (ms), then (line, product, units) per line.
static ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZINCRBY', KEYS[1], ARGV[i + 2], ARGV[i + 1])
    added = added + 1
  end
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], ARGV[1])
return added
",
    )
});

/// KEYS: built marker, then the days. Nothing when the counts are not built.
static TOTALS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local union = {'ZUNION', #KEYS - 1}
for i = 2, #KEYS do union[#union + 1] = KEYS[i] end
union[#union + 1] = 'WITHSCORES'
return redis.call(unpack(union))
",
    )
});

pub(super) async fn add(
    redis: &RedisCache,
    day: NaiveDate,
    expires: DateTime<Utc>,
    lines: &[Line],
) -> anyhow::Result<u64> {
    let mut args = Vec::with_capacity(1 + 3 * lines.len());
    args.push(expires.timestamp_millis().to_string());
    for line in lines {
        args.push(line.id());
        args.push(line.product_id.to_string());
        args.push(line.quantity.to_string());
    }
    redis
        .script(&ADD, &[&day_key(day), &lines_key(day)], &args)
        .await
}

pub(super) async fn totals(
    redis: &RedisCache,
    days: &[NaiveDate],
) -> anyhow::Result<Option<HashMap<i64, i64>>> {
    let keys: Vec<String> = days.iter().map(|d| day_key(*d)).collect();
    let mut all: Vec<&str> = vec![BUILT_KEY];
    all.extend(keys.iter().map(String::as_str));
    let reply: Option<Vec<(String, f64)>> = redis.script(&TOTALS, &all, &[]).await?;
    reply
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(product, units)| Ok((product.parse()?, units as i64)))
                .collect()
        })
        .transpose()
}

pub(super) async fn mark_built(redis: &RedisCache) -> anyhow::Result<()> {
    redis::cmd("SET")
        .arg(redis.key(BUILT_KEY))
        .arg(Utc::now().to_rfc3339())
        .query_async::<()>(&mut redis.connection())
        .await?;
    Ok(())
}

pub(super) async fn clear(redis: &RedisCache, days: &[NaiveDate]) -> anyhow::Result<()> {
    let mut del = redis::cmd("DEL");
    del.arg(redis.key(BUILT_KEY));
    for day in days {
        del.arg(redis.key(&day_key(*day)))
            .arg(redis.key(&lines_key(*day)));
    }
    del.query_async::<()>(&mut redis.connection()).await?;
    Ok(())
}
