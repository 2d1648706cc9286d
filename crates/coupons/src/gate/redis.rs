//! The gate as Lua scripts on Redis: each operation is one atomic round trip.

use std::sync::LazyLock;

use cache::RedisCache;
use redis::Script;
use uuid::Uuid;

use super::{
    coupon_key, pending_key, takes_key, users_key, Admission, PendingTask, Snapshot, Take,
    PENDING_TTL_MS,
};

/// KEYS: coupon, users, pending task. ARGV: user, now (ms), pending JSON, pending TTL (ms).
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local expires = redis.call('HGET', KEYS[1], 'expiresAt')
if not expires then return 'UNKNOWN' end
if tonumber(ARGV[2]) >= tonumber(expires) then return 'EXPIRED' end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 'ALREADY_REQUESTED' end
if tonumber(redis.call('HGET', KEYS[1], 'open')) <= 0
  or tonumber(redis.call('HGET', KEYS[1], 'stock')) <= 0 then return 'SOLD_OUT' end
redis.call('HINCRBY', KEYS[1], 'open', -1)
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIREAT', KEYS[2], redis.call('HGET', KEYS[1], 'keepUntil'))
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
return 'ADMITTED'
",
    )
});

/// KEYS: coupon, users, pending task, takes. ARGV: user, task, keep (ms, when the coupon's
/// state is gone).
static UNDO: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HSETNX', KEYS[4], ARGV[2], 'WITHDRAWN') == 0 then
  if redis.call('HGET', KEYS[4], ARGV[2]) == 'WITHDRAWN' then return 1 end
  return 0
end
local keep = redis.call('HGET', KEYS[1], 'keepUntil')
if keep then redis.call('PEXPIREAT', KEYS[4], keep)
elseif redis.call('PTTL', KEYS[4]) < 0 then redis.call('PEXPIRE', KEYS[4], ARGV[3]) end
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 and keep then
  redis.call('HINCRBY', KEYS[1], 'open', 1)
end
redis.call('DEL', KEYS[3])
return 1
",
    )
});

/// KEYS: coupon, takes. ARGV: task.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then return done end
local stock = redis.call('HGET', KEYS[1], 'stock')
if not stock then return 'UNKNOWN' end
local outcome = 'SOLD_OUT'
if tonumber(stock) > 0 then
  redis.call('HINCRBY', KEYS[1], 'stock', -1)
  outcome = 'TAKEN'
end
redis.call('HSET', KEYS[2], ARGV[1], outcome)
redis.call('PEXPIREAT', KEYS[2], redis.call('HGET', KEYS[1], 'keepUntil'))
return outcome
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
            &[&coupon_key(coupon), &users_key(coupon), &pending_key(task)],
            &[
                pending.user_id.to_string(),
                now_ms.to_string(),
                serde_json::to_string(&pending)?,
                PENDING_TTL_MS.to_string(),
            ],
        )
        .await?;
    Ok(match answer.as_str() {
        "ADMITTED" => Admission::Admitted,
        "ALREADY_REQUESTED" => Admission::AlreadyRequested,
        "SOLD_OUT" => Admission::SoldOut,
        "EXPIRED" => Admission::Expired,
        "UNKNOWN" => Admission::Unknown,
        other => anyhow::bail!("unexpected gate answer {other:?}"),
    })
}

pub(super) async fn undo(
    redis: &RedisCache,
    task: Uuid,
    pending: PendingTask,
) -> anyhow::Result<bool> {
    let withdrawn = redis
        .script::<i64>(
            &UNDO,
            &[
                &coupon_key(pending.coupon_id),
                &users_key(pending.coupon_id),
                &pending_key(task),
                &takes_key(pending.coupon_id),
            ],
            &[
                pending.user_id.to_string(),
                task.to_string(),
                (24 * 3600 * 1000).to_string(),
            ],
        )
        .await?;
    Ok(withdrawn == 1)
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
        "TAKEN" => Take::Taken,
        "SOLD_OUT" => Take::SoldOut,
        "WITHDRAWN" => Take::Withdrawn,
        "UNKNOWN" => Take::Unknown,
        other => anyhow::bail!("unexpected stock answer {other:?}"),
    })
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
