//! ProductService latency on a catalogue of 100,000 products and ~1,000,000 likes (issue 16):
//! RecommendProducts (for a caller; similar to a product), ListProducts with a text query
//! (bigram search) and the infinite scroll (3 pages), each called `calls` times in sequence by
//! one client over loopback gRPC, reporting p50/p95/max. Figures go to docs/market.md.
//!
//! ```sh
//! cargo run --example market_bench                      # 100,000 products, 10,000 users, 300 calls
//! cargo run --example market_bench -- 100000 10000 300
//! ```
//! The catalogue: users in 100 interest groups; each user likes 100 products (80 of their
//! group's, 20 anywhere, picked by a hash of user and rank), so co-likes have structure as in a real market; each product has a
//! group tag and one of 7 shared tags; names from 10 Korean words. Filled once (kept while the
//! counts match), then `analyze`d.
//! Database: `MARU_BENCH_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/maru_market_bench`;
//! created and migrated if missing, never the application's database). Redis: the default
//! `redis.url` with a private key prefix.

use std::time::{Duration, Instant};

use maru::app::Application;
use maru::config::Settings;
use maru::grpc::pb;
use maru::grpc::pb::product_service_client::ProductServiceClient;
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let products: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let users: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let calls: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let url = std::env::var("MARU_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/maru_market_bench".into());
    let mut s = Settings::default();
    s.database.url = SecretString::from(url);
    s.database.max_connections = 10;
    s.auth.jwt_key = Some(SecretString::from("bench-key-bench-key-bench-key-bench-key"));
    s.grpc.listen = "127.0.0.1:0".into();
    s.admin.listen = "127.0.0.1:0".into();
    s.log.access_log = false;
    s.rate_limit.enabled = false;
    s.redis.key_prefix = format!("maru-market-bench:{}:", Uuid::new_v4().simple());
    maru::db::create_if_missing(&s.database).await?;
    let pool = maru::db::lazy_pool(&s.database)?;
    maru::db::migrate(&pool).await?;
    let t = Instant::now();
    let likes = fill(&pool, products, users).await?;
    println!(
        "catalogue: {products} products, {users} users, {likes} likes (ready in {:.1} s)",
        t.elapsed().as_secs_f64()
    );

    let app = Application::build_with_pool(s, pool.clone(), false).await?;
    let addr = app.grpc_addr();
    let state = app.state();
    let stop = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut client = ProductServiceClient::new(channel);
    // Callers: spread over the groups, each with a live session.
    let user_ids: Vec<Uuid> =
        sqlx::query_scalar("select md5('u' || g)::uuid from generate_series(0, $1 - 1) g order by g")
            .bind(users)
            .fetch_all(&pool)
            .await?;
    let product_ids: Vec<Uuid> =
        sqlx::query_scalar("select md5('p' || g)::uuid from generate_series(0, $1 - 1) g order by g")
            .bind(products)
            .fetch_all(&pool)
            .await?;
    let mut tokens = Vec::new();
    for i in 0..calls as i64 {
        let u = user_ids[(i * 7919 % users) as usize];
        let sid = Uuid::now_v7();
        sqlx::query("insert into sessions (id, user_id) values ($1, $2)").bind(sid).bind(u).execute(&pool).await?;
        tokens.push(state.tokens.issue(u, sid, maru::caller::Role::User, chrono::Utc::now())?.0);
    }
    let auth = |i: usize, msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert("authorization", format!("Bearer {}", tokens[i]).parse().expect("header"));
        r
    };
    let mut rows = Vec::new();

    let mut lat = Vec::new();
    let mut sources = std::collections::BTreeMap::<i32, usize>::new();
    for i in 0..calls {
        let t = Instant::now();
        let r = client
            .recommend_products(auth(i, pb::RecommendProductsRequest { product_id: String::new(), page_size: 10 }))
            .await?;
        lat.push(t.elapsed());
        for rec in r.into_inner().recommendations {
            *sources.entry(rec.source).or_default() += 1;
        }
    }
    rows.push(("RecommendProducts (for the caller)", lat));
    println!("sources of the caller recommendations (enum value → results): {sources:?}");

    let mut lat = Vec::new();
    for i in 0..calls {
        let id = product_ids[(i as i64 * 104_729 % products) as usize].to_string();
        let t = Instant::now();
        client.recommend_products(pb::RecommendProductsRequest { product_id: id, page_size: 10 }).await?;
        lat.push(t.elapsed());
    }
    rows.push(("RecommendProducts (similar to a product)", lat));

    for (label, queries) in [
        ("ListProducts search, common word (10% match)", vec!["캠핑", "키보드", "노트북", "운동화"]),
        ("ListProducts search, rare (one product)", vec!["텐트 4242", "책상 777", "가방 31415", "의자 2718"]),
    ] {
        let mut lat = Vec::new();
        for i in 0..calls {
            let t = Instant::now();
            client
                .list_products(pb::ListProductsRequest {
                    query: queries[i % queries.len()].into(),
                    page_size: 20,
                    ..Default::default()
                })
                .await?;
            lat.push(t.elapsed());
        }
        rows.push((label, lat));
    }

    let mut lat = Vec::new();
    for _ in 0..calls / 3 {
        let mut token = String::new();
        for _ in 0..3 {
            let t = Instant::now();
            let r = client
                .list_products(pb::ListProductsRequest {
                    page_size: 20,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await?;
            lat.push(t.elapsed());
            token = r.into_inner().next_page_token;
        }
    }
    rows.push(("ListProducts scroll (3 pages of 20, per page)", lat));

    let mut lat = Vec::new();
    for i in 0..calls {
        let tag = format!("g{}", i % 100);
        let t = Instant::now();
        client.list_products(pb::ListProductsRequest { tag, page_size: 20, ..Default::default() }).await?;
        lat.push(t.elapsed());
    }
    rows.push(("ListProducts tag filter", lat));

    println!("\n| call | calls | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for (label, mut l) in rows {
        l.sort();
        let pct = |p: f64| {
            let i = ((l.len() as f64 * p).ceil() as usize).saturating_sub(1);
            l.get(i).copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1e3
        };
        println!("| {label} | {} | {:.1} ms | {:.1} ms | {:.1} ms |", l.len(), pct(0.5), pct(0.95), pct(1.0));
    }
    stop.shutdown();
    let _ = task.await;
    Ok(())
}

/// Fills the catalogue unless it is already there; the number of likes.
async fn fill(pool: &PgPool, products: i64, users: i64) -> anyhow::Result<i64> {
    let (p, u): (i64, i64) =
        sqlx::query_as("select (select count(*) from products), (select count(*) from users where handle like 'mc%')")
            .fetch_one(pool)
            .await?;
    if p != products || u != users {
        sqlx::query("delete from products").execute(pool).await?;
        sqlx::query("delete from users where handle ~ '^m[bc][0-9]'").execute(pool).await?;
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name)
             select md5('u' || g)::uuid, 'mc' || g, 'mc' || g || '@example.com', 'x', '판매자 ' || g
               from generate_series(0, $1 - 1) g",
        )
        .bind(users)
        .execute(pool)
        .await?;
        sqlx::query(
            "insert into products (id, seller_id, name, description, price, tags, created_at)
             select md5('p' || g)::uuid, md5('u' || (g * 31 % $2))::uuid,
                    (array['자전거','키보드','캠핑','의자','노트북','텐트','모니터','책상','운동화','가방'])[g % 10 + 1] || ' ' || g,
                    '상태 좋은 중고 물품입니다 #' || g,
                    1000 * (g % 500), array['g' || (g % 100), 's' || (g % 7)],
                    now() - g * interval '1 second'
               from generate_series(0, $1 - 1) g",
        )
        .bind(products)
        .bind(users)
        .execute(pool)
        .await?;
        // User u (group u % 100) likes 80 products of their group and 20 anywhere.
        sqlx::query(
            "insert into product_likes (product_id, user_id, created_at)
             select md5('p' || (case when k < 80
                                      then (u % 100) + 100 * (abs(hashtext(u || ':' || k)) % ($1 / 100))
                                      else abs(hashtext(k || ':' || u)) % $1 end))::uuid,
                    md5('u' || u)::uuid, now() - k * interval '1 minute'
               from generate_series(0, $2 - 1) u, generate_series(0, 99) k
             on conflict do nothing",
        )
        .bind(products)
        .bind(users)
        .execute(pool)
        .await?;
    }
    // As autovacuum would have by now: visibility map (index-only scans) and statistics.
    sqlx::query("vacuum analyze products").execute(pool).await?;
    sqlx::query("vacuum analyze product_likes").execute(pool).await?;
    sqlx::query("vacuum analyze users").execute(pool).await?;
    Ok(sqlx::query_scalar("select count(*) from product_likes").fetch_one(pool).await?)
}
