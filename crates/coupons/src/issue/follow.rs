//! Following an issue request to its result.

use uuid::Uuid;

use super::{find_task, task_channel, Task};
use crate::Coupons;

/// `task` once it is terminal: at once if it already is; otherwise when the store consumer's
/// wake-up comes (from any instance), or at the latest each [`cache::RECHECK`], when the task
/// is read again (a lost wake-up only delays).
pub async fn follow(coupons: &Coupons, mut task: Task) -> Task {
    if task.is_terminal() {
        return task;
    }
    let id: Uuid = task.task_id;
    // Read again once subscribed, so a result stored in between still wakes us.
    let mut wake_ups = coupons.cache.subscribe(&task_channel(id));
    loop {
        match find_task(coupons, id).await {
            Ok(latest) => task = latest,
            Err(error) => {
                tracing::warn!(task_id = %id, error = format!("{error:#}"), "re-reading a coupon task failed")
            }
        }
        if task.is_terminal() {
            return task;
        }
        wake_ups.changed().await;
    }
}
