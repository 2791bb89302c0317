//! Market use cases. Who may do what (admin = deployment ADMIN):
//!
//! | op | who |
//! |---|---|
//! | create_product | any signed-in user, in their own name |
//! | get_product, list_products, list_user_products | anyone: products on sale or sold out; SUSPENDED ones only their seller and admins |
//! | update_product | the seller only |
//! | delete_product | the seller, an admin |
//! | set_product_status | ON_SALE ⇄ SOLD_OUT: the seller, an admin; to or from SUSPENDED: admins |
//! | like_product, unlike_product | signed-in users who can see the product |
//! | recommend_products | for the caller: signed-in users; similar to a product: anyone who can see it |
//!
//! A product one may not see is NOT_FOUND `PRODUCT_NOT_FOUND` (an id leaks nothing).
//! Decided by the database: one like per user and product (primary key; `on conflict do
//! nothing`), like counts kept by triggers equal to the like rows of live accounts, edits conditional on the etag's version.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use tonic::Code;
use uuid::Uuid;

use super::model::{
    CreateProduct, MAX_RECOMMENDATIONS, Product, ProductFilter, ProductStatus, ProductView, Ranked, Reader,
    Recommendation, UpdateProduct, sees,
};
use super::store::{self, ProductCursor, RankInput};
use crate::caller::Caller;
use crate::db::{ExpensiveRead, ReadKind};
use crate::error::{AppError, AppResult, Reason};
use crate::idempotency::{RequestId, remember, replayed};
use crate::media::attach;
use crate::state::AppState;

/// Recently viewed products remembered per user (Redis list), for recommendations.
const RECENT_VIEWS: isize = 20;
/// The caller's latest likes that make their tag profile …
const SEED_LIKES: i64 = 50;
/// … and the latest of them whose likers' likes are co-like candidates.
const CO_LIKE_SEEDS: usize = 20;
/// Tags of a caller's profile.
const PROFILE_TAGS: i64 = 10;
/// Likers read over all seeds (split evenly, at least [`MIN_LIKERS_PER_SEED`] each) and likes
/// read per liker: at most 200 × 20 like rows per call.
const SEED_LIKERS: i64 = 200;
const MIN_LIKERS_PER_SEED: i64 = 5;
const LIKES_PER_LIKER: i64 = 20;
/// Tag candidates: the newest products on sale sharing a profile tag, among this many.
const RECENT_PRODUCTS: i64 = 2_000;
/// Candidates kept from each source before the final scoring.
const CANDIDATES_PER_SOURCE: i64 = 100;
/// Ranked products a (cached) list keeps: the most a call asks for, plus room for what is
/// dropped when it is read (viewed since, no longer on sale, the reader's own).
const CACHED_RANKED: i64 = MAX_RECOMMENDATIONS + 2 * RECENT_VIEWS as i64;
/// Ranked products read beyond the page size, for what is dropped when a list is read.
const READ_SLACK: i64 = 10;

pub fn product_not_found() -> AppError {
    AppError::not_found(Reason::ProductNotFound, "product")
}

fn owner_required(what: &str) -> AppError {
    AppError::permission_denied(Reason::ProductOwnerRequired, format!("only the seller may {what} this product"))
}

