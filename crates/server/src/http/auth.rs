//! Bearer tokens and authorization, enforced in one place: the [`Caller`] extractor answers
//! 401 for a missing, invalid or expired token; [`Caller::user`] answers 403 for another
//! user's resource (admins may act on any user); [`Caller::require_admin`] guards admin routes.

use axum::{extract::FromRequestParts, http::request::Parts, http::StatusCode};

use super::error::{path_id, ApiError};
use crate::state::AppState;
pub use crate::tokens::Caller;

/// What a caller may reach, answered as the API answers.
impl Caller {
    /// The user named by a `{userId}` path segment (`me` or an id) if the caller may act on
    /// them: themselves, or anyone for an admin. 403 `FORBIDDEN` otherwise.
    pub fn user(&self, segment: &str) -> Result<i64, ApiError> {
        let user_id = if segment == "me" {
            self.user_id
        } else {
            path_id(segment, "user")?
        };
        if user_id == self.user_id || self.is_admin {
            Ok(user_id)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this resource belongs to another user",
            ))
        }
    }

    /// 403 `FORBIDDEN` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "admins only",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(unauthorized)?;
        state.tokens.verify(token.trim()).ok_or_else(unauthorized)
    }
}

/// An admin caller: 401 without a valid token, 403 for anyone else, decided before the body
/// is read.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Self(caller))
    }
}

/// 401 `UNAUTHORIZED`: no token, or not a valid one.
fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "a valid bearer token is required",
    )
}

/// The caller of a stream route: the bearer token, or else a stream ticket in the `ticket`
/// query parameter (a browser's `EventSource` cannot send headers, and a bearer token must not
/// go in a URL, where proxies and access logs keep it). A ticket lives
/// [`TICKET_TTL`](crate::tokens::TICKET_TTL) and opens one stream: it is redeemed in the cache,
/// so a second use, on any instance, is 401.
pub struct StreamCaller(pub Caller);

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Caller::from_request_parts(parts, state).await.map(Self);
        }
        let query = axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(
            &parts.uri,
        );
        let ticket = query
            .ok()
            .and_then(|q| q.0.get("ticket").cloned())
            .ok_or_else(unauthorized)?;
        let (caller, id) = state
            .tokens
            .verify_ticket(&ticket)
            .ok_or_else(unauthorized)?;
        let (uses, _) = state
            .cache
            .hit(&format!("stream-ticket:{id}"), crate::tokens::TICKET_TTL)
            .await
            .map_err(ApiError::internal)?;
        if uses > 1 {
            return Err(unauthorized());
        }
        Ok(Self(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_reach_themselves_and_admins_reach_anyone() {
        let user = Caller {
            user_id: 7,
            is_admin: false,
        };
        assert_eq!(user.user("me").unwrap(), 7);
        assert_eq!(user.user("7").unwrap(), 7);
        assert_eq!(user.user("8").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(user.user("abc").unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(
            user.require_admin().unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let admin = Caller {
            user_id: 1,
            is_admin: true,
        };
        assert_eq!(admin.user("8").unwrap(), 8);
        assert!(admin.require_admin().is_ok());
    }
}
