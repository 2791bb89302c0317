//! Community core use cases. Who may do what (admin = deployment ADMIN; manager = APPROVED
//! MANAGER of that community; member = APPROVED membership of that community):
//!
//! | op | who |
//! |---|---|
//! | search_communities, get_community | anyone, anonymous included (`join_code` only for managers and admins) |
//! | list_my_communities | signed in: own memberships; anonymous: a sample of the newest [`ANONYMOUS_SAMPLE`] |
//! | create_community | admins |
//! | request_membership | any signed-in user without an active membership of that community |
//! | leave_community | the member themself (a PENDING request is withdrawn) |
//! | list_members | members, managers, admins |
//! | list_membership_requests, decide_membership, decide_memberships, set_member_role, remove_member | managers, admins |
//!
//! Invariants decided in the database: one active membership per user and community (unique
//! index `community_memberships_active_key`); a request is decided once (conditional UPDATE);
//! a community that has managers keeps at least one (role changes, leaving and removal lock the
//! community row and count managers in the same transaction).
//!
//! Caching: the home screen ([`list_my_communities`]) is cached per user in Redis and
//! invalidated after every committed write that changes it (request, decision, leave, removal,
//! role change here; profile edits in `social`; registry imports and community edits for every
//! user at once), so no read is stale once the write has returned. The same writes move the
//! members' cached standings ([`super::access::standing_cached`], the membership decision of
//! feed reads). Keys and scopes: [`super::cache`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::access::{self, MemberRole};
use super::cache::{self as home, MY_COMMUNITIES_CACHE, anonymous_sample_key};
use super::model::{
    ANONYMOUS_SAMPLE, Community, Decision, JoinRequest, Kind, MAX_MY_COMMUNITIES, Membership, MyCommunity,
    NewCommunity, SearchQuery, Status, codes_match, parse_dwelling,
};
use super::store::{self, NewMembership};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{remember, replayed};
use crate::paging::Page;
use crate::state::AppState;

const MY_COMMUNITIES_TTL: Duration = Duration::from_secs(300);
const SAMPLE_TTL: Duration = Duration::from_secs(60);

fn community_not_found() -> AppError {
    AppError::not_found(Reason::CommunityNotFound, "community")
}

fn membership_not_found() -> AppError {
    AppError::not_found(Reason::MembershipNotFound, "membership")
}

fn last_manager() -> AppError {
    AppError::failed_precondition(Reason::LastManager, "the community would be left without a manager")
}

#[tracing::instrument(name = "communities.search_communities", skip_all, err(level = "debug"))]
pub async fn search_communities(
    state: &AppState,
    q: SearchQuery,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Community>, SearchTotal, String)> {
    let page: Page<(String, Uuid)> = state.pager.page(page_size, page_token, &("search_communities", &q))?;
    let rows = store::search_communities(&state.db, &q, page.after.as_ref(), page.fetch_limit()).await?;
    let counted = store::count_communities(&state.db, &q, SEARCH_COUNT_CAP + 1).await?;
    let (rows, next) = state.pager.finish(&page, rows, &("search_communities", &q), |c| (c.name.clone(), c.id));
    Ok((rows.into_iter().map(Community::public).collect(), bounded_total(counted, SEARCH_COUNT_CAP), next))
}

/// SearchCommunities counts its matches exactly up to this many (docs/communities.md).
pub const SEARCH_COUNT_CAP: i64 = 10_000;

/// A search's `total_size`, and whether it is only a lower bound: `counted` matches were
/// counted up to `cap + 1`; beyond `cap` the total is `cap`, a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchTotal {
    pub total: i64,
    pub lower_bound: bool,
}

pub fn bounded_total(counted: i64, cap: i64) -> SearchTotal {
    SearchTotal { total: counted.min(cap), lower_bound: counted > cap }
}

#[tracing::instrument(name = "communities.get_community", skip_all, err(level = "debug"))]
pub async fn get_community(state: &AppState, caller: Option<&Caller>, id: Uuid) -> AppResult<Community> {
    let community = store::get_community(&state.db, id).await?.ok_or_else(community_not_found)?;
    let may_see_code = match caller {
        Some(c) => access::standing(&state.db, c, id).await?.can_manage(),
        None => false,
    };
    Ok(if may_see_code { community } else { community.public() })
}

