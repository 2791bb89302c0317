//! The run's report: throughput and latency per RPC, counts per gRPC code and per
//! `CODE REASON`, the physical limits measured right before, and the checks. Printed as a
//! table and written as JSON.

use std::collections::BTreeMap;
use std::path::Path;

use goose::metrics::GooseMetrics;
use serde::Serialize;
use tonic::Code;

use crate::limits::Limits;
use crate::rpc::code_name;

/// Latency and outcome counts of one RPC (`METHOD Name`, e.g. `GRPC WhoAmI`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RpcStats {
    pub requests: u64,
    pub rps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Replies per gRPC code name.
    pub codes: BTreeMap<String, u64>,
    /// Failures per `CODE REASON [no-retry-info]`.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub elapsed_s: f64,
    pub requests: u64,
    pub rps: f64,
    pub codes: BTreeMap<String, u64>,
    pub rpcs: BTreeMap<String, RpcStats>,
}

impl Summary {
    pub fn from_goose(metrics: &GooseMetrics, elapsed_s: f64) -> Self {
        let secs = elapsed_s.max(1e-3);
        let mut s = Summary { elapsed_s, ..Default::default() };
        for (key, agg) in &metrics.requests {
            let t = &agg.raw_data;
            let ms = |us: u64| us as f64 / 1000.0;
            let mut stats = RpcStats {
                requests: t.counter as u64,
                rps: t.counter as f64 / secs,
                mean_ms: if t.counter > 0 { ms(t.total_time_us) / t.counter as f64 } else { 0.0 },
                p50_ms: ms(t.percentile_us(0.50)),
                p95_ms: ms(t.percentile_us(0.95)),
                p99_ms: ms(t.percentile_us(0.99)),
                max_ms: ms(t.maximum_time_us),
                ..Default::default()
            };
            for (code, n) in &agg.status_code_counts {
                let name = code_name(Code::from_i32(i32::from(*code))).to_owned();
                *stats.codes.entry(name.clone()).or_default() += *n as u64;
                *s.codes.entry(name).or_default() += *n as u64;
            }
            s.requests += stats.requests;
            s.rpcs.insert(key.clone(), stats);
        }
        for e in metrics.errors.values() {
            let key = format!("{} {}", e.custom_method, e.name);
            *s.rpcs.entry(key).or_default().errors.entry(e.error.clone()).or_default() += e.occurrences as u64;
        }
        s.rps = s.requests as f64 / secs;
        s
    }

    pub fn rpc(&self, key: &str) -> Option<&RpcStats> {
        self.rpcs.get(key)
    }

    /// Replies with `code` to every RPC whose key satisfies `which`.
    pub fn count(&self, which: impl Fn(&str) -> bool, code: Code) -> u64 {
        self.rpcs.iter().filter(|(k, _)| which(k)).filter_map(|(_, r)| r.codes.get(code_name(code))).sum()
    }

    /// Failures whose label contains `needle`, over all RPCs.
    pub fn errors_matching(&self, needle: &str) -> u64 {
        self.rpcs.values().flat_map(|r| r.errors.iter()).filter(|(k, _)| k.contains(needle)).map(|(_, n)| n).sum()
    }

    /// `rpc: CODE×n` for every reply outside `allowed(rpc, code)`.
    pub fn unexpected(&self, allowed: impl Fn(&str, &str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (rpc, r) in &self.rpcs {
            for (code, n) in &r.codes {
                if !allowed(rpc, code) {
                    let why: Vec<String> = r
                        .errors
                        .iter()
                        .filter(|(k, _)| k.starts_with(code.as_str()))
                        .map(|(k, n)| format!("{k}×{n}"))
                        .collect();
                    out.push(format!("{rpc}: {code}×{n} [{}]", why.join(", ")));
                }
            }
        }
        out
    }
}

/// One pass/fail judgement of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, pass: bool, detail: impl Into<String>) -> Self {
        Check { name: name.into(), pass, detail: detail.into() }
    }

    /// Zero INTERNAL replies anywhere: holds in every scenario.
    pub fn no_internal(s: &Summary) -> Self {
        let n = s.count(|_| true, Code::Internal);
        Check::new("zero INTERNAL", n == 0, format!("{n} INTERNAL replies"))
    }

    /// No reply outside `allowed(rpc, code)`.
    pub fn only_codes(name: &str, s: &Summary, allowed: impl Fn(&str, &str) -> bool) -> Self {
        let bad = s.unexpected(allowed);
        let detail = if bad.is_empty() { "none".to_owned() } else { bad.join("; ") };
        Check::new(name, bad.is_empty(), detail)
    }

    /// `rpc`'s p99 within `limit_ms` (a benchmark goal, checked in full runs only).
    pub fn p99(s: &Summary, rpc: &str, limit_ms: f64) -> Self {
        match s.rpc(rpc) {
            Some(r) => Check::new(
                format!("{rpc} p99 ≤ {limit_ms} ms"),
                r.p99_ms <= limit_ms,
                format!("p99 {:.2} ms over {} requests", r.p99_ms, r.requests),
            ),
            None => Check::new(format!("{rpc} p99 ≤ {limit_ms} ms"), false, "no requests recorded"),
        }
    }
}

