//! maru's PostgreSQL backends terminated (`pg_terminate_backend`, as an operator or a failover
//! does) three times under the mixed load. A lost connection is UNAVAILABLE
//! `DATABASE_UNAVAILABLE` with RetryInfo — never INTERNAL — and the pool replaces it; every
//! acknowledged write is there once.

use std::time::{Duration, Instant};

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::Maru;
use crate::harness::process::RssSampler;
use crate::harness::report::{Report, ms};
use crate::harness::{Env, scenario, soak};

#[test]
fn backends_terminated_under_load() {
    scenario(|| async {
        let env = Env::start().await;
        let cfg = env.maru("maru-1").load_limits();
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "term.user", 4).await;
        let rss = RssSampler::start(maru.pid);
        let load = Load::start(LoadSpec::default(), vec![maru.grpc], users);

        tokio::time::sleep(soak(2)).await;
        let mut admin = env.pg.connect("postgres").await;
        let fault_start = Instant::now();
        let mut terminated = 0i64;
        for _ in 0..3 {
            let n: i64 = sqlx::query_scalar(
                "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
                  where application_name = 'maru' and pid <> pg_backend_pid()) t",
            )
            .fetch_one(&mut admin)
            .await
            .expect("terminate maru's backends");
            terminated += n;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let fault_end = Instant::now();
        tokio::time::sleep(soak(3)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let mut report = Report::new("backends_terminated_under_load");
        report.figure("fault", "pg_terminate_backend on every maru backend, 3 times 1 s apart, under load");
        report.figure("backends terminated", terminated);
        report.figure(
            "load",
            "6 workers (4 users): CreatePost with request_id, ListPosts, GetPost, GetTrial, ListTrials, WhoAmI, Login",
        );
        report.figure("failed calls while terminating", result.failures_between(fault_start, fault_end));
        report.figure("last termination → first successful database call", ms(result.recovery(fault_end)));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(terminated > 0, format!("backends were terminated: {terminated}"));
        report.check(
            writes.committed_despite.is_empty(),
            "no UNAVAILABLE (or other error) answered a write that committed",
        );
        report.check(result.recovery(fault_end).is_some(), "calls succeed after the terminations");
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