/// Whether `caller` sees product `id`: the market's reader for `crate::media::attach` (a
/// product's image is shown to whoever sees the product).
pub fn sees_product<'a>(state: &'a AppState, caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move {
        match visible_product(state, Some(caller), id).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Code::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// NOT_FOUND `PRODUCT_NOT_FOUND` unless the product exists and `caller` sees it.
pub async fn visible_product(state: &AppState, caller: Option<&Caller>, id: Uuid) -> AppResult<Product> {
    let p = store::get_product(&state.db, id).await?.ok_or_else(product_not_found)?;
    if !sees(Reader::of(caller), &p) {
        return Err(product_not_found());
    }
    Ok(p)
}

async fn with_likes(state: &AppState, caller: Option<&Caller>, rows: Vec<Product>) -> AppResult<Vec<ProductView>> {
    let liked: HashSet<Uuid> = match caller {
        Some(c) if !rows.is_empty() => {
            let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
            store::liked_products(&state.db, c.user_id, &ids).await?.into_iter().collect()
        }
        _ => HashSet::new(),
    };
    Ok(rows.into_iter().map(|p| ProductView { liked_by_me: liked.contains(&p.id), product: p }).collect())
}

async fn one_with_likes(state: &AppState, caller: Option<&Caller>, p: Product) -> AppResult<ProductView> {
    with_likes(state, caller, vec![p]).await?.pop().ok_or_else(product_not_found)
}

#[tracing::instrument(name = "market.create_product", skip_all, err(level = "debug"))]
pub async fn create_product(state: &AppState, caller: &Caller, cmd: CreateProduct) -> AppResult<ProductView> {
    // The answer is read inside the transaction: once it commits nothing can fail.
    let mut tx = crate::db::begin(&state.db).await?;
    let (id, created) =
        match replayed::<Uuid>(state, &mut tx, "CreateProduct", caller, cmd.request_id.as_ref(), &cmd).await? {
            Some(id) => (id, false),
            None => {
                if !store::lock_live_user(&mut tx, caller.user_id).await? {
                    return Err(AppError::unauthenticated(Reason::SessionEnded, "the account was deleted"));
                }
                let id = store::insert_product(&mut tx, &cmd, caller.user_id).await?;
                attach::set(&mut tx, caller.user_id, attach::Kind::Product, id, &cmd.media_ids, "media_id").await?;
                remember(&mut tx, "CreateProduct", caller, cmd.request_id.as_ref(), &id).await?;
                (id, true)
            }
        };
    let product = store::get_product(&mut *tx, id).await?.ok_or_else(product_not_found)?;
    let liked_by_me = !created && !store::liked_products(&mut *tx, caller.user_id, &[id]).await?.is_empty();
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_products_created_total").increment(1);
    }
    Ok(ProductView { product, liked_by_me })
}

#[tracing::instrument(name = "market.get_product", skip_all, err(level = "debug"))]
pub async fn get_product(
    state: &AppState,
    caller: Option<&Caller>,
    id: Uuid,
    client_ip: Option<&str>,
) -> AppResult<ProductView> {
    let p = visible_product(state, caller, id).await?;
    crate::views::record(state, &super::views::TARGET, p.id, caller.map(|c| c.user_id), client_ip).await;
    if let Some(c) = caller {
        remember_view(state, c.user_id, p.id).await;
    }
    one_with_likes(state, caller, p).await
}

fn recent_key(state: &AppState, user: Uuid) -> String {
    state.cache.key(&format!("market:recent:{user}"))
}

/// Remembers that `user` viewed `product` (their last [`RECENT_VIEWS`], for recommendations).
/// Best effort: nothing is remembered while Redis is unavailable.
async fn remember_view(state: &AppState, user: Uuid, product: Uuid) {
    use deadpool_redis::redis;
    let key = recent_key(state, user);
    let id = product.to_string();
    state
        .cache
        .run("view", |mut c| async move {
            redis::pipe()
                .lrem(&key, 0, &id)
                .lpush(&key, &id)
                .ltrim(&key, 0, RECENT_VIEWS - 1)
                .expire(&key, 30 * 86_400)
                .query_async::<()>(&mut c)
                .await
        })
        .await;
}

async fn recent_views(state: &AppState, user: Uuid) -> Vec<Uuid> {
    use deadpool_redis::redis;
    let key = recent_key(state, user);
    let ids: Vec<String> = state
        .cache
        .run("get", |mut c| async move {
            redis::cmd("LRANGE").arg(&key).arg(0).arg(RECENT_VIEWS - 1).query_async::<Vec<String>>(&mut c).await
        })
        .await
        .unwrap_or_default();
    ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect()
}

