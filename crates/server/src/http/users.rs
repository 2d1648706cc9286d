//! Users and auth: sign-up, tokens, profile.

use axum::{extract::State, http::StatusCode};
use points::users::{self, UserError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    auth::Caller,
    client_address::ClientAddress,
    error::{ApiError, AppJson, AppPath, Problem},
};
use crate::{limits::Rate, state::AppState};

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUp {
    /// 2–20 characters, not all blank.
    #[schema(
        min_length = 2,
        max_length = 20,
        pattern = r"^[^\x00]*[^\x00 \t\n\r][^\x00]*$"
    )]
    pub name: String,
    /// One `@`, a dot inside the domain, no blanks; at most 254 characters.
    #[schema(
        max_length = 254,
        pattern = r"^[^@ \t\n\r\x00]+@[^@ \t\n\r\x00.][^@ \t\n\r\x00]*\.[^@ \t\n\r\x00]*[^@ \t\n\r\x00.]$"
    )]
    pub email: String,
    /// 5–30 characters.
    #[schema(min_length = 5, max_length = 30)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    pub id: i64,
    pub name: String,
    pub email: String,
}

impl From<users::User> for UserBody {
    fn from(user: users::User) -> Self {
        Self {
            id: user.id,
            name: user.name,
            email: user.email,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// An email address as sign-up takes it (at most 254 characters).
    #[schema(
        max_length = 254,
        pattern = r"^[^@ \t\n\r\x00]+@[^@ \t\n\r\x00.][^@ \t\n\r\x00]*\.[^@ \t\n\r\x00]*[^@ \t\n\r\x00.]$"
    )]
    pub email: String,
    /// 5–30 characters, as every password is.
    #[schema(min_length = 5, max_length = 30)]
    pub password: String,
}

/// A ticket that opens one stream (`?ticket=` on a stream route).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTicket {
    pub ticket: String,
    /// Seconds left to open the stream with it.
    pub expires_in: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Invalid { field, reason } => ApiError::invalid(field, reason),
            UserError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                "EMAIL_TAKEN",
                "an account with this email exists",
            ),
            UserError::Overloaded(_) => {
                ApiError::overloaded("too many sign-ups and logins at once; retry")
            }
            UserError::Unknown(e) => ApiError::internal(e),
        }
    }
}

/// Creates an account.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = SignUp, responses(
    (status = 201, body = UserBody),
    (status = 409, description = "`EMAIL_TAKEN`", body = Problem),
    (status = 422, description = "name 2–20, password 5–30 characters, an email", body = Problem),
    (status = 429, description = "`RATE_LIMITED`: too many sign-ups from this address (`Retry-After`)", body = Problem),
    (status = 503, description = "`OVERLOADED`: password hashing is saturated (`Retry-After`)", body = Problem)))]
pub async fn sign_up(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    AppJson(body): AppJson<SignUp>,
) -> Result<(StatusCode, AppJson<UserBody>), ApiError> {
    state
        .limits
        .check_rate(&state.cache, Rate::SignUps, &address.to_string())
        .await?;
    let user = users::sign_up(
        &state.db,
        &state.hashing,
        &body.name,
        &body.email,
        &body.password,
    )
    .await?;
    Ok((StatusCode::CREATED, AppJson(user.into())))
}

/// Exchanges credentials for a bearer token. Failed attempts are counted per email and client
/// address, and (more loosely) per email; a login that succeeds is not counted.
#[utoipa::path(post, path = "/api/auth/token", tag = "users", request_body = Credentials,
    responses((status = 200, body = Token),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = Problem),
        (status = 422, description = "not an email address, or a password outside 5–30 characters", body = Problem),
        (status = 429, description = "`RATE_LIMITED`: too many failed attempts for this email (`Retry-After`)", body = Problem),
        (status = 503, description = "`OVERLOADED`: password hashing is saturated (`Retry-After`)", body = Problem)))]
pub async fn token(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    AppJson(body): AppJson<Credentials>,
) -> Result<AppJson<Token>, ApiError> {
    let email = users::login_email(&body.email, &body.password)?;
    let from_here = format!("{email}|{address}");
    let limits = &state.limits;
    limits
        .check_rate(&state.cache, Rate::Logins, &from_here)
        .await?;
    limits
        .check_rate(&state.cache, Rate::LoginsPerEmail, &email)
        .await?;
    let user = users::authenticate(&state.db, &state.hashing, &email, &body.password)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "wrong email or password",
            )
        })?;
    limits.forgive(&state.cache, Rate::Logins, &from_here).await;
    limits
        .forgive(&state.cache, Rate::LoginsPerEmail, &email)
        .await;
    let (access_token, expires_in) = state
        .tokens
        .issue(user.id, user.is_admin)
        .map_err(ApiError::internal)?;
    Ok(AppJson(Token {
        access_token,
        token_type: "Bearer",
        expires_in,
    }))
}

/// A ticket that opens one stream of the caller's (an order's, `/ops`'s) with `?ticket=`,
/// for clients that cannot send headers (a browser `EventSource`): unlike the bearer token it
/// may go in a URL, since it is short-lived and used once.
#[utoipa::path(post, path = "/api/stream-tickets", tag = "users",
    security(("bearer" = [])),
    responses((status = 201, body = StreamTicket), (status = 401, body = Problem)))]
pub async fn stream_ticket(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, AppJson<StreamTicket>), ApiError> {
    let (ticket, expires_in) = state
        .tokens
        .issue_ticket(caller)
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        AppJson(StreamTicket { ticket, expires_in }),
    ))
}

/// A user's profile (`me` for the caller).
#[utoipa::path(get, path = "/api/users/{userId}", tag = "users",
    params(("userId" = String, Path, description = "a user id or `me`")),
    security(("bearer" = [])),
    responses((status = 200, body = UserBody), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: Caller,
    AppPath(user): AppPath<String>,
) -> Result<AppJson<UserBody>, ApiError> {
    Ok(AppJson(existing_user(&state, &caller, &user).await?.into()))
}

/// The id of the user named by a `{userId}` segment, if the caller may act on them and they
/// exist. The caller's own id needs no lookup: tokens are issued to existing accounts only,
/// and accounts are never deleted.
pub async fn existing_user_id(
    state: &AppState,
    caller: &Caller,
    segment: &str,
) -> Result<i64, ApiError> {
    let id = caller.user(segment)?;
    if id == caller.user_id {
        return Ok(id);
    }
    Ok(existing_user(state, caller, segment).await?.id)
}

/// The user named by a `{userId}` segment, if the caller may see them and they exist.
pub async fn existing_user(
    state: &AppState,
    caller: &Caller,
    segment: &str,
) -> Result<users::User, ApiError> {
    let id = caller.user(segment)?;
    users::find(&state.db, id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("no such user"))
}
