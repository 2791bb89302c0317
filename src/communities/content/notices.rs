//! Notices: managers (and admins) write, APPROVED members read; listed pinned first, then
//! newest first. A notice carries up to 10 images (`crate::media::attach`, purpose
//! NOTICE_IMAGE), attached in the transaction that writes it; whoever sees the notice sees
//! them ([`sees_notice`]).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tonic::Code;
use uuid::Uuid;

use super::{not_found, visible};
use crate::caller::Caller;
use crate::communities::access;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::fields::{id, mask, request_id, text, timestamp};
use crate::grpc::pb;
use crate::idempotency::{RequestId, remember, replayed};
use crate::media::attach;
use crate::state::AppState;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 20_000;

/// A stored notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Notice {
    pub id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub body: String,
    pub pinned: bool,
    pub author_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct CreateNotice {
    pub community_id: Uuid,
    pub title: String,
    pub body: String,
    pub pinned: bool,
    /// Attached in the same transaction (`crate::media::attach`).
    pub media_ids: Vec<Uuid>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The fields an update changes (`None` = unchanged).
#[derive(Debug, Default)]
pub struct NoticePatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub pinned: Option<bool>,
    /// The notice's images from now on (detaching the others).
    pub media_ids: Option<Vec<Uuid>>,
}

#[derive(Debug)]
pub struct UpdateNotice {
    pub notice_id: Uuid,
    pub patch: NoticePatch,
}

// ---- conversions

