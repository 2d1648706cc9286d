//! What must hold of a `waiting-room` run, read back over the API: no guarded request went
//! through without an admission, the line was admitted in its order (the part taken before
//! opening in the order the published seed gives), nobody was admitted twice, the room admitted
//! at its set rate, and every stream ended admitted or closed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use hyper::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Check;
use crate::{http::Conn, scenario::RunLog, Seeded};

/// A place as read back.
struct Read {
    user_id: i64,
    early: bool,
    number: Option<u64>,
    status: String,
    admitted_at: Option<DateTime<Utc>>,
}

fn check(invariant: &'static str, wrong: Vec<String>, fine: String) -> Check {
    Check {
        invariant,
        held: wrong.is_empty(),
        detail: if wrong.is_empty() {
            fine
        } else {
            wrong.join("; ")
        },
    }
}

/// SHA-256(seed bytes ‖ user id in decimal): the order of the places taken before opening.
fn shuffle_key(seed: &str, user: i64) -> Vec<u8> {
    let bytes: Vec<u8> = (0..seed.len() / 2)
        .filter_map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).ok())
        .collect();
    let mut hash = Sha256::new();
    hash.update(&bytes);
    hash.update(user.to_string().as_bytes());
    hash.finalize().to_vec()
}

pub(super) async fn checks(
    conn: &mut Conn,
    seed: &Seeded,
    log: &RunLog,
) -> anyhow::Result<Vec<Check>> {
    let Some(room) = &log.room.room else {
        return Ok(Vec::new());
    };
    let mut places = Vec::with_capacity(log.room.places.len());
    for taken in &log.room.places {
        let path = format!("/api/room-places/{}", taken.place_id);
        let place: Value = conn.send(Method::GET, &path, None, None).await?.json();
        places.push(Read {
            user_id: taken.user_id,
            early: taken.early,
            number: place["number"].as_u64(),
            status: place["status"].as_str().unwrap_or("?").to_owned(),
            admitted_at: place["admittedAt"].as_str().and_then(|at| at.parse().ok()),
        });
    }
    let shown: Value = conn
        .send(
            Method::GET,
            &format!("/api/rooms/{}", room.room_id),
            None,
            None,
        )
        .await?
        .json();
    let mut checks = Vec::new();

    // A guarded request accepted without an admission, or a task whose place was not spent.
    let mut wrong = Vec::new();
    if log.room.unadmitted_accepted > 0 {
        wrong.push(format!(
            "{} of {} requests without an admission were accepted",
            log.room.unadmitted_accepted, log.room.unadmitted_asked
        ));
    }
    let spent: HashSet<i64> = places
        .iter()
        .filter(|place| place.status == "USED")
        .map(|place| place.user_id)
        .collect();
    let unspent = log
        .coupon_tasks
        .iter()
        .filter(|task| task.coupon_id == room.coupon_id)
        .filter(|task| !spent.contains(&seed.users[task.user].id))
        .count();
    if unspent > 0 {
        wrong.push(format!(
            "{unspent} accepted request(s) whose user's place is not USED"
        ));
    }
    checks.push(check(
        "no guarded request was accepted without an admission",
        wrong,
        format!(
            "{} asked without an admission, all refused; {} accepted with one",
            log.room.unadmitted_asked,
            log.coupon_tasks.len()
        ),
    ));

    // The order of the line: the early part by the seed, admissions by number.
    let mut wrong = Vec::new();
    match shown["shuffleSeed"].as_str() {
        Some(seed) => {
            let mut early: Vec<&Read> = places.iter().filter(|place| place.early).collect();
            early.sort_by_key(|place| shuffle_key(seed, place.user_id));
            let numbers: Vec<Option<u64>> = early.iter().map(|place| place.number).collect();
            let ascending = numbers.windows(2).all(|pair| pair[0] < pair[1]);
            if !ascending || numbers.iter().any(Option::is_none) {
                wrong.push(format!(
                    "the {} places taken before opening are not numbered in the seed's order",
                    early.len()
                ));
            }
        }
        None => wrong.push("the room published no shuffle seed".to_owned()),
    }
    let mut admitted: Vec<&Read> = places.iter().filter(|p| p.admitted_at.is_some()).collect();
    admitted.sort_by_key(|place| place.number);
    if let Some(pair) = admitted
        .windows(2)
        .find(|pair| pair[0].admitted_at > pair[1].admitted_at)
    {
        wrong.push(format!(
            "number {:?} was admitted after number {:?}",
            pair[0].number, pair[1].number
        ));
    }
    let last_admitted = admitted.last().and_then(|place| place.number);
    let skipped = places
        .iter()
        .filter(|p| matches!(p.status.as_str(), "WAITING" | "CLOSED"))
        .filter(|p| p.number.is_some() && p.number < last_admitted)
        .count();
    if skipped > 0 {
        wrong.push(format!(
            "{skipped} place(s) still waiting ahead of an admitted one"
        ));
    }
    checks.push(check(
        "admissions followed the line (the early part in the published seed's order)",
        wrong,
        format!(
            "{} admitted in order; {} early places in the seed's order",
            admitted.len(),
            places.iter().filter(|p| p.early).count()
        ),
    ));

    // One admission per person.
    let users: HashSet<i64> = admitted.iter().map(|place| place.user_id).collect();
    let twice = admitted.len() - users.len();
    checks.push(check(
        "nobody was admitted twice",
        if twice > 0 {
            vec![format!("{twice} user(s) admitted more than once")]
        } else {
            Vec::new()
        },
        format!("{} admitted, each once", admitted.len()),
    ));

    // The rate, over the open period while people waited (from a second after opening to the
    // last admission).
    let from = room.opens_at + chrono::Duration::seconds(1);
    let to = admitted.iter().filter_map(|place| place.admitted_at).max();
    let mut wrong = Vec::new();
    let mut fine = "too short to measure".to_owned();
    if let Some(to) = to.filter(|to| *to > from + chrono::Duration::seconds(3)) {
        let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
        let counted = admitted
            .iter()
            .filter(|place| place.admitted_at.is_some_and(|at| at > from && at <= to))
            .count() as f64;
        let expected = room.rate as f64 * seconds;
        let error = (counted - expected) / expected;
        fine = format!(
            "{counted} admitted in {seconds:.1} s: {:.1}/s against {} set ({:+.1}%)",
            counted / seconds,
            room.rate,
            error * 100.0
        );
        if (counted - expected).abs() > expected * 0.05 + 2.0 {
            wrong.push(fine.clone());
        }
    }
    checks.push(check(
        "the admission rate was within 5% of the set rate",
        wrong,
        fine,
    ));

    // Every stream ended as it should.
    let odd: Vec<String> = log
        .room
        .places
        .iter()
        .filter(|place| !matches!(place.last_status.as_str(), "ADMITTED" | "CLOSED"))
        .map(|place| format!("{}: {}", place.place_id, place.last_status))
        .collect();
    let total = log.room.places.len();
    let mut shown_odd: Vec<String> = odd.iter().take(5).cloned().collect();
    if odd.len() > 5 {
        shown_odd.push(format!("{} more of {total}", odd.len() - 5));
    }
    checks.push(check(
        "every place's stream ended ADMITTED or CLOSED",
        shown_odd,
        format!("{total} stream(s)"),
    ));
    Ok(checks)
}
