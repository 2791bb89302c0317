//! maru's connection pool exhausted by another client: a noisy neighbour keeps far more calls in
//! flight than the pool has connections (each holding one while it runs), next to the mixed load
//! whose workers also post without a `request_id` and retry on UNAVAILABLE (the clients of issue
//! 14, point 6). Calls that get no connection are UNAVAILABLE `DATABASE_UNAVAILABLE` with
//! RetryInfo; none of those answers belongs to a write that committed (a create reads its answer
//! inside its transaction), so even the naive clients make no duplicates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;

use crate::harness::load::{Load, LoadSpec, accounts, authed};
use crate::harness::maru::{Maru, endpoint};
use crate::harness::process::RssSampler;
use crate::harness::report::{Report, ms};
use crate::harness::{Env, scenario, soak};

/// Pool size of maru in this scenario, and the neighbour's calls in flight.
const POOL: u32 = 3;
const NEIGHBOUR_CALLS: usize = 24;

#[test]
fn pool_exhausted_by_another_client() {
    scenario(|| async {
        let env = Env::start().await;
        let cfg = env
            .maru("maru-1")
            .load_limits()
            .set("MARU__RATE_LIMIT__ENABLED", false)
            .set("MARU__DATABASE__MAX_CONNECTIONS", POOL)
            .set("MARU__DATABASE__ACQUIRE_TIMEOUT_MS", 100);
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "pool.user", 4).await;
        let neighbour = accounts(&maru.channel(), "pool.neighbour", 1).await.remove(0);
        let rss = RssSampler::start(maru.pid);
        let spec = LoadSpec { naive_workers: 3, ..LoadSpec::default() };
        let load = Load::start(spec, vec![maru.grpc], users);

        tokio::time::sleep(soak(2)).await;
        // The neighbour: NEIGHBOUR_CALLS calls in flight at all times, each a write and a page.
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let fault_start = Instant::now();
        let tasks: Vec<_> = (0..NEIGHBOUR_CALLS)
            .map(|i| {
                let (stop, sent, token) = (stop.clone(), sent.clone(), neighbour.token.clone());
                let channel = endpoint(maru.grpc).connect_lazy();
                tokio::spawn(async move {
                    let mut feed = FeedServiceClient::new(channel);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        n += 1;
                        let text = format!("neighbour {i}-{n}");
                        let req = pb::CreatePostRequest { public: true, text, ..Default::default() };
                        let _ = feed.create_post(authed(req, &token)).await;
                        let req = pb::ListHomeFeedRequest { page_size: 50, ..Default::default() };
                        let _ = feed.list_home_feed(authed(req, &token)).await;
                        sent.fetch_add(2, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(soak(5)).await;
        stop.store(true, Ordering::Release);
        for t in tasks {
            let _ = t.await;
        }
        let fault_end = Instant::now();
        tokio::time::sleep(soak(2)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let unavailable =
            result.calls.iter().filter(|c| matches!(&c.result, Err(f) if f.code == tonic::Code::Unavailable)).count();
        let mut report = Report::new("pool_exhausted_by_another_client");
        report.figure(
            "fault",
            format!("pool of {POOL} connections, acquire timeout 100 ms; another client keeps {NEIGHBOUR_CALLS} calls in flight for 5 s"),
        );
        report.figure("neighbour calls", sent.load(Ordering::Relaxed));
        report.figure(
            "load",
            "6 workers (4 users, 3 also posting without request_id and retrying on UNAVAILABLE): CreatePost, ListPosts, GetPost, GetTrial, ListTrials, WhoAmI, Login",
        );
        report.figure("load calls answered UNAVAILABLE", unavailable);
        report.figure("failed load calls during the flood", result.failures_between(fault_start, fault_end));
        report.figure("flood end → first successful database call", ms(result.recovery(fault_end)));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(
            writes.committed_despite.is_empty() && writes.unacked_committed == 0,
            format!(
                "no error answered a write that committed: {:?} seen on retries, {} given up but committed",
                writes.committed_despite, writes.unacked_committed
            ),
        );
        report.check(result.recovery(fault_end).is_some(), "calls succeed after the flood");
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
