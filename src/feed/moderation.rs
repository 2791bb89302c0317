//! What moderation (`crate::reports`) needs of the feed: whose a post or comment is, as the
//! reporter may see it, and the suspension of posts (the same status SetPostStatus sets) and
//! hiding of comments inside the moderation's transaction, with the cache invalidation after it
//! commits.

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

/// The author of comment `id`; NOT_FOUND `COMMENT_NOT_FOUND` unless `caller` may see it and its
/// post.
pub async fn comment_author(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<Uuid> {
    Ok(ops::visible_comment(state, caller, id).await?.0.author_id)
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

/// The status strings of a comment for [`suspend_comment`] / [`restore_comment`].
const COMMENT_SHOWN: &str = "VISIBLE";
const COMMENT_HIDDEN: &str = "SUSPENDED";

/// Hides comment `id` in `conn`'s transaction (seen by its author and admins only); what it
/// was before (`VISIBLE` or `SUSPENDED`), `None`: no such comment.
pub async fn suspend_comment(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<String>> {
    let Some(c) = store::get_comment(&mut *conn, id).await? else { return Ok(None) };
    store::set_comment_suspended(&mut *conn, id, true).await?;
    Ok(Some(if c.suspended { COMMENT_HIDDEN } else { COMMENT_SHOWN }.to_owned()))
}

/// Gives comment `id` back the state `before` (as [`suspend_comment`] returned it).
pub async fn restore_comment(conn: &mut PgConnection, id: Uuid, before: &str) -> AppResult<()> {
    store::set_comment_suspended(conn, id, before == COMMENT_HIDDEN).await?;
    Ok(())
}

/// After a moderation transaction that hid or showed comment `id` committed: its post's cached
/// detail (the comment count) and pages.
pub async fn comment_moderated(state: &AppState, id: Uuid) {
    if let Ok(Some(c)) = store::get_comment(&state.db, id).await {
        post_moderated(state, c.post_id).await;
    }
}
