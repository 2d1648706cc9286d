//! `waiting-room`: a coupon drop behind a waiting room. Every user joins the line (those of
//! the first second before it opens), follows their place's stream, and once admitted asks for
//! the coupon; one iteration in five first asks without an admission, which must be refused.
//! The run pauses the room at its end and closes it a little later, so every stream ends; the verdict then checks the line
//! from the places the run took ([`crate::verdict`]).

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime},
};

use chrono::{DateTime, Utc};
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Vu, STREAM_TIMEOUT};
use crate::{
    http::{follow_events, Conn},
    stats::Answer,
    Seeded,
};

/// The room a `waiting-room` run stands in line for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomRun {
    pub room_id: i64,
    pub coupon_id: i64,
    /// Admissions a second, as set.
    pub rate: i64,
    pub opens_at: DateTime<Utc>,
}

/// A place the run took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TakenPlace {
    pub place_id: String,
    pub user_id: i64,
    /// Taken before the room opened (numbered by the seed at opening).
    pub early: bool,
    /// The status of the stream's last event (`ADMITTED` or `CLOSED` when it ended as it
    /// should), or how following it failed.
    pub last_status: String,
}

/// What a `waiting-room` run records for the verdict.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoomLog {
    pub room: Option<RoomRun>,
    pub places: Vec<TakenPlace>,
    /// Guarded requests made without an admission, and how many of them were accepted.
    pub unadmitted_asked: u64,
    pub unadmitted_accepted: u64,
}

