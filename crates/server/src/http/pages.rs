//! What the pages served to browsers (`/ops`, `/docs`) may do: a Content-Security-Policy that
//! runs only this origin's own code (the operations page's inline script and style by their
//! hashes), talks only to this origin, and may not be framed by another site.

use std::sync::LazyLock;

use axum::{
    extract::Request,
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The Swagger UI loads its scripts and styles from `/docs/` and sets styles from its code.
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
    style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The operations page's policy: its one inline script and style, allowed by their SHA-256.
static OPS_POLICY: LazyLock<String> = LazyLock::new(|| {
    let page = include_str!("ops.html");
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hashes(page, "script"),
        hashes(page, "style"),
    )
});

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

/// Adds the policy and the framing and sniffing bans to the responses of the pages.
pub async fn secure(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let policy = if path == "/ops" {
        Some(OPS_POLICY.as_str())
    } else if path == "/docs" || path.starts_with("/docs/") {
        Some(DOCS_POLICY)
    } else {
        None
    };
    let mut response = next.run(request).await;
    if let Some(policy) = policy {
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
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_operations_page_policy_names_its_inline_script_and_style_and_nothing_else() {
        let policy = super::OPS_POLICY.as_str();
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    }
}
