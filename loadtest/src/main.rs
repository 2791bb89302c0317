//! maru-load: maru's load scenarios (goose 0.19 driving real tonic and gRPC-web clients).
//!
//! ```sh
//! maru-load --list
//! maru-load --scenario whoami --users 100 --duration 30s --report whoami.json
//! maru-load --scenario signup-storm --smoke
//! ```
//! Loopback targets only; every run is bounded in time (`--duration`, at most 10 min) and in
//! request count (`--max-requests`). Exit status: 0 when every check passed, 1 when one
//! failed, 2 when the run could not be made.

mod api;
mod limits;
mod report;
mod rpc;
mod scenarios;
mod seed;
mod server;
mod target;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use goose::config::{GooseConfiguration, GooseDefault, GooseDefaultType};
use goose::prelude::GooseAttack;

use report::{Check, Machine, Report, Summary};
use scenarios::{Ctx, Options, RunMode, Think};

const MAX_DURATION: Duration = Duration::from_secs(600);
const MAX_USERS: usize = 2000;

#[derive(Debug, Parser)]
#[command(name = "maru-load", about = "maru's load scenarios (loopback targets only)")]
struct Cli {
    /// Scenario to run (see --list).
    #[arg(long, required_unless_present = "list")]
    scenario: Option<String>,
    /// List the scenarios and their default shapes.
    #[arg(long)]
    list: bool,
    /// Concurrent users (default: the scenario's).
    #[arg(long)]
    users: Option<usize>,
    /// Run time, e.g. `30s`, `2m`, `45` (seconds); at most 10 minutes.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Pause between a user's calls in ms: `0`, `1500`, or a range `1500-2000`.
    #[arg(long, value_parser = parse_think)]
    think_time: Option<Think>,
    /// gRPC target; repeat to spread users round-robin over replicas. Loopback only.
    #[arg(long = "target", default_value = "http://127.0.0.1:50051")]
    targets: Vec<String>,
    /// A few seconds with few users: correctness checks only, for CI.
    #[arg(long)]
    smoke: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The database the target uses, for read-back checks.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/maru")]
    database_url: String,
    /// Scratch database for `pgbench -S` (created and initialised with `pgbench -i -s 1`).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/maru_pgbench")]
    pgbench_url: String,
    /// Redis for `redis-benchmark -t get`.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Skip measuring pgbench and redis-benchmark.
    #[arg(long)]
    no_limits: bool,
    /// Upper bound on RPCs in the run (default: 2,000,000; smoke 20,000).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Users started per second (default: all within a second).
    #[arg(long)]
    hatch_rate: Option<usize>,
    /// Seed of the seeded data: the same seed reuses the same accounts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client deadline per RPC, in seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Overrides the scenario's p99 goal in ms (full runs).
    #[arg(long)]
    p99_ms: Option<f64>,
    /// pool: which configuration the replicas run.
    #[arg(long, value_enum, default_value = "holds")]
    pool_expect: scenarios::pool::Expect,
    /// contention: the unique key to race for.
    #[arg(long, value_enum, default_value = "signup")]
    race: scenarios::contention::RaceKind,
    /// detail-cache: whether the target runs with its cache on (`MARU__FEED__CACHE_ENABLED`).
    #[arg(long, value_enum, default_value = "on")]
    cache: scenarios::detail_cache::CacheMode,
    /// search: run with the search indexes, or without them (dropped for the run, rebuilt after).
    #[arg(long, value_enum, default_value = "on")]
    search_index: scenarios::search::IndexMode,
    /// search: synthetic complexes in the target's database (default 500,000; smoke 5,000).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..=2_000_000))]
    complexes: Option<i64>,
    /// rate-limit-abuse: the target's read bucket as `PER_MINUTE/BURST`
    /// (`rate_limit.buckets.read`; the server's default is 3000/300).
    #[arg(long, default_value = "3000/300")]
    read_bucket: scenarios::rate_limit_abuse::Bucket,
    /// rate-limit-abuse: the target's auth bucket as `PER_MINUTE/BURST`
    /// (`rate_limit.buckets.auth`; the server's default is 30/10).
    #[arg(long, default_value = "30/10")]
    auth_bucket: scenarios::rate_limit_abuse::Bucket,
    /// A report of an earlier run: throughput must stay within --min-throughput-ratio of it.
    #[arg(long)]
    baseline: Option<PathBuf>,
    #[arg(long, default_value_t = 0.8)]
    min_throughput_ratio: f64,
    /// The target's Prometheus endpoint (maru's admin port, `/metrics`): samples the server's
    /// resident memory through the run and reads counters before and after it.
    #[arg(long)]
    server_metrics: Option<String>,
    /// Only seed: write what the seeding made (community, logins, posts) as JSON to FILE and
    /// stop, for the k6 script (`loadtest/k6/feed.js`). Scenarios without it refuse.
    #[arg(long, value_name = "FILE")]
    seed_only: Option<PathBuf>,
    /// team-detail: a second server on the same database and Redis with its caches off
    /// (`MARU__TEAMS__CACHE_ENABLED=false MARU__FEED__CACHE_ENABLED=false`); users alternate
    /// between it and --target, and each target is reported on its own. Loopback only.
    #[arg(long)]
    uncached_target: Option<String>,
    /// Fails the run when the server's resident memory exceeds this many MiB (needs
    /// --server-metrics; default: the scenario's goal in full runs).
    #[arg(long)]
    max_rss_mb: Option<f64>,
    /// market: products in the seeded catalogue (default 100,000; smoke 2,000).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1_000..=2_000_000))]
    products: Option<i64>,
    /// market: likes by synthetic likers, 100 each (default 100,000; smoke 2,000; the issue's
    /// figure is 1,000,000).
    #[arg(long, value_parser = clap::value_parser!(i64).range(0..=5_000_000))]
    likes: Option<i64>,
    /// chat: subscriber streams per HTTP/2 connection (default 1, each subscriber its own
    /// connection like separate clients; more separates the per-stream from the per-connection
    /// memory; at most the server's grpc.max_concurrent_streams).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    streams_per_connection: u16,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("not a duration: {s}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit in {s}: use ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn parse_think(s: &str) -> Result<Think, String> {
    let ms = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("not milliseconds: {v}"));
    let (min, max) = match s.split_once('-') {
        Some((a, b)) => (ms(a)?, ms(b)?),
        None => (ms(s)?, ms(s)?),
    };
    if min > max {
        return Err(format!("{min} > {max}"));
    }
    Ok(Think::ms(min, max))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list {
        for e in scenarios::ALL {
            println!(
                "{:<18} {}\n{:<18} full: {} users, {:?}, think {:?}-{:?}; smoke: {} users, {:?}",
                e.name,
                e.about,
                "",
                e.full.users,
                e.full.duration,
                e.full.think.min,
                e.full.think.max,
                e.smoke.users,
                e.smoke.duration
            );
        }
        return ExitCode::SUCCESS;
    }
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("maru-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let name = cli.scenario.as_deref().unwrap_or_default();
    let Some(entry) = scenarios::find(name) else {
        let names: Vec<&str> = scenarios::ALL.iter().map(|e| e.name).collect();
        bail!("unknown scenario {name:?}; one of: {}", names.join(", "));
    };
    let mut targets = Vec::new();
    for t in &cli.targets {
        targets.push(target::origin(&target::loopback("--target", t)?));
    }
    let database_url = target::loopback("--database-url", &cli.database_url)?;
    let pgbench_url = target::loopback("--pgbench-url", &cli.pgbench_url)?;
    let redis_url = target::loopback("--redis-url", &cli.redis_url)?;
    let uncached_target = match &cli.uncached_target {
        Some(t) => Some(target::origin(&target::loopback("--uncached-target", t)?)),
        None => None,
    };
    let server_metrics = match &cli.server_metrics {
        Some(raw) => Some(Arc::new(server::ServerMetrics::new(target::loopback("--server-metrics", raw)?)?)),
        None => None,
    };

    let shape = if cli.smoke { entry.smoke } else { entry.full };
    let users = cli.users.unwrap_or(shape.users);
    let duration = cli.duration.unwrap_or(shape.duration);
    if !(1..=MAX_USERS).contains(&users) {
        bail!("--users must be 1..={MAX_USERS}");
    }
    if duration < Duration::from_secs(1) || duration > MAX_DURATION {
        bail!("--duration must be between 1 s and {MAX_DURATION:?}");
    }
    let max_requests = cli.max_requests.unwrap_or(if cli.smoke { 20_000 } else { 2_000_000 });
    let ctx = Arc::new(Ctx {
        smoke: cli.smoke,
        users,
        duration,
        think: cli.think_time.unwrap_or(shape.think),
        targets,
        database_url,
        seed: cli.seed,
        tag: uuid::Uuid::new_v4().simple().to_string()[..6].to_owned(),
        budget: rpc::Budget::new(max_requests),
        request_timeout: Duration::from_secs(cli.request_timeout.clamp(1, 120)),
        options: Options {
            p99_ms: cli.p99_ms,
            pool_expect: cli.pool_expect,
            race: cli.race,
            cache: cli.cache,
            search_index: cli.search_index,
            complexes: cli.complexes,
            read_bucket: cli.read_bucket,
            auth_bucket: cli.auth_bucket,
            baseline: cli.baseline.clone(),
            min_throughput_ratio: cli.min_throughput_ratio,
            uncached_target,
            products: cli.products,
            likes: cli.likes,
            streams_per_connection: usize::from(cli.streams_per_connection),
        },
        server_metrics: server_metrics.clone(),
    });
    println!(
        "maru-load {}: {} users, {:?}, think {:?}-{:?}, targets {:?}, run tag {}",
        entry.name, users, duration, ctx.think.min, ctx.think.max, ctx.targets, ctx.tag
    );

    let scenario = (entry.build)(ctx.clone());
    let goose_scenarios = scenario.prepare().await.context("preparing the scenario")?;
    if let Some(path) = &cli.seed_only {
        let seeded =
            scenario.seeded().with_context(|| format!("{} has nothing to hand over (--seed-only)", entry.name))?;
        std::fs::write(path, serde_json::to_vec_pretty(&seeded)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("seeded: {}", path.display());
        return Ok(true);
    }

    let limits = if cli.no_limits {
        None
    } else {
        let secs = if cli.smoke { 2 } else { 10 };
        println!("measuring physical limits ({users} clients, ~{secs} s each): pgbench -S, redis-benchmark -t get");
        Some(limits::measure(&pgbench_url, &redis_url, users, secs).await)
    };

    let load_before = load_average();
    let started_at = chrono::Utc::now();
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?;
    for s in goose_scenarios {
        attack = attack.register_scenario(s);
    }
    let hatch = cli.hatch_rate.unwrap_or(users).max(1).to_string();
    let mut attack = *attack
        .set_default(GooseDefault::Host, ctx.targets[0].as_str())?
        .set_default(GooseDefault::Users, users)?
        .set_default(GooseDefault::IncreaseRate, hatch.as_str())?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoTransactionMetrics, true)?
        .set_default(GooseDefault::NoScenarioMetrics, true)?
        .set_default(GooseDefault::Quiet, 1)?;
    attack = match scenario.mode() {
        RunMode::Timed => *attack
            .set_default(GooseDefault::RunTime, duration.as_secs().max(1) as usize)?
            .set_default(GooseDefault::NoResetMetrics, true)?,
        RunMode::OnceEach => *attack.set_default(GooseDefault::Iterations, 1)?,
    };
    let rss = server_metrics.as_ref().map(|m| m.sample_rss(Duration::from_millis(500)));
    let clock = Instant::now();
    // goose stops itself at the run time; this bounds a run that hangs anyway.
    let metrics = tokio::time::timeout(duration + Duration::from_secs(60), attack.execute())
        .await
        .context("the run did not end in time")??;
    // Throughput over the calls' own window; goose's start-up and shutdown are not load.
    let elapsed = ctx.budget.active().unwrap_or_else(|| clock.elapsed()).as_secs_f64();
    let summary = Summary::from_goose(&metrics, elapsed);
    let server_rss_max_mib = rss.and_then(server::RssSampler::stop);

    let mut checks = vec![Check::new("requests made", summary.requests > 0, format!("{} requests", summary.requests))];
    if ctx.budget.spent() {
        checks.push(Check::new("request budget", true, format!("--max-requests {max_requests} was reached")));
    }
    checks.extend(scenario.verify(&summary).await.context("verifying the run")?);
    let rss_goal = cli.max_rss_mb.or(if cli.smoke { None } else { scenario.rss_goal_mb() });
    match (rss_goal, server_rss_max_mib, &server_metrics) {
        (Some(goal), Some(mib), _) => checks.push(Check::new(
            format!("server RSS ≤ {goal} MiB"),
            mib <= goal,
            format!("at most {mib:.1} MiB resident during the run"),
        )),
        (_, None, Some(_)) => {
            checks.push(Check::new("server RSS sampled", false, "no sample of process_resident_memory_bytes"))
        }
        _ => {}
    }
    if let Some(path) = &ctx.options.baseline {
        checks.push(baseline_check(path, &summary, ctx.options.min_throughput_ratio)?);
    }
    let pass = checks.iter().all(|c| c.pass);
    let report = Report {
        scenario: entry.name.to_owned(),
        smoke: cli.smoke,
        started_at: started_at.to_rfc3339(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        git_commit: git_commit(),
        targets: ctx.targets.clone(),
        users,
        duration_s: duration.as_secs_f64(),
        think_time_ms: [ctx.think.min.as_millis() as u64, ctx.think.max.as_millis() as u64],
        max_requests,
        machine: Machine {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            memory_gib: memory_gib().unwrap_or(0.0),
            load_average_1m_before: load_before,
            load_average_1m_after: load_average(),
        },
        ratios: Report::ratios(&summary, limits.as_ref()),
        server_rss_max_mib,
        limits,
        summary,
        checks,
        pass,
    };
    report.print();
    if let Some(path) = &cli.report {
        report.write(path).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    Ok(pass)
}

fn baseline_check(path: &std::path::Path, s: &Summary, ratio: f64) -> anyhow::Result<Check> {
    let raw = std::fs::read(path).with_context(|| format!("reading baseline {}", path.display()))?;
    let base: serde_json::Value = serde_json::from_slice(&raw)?;
    let base_rps = base["summary"]["rps"].as_f64().context("baseline has no summary.rps")?;
    let got = if base_rps > 0.0 { s.rps / base_rps } else { 0.0 };
    Ok(Check::new(
        format!("throughput ≥ {:.0} % of the baseline", ratio * 100.0),
        got >= ratio,
        format!("{:.1} req/s vs {:.1} req/s in {} ({:.0} %)", s.rps, base_rps, path.display(), got * 100.0),
    ))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn memory_gib() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0 / 1024.0)
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn think_times() {
        assert_eq!(parse_think("0"), Ok(Think::NONE));
        assert_eq!(parse_think("1500-2000"), Ok(Think::ms(1500, 2000)));
        assert!(parse_think("2000-1500").is_err());
    }

    #[test]
    fn every_scenario_is_listed_once() {
        let mut names: Vec<&str> = scenarios::ALL.iter().map(|e| e.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), scenarios::ALL.len());
    }
}
