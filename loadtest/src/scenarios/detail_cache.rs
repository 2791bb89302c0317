//! `detail-cache`: post detail and profile reads with the server's cache on and off (DOMAIN
//! §6: ~3,000 ms → ~1,000 ms with the cache at 80 users). Seeded residents (shared with
//! `feed`) log in and then alternate `GetPost` of any seeded post and `GetProfile` of a
//! seeded resident, with 1.5–2 s think time by default (`--think-time 0` for none).
//!
//! The cache is the server's switch (`MARU__FEED__CACHE_ENABLED`: post detail, feed pages and
//! profiles); `--cache on|off` says which
//! one the run expects. With `--server-metrics` the run reads the server's cache counters
//! before and after: a cached run must have hits, an uncached one none, so a run against the
//! wrong server configuration fails instead of publishing a mislabelled figure. A full cached
//! run checks each RPC's p99 against 10 ms.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use goose::goose::Scenario;

use super::feed::{Feed, Journey, Transport};
use super::{Entry, LoadScenario, Shape, Think};
use crate::report::{Check, Summary};

pub const ENTRY: Entry = Entry {
    name: "detail-cache",
    about: "GetPost and GetProfile of seeded posts and residents; run against cache on and off (--cache)",
    full: Shape::new(80, 30, Think::ms(1500, 2000)),
    smoke: Shape::new(8, 4, Think::NONE),
    build: |ctx| {
        Box::new(DetailCache {
            feed: Arc::new(Feed::new(ctx, Transport::Grpc, Journey::Detail)),
            hits_before: OnceLock::new(),
        })
    },
};

/// Default p99 goal of a full cached run per RPC, in milliseconds.
const P99_GOAL_MS: f64 = 10.0;
/// The caches behind GetPost and GetProfile (`maru_cache_requests_total{cache}`).
const CACHES: &[&str] = &["feed_post", "profile"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CacheMode {
    On,
    Off,
}

struct DetailCache {
    feed: Arc<Feed>,
    hits_before: OnceLock<f64>,
}

impl DetailCache {
    async fn hits(&self) -> anyhow::Result<Option<f64>> {
        let Some(m) = &self.feed.ctx.server_metrics else { return Ok(None) };
        let mut total = 0.0;
        for cache in CACHES {
            total += m.sum("maru_cache_requests_total", &[("cache", cache), ("result", "hit")]).await?;
        }
        Ok(Some(total))
    }
}

#[async_trait]
impl LoadScenario for DetailCache {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let scenarios = self.feed.prepare_journey().await?;
        if let Some(h) = self.hits().await? {
            let _ = self.hits_before.set(h);
        }
        Ok(scenarios)
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.feed.ctx;
        let mut checks = self.feed.verify_journey(s).await?;
        let mode = ctx.options.cache;
        match (self.hits().await?, self.hits_before.get()) {
            (Some(after), Some(before)) => {
                let hits = after - before;
                let (pass, want) = match mode {
                    CacheMode::On => (hits > 0.0, "hits"),
                    CacheMode::Off => (hits == 0.0, "no hits"),
                };
                checks.push(Check::new(
                    format!("the server's cache is {} ({want})", if mode == CacheMode::On { "on" } else { "off" }),
                    pass,
                    format!("{hits} cache hits ({}) during the run", CACHES.join(", ")),
                ));
            }
            _ => checks.push(Check::new(
                "cache mode not verified",
                true,
                "no --server-metrics: the run takes --cache on trust",
            )),
        }
        if !ctx.smoke && mode == CacheMode::On {
            let goal = ctx.options.p99_ms.unwrap_or(P99_GOAL_MS);
            for rpc in ["GRPC GetPost", "GRPC GetProfile"] {
                checks.push(Check::p99(s, rpc, goal));
            }
        }
        Ok(checks)
    }
}
