//! The 503s the server chose — shedding, a busy or unreachable dependency, a request that took
//! too long — counted per cause and logged as one WARN line per cause and second, with the count
//! and one example of what went wrong. A crowd met with 10,000 refusals writes a few lines, not
//! 10,000; ERROR stays for what an operator must act on.

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use tokio_util::sync::CancellationToken;

/// A cause: the problem's code and the detail the client was given.
type Cause = (&'static str, String);

/// Per cause: how many since the last report, and the first example seen.
static REFUSED: Mutex<BTreeMap<Cause, (u64, Option<String>)>> = Mutex::new(BTreeMap::new());

/// Counts one refusal answered `code` with `detail`; `example` is what the server saw (an
/// error's text), kept once per cause and report.
pub fn note(code: &'static str, detail: &str, example: Option<String>) {
    let mut refused = REFUSED.lock().expect("refusal counts");
    let (count, kept) = refused.entry((code, detail.to_owned())).or_default();
    *count += 1;
    if kept.is_none() {
        *kept = example;
    }
}

/// Logs what was counted since the last call, one line per cause; what it logged.
pub fn report() -> Vec<(Cause, u64)> {
    let refused = std::mem::take(&mut *REFUSED.lock().expect("refusal counts"));
    refused
        .into_iter()
        .map(|((code, detail), (count, example))| {
            let example = example.unwrap_or_default();
            tracing::warn!(
                code,
                count,
                detail,
                example,
                "requests refused in the last second"
            );
            ((code, detail), count)
        })
        .collect()
}

/// Reports once a second until `stop`, and once more then.
pub async fn run(stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => {
                report();
                return;
            }
        }
        report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_once_per_cause_with_their_count_and_first_example() {
        // Codes of this test's own: other tests refuse requests at the same time.
        let codes = ["TEST_SHED", "TEST_DOWN"];
        for n in 0..1_000 {
            note(codes[0], "too many requests in flight; retry", None);
            note(
                codes[1],
                "a service is unavailable",
                Some(format!("timed out {n}")),
            );
        }
        let reported = report();
        let count = |code: &str| reported.iter().find(|((c, _), _)| *c == code).map(|r| r.1);
        assert_eq!(count(codes[0]), Some(1_000));
        assert_eq!(count(codes[1]), Some(1_000));
        assert!(report().iter().all(|((code, _), _)| !codes.contains(code)));
    }
}
