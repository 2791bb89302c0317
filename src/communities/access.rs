//! Who may act in a community. Every community RPC goes through these helpers, so the answer
//! to "may this caller do that here?" is decided in one place:
//!
//! | caller | `member` | `manager` | `resident` |
//! |---|---|---|---|
//! | not signed in | UNAUTHENTICATED (by `grpc::caller`) | same | same |
//! | unknown community | NOT_FOUND `COMMUNITY_NOT_FOUND` | same | same |
//! | no membership, or PENDING/REJECTED | PERMISSION_DENIED `MEMBERSHIP_REQUIRED` | same | same |
//! | APPROVED MEMBER | ok | PERMISSION_DENIED `MANAGER_REQUIRED` | ok |
//! | APPROVED MANAGER | ok | ok | ok |
//! | deployment ADMIN without membership | ok (moderator) | ok | PERMISSION_DENIED `MEMBERSHIP_REQUIRED` |
//!
//! `resident` is for acts a person does in their own name (file a complaint, vote): an admin
//! must really be a member for those.

use sqlx::PgExecutor;
use uuid::Uuid;

pub use super::model::MemberRole;
use super::{cache, store};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason};
use crate::state::AppState;

/// What the caller is in a community, once allowed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub community_id: Uuid,
    pub user_id: Uuid,
    /// The caller's APPROVED membership role; `None` for an admin without membership.
    pub role: Option<MemberRole>,
    pub is_admin: bool,
}

impl Access {
    /// Managers of this community and deployment admins.
    pub fn can_manage(&self) -> bool {
        self.is_admin || self.role == Some(MemberRole::Manager)
    }
    /// APPROVED members (managers included), not admins as such.
    pub fn is_member(&self) -> bool {
        self.role.is_some()
    }
}

/// The caller's standing in `community_id`: NOT_FOUND for an unknown community, otherwise
/// their APPROVED role (if any). Does not refuse anything by itself.
pub async fn standing<'e>(db: impl PgExecutor<'e>, caller: &Caller, community_id: Uuid) -> AppResult<Access> {
    standing_from(caller, community_id, store::standing_role(db, community_id, caller.user_id).await?)
}

/// [`standing`] for reads, through Redis ([`super::cache`]: one round trip on a hit, never stale
/// once a membership write has returned; PostgreSQL while Redis is unavailable). Writes that
/// must decide under a lock of the community row keep using [`standing`] in their transaction.
pub async fn standing_cached(state: &AppState, caller: &Caller, community_id: Uuid) -> AppResult<Access> {
    let user_id = caller.user_id;
    let db = &state.db;
    // Boxed: the cache's future nested in every use case that checks a post's visibility
    // overflows the compiler's layout query depth otherwise.
    let role: Option<String> = Box::pin(state.cache.get_or_load_scoped(
        cache::STANDING_CACHE,
        &cache::standing_scopes(user_id),
        &cache::standing_base(community_id, user_id),
        cache::STANDING_TTL,
        // An unknown community is an error, so it is never cached.
        || async {
            store::standing_role(db, community_id, user_id)
                .await?
                .ok_or_else(|| AppError::not_found(Reason::CommunityNotFound, "community"))
        },
    ))
    .await?;
    standing_from(caller, community_id, Some(role))
}

/// [`standing`] from rows read elsewhere (a query that reads the standing together with other
/// rows, to save a round trip): `None` when the community does not exist, else the caller's
/// APPROVED role in it, if any.
pub fn standing_from(caller: &Caller, community_id: Uuid, role: Option<Option<String>>) -> AppResult<Access> {
    let Some(role) = role else {
        return Err(AppError::not_found(Reason::CommunityNotFound, "community"));
    };
    Ok(Access {
        community_id,
        user_id: caller.user_id,
        role: role.as_deref().and_then(MemberRole::from_db),
        is_admin: caller.is_admin(),
    })
}

/// APPROVED members of the community, and admins (as moderators).
pub async fn member<'e>(db: impl PgExecutor<'e>, caller: &Caller, community_id: Uuid) -> AppResult<Access> {
    require_member(standing(db, caller, community_id).await?)
}

/// [`member`]'s decision on a standing already read.
pub fn require_member(access: Access) -> AppResult<Access> {
    if access.is_member() || access.is_admin { Ok(access) } else { Err(membership_required()) }
}

/// Managers of the community, and admins.
pub async fn manager<'e>(db: impl PgExecutor<'e>, caller: &Caller, community_id: Uuid) -> AppResult<Access> {
    let access = standing(db, caller, community_id).await?;
    if access.can_manage() {
        Ok(access)
    } else if access.is_member() || access.is_admin {
        Err(AppError::permission_denied(Reason::ManagerRequired, "community manager role required"))
    } else {
        Err(membership_required())
    }
}

/// APPROVED members acting in their own name (admins too only if they are members).
pub async fn resident<'e>(db: impl PgExecutor<'e>, caller: &Caller, community_id: Uuid) -> AppResult<Access> {
    let access = standing(db, caller, community_id).await?;
    if access.is_member() { Ok(access) } else { Err(membership_required()) }
}

fn membership_required() -> AppError {
    AppError::permission_denied(Reason::MembershipRequired, "an approved membership of this community is required")
}
