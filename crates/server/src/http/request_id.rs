//! Request ids. A client's `X-Request-Id` is kept when it is short and plain (at most 64 of
//! `A–Z a–z 0–9 - _ . :`); any other value, or none, is replaced by a fresh UUID. The id is
//! echoed on the response, names the request's log span, and becomes the correlation id of
//! every event the request causes, so one id finds a saga's log lines in every process.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use events::correlation;
use uuid::Uuid;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

const MAX_LEN: usize = 64;

/// Whether a client's request id is adopted as it is.
pub(crate) fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Gives the request its id and runs it in that correlation scope.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| plain(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).expect("a plain id is a valid header value");
    request.headers_mut().insert(HEADER, value.clone());
    let mut response = correlation::scope(id, next.run(request)).await;
    response.headers_mut().insert(HEADER, value);
    response
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn only_short_plain_ids_are_adopted() {
        for id in [
            "abc",
            "7f1c9a2e-0d4b-4c55-9a4e-2f6c1b7d9e01",
            "checkout.42:retry_1",
        ] {
            assert!(plain(id), "{id}");
        }
        let long = "a".repeat(65);
        for id in ["", "has space", "new\nline", "<script>", "ü", long.as_str()] {
            assert!(!plain(id), "{id:?}");
        }
        assert!(plain(&"a".repeat(64)));
    }
}
