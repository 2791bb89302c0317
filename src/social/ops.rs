//! Profile and follow use cases. Who may do what:
//!
//! | op | who |
//! |---|---|
//! | get_profile, list_followers, list_following | anyone, anonymous included |
//! | update_profile, delete_account | the account itself |
//! | follow, unfollow | a signed-in user, in their own name |
//! | remove_follower | a signed-in user, for their own followers |
//!
//! Follow, Unfollow and RemoveFollower are idempotent (the row is inserted with `on conflict do
//! nothing` / deleted if present); concurrent calls are decided by the primary key, so the
//! counts, counted from the rows, are exact.
//!
//! Profiles are cached in Redis (cache `profile`, `feed.profile_cache_ttl_s`, off with
//! `feed.cache_enabled = false`) as an anonymous reader sees them. Every write that changes
//! what a profile shows invalidates it after its commit: a follow or unfollow both profiles, a
//! profile update the caller's (and their home screen, whose memberships show their name), and
//! a deleted account every profile (its follows leave everyone's counts). Only found profiles
//! are cached, so a handle signed up after a NOT_FOUND is found at once.
//!
//! A signed-in reader's `followed_by_me` and `follows_me` (the two follow rows between reader
//! and profile) are cached per reader and profile (cache `follow_pair`, same TTL) under a scope
//! per pair of accounts, which Follow, Unfollow and RemoveFollower move when they change a row
//! between the two. No other write changes follow rows: deleted and suspended accounts keep
//! theirs (their profile is NOT_FOUND, their sessions end), and the rows of a deleted expired
//! guest cascade away with an account nobody reads as or about any more.

use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Code;
use uuid::Uuid;

use super::model::{Profile, ProfileCard, ProfilePatch, ProfileSearch, ProfileSummary};
use super::store::{self, Cursor, SearchCursor};
use crate::accounts::{Handle, user_cache_key};
use crate::cache::Cache;
use crate::caller::Caller;
use crate::db::{ExpensiveRead, ReadKind};
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{RequestId, remember, replayed};
use crate::media::attach;
use crate::state::AppState;
use crate::teams::activity::{self, ActivityCounts, ActivityEntry};

fn user_not_found() -> AppError {
    AppError::not_found(Reason::UserNotFound, "user")
}

fn viewer(caller: Option<&Caller>) -> Uuid {
    caller.map_or(Uuid::nil(), |c| c.user_id)
}

/// A required `handle` field.
pub fn handle_field(raw: &str) -> AppResult<Handle> {
    let mut v = Violations::new();
    let h = v.check("handle", Handle::parse(raw));
    v.finish()?;
    h.ok_or_else(|| AppError::invalid("handle", "is required"))
}

async fn live_user(state: &AppState, handle: &Handle) -> AppResult<Uuid> {
    store::user_id_by_handle(&state.db, handle.as_str()).await?.ok_or_else(user_not_found)
}

/// The cache GetProfile reads through (`maru_cache_requests_total{cache="profile"}`).
pub const PROFILE_CACHE: &str = "profile";
/// Bumped when an account is deleted: every cached profile's counts may have changed.
const ALL_PROFILES: &str = "social:profiles";

/// A profile's cache key without the version of [`ALL_PROFILES`] (see `Cache::scoped_key`).
fn profile_base(handle: &str) -> String {
    format!("social:profile:{}", handle.to_lowercase())
}

/// The cache of the follow rows between a reader and a profile (`maru_cache_requests_total{cache="follow_pair"}`).
pub const FOLLOW_PAIR_CACHE: &str = "follow_pair";

/// The scope of the follow rows between `a` and `b`, either way: one per pair of accounts.
fn pair_scope(a: Uuid, b: Uuid) -> String {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    format!("social:follows:{x}:{y}")
}

/// Whether `reader` follows `target` and `target` follows `reader`, through the cache.
async fn follow_pair_cached(state: &AppState, reader: Uuid, target: Uuid) -> AppResult<(bool, bool)> {
    let db = &state.db;
    let ttl = Duration::from_secs(state.settings.feed.profile_cache_ttl_s);
    let base = format!("social:follow_pair:{reader}:{target}");
    state
        .cache
        .get_or_load_scoped(FOLLOW_PAIR_CACHE, &[pair_scope(reader, target)], &base, ttl, || async {
            store::follow_pair(db, reader, target).await
        })
        .await
}

/// After a committed write of a follow row between `a` and `b`: both profiles and the pair.
async fn follows_changed(state: &AppState, a: Uuid, b: Uuid) {
    state.cache.invalidate(&[pair_scope(a, b)]).await;
    profiles_changed(state, &[a, b]).await;
}

