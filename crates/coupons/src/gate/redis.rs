//! The gate as Lua scripts on Redis: each operation is one atomic round trip.

use std::sync::LazyLock;

use cache::RedisCache;
use redis::Script;
use uuid::Uuid;

use super::{
    coupon_key, pending_key, takes_key, unpublished_key, unpublished_member, users_key, Admission,
    PendingTask, Snapshot, Take, Withdrawal, PENDING_TTL_MS,
};

/// KEYS: coupon, users, unpublished. ARGV: user, now (ms), unpublished member.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expires = redis.call('HGET', KEYS[1], 'expiresAt')
if not expires then return 'UNKNOWN' end
if tonumber(ARGV[2]) >= tonumber(expires) then return 'EXPIRED' end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 'ALREADY_REQUESTED' end
local stock = tonumber(redis.call('HGET', KEYS[1], 'stock'))
if stock <= 0 then return 'SOLD_OUT' end
if tonumber(redis.call('HGET', KEYS[1], 'open')) <= 0 then
  if redis.call('EXISTS', KEYS[3]) == 1 then return 'HELD' end
  return 'SOLD_OUT'
end
local keep = redis.call('HGET', KEYS[1], 'keepUntil')
redis.call('HINCRBY', KEYS[1], 'open', -1)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], keep)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[3], keep)
return 'ADMITTED'
",
    )
});

/// KEYS: coupon, users, takes, unpublished. ARGV: user, task, keep (ms, when the coupon's
/// state is gone), unpublished member, `1` to forget the request (refused).
static UNDO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HSETNX', KEYS[3], ARGV[2], 'WITHDRAWN') == 0 then
  if redis.call('HGET', KEYS[3], ARGV[2]) == 'WITHDRAWN' then return 1 end
  redis.call('ZREM', KEYS[4], ARGV[4])
  return 0
end
local keep = redis.call('HGET', KEYS[1], 'keepUntil')
if keep then redis.call('PEXPIREAT', KEYS[3], keep)
elseif redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 and keep then
  redis.call('HINCRBY', KEYS[1], 'open', 1)
end
if ARGV[5] == '1' then redis.call('ZREM', KEYS[4], ARGV[4]) end
return 1
",
    )
});

/// Redis's clock in milliseconds (a script may read it: its effects are what replicate).
const NOW_MS: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
";

/// KEYS: coupon, takes. ARGV: task. Notes when a unit was last taken (for [`RESTOCK`]).
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r"
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then return done end
local stock = redis.call('HGET', KEYS[1], 'stock')
if not stock then return 'UNKNOWN' end
local outcome = 'SOLD_OUT'
if tonumber(stock) > 0 then
  redis.call('HINCRBY', KEYS[1], 'stock', -1)
  redis.call('HSET', KEYS[1], 'lastTake', now_ms())
  outcome = 'TAKEN'
end
redis.call('HSET', KEYS[2], ARGV[1], outcome)
redis.call('PEXPIREAT', KEYS[2], redis.call('HGET', KEYS[1], 'keepUntil'))
return outcome
"
    ))
});

/// KEYS: coupon, unpublished. ARGV: the database's remaining units, quiet (ms). Raises the
/// stock and the open units to what the database has left, once no unit was taken for
/// `quiet` and no request is unpublished; returns the units reopened.
static RESTOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_MS}{}",
        r"
local stock = redis.call('HGET', KEYS[1], 'stock')
if not stock then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'lastTake') or '0')
if now_ms() - last < tonumber(ARGV[2]) then return 0 end
local add = tonumber(ARGV[1]) - tonumber(stock)
if add <= 0 then return 0 end
local open = tonumber(redis.call('HGET', KEYS[1], 'open')) + add
redis.call('HSET', KEYS[1], 'stock', stock + add, 'open', math.min(open, stock + add))
return add
"
    ))
});

/// KEYS: coupon, takes. ARGV: task. A given-back take stays a take (`RETURNED` reads as
/// `TAKEN`): a redelivered task gets the outcome it had.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[2], ARGV[1]) ~= 'TAKEN' then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], 'RETURNED')
redis.call('HINCRBY', KEYS[1], 'stock', 1)
redis.call('HINCRBY', KEYS[1], 'open', 1)
return 1
",
    )
});

/// KEYS: coupon, users. ARGV: expiresAt (ms), stock, keepUntil (ms).
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'expiresAt', ARGV[1], 'stock', ARGV[2], 'open', ARGV[2], 'keepUntil', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return 1
",
    )
});

/// Runs the admission, then writes the admitted task's pending record (a key of its own, in
/// another slot). Nobody holds the task id before this returns, so nobody reads the record
/// in between; refusals, most of a rush's answers, cost one round trip.
pub(super) async fn admit(
    redis: &RedisCache,
    task: Uuid,
    pending: PendingTask,
    now_ms: i64,
) -> anyhow::Result<Admission> {
    let coupon = pending.coupon_id;
    let answer: String = redis
        .script(
            &ADMIT,
            &[
                &coupon_key(coupon),
                &users_key(coupon),
                &unpublished_key(coupon),
            ],
            &[
                pending.user_id.to_string(),
                now_ms.to_string(),
                unpublished_member(task, pending.user_id),
            ],
        )
        .await?;
    let admission = match answer.as_str() {
        "ADMITTED" => Admission::Admitted,
        "ALREADY_REQUESTED" => Admission::AlreadyRequested,
        "SOLD_OUT" => Admission::SoldOut,
        "EXPIRED" => Admission::Expired,
        "HELD" => Admission::Held,
        "UNKNOWN" => Admission::Unknown,
        other => anyhow::bail!("unexpected gate answer {other:?}"),
    };
    if admission == Admission::Admitted {
        let record = serde_json::to_string(&pending)?;
        let ttl = std::time::Duration::from_millis(PENDING_TTL_MS as u64);
        if let Err(error) = redis.set(&pending_key(task), &record, Some(ttl)).await {
            // Admitted without a record its status could be read from: withdrawn, as a
            // request whose publish failed is (the reconciler does it if this fails too).
            undo(redis, task, pending, Withdrawal::Refused).await?;
            return Err(error);
        }
    }
    Ok(admission)
}

