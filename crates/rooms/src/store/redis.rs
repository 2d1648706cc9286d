//! The lines in Redis (production): each operation is one Lua script over the room's keys, all
//! under the hash tag `{r:ID}` so that they live together. The scripts follow
//! [`Line`](crate::Line) step for step.
//!
//! Per room: `meta` (a hash: `open`, `closed`, `seq` the last number given, `credited`
//! admissions made or forgiven, `active`, `admitted`, `dropped`), `users` (a hash: user → the
//! record of their latest place, `generation,status,number,admittedAt,expiresAt,claimedUntil,
//! previous,joinedAt` with times in ms and one letter per status), `line` (a sorted set of the numbered
//! waiting places by number: a place's rank is its position), `early` (a set of the waiting
//! places taken before opening), `active` (admitted places by expiry) and `seen` (waiting
//! places by when they were last seen).

use std::sync::LazyLock;

use cache::RedisCache;
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use redis::Script;

use super::{Joined, LineStats, PlaceRecord, Seen};
use crate::{line::Claim, order::Seed, PlaceStatus};

/// How many early places one opening step numbers (each step is one script, so Redis answers
/// others in between).
const OPENING_CHUNK: usize = 10_000;
/// How many places one script reads (about a millisecond of Redis's time).
const PLACES_CHUNK: usize = 250;
/// How long an instance may take to open a line before another takes over.
const OPENING_LEASE_MS: u64 = 60_000;
/// How long a closed room's line is kept for reads of its places, in seconds.
const KEEP_CLOSED_SECS: u64 = 7 * 24 * 3600;

/// What every script shares: the record's codec and expiry of admissions. KEYS are always
/// meta, users, line, early, active, seen.
const PRELUDE: &str = r"
local function dec(s)
  if not s then return nil end
  local f = {}
  for v in string.gmatch(s .. ',', '([^,]*),') do f[#f + 1] = v end
  return {g = tonumber(f[1]), s = f[2], n = tonumber(f[3]), a = tonumber(f[4]),
          e = tonumber(f[5]), c = tonumber(f[6]), p = f[7], j = tonumber(f[8])}
end
local function enc(r)
  return table.concat({r.g, r.s, r.n or '', r.a or '', r.e or '', r.c or '', r.p or '',
                       r.j or ''}, ',')
end
local function expire(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, u in ipairs(gone) do
    local r = dec(redis.call('HGET', KEYS[2], u))
    if r and r.s == 'A' then
      r.s = 'E'
      r.c = nil
      redis.call('HSET', KEYS[2], u, enc(r))
      redis.call('HINCRBY', KEYS[1], 'active', -1)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now) end
end
local function closed() return redis.call('HGET', KEYS[1], 'closed') == '1' end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// ARGV: user, now. Returns `{outcome, record, rank}` (rank `-1`: not in the numbered line):
/// `NEW`, `HELD` (the place held), `CLOSED` or `UNKNOWN` (no line: prepare it).
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
local u = ARGV[1]
local r = dec(redis.call('HGET', KEYS[2], u))
local shut = closed()
if r and (r.s == 'A' or r.s == 'U' or (r.s == 'W' and not shut)) then
  if r.s == 'W' then redis.call('ZADD', KEYS[6], ARGV[2], u) end
  return {'HELD', enc(r), redis.call('ZRANK', KEYS[3], u) or -1}
end
if shut then return {'CLOSED'} end
local n = {g = (r and r.g or 0) + 1, s = 'W', p = r and r.s or nil, j = tonumber(ARGV[2])}
if redis.call('HGET', KEYS[1], 'open') == '1' then
  n.n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('ZADD', KEYS[3], n.n, u)
else
  redis.call('SADD', KEYS[4], u)
end
redis.call('ZADD', KEYS[6], ARGV[2], u)
redis.call('HSET', KEYS[2], u, enc(n))
return {'NEW', enc(n), redis.call('ZRANK', KEYS[3], u) or -1}
",
    )
});

/// ARGV: now, touch (`1`/`0`), users… Returns `{closed, record, rank, record, rank, …}` with
/// `''` for no record and `-1` for no rank.
static PLACES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local out = {closed() and 1 or 0}
for i = 3, #ARGV do
  local u = ARGV[i]
  local s = redis.call('HGET', KEYS[2], u)
  local rank = redis.call('ZRANK', KEYS[3], u)
  if ARGV[2] == '1' and rank then redis.call('ZADD', KEYS[6], 'XX', ARGV[1], u) end
  if ARGV[2] == '1' and not rank and redis.call('SISMEMBER', KEYS[4], u) == 1 then
    redis.call('ZADD', KEYS[6], 'XX', ARGV[1], u)
  end
  out[#out + 1] = s or ''
  out[#out + 1] = rank or -1
end
return out
",
    )
});

