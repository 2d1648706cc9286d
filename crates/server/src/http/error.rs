//! Every HTTP error is `application/problem+json` (RFC 9457) with a stable `code`.
//! Each context's error is mapped to statuses once, by a `From` impl in the handler module of
//! that context; 5xx bodies say nothing internal, the log says all.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable UPPER_SNAKE identifier, e.g. `SOLD_OUT`.
    pub code: String,
    /// Extra members, e.g. the failing checks of `/health/ready`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl From<crate::limits::Refused> for ApiError {
    fn from(refused: crate::limits::Refused) -> Self {
        match refused {
            crate::limits::Refused::RateLimited {
                detail,
                retry_after_secs,
            } => Self::rate_limited(detail, retry_after_secs),
            crate::limits::Refused::Overloaded(detail) => Self::overloaded(detail),
        }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
            retry_after: None,
        }
    }

    /// The server sheds load: 503 `OVERLOADED`, retry in a second.
    pub fn overloaded(detail: impl Into<String>) -> Self {
        Self::refused("OVERLOADED", detail.into(), None)
    }

    /// A dependency cannot be reached in time: 503 `UNAVAILABLE`, retry in a second.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::refused("UNAVAILABLE", detail.into(), None)
    }

    /// [`Self::unavailable`] because of `error`, which the refusals' report shows (the client
    /// sees only `detail`).
    pub fn unavailable_because(detail: impl Into<String>, error: &anyhow::Error) -> Self {
        Self::refused("UNAVAILABLE", detail.into(), Some(format!("{error:#}")))
    }

    /// A 503 the server chose: counted for the refusals' report (`refusals.rs`) instead of a
    /// log line per request.
    fn refused(code: &'static str, detail: String, example: Option<String>) -> Self {
        crate::refusals::note(code, &detail, example);
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).retry_after(1)
    }

    /// A per-user or per-email limit: 429 `RATE_LIMITED`, retry after `seconds`.
    pub fn rate_limited(detail: impl Into<String>, seconds: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", detail).retry_after(seconds)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Malformed JSON, a wrong type or a missing field: 400 `VALIDATION_FAILED`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail)
    }

    /// A well-formed value out of range: 422 `VALIDATION_FAILED`, naming the field.
    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            format!("{field}: {reason}"),
        )
    }

    /// A body over the limit: 413 `PAYLOAD_TOO_LARGE`.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than this server accepts",
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail)
    }

    /// An unexpected failure: logged in full, answered as a bare 500; or, when a dependency
    /// could not be reached in time (a pool ran dry, a connection failed or timed out), 503
    /// `UNAVAILABLE`.
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        let error = error.into();
        if eventbus::is_transient(&error) {
            return Self::unavailable_because(
                "a service this request needs is unavailable; retry",
                &error,
            );
        }
        tracing::error!(error = format!("{error:#}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "the server failed to handle this request",
        )
    }

    pub fn with_extra(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value);
        self
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!(
                "urn:stampede:problem:{}",
                self.code.to_lowercase().replace('_', "-")
            ),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            extra: self.extra.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).expect("problems serialize");
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(),
            other => Self::bad_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

/// `Json` whose rejections are problems (400 rather than axum's plain-text 422). A number with
/// no fraction reads as an integer whatever its spelling (`288.0` is `288`), as JSON Schema
/// counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(mut value) =
            axum::Json::<serde_json::Value>::from_request(request, state).await?;
        integral_numbers_as_integers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(AppJson)
            .map_err(|error| {
                Self::Rejection::bad_request(format!(
                    "the body does not fit: {}: {}",
                    error.path(),
                    error.inner()
                ))
            })
    }
}

