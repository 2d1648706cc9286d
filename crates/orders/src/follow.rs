//! Following an order: its stored status changes after the last one a client has seen, then
//! each new one as it is stored, ending after a terminal status.

use std::collections::VecDeque;

use futures::Stream;

use crate::{
    find::{changes, Change},
    order_channel, OrderError, Orders,
};

/// The changes of order `id` after `last_seen` (with `None`: the current one), then each later
/// change, ending after a terminal status (at once when the client already has it). A
/// `last_seen` past the newest change (made up, or from another order) counts as the newest.
/// Wake-ups come over the cache's pub/sub; the stored changes are read again every
/// [`cache::RECHECK`] regardless, so a lost wake-up only delays.
pub async fn follow(
    orders: &Orders,
    id: i64,
    last_seen: Option<i64>,
) -> Result<impl Stream<Item = Change> + Send + 'static, OrderError> {
    // Subscribe before reading the changes, so a change stored in between still wakes us.
    let wake_ups = orders.cache().subscribe(&order_channel(id));
    let newest = changes(orders.db(), id, None).await?;
    let newest = newest.first();
    let after = last_seen.map(|claimed| newest.map_or(claimed, |c| claimed.min(c.version)));
    let pending: VecDeque<Change> = match after {
        None => newest.cloned().into_iter().collect(),
        Some(_) => changes(orders.db(), id, after).await?.into(),
    };
    // A client that already has the terminal change gets an empty stream that ends.
    let done = pending.is_empty() && newest.is_some_and(|c| c.terminal);
    let follow = Follow {
        orders: orders.clone(),
        id,
        after,
        pending,
        wake_ups,
        done,
    };
    Ok(futures::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(change) = f.pending.pop_front() {
                f.after = Some(change.version);
                f.done = change.terminal;
                return Some((change, f));
            }
            if f.done {
                return None;
            }
            f.wake_ups.changed().await;
            match changes(f.orders.db(), f.id, f.after).await {
                Ok(later) => f.pending.extend(later),
                Err(error) => tracing::warn!(
                    order_id = f.id,
                    error = format!("{error:#}"),
                    "re-reading an order failed"
                ),
            }
        }
    }))
}

struct Follow {
    orders: Orders,
    id: i64,
    after: Option<i64>,
    pending: VecDeque<Change>,
    wake_ups: cache::Subscription,
    done: bool,
}
