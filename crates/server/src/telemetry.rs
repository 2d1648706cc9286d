//! Logging to stdout: human-readable lines, or one JSON object per line with the fields of
//! every enclosing span (`STAMPEDE_LOG_FORMAT=json`). `RUST_LOG` filters (default `info`);
//! in it, `stampede` stands for every crate of the project, so `RUST_LOG=stampede=debug` works
//! without knowing how the code is split.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The project's crates, which a `stampede` directive stands for.
const CRATES: &[&str] = &[
    "server", "eventbus", "events", "db", "cache", "points", "catalog", "coupons", "orders",
    "ranking", "loadkit",
];

const DEFAULT_FILTER: &str = "info,sqlx=warn,rdkafka=warn,tower_http=info";

/// Installs the global subscriber; a second call does nothing.
pub fn init(format: LogFormat) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned());
    let filter = EnvFilter::try_new(expand(&directives)).unwrap_or_else(|error| {
        eprintln!(
            "RUST_LOG {directives:?} is not a valid filter ({error}); using {DEFAULT_FILTER:?}"
        );
        EnvFilter::new(DEFAULT_FILTER)
    });
    // Colours only for a terminal: a file or a collector gets plain text, and a request's span
    // fields are not styled at every request for nobody to see.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// `directives` with each `stampede` target replaced by the project's crates.
fn expand(directives: &str) -> String {
    directives
        .split(',')
        .flat_map(|directive| {
            let (target, level) = match directive.split_once('=') {
                Some((target, level)) => (target.trim(), Some(level)),
                None => (directive.trim(), None),
            };
            let Some(rest) = target
                .strip_prefix("stampede")
                .filter(|rest| rest.is_empty() || rest.starts_with('['))
            else {
                return vec![directive.to_owned()];
            };
            CRATES
                .iter()
                .map(|c| match level {
                    Some(level) => format!("{c}{rest}={level}"),
                    None => format!("{c}{rest}"),
                })
                .collect()
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn stampede_in_a_filter_stands_for_every_crate_of_the_project() {
        let expanded = expand("warn,stampede=debug,sqlx=info");
        assert!(expanded.starts_with("warn,server=debug,eventbus=debug,"));
        assert!(expanded.contains(",orders=debug,"));
        assert!(expanded.ends_with(",sqlx=info"));
        assert_eq!(expand("info"), "info");
        assert!(expand("stampede").starts_with("server,eventbus,"));
    }
}
