//! PostgreSQL stopped (`-m immediate`) under the mixed load, then started again on the same
//! port and data. While it is down every call that needs it is UNAVAILABLE
//! `DATABASE_UNAVAILABLE` with RetryInfo and a message that says "unavailable" (never "busy"),
//! health is NOT_SERVING and `/readyz` 503; afterwards SERVING again, and every acknowledged
//! write is there once.

use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::{Maru, health_check};
use crate::harness::process::RssSampler;
use crate::harness::report::{Report, ms};
use crate::harness::{Env, scenario, soak};

/// `/readyz` of the admin port: its HTTP status.
async fn readyz(maru: &Maru) -> Option<u16> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
    let r = client.get(format!("http://{}/readyz", maru.admin)).send().await.ok()?;
    Some(r.status().as_u16())
}

/// Polls until health reports `want` (bounded only as a hang guard); the time it took.
async fn health_becomes(maru: &Maru, want: ServingStatus, from: Instant) -> Option<Duration> {
    let channel = maru.channel();
    while from.elapsed() < Duration::from_secs(30) {
        if matches!(health_check(&channel).await, Ok(s) if s == want) {
            return Some(from.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

#[test]
fn postgres_immediate_stop_and_restart() {
    scenario(|| async {
        let mut env = Env::start().await;
        let cfg = env
            .maru("maru-1")
            .load_limits()
            .set("MARU__DATABASE__PROBE_INTERVAL_MS", 200)
            .set("MARU__DATABASE__ACQUIRE_TIMEOUT_MS", 500);
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "pg.user", 4).await;
        let rss = RssSampler::start(maru.pid);
        let spec = LoadSpec { naive_workers: 2, ..LoadSpec::default() };
        let load = Load::start(spec, vec![maru.grpc], users);

        tokio::time::sleep(soak(3)).await;
        let fault_start = Instant::now();
        env.pg.stop_immediate();
        let not_serving = health_becomes(&maru, ServingStatus::NotServing, fault_start).await;
        let readyz_down = readyz(&maru).await;
        tokio::time::sleep(soak(4)).await;
        env.pg.restart().await;
        let fault_end = Instant::now();
        let serving = health_becomes(&maru, ServingStatus::Serving, fault_end).await;
        let readyz_up = readyz(&maru).await;
        tokio::time::sleep(soak(3)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        // What the database calls of the outage were told.
        let during: Vec<_> = result
            .calls
            .iter()
            .filter(|c| c.start >= fault_start && c.start < fault_end && c.op.touches_db())
            .filter_map(|c| c.result.as_ref().err())
            .collect();
        let busy = during.iter().filter(|f| f.message.contains("busy")).count();
        let unavailable_msg = during.iter().filter(|f| f.message.contains("unavailable")).count();

        let mut report = Report::new("postgres_immediate_stop_and_restart");
        report.figure("fault", "PostgreSQL `-m immediate` under load, 4 s down, restarted on the same port and data");
        report.figure(
            "load",
            "6 workers (4 users, 2 also posting without request_id): CreatePost, ListPosts, GetPost, GetTrial, ListTrials, WhoAmI, Login",
        );
        report.figure("failed calls during the outage", result.failures_between(fault_start, fault_end));
        report.figure("stop → health NOT_SERVING", ms(not_serving));
        report.figure("restart → health SERVING", ms(serving));
        report.figure("/readyz during / after", format!("{readyz_down:?} / {readyz_up:?}"));
        report.figure("restart → first successful database call", ms(result.recovery(fault_end)));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(not_serving.is_some(), "health turns NOT_SERVING while PostgreSQL is down");
        report.check(readyz_down == Some(503), format!("/readyz is 503 while PostgreSQL is down: {readyz_down:?}"));
        report.check(serving.is_some(), "health is SERVING again after the restart");
        report.check(readyz_up == Some(200), format!("/readyz is 200 after the restart: {readyz_up:?}"));
        report.check(
            busy == 0 && unavailable_msg == during.len(),
            format!(
                "every failed database call of the outage says \"unavailable\", none \"busy\": {unavailable_msg} of {} ({busy} busy)",
                during.len()
            ),
        );
        report.check(
            writes.committed_despite.is_empty(),
            "no UNAVAILABLE (or other error) answered a write that committed",
        );
        report.check(result.recovery(fault_end).is_some(), "calls succeed after the restart");
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
