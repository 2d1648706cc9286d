//! An issue request: the gate, then `coupon-issued` on the bus, then 202. No SQL unless the
//! coupon's gate state has to be rebuilt.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chrono::Utc;
use events::{correlation, Envelope};
use metrics::counter;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{CouponIssued, Task, TaskStatus};
use crate::{
    gate::{self, Admission, PendingTask, Withdrawal},
    CouponError, Coupons,
};

/// How long this process answers `SOLD_OUT` itself after the gate did: most of a flash sale's
/// traffic arrives after the last unit is gone, and this spares it the cache round trip. A unit
/// reopened meanwhile (a request that could not be published) is admitted at most this much
/// later; a duplicate of a request another process published gets `SOLD_OUT` instead of
/// `ALREADY_REQUESTED` (both 409).
const SOLD_OUT_MEMORY: Duration = Duration::from_millis(100);

/// How many `(coupon, user)` requests this process remembers as published (see
/// [`Remembered`]); it forgets them all when this many more arrive.
const REQUESTED_MEMORY: usize = 200_000;

/// Answers this process gives itself, sparing the cache a round trip (and the caller its rate
/// limit): most of a flash sale's traffic is users asking again.
#[derive(Default)]
pub(crate) struct Remembered {
    /// Coupons the gate recently answered `SOLD_OUT` for, until when.
    sold_out: HashMap<i64, Instant>,
    /// `(coupon, user)` requests this process published and settled. Such a request is never
    /// withdrawn, so the user stays marked and the answer stays `ALREADY_REQUESTED` (from the
    /// gate, `COUPON_EXPIRED` once the coupon expires; both refusals).
    requested: HashSet<(i64, i64)>,
}

impl Remembered {
    fn refusal(&mut self, coupon: i64, user: i64) -> Option<CouponError> {
        if self.requested.contains(&(coupon, user)) {
            return Some(CouponError::AlreadyRequested);
        }
        match self.sold_out.get(&coupon) {
            Some(until) if *until > Instant::now() => Some(CouponError::SoldOut),
            Some(_) => {
                self.sold_out.remove(&coupon);
                None
            }
            None => None,
        }
    }

    fn published(&mut self, coupon: i64, user: i64) {
        if self.requested.len() >= REQUESTED_MEMORY {
            self.requested.clear();
        }
        self.requested.insert((coupon, user));
    }
}

/// How long a request waits for the last units' requests to be published before it is told to
/// retry (503), and how often it asks the gate meanwhile.
const HELD_WAIT: Duration = Duration::from_millis(500);
const HELD_POLL: Duration = Duration::from_millis(50);

/// Accepts `user`'s request for `coupon`: returns the pending task once the bus has
/// `coupon-issued`. Refused with `AlreadyRequested`, `SoldOut`, `Expired` or `NotFound`, or
/// `Held` while the last units are held by requests not yet on the bus; when the bus is stuck
/// (it completes nothing for the publish timeout) or stays too busy to take the event before
/// the reconciler would step in, the request is withdrawn from the gate (a late delivery of it
/// takes nothing) and the answer is `Unavailable`, so an accepted request is never lost and a
/// refused one holds nothing. A bus that is merely busy is waited for. After `settle` the reconciler leaves it alone.
///
/// The gate step and the publish run in a task of their own, so a client that hangs up midway
/// cannot leave a unit admitted but never published.
pub async fn request(coupons: &Coupons, coupon: i64, user: i64) -> Result<Task, CouponError> {
    request_within(coupons, coupon, user, async { Ok(()) }).await
}

/// [`request`], counted against a limit of the caller's (`limit`, a per-user rate) unless this
/// process refuses it from memory: such a refusal costs nothing, so it is not counted. The
/// limit's refusal is the answer when it refuses. A refusal from memory is most of a rush's
/// answers, so it opens no span (a span costs more than the refusal).
pub async fn request_within<E: From<CouponError>>(
    coupons: &Coupons,
    coupon: i64,
    user: i64,
    limit: impl std::future::Future<Output = Result<(), E>>,
) -> Result<Task, E> {
    if let Some(refusal) = remembered(coupons, coupon, user) {
        count(coupons, refused_label(&refusal));
        return Err(refusal.into());
    }
    let span = tracing::info_span!("request_within", coupon_id = coupon, user_id = user);
    async move {
        limit.await?;
        let coupons = coupons.clone();
        let work = async move { admit_and_publish(&coupons, coupon, user).await };
        let answer = tokio::spawn(correlation::carried(work).in_current_span())
            .await
            .map_err(|e| CouponError::Unknown(e.into()))?;
        answer.map_err(E::from)
    }
    .instrument(span)
    .await
}

