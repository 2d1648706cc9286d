//! What must hold after a run, checked over the API: coupons never issued beyond their
//! quantity or twice to a user, every accepted coupon task and every order settled, stock
//! taken equal to the units that paid or payable orders hold, and a waiting room's line kept
//! ([`room`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::Method;
use serde::Serialize;
use serde_json::Value;

use crate::{
    http::{Conn, Target},
    scenario::RunLog,
    Seeded,
};

mod room;

/// How long the checks wait for tasks and orders still in flight to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// One invariant and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub invariant: &'static str,
    pub held: bool,
    pub detail: String,
}

/// Checks every invariant that applies to what `log` recorded.
pub async fn check(target: Arc<Target>, seed: &Seeded, log: &RunLog) -> anyhow::Result<Vec<Check>> {
    let mut conn = Conn::new(target);
    let mut checks = Vec::new();
    if !log.coupon_tasks.is_empty() || !log.coupons_issued_before.is_empty() {
        checks.extend(coupons(&mut conn, seed, log).await?);
    }
    if !log.orders.is_empty() || !log.stock_before.is_empty() {
        checks.extend(orders(&mut conn, seed, log).await?);
    }
    checks.extend(room::checks(&mut conn, seed, log).await?);
    Ok(checks)
}

/// GETs `path` until `settled` holds of the answer or the settle time is over; the last answer.
async fn settled(
    conn: &mut Conn,
    path: &str,
    token: Option<&str>,
    until: Instant,
    settled: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    loop {
        let reply = conn.send(Method::GET, path, token, None).await?;
        let value = reply.json();
        if (reply.status == 200 && settled(&value)) || Instant::now() > until {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn coupons(conn: &mut Conn, seed: &Seeded, log: &RunLog) -> anyhow::Result<Vec<Check>> {
    let until = Instant::now() + SETTLE;
    let mut pending = 0;
    let mut successes: BTreeMap<i64, i64> = BTreeMap::new();
    let mut per_user: HashMap<(i64, usize), usize> = HashMap::new();
    for task in &log.coupon_tasks {
        let path = format!("/api/coupon-tasks/{}", task.task_id);
        let found = settled(conn, &path, None, until, |t| t["status"] != "PENDING").await?;
        match found["status"].as_str() {
            Some("SUCCESS") => {
                *successes.entry(task.coupon_id).or_default() += 1;
                *per_user.entry((task.coupon_id, task.user)).or_default() += 1;
            }
            Some("FAILED") => {}
            _ => pending += 1,
        }
    }
    let mut checks = vec![Check {
        invariant: "every accepted coupon task is terminal",
        held: pending == 0,
        detail: format!(
            "{} accepted, {pending} not terminal",
            log.coupon_tasks.len()
        ),
    }];

    let mut over = Vec::new();
    for (&coupon, &before) in &log.coupons_issued_before {
        let detail = conn
            .send(Method::GET, &format!("/api/coupons/{coupon}"), None, None)
            .await?
            .json();
        let total = detail["totalQuantity"].as_i64().unwrap_or(-1);
        let remaining = detail["remainingQuantity"].as_i64().unwrap_or(-1);
        let issued_now = total - remaining;
        let succeeded = successes.get(&coupon).copied().unwrap_or(0);
        if remaining < 0 || issued_now > total || issued_now - before != succeeded {
            over.push(format!(
                "coupon {coupon}: total {total}, remaining {remaining}, issued during the run {}, successful tasks {succeeded}",
                issued_now - before
            ));
        }
    }
    checks.push(Check {
        invariant: "no coupon issued beyond its quantity, and each issue is a successful task",
        held: over.is_empty(),
        detail: if over.is_empty() {
            format!("{} coupon(s) checked", log.coupons_issued_before.len())
        } else {
            over.join("; ")
        },
    });

    let mut twice: Vec<String> = per_user
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|((coupon, user), n)| {
            format!(
                "user {} got coupon {coupon} {n} times",
                seed.users[*user].id
            )
        })
        .collect();
    for &(coupon, user) in per_user.keys() {
        let account = &seed.users[user];
        let held = conn
            .send(
                Method::GET,
                &format!("/api/users/{}/coupons", account.id),
                Some(&account.token),
                None,
            )
            .await?
            .json();
        let copies = held
            .as_array()
            .map(|list| list.iter().filter(|c| c["couponId"] == coupon).count())
            .unwrap_or(0);
        if copies != 1 {
            twice.push(format!(
                "user {} holds {copies} of coupon {coupon}",
                account.id
            ));
        }
    }
    checks.push(Check {
        invariant: "no coupon issued twice to a user",
        held: twice.is_empty(),
        detail: if twice.is_empty() {
            format!("{} holder(s) checked", per_user.len())
        } else {
            twice.join("; ")
        },
    });
    Ok(checks)
}

async fn orders(conn: &mut Conn, seed: &Seeded, log: &RunLog) -> anyhow::Result<Vec<Check>> {
    let until = Instant::now() + SETTLE;
    let mut pending = Vec::new();
    let mut holding: BTreeMap<i64, i64> = BTreeMap::new();
    for order in &log.orders {
        let user = &seed.users[order.user];
        let path = format!("/api/orders/{}", order.id);
        let found = settled(conn, &path, Some(&user.token), until, |o| {
            o["status"] != "PENDING"
        })
        .await?;
        match found["status"].as_str() {
            Some("PAID" | "AWAITING_PAYMENT") => {
                *holding.entry(order.option_id).or_default() += order.quantity
            }
            Some("FAILED" | "EXPIRED" | "CANCELLED") => {}
            other => pending.push(format!("order {}: {other:?}", order.id)),
        }
    }
    let mut checks = vec![Check {
        invariant: "every order is awaiting payment or terminal",
        held: pending.is_empty(),
        detail: if pending.is_empty() {
            format!("{} order(s)", log.orders.len())
        } else {
            pending.join("; ")
        },
    }];

    let mut stock_now = BTreeMap::new();
    for product in &seed.products {
        let detail = conn
            .send(Method::GET, &format!("/api/products/{product}"), None, None)
            .await?
            .json();
        for option in detail["options"].as_array().into_iter().flatten() {
            if let (Some(id), Some(stock)) = (option["id"].as_i64(), option["stock"].as_i64()) {
                stock_now.insert(id, stock);
            }
        }
    }
    let mut wrong = Vec::new();
    for (option, before) in &log.stock_before {
        let taken = before - stock_now.get(option).copied().unwrap_or(*before);
        let held = holding.get(option).copied().unwrap_or(0);
        if taken != held {
            wrong.push(format!(
                "option {option}: {taken} taken, {held} held by paid or payable orders"
            ));
        }
    }
    checks.push(Check {
        invariant: "stock taken equals the units of paid and payable orders",
        held: wrong.is_empty(),
        detail: if wrong.is_empty() {
            format!("{} option(s) checked", log.stock_before.len())
        } else {
            wrong.join("; ")
        },
    });
    Ok(checks)
}
