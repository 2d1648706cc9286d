//! The lines in Redis (production): each operation is one Lua script over the room's keys, all
//! under the hash tag `{r:ID}` so that they live together. The scripts follow
//! [`Line`](crate::Line) step for step.
//!
//! Per room: `meta` (a hash: `open`, `closed`, `seq` the last number given, `credited`
//! admissions made or forgiven, `active`, `admitted`, `dropped`, `left`, and the abandonment sweep's
//! `cutoff`, `swept` and `esweep`), `users:B` (the records of users' latest places, spread over
//! [`BUCKETS`] small hashes by user id so that Redis keeps each as a compact listpack: a record
//! is `generation,status,number,admittedAt,expiresAt,claimedUntil,previous,joinedAt,seenAt`,
//! numbers and times in ms written in base 36, one letter per status; a waiting place's number
//! is its score in the line, so opening numbers a place without rewriting its record), `line`
//! (a sorted set of the numbered waiting places by number: a place's rank is its position;
//! kept after closing, for the numbers of the places it closed), `early` (a set of the
//! waiting places taken before opening) and `active` (admitted places by expiry). About 150
//! bytes a waiting place.
//!
//! When a waiting place was last seen lives in its record, not in an index of its own (that
//! index was a third of the memory): each abandonment pass sweeps the next [`SWEEP`] places of
//! the line (and of the early set) and remembers its cutoff, and admission drops a place unseen
//! since that cutoff instead of admitting it. So in a long line an abandoned place may be
//! counted as waiting for a few minutes, but it is never admitted.

use std::sync::LazyLock;

use cache::RedisCache;
use chrono::{DateTime, Duration, TimeZone as _, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use redis::Script;

use super::{Counts, Joined, LineStats, PlaceRecord, Seen};
use crate::{line::Claim, order::Seed, PlaceStatus};

/// How many early places one opening step numbers (each step is one script, so Redis answers
/// others in between).
const OPENING_CHUNK: usize = 10_000;
/// How many places one script reads (about a millisecond of Redis's time), and how many such
/// scripts one read has in flight.
const PLACES_CHUNK: usize = 250;
const PLACES_AT_ONCE: usize = 4;
/// How many places of the line, and of the early set, one abandonment pass looks at (a few
/// milliseconds of Redis's time).
const SWEEP: usize = 1_000;
/// How many hashes a room's records are spread over: up to 2 million places stay within
/// Redis's default `hash-max-listpack-entries` (128) per hash.
pub const BUCKETS: u32 = 16_384;
/// How long an instance may take to open a line before another takes over.
const OPENING_LEASE_MS: u64 = 60_000;
/// How long a closed room's line is kept for reads of its places, in seconds.
const KEEP_CLOSED_SECS: u64 = 7 * 24 * 3600;

/// What every script shares: the record's codec and bucket, and expiry of admissions. KEYS
/// are always meta, users (the buckets' stem), line, early, active.
static PRELUDE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local function b36(x)
  if not x then return '' end
  local s = ''
  repeat
    local d = x % 36
    s = string.sub(DIGITS, d + 1, d + 1) .. s
    x = (x - d) / 36
  until x == 0
  return s
end
local function num(s) return tonumber(s or '', 36) end
local function dec(s)
  if not s then return nil end
  local g, st, n, a, e, c, p, j, t = string.match(s,
    '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  return {{g = num(g), s = st, n = num(n), a = num(a), e = num(e), c = num(c), p = p,
          j = num(j), t = num(t)}}
end
local function enc(r)
  return b36(r.g) .. ',' .. r.s .. ',' .. b36(r.n) .. ',' .. b36(r.a) .. ',' .. b36(r.e) .. ','
    .. b36(r.c) .. ',' .. (r.p or '') .. ',' .. b36(r.j) .. ',' .. b36(r.t)
