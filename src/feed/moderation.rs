//! What moderation (`crate::reports`) needs of the feed: whose a post or comment is, as the
//! reporter may see it, and the suspension of posts inside the moderation's transaction (the
//! same status SetPostStatus sets), with the cache invalidation after it commits.

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::PostStatus;
use super::{ops, store};
use crate::caller::Caller;
use crate::error::AppResult;
use crate::state::AppState;

/// The author of post `id`; NOT_FOUND `POST_NOT_FOUND` unless `caller` may see it.
pub async fn post_author(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<Uuid> {
    Ok(ops::visible_post(state, Some(caller), id).await?.0.author_id)
}

/// The author of comment `id`; NOT_FOUND `COMMENT_NOT_FOUND` unless `caller` may see its post.
pub async fn comment_author(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<Uuid> {
    let c = store::get_comment(&state.db, id).await?.ok_or_else(ops::comment_not_found)?;
    match ops::visible_post(state, Some(caller), c.post_id).await {
        Ok(_) => Ok(c.author_id),
        Err(e) if e.code() == tonic::Code::NotFound => Err(ops::comment_not_found()),
        Err(e) => Err(e),
    }
}

/// Suspends post `id` in `conn`'s transaction; its status before (`None`: no such post).
pub async fn suspend_post(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<String>> {
    let Some(p) = store::get_post(&mut *conn, id).await? else { return Ok(None) };
    store::set_post_status(&mut *conn, id, PostStatus::Suspended).await?;
    Ok(Some(p.status))
}

/// Gives post `id` back the status `before` (as [`suspend_post`] returned it).
pub async fn restore_post(conn: &mut PgConnection, id: Uuid, before: &str) -> AppResult<()> {
    store::set_post_status(conn, id, PostStatus::from_db(before)).await?;
    Ok(())
}

/// After a moderation transaction that changed post `id` committed: its cached detail and pages.
pub async fn post_moderated(state: &AppState, id: Uuid) {
    if let Ok(Some(p)) = store::get_post(&state.db, id).await {
        super::cache::post_changed(state, &p).await;
    }
}
