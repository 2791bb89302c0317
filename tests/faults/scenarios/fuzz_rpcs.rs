//! The fuzzer against a server with rate limits off, as anonymous, a user and an admin:
//! every RPC of the descriptor must answer with a designed status — never INTERNAL or
//! UNKNOWN, never a broken connection — and the server must stay up without a panic.

use std::time::Instant;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::fuzz::{self, Caller, Stats};
use crate::harness::load::account;
use crate::harness::maru::{Maru, MaruConfig, health_check};
use crate::harness::report::{Report, fmt_counts};
use crate::harness::{Env, light_scenario};

/// The server and its callers (anonymous, user, admin).
struct Target {
    maru: Maru,
    callers: Vec<Caller>,
}

async fn target(env: &Env) -> (Target, MaruConfig) {
    // Rate limits off (every case must reach the handlers); no access log (10,000 lines of
    // it are most of the server's work otherwise).
    let cfg = env.maru("maru-fuzz").set("MARU__RATE_LIMIT__ENABLED", false).set("MARU__LOG__ACCESS_LOG", false);
    let maru = Maru::start(&cfg).await;
    env.ingest_trials(&cfg).await;
    let channel = maru.channel();
    let user = account(&channel, "fuzz.user").await;
    account(&channel, "fuzz.admin").await;
    cfg.cli(&["admin", "grant", "fuzz.admin"]).await;
    // Tokens carry the role: log in again for an admin token.
    let admin = account(&channel, "fuzz.admin").await;

    let callers = vec![
        Caller { name: "anonymous", token: String::new() },
        Caller { name: "user", token: user.token },
        Caller { name: "admin", token: admin.token },
    ];
    (Target { maru, callers }, cfg)
}

/// Shared verdicts of a fuzz run.
async fn verdicts(report: &mut Report, t: &mut Target, stats: &Stats) {
    let alive = t.maru.running() && matches!(health_check(&t.maru.channel()).await, Ok(ServingStatus::Serving));
    report.figure("outcomes by code", fmt_counts(&stats.by_code));
    report.figure("outcomes", fmt_counts(&stats.by_label));
    report.figure("slowest RPCs (total time answering)", stats.slowest(5));
    report.figure(
        "largest grpc-message + details",
        format!("{} B ({})", stats.max_status_bytes.0, stats.max_status_bytes.1),
    );
    let internal = stats.by_code.get("INTERNAL").copied().unwrap_or(0);
    let unknown = stats.by_code.get("UNKNOWN").copied().unwrap_or(0);
    report
        .check(internal == 0 && unknown == 0, format!("0 INTERNAL, 0 UNKNOWN: {internal} INTERNAL, {unknown} UNKNOWN"));
    let violations: Vec<String> =
        stats.violations.iter().map(|(k, (n, first))| format!("{k} ×{n}, first: {first}")).collect();
    report.check(
        violations.is_empty(),
        format!("every answer is a designed status (ErrorInfo, documented reason, RetryInfo where retryable; no broken stream): {violations:#?}"),
    );
    report.figure("what the server logged for its errors", format!("{:?}", t.maru.logged_errors(5)));
    report.check(alive, "the server is alive and SERVING afterwards");
    report.no_panic(&[&t.maru]);
}

/// Every RPC of the descriptor answers an empty message, as each caller, with a designed
/// status: the descriptor and the server agree (no UNIMPLEMENTED), nothing is INTERNAL.
#[test]
fn every_rpc_answers_an_empty_message() {
    light_scenario(|| async {
        let env = Env::start().await;
        let (mut t, _) = target(&env).await;
        let methods = fuzz::methods();
        let mut stats = Stats::default();
        let mut unimplemented = Vec::new();
        let channel = fuzz::connection(t.maru.grpc);
        for (mi, m) in methods.iter().enumerate() {
            for (ci, caller) in t.callers.iter().enumerate() {
                let case = fuzz::Case {
                    index: 0,
                    method: mi,
                    caller: ci,
                    kind: fuzz::Kind::Random,
                    body: bytes::Bytes::new(),
                };
                let started = Instant::now();
                let r = fuzz::send(&channel, &m.path, &caller.token, bytes::Bytes::new()).await;
                let took = started.elapsed();
                if matches!(&r, Err(s) if s.code() == tonic::Code::Unimplemented) {
                    unimplemented.push(m.path.clone());
                }
                stats.record(&m.path, &case, caller.name, &r, took);
            }
        }
        let mut report = Report::new("every_rpc_answers_an_empty_message");
        report.figure(
            "cases",
            format!("{} RPCs × anonymous, user, admin, each with an empty (all-default) message", methods.len()),
        );
        report.check(methods.len() > 50, format!("the descriptor lists every service: {} RPCs", methods.len()));
        report.check(unimplemented.is_empty(), format!("no RPC of the descriptor is UNIMPLEMENTED: {unimplemented:?}"));
        verdicts(&mut report, &mut t, &stats).await;
        report.finish();
    });
}

/// `FAULTS_FUZZ_CASES` (default 10,000) random and mutated messages over every RPC of the
/// descriptor, as anonymous, a user and an admin, from 8 connections at once: 0 INTERNAL,
/// 0 UNKNOWN, every answer a designed status, no panic. Strings include NUL and control
/// characters, also inside real ids and handles. `FAULTS_FUZZ_SEED` reproduces a run (the
/// report prints the seed; a longer run: `FAULTS_FUZZ_CASES=200000`).
#[test]
fn fuzz_every_rpc() {
    light_scenario(|| async {
        let env = Env::start().await;
        let (mut t, _) = target(&env).await;
        let cases: u64 = std::env::var("FAULTS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let seed: u64 = std::env::var("FAULTS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
        let methods = std::sync::Arc::new(fuzz::methods());
        let known = std::sync::Arc::new(fuzz::generate::Known {
            strings: ["fuzz.user", "fuzz.admin", "C100001", "C100002"].map(str::to_owned).to_vec(),
        });
        let callers = std::sync::Arc::new(t.callers.clone());
        let started = Instant::now();
        const WORKERS: u64 = 8;
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (methods, known, callers) = (methods.clone(), known.clone(), callers.clone());
                let channel = fuzz::connection(t.maru.grpc);
                tokio::spawn(async move {
                    let mut stats = Stats::default();
                    for index in (w..cases).step_by(WORKERS as usize) {
                        let case = fuzz::case(seed, index, &methods, callers.len(), &known);
                        let m = &methods[case.method];
                        let caller = &callers[case.caller];
                        let begun = Instant::now();
                        let r = fuzz::send(&channel, &m.path, &caller.token, case.body.clone()).await;
                        stats.record(&m.path, &case, caller.name, &r, begun.elapsed());
                    }
                    stats
                })
            })
            .collect();
        let mut stats = Stats::default();
        for w in workers {
            stats.merge(w.await.expect("fuzz worker"));
        }
        let mut report = Report::new("fuzz_every_rpc");
        report.figure(
            "cases",
            format!(
                "{} (seed {seed}) over {} RPCs, as anonymous, user, admin; 30 % mutated encodings",
                stats.cases,
                methods.len()
            ),
        );
        report.figure("time", format!("{:.1} s", started.elapsed().as_secs_f64()));
        report.check(stats.cases as u64 == cases, format!("every case answered: {} of {cases}", stats.cases));
        verdicts(&mut report, &mut t, &stats).await;
        report.finish();
    });
}