end
-- Whether a record is of a waiting place, and when it was last seen, without decoding it.
local function waiting(s) return string.match(s, '^[^,]*,(.)') == 'W' end
local function seen(s) return num(string.match(s, ',([^,]*)$')) or 0 end
local function bucket(u) return KEYS[2] .. ':' .. (tonumber(u) % {BUCKETS}) end
local function get(u) return dec(redis.call('HGET', bucket(u), u)) end
local function put(u, r) redis.call('HSET', bucket(u), u, enc(r)) end
-- A waiting place's number is its score in the line; one that stops waiting keeps it in its
-- record, and forgets when it joined and was last seen.
local function settle(u, r, status, number)
  r.s = status
  r.n = r.n or number
  r.j = nil
  r.t = nil
  put(u, r)
end
-- A waiting place's rank (its position - 1) and number, or -1 for each.
local function in_line(u)
  local number = redis.call('ZSCORE', KEYS[3], u)
  if not number then return -1, -1 end
  return redis.call('ZRANK', KEYS[3], u), tonumber(number)
end
local function expire(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
  for _, u in ipairs(gone) do
    local r = get(u)
    if r and r.s == 'A' then
      r.c = nil
      settle(u, r, 'E')
      redis.call('HINCRBY', KEYS[1], 'active', -1)
    end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now) end
end
local function closed() return redis.call('HGET', KEYS[1], 'closed') == '1' end
"
    )
});

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", *PRELUDE))
}

/// ARGV: user, now. Returns `{outcome, record, rank, number}` (`-1`: not in the numbered line):
/// `NEW`, `HELD` (the place held), `CLOSED` or `UNKNOWN` (no line: prepare it).
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
local u = ARGV[1]
local now = tonumber(ARGV[2])
local r = get(u)
local shut = closed()
if r and (r.s == 'A' or r.s == 'U' or (r.s == 'W' and not shut)) then
  local rank, number = -1, -1
  if r.s == 'W' then
    r.t = now
    put(u, r)
    rank, number = in_line(u)
  end
  return {'HELD', enc(r), rank, number}
end
if shut then return {'CLOSED'} end
local n = {g = (r and r.g or 0) + 1, s = 'W', p = r and r.s or nil, j = now, t = now}
put(u, n)
if redis.call('HGET', KEYS[1], 'open') == '1' then
  local number = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('ZADD', KEYS[3], number, u)
  return {'NEW', enc(n), redis.call('ZRANK', KEYS[3], u), number}
end
redis.call('SADD', KEYS[4], u)
return {'NEW', enc(n), -1, -1}
",
    )
});

/// ARGV: now, touch (`1`/`0`), users… Returns `{closed, admitted, gone, record, rank, number,
/// record, rank, number, …}` with `''` for no record and `-1` for no rank or number.
static PLACES: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local m = redis.call('HMGET', KEYS[1], 'admitted', 'dropped', 'left')
local out = {closed() and 1 or 0, tonumber(m[1] or '0'),
             tonumber(m[2] or '0') + tonumber(m[3] or '0')}
local stamp = ARGV[2] == '1' and b36(tonumber(ARGV[1]))
for i = 3, #ARGV do
  local u = ARGV[i]
  local s = redis.call('HGET', bucket(u), u)
  local rank, number = -1, -1
  if s and waiting(s) then
    if stamp then
      -- Seen now: the last field, rewritten without decoding the rest.
      s = string.match(s, '^(.*,)') .. stamp
      redis.call('HSET', bucket(u), u, s)
    end
    rank, number = in_line(u)
  end
  out[#out + 1] = s or ''
  out[#out + 1] = rank
  out[#out + 1] = number
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
local r = get(u)
if not r then return 0 end
local number
if r.s == 'W' and not closed() then
  number = tonumber(redis.call('ZSCORE', KEYS[3], u) or '')
  redis.call('ZREM', KEYS[3], u)
  redis.call('SREM', KEYS[4], u)
  redis.call('HINCRBY', KEYS[1], 'left', 1)
elseif r.s == 'A' then
  redis.call('HINCRBY', KEYS[1], 'active', -1)
  redis.call('ZREM', KEYS[5], u)
else
  return 0
end
r.c = nil
settle(u, r, 'L', number)
return 1
",
    )
});

