//! `stampede load`: its arguments, and the run from seed file to verdict.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    http::Target,
    report,
    run::{run, Plan},
    scenario::{RunLog, Scenario},
    verdict, Seeded,
};

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The deployment to load.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// The file `stampede seed` wrote for this deployment.
    #[arg(long, default_value = "stampede-seed.json")]
    pub tokens: PathBuf,
    #[arg(long, value_enum, default_value = "journey")]
    pub scenario: Scenario,
    /// How long to run (`30s`, `2m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Virtual users (closed model), or the most iterations in flight (open model).
    #[arg(long, default_value_t = 40)]
    pub vus: usize,
    /// Open model: iterations started per second, on schedule whatever the server's pace.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Pause of each virtual user after each iteration (`1s` is the origin's k6 run).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub think: Duration,
    /// `flash-sale`: the coupon to ask for; by default a new one is created.
    #[arg(long)]
    pub coupon: Option<i64>,
    /// `flash-sale` and `waiting-room`: units of the coupon it creates.
    #[arg(long, default_value_t = 1_000)]
    pub coupon_quantity: i64,
    /// `waiting-room` and `crowd`: admissions a second of the room it creates.
    #[arg(long, default_value_t = 50)]
    pub admit_rate: i64,
    /// `waiting-room` and `crowd`: how long after the start the room opens (those who join
    /// before are shuffled at opening).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub opens_in: Duration,
    /// Local addresses the connections leave from, in turn: `127.0.0.1-127.0.0.8`, or a
    /// comma-separated list. One address reaches one server address from about 28,000 ports;
    /// a crowd larger than that needs several (every address in 127.0.0.0/8 is local).
    #[arg(long, value_parser = parse_sources)]
    pub source_addresses: Option<Sources>,
    /// Spread the virtual users over this many processes of this binary (each holds a
    /// connection per user, so a file descriptor). By default as many as the descriptor
    /// limit needs: one per `ulimit -n` less 256 users.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub processes: Option<u16>,
    /// Drive one part of a spread run, as the plan in this file says (internal).
    #[arg(long, hide = true)]
    pub worker_plan: Option<PathBuf>,
    /// Also write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write an HTML page with latency and throughput plots.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where the run notes what the verdict checks (read again by `--check-only`).
    #[arg(long, default_value = "stampede-load-state.json")]
    pub state: PathBuf,
    /// Only check the invariants of the run noted in `--state`.
    #[arg(long)]
    pub check_only: bool,
    /// Skip the checks after the run.
    #[arg(long)]
    pub no_check: bool,
}

/// Runs `args`; an error names the broken invariants.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    if let Some(plan) = &args.worker_plan {
        return crate::workers::work(plan).await;
    }
    let sources = args
        .source_addresses
        .clone()
        .map(|s| s.0)
        .unwrap_or_default();
    let target = Target::parse_from(&args.base_url, sources.clone())?;
    let seed = Seeded::read(&args.tokens)?;
    if args.check_only {
        let log: RunLog = serde_json::from_slice(
            &std::fs::read(&args.state)
                .with_context(|| format!("reading {}", args.state.display()))?,
        )?;
        let checks = verdict::check(target, &seed, &log).await?;
        for c in &checks {
            println!(
                "{} {} ({})",
                if c.held { "ok  " } else { "FAIL" },
                c.invariant,
                c.detail
            );
        }
        return conclude(&checks);
    }
    let plan = Plan {
        scenario: args.scenario,
        duration: args.duration,
        vus: args.vus,
        rate: args.rate,
        think: args.think,
        coupon: args.coupon,
        coupon_quantity: args.coupon_quantity,
        admit_rate: args.admit_rate,
        opens_in: args.opens_in,
        progress: true,
    };
    let processes = args
        .processes
        .map_or_else(|| processes_for(plan.vus), usize::from);
    let outcome = if processes > 1 {
        let (url, tokens) = (&args.base_url, &args.tokens);
        crate::workers::spread(
            url,
            &sources,
            tokens,
            target.clone(),
            &seed,
            plan,
            processes,
        )
        .await?
    } else {
        run(target.clone(), seed.clone(), plan).await?
    };
    std::fs::write(&args.state, serde_json::to_vec(&outcome.log)?)
        .with_context(|| format!("writing {}", args.state.display()))?;
    let checks = if args.no_check {
        Vec::new()
    } else {
        verdict::check(target, &seed, &outcome.log).await?
    };
    print!("{}", report::table(&outcome, &checks));
    if let Some(path) = &args.json {
        std::fs::write(path, report::json(&outcome, &checks)?)?;
    }
    if let Some(path) = &args.report {
        std::fs::write(path, report::html(&outcome, &checks))?;
    }
    conclude(&checks)
}

/// How many processes `vus` virtual users need: one per descriptor limit, less 256 kept for
/// the rest (the probe, preparing, the room's closing).
fn processes_for(vus: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1;
    }
    let per_process = (limit.rlim_cur.min(1 << 20) as usize)
        .saturating_sub(256)
        .max(256);
    vus.div_ceil(per_process).clamp(1, 64)
}

fn conclude(checks: &[verdict::Check]) -> anyhow::Result<()> {
    let broken: Vec<&str> = checks
        .iter()
        .filter(|c| !c.held)
        .map(|c| c.invariant)
        .collect();
    anyhow::ensure!(
        broken.is_empty(),
        "broken invariant(s): {}",
        broken.join("; ")
    );
    Ok(())
}

/// The addresses of `--source-addresses`.
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

/// `127.0.0.1-127.0.0.8` (IPv4, at most 256), or `a,b,c`, or a mix.
pub fn parse_sources(text: &str) -> Result<Sources, String> {
    let mut sources = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("not an address or a range of addresses: {part:?}");
        match part.split_once('-') {
            Some((first, last)) => {
                let first: Ipv4Addr = first.trim().parse().map_err(|_| bad())?;
                let last: Ipv4Addr = last.trim().parse().map_err(|_| bad())?;
                let (first, last) = (u32::from(first), u32::from(last));
                if last < first || last - first >= 256 {
                    return Err(format!(
                        "{part:?}: a range goes up, by at most 256 addresses"
                    ));
                }
                sources.extend((first..=last).map(|a| IpAddr::V4(Ipv4Addr::from(a))));
            }
            None => sources.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(Sources(sources))
}

/// `250ms`, `10s`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("not a duration: {text:?} (use ms, s or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_are_read_as_ranges_and_lists() {
        let sources = parse_sources("127.0.0.1-127.0.0.3, 127.0.1.9").unwrap().0;
        let shown: Vec<String> = sources.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.9"]);
        for bad in [
            "127.0.0.9-127.0.0.1",
            "127.0.0.0-127.0.1.0",
            "localhost",
            "1.2.3.4-x",
        ] {
            assert!(parse_sources(bad).is_err(), "{bad}");
        }
    }
}
