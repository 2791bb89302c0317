//! Feed use cases. Who may do what (admin = deployment ADMIN; manager/member = APPROVED role
//! in the post's community):
//!
//! | op | who |
//! |---|---|
//! | create_post | public: any signed-in user; community: members (admins too, as moderators) |
//! | get_post, list_comments, list_likers | anyone who can see the post (below) |
//! | update_post, update_comment | the author only |
//! | delete_post, delete_comment | the author, a manager of the post's community, an admin |
//! | set_post_status | admins; managers of the post's community (they reach suspended posts of it too) |
//! | create_comment, like, unlike | signed-in users who can see the post |
//! | list_posts{community} | members and admins (PERMISSION_DENIED `MEMBERSHIP_REQUIRED` otherwise) |
//! | list_posts{author, tag, query} | anyone: public posts, plus posts of the caller's communities |
//! | list_home_feed | signed-in users: public posts of the people they follow |
//!
//! Who can see a post is decided by [`super::visibility`] (one rule for these use cases, the
//! cache and the lists): a community post its members and admins, a SUSPENDED post its author
//! and admins; anyone else gets NOT_FOUND `POST_NOT_FOUND` (an id leaks nothing).
//!
//! Decided by the database: one like per user and target (primary keys; `on conflict do
//! nothing`), counts counted from rows, edits conditional on the etag's version.

use std::collections::HashSet;

use futures::future::BoxFuture;
use tonic::Code;
use uuid::Uuid;

use super::model::{
    Comment, CommentView, CreateComment, CreatePost, Liker, Post, PostFilter, PostStatus, PostView, Target, UpdatePost,
};
use super::store::{self, CommentCursor, LikerCursor, PostCursor};
use super::visibility::{self, Reader, sees_comment};
use crate::caller::Caller;
use crate::communities::access::{self, Access};
use crate::error::{AppError, AppResult, Reason};
use crate::idempotency::{RequestId, remember, replayed};
use crate::media::attach;
use crate::state::AppState;

pub fn post_not_found() -> AppError {
    AppError::not_found(Reason::PostNotFound, "post")
}

/// A post the caller may see: their access to its community (if any) and whether they like it.
pub struct Seen {
    pub post: Post,
    pub access: Option<Access>,
    /// Read only when asked for (`likes`), concurrently with the (cached) membership.
    pub liked_by_me: bool,
}

/// NOT_FOUND `POST_NOT_FOUND` unless `post` exists and the caller [`visibility::sees`] it. With `likes`,
/// also reads whether the caller likes it. The membership decision of a community post comes
/// from the cache ([`access::standing_cached`]), concurrently with the like's query, so a post
/// detail costs at most one database round trip (none for an anonymous reader of a public post).
pub async fn check_visible(
    state: &AppState,
    caller: Option<&Caller>,
    post: Option<Post>,
    likes: bool,
) -> AppResult<Seen> {
    let post = post.ok_or_else(post_not_found)?;
    let (access, liked) = match (post.community_id, caller) {
        (None, Some(who)) if likes => (None, !store::liked_posts(&state.db, who.user_id, &[post.id]).await?.is_empty()),
        (None, _) | (Some(_), None) => (None, false),
        (Some(c), Some(who)) => {
            // The membership decision from the cache, the like from the database, side by side.
            let liked = async {
                if likes { store::liked_posts(&state.db, who.user_id, &[post.id]).await } else { Ok(Vec::new()) }
            };
            let (standing, liked) = tokio::join!(access::standing_cached(state, who, c), liked);
            match standing {
                Ok(a) => (Some(a), !liked?.is_empty()),
                Err(e) if e.code() == Code::NotFound => return Err(post_not_found()),
                Err(e) => return Err(e),
            }
        }
    };
    if !visibility::sees(Reader::of(caller), &post, access.is_some_and(|a| a.is_member())) {
        return Err(post_not_found());
    }
    Ok(Seen { post, access, liked_by_me: liked })
}

pub fn comment_not_found() -> AppError {
    AppError::not_found(Reason::CommentNotFound, "comment")
}

/// A post the caller may see, with their access to its community (if any).
pub async fn visible_post(state: &AppState, caller: Option<&Caller>, id: Uuid) -> AppResult<(Post, Option<Access>)> {
    let post = store::get_post(&state.db, id).await?;
    let seen = check_visible(state, caller, post, false).await?;
    Ok((seen.post, seen.access))
}