#[tracing::instrument(name = "social.get_profile", skip_all, err(level = "debug"))]
pub async fn get_profile(state: &AppState, caller: Option<&Caller>, handle: &Handle) -> AppResult<Profile> {
    if !state.settings.feed.cache_enabled {
        return store::get_profile_by_handle(&state.db, handle.as_str(), viewer(caller))
            .await?
            .ok_or_else(user_not_found);
    }
    let db = &state.db;
    let ttl = Duration::from_secs(state.settings.feed.profile_cache_ttl_s);
    let mut profile: Profile = state
        .cache
        .get_or_load_scoped(PROFILE_CACHE, &[ALL_PROFILES.to_owned()], &profile_base(handle.as_str()), ttl, || async {
            store::get_profile_by_handle(db, handle.as_str(), Uuid::nil()).await?.ok_or_else(user_not_found)
        })
        .await?;
    if let Some(c) = caller.filter(|c| c.user_id != profile.user_id) {
        (profile.followed_by_me, profile.follows_me) = follow_pair_cached(state, c.user_id, profile.user_id).await?;
    }
    Ok(profile)
}

/// GetProfile: the profile with the caller's view of the member's team history counts.
pub async fn get_profile_with_activity(
    state: &AppState,
    caller: Option<&Caller>,
    handle: &Handle,
) -> AppResult<(Profile, ActivityCounts)> {
    let profile = get_profile(state, caller, handle).await?;
    let counts = activity::counts(state, caller, profile.user_id).await?;
    Ok((profile, counts))
}

/// A page of `handle`'s team history of `kind`, as the caller may see it (teams' rules).
#[tracing::instrument(name = "social.list_profile_activity", skip_all, err(level = "debug"))]
pub async fn list_profile_activity(
    state: &AppState,
    caller: Option<&Caller>,
    handle: &Handle,
    kind: activity::Kind,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ActivityEntry>, String)> {
    let user = live_user(state, handle).await?;
    activity::list(state, caller, user, kind, page_size, page_token).await
}

/// After a committed suspension or reinstatement of an account (moderation): its own profile
/// appears or vanishes and the follower/following counts of everyone it follows or is
/// followed by change, so every cached profile's version moves, as for DeleteAccount.
pub async fn accounts_shown_or_hidden(state: &AppState) {
    state.cache.invalidate(&[ALL_PROFILES.to_owned()]).await;
}

/// After a committed write that changed what these accounts' profiles show.
async fn profiles_changed(state: &AppState, users: &[Uuid]) {
    let Some(v) = state.cache.versions(&[ALL_PROFILES.to_owned()]).await else {
        // Redis is down: reads bypass it meanwhile. The queued bump of every profile's version
        // makes sure nothing cached before this write is read once it is back.
        state.cache.invalidate(&[ALL_PROFILES.to_owned()]).await;
        return;
    };
    let keys: Vec<String> = match store::handles_of(&state.db, users).await {
        Ok(handles) => handles.iter().map(|h| Cache::scoped_key(&profile_base(h), &v)).collect(),
        // Without the handles the keys are unknown: move every profile's version instead.
        Err(_) => vec![ALL_PROFILES.to_owned()],
    };
    state.cache.invalidate(&keys).await;
}

/// Whether `caller` sees the profile of user `id`: the reader for `crate::media::attach` (a
/// profile picture is seen by whoever sees the profile: everyone, while the account is live).
pub fn sees_profile<'a>(state: &'a AppState, _caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move { Ok(store::handle_of(&state.db, id).await?.is_some()) })
}