async fn admit_and_publish(coupons: &Coupons, coupon: i64, user: i64) -> Result<Task, CouponError> {
    let task_id = Uuid::new_v4();
    let pending = PendingTask {
        coupon_id: coupon,
        user_id: user,
    };
    let admitted = admit(coupons, task_id, pending).await;
    if let Err(CouponError::Unknown(error)) = admitted {
        // The gate's answer is unknown (it may have admitted): undo, so nothing stays held. The
        // HTTP layer reports the refusal (once a second per cause).
        tracing::debug!(
            error = format!("{error:#}"),
            "the coupon gate did not answer; undoing"
        );
        count(coupons, "unavailable");
        if let Err(undo) = coupons
            .gate
            .undo(task_id, pending, Withdrawal::Refused)
            .await
        {
            tracing::error!(error = format!("{undo:#}"), "undoing the gate mark failed");
        }
        return Err(CouponError::Unavailable(error));
    }
    if let Err(refused) = admitted {
        if let CouponError::SoldOut = refused {
            let until = Instant::now() + SOLD_OUT_MEMORY;
            remember(coupons).sold_out.insert(coupon, until);
        }
        count(coupons, refused_label(&refused));
        return Err(refused);
    }

    let event = CouponIssued {
        task_id,
        coupon_id: coupon,
        user_id: user,
    };
    let envelope = Envelope::new(&event);
    let settings = &coupons.settings;
    let published = coupons
        .bus
        .publish_unless_stuck(
            &[envelope],
            settings.publish_timeout,
            settings.publish_cap(),
        )
        .await;
    if let Err(error) = published {
        tracing::debug!(
            error = format!("{error:#}"),
            "publishing coupon-issued failed; withdrawing the request"
        );
        match coupons
            .gate
            .undo(task_id, pending, Withdrawal::Refused)
            .await
        {
            // The event did arrive and its unit was taken: the request went through.
            Ok(false) => {}
            Ok(true) => {
                count(coupons, "unavailable");
                return Err(CouponError::Unavailable(error));
            }
            Err(undo) => {
                tracing::error!(
                    error = format!("{undo:#}"),
                    "withdrawing the request failed"
                );
                count(coupons, "unavailable");
                return Err(CouponError::Unavailable(error));
            }
        }
    } else {
        match coupons.gate.settle(task_id, pending).await {
            Ok(()) => remember(coupons).published(coupon, user),
            // The reconciler settles it later: its unit was taken, or it is withdrawn then.
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "marking a request published failed"
            ),
        }
    }
    count(coupons, "accepted");
    Ok(Task {
        task_id,
        coupon_id: coupon,
        user_id: user,
        status: TaskStatus::Pending,
        reason: None,
        user_coupon_id: None,
    })
}

/// The refusal this process gives `user`'s request for `coupon` from memory, if any: the
/// gate answered `SOLD_OUT` within the last 100 ms, or this process published the user's
/// request.
fn remembered(coupons: &Coupons, coupon: i64, user: i64) -> Option<CouponError> {
    remember(coupons).refusal(coupon, user)
}

fn remember(coupons: &Coupons) -> std::sync::MutexGuard<'_, Remembered> {
    coupons.remembered.lock().expect("answer memory")
}

/// Passes the gate, rebuilding the coupon's state first if the cache has lost it. While the
/// last units are held by requests still being published, asks again for up to [`HELD_WAIT`]:
/// they are nearly always published, and then the answer is a final `SOLD_OUT` rather than a
/// retry.
async fn admit(coupons: &Coupons, task: Uuid, pending: PendingTask) -> Result<(), CouponError> {
    let (mut rebuilds, held_until) = (0, Instant::now() + HELD_WAIT);
    loop {
        let now_ms = Utc::now().timestamp_millis();
        match coupons.gate.admit(task, pending, now_ms).await? {
            Admission::Admitted => return Ok(()),
            Admission::AlreadyRequested => return Err(CouponError::AlreadyRequested),
            Admission::SoldOut => return Err(CouponError::SoldOut),
            Admission::Expired => return Err(CouponError::Expired),
            Admission::Held if Instant::now() >= held_until => return Err(CouponError::Held),
            Admission::Held => tokio::time::sleep(HELD_POLL).await,
            Admission::Unknown if rebuilds == 3 => {
                return Err(anyhow::anyhow!(
                    "the coupon's gate state vanished right after each rebuild"
                )
                .into())
            }
            Admission::Unknown => {
                rebuilds += 1;
                gate::rebuild(coupons, pending.coupon_id).await?;
            }
        }
    }
}

/// Every outcome of an issue request.
pub const OUTCOMES: [&str; 8] = [
    "accepted",
    "already_requested",
    "sold_out",
    "held",
    "expired",
    "not_found",
    "unavailable",
    "error",
];

/// This process's issue requests by outcome, in [`OUTCOMES`] order (for the operations page;
/// `stampede_coupon_issue_requests_total` is the same, for Prometheus).
#[derive(Default)]
pub(crate) struct Tally([AtomicU64; OUTCOMES.len()]);

impl Tally {
    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        OUTCOMES
            .iter()
            .zip(&self.0)
            .map(|(outcome, n)| (*outcome, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Counts an issue request by its outcome.
fn count(coupons: &Coupons, outcome: &'static str) {
    counter!("stampede_coupon_issue_requests_total", "outcome" => outcome).increment(1);
    if let Some(at) = OUTCOMES.iter().position(|o| *o == outcome) {
        coupons.tally.0[at].fetch_add(1, Ordering::Relaxed);
    }
}

fn refused_label(refused: &CouponError) -> &'static str {
    match refused {
        CouponError::AlreadyRequested => "already_requested",
        CouponError::SoldOut => "sold_out",
        CouponError::Expired => "expired",
        CouponError::NotFound => "not_found",
        CouponError::Held => "held",
        _ => "error",
    }
}
