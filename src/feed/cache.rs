//! Caching of post detail (GetPost) and community feed pages (ListPosts{community_id}) in
//! Redis, on top of [`crate::cache::Cache`].
//!
//! Keys carry the versions of their scopes: `feed:all` (bumped by profile edits and account
//! deletions, which change the author shown on posts), `feed:post:<id>` (a post and what its
//! detail shows: edit, status, delete, comments, likes, flushed views) and
//! `feed:community:<id>` (every page of that community's feed: any post created, changed or
//! deleted there, and its comments and likes). A write bumps its scopes after it commits and
//! before it returns, so every read that starts after it uses new keys: no read is stale once
//! the write has returned. Fills made with an old version land under keys nobody reads again
//! and expire (`feed.*_cache_ttl_s`, far below the one-day life of a version).
//!
//! Cached rows are the same for every reader: a page is cached as an admin sees it (suspended
//! posts included) and each reader's view is filtered after paging with the visibility rule
//! ([`super::visibility::sees`]), so a page may be shorter than `page_size` but page tokens
//! stay exact. `liked_by_me` is looked up
//! per reader, never cached. Other lists (author, tag, text search, home feed) depend on who is
//! reading and are not cached. When Redis is unavailable everything is read from PostgreSQL.

use std::time::Duration;

use uuid::Uuid;

use super::model::{Post, PostFilter};
use super::store::{self, PostCursor};
use super::visibility::Reader;
use crate::db::{ExpensiveRead, ReadKind};
use crate::error::AppResult;
use crate::state::AppState;

pub const POST_CACHE: &str = "feed_post";
pub const PAGE_CACHE: &str = "feed_page";

const ALL: &str = "feed:all";

fn post_scope(id: Uuid) -> String {
    format!("feed:post:{id}")
}

fn community_scope(id: Uuid) -> String {
    format!("feed:community:{id}")
}

/// Post `id` (whatever its status and community: callers decide who sees it), through the cache.
pub async fn get_post_cached(state: &AppState, id: Uuid) -> AppResult<Option<Post>> {
    if state.settings.feed.cache_enabled {
        let ttl = Duration::from_secs(state.settings.feed.post_cache_ttl_s);
        let (db, scopes) = (&state.db, [ALL.to_owned(), post_scope(id)]);
        let base = format!("feed:post:{id}");
        state
            .cache
            .get_or_load_scoped(POST_CACHE, &scopes, &base, ttl, || async { store::get_post(db, id).await })
            .await
    } else {
        store::get_post(&state.db, id).await
    }
}

/// Rows of a post list in canonical order. Community pages come from the cache as an admin
/// sees them; callers filter with [`super::visibility::sees`] after paging.
pub async fn list_posts_cached(
    state: &AppState,
    reader: Reader,
    filter: &PostFilter,
    after: Option<PostCursor>,
    limit: i64,
) -> AppResult<Vec<Post>> {
    if let PostFilter::Query(_) = filter {
        // A search: an expensive read (bulkhead, deadline, cancelled when abandoned).
        let mut read = ExpensiveRead::begin(&state.db, &state.expensive_reads, ReadKind::PostSearch).await?;
        let rows = store::list_posts(read.conn(), reader, Some(filter), after, limit).await;
        return read.finish(rows).await;
    }
    let PostFilter::Community(c) = filter else {
        return store::list_posts(&state.db, reader, Some(filter), after, limit).await;
    };
    let canonical = Reader::CANONICAL;
    if !state.settings.feed.cache_enabled {
        return store::list_posts(&state.db, canonical, Some(filter), after, limit).await;
    }
    let cursor = after.map_or_else(|| "first".to_owned(), |(t, id)| format!("{}.{id}", t.timestamp_micros()));
    let base = format!("feed:page:{c}:{cursor}:{limit}");
    let ttl = Duration::from_secs(state.settings.feed.page_cache_ttl_s);
    let (db, scopes) = (&state.db, [ALL.to_owned(), community_scope(*c)]);
    state
        .cache
        .get_or_load_scoped(PAGE_CACHE, &scopes, &base, ttl, || async {
            store::list_posts(db, canonical, Some(filter), after, limit).await
        })
        .await
}

/// After a write that changed `post` (its text, status, comments, likes, or deleted it).
pub async fn post_changed(state: &AppState, post: &Post) {
    let mut keys = vec![post_scope(post.id)];
    keys.extend(post.community_id.map(community_scope));
    state.cache.invalidate(&keys).await;
}

/// After a post was created (in `community`, or public).
pub async fn post_listed(state: &AppState, community: Option<Uuid>) {
    if let Some(c) = community {
        state.cache.invalidate(&[community_scope(c)]).await;
    }
}

/// After views of `posts` were flushed to the database.
pub async fn views_flushed(state: &AppState, posts: &[Uuid]) {
    let keys: Vec<String> = posts.iter().map(|p| post_scope(*p)).collect();
    for chunk in keys.chunks(500) {
        state.cache.invalidate(chunk).await;
    }
}

/// After a change to how authors are shown (profile edit, account deletion): every cached
/// post and page.
pub async fn authors_changed(state: &AppState) {
    state.cache.invalidate(&[ALL.to_owned()]).await;
}