/// Whether `caller` sees post `id`: the feed's reader for `crate::media::attach` (media
/// attached to a post are shown to whoever sees the post).
pub fn sees_post<'a>(state: &'a AppState, caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move {
        match visible_post(state, Some(caller), id).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Code::NotFound | Code::PermissionDenied) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

async fn with_likes(state: &AppState, caller: Option<&Caller>, posts: Vec<Post>) -> AppResult<Vec<PostView>> {
    let liked: HashSet<Uuid> = match caller {
        Some(c) if !posts.is_empty() => {
            let ids: Vec<Uuid> = posts.iter().map(|p| p.id).collect();
            store::liked_posts(&state.db, c.user_id, &ids).await?.into_iter().collect()
        }
        _ => HashSet::new(),
    };
    Ok(posts.into_iter().map(|p| PostView { liked_by_me: liked.contains(&p.id), post: p }).collect())
}

async fn one_with_likes(state: &AppState, caller: Option<&Caller>, post: Post) -> AppResult<PostView> {
    with_likes(state, caller, vec![post]).await?.pop().ok_or_else(post_not_found)
}

async fn comments_with_likes(state: &AppState, caller: &Caller, rows: Vec<Comment>) -> AppResult<Vec<CommentView>> {
    let liked: HashSet<Uuid> = if rows.is_empty() {
        HashSet::new()
    } else {
        let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
        store::liked_comments(&state.db, caller.user_id, &ids).await?.into_iter().collect()
    };
    Ok(rows.into_iter().map(|c| CommentView { liked_by_me: liked.contains(&c.id), comment: c }).collect())
}

#[tracing::instrument(name = "feed.create_post", skip_all, err(level = "debug"))]
pub async fn create_post(state: &AppState, caller: &Caller, cmd: CreatePost) -> AppResult<PostView> {
    if let Some(c) = cmd.community_id {
        access::member(&state.db, caller, c).await?;
    }
    // The answer is read inside the transaction: once it commits nothing can fail, so a
    // committed post is never answered with a retryable error (issue 14, point 6).
    let mut tx = crate::db::begin(&state.db).await?;
    let (id, created) =
        match replayed::<Uuid>(state, &mut tx, "CreatePost", caller, cmd.request_id.as_ref(), &cmd).await? {
            Some(id) => (id, false),
            None => {
                // A post whose author is gone would be hidden at once: refuse it before
                // writing, never answer an error after the row was written.
                if !store::lock_live_author(&mut tx, caller.user_id).await? {
                    return Err(AppError::unauthenticated(Reason::SessionEnded, "the account was deleted"));
                }
                let id = store::insert_post(&mut tx, &cmd, caller.user_id).await?;
                attach::set(&mut tx, caller.user_id, attach::Kind::Post, id, &cmd.media_ids, "media_ids").await?;
                remember(&mut tx, "CreatePost", caller, cmd.request_id.as_ref(), &id).await?;
                (id, true)
            }
        };
    let post = store::get_post(&mut *tx, id).await?.ok_or_else(post_not_found)?;
    let liked_by_me = !created && !store::liked_posts(&mut *tx, caller.user_id, &[id]).await?.is_empty();
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_posts_created_total").increment(1);
        super::cache::post_listed(state, cmd.community_id).await;
    }
    Ok(PostView { post, liked_by_me })
}

#[tracing::instrument(name = "feed.get_post", skip_all, err(level = "debug"))]
pub async fn get_post(
    state: &AppState,
    caller: Option<&Caller>,
    id: Uuid,
    client_ip: Option<&str>,
) -> AppResult<PostView> {
    let post = super::cache::get_post_cached(state, id).await?;
    let seen = check_visible(state, caller, post, true).await?;
    crate::views::record(state, &super::views::TARGET, seen.post.id, caller.map(|c| c.user_id), client_ip).await;
    Ok(PostView { liked_by_me: seen.liked_by_me, post: seen.post })
}

