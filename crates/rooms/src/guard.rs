//! A guarded request and the room in front of its sale: from the room's creation until it
//! closes, the request goes on only with its user's unspent, unexpired admission, claimed for
//! it alone; an accepted request (202) spends the admission, a refused one gives it back.
//! Admins are not guarded. A line that cannot be reached fails closed, unless the deployment
//! chose to fail open; a claim it makes once it answers again is given back.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};

use crate::{line::Claim, Rooms, Sale};

/// How long a claim holds an admission for a request that never settles it (its process
/// died): longer than any request may take.
pub const LEASE: Duration = Duration::seconds(60);
/// How long a guarded request waits for the line before it is refused (fail closed) or let
/// through (fail open): a line that does not answer must not hold requests for seconds.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a guarded request may not go on.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// No unspent, unexpired admission from the room (403 `ADMISSION_REQUIRED`).
    #[error("an admission from room {room} is required")]
    Required { room: i64 },
    /// Another request of the same user is using the admission right now.
    #[error("the admission from room {room} is in use by another request")]
    InUse { room: i64 },
    /// The line cannot be reached, and the deployment fails closed.
    #[error("the waiting room's line cannot be reached")]
    Unavailable(#[source] anyhow::Error),
}

/// Admissions claimed for one request: [`settle`] them with its outcome.
#[derive(Debug, Default)]
#[must_use = "a claimed admission is settled with the request's outcome"]
pub struct Claimed {
    rooms: Vec<(i64, i64)>,
}

/// Claims `user`'s admission from every room guarding one of `sales`.
pub async fn claim(
    rooms: &Rooms,
    sales: &[Sale],
    user: i64,
    is_admin: bool,
    now: DateTime<Utc>,
) -> Result<Claimed, GuardError> {
    let mut claimed = Claimed::default();
    if is_admin {
        return Ok(claimed);
    }
    let snapshot = rooms.registry().snapshot();
    let mut seen = HashSet::new();
    for &sale in sales {
        let Some(room) = snapshot.guarding(sale) else {
            continue;
        };
        if !seen.insert(room.id) {
            continue;
        }
        let refused = match ask(rooms, room.id, user, now).await {
            Ok(Claim::Granted) => {
                claimed.rooms.push((room.id, user));
                continue;
            }
            Ok(Claim::Required) => GuardError::Required { room: room.id },
            Ok(Claim::InUse) => GuardError::InUse { room: room.id },
            Err(_) if rooms.config().fail_open => continue,
            Err(error) => GuardError::Unavailable(error),
        };
        settle(rooms, claimed, false).await;
        return Err(refused);
    }
    Ok(claimed)
}

/// Claims `user`'s admission in `room`, waiting at most [`WAIT`]. A claim the line had not
/// answered by then may still be made once it answers: it is given back then, or the user
/// would find the admission in use until its lease ran out.
async fn ask(rooms: &Rooms, room: i64, user: i64, now: DateTime<Utc>) -> anyhow::Result<Claim> {
    let lines = rooms.lines().clone();
    let mut claim = Box::pin(async move { lines.claim(room, user, now, LEASE).await });
    if let Ok(answer) = tokio::time::timeout(WAIT, &mut claim).await {
        return answer;
    }
    let lines = rooms.lines().clone();
    tokio::spawn(async move {
        if let Ok(Claim::Granted) = claim.await {
            if let Err(error) = lines.settle(room, user, false).await {
                tracing::warn!(room, user, %error, "giving back a claim made too late");
            }
        }
    });
    anyhow::bail!("the line did not answer within {WAIT:?}")
}

/// Spends the claimed admissions (`accepted`) or gives them back.
pub async fn settle(rooms: &Rooms, claimed: Claimed, accepted: bool) {
    for (room, user) in claimed.rooms {
        if let Err(error) = rooms.lines().settle(room, user, accepted).await {
            // The claim's lease frees it in the end; an accepted request's admission may
            // then be used once more.
            tracing::warn!(room, user, accepted, %error, "settling an admission");
        }
    }
}
