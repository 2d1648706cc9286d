//! What a run measures: per step an HDR histogram of latencies (microseconds) and its answers
//! by status and problem code; per second the throughput and latency of all steps together.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies from 1 µs to 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// One step's latencies and answers.
#[derive(Clone)]
pub struct Step {
    pub latency: Histogram<u64>,
    /// Answers that were errors (unexpected status, or no answer), by `status code`.
    pub errors: BTreeMap<String, u64>,
    /// Expected answers other than 2xx (`409 SOLD_OUT`, …), by `status code`.
    pub outcomes: BTreeMap<String, u64>,
}

impl Default for Step {
    fn default() -> Self {
        Self {
            latency: histogram(),
            errors: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }
}

impl Step {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// How an answer is counted.
pub enum Answer<'a> {
    Expected { status: u16, code: Option<&'a str> },
    Error { label: String },
}

/// A run's (or one virtual user's) measurements, by step name.
#[derive(Clone, Default)]
pub struct Recorder {
    pub steps: BTreeMap<&'static str, Step>,
}

impl Recorder {
    pub fn record(&mut self, step: &'static str, elapsed: Duration, answer: Answer<'_>) {
        let entry = self.steps.entry(step).or_default();
        let micros = (elapsed.as_micros() as u64).clamp(1, 600_000_000);
        let _ = entry.latency.record(micros);
        match answer {
            Answer::Expected { status, code } if status >= 300 => {
                *entry.outcomes.entry(label(status, code)).or_default() += 1;
            }
            Answer::Expected { .. } => {}
            Answer::Error { label } => *entry.errors.entry(label).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (name, step) in &other.steps {
            let entry = self.steps.entry(name).or_default();
            let _ = entry.latency.add(&step.latency);
            for (k, v) in &step.errors {
                *entry.errors.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &step.outcomes {
                *entry.outcomes.entry(k.clone()).or_default() += v;
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.steps.values().map(|s| s.latency.len()).sum()
    }

    pub fn errors(&self) -> u64 {
        self.steps.values().map(Step::error_count).sum()
    }
}

pub fn label(status: u16, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{status} {code}"),
        None => status.to_string(),
    }
}

/// One second of a run, for the progress line and the report's plots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Streams held at the end of the second (`waiting-room`, `crowd`).
    pub streams: u64,
    /// Each step's answers in this second.
    pub steps: BTreeMap<String, StepSecond>,
    /// Answers by kind (`2xx`, `409 SOLD_OUT`, `error: …`).
    pub answers: BTreeMap<String, u64>,
}

/// One step's answers in one second.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSecond {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The requests of the current second, shared by every virtual user.
pub struct Window {
    latency: Histogram<u64>,
    errors: u64,
    steps: BTreeMap<&'static str, Histogram<u64>>,
    answers: BTreeMap<String, u64>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            latency: histogram(),
            errors: 0,
            steps: BTreeMap::new(),
            answers: BTreeMap::new(),
        }
    }
}

impl Answer<'_> {
    /// How the report groups it: `2xx`, the status and code of another expected answer, or
    /// the error.
    pub fn kind(&self) -> String {
        match self {
            Answer::Expected { status, .. } if *status < 300 => "2xx".to_owned(),
            Answer::Expected { status, code } => label(*status, *code),
            Answer::Error { label } => format!("error: {label}"),
        }
    }
}

impl Window {
    pub fn record(&mut self, step: &'static str, elapsed: Duration, answer: &Answer<'_>) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.latency.record(micros);
        let _ = self
            .steps
            .entry(step)
            .or_insert_with(histogram)
            .record(micros);
        *self.answers.entry(answer.kind()).or_default() += 1;
        self.errors += u64::from(matches!(answer, Answer::Error { .. }));
    }

    /// Closes the window as second `t` and starts an empty one.
    pub fn close(&mut self, t: u64) -> Second {
        let window = std::mem::take(self);
        Second {
            t,
            requests: window.latency.len(),
            errors: window.errors,
            p50_ms: ms(window.latency.value_at_quantile(0.5)),
            p99_ms: ms(window.latency.value_at_quantile(0.99)),
            streams: 0,
            steps: window
                .steps
                .iter()
                .map(|(step, latency)| {
                    let second = StepSecond {
                        count: latency.len(),
                        p50_ms: ms(latency.value_at_quantile(0.5)),
                        p99_ms: ms(latency.value_at_quantile(0.99)),
                    };
                    ((*step).to_owned(), second)
                })
                .collect(),
            answers: window.answers,
        }
    }
}

pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
