//! Each instance's loop over the rooms it follows, ten times a second: prepare a new room's
//! line, open it at `opensAt`, make the admissions due (the line counts what it made, so
//! instances ticking at once admit each place once), and once a second drop the abandoned
//! places, close the room when its sale is sold out, and measure its pace; twice a second (and
//! after admissions, up to five times), bring the places this instance's streams follow up to
//! date: every few seconds by reading them all, once for all of them, and in between from the
//! line's counts, reading only those that may have reached the front.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Mutex,
    time::Duration as StdDuration,
};

use chrono::{DateTime, Duration, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{admin, place::Pace, ClosedReason, Room, Rooms};

/// How often admissions are made.
pub const TICK: StdDuration = StdDuration::from_millis(100);
/// How often the rooms are read again (and at once when an instance announces a change).
pub const REFRESH: StdDuration = StdDuration::from_secs(1);
/// How often the places followed by streams are read; and at least how long apart when a
/// tick admitted someone (so an admission reaches its stream within a few ticks).
pub const STREAMS: StdDuration = StdDuration::from_millis(500);
pub const STREAMS_AFTER_ADMISSION: StdDuration = StdDuration::from_millis(200);
/// How often every followed place is read (in between, positions follow the line's counts).
pub const READ_ALL: StdDuration = StdDuration::from_secs(5);
/// How often abandonment, sold-out and the pace are looked at.
pub const SECOND: StdDuration = StdDuration::from_secs(1);
/// The window of the measured admission rate.
const PACE_WINDOW: Duration = Duration::seconds(10);

/// A room's admissions made by each moment sampled.
type Samples = VecDeque<(DateTime<Utc>, u64)>;

/// Each room's admissions over the last seconds, as sampled here.
#[derive(Default)]
pub struct Paces(Mutex<HashMap<i64, Samples>>);

impl Paces {
    fn record(&self, room: i64, now: DateTime<Utc>, admitted: u64) {
        let mut paces = self.0.lock().expect("paces lock");
        let samples = paces.entry(room).or_default();
        samples.push_back((now, admitted));
        while samples
            .front()
            .is_some_and(|(at, _)| *at < now - PACE_WINDOW - Duration::seconds(1))
        {
            samples.pop_front();
        }
    }

    /// `room`'s pace at `now`: admissions over the last 10 s, and how long it has been open.
    pub fn pace(&self, room: &Room, now: DateTime<Utc>) -> Pace {
        let open_for_secs = (now - room.schedule.opens_at()).num_milliseconds() as f64 / 1000.0;
        let paces = self.0.lock().expect("paces lock");
        let admitted_last_10s = paces.get(&room.id).map_or(0, |samples| {
            let latest = samples.back().map_or(0, |(_, admitted)| *admitted);
            let since = samples
                .iter()
                .find(|(at, _)| *at >= now - PACE_WINDOW)
                .map_or(latest, |(_, admitted)| *admitted);
            latest - since.min(latest)
        });
        Pace {
            admitted_last_10s,
            open_for_secs,
        }
    }

    fn forget_except(&self, rooms: &HashSet<i64>) {
        self.0
            .lock()
            .expect("paces lock")
            .retain(|room, _| rooms.contains(room));
    }
}

/// What this instance has done for each room, and when it last did the slower work.
struct Ticking {
    prepared: HashSet<i64>,
    opened: HashSet<i64>,
    closed: HashSet<i64>,
    refreshed: Option<Instant>,
    second: Instant,
    /// When each room's followed places were last brought up to date, last all read, and last
    /// marked seen; the rooms whose places must all be read next (just opened or closed).
    streams: HashMap<i64, Instant>,
    read_all: HashMap<i64, Instant>,
    touched: HashMap<i64, Instant>,
    read_all_next: HashSet<i64>,
    /// When a room's last failure was logged (one line per room per 10 s).
    logged: HashMap<i64, Instant>,
}

/// Runs the loop until `stop`.
pub async fn run(rooms: Rooms, stop: CancellationToken) {
    let mut wake = rooms.0.cache.subscribe(admin::CHANNEL);
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut ticking = Ticking {
        prepared: HashSet::new(),
        opened: HashSet::new(),
        closed: HashSet::new(),
        refreshed: None,
        second: start,
        streams: HashMap::new(),
        read_all: HashMap::new(),
        touched: HashMap::new(),
        read_all_next: HashSet::new(),
        logged: HashMap::new(),
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
            _ = wake.recv() => ticking.refreshed = None,
        }
        tick(&rooms, &mut ticking).await;
    }
}