#[tracing::instrument(name = "feed.update_post", skip_all, err(level = "debug"))]
pub async fn update_post(state: &AppState, caller: &Caller, cmd: UpdatePost) -> AppResult<PostView> {
    let (post, _) = visible_post(state, Some(caller), cmd.post_id).await?;
    if post.author_id != caller.user_id {
        return Err(AppError::permission_denied(Reason::PostAuthorRequired, "only the author may edit this post"));
    }
    // The answer is read inside the transaction (see `create_post`).
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::update_post(&mut *tx, post.id, &cmd.patch, cmd.expected_version).await? {
        let now = store::get_post(&mut *tx, post.id).await?.ok_or_else(post_not_found)?;
        return Err(AppError::refused(Code::Aborted, Reason::EtagMismatch, "the post changed since it was read")
            .with_meta("etag", now.etag()));
    }
    if let Some(ids) = &cmd.patch.media_ids {
        attach::set(&mut tx, caller.user_id, attach::Kind::Post, post.id, ids, "media_ids").await?;
    }
    let updated = store::get_post(&mut *tx, post.id).await?.ok_or_else(post_not_found)?;
    let liked_by_me = !store::liked_posts(&mut *tx, caller.user_id, &[post.id]).await?.is_empty();
    crate::db::commit(&state.db, tx).await?;
    super::cache::post_changed(state, &post).await;
    Ok(PostView { post: updated, liked_by_me })
}

#[tracing::instrument(name = "feed.delete_post", skip_all, err(level = "debug"))]
pub async fn delete_post(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let (post, access) = visible_post(state, Some(caller), id).await?;
    let may = post.author_id == caller.user_id || caller.is_admin() || access.is_some_and(|a| a.can_manage());
    if !may {
        return Err(AppError::permission_denied(
            Reason::PostAuthorRequired,
            "only the author, a community manager or an admin may delete this post",
        ));
    }
    if !store::delete_post(&state.db, id).await? {
        return Err(post_not_found());
    }
    super::cache::post_changed(state, &post).await;
    Ok(())
}

#[tracing::instrument(name = "feed.set_post_status", skip_all, err(level = "debug"))]
pub async fn set_post_status(state: &AppState, caller: &Caller, id: Uuid, status: PostStatus) -> AppResult<PostView> {
    // Moderators must reach suspended posts too, so this does not go through `visible_post`.
    let post = store::get_post(&state.db, id).await?.ok_or_else(post_not_found)?;
    match post.community_id {
        Some(c) if !caller.is_admin() => match access::manager(&state.db, caller, c).await {
            Ok(_) => {}
            // Members who see the post learn they may not moderate it; others do not learn of it.
            Err(e)
                if e.reason() == Reason::ManagerRequired && visibility::sees(Reader::of(Some(caller)), &post, true) =>
            {
                return Err(e);
            }
            Err(_) => return Err(post_not_found()),
        },
        Some(_) => {}
        None => {
            if !visibility::sees(Reader::of(Some(caller)), &post, false) {
                return Err(post_not_found());
            }
            caller.require_admin()?;
        }
    }
    if !store::set_post_status(&state.db, id, status).await? {
        return Err(post_not_found());
    }
    super::cache::post_changed(state, &post).await;
    let post = store::get_post(&state.db, id).await?.ok_or_else(post_not_found)?;
    one_with_likes(state, Some(caller), post).await
}

/// A page of posts for one filter, newest first.
#[tracing::instrument(name = "feed.list_posts", skip_all, err(level = "debug"))]
pub async fn list_posts(
    state: &AppState,
    caller: Option<&Caller>,
    filter: PostFilter,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<PostView>, String)> {
    let query = ("posts", &filter);
    let page = state.pager.page::<PostCursor>(page_size, page_token, &query)?;
    let community = match (&filter, caller) {
        (PostFilter::Community(c), Some(who)) => Some((*c, who)),
        (PostFilter::Community(_), None) => {
            return Err(AppError::unauthenticated(Reason::TokenMissing, "community feeds require a bearer token"));
        }
        _ => None,
    };
    let reader = Reader::of(caller);
    // A community page is read (from the cache, mostly) before the membership is checked (from
    // the cache too, concurrently with `liked_by_me`); nothing is returned before the check.
    let rows = super::cache::list_posts_cached(state, reader, &filter, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |p| (p.created_at, p.id));
    let Some((c, who)) = community else {
        // Read with the visibility rule in SQL.
        return Ok((with_likes(state, caller, rows).await?, next));
    };
    let ids: Vec<Uuid> = rows.iter().map(|p| p.id).collect();
    // The membership decision from the cache, the likes from the database, side by side.
    let liked =
        async { if ids.is_empty() { Ok(Vec::new()) } else { store::liked_posts(&state.db, who.user_id, &ids).await } };
    let (access, liked) = tokio::join!(access::standing_cached(state, who, c), liked);
    let access = access.and_then(access::require_member)?;
    let liked: HashSet<Uuid> = liked?.into_iter().collect();
    // The page was cached as every reader's: this reader's part of it.
    let rows = rows.into_iter().filter(|p| visibility::sees(reader, p, access.is_member()));
    Ok((rows.map(|p| PostView { liked_by_me: liked.contains(&p.id), post: p }).collect(), next))
}