/// KEYS[6]: the opening lease. ARGV: lease (ms). Returns `{'OPEN'}`, `{'BUSY'}` (another
/// instance is opening it) or `{'EARLY', the early places to number…}`.
static OPEN_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('HGET', KEYS[1], 'open') == '1' then return {'OPEN'} end
if not redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[1]) then return {'BUSY'} end
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
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
-- Every member of the early set is waiting (leaving takes a place out of it).
local function number(u)
  if redis.call('SREM', KEYS[4], u) == 1 then
    seq = seq + 1
    redis.call('ZADD', KEYS[3], seq, u)
  end
end
for i = 2, #ARGV do number(ARGV[i]) end
if ARGV[1] == '1' then
  local rest = redis.call('SMEMBERS', KEYS[4])
  table.sort(rest, function(a, b) return tonumber(a) < tonumber(b) end)
  for _, u in ipairs(rest) do number(u) end
  redis.call('HSET', KEYS[1], 'open', '1')
end
redis.call('HSET', KEYS[1], 'seq', seq)
return 1
",
    )
});

/// ARGV: due, cap (`-1`: none), now (ms), lasts (ms). Returns how long each place admitted
/// waited (ms). A place unseen since the last abandonment cutoff is dropped, not admitted.
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
local cutoff = tonumber(redis.call('HGET', KEYS[1], 'cutoff') or '0')
local n = 0
local dropped = 0
local waited = {}
while n < owed do
  local top = redis.call('ZPOPMIN', KEYS[3], math.min(owed - n, 1000))
  if #top == 0 then break end
  for i = 1, #top, 2 do
    local u = top[i]
    local number = tonumber(top[i + 1])
    local r = get(u)
    if (r.t or 0) < cutoff then
      settle(u, r, 'L', number)
      dropped = dropped + 1
    else
      n = n + 1
      waited[n] = now - (r.j or now)
      r.a = now
      r.e = now + tonumber(ARGV[4])
      r.c = nil
      settle(u, r, 'A', number)
      redis.call('ZADD', KEYS[5], r.e, u)
    end
  end
end
redis.call('HINCRBY', KEYS[1], 'active', n)
redis.call('HINCRBY', KEYS[1], 'admitted', n)
redis.call('HINCRBY', KEYS[1], 'dropped', dropped)
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
local r = get(ARGV[1])
if not r or r.s ~= 'A' then return 'REQUIRED' end
if r.c and r.c > now then return 'IN_USE' end
r.c = now + tonumber(ARGV[3])
put(ARGV[1], r)
return 'GRANTED'
",
    )
});

/// ARGV: user, accepted (`1`/`0`).
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local u = ARGV[1]
local r = get(u)
if not r or r.s ~= 'A' or not r.c then return 0 end
r.c = nil
if ARGV[2] == '1' then
  r.s = 'U'
  redis.call('HINCRBY', KEYS[1], 'active', -1)
  redis.call('ZREM', KEYS[5], u)
end
put(u, r)
return 1
",
    )
});

/// ARGV: cutoff (ms; places seen before it go), how many places to look at. Looks at the
/// next places of the line and of the early set from where the last pass stopped (from the
/// start again after the end), and keeps the cutoff for admission. Returns how many went.
static ABANDON: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if closed() then return 0 end
local cutoff = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
if cutoff > tonumber(redis.call('HGET', KEYS[1], 'cutoff') or '0') then
  redis.call('HSET', KEYS[1], 'cutoff', ARGV[1])
end
local n = 0
local function check(u, number)
  local s = redis.call('HGET', bucket(u), u)
  if s and waiting(s) and seen(s) < cutoff then
    redis.call('ZREM', KEYS[3], u)
    redis.call('SREM', KEYS[4], u)
    settle(u, dec(s), 'L', number)
    n = n + 1
  end
end
local from = redis.call('HGET', KEYS[1], 'swept') or '0'
local next = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. from, '+inf', 'WITHSCORES', 'LIMIT', 0,
                        budget)