#[tracing::instrument(name = "communities.create_community", skip_all, err(level = "debug"))]
pub async fn create_community(state: &AppState, caller: &Caller, cmd: NewCommunity) -> AppResult<Community> {
    caller.require_admin()?;
    #[derive(Serialize)]
    struct Fingerprint<'a> {
        kind: &'a str,
        name: &'a str,
        address: &'a str,
        join_code: Option<&'a str>,
        external_code: Option<&'a str>,
    }
    let fp = Fingerprint {
        kind: cmd.kind.as_db(),
        name: &cmd.name,
        address: &cmd.address,
        join_code: cmd.join_code.as_deref(),
        external_code: cmd.external_code.as_deref(),
    };
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(community) = replayed(state, &mut tx, "CreateCommunity", caller, cmd.request_id.as_ref(), &fp).await? {
        return Ok(community);
    }
    let community = store::insert_community(&mut tx, &cmd, caller.user_id).await?;
    remember(&mut tx, "CreateCommunity", caller, cmd.request_id.as_ref(), &community).await?;
    crate::db::commit(&state.db, tx).await?;
    home::community_created(&state.cache).await;
    tracing::info!(community_id = %community.id, kind = community.kind.as_db(), "community created");
    Ok(community)
}

#[tracing::instrument(name = "communities.request_membership", skip_all, err(level = "debug"))]
pub async fn request_membership(state: &AppState, caller: &Caller, req: JoinRequest) -> AppResult<Membership> {
    let community = store::get_community(&state.db, req.community_id).await?.ok_or_else(community_not_found)?;
    let (status, building, unit) = match community.kind {
        Kind::Apartment => {
            let mut v = Violations::new();
            let building = v.check("building", parse_dwelling(&req.building));
            let unit = v.check("unit", parse_dwelling(&req.unit));
            v.finish()?;
            (Status::Pending, building, unit)
        }
        Kind::Club => (Status::Pending, None, None),
        Kind::SportsClub => {
            if req.verification_code.trim().is_empty() {
                return Err(AppError::invalid("verification_code", "is required to join a sports club"));
            }
            let expected = community.join_code.as_deref().unwrap_or("");
            if expected.is_empty() || !codes_match(&req.verification_code, expected) {
                return Err(AppError::permission_denied(
                    Reason::VerificationCodeMismatch,
                    "the verification code does not match the club's join code",
                ));
            }
            (Status::Approved, None, None)
        }
    };
    let mut tx = crate::db::begin(&state.db).await?;
    // A retry after a lost reply gets its membership, not ALREADY_MEMBER.
    if let Some(first) = replayed(state, &mut tx, "RequestMembership", caller, req.request_id.as_ref(), &req).await? {
        return Ok(first);
    }
    let membership = store::insert_membership(
        &mut tx,
        &NewMembership {
            community_id: community.id,
            user_id: caller.user_id,
            status,
            building: building.as_deref(),
            unit: unit.as_deref(),
        },
    )
    .await?;
    remember(&mut tx, "RequestMembership", caller, req.request_id.as_ref(), &membership).await?;
    crate::db::commit(&state.db, tx).await?;
    home::members_changed(&state.cache, &[caller.user_id]).await;
    tracing::info!(
        community_id = %community.id,
        membership_id = %membership.id,
        status = status.as_db(),
        "membership requested"
    );
    Ok(membership)
}

#[tracing::instrument(name = "communities.list_membership_requests", skip_all, err(level = "debug"))]
pub async fn list_membership_requests(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Membership>, String)> {
    let filter = ("membership_requests", community_id);
    let page: Page<(DateTime<Utc>, Uuid)> = state.pager.page(page_size, page_token, &filter)?;
    access::manager(&state.db, caller, community_id).await?;
    let rows = store::list_pending(&state.db, community_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &filter, |m| (m.created_at, m.id)))
}

#[tracing::instrument(name = "communities.decide_membership", skip_all, err(level = "debug"))]
pub async fn decide_membership(state: &AppState, caller: &Caller, d: Decision) -> AppResult<Membership> {
    let current = store::get_membership(&state.db, d.membership_id).await?.ok_or_else(membership_not_found)?;
    access::manager(&state.db, caller, current.community_id).await?;
    let status = if d.approve { Status::Approved } else { Status::Rejected };
    let decided = store::decide_membership(&state.db, d.membership_id, status, d.note.as_deref(), caller.user_id)
        .await?
        .ok_or_else(|| {
            AppError::failed_precondition(Reason::MembershipAlreadyDecided, "the request has already been decided")
        })?;
    home::members_changed(&state.cache, &[decided.user_id]).await;
    let label = if d.approve { "approved" } else { "rejected" };
    metrics::counter!("maru_membership_decisions_total", "decision" => label).increment(1);
    tracing::info!(community_id = %decided.community_id, membership_id = %decided.id, decision = label, "membership decided");
    Ok(decided)
}

