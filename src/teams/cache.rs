//! Caching of team detail (GetTeam and every read of a team) and of pages of a club's teams
//! (ListTeams) in Redis, on the shared versioned cache ([`crate::cache::Cache`]).
//!
//! Keys carry the versions of their scopes: `teams:team:<id>` (a team and what its detail shows:
//! edits, state, seats, members, likes, flushed views, deletion) and `teams:club:<id>` (every
//! page of that club's team lists: any team proposed, changed or deleted there). A write bumps
//! its scopes after it commits and before it returns, so every read that starts after it uses new
//! keys: no read is stale once the write has returned, on any replica. Fills made with an old
//! version land under keys nobody reads again and expire (`teams.*_cache_ttl_s`).
//!
//! Cached rows are the same for every reader (authorization and `liked_by_me` are decided per
//! reader after the read). When Redis is unavailable everything is read from PostgreSQL.

use std::time::Duration;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{Team, TeamFilter, TeamState};
use super::store::{self, TeamCursor};
use crate::error::AppResult;
use crate::state::AppState;

pub const TEAM_CACHE: &str = "team";
pub const PAGE_CACHE: &str = "team_page";

fn team_scope(id: Uuid) -> String {
    format!("teams:team:{id}")
}

pub(super) fn club_scope(id: Uuid) -> String {
    format!("teams:club:{id}")
}

/// Team `id` (whatever its state: callers decide who sees it), through the cache.
pub async fn get_team_cached(state: &AppState, id: Uuid) -> AppResult<Option<Team>> {
    if !state.settings.teams.cache_enabled {
        return store::get_team(&mut *state.db.acquire().await?, id).await;
    }
    let ttl = Duration::from_secs(state.settings.teams.team_cache_ttl_s);
    let base = format!("teams:team:{id}");
    let db = &state.db;
    state
        .cache
        .get_or_load_scoped(TEAM_CACHE, &[team_scope(id)], &base, ttl, || async {
            store::get_team(&mut *db.acquire().await?, id).await
        })
        .await
}

/// A page of a club's teams, through the cache.
pub async fn list_teams_cached(
    state: &AppState,
    filter: &TeamFilter,
    states: &[TeamState],
    after: Option<TeamCursor>,
    limit: i64,
) -> AppResult<Vec<Team>> {
    let load = || async { store::list_teams(&mut *state.db.acquire().await?, filter, states, after, limit).await };
    if !state.settings.teams.cache_enabled {
        return load().await;
    }
    let key = serde_json::to_vec(&(filter, states, after, limit)).unwrap_or_default();
    let base = format!("teams:page:{}:{}", filter.community_id, hex::encode(Sha256::digest(key)));
    let ttl = Duration::from_secs(state.settings.teams.page_cache_ttl_s);
    state.cache.get_or_load_scoped(PAGE_CACHE, &[club_scope(filter.community_id)], &base, ttl, load).await
}

/// After a write that changed `team` (or deleted it): its detail and its club's lists.
pub async fn team_changed(state: &AppState, team: &Team) {
    state.cache.invalidate(&[team_scope(team.id), club_scope(team.community_id)]).await;
}

/// After a team was proposed in `club`.
pub async fn team_listed(state: &AppState, club: Uuid) {
    state.cache.invalidate(&[club_scope(club)]).await;
}

/// After views of `teams` were flushed: their details and their clubs' lists (most viewed).
pub async fn views_flushed(state: &AppState, teams: &[Uuid]) {
    let clubs = match store::team_communities(&state.db, teams).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "team view flush: clubs not read; their lists expire with their TTL");
            Vec::new()
        }
    };
    let keys: Vec<String> = teams.iter().map(|t| team_scope(*t)).chain(clubs.into_iter().map(club_scope)).collect();
    for chunk in keys.chunks(500) {
        state.cache.invalidate(chunk).await;
    }
}