for i = 1, #next, 2 do check(next[i], tonumber(next[i + 1])) end
redis.call('HSET', KEYS[1], 'swept', #next < 2 * budget and '0' or next[#next])
local scan = redis.call('SSCAN', KEYS[4], redis.call('HGET', KEYS[1], 'esweep') or '0',
                        'COUNT', budget)
for _, u in ipairs(scan[2]) do check(u, nil) end
redis.call('HSET', KEYS[1], 'esweep', scan[1])
redis.call('HINCRBY', KEYS[1], 'dropped', n)
return n
",
    )
});

/// ARGV: keep (s). Waiting places are read as `CLOSED` from now on; the line is kept as long
/// as the records, for their numbers. The records' hashes are given the same expiry by
/// [`EXPIRE_BUCKETS`], a slice at a time.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'closed', '1')
redis.call('UNLINK', KEYS[4])
for _, i in ipairs({1, 3, 5}) do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 1
",
    )
});

/// ARGV: keep (s), first and last bucket.
static EXPIRE_BUCKETS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
for b = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('EXPIRE', KEYS[2] .. ':' .. b, ARGV[1])
end
return 1
",
    )
});

/// Returns `{active, admitted, dropped, left, waiting}`.
static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r"
local m = redis.call('HMGET', KEYS[1], 'active', 'admitted', 'dropped', 'left')
local waiting = 0
if not closed() then waiting = redis.call('ZCARD', KEYS[3]) + redis.call('SCARD', KEYS[4]) end
return {tonumber(m[1] or '0'), tonumber(m[2] or '0'), tonumber(m[3] or '0'),
        tonumber(m[4] or '0'), waiting}
",
    )
});

/// The lines in Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLines {
    redis: RedisCache,
}

/// The keys of `room`'s line, in the order the scripts take them.
fn keys(room: i64) -> [String; 5] {
    ["meta", "users", "line", "early", "active"].map(|part| format!("room:{{r:{room}}}:{part}"))
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
                    let seen = text(1)
                        .and_then(|text| {
                            read(user, &text, answer.get(2..).unwrap_or_default(), false)
                        })
                        .ok_or_else(|| anyhow::anyhow!("room {room}: a malformed place"))?;
                    return Ok(Joined::Place(seen, outcome == "NEW"));
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
    ) -> anyhow::Result<Vec<(Option<Seen>, Counts)>> {
        // In chunks: one script blocks Redis while it runs, and a tick may read the places of
        // tens of thousands of streams. A few at once, so the round trips overlap.
        let chunks: Vec<_> = users
            .chunks(PLACES_CHUNK)
            .map(|users| async move {
                let mut args = vec![ms(now), if touch { "1" } else { "0" }.to_owned()];
                args.extend(users.iter().map(i64::to_string));
                let answer: Vec<redis::Value> = self.run(&PLACES, room, &args).await?;
                let int =
                    |i: usize| -> Option<u64> { redis::from_redis_value_ref(answer.get(i)?).ok() };
                let shut = int(0) == Some(1);
                let counts = Counts {
                    admitted: int(1).unwrap_or_default(),
                    gone: int(2).unwrap_or_default(),
                };
                let rest = answer.get(3..).unwrap_or_default();
                let places: Vec<(Option<Seen>, Counts)> = users
                    .iter()
                    .zip(rest.chunks(3))
                    .map(|(&user, place)| {
                        let text: Option<String> = redis::from_redis_value_ref(&place[0]).ok();
                        let seen = text.and_then(|text| read(user, &text, &place[1..], shut));
                        (seen, counts)
                    })
                    .collect();
                anyhow::Ok(places)
            })
            // Collected first: a lazy `map` here makes the future fail `Send` for every lifetime.
            .collect();
        let read: Vec<Vec<_>> = futures::stream::iter(chunks)
            .buffered(PLACES_AT_ONCE)
            .try_collect()
            .await?;
        Ok(read.into_iter().flatten().collect())
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
        self.run(&ABANDON, room, &[ms(cutoff), SWEEP.to_string()])
            .await
    }

    pub(super) async fn close(&self, room: i64) -> anyhow::Result<()> {
        let keep = KEEP_CLOSED_SECS.to_string();
        self.run::<i64>(&CLOSE, room, std::slice::from_ref(&keep))
            .await?;
        // 2,048 buckets a script (a few milliseconds of Redis's time each).
        for first in (0..BUCKETS).step_by(2_048) {
            let last = (first + 2_047).min(BUCKETS - 1);
            let args = [keep.clone(), first.to_string(), last.to_string()];
            self.run::<i64>(&EXPIRE_BUCKETS, room, &args).await?;
        }
        Ok(())
    }

    pub(super) async fn stats(&self, room: i64) -> anyhow::Result<LineStats> {
        let (active, admitted, dropped, left, waiting): (u64, u64, u64, u64, u64) =
            self.run(&STATS, room, &[]).await?;
        Ok(LineStats {
            waiting,
            active,
            admitted,
            dropped,
            left,
        })
    }
}