/// ARGV: user. Returns 1 when a waiting place or an unspent admission was given up.
static LEAVE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = ARGV[1]
local r = dec(redis.call('HGET', KEYS[2], u))
if not r then return 0 end
if r.s == 'W' and not closed() then
  redis.call('ZREM', KEYS[3], u)
  redis.call('SREM', KEYS[4], u)
  redis.call('ZREM', KEYS[6], u)
elseif r.s == 'A' then
  redis.call('HINCRBY', KEYS[1], 'active', -1)
  redis.call('ZREM', KEYS[5], u)
else
  return 0
end
r.s = 'L'
r.c = nil
redis.call('HSET', KEYS[2], u, enc(r))
return 1
",
    )
});

/// KEYS[7]: the opening lease. ARGV: lease (ms). Returns `{'OPEN'}`, `{'BUSY'}` (another
/// instance is opening it) or `{'EARLY', the early places to number…}`.
static OPEN_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HGET', KEYS[1], 'open') == '1' then return {'OPEN'} end
if not redis.call('SET', KEYS[7], '1', 'NX', 'PX', ARGV[1]) then return {'BUSY'} end
local out = redis.call('SMEMBERS', KEYS[4])
table.insert(out, 1, 'EARLY')
return out
",
    )
});

/// ARGV: last (`1` on the last step), users in line order… Numbers the given early places
/// still waiting; the last step numbers any taken meanwhile and opens the line.
static OPEN_NUMBER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HGET', KEYS[1], 'open') == '1' then return 0 end
local function number(u)
  if redis.call('SREM', KEYS[4], u) == 1 then
    local r = dec(redis.call('HGET', KEYS[2], u))
    if r and r.s == 'W' then
      r.n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
      redis.call('ZADD', KEYS[3], r.n, u)
      redis.call('HSET', KEYS[2], u, enc(r))
    end
  end
end
for i = 2, #ARGV do number(ARGV[i]) end
if ARGV[1] == '1' then
  local rest = redis.call('SMEMBERS', KEYS[4])
  table.sort(rest, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, u in ipairs(rest) do number(u) end
  redis.call('HSET', KEYS[1], 'open', '1')
end
return 1
",
    )
});

/// ARGV: due, cap (`-1`: none), now (ms), lasts (ms). Returns how long each place admitted
/// waited (ms).
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HGET', KEYS[1], 'open') ~= '1' or closed() then return {} end
local now = tonumber(ARGV[3])
expire(now)
local due = tonumber(ARGV[1])
local credited = tonumber(redis.call('HGET', KEYS[1], 'credited') or '0')
local owed = due - credited
if owed <= 0 then return {} end
local cap = tonumber(ARGV[2])
if cap >= 0 then
  owed = math.min(owed, cap - tonumber(redis.call('HGET', KEYS[1], 'active') or '0'))
end
local n = 0
local waited = {}
while n < owed do
  local top = redis.call('ZPOPMIN', KEYS[3], math.min(owed - n, 1000))
  if #top == 0 then break end
  for i = 1, #top, 2 do
    local u = top[i]
    local r = dec(redis.call('HGET', KEYS[2], u))
    r.s = 'A'
    r.a = now
    r.e = now + tonumber(ARGV[4])
    r.c = nil
    redis.call('HSET', KEYS[2], u, enc(r))
    redis.call('ZADD', KEYS[5], r.e, u)
    redis.call('ZREM', KEYS[6], u)
    n = n + 1
    waited[n] = now - (r.j or now)
  end
end
redis.call('HINCRBY', KEYS[1], 'active', n)
redis.call('HINCRBY', KEYS[1], 'admitted', n)
redis.call('HSET', KEYS[1], 'credited', math.max(credited, due))
return waited
",
    )
});

/// ARGV: user, now (ms), lease (ms). Returns `GRANTED`, `REQUIRED` or `IN_USE`.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local now = tonumber(ARGV[2])
expire(now)
local r = dec(redis.call('HGET', KEYS[2], ARGV[1]))
if not r or r.s ~= 'A' then return 'REQUIRED' end
if r.c and r.c > now then return 'IN_USE' end
r.c = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], enc(r))
return 'GRANTED'
",
    )
});

/// ARGV: user, accepted (`1`/`0`).
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = ARGV[1]
local r = dec(redis.call('HGET', KEYS[2], u))
if not r or r.s ~= 'A' or not r.c then return 0 end
r.c = nil
if ARGV[2] == '1' then
  r.s = 'U'
  redis.call('HINCRBY', KEYS[1], 'active', -1)
  redis.call('ZREM', KEYS[5], u)
end
redis.call('HSET', KEYS[2], u, enc(r))
return 1
",
    )
});

