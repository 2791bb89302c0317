//! Redis `kill -9` under load, then Redis started again on the same port (empty). Redis is
//! optional: maru bypasses the cache while it is down and picks it up again.

use std::time::{Duration, Instant};

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::Maru;
use crate::harness::process::RssSampler;
use crate::harness::report::{Report, ms};
use crate::harness::{Env, scenario, soak};

/// `maru_redis_up` as the admin port reports it.
async fn redis_up(maru: &Maru) -> Option<bool> {
    let text = maru.metrics().await.ok()?;
    let line = text.lines().find(|l| l.starts_with("maru_redis_up "))?;
    Some(line.trim_end().ends_with(" 1"))
}

#[test]
fn redis_kill_9_and_restart() {
    scenario(|| async {
        let mut env = Env::start().await;
        let cfg = env.maru("maru-1").load_limits();
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "redis.user", 4).await;
        let rss = RssSampler::start(maru.pid);
        let load = Load::start(LoadSpec::default(), vec![maru.grpc], users);

        tokio::time::sleep(soak(3)).await;
        let fault_start = Instant::now();
        env.redis.kill9();
        tokio::time::sleep(soak(4)).await;
        env.redis.restart().await;
        let fault_end = Instant::now();

        // Recovery: maru sees Redis again (its probe) — bounded only as a hang guard.
        let mut back = None;
        while fault_end.elapsed() < Duration::from_secs(30) {
            if redis_up(&maru).await == Some(true) {
                back = Some(fault_end.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(soak(3)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let mut report = Report::new("redis_kill_9_and_restart");
        report.figure("fault", "redis-server SIGKILL under load, 4 s down, restarted empty on the same port");
        report.figure(
            "load",
            "6 workers (4 users): CreatePost with request_id, ListPosts, GetPost, GetTrial, ListTrials, WhoAmI, Login",
        );
        report.figure("failed calls during the outage", result.failures_between(fault_start, fault_end));
        report.figure("recovery: restart → maru_redis_up 1", ms(back));
        report.figure("recovery: restart → first successful database call", ms(result.recovery(fault_end)));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(back.is_some(), "maru uses Redis again after the restart (maru_redis_up 1)");
        report.check(result.recovery(fault_end).is_some(), "calls succeed after the fault");
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
