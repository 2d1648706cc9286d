//! `stampede config show`: the effective configuration as a file would hold it, with secrets
//! and the credentials in URLs redacted; and how the settings write their secrets.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

use super::Settings;

/// A secret, as `(redacted)`.
pub fn secret<S: Serializer>(secret: &Option<SecretString>, to: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => to.serialize_str("(redacted)"),
        None => to.serialize_none(),
    }
}

/// A URL that may hold credentials, with them redacted.
pub fn url<S: Serializer>(url: &SecretString, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(&redact_url(url.expose_secret()))
}

/// An optional URL that may hold credentials, with them redacted.
pub fn optional_url<S: Serializer>(url: &Option<SecretString>, to: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => to.serialize_str(&redact_url(url.expose_secret())),
        None => to.serialize_none(),
    }
}

impl Settings {
    /// The effective configuration in the file's form: process-wide keys, then one table per
    /// section; a key with no value as a comment.
    pub fn show(&self) -> String {
        let serde_json::Value::Object(top) =
            serde_json::to_value(self).expect("settings serialize")
        else {
            unreachable!("settings are a table")
        };
        let line = |key: &str, value: &serde_json::Value| match value {
            serde_json::Value::Null => format!("# {key} (not set)\n"),
            serde_json::Value::String(text) => format!("{key} = {text:?}\n"),
            value => format!("{key} = {value}\n"),
        };
        let (sections, keys): (Vec<_>, Vec<_>) =
            top.iter().partition(|(_, value)| value.is_object());
        let mut shown: String = keys.iter().map(|(key, value)| line(key, value)).collect();
        for (name, section) in sections {
            shown.push_str(&format!("\n[{name}]\n"));
            for (key, value) in section.as_object().expect("a section is a table") {
                shown.push_str(&line(key, value));
            }
        }
        shown
    }
}

/// Query parameters that carry a credential in a connection URL.
const SECRET_PARAMETERS: &[&str] = &["password", "pass", "pwd", "secret", "token", "sslpassword"];

/// `text` with the credentials of a URL replaced by `***`: the password of the user part (which
/// may itself hold `@`) and credential query parameters. Text that is no URL is returned as is.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let Ok(mut url) = url::Url::parse(text) else {
        // Not parsable (several hosts, say): everything before the last `@` of the authority.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        return match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://***{}", &rest[at..]),
            None => text.to_owned(),
        };
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let redacted: Vec<(String, String)> = url
        .query_pairs()
        .map(|(key, value)| {
            let secret = SECRET_PARAMETERS.contains(&key.to_lowercase().as_str());
            let value = if secret {
                "***".to_owned()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if !redacted.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(redacted);
    }
    url.to_string()
}
