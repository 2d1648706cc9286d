//! Point balances: balance, charge (Idempotency-Key), history.

use axum::{extract::State, http::StatusCode, response::Response};
use chrono::{DateTime, Utc};
use points::balance::{self, PointsError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    auth::Caller,
    error::{ApiError, AppJson, AppPath, Problem},
    idempotency::{self, IdempotencyKey, Stored},
    users::existing_user_id,
};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Charge {
    /// 10,000 to 1,000,000 KRW.
    #[schema(minimum = 10_000, maximum = 1_000_000)]
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointBody {
    pub user_id: i64,
    pub point: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryBody {
    pub id: i64,
    /// `CHARGE`, `USE` or `REFUND`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: balance::Kind,
    pub amount: i64,
    pub balance_after: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl From<PointsError> for ApiError {
    fn from(error: PointsError) -> Self {
        match error {
            PointsError::InvalidChargeAmount => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "INVALID_CHARGE_AMOUNT",
                "amount: a charge is 10,000 to 1,000,000 KRW",
            ),
            PointsError::Insufficient { balance, needed } => ApiError::new(
                StatusCode::CONFLICT,
                "INSUFFICIENT_POINTS",
                format!("the balance is {balance} KRW, {needed} KRW needed"),
            ),
            PointsError::Unknown(e) => ApiError::internal(e),
        }
    }
}

/// A user's balance (0 for a new user).
#[utoipa::path(get, path = "/api/users/{userId}/points", tag = "points",
    params(("userId" = String, Path, description = "a user id or `me`")), security(("bearer" = [])),
    responses((status = 200, body = PointBody), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_balance(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<PointBody>, ApiError> {
    let user_id = existing_user_id(&state, &caller, &user).await?;
    let point = balance::balance(&state.db, user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(AppJson(PointBody { user_id, point }))
}

/// Charges points; honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/users/{userId}/points/charge", tag = "points", request_body = Charge,
    params(("userId" = String, Path, description = "a user id or `me`"),
        ("Idempotency-Key" = Option<String>, Header, description = "retry key, up to 255 characters")),
    security(("bearer" = [])),
    responses((status = 200, description = "the new balance", body = PointBody),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, description = "`INVALID_CHARGE_AMOUNT` or `IDEMPOTENCY_KEY_REUSED`", body = Problem)))]
pub async fn charge(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    AppPath(user): AppPath<String>,
    AppJson(body): AppJson<Charge>,
) -> Result<Response, ApiError> {
    let user_id = existing_user_id(&state, &caller, &user).await?;
    if !(balance::MIN_CHARGE..=balance::MAX_CHARGE).contains(&body.amount) {
        return Err(PointsError::InvalidChargeAmount.into());
    }
    let request = (user_id, &body);
    idempotency::once(
        &state.db,
        &key,
        "points.charge",
        caller.user_id,
        &request,
        |tx| {
            Box::pin(async move {
                let point = balance::charge(tx, user_id, body.amount).await?;
                Stored::new(StatusCode::OK, PointBody { user_id, point })
            })
        },
    )
    .await
}

/// A user's balance changes, newest first.
#[utoipa::path(get, path = "/api/users/{userId}/points/history", tag = "points",
    params(("userId" = String, Path, description = "a user id or `me`")), security(("bearer" = [])),
    responses((status = 200, body = Vec<HistoryBody>), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Vec<HistoryBody>>, ApiError> {
    let user_id = existing_user_id(&state, &caller, &user).await?;
    let entries = balance::history(&state.db, user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(AppJson(
        entries
            .into_iter()
            .map(|e| HistoryBody {
                id: e.id,
                kind: e.kind,
                amount: e.amount,
                balance_after: e.balance_after,
                order_id: e.order_id,
                created_at: e.created_at,
            })
            .collect(),
    ))
}