/// A place from its record and its `[rank, number]` in the line (`-1`: not in it).
fn read(user: i64, text: &str, line: &[redis::Value], closed: bool) -> Option<Seen> {
    let int = |i: usize| -> Option<i64> { redis::from_redis_value_ref(line.get(i)?).ok() };
    let number = int(1).and_then(|number| u64::try_from(number).ok());
    let record = decode(user, text, number, closed)?;
    let position = int(0)
        .and_then(|rank| u64::try_from(rank).ok())
        .filter(|_| record.status == PlaceStatus::Waiting)
        .map(|rank| rank + 1);
    Some(Seen { record, position })
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

/// A record as the scripts write it (a waiting place's `number` is kept in the line, not in its
/// record); a waiting place of a closed line is `CLOSED`.
fn decode(user: i64, text: &str, number: Option<u64>, closed: bool) -> Option<PlaceRecord> {
    let fields: Vec<&str> = text.split(',').collect();
    let [generation, letter, number_field, admitted, expires, _claimed, previous, _joined, _seen] =
        fields[..]
    else {
        return None;
    };
    let time = |field: &str| {
        i64::from_str_radix(field, 36)
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    };
    let mut status = status(letter)?;
    if closed && status == PlaceStatus::Waiting {
        status = PlaceStatus::Closed;
    }
    Some(PlaceRecord {
        user_id: user,
        generation: u32::from_str_radix(generation, 36).ok()?,
        status,
        number: u64::from_str_radix(number_field, 36).ok().or(number),
        admitted_at: time(admitted),
        expires_at: time(expires),
        previous: status_opt(previous),
    })
}

fn status_opt(letter: &str) -> Option<PlaceStatus> {
    (!letter.is_empty()).then(|| status(letter)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_read_back_from_base_36() {
        // Generation 2, admitted at 1,764,842,400,000 ms, expiring 300 s later, number 1,000,000.
        let text = "2,A,lfls,mir9lj40,mir9rylc,,L,,";
        let record = decode(7, text, None, false).unwrap();
        assert_eq!(record.generation, 2);
        assert_eq!(record.status, PlaceStatus::Admitted);
        assert_eq!(record.number, Some(1_000_000));
        assert_eq!(
            record.admitted_at.unwrap().timestamp_millis(),
            1_764_842_400_000
        );
        assert_eq!(
            (record.expires_at.unwrap() - record.admitted_at.unwrap()).num_seconds(),
            300
        );
        assert_eq!(record.previous, Some(PlaceStatus::Left));
        assert_eq!(decode(7, "1,W,,,,,,", Some(1), false), None, "eight fields");
        let waiting = decode(7, "1,W,,,,,,mir9lj40,mir9lj40", Some(12), true).unwrap();
        assert_eq!(
            waiting.number,
            Some(12),
            "a waiting place's number is the line's"
        );
        assert_eq!(waiting.status, PlaceStatus::Closed, "in a closed line");
    }
}