#[tracing::instrument(name = "feed.list_home_feed", skip_all, err(level = "debug"))]
pub async fn list_home_feed(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<PostView>, String)> {
    let query = ("home", caller.user_id);
    let page = state.pager.page::<PostCursor>(page_size, page_token, &query)?;
    let rows = store::list_posts(&state.db, Reader::of(Some(caller)), None, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |p| (p.created_at, p.id));
    Ok((with_likes(state, Some(caller), rows).await?, next))
}

#[tracing::instrument(name = "feed.create_comment", skip_all, err(level = "debug"))]
pub async fn create_comment(state: &AppState, caller: &Caller, mut cmd: CreateComment) -> AppResult<CommentView> {
    let (post, _) = visible_post(state, Some(caller), cmd.post_id).await?;
    if let Some(parent) = cmd.parent_id {
        let p = store::get_comment(&state.db, parent)
            .await?
            .filter(|c| c.post_id == post.id && sees_comment(Reader::of(Some(caller)), c))
            .ok_or_else(|| {
                AppError::not_found(Reason::CommentNotFound, "parent comment").with_meta("field", "parent_id")
            })?;
        // One level of replies: a reply to a reply joins the same thread.
        cmd.parent_id = Some(p.parent_id.unwrap_or(p.id));
    }
    // Read inside the transaction, as in `create_post`.
    let mut tx = crate::db::begin(&state.db).await?;
    let (id, created) =
        match replayed::<Uuid>(state, &mut tx, "CreateComment", caller, cmd.request_id.as_ref(), &cmd).await? {
            Some(id) => (id, false),
            None => {
                let id = store::insert_comment(&mut tx, &cmd, caller.user_id).await?;
                remember(&mut tx, "CreateComment", caller, cmd.request_id.as_ref(), &id).await?;
                (id, true)
            }
        };
    let c = store::get_comment(&mut *tx, id).await?.ok_or_else(comment_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_comments_created_total").increment(1);
        super::cache::post_changed(state, &post).await;
    }
    Ok(CommentView { comment: c, liked_by_me: false })
}

#[tracing::instrument(name = "feed.list_comments", skip_all, err(level = "debug"))]
pub async fn list_comments(
    state: &AppState,
    caller: Option<&Caller>,
    post_id: Uuid,
    parent: Option<Uuid>,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<CommentView>, String)> {
    let query = ("comments", post_id, parent);
    let page = state.pager.page::<CommentCursor>(page_size, page_token, &query)?;
    let (post, _) = visible_post(state, caller, post_id).await?;
    if let Some(p) = parent {
        store::get_comment(&state.db, p)
            .await?
            .filter(|c| c.post_id == post.id && sees_comment(Reader::of(caller), c))
            .ok_or_else(comment_not_found)?;
    }
    let rows =
        store::list_comments(&state.db, Reader::of(caller), post.id, parent, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |c| (c.created_at, c.id));
    let rows = match caller {
        Some(c) => comments_with_likes(state, c, rows).await?,
        None => rows.into_iter().map(|c| CommentView { comment: c, liked_by_me: false }).collect(),
    };
    Ok((rows, next))
}

