//! A run's report: a table per step for people, JSON for machines, and an HTML page with the
//! latency-over-time and throughput plots (inline SVG: it opens anywhere, offline).

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    run::Outcome,
    stats::{ms, Second},
    verdict::Check,
};

#[derive(Serialize)]
struct StepReport {
    step: String,
    count: u64,
    errors: u64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    errors_by_answer: std::collections::BTreeMap<String, u64>,
    outcomes: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Report<'a> {
    scenario: crate::scenario::Scenario,
    model: String,
    seconds: f64,
    requests: u64,
    requests_per_second: f64,
    errors: u64,
    late_starts: u64,
    late_p99_ms: f64,
    steps: Vec<StepReport>,
    timeline: &'a [Second],
    verdict: &'a [Check],
}

fn report<'a>(outcome: &'a Outcome, checks: &'a [Check]) -> Report<'a> {
    let steps = outcome
        .recorder
        .steps
        .iter()
        .map(|(name, step)| StepReport {
            step: (*name).to_owned(),
            count: step.latency.len(),
            errors: step.error_count(),
            p50_ms: ms(step.latency.value_at_quantile(0.5)),
            p95_ms: ms(step.latency.value_at_quantile(0.95)),
            p99_ms: ms(step.latency.value_at_quantile(0.99)),
            max_ms: ms(step.latency.max()),
            errors_by_answer: step.errors.clone(),
            outcomes: step.outcomes.clone(),
        })
        .collect();
    let plan = &outcome.plan;
    Report {
        scenario: plan.scenario,
        model: match plan.rate {
            Some(rate) => format!("open: {rate} iterations/s, at most {} in flight", plan.vus),
            None => format!("closed: {} virtual users, think {:?}", plan.vus, plan.think),
        },
        seconds: outcome.elapsed.as_secs_f64(),
        requests: outcome.recorder.requests(),
        requests_per_second: outcome.requests_per_second(),
        errors: outcome.recorder.errors(),
        late_starts: outcome.late.len(),
        late_p99_ms: ms(outcome.late.value_at_quantile(0.99)),
        steps,
        timeline: &outcome.timeline,
        verdict: checks,
    }
}

/// The table printed after a run.
pub fn table(outcome: &Outcome, checks: &[Check]) -> String {
    let r = report(outcome, checks);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:?}, {} — {:.1} s, {} requests, {:.0} req/s, {} errors",
        r.scenario, r.model, r.seconds, r.requests, r.requests_per_second, r.errors
    );
    if outcome.plan.rate.is_some() {
        let _ = writeln!(
            out,
            "late starts (waited for a free user > 1 ms): {}, p99 {:.1} ms",
            r.late_starts, r.late_p99_ms
        );
    }
    let _ = writeln!(
        out,
        "\n{:<18} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "step", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for s in &r.steps {
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            s.step, s.count, s.errors, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
        );
    }
    for s in &r.steps {
        for (answer, n) in &s.outcomes {
            let _ = writeln!(out, "  {}: {answer} × {n}", s.step);
        }
        for (answer, n) in &s.errors_by_answer {
            let _ = writeln!(out, "  {}: error {answer} × {n}", s.step);
        }
    }
    if !checks.is_empty() {
        let _ = writeln!(out, "\nverdict:");
        for c in checks {
            let mark = if c.held { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "  {mark} {} ({})", c.invariant, c.detail);
        }
    }
    out
}

pub fn json(outcome: &Outcome, checks: &[Check]) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&report(outcome, checks))?)
}

/// A self-contained HTML page: the table, throughput per second, p50 and p99 per second.
pub fn html(outcome: &Outcome, checks: &[Check]) -> String {
    let timeline = &outcome.timeline;
    let throughput = plot(
        "requests per second",
        timeline,
        &[("#2563eb", &|s: &Second| s.requests as f64)],
    );
    let latency = plot(
        "latency per second (ms): p50 blue, p99 red",
        timeline,
        &[
            ("#2563eb", &|s: &Second| s.p50_ms),
            ("#dc2626", &|s: &Second| s.p99_ms),
        ],
    );
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>stampede load: {:?}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}pre{{background:#f4f4f5;padding:1rem}}</style>\
         </head><body><h1>stampede load</h1>{throughput}{latency}<pre>{}</pre></body></html>\n",
        outcome.plan.scenario,
        escape(&table(outcome, checks))
    )
}

type Series<'a> = (&'a str, &'a dyn Fn(&Second) -> f64);

fn plot(title: &str, timeline: &[Second], series: &[Series<'_>]) -> String {
    let (w, h, pad) = (800.0, 240.0, 40.0);
    let max = timeline
        .iter()
        .flat_map(|s| series.iter().map(move |(_, f)| f(s)))
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let n = timeline.len().max(2) as f64 - 1.0;
    let mut svg = format!(
        "<h2>{title}</h2><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\">{max:.1}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\">{} s</text>",
        h - pad,
        w - 10.0,
        h - pad,
        w - 40.0,
        h - 10.0,
        timeline.len()
    );
    for (colour, value) in series {
        let points: Vec<String> = timeline
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let x = pad + (w - pad - 10.0) * i as f64 / n;
                let y = (h - pad) - (h - pad - 20.0) * value(s) / max;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