/// ARGV: cutoff (ms; places seen before it go), at most this many. Returns how many went.
static ABANDON: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if closed() then return 0 end
local gone = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
local n = 0
for _, u in ipairs(gone) do
  local r = dec(redis.call('HGET', KEYS[2], u))
  if r and r.s == 'W' then
    r.s = 'L'
    redis.call('HSET', KEYS[2], u, enc(r))
    redis.call('ZREM', KEYS[3], u)
    redis.call('SREM', KEYS[4], u)
    n = n + 1
  end
  redis.call('ZREM', KEYS[6], u)
end
redis.call('HINCRBY', KEYS[1], 'dropped', n)
return n
",
    )
});

/// ARGV: keep (s). Waiting places are read as `CLOSED` from now on.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'closed', '1')
redis.call('UNLINK', KEYS[3], KEYS[4], KEYS[6])
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 1
",
    )
});

/// Returns `{active, admitted, dropped, waiting}`.
static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local m = redis.call('HMGET', KEYS[1], 'active', 'admitted', 'dropped')
local waiting = redis.call('ZCARD', KEYS[3]) + redis.call('SCARD', KEYS[4])
return {tonumber(m[1] or '0'), tonumber(m[2] or '0'), tonumber(m[3] or '0'), waiting}
",
    )
});

/// The lines in Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLines {
    redis: RedisCache,
}

/// The keys of `room`'s line, in the order the scripts take them.
fn keys(room: i64) -> [String; 6] {
    ["meta", "users", "line", "early", "active", "seen"]
        .map(|part| format!("room:{{r:{room}}}:{part}"))
}

fn ms(at: DateTime<Utc>) -> String {
    at.timestamp_millis().to_string()
}

impl RedisLines {
    pub(super) fn new(redis: RedisCache) -> Self {
        Self { redis }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        room: i64,
        args: &[String],
    ) -> anyhow::Result<T> {
        let keys = keys(room);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.redis.script(script, &keys, args).await
    }

