//! What the operations commands print: the event pipeline's status, and progress on stderr.

use std::{collections::BTreeMap, fmt::Write as _, io::Write as _};

use crate::{startup::consumers, state::AppState};

/// The outbox backlog, then each consumer group of a worker with its lag and its pending dead
/// letters (`stampede events status`).
pub async fn events_status(state: &AppState) -> anyhow::Result<String> {
    let backlog = state.bus.backlog().await?;
    let mut dead: BTreeMap<String, i64> = eventbus::dead_letters::pending_by_consumer(&state.db)
        .await?
        .into_iter()
        .collect();
    let mut groups: Vec<_> = consumers(state)
        .iter()
        .map(|handler| (handler.group().to_owned(), handler.topics()))
        .collect();
    groups.sort();
    let mut out = format!("outbox backlog: {backlog} (written, not yet published)\n\n");
    writeln!(
        out,
        "{:<24} {:>8} {:>13}  topics",
        "group", "lag", "dead letters"
    )?;
    for (group, topics) in groups {
        let lag = state.bus.lag(&group, &topics).await?;
        let dead = dead.remove(&group).unwrap_or(0);
        writeln!(out, "{group:<24} {lag:>8} {dead:>13}  {}", topics.join(","))?;
    }
    for (group, dead) in dead {
        writeln!(
            out,
            "{group:<24} {:>8} {dead:>13}  (no longer consumed)",
            "-"
        )?;
    }
    Ok(out)
}

/// Rewrites the current line of stderr with `line` (a long command's progress).
pub fn progress(line: &str) {
    eprint!("\r{line}    ");
    let _ = std::io::stderr().flush();
}