impl TryFrom<pb::CreateNoticeRequest> for CreateNotice {
    type Error = AppError;
    fn try_from(r: pb::CreateNoticeRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CreateNotice {
            community_id: id(&mut v, "community_id", &r.community_id),
            title: text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false),
            body: text(&mut v, "body", &r.body, 1, MAX_BODY_CHARS, true),
            pinned: r.pinned,
            media_ids: attach::parse_ids(&mut v, "media_ids", &r.media_ids),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::UpdateNoticeRequest> for UpdateNotice {
    type Error = AppError;
    fn try_from(r: pb::UpdateNoticeRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let notice_id = id(&mut v, "notice_id", &r.notice_id);
        let mut patch = NoticePatch::default();
        for path in mask(&mut v, r.update_mask.as_ref(), &["title", "body", "pinned", "media_ids"]) {
            match path.as_str() {
                "title" => patch.title = Some(text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false)),
                "body" => patch.body = Some(text(&mut v, "body", &r.body, 1, MAX_BODY_CHARS, true)),
                "pinned" => patch.pinned = Some(r.pinned),
                "media_ids" => patch.media_ids = Some(attach::parse_ids(&mut v, "media_ids", &r.media_ids)),
                _ => {}
            }
        }
        v.finish()?;
        Ok(UpdateNotice { notice_id, patch })
    }
}

/// `n` with its attached `media` (`crate::media::attach::shown`).
pub fn to_pb(n: Notice, media: Vec<pb::Media>) -> pb::Notice {
    pb::Notice {
        id: n.id.to_string(),
        community_id: n.community_id.to_string(),
        title: n.title,
        body: n.body,
        pinned: n.pinned,
        author_id: n.author_id.map(|u| u.to_string()).unwrap_or_default(),
        created_at: Some(timestamp(n.created_at)),
        updated_at: Some(timestamp(n.updated_at)),
        media,
    }
}

// ---- use cases

#[tracing::instrument(name = "notices.create_notice", skip_all, err(level = "debug"))]
pub async fn create_notice(state: &AppState, caller: &Caller, cmd: CreateNotice) -> AppResult<Notice> {
    access::manager(&state.db, caller, cmd.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(n) = replayed(state, &mut tx, "CreateNotice", caller, cmd.request_id.as_ref(), &cmd).await? {
        return Ok(n);
    }
    let notice = store::insert_notice(&mut tx, &cmd, caller.user_id).await?;
    attach::set(&mut tx, caller.user_id, attach::Kind::Notice, notice.id, &cmd.media_ids, "media_ids").await?;
    remember(&mut tx, "CreateNotice", caller, cmd.request_id.as_ref(), &notice).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(notice)
}

#[tracing::instrument(name = "notices.get_notice", skip_all, err(level = "debug"))]
pub async fn get_notice(state: &AppState, caller: &Caller, notice_id: Uuid) -> AppResult<Notice> {
    let notice = store::get_notice(&state.db, notice_id).await?.ok_or_else(|| not_found(Reason::NoticeNotFound))?;
    visible(state, caller, notice.community_id, Reason::NoticeNotFound).await?;
    Ok(notice)
}

/// Whether `caller` sees notice `id`: the reader for `crate::media::attach` (a notice's
/// images are seen by whoever sees the notice: its community's members and admins).
pub fn sees_notice<'a>(state: &'a AppState, caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move {
        match get_notice(state, caller, id).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Code::NotFound | Code::PermissionDenied) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// A page of notices: pinned first, then newest first.
#[tracing::instrument(name = "notices.list_notices", skip_all, err(level = "debug"))]
pub async fn list_notices(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Notice>, String)> {
    let query = ("notices", community_id);
    let page = state.pager.page::<store::Cursor>(page_size, page_token, &query)?;
    access::member(&state.db, caller, community_id).await?;
    let rows = store::list_notices(&state.db, community_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |n| (n.pinned, n.created_at, n.id)))
}

#[tracing::instrument(name = "notices.update_notice", skip_all, err(level = "debug"))]
pub async fn update_notice(state: &AppState, caller: &Caller, cmd: UpdateNotice) -> AppResult<Notice> {
    let notice = store::get_notice(&state.db, cmd.notice_id).await?.ok_or_else(|| not_found(Reason::NoticeNotFound))?;
    visible(state, caller, notice.community_id, Reason::NoticeNotFound).await?;
    access::manager(&state.db, caller, notice.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let updated = store::update_notice(&mut *tx, cmd.notice_id, &cmd.patch)
        .await?
        .ok_or_else(|| not_found(Reason::NoticeNotFound))?;
    if let Some(ids) = &cmd.patch.media_ids {
        attach::set(&mut tx, caller.user_id, attach::Kind::Notice, updated.id, ids, "media_ids").await?;
    }
    crate::db::commit(&state.db, tx).await?;
    Ok(updated)
}

#[tracing::instrument(name = "notices.delete_notice", skip_all, err(level = "debug"))]
pub async fn delete_notice(state: &AppState, caller: &Caller, notice_id: Uuid) -> AppResult<()> {
    let notice = store::get_notice(&state.db, notice_id).await?.ok_or_else(|| not_found(Reason::NoticeNotFound))?;
    visible(state, caller, notice.community_id, Reason::NoticeNotFound).await?;
    access::manager(&state.db, caller, notice.community_id).await?;
    if store::delete_notice(&state.db, notice_id).await? { Ok(()) } else { Err(not_found(Reason::NoticeNotFound)) }
}

/// Every SQL statement of notices.
pub mod store {
    use chrono::{DateTime, Utc};
    use sqlx::{PgConnection, PgExecutor};
    use uuid::Uuid;

    use super::{CreateNotice, Notice, NoticePatch};
    use crate::error::AppResult;

    /// Sort key of ListNotices: (pinned, created_at, id), all descending.
    pub type Cursor = (bool, DateTime<Utc>, Uuid);

    const COLUMNS: &str = "id, community_id, title, body, pinned, author_id, created_at, updated_at";

    pub async fn insert_notice(conn: &mut PgConnection, n: &CreateNotice, author: Uuid) -> AppResult<Notice> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into community_notices (id, community_id, title, body, pinned, author_id)
             values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(n.community_id)
        .bind(&n.title)
        .bind(&n.body)
        .bind(n.pinned)
        .bind(author)
        .fetch_one(conn)
        .await?)
    }

    pub async fn get_notice(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Notice>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from community_notices where id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    pub async fn list_notices(
        db: impl PgExecutor<'_>,
        community_id: Uuid,
        after: Option<Cursor>,
        limit: i64,
    ) -> AppResult<Vec<Notice>> {
        let (pinned, created, id) = after.map_or((None, None, None), |(p, c, i)| (Some(p), Some(c), Some(i)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_notices
              where community_id = $1
                and ($2::boolean is null or (pinned, created_at, id) < ($2, $3, $4))
              order by pinned desc, created_at desc, id desc
              limit $5"
        )))
        .bind(community_id)
        .bind(pinned)
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?)
    }

    pub async fn update_notice(db: impl PgExecutor<'_>, id: Uuid, p: &NoticePatch) -> AppResult<Option<Notice>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update community_notices
                set title = coalesce($2, title), body = coalesce($3, body), pinned = coalesce($4, pinned),
                    updated_at = now()
              where id = $1
          returning {COLUMNS}"
        )))
        .bind(id)
        .bind(&p.title)
        .bind(&p.body)
        .bind(p.pinned)
        .fetch_optional(db)
        .await?)
    }

    pub async fn delete_notice(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
        Ok(sqlx::query("delete from community_notices where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
    }
}