    pub(super) async fn prepare(&self, room: i64) -> anyhow::Result<()> {
        let mut conn = self.redis.connection();
        redis::cmd("HSETNX")
            .arg(self.redis.key(&keys(room)[0]))
            .arg("closed")
            .arg("0")
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn join(
        &self,
        room: i64,
        user: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Joined> {
        for _ in 0..2 {
            let answer: Vec<redis::Value> =
                self.run(&JOIN, room, &[user.to_string(), ms(now)]).await?;
            let text =
                |i: usize| -> Option<String> { redis::from_redis_value_ref(answer.get(i)?).ok() };
            match text(0).as_deref() {
                Some("UNKNOWN") => self.prepare(room).await?,
                Some("CLOSED") => return Ok(Joined::Closed),
                Some(outcome) => {
                    let record = text(1)
                        .and_then(|text| decode(user, &text, false))
                        .ok_or_else(|| anyhow::anyhow!("room {room}: a malformed place"))?;
                    let rank: i64 = answer
                        .get(2)
                        .and_then(|rank| redis::from_redis_value_ref(rank).ok())
                        .unwrap_or(-1);
                    let position = position(&record, rank);
                    return Ok(Joined::Place(Seen { record, position }, outcome == "NEW"));
                }
                None => anyhow::bail!("room {room}: an empty answer to a join"),
            }
        }
        anyhow::bail!("room {room}: the line could not be prepared")
    }

    pub(super) async fn places(
        &self,
        room: i64,
        users: &[i64],
        now: DateTime<Utc>,
        touch: bool,
    ) -> anyhow::Result<Vec<Option<Seen>>> {
        let mut places = Vec::with_capacity(users.len());
        // In chunks: one script blocks Redis while it runs, and a tick may read the places of
        // tens of thousands of streams.
        for users in users.chunks(PLACES_CHUNK) {
            let mut args = vec![ms(now), if touch { "1" } else { "0" }.to_owned()];
            args.extend(users.iter().map(i64::to_string));
            let answer: Vec<redis::Value> = self.run(&PLACES, room, &args).await?;
            let shut = matches!(answer.first(), Some(redis::Value::Int(1)));
            let rest = answer.get(1..).unwrap_or_default();
            places.extend(users.iter().zip(rest.chunks(2)).map(|(&user, pair)| {
                let text: String = redis::from_redis_value_ref(&pair[0]).ok()?;
                let rank: i64 = redis::from_redis_value_ref(&pair[1]).ok()?;
                let record = decode(user, &text, shut)?;
                let position = position(&record, rank);
                Some(Seen { record, position })
            }));
        }
        Ok(places)
    }

    pub(super) async fn leave(&self, room: i64, user: i64) -> anyhow::Result<bool> {
        let left: i64 = self.run(&LEAVE, room, &[user.to_string()]).await?;
        Ok(left == 1)
    }

    pub(super) async fn open(&self, room: i64, seed: Seed) -> anyhow::Result<bool> {
        let mut keys = keys(room).to_vec();
        keys.push(format!("room:{{r:{room}}}:opening"));
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let answer: Vec<String> = self
            .redis
            .script(&OPEN_BEGIN, &keys, &[OPENING_LEASE_MS.to_string()])
            .await?;
        match answer.first().map(String::as_str) {
            Some("OPEN") => return Ok(true),
            Some("EARLY") => {}
            _ => return Ok(false),
        }
        let mut early: Vec<i64> = answer[1..]
            .iter()
            .map(|user| user.parse())
            .collect::<Result<_, _>>()?;
        seed.shuffle(&mut early);
        let mut chunks: Vec<&[i64]> = early.chunks(OPENING_CHUNK).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut args = vec![if i == last { "1" } else { "0" }.to_owned()];
            args.extend(chunk.iter().map(i64::to_string));
            self.run::<i64>(&OPEN_NUMBER, room, &args).await?;
        }
        Ok(true)
    }

    pub(super) async fn admit(
        &self,
        room: i64,
        due: u64,
        max_active: Option<u64>,
        now: DateTime<Utc>,
        lasts: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let cap = max_active.map_or(-1, |cap| cap as i64);
        let args = [
            due.to_string(),
            cap.to_string(),
            ms(now),
            lasts.num_milliseconds().to_string(),
        ];
        let waited: Vec<i64> = self.run(&ADMIT, room, &args).await?;
        Ok(waited.into_iter().map(Duration::milliseconds).collect())
    }

    pub(super) async fn claim(
        &self,
        room: i64,
        user: i64,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Claim> {
        let args = [
            user.to_string(),
            ms(now),
            lease.num_milliseconds().to_string(),
        ];
        let answer: String = self.run(&CLAIM, room, &args).await?;
        Ok(match answer.as_str() {
            "GRANTED" => Claim::Granted,
            "IN_USE" => Claim::InUse,
            _ => Claim::Required,
        })
    }

    pub(super) async fn settle(&self, room: i64, user: i64, accepted: bool) -> anyhow::Result<()> {
        let args = [user.to_string(), u8::from(accepted).to_string()];
        self.run::<i64>(&SETTLE, room, &args).await?;
        Ok(())
    }

    pub(super) async fn abandon(&self, room: i64, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        let mut dropped = 0;
        loop {
            let batch: u64 = self
                .run(&ABANDON, room, &[ms(cutoff), "1000".to_owned()])
                .await?;
            dropped += batch;
            if batch < 1000 {
                return Ok(dropped);
            }
        }
    }

    pub(super) async fn close(&self, room: i64) -> anyhow::Result<()> {
        self.run::<i64>(&CLOSE, room, &[KEEP_CLOSED_SECS.to_string()])
            .await?;
        Ok(())
    }

    pub(super) async fn stats(&self, room: i64) -> anyhow::Result<LineStats> {
        let (active, admitted, dropped, waiting): (u64, u64, u64, u64) =
            self.run(&STATS, room, &[]).await?;
        Ok(LineStats {
            waiting,
            active,
            admitted,
            dropped,
        })
    }
}

/// A waiting place's position from its rank in the numbered line (`-1`: not numbered).
fn position(record: &PlaceRecord, rank: i64) -> Option<u64> {
    (record.status == PlaceStatus::Waiting && rank >= 0).then(|| rank as u64 + 1)
}

fn status(letter: &str) -> Option<PlaceStatus> {
    Some(match letter {
        "W" => PlaceStatus::Waiting,
        "A" => PlaceStatus::Admitted,
        "U" => PlaceStatus::Used,
        "E" => PlaceStatus::Expired,
        "L" => PlaceStatus::Left,
        "C" => PlaceStatus::Closed,
        _ => return None,
    })
}

/// A record as the scripts write it; a waiting place of a closed line is `CLOSED`.
fn decode(user: i64, text: &str, closed: bool) -> Option<PlaceRecord> {
    let fields: Vec<&str> = text.split(',').collect();
    let [generation, letter, number, admitted, expires, _claimed, previous, _joined] = fields[..]
    else {
        return None;
    };
    let time = |field: &str| {
        field
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    };
    let mut status = status(letter)?;
    if closed && status == PlaceStatus::Waiting {
        status = PlaceStatus::Closed;
    }
    Some(PlaceRecord {
        user_id: user,
        generation: generation.parse().ok()?,
        status,
        number: number.parse().ok(),
        admitted_at: time(admitted),
        expires_at: time(expires),
        previous: status_opt(previous),
    })
}

fn status_opt(letter: &str) -> Option<PlaceStatus> {
    (!letter.is_empty()).then(|| status(letter)).flatten()
}