/// Decides many PENDING requests of one community at once (the club admin's bulk approval);
/// `(decided by this call, ids not decided by it)`: already decided, by an earlier or a
/// concurrent call, unknown, or of another community.
#[tracing::instrument(name = "communities.decide_memberships", skip_all, err(level = "debug"))]
pub async fn decide_memberships(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    ids: &[Uuid],
    approve: bool,
    note: Option<&str>,
) -> AppResult<(Vec<Membership>, Vec<Uuid>)> {
    access::manager(&state.db, caller, community_id).await?;
    let status = if approve { Status::Approved } else { Status::Rejected };
    let decided = store::decide_memberships(&state.db, community_id, ids, status, note, caller.user_id).await?;
    let users: Vec<Uuid> = decided.iter().map(|m| m.user_id).collect();
    home::members_changed(&state.cache, &users).await;
    let label = if approve { "approved" } else { "rejected" };
    metrics::counter!("maru_membership_decisions_total", "decision" => label).increment(decided.len() as u64);
    let done: std::collections::HashSet<Uuid> = decided.iter().map(|m| m.id).collect();
    let not_decided = ids.iter().copied().filter(|id| !done.contains(id)).collect();
    tracing::info!(%community_id, decided = decided.len(), decision = label, "memberships decided in bulk");
    Ok((decided, not_decided))
}

#[tracing::instrument(name = "communities.list_members", skip_all, err(level = "debug"))]
pub async fn list_members(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    role: Option<MemberRole>,
    query: Option<&str>,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Membership>, String)> {
    let filter = ("members", community_id, role, query);
    let page: Page<(DateTime<Utc>, Uuid)> = state.pager.page(page_size, page_token, &filter)?;
    let access = access::member(&state.db, caller, community_id).await?;
    let rows = store::list_members(&state.db, community_id, role, query, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &filter, |m| (m.created_at, m.id));
    let rows = if access.can_manage() { rows } else { rows.into_iter().map(Membership::without_dwelling).collect() };
    Ok((rows, next))
}

#[tracing::instrument(name = "communities.set_member_role", skip_all, err(level = "debug"))]
pub async fn set_member_role(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    user_id: Uuid,
    role: MemberRole,
) -> AppResult<Membership> {
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::lock_community(&mut tx, community_id).await? {
        return Err(community_not_found());
    }
    // Checked under the lock: a manager demoted a moment ago is no longer one here.
    access::manager(&mut *tx, caller, community_id).await?;
    let target = store::active_membership(&mut *tx, community_id, user_id)
        .await?
        .filter(|m| m.status == Status::Approved)
        .ok_or_else(|| AppError::not_found(Reason::MemberNotFound, "member"))?;
    if target.role == role {
        return Ok(target);
    }
    if target.role == MemberRole::Manager && store::count_managers(&mut *tx, community_id).await? <= 1 {
        return Err(last_manager());
    }
    let updated = store::set_role(&mut tx, target.id, role).await?;
    crate::db::commit(&state.db, tx).await?;
    home::members_changed(&state.cache, &[user_id]).await;
    tracing::info!(%community_id, user_id = %user_id, role = role.as_db(), "member role changed");
    Ok(updated)
}

#[tracing::instrument(name = "communities.leave_community", skip_all, err(level = "debug"))]
pub async fn leave_community(state: &AppState, caller: &Caller, community_id: Uuid) -> AppResult<()> {
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::lock_community(&mut tx, community_id).await? {
        return Err(community_not_found());
    }
    let mine =
        store::active_membership(&mut *tx, community_id, caller.user_id).await?.ok_or_else(membership_not_found)?;
    end_membership(&mut tx, &mine).await?;
    crate::db::commit(&state.db, tx).await?;
    home::members_changed(&state.cache, &[caller.user_id]).await;
    tracing::info!(%community_id, "member left");
    Ok(())
}

