//! Coupons: admin creation, detail, first-come issue requests, a user's coupons.

use axum::{extract::State, http::StatusCode, response::IntoResponse};
use chrono::Utc;
use coupons::{Coupon, CouponError, NewCoupon, Task, UserCoupon};

use super::{
    auth::{Admin, Caller},
    error::{path_id, ActionBody, ApiError, AppJson, AppPath, Problem},
    users::existing_user_id,
};
use crate::{limits::Rate, state::AppState};

impl From<CouponError> for ApiError {
    fn from(error: CouponError) -> Self {
        match error {
            CouponError::Invalid { field, message } => ApiError::invalid(field, message),
            CouponError::NotFound => ApiError::not_found("no such coupon"),
            CouponError::AlreadyRequested => ApiError::new(
                StatusCode::CONFLICT,
                "ALREADY_REQUESTED",
                "this user already asked for this coupon",
            ),
            CouponError::SoldOut => {
                ApiError::new(StatusCode::CONFLICT, "SOLD_OUT", "the coupon is sold out")
            }
            CouponError::Expired => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "COUPON_EXPIRED",
                "the coupon has expired",
            ),
            CouponError::Unavailable(error) => ApiError::unavailable_because(
                "the request could not be accepted right now; nothing was kept, retry",
                &error,
            ),
            CouponError::Held => ApiError::unavailable(
                "every unit left is held by a request that may still fail; retry shortly",
            ),
            CouponError::Unknown(e) => ApiError::internal(e),
        }
    }
}

/// Creates a coupon (admins).
#[utoipa::path(post, path = "/api/admin/coupons", tag = "coupons", request_body = NewCoupon,
    security(("bearer" = [])),
    responses((status = 201, body = Coupon), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, description = "name 5–20, PERCENT 1–100, FIXED 1–1,000,000,000, quantity 0–10,000,000, expiresAt in the future", body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    AppJson(body): AppJson<NewCoupon>,
) -> Result<impl IntoResponse, ApiError> {
    let coupon = coupons::definition::create(&state.coupons, body).await?;
    Ok((StatusCode::CREATED, AppJson(coupon)))
}

/// A coupon, with the units not yet issued.
#[utoipa::path(get, path = "/api/coupons/{couponId}", tag = "coupons",
    params(("couponId" = i64, Path)),
    responses((status = 200, body = Coupon), (status = 404, body = Problem)))]
pub async fn get_coupon(
    State(state): State<AppState>,
    AppPath(coupon): AppPath<String>,
) -> Result<AppJson<Coupon>, ApiError> {
    let coupon = coupons::definition::find(state.coupons.db(), path_id(&coupon, "coupon")?).await?;
    Ok(AppJson(coupon))
}

/// Asks for a coupon, first come first served. 202 once the request is safely on the bus;
/// follow the task at `/api/coupon-tasks/{taskId}` or its `/events` stream.
#[utoipa::path(post, path = "/api/coupons/{couponId}/issue", tag = "coupons",
    params(("couponId" = i64, Path)), security(("bearer" = [])),
    request_body(content = Object, description = "`{}`, or no body"),
    responses((status = 202, description = "accepted, pending", body = Task),
        (status = 401, body = Problem),
        (status = 403, description = "`ADMISSION_REQUIRED` (with `roomId`): the coupon is behind a waiting room and the caller holds no unspent admission from it", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`ALREADY_REQUESTED` or `SOLD_OUT`; `ADMISSION_IN_USE` while another request uses the caller's admission", body = Problem),
        (status = 422, description = "`COUPON_EXPIRED`", body = Problem),
        (status = 429, description = "`RATE_LIMITED`: too many issue requests by this user (`Retry-After`)", body = Problem),
        (status = 503, description = "`UNAVAILABLE` (`Retry-After`): the bus could not take the request (nothing was kept), or every unit left is held by a request that may still fail", body = Problem)))]
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(coupon): AppPath<String>,
    _: ActionBody,
) -> Result<impl IntoResponse, ApiError> {
    let coupon = path_id(&coupon, "coupon")?;
    let user = caller.user_id.to_string();
    let limit = async {
        let limits = &state.limits;
        Ok::<_, ApiError>(
            limits
                .check_rate(&state.cache, Rate::CouponIssues, &user)
                .await?,
        )
    };
    let sale = [rooms::Sale::Coupon(coupon)];
    let claimed = rooms::guard::claim(
        &state.rooms,
        &sale,
        caller.user_id,
        caller.is_admin,
        Utc::now(),
    )
    .await?;
    let task = coupons::issue::request_within(&state.coupons, coupon, caller.user_id, limit).await;
    rooms::guard::settle(&state.rooms, claimed, task.is_ok()).await;
    Ok((StatusCode::ACCEPTED, AppJson(task?)))
}

/// A user's coupons, newest first; `EXPIRED` once an unused coupon is past its expiry.
#[utoipa::path(get, path = "/api/users/{userId}/coupons", tag = "coupons",
    params(("userId" = String, Path, description = "a user id or `me`")), security(("bearer" = [])),
    responses((status = 200, body = Vec<UserCoupon>), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn user_coupons(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<Vec<UserCoupon>>, ApiError> {
    let user_id = existing_user_id(&state, &caller, &user).await?;
    let coupons = coupons::wallet::list(state.coupons.db(), user_id)
        .await
        .map_err(ApiError::internal)?;
    Ok(AppJson(coupons))
}
