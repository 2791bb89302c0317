//! Read-only access of guests (accounts' StartGuestSession) to the demo complexes.
//!
//! A guest gets an APPROVED MEMBER membership (note `guest visit`) of each demo complex, so every
//! read of a complex's content admits it through [`super::access`] like any member. It cannot
//! write anything: the policy layer refuses every non-read RPC of a guest (PERMISSION_DENIED
//! `GUEST_READ_ONLY`, `crate::grpc::policy::Policy::admit`) before a handler runs. Guests are left
//! out of member counts and member lists. Converting the guest drops these memberships (a real account asks to
//! join like anyone); deleting it cascades.

use sqlx::PgConnection;
use uuid::Uuid;

use super::cache;
use super::store;
use crate::cache::Cache;
use crate::error::AppResult;

/// The note that marks a guest's memberships.
pub const GUEST_NOTE: &str = "guest visit";

/// Gives `user_id` a membership of every community `refs` names (an id or an apartment registry
/// code); refs that match nothing are skipped. Returns the community ids, in `refs` order.
pub async fn grant(conn: &mut PgConnection, user_id: Uuid, refs: &[String]) -> AppResult<Vec<Uuid>> {
    let ids = store::resolve_community_refs(&mut *conn, refs).await?;
    if ids.len() < refs.len() {
        tracing::warn!(configured = refs.len(), found = ids.len(), "guests.complexes: some entries match no community");
    }
    store::insert_guest_memberships(&mut *conn, user_id, &ids, GUEST_NOTE).await?;
    Ok(ids)
}

/// Drops the guest memberships of `user_id`; returns how many.
pub async fn revoke(conn: &mut PgConnection, user_id: Uuid) -> AppResult<u64> {
    store::delete_guest_memberships(conn, user_id, GUEST_NOTE).await
}

/// After a committed [`revoke`]: the user's home screen shows it at once.
pub async fn revoked(cache: &Cache, user_id: Uuid) {
    cache::members_changed(cache, &[user_id]).await;
}