/// Rewrites every float in `value` that has no fraction and fits an `i64` as that integer.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().expect("an f64");
            if float.fract() == 0.0 && float >= i64::MIN as f64 && float < i64::MAX as f64 {
                *number = (float as i64).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The body of an action route (`{}`): none, or a JSON object, whose members are ignored.
/// Anything else is refused as [`AppJson`] refuses it (400, 413, 415).
#[derive(Debug, Clone, Copy)]
pub struct ActionBody;

impl<S: Send + Sync> axum::extract::FromRequest<S> for ActionBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let empty = axum::body::HttpBody::size_hint(request.body()).exact() == Some(0);
        if !empty {
            type Members = std::collections::HashMap<String, serde::de::IgnoredAny>;
            AppJson::<Members>::from_request(request, state).await?;
        }
        Ok(Self)
    }
}

/// `Path` whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// `Query` whose rejections are problems.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

/// Unknown route: 404 `NOT_FOUND`.
/// The id in a path segment: a positive integer, else 404 `NOT_FOUND` ("no such `what`"),
/// since no resource has that id.
pub fn path_id(segment: &str, what: &str) -> Result<i64, ApiError> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(format!("no such {what}")))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

/// Known route, other method: 405 `METHOD_NOT_ALLOWED`.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this resource does not accept that method",
    )
}

/// A handler panicked: 500 with nothing internal in the body.
pub fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request, routing::post, Router};
    use tower::ServiceExt as _;

    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Charge {
        amount: i64,
    }

    async fn charge(AppJson(_): AppJson<Charge>) -> StatusCode {
        StatusCode::OK
    }

    async fn send(body: &str, content_type: &str) -> (StatusCode, Problem) {
        let response = Router::new()
            .route("/charge", post(charge))
            .oneshot(
                Request::post("/charge")
                    .header("content-type", content_type)
                    .body(Body::from(body.to_owned()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn act(_: ActionBody) -> StatusCode {
        StatusCode::OK
    }

    #[tokio::test]
    async fn an_action_takes_no_body_or_an_object_and_refuses_anything_else() {
        let send = |body: &'static str, content_type: Option<&'static str>| async move {
            let mut request = Request::post("/act");
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            Router::new()
                .route("/act", post(act))
                .oneshot(request.body(Body::from(body)).unwrap())
                .await
                .unwrap()
                .status()
        };
        assert_eq!(send("", None).await, StatusCode::OK);
        assert_eq!(send("", Some("application/json")).await, StatusCode::OK);
        assert_eq!(send("{}", Some("application/json")).await, StatusCode::OK);
        assert_eq!(
            send(r#"{"x": [1]}"#, Some("application/json")).await,
            StatusCode::OK
        );
        assert_eq!(
            send("\"x\"", Some("application/json")).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send("[]", Some("application/json")).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            send("{}", Some("text/plain")).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[tokio::test]
    async fn malformed_json_wrong_types_and_missing_fields_are_400_problems() {
        for body in [
            "{not json",
            r#"{"amount": "ten"}"#,
            "{}",
            r#"{"amount": 1.5}"#,
        ] {
            let (status, problem) = send(body, "application/json").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(problem.code, "VALIDATION_FAILED");
            assert_eq!(problem.status, 400);
        }
        for body in [r#"{"amount": 10000.0}"#, r#"{"amount": 1e4}"#] {
            let response = Router::new()
                .route("/charge", post(charge))
                .oneshot(
                    Request::post("/charge")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{body}");
        }
        let (status, problem) = send(r#"{"amount": 1}"#, "text/plain").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(problem.code, "UNSUPPORTED_MEDIA_TYPE");
    }

    #[test]
    fn a_dry_pool_or_an_unreachable_dependency_is_503_unavailable_with_retry_after() {
        let dry = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("placing an order");
        let refused =
            anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        for error in [dry, refused] {
            let answer = ApiError::internal(error);
            assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(answer.code, "UNAVAILABLE");
            let response = answer.into_response();
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
        let bug = ApiError::internal(sqlx::Error::RowNotFound);
        assert_eq!(bug.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn server_errors_say_nothing_internal() {
        let problem =
            ApiError::internal(anyhow::anyhow!("password=hunter2 at db.internal")).problem();
        assert_eq!(problem.status, 500);
        assert!(!problem.detail.contains("hunter2"));
    }
}
