//! ListPosts on a community feed of 10,000 posts at 100 concurrent callers, cache on vs off,
//! in the same run: two in-process servers on loopback ports over the same database, one with
//! `feed.cache_enabled = false`. Each caller is a distinct member paging the first three pages
//! (20 posts each) as the apartment feed journey does; between the two measurements nothing
//! changes. Bounded in time; loopback only.
//!
//! ```sh
//! cargo run --release --example feed_bench              # 10,000 posts, 100 callers, 10 s each
//! cargo run --release --example feed_bench -- 10000 100 10
//! ```
//! Database: `MARU_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/maru_feed_bench`;
//! created and migrated if missing, refilled each run, never the application's database).
//! Redis: the default `redis.url` with a private key prefix.

use std::time::{Duration, Instant};

use maru::app::Application;
use maru::config::Settings;
use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let posts: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let callers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10).min(120);
    let url = std::env::var("MARU_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/maru_feed_bench".into());
    let mut base = Settings::default();
    base.database.url = SecretString::from(url);
    base.database.max_connections = 20;
    base.auth.jwt_key = Some(SecretString::from("bench-key-bench-key-bench-key-bench-key"));
    base.grpc.listen = "127.0.0.1:0".into();
    base.admin.listen = "127.0.0.1:0".into();
    base.log.access_log = false;
    base.rate_limit.enabled = false;
    base.redis.key_prefix = format!("maru-feed-bench:{}:", Uuid::new_v4().simple());
    maru::db::create_if_missing(&base.database).await?;
    let pool = maru::db::lazy_pool(&base.database)?;
    maru::db::migrate(&pool).await?;
    let (community, members) = fill(&pool, posts, callers).await?;

    let mut off = base.clone();
    off.feed.cache_enabled = false;
    let mut rows = Vec::new();
    for (label, settings) in [("cache on", base.clone()), ("cache off", off)] {
        let app = Application::build_with_pool(settings, pool.clone(), false).await?;
        let addr = app.grpc_addr();
        let state = app.state();
        let stop = app.shutdown_handle();
        let task = tokio::spawn(app.run_until_stopped());
        let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
        for _ in 0..100 {
            if state.cache.is_up() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Each caller gets a live session: the auth layer refuses tokens of unknown sessions.
        let mut tokens = Vec::new();
        for m in &members {
            let sid = Uuid::now_v7();
            sqlx::query("insert into sessions (id, user_id) values ($1, $2)").bind(sid).bind(m).execute(&pool).await?;
            tokens.push(state.tokens.issue(*m, sid, maru::caller::Role::User, chrono::Utc::now())?.0);
        }
        // Warm-up (fills the cache for the first run; the same work for the second).
        run(&channel, &community, &tokens, Duration::from_secs(1)).await;
        let (lat, errors, elapsed) = run(&channel, &community, &tokens, Duration::from_secs(secs)).await;
        rows.push((label, lat, errors, elapsed));
        stop.shutdown();
        let _ = task.await;
    }
    println!("\n## ListPosts{{community_id}}: {posts} posts, {callers} concurrent callers, {secs} s each");
    println!("| cache | requests | req/s | p50 | p99 | max | errors |");
    println!("|---|---|---|---|---|---|---|");
    for (label, mut l, errors, elapsed) in rows {
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default().as_secs_f64()
                * 1e3
        };
        println!(
            "| {label} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {errors} |",
            l.len(),
            l.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}

/// One community with `posts` posts by its `callers` members (their ids returned).
async fn fill(pool: &PgPool, posts: i64, callers: usize) -> anyhow::Result<(String, Vec<Uuid>)> {
    sqlx::query("delete from posts").execute(pool).await?;
    sqlx::query("delete from community_memberships").execute(pool).await?;
    sqlx::query("delete from communities").execute(pool).await?;
    sqlx::query("delete from users where handle like 'bench%'").execute(pool).await?;
    let community = Uuid::now_v7();
    sqlx::query("insert into communities (id, kind, name, address) values ($1, 'APARTMENT', '벤치 단지', '경기도')")
        .bind(community)
        .execute(pool)
        .await?;
    let mut members = Vec::new();
    for i in 0..callers {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name) values ($1, $2, $3, 'x', '주민')",
        )
        .bind(id)
        .bind(format!("bench{i}"))
        .bind(format!("bench{i}@example.com"))
        .execute(pool)
        .await?;
        sqlx::query(
            "insert into community_memberships (id, community_id, user_id, status, role)
             values ($1, $2, $3, 'APPROVED', 'MEMBER')",
        )
        .bind(Uuid::now_v7())
        .bind(community)
        .bind(id)
        .execute(pool)
        .await?;
        members.push(id);
    }
    sqlx::query(
        "insert into posts (id, author_id, community_id, text, tags, created_at)
         select gen_random_uuid(), ($3::uuid[])[1 + (g % array_length($3::uuid[], 1))], $1,
                '판교 소식 ' || g || ' — 오늘 단지 주차장 공사 안내와 분리수거 요일 변경',
                array['공지', 't' || (g % 50)], now() - g * interval '1 minute'
           from generate_series(1, $2) g",
    )
    .bind(community)
    .bind(posts)
    .bind(&members)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into post_likes (post_id, user_id)
         select p.id, m from (select id from posts order by created_at desc limit 200) p, unnest($1::uuid[]) m",
    )
    .bind(&members[..members.len().min(20)])
    .execute(pool)
    .await?;
    sqlx::query("analyze").execute(pool).await?;
    Ok((community.to_string(), members))
}

/// `tokens.len()` callers in a closed loop for `dur`, each paging through the first three pages.
async fn run(channel: &Channel, community: &str, tokens: &[String], dur: Duration) -> (Vec<Duration>, usize, Duration) {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for token in tokens {
        let mut client = FeedServiceClient::new(channel.clone());
        let (token, community) = (token.clone(), community.to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            let mut page_token = String::new();
            let mut page = 0;
            while Instant::now() < deadline {
                let mut req = tonic::Request::new(pb::ListPostsRequest {
                    community_id: community.clone(),
                    page_size: 20,
                    page_token: page_token.clone(),
                    ..Default::default()
                });
                req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
                let t = Instant::now();
                match client.list_posts(req).await {
                    Ok(r) => {
                        lat.push(t.elapsed());
                        page += 1;
                        page_token = if page % 3 == 0 { String::new() } else { r.into_inner().next_page_token };
                    }
                    Err(_) => {
                        errors += 1;
                        page_token.clear();
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    (all, errors, start.elapsed())
}