pub(super) async fn undo(
    redis: &RedisCache,
    task: Uuid,
    pending: PendingTask,
    withdrawal: Withdrawal,
) -> anyhow::Result<bool> {
    let coupon = pending.coupon_id;
    let withdrawn = redis
        .script::<i64>(
            &UNDO,
            &[
                &coupon_key(coupon),
                &users_key(coupon),
                &takes_key(coupon),
                &unpublished_key(coupon),
            ],
            &[
                pending.user_id.to_string(),
                task.to_string(),
                PENDING_TTL_MS.to_string(),
                unpublished_member(task, pending.user_id),
                u8::from(withdrawal == Withdrawal::Refused).to_string(),
            ],
        )
        .await?;
    if withdrawal == Withdrawal::Refused {
        redis.delete(&pending_key(task)).await?;
    }
    Ok(withdrawn == 1)
}

pub(super) async fn settle(
    redis: &RedisCache,
    task: Uuid,
    pending: PendingTask,
) -> anyhow::Result<()> {
    redis::cmd("ZREM")
        .arg(redis.key(&unpublished_key(pending.coupon_id)))
        .arg(unpublished_member(task, pending.user_id))
        .query_async::<()>(&mut redis.connection())
        .await?;
    Ok(())
}

pub(super) async fn unpublished(
    redis: &RedisCache,
    coupons: &[i64],
    before_ms: i64,
    limit: usize,
) -> anyhow::Result<Vec<(Uuid, PendingTask)>> {
    // Each coupon's set lives in its own slot (no pipeline spans slots on a cluster): the reads
    // go out together instead, a chunk at a time, until `limit` are found.
    let mut found = Vec::new();
    for chunk in coupons.chunks(64) {
        if found.len() >= limit {
            break;
        }
        let reads = chunk.iter().map(|&coupon| {
            let mut conn = redis.connection();
            let mut read = redis::cmd("ZRANGEBYSCORE");
            read.arg(redis.key(&unpublished_key(coupon)))
                .arg("-inf")
                .arg(format!("({before_ms}"))
                .arg("LIMIT")
                .arg(0)
                .arg(limit);
            async move {
                Ok::<_, redis::RedisError>((
                    coupon,
                    read.query_async::<Vec<String>>(&mut conn).await?,
                ))
            }
        });
        for (coupon, members) in futures::future::try_join_all(reads).await? {
            found.extend(members.iter().filter_map(|member| {
                let (task, user) = member.split_once(':')?;
                let pending = PendingTask {
                    coupon_id: coupon,
                    user_id: user.parse().ok()?,
                };
                Some((task.parse().ok()?, pending))
            }));
        }
    }
    found.truncate(limit);
    Ok(found)
}

pub(super) async fn take(redis: &RedisCache, coupon: i64, task: Uuid) -> anyhow::Result<Take> {
    let answer: String = redis
        .script(
            &TAKE,
            &[&coupon_key(coupon), &takes_key(coupon)],
            &[task.to_string()],
        )
        .await?;
    Ok(match answer.as_str() {
        "TAKEN" | "RETURNED" => Take::Taken,
        "SOLD_OUT" => Take::SoldOut,
        "WITHDRAWN" => Take::Withdrawn,
        "UNKNOWN" => Take::Unknown,
        other => anyhow::bail!("unexpected stock answer {other:?}"),
    })
}

pub(super) async fn give_back(redis: &RedisCache, coupon: i64, task: Uuid) -> anyhow::Result<()> {
    redis
        .script::<i64>(
            &GIVE_BACK,
            &[&coupon_key(coupon), &takes_key(coupon)],
            &[task.to_string()],
        )
        .await?;
    Ok(())
}

pub(super) async fn restock(
    redis: &RedisCache,
    coupon: i64,
    remaining: i64,
    quiet: std::time::Duration,
) -> anyhow::Result<i64> {
    redis
        .script(
            &RESTOCK,
            &[&coupon_key(coupon), &unpublished_key(coupon)],
            &[remaining.to_string(), quiet.as_millis().to_string()],
        )
        .await
}

pub(super) async fn pending(redis: &RedisCache, task: Uuid) -> anyhow::Result<Option<PendingTask>> {
    match redis.get(&pending_key(task)).await? {
        Some(json) => Ok(Some(serde_json::from_str(&json)?)),
        None => Ok(None),
    }
}

/// Adds the users first (harmless on their own: nothing is admitted until the coupon's hash
/// exists), then creates the hash unless another loader already did.
pub(super) async fn load(redis: &RedisCache, snapshot: &Snapshot) -> anyhow::Result<()> {
    let coupon = snapshot.coupon_id;
    let users = redis.key(&users_key(coupon));
    let mut conn = redis.connection();
    for chunk in snapshot.users.chunks(5_000) {
        redis::cmd("SADD")
            .arg(&users)
            .arg(chunk)
            .query_async::<()>(&mut conn)
            .await?;
    }
    redis
        .script::<i64>(
            &LOAD,
            &[&coupon_key(coupon), &users_key(coupon)],
            &[
                snapshot.expires_at_ms.to_string(),
                snapshot.stock.to_string(),
                snapshot.keep_until_ms.to_string(),
            ],
        )
        .await?;
    Ok(())
}