/// Where and how the run happened, for RESULTS.md.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub load_average_1m_before: Option<f64>,
    pub load_average_1m_after: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// maru requests/s ÷ `pgbench -S` transactions/s at the same client count.
    pub maru_over_pgbench_select: Option<f64>,
    /// maru requests/s ÷ `redis-benchmark -t get` requests/s at the same client count.
    pub maru_over_redis_get: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub smoke: bool,
    pub started_at: String,
    pub command: String,
    pub git_commit: Option<String>,
    pub targets: Vec<String>,
    pub users: usize,
    pub duration_s: f64,
    pub think_time_ms: [u64; 2],
    pub max_requests: u64,
    pub machine: Machine,
    pub limits: Option<Limits>,
    pub ratios: Ratios,
    /// The target's largest resident set during the run (`--server-metrics`).
    pub server_rss_max_mib: Option<f64>,
    pub summary: Summary,
    pub checks: Vec<Check>,
    pub pass: bool,
}

impl Report {
    pub fn ratios(summary: &Summary, limits: Option<&Limits>) -> Ratios {
        let over = |x: Option<f64>| x.filter(|v| *v > 0.0).map(|v| summary.rps / v);
        Ratios {
            maru_over_pgbench_select: over(limits.and_then(|l| l.pgbench_select_tps)),
            maru_over_redis_get: over(limits.and_then(|l| l.redis_get_rps)),
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    pub fn print(&self) {
        let s = &self.summary;
        println!(
            "\n== {} {}· {} users · {:.1} s · {} requests · {:.1} req/s · load avg {} → {}",
            self.scenario,
            if self.smoke { "(smoke) " } else { "" },
            self.users,
            s.elapsed_s,
            s.requests,
            s.rps,
            fmt_opt(self.machine.load_average_1m_before),
            fmt_opt(self.machine.load_average_1m_after),
        );
        println!(
            "{:<28} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  codes",
            "rpc", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"
        );
        for (rpc, r) in &s.rpcs {
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
            println!(
                "{:<28} {:>9} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}",
                rpc,
                r.requests,
                r.rps,
                r.p50_ms,
                r.p95_ms,
                r.p99_ms,
                r.max_ms,
                codes.join(" ")
            );
            for (e, n) in &r.errors {
                println!("{:<28}   {n:>7} × {e}", "");
            }
        }
        if let Some(l) = &self.limits {
            println!(
                "limits ({} clients): pgbench -S {} tps · redis GET {} req/s · maru/pgbench {} · maru/redis {}",
                l.clients,
                fmt_opt(l.pgbench_select_tps),
                fmt_opt(l.redis_get_rps),
                fmt_ratio(self.ratios.maru_over_pgbench_select),
                fmt_ratio(self.ratios.maru_over_redis_get),
            );
            for n in &l.notes {
                println!("  note: {n}");
            }
        }
        if let Some(mib) = self.server_rss_max_mib {
            println!("server: at most {mib:.1} MiB resident during the run");
        }
        println!("checks:");
        for c in &self.checks {
            println!("  {}  {} — {}", if c.pass { "PASS" } else { "FAIL" }, c.name, c.detail);
        }
        println!("{}", if self.pass { "RESULT: PASS" } else { "RESULT: FAIL" });
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into())
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let mut s = Summary::default();
        let mut signup = RpcStats::default();
        signup.codes.insert("OK".into(), 5);
        signup.codes.insert("ALREADY_EXISTS".into(), 3);
        signup.errors.insert("ALREADY_EXISTS HANDLE_TAKEN".into(), 3);
        s.rpcs.insert("GRPC SignUp".into(), signup);
        let mut who = RpcStats::default();
        who.codes.insert("OK".into(), 9);
        who.codes.insert("INTERNAL".into(), 1);
        who.errors.insert("INTERNAL INTERNAL".into(), 1);
        s.rpcs.insert("GRPC WhoAmI".into(), who);
        s
    }

    #[test]
    fn counts_and_unexpected_codes() {
        let s = summary();
        assert_eq!(s.count(|k| k.ends_with("SignUp"), Code::AlreadyExists), 3);
        assert!(!Check::no_internal(&s).pass);
        let c = Check::only_codes("codes", &s, |rpc, code| {
            code == "OK" || (rpc.ends_with("SignUp") && code == "ALREADY_EXISTS")
        });
        assert!(!c.pass);
        assert!(c.detail.contains("GRPC WhoAmI: INTERNAL×1"), "{}", c.detail);
        assert_eq!(s.errors_matching("HANDLE_TAKEN"), 3);
    }
}