#[tracing::instrument(name = "market.update_product", skip_all, err(level = "debug"))]
pub async fn update_product(state: &AppState, caller: &Caller, cmd: UpdateProduct) -> AppResult<ProductView> {
    let p = visible_product(state, Some(caller), cmd.product_id).await?;
    if p.seller_id != caller.user_id {
        return Err(owner_required("edit"));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::update_product(&mut *tx, p.id, &cmd.patch, cmd.expected_version).await? {
        let now = store::get_product(&mut *tx, p.id).await?.ok_or_else(product_not_found)?;
        return Err(AppError::refused(Code::Aborted, Reason::EtagMismatch, "the product changed since it was read")
            .with_meta("etag", now.etag()));
    }
    if let Some(ids) = &cmd.patch.media_ids {
        attach::set(&mut tx, caller.user_id, attach::Kind::Product, p.id, ids, "media_id").await?;
    }
    let updated = store::get_product(&mut *tx, p.id).await?.ok_or_else(product_not_found)?;
    let liked_by_me = !store::liked_products(&mut *tx, caller.user_id, &[p.id]).await?.is_empty();
    crate::db::commit(&state.db, tx).await?;
    super::cache::product_changed(state, p.id).await;
    Ok(ProductView { product: updated, liked_by_me })
}

#[tracing::instrument(name = "market.delete_product", skip_all, err(level = "debug"))]
pub async fn delete_product(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let p = visible_product(state, Some(caller), id).await?;
    if p.seller_id != caller.user_id && !caller.is_admin() {
        return Err(owner_required("delete"));
    }
    if !store::delete_product(&state.db, id).await? {
        return Err(product_not_found());
    }
    super::cache::product_changed(state, id).await;
    Ok(())
}

#[tracing::instrument(name = "market.set_product_status", skip_all, err(level = "debug"))]
pub async fn set_product_status(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    status: ProductStatus,
) -> AppResult<ProductView> {
    let p = visible_product(state, Some(caller), id).await?;
    let moderation = status == ProductStatus::Suspended || p.status() == ProductStatus::Suspended;
    if moderation {
        caller.require_admin()?;
    } else if p.seller_id != caller.user_id && !caller.is_admin() {
        return Err(owner_required("change the status of"));
    }
    if !store::set_product_status(&state.db, id, status).await? {
        return Err(product_not_found());
    }
    super::cache::product_changed(state, id).await;
    let p = store::get_product(&state.db, id).await?.ok_or_else(product_not_found)?;
    one_with_likes(state, Some(caller), p).await
}

/// A page of products, newest first, with the filters of `filter`.
#[tracing::instrument(name = "market.list_products", skip_all, err(level = "debug"))]
pub async fn list_products(
    state: &AppState,
    caller: Option<&Caller>,
    filter: ProductFilter,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ProductView>, String)> {
    let query = ("products", &filter);
    let page = state.pager.page::<ProductCursor>(page_size, page_token, &query)?;
    let reader = Reader::of(caller);
    let rows = if filter.query.is_some() {
        // A search: an expensive read (bulkhead, deadline, cancelled when abandoned).
        let mut read = ExpensiveRead::begin(&state.db, &state.expensive_reads, ReadKind::ProductSearch).await?;
        let rows = store::list_products(read.conn(), reader, &filter, page.after, page.fetch_limit()).await;
        read.finish(rows).await?
    } else {
        store::list_products(&state.db, reader, &filter, page.after, page.fetch_limit()).await?
    };
    let (rows, next) = state.pager.finish(&page, rows, &query, |p| (p.created_at, p.id));
    Ok((with_likes(state, caller, rows).await?, next))
}

/// A seller's latest products; NOT_FOUND `USER_NOT_FOUND` for an unknown or deleted handle.
#[tracing::instrument(name = "market.list_user_products", skip_all, err(level = "debug"))]
pub async fn list_user_products(
    state: &AppState,
    caller: Option<&Caller>,
    handle: String,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ProductView>, String)> {
    if store::user_by_handle(&state.db, &handle).await?.is_none() {
        return Err(AppError::not_found(Reason::UserNotFound, "user"));
    }
    let filter = ProductFilter { seller_handle: Some(handle), ..Default::default() };
    list_products(state, caller, filter, page_size, page_token).await
}

/// Likes a product; `(created, like count)`. A retry with the same `request_id` gets the first
/// answer.
#[tracing::instrument(name = "market.like_product", skip_all, err(level = "debug"))]
pub async fn like_product(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    request_id: Option<&RequestId>,
) -> AppResult<(bool, i64)> {
    visible_product(state, Some(caller), id).await?;
    let (created, count) = if request_id.is_some() {
        let mut tx = crate::db::begin(&state.db).await?;
        if let Some(first) = replayed(state, &mut tx, "LikeProduct", caller, request_id, &id).await? {
            return Ok(first);
        }
        let created = store::insert_like(&mut *tx, id, caller.user_id).await?;
        let count = store::count_likes(&mut *tx, id).await?;
        remember(&mut tx, "LikeProduct", caller, request_id, &(created, count)).await?;
        crate::db::commit(&state.db, tx).await?;
        (created, count)
    } else {
        let created = store::insert_like(&state.db, id, caller.user_id).await?;
        (created, store::count_likes(&state.db, id).await?)
    };
    if created {
        metrics::counter!("maru_product_likes_total").increment(1);
        super::cache::user_changed(state, caller.user_id).await;
    }
    Ok((created, count))
}

/// Removes the caller's like; `(removed, like count)`.
#[tracing::instrument(name = "market.unlike_product", skip_all, err(level = "debug"))]
pub async fn unlike_product(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<(bool, i64)> {
    visible_product(state, Some(caller), id).await?;
    let removed = store::delete_like(&state.db, id, caller.user_id).await?;
    if removed {
        super::cache::user_changed(state, caller.user_id).await;
    }
    Ok((removed, store::count_likes(&state.db, id).await?))
}

/// Recommendations for the caller (`product = None`) or similar to `product`
/// (docs/market.md#recommendations). The ranked list comes from the cache when the caller's
/// seeds and profile (or the product) are those it was ranked from ([`super::cache`]); what it
/// cannot know is decided here, on the products as they are now: viewed since, liked since, no
/// longer on sale or the reader's own are dropped, and the newest products on sale fill the rest.
#[tracing::instrument(name = "market.recommend_products", skip_all, err(level = "debug"))]
pub async fn recommend_products(
    state: &AppState,
    caller: Option<&Caller>,
    product: Option<Uuid>,
    limit: i64,
) -> AppResult<Vec<Recommendation>> {
    let viewer = caller.map_or(Uuid::nil(), |c| c.user_id);
    let (ranked, exclude, exclude_liked) = match (product, caller) {
        (Some(id), _) => {
            let p = visible_product(state, caller, id).await?;
            let tags = p.tags.clone();
            let weights = vec![5; tags.len()];
            // Ranked for nobody in particular (the reader's own products are dropped below), so
            // that every reader shares the list.
            let ranked = super::cache::similar(state, p.id, || async {
                let input = RankInput {
                    seeds: &[p.id],
                    tags: &tags,
                    weights: &weights,
                    viewer: Uuid::nil(),
                    exclude: &[p.id],
                    exclude_liked: false,
                    likers_per_seed: SEED_LIKERS,
                    likes_per_liker: LIKES_PER_LIKER,
                    recent_products: RECENT_PRODUCTS,
                    per_source: CANDIDATES_PER_SOURCE,
                    limit: CACHED_RANKED,
                };
                store::rank(&state.db, &input).await
            })
            .await?;
            (ranked, vec![p.id], false)
        }
        (None, Some(c)) => {
            let liked = store::recent_likes(&state.db, c.user_id, SEED_LIKES).await?;
            let viewed = recent_views(state, c.user_id).await;
            let profile = store::tag_profile(&state.db, &liked, &viewed, PROFILE_TAGS).await?;
            let seeds: Vec<Uuid> = liked.into_iter().take(CO_LIKE_SEEDS).collect();
            let (tags, weights): (Vec<String>, Vec<i32>) = profile.into_iter().unzip();
            let ranked = if seeds.is_empty() && tags.is_empty() {
                Vec::new()
            } else {
                super::cache::for_caller(state, c.user_id, &seeds, (&tags, &weights), || async {
                    let input = RankInput {
                        seeds: &seeds,
                        tags: &tags,
                        weights: &weights,
                        viewer,
                        // Viewed products are not recommended back (liked ones are excluded by
                        // the query).
                        exclude: &viewed,
                        exclude_liked: true,
                        likers_per_seed: (SEED_LIKERS / seeds.len().max(1) as i64).max(MIN_LIKERS_PER_SEED),
                        likes_per_liker: LIKES_PER_LIKER,
                        recent_products: RECENT_PRODUCTS,
                        per_source: CANDIDATES_PER_SOURCE,
                        limit: CACHED_RANKED,
                    };
                    store::rank(&state.db, &input).await
                })
                .await?
            };
            (ranked, viewed, true)
        }
        (None, None) => {
            return Err(AppError::unauthenticated(
                Reason::TokenMissing,
                "recommendations for the caller require a bearer token; or name a product_id",
            ));
        }
    };
    // Ranked lists are in order: the first `limit` that still qualify are the answer. A few more
    // than asked are read so that what is dropped below rarely needs a second read.
    let ranked: Vec<Ranked> =
        ranked.into_iter().filter(|r| !exclude.contains(&r.product_id)).take((limit + READ_SLACK) as usize).collect();
    let qualifies = |v: &ProductView| {
        v.product.status() == ProductStatus::OnSale
            && v.product.seller_id != viewer
            && !(exclude_liked && v.liked_by_me)
    };
    let mut out = hydrate(state, caller, ranked, qualifies).await?;
    out.truncate(limit as usize);
    if (out.len() as i64) < limit {
        // Nothing (more) to go on: the newest products on sale fill the list.
        let mut skip = exclude;
        skip.extend(out.iter().map(|r| r.product.product.id));
        let fill = store::newest_on_sale(&state.db, viewer, &skip, exclude_liked, limit - out.len() as i64).await?;
        let fill = fill.into_iter().map(|id| Ranked {
            product_id: id,
            score: 0,
            shared_tags: vec![],
            co_likers: 0,
            co_liked_with: vec![],
        });
        out.extend(hydrate(state, caller, fill.collect(), |_| true).await?);
    }
    for r in &out {
        metrics::counter!("maru_product_recommendations_total", "source" => r.ranked.source().label()).increment(1);
    }
    Ok(out)
}

/// The products of `ranked` as `caller` sees them now, in order, those that pass `keep`.
async fn hydrate(
    state: &AppState,
    caller: Option<&Caller>,
    ranked: Vec<Ranked>,
    keep: impl Fn(&ProductView) -> bool,
) -> AppResult<Vec<Recommendation>> {
    if ranked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ranked.iter().map(|r| r.product_id).collect();
    let rows = with_likes(state, caller, store::get_products(&state.db, &ids).await?).await?;
    let mut by_id: HashMap<Uuid, ProductView> = rows.into_iter().map(|v| (v.product.id, v)).collect();
    Ok(ranked
        .into_iter()
        .filter_map(|r| by_id.remove(&r.product_id).filter(&keep).map(|product| Recommendation { product, ranked: r }))
        .collect())
}