/// Puts a room in front of the run's `coupon`, opening in `opens_in` and admitting `rate` a
/// second, as the seeded admin.
pub async fn prepare(
    conn: &mut Conn,
    seed: &Seeded,
    coupon: i64,
    rate: i64,
    opens_in: Duration,
) -> anyhow::Result<RoomRun> {
    let opens_at = Utc::now() + chrono::Duration::from_std(opens_in)?;
    let body = json!({
        "name": "load-kit line", "couponId": coupon, "opensAt": opens_at.to_rfc3339(),
        "admitPerSecond": rate,
    });
    let reply = conn
        .send(
            Method::POST,
            "/api/admin/rooms",
            Some(&seed.admin.token),
            Some(body.to_string().into()),
        )
        .await?;
    anyhow::ensure!(
        reply.status == 201,
        "creating the run's waiting room: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    let room_id = reply.json()["id"].as_i64().unwrap_or_default();
    Ok(RoomRun {
        room_id,
        coupon_id: coupon,
        rate,
        opens_at,
    })
}

/// How long the run's end lets those admitted last use their admission before the room
/// closes (closing lifts the guard: a request after it needs no admission).
const LAST_CALL: Duration = Duration::from_secs(3);

/// Ends the run's room: paused (nobody more is admitted), then, once those admitted have had
/// time to ask, closed (its waiting streams end `CLOSED`).
pub async fn close(conn: &mut Conn, seed: &Seeded, room: &RoomRun) -> anyhow::Result<()> {
    let path = format!("/api/admin/rooms/{}", room.room_id);
    let paused = json!({ "paused": true }).to_string();
    admin(
        conn,
        seed,
        Method::PATCH,
        &path,
        paused,
        "pausing the run's room",
    )
    .await?;
    tokio::time::sleep(LAST_CALL).await;
    let path = format!("/api/admin/rooms/{}/close", room.room_id);
    admin(
        conn,
        seed,
        Method::POST,
        &path,
        "{}".into(),
        "closing the run's room",
    )
    .await
}

/// An admin's request that must succeed: asked again (for half a minute) while the server
/// answers 503, as a loaded server may.
async fn admin(
    conn: &mut Conn,
    seed: &Seeded,
    method: Method,
    path: &str,
    body: String,
    what: &str,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = conn
            .send(
                method.clone(),
                path,
                Some(&seed.admin.token),
                Some(body.clone().into()),
            )
            .await;
        match reply {
            Ok(reply) if reply.status == 200 => return Ok(()),
            Ok(reply) if reply.status != 503 || Instant::now() > until => {
                anyhow::bail!("{what}: {}", reply.status)
            }
            Err(error) if Instant::now() > until => return Err(error.context(what.to_owned())),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

impl Vu {
    pub(super) async fn room_join(&mut self) {
        let Some(room) = self.shared.room.clone() else {
            return;
        };
        let (_, user) = self.user();
        self.join(&room, &user.token).await;
    }

    /// Joins `room`'s line as the holder of `token`, measured as `rooms.join`: the place.
    async fn join(&mut self, room: &RoomRun, token: &str) -> Option<Value> {
        let path = format!("/api/rooms/{}/places", room.room_id);
        let reply = self
            .call(
                "rooms.join",
                Method::POST,
                &path,
                Some(token),
                Some(json!({})),
                &[201, 200],
            )
            .await?;
        Some(reply.json())
    }

    pub(super) async fn waiting_room(&mut self) {
        let Some(room) = self.shared.room.clone() else {
            return;
        };
        let (user_index, user) = self.user();
        let token = Some(user.token.as_str());
        let issue = format!("/api/coupons/{}/issue", room.coupon_id);
        if self.iteration % 5 == 0 {
            let reply = self
                .call(
                    "rooms.issue_unadmitted",
                    Method::POST,
                    &issue,
                    token,
                    Some(json!({})),
                    &[403, 202],
                )
                .await;
            let mut log = self.shared.log.lock().expect("run log");
            log.room.unadmitted_asked += 1;
            if reply.is_some_and(|reply| reply.status == 202) {
                log.room.unadmitted_accepted += 1;
            }
        }
        let Some(joined) = self.join(&room, &user.token).await else {
            return;
        };
        let Some(admitted) = self.follow_place(&room, &joined, user.id).await else {
            return;
        };
        if admitted {
            self.issue_coupon(room.coupon_id, user_index, &user.token)
                .await;
        }
    }

    /// One of a sale's opening crowd: joins the line, lets go of the connection it joined on
    /// (a waiting person holds one connection, the stream's) and holds its place's stream until
    /// it stops waiting.
    pub(super) async fn crowd(&mut self) {
        let Some(room) = self.shared.room.clone() else {
            return;
        };
        let (_, user) = self.user();
        let Some(joined) = self.join(&room, &user.token).await else {
            return;
        };
        self.conn = Conn::new(self.shared.target.clone());
        self.follow_place(&room, &joined, user.id).await;
    }

    /// Follows the stream of the place `joined` took until it stops waiting, measuring how long
    /// its first event took (`rooms.stream_open`), how long after the opening its number came
    /// (`rooms.opening_event`, for a place taken before) and after its admission its event
    /// (`rooms.admission_event`); notes the place for the verdict. Whether it was admitted
    /// (`None`: no place in the answer).
    async fn follow_place(&mut self, room: &RoomRun, joined: &Value, user_id: i64) -> Option<bool> {
        let place_id = joined["placeId"].as_str()?.to_owned();
        let early = joined.get("number").is_none();
        let opened = Instant::now();
        // Until the run's room closes at its end, and a little after.
        let timeout = self.shared.think.max(STREAM_TIMEOUT) + self.shared.duration;
        let mut last = Value::Null;
        let (mut first_event, mut opening_delay, mut admission_delay) = (None, None, None);
        let held = &self.shared.streams_held;
        let followed = follow_events(
            &self.shared.target,
            &format!("/api/room-places/{place_id}/events"),
            None,
            timeout,
            |_, data| {
                if first_event.is_none() {
                    first_event = Some(opened.elapsed());
                    held.fetch_add(1, Ordering::Relaxed);
                }
                if early && opening_delay.is_none() && data.get("number").is_some() {
                    opening_delay = delay_since_time(room.opens_at);
                }
                last = data.clone();
                let status = data["status"].as_str().unwrap_or_default();
                if status == "ADMITTED" {
                    admission_delay = delay_since(&data["admittedAt"]);
                }
                status != "WAITING"
            },
        )
        .await;
        if first_event.is_some() {
            held.fetch_sub(1, Ordering::Relaxed);
        }
        let status = match &followed {
            Ok(true) => last["status"].as_str().unwrap_or("?").to_owned(),
            Ok(false) => "stream ended early".to_owned(),
            Err(error) => format!("stream failed: {}", super::short(error)),
        };
        self.shared
            .log
            .lock()
            .expect("run log")
            .room
            .places
            .push(TakenPlace {
                place_id,
                user_id,
                early,
                last_status: status.clone(),
            });
        let admitted = status == "ADMITTED";
        let expected = Answer::Expected {
            status: 200,
            code: None,
        };
        match (first_event, &followed) {
            (Some(took), _) => self.note("rooms.stream_open", took, expected),
            (None, Err(error)) => {
                let label = super::short(error);
                self.note(
                    "rooms.stream_open",
                    opened.elapsed(),
                    Answer::Error { label },
                );
            }
            (None, Ok(_)) => {}
        }
        let refusal = (!admitted).then_some(status.as_str());
        self.record_stream(
            "rooms.wait",
            opened.elapsed(),
            followed.map(|_| true),
            refusal,
        );
        for (step, delay) in [
            ("rooms.opening_event", opening_delay),
            ("rooms.admission_event", admission_delay),
        ] {
            if let Some(delay) = delay {
                let answer = Answer::Expected {
                    status: 200,
                    code: None,
                };
                self.note(step, delay, answer);
            }
        }
        Some(admitted)
    }
}

/// How long ago `admitted_at` (the server's clock, RFC 3339) was, by this host's clock.
fn delay_since(admitted_at: &Value) -> Option<Duration> {
    delay_since_time(admitted_at.as_str()?.parse().ok()?)
}

/// How long ago `at` was, by this host's clock.
fn delay_since_time(at: DateTime<Utc>) -> Option<Duration> {
    Some(
        SystemTime::now()
            .duration_since(SystemTime::from(at))
            .unwrap_or_default(),
    )
}
