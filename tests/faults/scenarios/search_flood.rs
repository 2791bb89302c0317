//! Issue 14 point 3: anonymous clients flood post search while signed-in users run the mixed
//! load. The corpus is the hostile case of the bigram index: every post has the pairs 가나 and
//! 나다 but not the word 가나다, so each search rechecks every post. Some flooders give up
//! after 150 ms (their RPCs are abandoned mid-statement). Before the fix ten such callers held
//! the whole pool and others got UNAVAILABLE for ~35 s, and abandoned queries ran on in
//! PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::Maru;
use crate::harness::process::RssSampler;
use crate::harness::report::{Report, fmt_counts};
use crate::harness::status::Failure;
use crate::harness::{Env, scenario, soak};

const POSTS: i64 = 30_000;
const FLOODERS: usize = 20;

#[test]
fn search_flood() {
    scenario(|| async {
        let env = Env::start().await;
        // The flood stays within generous read limits: it is the pool it must not take.
        let cfg = env
            .maru("maru-1")
            .load_limits()
            .set("MARU__RATE_LIMIT__BUCKETS__READ__PER_MINUTE", 600_000)
            .set("MARU__RATE_LIMIT__BUCKETS__READ__BURST", 10_000);
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "search.user", 4).await;
        let mut db = env.db().await;
        let started = Instant::now();
        sqlx::query(
            "insert into posts (id, author_id, text, created_at)
             select gen_random_uuid(), (select id from users order by handle limit 1),
                    '가나 나다 ' || (select string_agg(chr((44032 + ((g * 7 + s * 13) % 2000))::int), '')
                                      from generate_series(1, 60) s),
                    now() - g * interval '1 second'
               from generate_series(1, $1) g",
        )
        .bind(POSTS)
        .execute(&mut db)
        .await
        .expect("corpus");
        sqlx::query("analyze posts").execute(&mut db).await.expect("analyze");
        let corpus_s = started.elapsed().as_secs();

        let rss = RssSampler::start(maru.pid);
        let load = Load::start(LoadSpec::default(), vec![maru.grpc], users);
        tokio::time::sleep(soak(2)).await;
        let fault_start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let flood: Vec<_> = (0..FLOODERS)
            .map(|i| {
                let (channel, stop) = (maru.channel(), stop.clone());
                tokio::spawn(async move {
                    let mut seen = BTreeMap::<String, usize>::new();
                    let mut feed = FeedServiceClient::new(channel);
                    while !stop.load(Ordering::Relaxed) {
                        let msg =
                            pb::ListPostsRequest { query: "가나다".into(), page_size: 100, ..Default::default() };
                        let mut req = tonic::Request::new(msg);
                        if i % 4 == 0 {
                            // Gives up early: the server must not keep the statement running.
                            req.set_timeout(Duration::from_millis(150));
                        }
                        let label = match feed.list_posts(req).await {
                            Ok(_) => "OK".to_owned(),
                            Err(s) => Failure::of(&s).label(),
                        };
                        *seen.entry(label).or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        tokio::time::sleep(soak(6)).await;
        stop.store(true, Ordering::Relaxed);
        let mut searches = BTreeMap::<String, usize>::new();
        for task in flood {
            for (k, v) in task.await.unwrap_or_default() {
                *searches.entry(k).or_default() += v;
            }
        }
        let fault_end = Instant::now();
        // Nothing of the flood keeps running in PostgreSQL once its RPCs are over.
        let mut lingering = i64::MAX;
        for _ in 0..40 {
            let (n,): (i64,) = sqlx::query_as(
                "select count(*) from pg_stat_activity where state = 'active' and query like '%text_bigrams @>%'
                    and pid <> pg_backend_pid()",
            )
            .fetch_one(&mut db)
            .await
            .expect("pg_stat_activity");
            lingering = n;
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(soak(2)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);
        let text = maru.metrics().await.unwrap_or_default();
        let cancelled =
            crate::scenarios::idle_flood::metric(&text, "maru_expensive_reads_cancelled_total").unwrap_or(0.0);

        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let during = result.calls.iter().filter(|c| c.start >= fault_start && c.start < fault_end).count();
        let failed_during = result.failures_between(fault_start, fault_end);
        let allowed = ["OK", "RESOURCE_EXHAUSTED CAPACITY_EXCEEDED +RetryInfo", "DEADLINE_EXCEEDED DEADLINE_EXCEEDED"];
        let unexpected: BTreeMap<&String, &usize> = searches
            .iter()
            .filter(|(k, _)| {
                !allowed.contains(&k.as_str())
                    && !k.starts_with("transport DEADLINE_EXCEEDED")
                    && !k.starts_with("transport CANCELLED")
            })
            .collect();
        let mut report = Report::new("search_flood");
        report.figure(
            "fault",
            format!("{FLOODERS} anonymous clients searching 가나다 over {POSTS} posts that all have 가나 and 나다 ({corpus_s} s to build); a quarter give up after 150 ms"),
        );
        report.figure("searches by outcome", fmt_counts(&searches));
        report.figure("searches abandoned and cancelled in PostgreSQL", cancelled);
        report.figure("flood statements still running after the flood", lingering);
        report.figure("other users' calls during the flood (failed)", format!("{during} ({failed_during})"));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(
            failed_during == 0,
            format!("other users' calls all succeed during the flood: {failed_during} of {during} failed"),
        );
        report.check(
            unexpected.is_empty(),
            format!("the flood gets OK, CAPACITY_EXCEEDED or its deadline only: {unexpected:?}"),
        );
        report.check(lingering == 0, format!("no flood statement keeps running in PostgreSQL: {lingering}"));
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
