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
        "\n{:<22} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "step", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for s in &r.steps {
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
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

/// Colours of the report's series, in turn.
const PALETTE: [&str; 10] = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
    "#475569", "#ea580c",
];

/// The upper edges (ms) of the response-time distribution's buckets; the last is open.
const BUCKETS_MS: [f64; 14] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
];

/// A self-contained HTML page (inline SVG, no network): the verdict first, the run's figures,
/// then throughput and answers by status over time, latency over time for all steps and per
/// step, streams held, the response-time distribution per step, and the table.
pub fn html(outcome: &Outcome, checks: &[Check]) -> String {
    let r = report(outcome, checks);
    let timeline = &outcome.timeline;
    let seconds: Vec<f64> = timeline.iter().map(|s| s.t as f64).collect();
    let over_time =
        |pick: &dyn Fn(&Second) -> f64| -> Vec<f64> { timeline.iter().map(pick).collect() };
    let mut body = String::new();

    let broken = checks.iter().filter(|c| !c.held).count();
    let (colour, headline) = match (checks.is_empty(), broken) {
        (true, _) => ("#64748b", "no invariants checked".to_owned()),
        (false, 0) => (
            "#16a34a",
            format!("PASS: all {} invariants held", checks.len()),
        ),
        (false, n) => (
            "#dc2626",
            format!("FAIL: {n} of {} invariants broken", checks.len()),
        ),
    };
    let _ = write!(
        body,
        "<div class=\"verdict\" style=\"border-color:{colour}\"><h2 style=\"color:{colour}\">{headline}</h2><ul>"
    );
    for c in checks {
        let mark = if c.held { "✓" } else { "✗" };
        let _ = write!(
            body,
            "<li class=\"{}\">{mark} {} <small>({})</small></li>",
            if c.held { "held" } else { "broken" },
            escape(c.invariant),
            escape(&c.detail)
        );
    }
    body.push_str("</ul></div>");
    let _ = write!(
        body,
        "<div class=\"cards\"><div><b>{:.1} s</b>duration</div><div><b>{}</b>requests</div>\
         <div><b>{:.0}</b>requests / s</div><div><b>{}</b>errors</div><div><b>{}</b>late starts</div></div>\
         <p class=\"model\">{}</p>",
        r.seconds,
        r.requests,
        r.requests_per_second,
        r.errors,
        r.late_starts,
        escape(&r.model)
    );

    body.push_str(&chart(
        "Throughput",
        "requests / s",
        &seconds,
        &[
            ("requests", PALETTE[0], over_time(&|s| s.requests as f64)),
            ("errors", PALETTE[1], over_time(&|s| s.errors as f64)),
        ],
    ));
    let answers: std::collections::BTreeSet<&String> =
        timeline.iter().flat_map(|s| s.answers.keys()).collect();
    let by_answer: Vec<(&str, &str, Vec<f64>)> = answers
        .iter()
        .enumerate()
        .map(|(i, answer)| {
            let colour = if answer.starts_with("error") {
                "#dc2626"
            } else {
                PALETTE[i % PALETTE.len()]
            };
            let values = over_time(&|s| s.answers.get(*answer).copied().unwrap_or(0) as f64);
            (answer.as_str(), colour, values)
        })
        .collect();
    body.push_str(&chart(
        "Answers by status",
        "answers / s",
        &seconds,
        &by_answer,
    ));
    body.push_str(&chart(
        "Latency, all steps",
        "ms",
        &seconds,
        &[
            ("p50", PALETTE[0], over_time(&|s| s.p50_ms)),
            ("p99", PALETTE[1], over_time(&|s| s.p99_ms)),
        ],
    ));
    let steps: std::collections::BTreeSet<&str> = timeline
        .iter()
        .flat_map(|s| s.steps.keys().map(String::as_str))
        .collect();
    let per_step: Vec<(&str, &str, Vec<f64>)> = steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let values = over_time(&|s| s.steps.get(*step).map_or(f64::NAN, |x| x.p99_ms));
            (*step, PALETTE[i % PALETTE.len()], values)
        })
        .collect();
    body.push_str(&chart("p99 latency by step", "ms", &seconds, &per_step));
    if timeline.iter().any(|s| s.streams > 0) {
        body.push_str(&chart(
            "Streams held",
            "streams",
            &seconds,
            &[("open streams", PALETTE[2], over_time(&|s| s.streams as f64))],
        ));
    }
    body.push_str(&distribution(outcome));

    body.push_str("<h2>Steps</h2><table><tr><th>step</th><th>count</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>other answers</th></tr>");
    for step in &r.steps {
        let others: Vec<String> = step
            .outcomes
            .iter()
            .map(|(answer, n)| format!("{answer} × {n}"))
            .chain(
                step.errors_by_answer
                    .iter()
                    .map(|(answer, n)| format!("error {answer} × {n}")),
            )
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
            escape(&step.step),
            step.count,
            if step.errors > 0 { "bad" } else { "" },
            step.errors,
            step.p50_ms,
            step.p95_ms,
            step.p99_ms,
            step.max_ms,
            escape(&others.join(", "))
        );
    }
    body.push_str("</table>");
    let _ = write!(
        body,
        "<details><summary>as printed</summary><pre>{}</pre></details>",
        escape(&table(outcome, checks))
    );

    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>stampede load: {:?}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:960px;color:#0f172a}}\
         .verdict{{border-left:6px solid;padding:.2rem 1rem;background:#f8fafc}}.verdict ul{{list-style:none;padding:0}}\
         .broken{{color:#dc2626;font-weight:600}}small{{color:#64748b}}\
         .cards{{display:flex;gap:1rem;margin:1rem 0}}.cards div{{flex:1;background:#f1f5f9;padding:.6rem;border-radius:6px;font-size:.85rem;color:#475569}}\
         .cards b{{display:block;font-size:1.4rem;color:#0f172a}}.model{{color:#475569}}\
         table{{border-collapse:collapse;width:100%;font-size:.85rem}}td,th{{border-bottom:1px solid #e2e8f0;padding:.3rem;text-align:right}}\
         td:first-child,th:first-child,td:last-child,th:last-child{{text-align:left}}.bad{{color:#dc2626;font-weight:600}}\
         pre{{background:#f4f4f5;padding:1rem;overflow:auto}}svg text{{font-size:11px;fill:#334155}}\
         </style></head><body><h1>stampede load: {:?}</h1>{body}</body></html>\n",
        outcome.plan.scenario, outcome.plan.scenario,
    )
}

/// The response-time distribution: per step, the share of its answers in each bucket.
fn distribution(outcome: &Outcome) -> String {
    let labels: Vec<String> = BUCKETS_MS
        .iter()
        .map(|edge| format!("≤{edge}"))
        .chain([format!(">{}", BUCKETS_MS[BUCKETS_MS.len() - 1])])
        .collect();
    let series: Vec<(&str, &str, Vec<f64>)> = outcome
        .recorder
        .steps
        .iter()
        .enumerate()
        .map(|(i, (name, step))| {
            let total = step.latency.len().max(1) as f64;
            let mut lower = 0;
            let mut shares: Vec<f64> = BUCKETS_MS
                .iter()
                .map(|edge| {
                    let upper = (edge * 1000.0) as u64;
                    let n = step.latency.count_between(lower, upper);
                    lower = upper + 1;
                    100.0 * n as f64 / total
                })
                .collect();
            shares.push(100.0 * step.latency.count_between(lower, u64::MAX) as f64 / total);
            (*name, PALETTE[i % PALETTE.len()], shares)
        })
        .collect();
    let positions: Vec<f64> = (0..labels.len()).map(|i| i as f64).collect();
    chart_with_axis(
        "Response-time distribution by step",
        "% of the step's answers",
        "response time (ms)",
        &positions,
        &|x| labels.get(x as usize).cloned().unwrap_or_default(),
        &series,
    )
}

/// A line chart over the run's seconds.
fn chart(title: &str, unit: &str, seconds: &[f64], series: &[(&str, &str, Vec<f64>)]) -> String {
    chart_with_axis(
        title,
        unit,
        "time (s)",
        seconds,
        &|x| format!("{x:.0}"),
        series,
    )
}

/// A line chart with gridlines, labelled axes and a legend; `NaN` leaves a gap.
fn chart_with_axis(
    title: &str,
    unit: &str,
    x_name: &str,
    xs: &[f64],
    x_label: &dyn Fn(f64) -> String,
    series: &[(&str, &str, Vec<f64>)],
) -> String {
    let (w, h) = (900.0, 260.0);
    let (left, right, top, bottom) = (64.0, 16.0, 16.0, 40.0);
    let mut svg = format!("<h2>{}</h2>", escape(title));
    if xs.is_empty() || series.is_empty() {
        svg.push_str("<p><small>nothing recorded</small></p>");
        return svg;
    }
    let highest = series
        .iter()
        .flat_map(|(_, _, values)| values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top_value = nice_ceiling(highest);
    let (x0, x1) = (xs[0], xs[xs.len() - 1].max(xs[0] + 1.0));
    let x_at = |x: f64| left + (w - left - right) * (x - x0) / (x1 - x0);
    let y_at = |y: f64| top + (h - top - bottom) * (1.0 - y / top_value);
    let _ = write!(svg, "<div>");
    for (name, colour, _) in series {
        let _ = write!(
            svg,
            "<span style=\"margin-right:1rem;font-size:.8rem\"><span style=\"display:inline-block;width:10px;height:10px;background:{colour};margin-right:4px\"></span>{}</span>",
            escape(name)
        );
    }
    let _ = write!(
        svg,
        "</div><svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">"
    );
    for i in 0..=5 {
        let value = top_value * f64::from(i) / 5.0;
        let y = y_at(value);
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e2e8f0\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            short_number(value)
        );
    }
    // Ticks at a round step, about ten of them.
    let step = nice_ceiling((x1 - x0) / 10.0).max(1.0);
    let mut x = (x0 / step).ceil() * step;
    while x <= x1 {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#94a3b8\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>",
            x_at(x),
            h - bottom,
            h - bottom + 4.0,
            h - bottom + 16.0,
            escape(&x_label(x))
        );
        x += step;
    }
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#94a3b8\"/>\
         <text x=\"{2}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\
         <text x=\"12\" y=\"{5}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {5})\">{6}</text>",
        h - bottom,
        w - right,
        left + (w - left - right) / 2.0,
        h - 4.0,
        escape(x_name),
        top + (h - top - bottom) / 2.0,
        escape(unit)
    );
    for (_, colour, values) in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (x, y) in xs.iter().zip(values) {
            if !y.is_finite() {
                pen_down = false;
                continue;
            }
            let _ = write!(
                path,
                "{}{:.1},{:.1} ",
                if pen_down { "L" } else { "M" },
                x_at(*x),
                y_at(*y)
            );
            pen_down = true;
        }
        let _ = write!(
            svg,
            "<path d=\"{path}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value` (1 for nothing).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * power)
        .find(|candidate| *candidate >= value)
        .unwrap_or(10.0 * power)
}

/// `1.5k`, `20`, `0.25`: an axis label.
fn short_number(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 1_000.0 {
        format!("{}k", value / 1000.0)
    } else if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(1_234.0), 2_000.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(short_number(1_500.0), "1.5k");
        assert_eq!(short_number(25_000.0), "25k");
    }
}