#[tracing::instrument(name = "communities.remove_member", skip_all, err(level = "debug"))]
pub async fn remove_member(state: &AppState, caller: &Caller, community_id: Uuid, user_id: Uuid) -> AppResult<()> {
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::lock_community(&mut tx, community_id).await? {
        return Err(community_not_found());
    }
    access::manager(&mut *tx, caller, community_id).await?;
    let target = store::active_membership(&mut *tx, community_id, user_id)
        .await?
        .ok_or_else(|| AppError::not_found(Reason::MemberNotFound, "member"))?;
    end_membership(&mut tx, &target).await?;
    crate::db::commit(&state.db, tx).await?;
    home::members_changed(&state.cache, &[user_id]).await;
    tracing::info!(%community_id, user_id = %user_id, "member removed");
    Ok(())
}

/// Deletes an active membership unless it is the community's last manager (community locked).
async fn end_membership(tx: &mut sqlx::PgConnection, m: &Membership) -> AppResult<()> {
    if m.status == Status::Approved
        && m.role == MemberRole::Manager
        && store::count_managers(&mut *tx, m.community_id).await? <= 1
    {
        return Err(last_manager());
    }
    store::delete_membership(tx, m.id).await
}

/// The home screen: the caller's memberships (cached per user), or a sample for anonymous
/// callers. The user's whole list (at most [`MAX_MY_COMMUNITIES`]) is one cache entry; pages
/// are cut from it by the `(name, id)` cursor.
#[tracing::instrument(name = "communities.list_my_communities", skip_all, err(level = "debug"))]
pub async fn list_my_communities(
    state: &AppState,
    caller: Option<&Caller>,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<MyCommunity>, String)> {
    let db = &state.db;
    let Some(caller) = caller else {
        state.pager.page::<()>(page_size, "", &())?;
        let sample = state
            .cache
            .get_or_load(MY_COMMUNITIES_CACHE, &anonymous_sample_key(), SAMPLE_TTL, || async {
                store::sample_communities(db, ANONYMOUS_SAMPLE).await
            })
            .await?;
        let items = sample.into_iter().map(|c| MyCommunity { community: c.public(), membership: None }).collect();
        return Ok((items, String::new()));
    };
    let filter = ("my_communities", caller.user_id);
    let page: Page<(String, Uuid)> = state.pager.page(page_size, page_token, &filter)?;
    let user_id = caller.user_id;
    let all: Vec<MyCommunity> = state
        .cache
        .get_or_load_scoped(
            MY_COMMUNITIES_CACHE,
            &home::home_scopes(user_id),
            &home::home_base(user_id),
            MY_COMMUNITIES_TTL,
            || async { store::my_communities(db, user_id, MAX_MY_COMMUNITIES).await },
        )
        .await?;
    let mut all = all;
    // The same order as the SQL, whatever the database collation.
    all.sort_by(|a, b| (&a.community.name, a.community.id).cmp(&(&b.community.name, b.community.id)));
    let rows: Vec<MyCommunity> = all
        .into_iter()
        .filter(|m| match &page.after {
            Some((name, id)) => (&m.community.name, m.community.id) > (name, *id),
            None => true,
        })
        .take(page.fetch_limit() as usize)
        .collect();
    Ok(state.pager.finish(&page, rows, &filter, |m| (m.community.name.clone(), m.community.id)))
}

/// Sets `maru_community_memberships{status}` from the database (every replica agrees).
pub async fn refresh_membership_gauge(state: &AppState) -> AppResult<()> {
    let counts = store::membership_counts(&state.db).await?;
    for status in Status::ALL {
        let n = counts.iter().find(|(s, _)| s == status.as_db()).map_or(0, |(_, n)| *n);
        metrics::gauge!("maru_community_memberships", "status" => status.as_db()).set(n as f64);
    }
    Ok(())
}

#[cfg(test)]
mod search_total_tests {
    use super::*;

    #[test]
    fn a_count_past_the_cap_is_the_cap_as_a_lower_bound() {
        assert_eq!(bounded_total(0, 10), SearchTotal { total: 0, lower_bound: false });
        assert_eq!(bounded_total(10, 10), SearchTotal { total: 10, lower_bound: false });
        assert_eq!(bounded_total(11, 10), SearchTotal { total: 10, lower_bound: true });
    }
}
