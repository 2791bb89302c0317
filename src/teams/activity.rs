//! A member's team history for their profile (DOMAIN §2 developer profiles, issue 15 slice 4):
//! teams applied to (with the application's state), teams in progress (RECRUITING or
//! IN_PROGRESS, a seat held), accomplished teams and liked teams, each paged, and their counts.
//! `ProfileService` (the `social` domain) serves them through this module, the team side of
//! profiles; the SQL is in [`super::store`].
//!
//! Who sees what: a viewer sees only entries of teams they may see in the teams domain itself:
//! approved teams (RECRUITING, IN_PROGRESS, ACCOMPLISHED) of clubs the viewer is an APPROVED
//! member of, and of every club for admins ([`super::ops::visible_team`]'s rule for listed
//! teams). Anonymous viewers see nothing.
//!
//! Caching (the shared versioned cache, cache `profile_activity`): a page is cached under the
//! viewer's visible clubs (part of the key, read from PostgreSQL on every call, so joining or
//! leaving a club changes the key at once) and the scopes `teams:activity:<member>` and
//! `teams:club:<club>` of each of those clubs. Every write that changes a history bumps one of
//! them after it commits and before it returns: apply, withdraw and a rejection bump the
//! applicant's scope ([`member_changed`]); approvals, leaving, removals, state changes, likes,
//! edits and deletions bump the team's club ([`super::cache::team_changed`]).

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::cache::club_scope;
use super::model::ActivityKind;
use super::store::{self, ActivityCursor};
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

pub use super::convert::{activity_counts_to_pb, activity_kind, activity_to_pb};
pub use super::model::{ActivityCounts, ActivityEntry, ActivityKind as Kind};

/// `maru_cache_requests_total{cache="profile_activity"}`.
pub const ACTIVITY_CACHE: &str = "profile_activity";

fn member_scope(user: Uuid) -> String {
    format!("teams:activity:{user}")
}

/// The clubs `viewer` may see `subject`'s activity in (empty for anonymous viewers).
async fn visible_clubs(state: &AppState, viewer: Option<&Caller>, subject: Uuid) -> AppResult<Vec<Uuid>> {
    match viewer {
        None => Ok(Vec::new()),
        Some(c) => store::activity_clubs(&state.db, subject, c.user_id, c.is_admin()).await,
    }
}

/// Reads through the cache under `subject`'s scope and those of `clubs`.
async fn cached<T, F, Fut>(
    state: &AppState,
    subject: Uuid,
    clubs: &[Uuid],
    what: &impl serde::Serialize,
    load: F,
) -> AppResult<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = AppResult<T>>,
{
    if !state.settings.teams.cache_enabled {
        return load().await;
    }
    let key = serde_json::to_vec(&(what, clubs)).unwrap_or_default();
    let base = format!("teams:activity:{subject}:{}", hex::encode(Sha256::digest(key)));
    let scopes: Vec<String> =
        std::iter::once(member_scope(subject)).chain(clubs.iter().map(|c| club_scope(*c))).collect();
    let ttl = Duration::from_secs(state.settings.teams.team_cache_ttl_s);
    state.cache.get_or_load_scoped(ACTIVITY_CACHE, &scopes, &base, ttl, load).await
}

/// A page of `subject`'s history of `kind`, as `viewer` may see it.
#[tracing::instrument(name = "teams.list_activity", skip_all, err(level = "debug"))]
pub async fn list(
    state: &AppState,
    viewer: Option<&Caller>,
    subject: Uuid,
    kind: ActivityKind,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ActivityEntry>, String)> {
    let query = ("profile_activity", subject, kind);
    let page = state.pager.page::<ActivityCursor>(page_size, page_token, &query)?;
    let clubs = visible_clubs(state, viewer, subject).await?;
    if clubs.is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let (after, limit) = (page.after, page.fetch_limit());
    let rows = cached(state, subject, &clubs, &(kind, after, limit), || async {
        store::list_activity(&state.db, subject, kind, &clubs, after, limit).await
    })
    .await?;
    Ok(state.pager.finish(&page, rows, &query, |e| (e.at, e.entry_key)))
}

/// How many entries each kind of `subject`'s history has, as `viewer` may see it.
#[tracing::instrument(name = "teams.count_activity", skip_all, err(level = "debug"))]
pub async fn counts(state: &AppState, viewer: Option<&Caller>, subject: Uuid) -> AppResult<ActivityCounts> {
    let clubs = visible_clubs(state, viewer, subject).await?;
    if clubs.is_empty() {
        return Ok(ActivityCounts::default());
    }
    cached(state, subject, &clubs, &"counts", || async { store::count_activity(&state.db, subject, &clubs).await })
        .await
}

/// After a committed write that changed `user`'s applications (apply, withdraw, a decision).
pub async fn member_changed(state: &AppState, user: Uuid) {
    state.cache.invalidate(&[member_scope(user)]).await;
}