/// A comment the caller may see, with its post and the caller's access to the community.
pub(super) async fn visible_comment(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> AppResult<(Comment, Post, Option<Access>)> {
    let c = store::get_comment(&state.db, id)
        .await?
        .filter(|c| sees_comment(Reader::of(Some(caller)), c))
        .ok_or_else(comment_not_found)?;
    let (post, access) = match visible_post(state, Some(caller), c.post_id).await {
        Ok(v) => v,
        Err(e) if e.code() == Code::NotFound => return Err(comment_not_found()),
        Err(e) => return Err(e),
    };
    Ok((c, post, access))
}

#[tracing::instrument(name = "feed.update_comment", skip_all, err(level = "debug"))]
pub async fn update_comment(state: &AppState, caller: &Caller, id: Uuid, text: String) -> AppResult<CommentView> {
    let (c, post, _) = visible_comment(state, caller, id).await?;
    if c.author_id != caller.user_id {
        return Err(AppError::permission_denied(
            Reason::CommentAuthorRequired,
            "only the author may edit this comment",
        ));
    }
    // The answer is read inside the transaction (see `create_post`).
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::update_comment(&mut *tx, id, &text).await? {
        return Err(comment_not_found());
    }
    let comment = store::get_comment(&mut *tx, id).await?.ok_or_else(comment_not_found)?;
    let liked_by_me = !store::liked_comments(&mut *tx, caller.user_id, &[id]).await?.is_empty();
    crate::db::commit(&state.db, tx).await?;
    super::cache::post_changed(state, &post).await;
    Ok(CommentView { comment, liked_by_me })
}

#[tracing::instrument(name = "feed.delete_comment", skip_all, err(level = "debug"))]
pub async fn delete_comment(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let (c, post, access) = visible_comment(state, caller, id).await?;
    let may = c.author_id == caller.user_id || caller.is_admin() || access.is_some_and(|a| a.can_manage());
    if !may {
        return Err(AppError::permission_denied(
            Reason::CommentAuthorRequired,
            "only the author, a community manager or an admin may delete this comment",
        ));
    }
    if !store::delete_comment(&state.db, id).await? {
        return Err(comment_not_found());
    }
    super::cache::post_changed(state, &post).await;
    Ok(())
}

/// The post a like target belongs to, if the caller may see it.
async fn target_post(state: &AppState, caller: Option<&Caller>, target: Target) -> AppResult<Post> {
    match target {
        Target::Post(id) => Ok(visible_post(state, caller, id).await?.0),
        Target::Comment(id) => {
            let c = store::get_comment(&state.db, id)
                .await?
                .filter(|c| sees_comment(Reader::of(caller), c))
                .ok_or_else(comment_not_found)?;
            match visible_post(state, caller, c.post_id).await {
                Ok((p, _)) => Ok(p),
                Err(e) if e.code() == Code::NotFound => Err(comment_not_found()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Likes `target`; `(created, like count)`. A retry with the same `request_id` gets the first
/// answer (`created: true`), not a no-op.
#[tracing::instrument(name = "feed.like", skip_all, err(level = "debug"))]
pub async fn like(
    state: &AppState,
    caller: &Caller,
    target: Target,
    request_id: Option<&RequestId>,
) -> AppResult<(bool, i64)> {
    let post = target_post(state, Some(caller), target).await?;
    let (created, count) = if request_id.is_some() {
        // The key is claimed in the like's own transaction: a retry gets the first answer.
        let mut tx = crate::db::begin(&state.db).await?;
        if let Some(first) = replayed(state, &mut tx, "Like", caller, request_id, &target).await? {
            return Ok(first);
        }
        let created = store::insert_like(&mut *tx, target, caller.user_id).await?;
        let count = store::count_likes(&mut *tx, target).await?;
        remember(&mut tx, "Like", caller, request_id, &(created, count)).await?;
        crate::db::commit(&state.db, tx).await?;
        (created, count)
    } else {
        // Without a key, no transaction: the insert is one statement (the unique row decides).
        let created = store::insert_like(&state.db, target, caller.user_id).await?;
        (created, store::count_likes(&state.db, target).await?)
    };
    if created {
        match target {
            Target::Post(_) => metrics::counter!("maru_post_likes_total").increment(1),
            Target::Comment(_) => metrics::counter!("maru_comment_likes_total").increment(1),
        }
        super::cache::post_changed(state, &post).await;
    }
    Ok((created, count))
}

/// Removes the caller's like; `(removed, like count)`.
#[tracing::instrument(name = "feed.unlike", skip_all, err(level = "debug"))]
pub async fn unlike(state: &AppState, caller: &Caller, target: Target) -> AppResult<(bool, i64)> {
    let post = target_post(state, Some(caller), target).await?;
    let removed = store::delete_like(&state.db, target, caller.user_id).await?;
    if removed {
        super::cache::post_changed(state, &post).await;
    }
    Ok((removed, store::count_likes(&state.db, target).await?))
}

#[tracing::instrument(name = "feed.list_likers", skip_all, err(level = "debug"))]
pub async fn list_likers(
    state: &AppState,
    caller: Option<&Caller>,
    target: Target,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Liker>, String)> {
    let query = ("likers", target);
    let page = state.pager.page::<LikerCursor>(page_size, page_token, &query)?;
    target_post(state, caller, target).await?;
    let rows = store::list_likers(&state.db, target, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |l| (l.liked_at, l.user_id)))
}
