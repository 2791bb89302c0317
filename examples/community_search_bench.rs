//! SearchCommunities at scale: fills a separate database with synthetic apartment complexes
//! (names and addresses derived from the Gyeonggi registry fixture), then measures the search
//! use case (page of 20 + total count, as the RPC runs it) with and without the search indexes
//! (trigram GIN for 3+ characters, bigram GIN for 2) in the same run, and prints
//! `EXPLAIN (ANALYZE, BUFFERS)` of both.
//!
//! ```sh
//! cargo run --release --example community_search_bench            # 500,000 complexes
//! cargo run --release --example community_search_bench -- 100000 # fewer
//! ```
//! Database: `MARU_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/maru_search_bench`; created and migrated if missing,
//! never the application's database). The search indexes are recreated at the end.

use std::time::{Duration, Instant};

use maru::communities::model::SearchQuery;
use maru::communities::ops::search_communities;
use maru::communities::synthetic::{self, QUERIES};
use maru::config::Settings;
use maru::state::AppState;
use secrecy::SecretString;
use sqlx::PgPool;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apartments-gyeonggi.json");
const ROUNDS: usize = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rows: i64 = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(500_000);
    let url = std::env::var("MARU_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/maru_search_bench".into());
    let mut settings = Settings::default();
    settings.database.url = SecretString::from(url);
    settings.database.max_connections = 4;
    settings.auth.jwt_key = Some(SecretString::from("bench-key-bench-key-bench-key-bench-key"));
    maru::db::create_if_missing(&settings.database).await?;
    let pool = maru::db::lazy_pool(&settings.database)?;
    maru::db::migrate(&pool).await?;
    fill(&pool, rows).await?;
    let state = AppState::new(settings, pool.clone())?;

    println!("\n## With the search indexes (trigram GIN for 3+ characters, bigram GIN for 2)");
    let with = measure(&state).await?;
    explain(&pool).await?;

    synthetic::drop_search_indexes(&mut *pool.acquire().await?).await?;
    println!("\n## Without them (sequential scans)");
    let without = measure(&state).await?;
    explain(&pool).await?;
    recreate_indexes(&pool).await?;

    println!("\n## Summary ({rows} complexes, {} queries × {ROUNDS} rounds)", QUERIES.len());
    println!("| indexes | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (label, l) in [("trigram + bigram GIN", &with), ("none (seq scan)", &without)] {
        println!("| {label} | {:.2} ms | {:.2} ms | {:.2} ms |", pct(l, 0.50), pct(l, 0.99), pct(l, 1.0));
    }
    Ok(())
}

/// Makes the table hold exactly `rows` synthetic complexes (kept between runs).
async fn fill(pool: &PgPool, rows: i64) -> anyhow::Result<()> {
    let (have,): (i64,) = sqlx::query_as("select count(*) from communities").fetch_one(pool).await?;
    if have == rows {
        println!("{rows} complexes already in place");
        return Ok(());
    }
    let templates = synthetic::Templates::from_json(&std::fs::read_to_string(FIXTURE)?)?;
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query("truncate communities cascade").execute(&mut *tx).await?;
    synthetic::drop_search_indexes(&mut tx).await?;
    synthetic::insert(&mut tx, &templates, "B", 0, rows).await?;
    tx.commit().await?;
    println!("inserted {rows} complexes in {:.1} s", started.elapsed().as_secs_f64());
    recreate_indexes(pool).await
}

async fn recreate_indexes(pool: &PgPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut db = pool.acquire().await?;
    synthetic::drop_search_indexes(&mut db).await?;
    synthetic::create_search_indexes(&mut db).await?;
    println!("search indexes built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Latencies of the search use case (first page + total) over every query and round.
async fn measure(state: &AppState) -> anyhow::Result<Vec<Duration>> {
    let run = |q: &str| {
        let q = SearchQuery { text: q.to_owned(), kind: None };
        async move { search_communities(state, q, 20, "").await }
    };
    for q in QUERIES {
        run(q).await.map_err(|e| anyhow::anyhow!("{e}"))?; // warm-up
    }
    let mut all = Vec::new();
    println!("| query | total | p50 | max |");
    println!("|---|---|---|---|");
    for q in QUERIES {
        let mut l = Vec::new();
        let mut total = String::new();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let (_, n, _) = run(q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            l.push(t.elapsed());
            total = if n.lower_bound { format!("{}+", n.total) } else { n.total.to_string() };
        }
        l.sort();
        println!("| {q} | {total} | {:.2} ms | {:.2} ms |", pct(&l, 0.5), pct(&l, 1.0));
        all.extend(l);
    }
    all.sort();
    Ok(all)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1);
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
}

async fn explain(pool: &PgPool) -> anyhow::Result<()> {
    use maru::communities::store::{contains_pattern, is_two_chars, search_predicate};
    for text in ["래미안", "현대"] {
        let q = SearchQuery { text: text.into(), kind: None };
        let pred = search_predicate(&q, 2);
        for (label, sql) in [
            (
                "page",
                format!(
                    "explain (analyze, buffers) select c.id, c.name from communities c where {pred} order by c.name, c.id limit 21"
                ),
            ),
            ("count", format!("explain (analyze, buffers) select count(*) from communities c where {pred}")),
        ] {
            let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).bind(contains_pattern(text));
            if is_two_chars(&q) {
                query = query.bind(text);
            }
            let plan = query.fetch_all(pool).await?;
            println!("\nEXPLAIN ANALYZE ({label}, query '{text}'):\n```");
            for (line,) in plan {
                println!("{line}");
            }
            println!("```");
        }
    }
    Ok(())
}
