//! The machine's physical limits, measured right before a scenario with the same client count:
//! `pgbench -S` (select-only, against a scratch database initialised with `pgbench -i -s 1`)
//! and `redis-benchmark -t get`. maru's figures are reported as ratios to them, so results
//! from different machines (and different noise) can be compared.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tokio::process::Command;
use url::Url;

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub clients: usize,
    pub pgbench_clients: Option<usize>,
    pub pgbench_select_tps: Option<f64>,
    pub redis_get_rps: Option<f64>,
    pub commands: Vec<String>,
    pub notes: Vec<String>,
}

/// Measures both; a tool that is missing or fails becomes a note, not an error.
pub async fn measure(pgbench_url: &Url, redis_url: &Url, clients: usize, seconds: u64) -> Limits {
    let mut l = Limits {
        clients,
        pgbench_clients: None,
        pgbench_select_tps: None,
        redis_get_rps: None,
        commands: Vec::new(),
        notes: Vec::new(),
    };
    match pgbench(pgbench_url, clients, seconds, &mut l.commands).await {
        Ok((c, tps)) => {
            if c < clients {
                l.notes.push(format!("pgbench ran {c} clients: the server had no room for {clients}"));
            }
            l.pgbench_clients = Some(c);
            l.pgbench_select_tps = Some(tps);
        }
        Err(e) => l.notes.push(format!("pgbench not measured: {e:#}")),
    }
    match redis_benchmark(redis_url, clients, seconds, &mut l.commands).await {
        Ok(rps) => l.redis_get_rps = Some(rps),
        Err(e) => l.notes.push(format!("redis-benchmark not measured: {e:#}")),
    }
    l
}

struct PgTarget {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: String,
}

impl PgTarget {
    fn parse(url: &Url) -> anyhow::Result<Self> {
        Ok(PgTarget {
            host: url.host_str().context("no host")?.trim_matches(['[', ']']).to_owned(),
            port: url.port().unwrap_or(5432),
            user: if url.username().is_empty() { "postgres".into() } else { url.username().to_owned() },
            password: url.password().map(str::to_owned),
            database: url.path().trim_start_matches('/').to_owned(),
        })
    }

    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new("pgbench");
        c.args(["-h", &self.host, "-p", &self.port.to_string(), "-U", &self.user]).args(args).arg(&self.database);
        if let Some(p) = &self.password {
            c.env("PGPASSWORD", p);
        }
        c.kill_on_drop(true);
        c
    }
}

/// Creates the scratch database and its pgbench tables when missing; returns the client count
/// the server has room for and the select-only transactions per second.
async fn pgbench(url: &Url, clients: usize, seconds: u64, commands: &mut Vec<String>) -> anyhow::Result<(usize, f64)> {
    let t = PgTarget::parse(url)?;
    if t.database.is_empty() || t.database == "postgres" {
        bail!("give pgbench its own scratch database, not {:?}", t.database);
    }
    let mut admin_url = url.clone();
    admin_url.set_path("/postgres");
    let mut admin = PgConnection::connect(admin_url.as_str()).await.context("connect")?;
    let exists: Option<(i32,)> = sqlx::query_as("select 1 from pg_database where datname = $1")
        .bind(&t.database)
        .fetch_optional(&mut admin)
        .await?;
    if exists.is_none() {
        let sql = format!("create database \"{}\"", t.database.replace('"', "\"\""));
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await?;
    }
    // Leave headroom so the benchmark never takes the last connections of a shared server.
    let (max, used): (i64, i64) = sqlx::query_as(
        "select current_setting('max_connections')::bigint, (select count(*) from pg_stat_activity)::bigint",
    )
    .fetch_one(&mut admin)
    .await?;
    admin.close().await?;
    let room = usize::try_from(max - used - 10).unwrap_or(0);
    let clients = clients.min(room);
    if clients == 0 {
        bail!("no free connections on the server ({used}/{max} in use)");
    }

    let mut db = PgConnection::connect(url.as_str()).await.context("connect to the scratch database")?;
    let (initialised,): (bool,) =
        sqlx::query_as("select to_regclass('pgbench_accounts') is not null").fetch_one(&mut db).await?;
    db.close().await?;
    if !initialised {
        let args = vec!["-i".to_owned(), "-s".to_owned(), "1".to_owned(), "-q".to_owned()];
        run(t.command(&args), &args, commands, Duration::from_secs(120)).await?;
    }
    let threads = clients.min(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let args: Vec<String> =
        ["-S", "-n", "-c", &clients.to_string(), "-j", &threads.to_string(), "-T", &seconds.to_string()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    let out = run(t.command(&args), &args, commands, Duration::from_secs(seconds + 60)).await?;
    Ok((clients, parse_pgbench_tps(&out).context("no tps line in pgbench output")?))
}

async fn redis_benchmark(url: &Url, clients: usize, seconds: u64, commands: &mut Vec<String>) -> anyhow::Result<f64> {
    let host = url.host_str().context("no host")?.trim_matches(['[', ']']).to_owned();
    let port = url.port().unwrap_or(6379).to_string();
    // About `seconds` of GETs on a small machine; redis-benchmark has no time bound of its own.
    let requests = (40_000 * seconds).max(10_000).to_string();
    let args: Vec<String> = ["-h", &host, "-p", &port, "-t", "get", "-c", &clients.to_string(), "-n", &requests, "-q"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut c = Command::new("redis-benchmark");
    c.args(&args).kill_on_drop(true);
    if let Some(p) = url.password() {
        c.env("REDISCLI_AUTH", p);
    }
    let out = run(c, &args, commands, Duration::from_secs(seconds * 6 + 30)).await?;
    parse_redis_get_rps(&out).context("no GET line in redis-benchmark output")
}

async fn run(mut cmd: Command, args: &[String], log: &mut Vec<String>, limit: Duration) -> anyhow::Result<String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    log.push(format!("{program} {}", args.join(" ")));
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .with_context(|| format!("{program} took longer than {limit:?}"))?
        .with_context(|| format!("cannot run {program}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{program} failed ({}): {}", out.status, stderr.lines().last().unwrap_or(""));
    }
    Ok(stdout)
}

/// `tps = 12345.678901 (without initial connection time)`
fn parse_pgbench_tps(out: &str) -> Option<f64> {
    out.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("tps = "))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// `GET: 98039.22 requests per second, p50=0.255 msec` (progress lines end with `\r`).
fn parse_redis_get_rps(out: &str) -> Option<f64> {
    out.split(['\r', '\n'])
        .rev()
        .filter_map(|l| l.trim().strip_prefix("GET: "))
        .filter(|rest| rest.contains("requests per second"))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench() {
        let out = "pgbench (15.8)\ntransaction type: <builtin: select only>\nnumber of clients: 8\n\
                   latency average = 0.250 ms\ninitial connection time = 12.3 ms\n\
                   tps = 31945.123456 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(out), Some(31945.123456));
    }

    #[test]
    fn parses_redis_benchmark() {
        let out = "GET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                   GET: 98039.22 requests per second, p50=0.255 msec\n";
        assert_eq!(parse_redis_get_rps(out), Some(98039.22));
    }
}
