//! What the pages served to browsers (`/ops`, `/rooms/{id}`, `/docs`) may do: a
//! Content-Security-Policy that runs only this origin's own code (a page's inline script and
//! style by their hashes), talks only to this origin, and may not be framed by another site.

use std::sync::LazyLock;

use axum::{
    http::{header, HeaderValue},
    response::{IntoResponse as _, Response},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The Swagger UI loads its scripts and styles from `/docs/` and sets styles from its code.
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The operations page, and the waiting room's page for shoppers.
pub const OPS_PAGE: &str = include_str!("ops.html");
pub const ROOM_PAGE: &str = include_str!("room.html");

/// A page's policy: its one inline script and style, allowed by their SHA-256.
fn policy(page: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hashes(page, "script"),
        hashes(page, "style"),
    )
}

static OPS_POLICY: LazyLock<String> = LazyLock::new(|| policy(OPS_PAGE));
static ROOM_POLICY: LazyLock<String> = LazyLock::new(|| policy(ROOM_PAGE));

/// `'sha256-…'` of the text of every `<tag>` element in `page`.
fn hashes(page: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    page.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text))
        .map(|text| {
            let digest = Sha256::digest(text.as_bytes());
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The operations page, with its policy.
pub fn ops_page() -> Response {
    page(OPS_PAGE, OPS_POLICY.as_str())
}

/// The waiting room's page, with its policy.
pub fn room_page() -> Response {
    page(ROOM_PAGE, ROOM_POLICY.as_str())
}

fn page(html: &'static str, policy: &str) -> Response {
    let mut response = axum::response::Html(html).into_response();
    secure_headers(&mut response, policy);
    response
}

/// Adds the documentation pages' policy to `response` (a layer on the `/docs` routes only, so
/// the API's requests pay nothing for it).
pub async fn docs(response: Response) -> Response {
    let mut response = response;
    secure_headers(&mut response, DOCS_POLICY);
    response
}

/// The policy, and the framing and sniffing bans.
fn secure_headers(response: &mut Response, policy: &str) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_page_policy_names_its_inline_script_and_style_and_nothing_else() {
        for policy in [super::OPS_POLICY.as_str(), super::ROOM_POLICY.as_str()] {
            assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
            assert!(!policy.contains("unsafe"), "{policy}");
            assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        }
        assert_ne!(super::OPS_POLICY.as_str(), super::ROOM_POLICY.as_str());
    }
}