#[tracing::instrument(name = "social.update_profile", skip_all, err(level = "debug"))]
pub async fn update_profile(state: &AppState, caller: &Caller, patch: ProfilePatch) -> AppResult<Profile> {
    // The answer is read inside the transaction: once it commits nothing can fail, so a
    // committed change is never answered with a retryable error.
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::update_profile(&mut *tx, caller.user_id, &patch).await? {
        let now = store::get_profile(&mut *tx, caller.user_id, caller.user_id).await?.ok_or_else(user_not_found)?;
        return Err(AppError::refused(Code::Aborted, Reason::EtagMismatch, "the profile changed since it was read")
            .with_meta("etag", now.etag()));
    }
    if let Some(ids) = &patch.media_ids {
        attach::set(&mut tx, caller.user_id, attach::Kind::Profile, caller.user_id, ids, "media_id").await?;
    }
    let profile = store::get_profile(&mut *tx, caller.user_id, caller.user_id).await?.ok_or_else(user_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    // WhoAmI caches the user with its display name; cached posts show it too, and so do the
    // caller's memberships on their home screen.
    state.cache.invalidate(&[user_cache_key(caller.user_id)]).await;
    crate::feed::authors_changed(state).await;
    crate::communities::cache::members_changed(&state.cache, &[caller.user_id]).await;
    profiles_changed(state, &[caller.user_id]).await;
    Ok(profile)
}

#[tracing::instrument(name = "social.delete_account", skip_all, err(level = "debug"))]
pub async fn delete_account(state: &AppState, caller: &Caller, confirm_handle: &str) -> AppResult<()> {
    let handle = store::handle_of(&state.db, caller.user_id).await?.ok_or_else(user_not_found)?;
    if !handle.eq_ignore_ascii_case(confirm_handle.trim()) {
        return Err(AppError::invalid("confirm_handle", "must equal the caller's handle"));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    let deleted = store::delete_account(&mut tx, caller.user_id).await?;
    crate::db::commit(&state.db, tx).await?;
    if !deleted {
        return Err(user_not_found());
    }
    state.cache.invalidate(&[user_cache_key(caller.user_id), ALL_PROFILES.to_owned()]).await;
    // Its access tokens stop at once (the sessions were revoked in the transaction).
    crate::sessions::sessions_changed(&state.cache, caller.user_id).await;
    // Cached posts and pages may show the account's posts, comments and likes.
    crate::feed::authors_changed(state).await;
    // Its cached standings in communities (memberships of a deleted account admit nobody).
    crate::communities::cache::members_changed(&state.cache, &[caller.user_id]).await;
    tracing::info!(user_id = %caller.user_id, "account deleted");
    Ok(())
}

fn cannot_follow_self() -> AppError {
    Violations::one("handle", "you cannot follow yourself").into_error_with(Reason::CannotFollowSelf)
}

/// Follows `handle`; `(created, their profile)`.
#[tracing::instrument(name = "social.follow", skip_all, err(level = "debug"))]
/// A retry with the same `request_id` gets the first answer (`created: true`), not a no-op.
pub async fn follow(
    state: &AppState,
    caller: &Caller,
    handle: &Handle,
    request_id: Option<&RequestId>,
) -> AppResult<(bool, Profile)> {
    let target = live_user(state, handle).await?;
    if target == caller.user_id {
        return Err(cannot_follow_self());
    }
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(first) = replayed(state, &mut tx, "Follow", caller, request_id, handle).await? {
        return Ok(first);
    }
    let created = store::insert_follow(&mut *tx, caller.user_id, target).await?;
    // Read in the transaction: what was committed is what the caller is told.
    let profile = store::get_profile(&mut *tx, target, caller.user_id).await?.ok_or_else(user_not_found)?;
    remember(&mut tx, "Follow", caller, request_id, &(created, &profile)).await?;
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_follows_total").increment(1);
        follows_changed(state, caller.user_id, target).await;
    }
    Ok((created, profile))
}

#[tracing::instrument(name = "social.unfollow", skip_all, err(level = "debug"))]
pub async fn unfollow(state: &AppState, caller: &Caller, handle: &Handle) -> AppResult<bool> {
    let target = live_user(state, handle).await?;
    let removed = store::delete_follow(&state.db, caller.user_id, target).await?;
    if removed {
        follows_changed(state, caller.user_id, target).await;
    }
    Ok(removed)
}

#[tracing::instrument(name = "social.remove_follower", skip_all, err(level = "debug"))]
pub async fn remove_follower(state: &AppState, caller: &Caller, handle: &Handle) -> AppResult<bool> {
    let follower = live_user(state, handle).await?;
    let removed = store::delete_follow(&state.db, follower, caller.user_id).await?;
    if removed {
        follows_changed(state, follower, caller.user_id).await;
    }
    Ok(removed)
}

/// Followers of `handle` (`followers = true`) or whom they follow, newest first.
#[tracing::instrument(name = "social.list_follows", skip_all, err(level = "debug"))]
pub async fn list_follows(
    state: &AppState,
    handle: &Handle,
    followers: bool,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ProfileSummary>, String)> {
    let query = (if followers { "followers" } else { "following" }, handle.as_str());
    let page = state.pager.page::<Cursor>(page_size, page_token, &query)?;
    let user = live_user(state, handle).await?;
    let rows = store::list_follows(&state.db, user, followers, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |p| (p.followed_at, p.user_id)))
}

/// People search: live accounts matching `s`, newest first; an expensive read
/// ([`ReadKind::ProfileSearch`]: bulkhead, deadline, cancelled when abandoned).
#[tracing::instrument(name = "social.search_profiles", skip_all, err(level = "debug"))]
pub async fn search_profiles(
    state: &AppState,
    s: &ProfileSearch,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ProfileCard>, String)> {
    let query = ("search_profiles", s);
    let page = state.pager.page::<SearchCursor>(page_size, page_token, &query)?;
    let mut read = ExpensiveRead::begin(&state.db, &state.expensive_reads, ReadKind::ProfileSearch).await?;
    let rows = store::search_profiles(read.conn(), s, page.after, page.fetch_limit()).await;
    let rows = read.finish(rows).await?;
    Ok(state.pager.finish(&page, rows, &query, |c| (c.created_at, c.user_id)))
}
