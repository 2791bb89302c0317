//! A scenario's figures and verdicts. Every check is recorded (not asserted one by one) so a
//! failing run lists everything that broke, with the figures; the report is printed and kept
//! in `target/tmp/faults/<scenario>.md` for `docs/reliability.md`.

use std::collections::BTreeMap;
use std::fmt::Display;

use super::load::{LoadResult, Violations, WritesCheck};
use super::maru::Maru;
use super::process::Rss;

/// Peak resident memory allowed to maru under the bounded mixed load, in MiB.
pub const LOAD_RSS_BOUND_MIB: f64 = 256.0;

pub struct Report {
    name: String,
    started: std::time::Instant,
    figures: Vec<(String, String)>,
    checks: Vec<(bool, String)>,
}

impl Report {
    pub fn new(name: &str) -> Self {
        let started = super::STARTED.get().unwrap_or_else(std::time::Instant::now);
        Self { name: name.to_owned(), started, figures: Vec::new(), checks: Vec::new() }
    }

    pub fn figure(&mut self, key: &str, value: impl Display) {
        self.figures.push((key.to_owned(), value.to_string()));
    }

    /// Records a check; `what` says what must hold (and, on failure, what was seen).
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        self.checks.push((ok, what.into()));
    }

    /// The figures and shared checks of a load: outcomes by code, error-design violations,
    /// acknowledged writes against rows, duplicates.
    pub fn load(&mut self, r: &LoadResult, writes: &WritesCheck, violations: &Violations) {
        self.figure("calls (per replica)", format!("{} ({})", r.calls.len(), fmt_counts(&r.by_replica())));
        self.figure("outcomes", fmt_counts(&r.by_label()));
        self.figure("failures by call", fmt_counts(&r.failures_by_op()));
        self.figure(
            "writes (attempted / acknowledged / acknowledged rows present / load rows)",
            format!("{} / {} / {} / {}", writes.attempted, writes.acked, writes.acked_present, writes.rows),
        );
        self.figure("writes without request_id given up by their client", writes.naive_unacked);
        self.figure("writes answered with an error, never acknowledged, but committed", writes.unacked_committed);
        self.figure(
            "writes answered with an error although that attempt committed (seen on the retry)",
            fmt_counts(&writes.committed_despite),
        );
        self.check(
            violations.is_empty(),
            format!(
                "only documented codes, ErrorInfo on every error, RetryInfo on every UNAVAILABLE/RESOURCE_EXHAUSTED, no transport failure or hang: {}",
                fmt_violations(violations)
            ),
        );
        self.check(
            writes.missing.is_empty(),
            format!(
                "every acknowledged write is in the database: {} missing {:?}",
                writes.missing.len(),
                first(&writes.missing)
            ),
        );
        let dups_rid = writes.duplicated.iter().filter(|d| d.2).count();
        let dups_naive = writes.duplicated.len() - dups_rid;
        self.check(
            writes.duplicated.is_empty(),
            format!(
                "no duplicates (rows per write text ≤ 1): {dups_rid} with request_id, {dups_naive} without; {:?}",
                writes.duplicated.iter().take(3).collect::<Vec<_>>()
            ),
        );
        self.check(
            writes.unresolved.is_empty(),
            format!(
                "every write with a request_id acknowledged once the fault is over: {} unresolved {:?}",
                writes.unresolved.len(),
                first(&writes.unresolved)
            ),
        );
    }

    /// The memory bound of a bounded load: the server's peak resident set stays under
    /// [`LOAD_RSS_BOUND_MIB`] (the debug build idles at ~60 MiB).
    pub fn rss(&mut self, rss: Rss) {
        self.check(
            rss.peak <= LOAD_RSS_BOUND_MIB,
            format!("RSS bound: peak {:.0} MiB ≤ {LOAD_RSS_BOUND_MIB:.0} MiB", rss.peak),
        );
    }

    /// The check every scenario makes: no panic in the servers' output (read once each).
    pub fn no_panic(&mut self, servers: &[&Maru]) {
        let panics: Vec<String> = servers.iter().flat_map(|m| m.panics()).collect();
        self.check(panics.is_empty(), format!("no panic: {panics:?}"));
    }

    pub fn failed(&self) -> Vec<&str> {
        self.checks.iter().filter(|c| !c.0).map(|c| c.1.as_str()).collect()
    }

    pub fn render(&self) -> String {
        let mut out = format!("## {}\n\n| figure | value |\n|---|---|\n", self.name);
        out.push_str(&format!(
            "| scenario time (servers started, load, checks) | {} s |\n",
            self.started.elapsed().as_secs()
        ));
        for (k, v) in &self.figures {
            out.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
        }
        out.push_str("\n| check | result |\n|---|---|\n");
        for (ok, what) in &self.checks {
            out.push_str(&format!("| {} | {} |\n", what.replace('|', "\\|"), if *ok { "pass" } else { "FAIL" }));
        }
        out
    }

    /// Prints and stores the report, then fails the test if any check failed.
    pub fn finish(self) {
        let text = self.render();
        println!("{text}");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{}.md", self.name)), &text);
        }
        let failed = self.failed();
        assert!(
            failed.is_empty(),
            "{}: {} check(s) failed:\n- {}\n\n{text}",
            self.name,
            failed.len(),
            failed.join("\n- ")
        );
    }
}

pub fn fmt_counts<K: Display, V: Display>(m: &BTreeMap<K, V>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}

pub fn fmt_violations(v: &Violations) -> String {
    if v.is_empty() {
        return "none".to_owned();
    }
    v.iter().map(|(k, (n, msg))| format!("{k}: {n} (e.g. {msg:?})")).collect::<Vec<_>>().join(", ")
}

fn first(v: &[String]) -> Vec<&String> {
    v.iter().take(3).collect()
}

pub fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis()))
}
