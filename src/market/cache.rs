//! Caching of ranked recommendation lists in Redis, on the shared versioned cache
//! ([`crate::cache::Cache`]; docs/market.md#caching).
//!
//! Ranking is the market's most expensive read (one statement over a few thousand index entries);
//! its result changes slowly, so the ranked list (ids and reasons, not the products) is kept:
//! - for the caller, under `market:rec:<user>:<hash of the co-like seeds and the tag profile>` in
//!   the scope `market:user:<user>`, which the caller's likes and unlikes bump: a list is reused only
//!   while the caller's latest likes and tag profile are those it was ranked from;
//! - similar to a product, under `market:similar:<id>` in the scope `market:product:<id>`, which
//!   the product's edits, status changes and deletion bump.
//!
//! What a cached list cannot know is decided when it is read (`ops::recommend_products`): products
//! viewed since, no longer on sale, liked since, or the reader's own are dropped, and the newest
//! products on sale fill what is missing. Other people's likes and edits of other products reach a
//! cached list within `market.recommendation_cache_ttl_s`. When Redis is unavailable every list
//! is ranked in PostgreSQL.

use std::future::Future;
use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::Ranked;
use crate::error::AppResult;
use crate::state::AppState;

/// The `cache` label of these lists.
pub const CACHE: &str = "recommendations";

fn user_scope(user: Uuid) -> String {
    format!("market:user:{user}")
}

fn product_scope(id: Uuid) -> String {
    format!("market:product:{id}")
}

fn ttl(state: &AppState) -> Duration {
    Duration::from_secs(state.settings.market.recommendation_cache_ttl_s)
}

/// The caller's ranked list for these seeds and this tag profile, through the cache.
pub async fn for_caller<F, Fut>(
    state: &AppState,
    user: Uuid,
    seeds: &[Uuid],
    profile: (&[String], &[i32]),
    load: F,
) -> AppResult<Vec<Ranked>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = AppResult<Vec<Ranked>>>,
{
    if !state.settings.market.cache_enabled {
        return load().await;
    }
    let mut h = Sha256::new();
    for s in seeds {
        h.update(s.as_bytes());
    }
    let (tags, weights) = profile;
    for (t, w) in tags.iter().zip(weights) {
        h.update((t.len() as u64).to_be_bytes());
        h.update(t.as_bytes());
        h.update(w.to_be_bytes());
    }
    let base = format!("market:rec:{user}:{}", hex::encode(&h.finalize()[..16]));
    state.cache.get_or_load_scoped(CACHE, &[user_scope(user)], &base, ttl(state), load).await
}

/// The ranked list of products similar to `product`, through the cache.
pub async fn similar<F, Fut>(state: &AppState, product: Uuid, load: F) -> AppResult<Vec<Ranked>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = AppResult<Vec<Ranked>>>,
{
    if !state.settings.market.cache_enabled {
        return load().await;
    }
    let base = format!("market:similar:{product}");
    state.cache.get_or_load_scoped(CACHE, &[product_scope(product)], &base, ttl(state), load).await
}

/// After `user` liked or unliked a product: their next list is ranked again.
pub async fn user_changed(state: &AppState, user: Uuid) {
    if state.settings.market.cache_enabled {
        state.cache.invalidate(&[user_scope(user)]).await;
    }
}

/// After product `id` was edited, changed status or was deleted: its similar list is ranked again.
pub async fn product_changed(state: &AppState, id: Uuid) {
    if state.settings.market.cache_enabled {
        state.cache.invalidate(&[product_scope(id)]).await;
    }
}