async fn tick(rooms: &Rooms, ticking: &mut Ticking) {
    let now = Utc::now();
    let at = Instant::now();
    if ticking.refreshed.is_none_or(|last| at >= last + REFRESH) {
        // Tried again in a second either way: a database that is down is not asked ten times
        // a second (the rooms already read are followed meanwhile).
        ticking.refreshed = Some(at);
        if let Err(error) = rooms.registry().refresh(rooms.db(), now).await {
            tracing::warn!(%error, "reading the rooms");
        }
    }
    let second = at >= ticking.second;
    if second {
        ticking.second = at + SECOND;
    }
    let snapshot = rooms.registry().snapshot();
    for room in &snapshot.rooms {
        let admitted = match tick_room(rooms, ticking, room, now, second).await {
            Ok(admitted) => admitted,
            Err(error) => {
                let quiet = ticking
                    .logged
                    .get(&room.id)
                    .is_some_and(|last| at < *last + StdDuration::from_secs(10));
                if !quiet {
                    tracing::warn!(
                        room = room.id,
                        error = format!("{error:#}"),
                        "waiting room tick"
                    );
                    ticking.logged.insert(room.id, at);
                }
                false
            }
        };
        let read = ticking.streams.get(&room.id).copied();
        // A room that just opened or closed changed every place at once: read them now.
        let due = ticking.read_all_next.contains(&room.id)
            || read.is_none_or(|last| {
                at >= last + STREAMS || (admitted && at >= last + STREAMS_AFTER_ADMISSION)
            });
        if due {
            ticking.streams.insert(room.id, at);
            // Marking a place seen rewrites it in Redis; a quarter of the abandonment window
            // apart is often enough to keep a watched place from being dropped.
            let touch = ticking
                .touched
                .get(&room.id)
                .is_none_or(|last| at >= *last + rooms.config().abandon_after() / 4);
            if touch {
                ticking.touched.insert(room.id, at);
            }
            let all = touch
                || ticking.read_all_next.remove(&room.id)
                || ticking
                    .read_all
                    .get(&room.id)
                    .is_none_or(|last| at >= *last + READ_ALL);
            if all {
                ticking.read_all.insert(room.id, at);
            }
            if let Err(error) = refresh_streams(rooms, room, now, touch, all).await {
                tracing::debug!(room = room.id, %error, "reading the followed places");
            }
        }
    }
    if second {
        let followed: HashSet<i64> = snapshot.rooms.iter().map(|room| room.id).collect();
        rooms.watchers().keep_only(&followed);
        rooms.0.paces.forget_except(&followed);
        ticking.prepared.retain(|room| followed.contains(room));
        ticking.opened.retain(|room| followed.contains(room));
        ticking.closed.retain(|room| followed.contains(room));
        ticking.streams.retain(|room, _| followed.contains(room));
        ticking.read_all.retain(|room, _| followed.contains(room));
        ticking.touched.retain(|room, _| followed.contains(room));
        ticking.read_all_next.retain(|room| followed.contains(room));
    }
}

async fn tick_room(
    rooms: &Rooms,
    ticking: &mut Ticking,
    room: &Room,
    now: DateTime<Utc>,
    second: bool,
) -> anyhow::Result<bool> {
    let lines = rooms.lines();
    if !ticking.prepared.contains(&room.id) {
        lines.prepare(room.id, room.seed).await?;
        ticking.prepared.insert(room.id);
    }
    if room.closed_at.is_some() {
        if ticking.closed.insert(room.id) {
            if let Err(error) = lines.close(room.id).await {
                ticking.closed.remove(&room.id);
                return Err(error);
            }
            ticking.read_all_next.insert(room.id);
        }
        return Ok(false);
    }
    if now >= room.schedule.opens_at()
        && !ticking.opened.contains(&room.id)
        && lines.open(room.id, room.seed).await?
    {
        ticking.opened.insert(room.id);
        // The places taken before opening have just been numbered.
        ticking.read_all_next.insert(room.id);
    }
    let mut admitted = false;
    if ticking.opened.contains(&room.id) {
        let lasts = Duration::seconds(room.admission_secs);
        let cap = room.max_active.map(|cap| cap as u64);
        let waited = lines
            .admit(room.id, room.schedule.due(now), cap, now, lasts)
            .await?;
        admitted = !waited.is_empty();
        if admitted {
            let label = room.id.to_string();
            metrics::counter!("stampede_room_admitted_total", "room" => label.clone())
                .increment(waited.len() as u64);
            let wait = metrics::histogram!("stampede_room_wait_seconds", "room" => label);
            for waited in waited {
                wait.record(waited.num_milliseconds() as f64 / 1000.0);
            }
        }
    }
    if second {
        let abandon = Duration::seconds(rooms.config().abandon_secs as i64);
        let dropped = lines.abandon(room.id, now - abandon).await?;
        let label = room.id.to_string();
        if dropped > 0 {
            tracing::info!(room = room.id, dropped, "dropped abandoned places");
            metrics::counter!("stampede_room_dropped_total", "room" => label.clone())
                .increment(dropped);
        }
        let stats = lines.stats(room.id).await?;
        rooms.0.paces.record(room.id, now, stats.admitted);
        metrics::gauge!("stampede_room_waiting", "room" => label).set(stats.waiting as f64);
        if rooms.0.sales.sold_out(room.sale()).await? {
            tracing::info!(room = room.id, "the sale is sold out: closing its room");
            admin::close(rooms, room.id, ClosedReason::SoldOut, now).await?;
        }
    }
    Ok(admitted)
}

/// Brings the places this instance's streams follow in `room` up to date: reads them `all`
/// (marking them seen when `touch`), or moves them up by the line's counts and reads only
/// those that may have reached the front; hands each stream its own.
async fn refresh_streams(
    rooms: &Rooms,
    room: &Room,
    now: DateTime<Utc>,
    touch: bool,
    all: bool,
) -> anyhow::Result<()> {
    let watchers = rooms.watchers();
    if !watchers.follows(room.id) {
        return Ok(());
    }
    let users = if all {
        watchers.followed(room.id)
    } else {
        let counts = rooms.lines().stats(room.id).await?.counts();
        watchers.advance(room.id, counts)
    };
    if users.is_empty() {
        return Ok(());
    }
    let places = rooms
        .lines()
        .places_counted(room.id, &users, now, touch)
        .await?;
    let places = users
        .into_iter()
        .zip(places)
        .filter_map(|(user, (seen, counts))| Some((user, seen?, counts)))
        .collect();
    watchers.deliver(room.id, places);
    Ok(())
}
