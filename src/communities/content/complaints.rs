//! Complaints (민원). An APPROVED member files one in their own name; the filer, the
//! community's managers and admins see it (anyone else: NOT_FOUND); managers work it through
//!
//! ```text
//! RECEIVED ──► IN_PROGRESS ──► RESOLVED
//!    │                    └──► REJECTED
//!    └──► WITHDRAWN   (the filer, while RECEIVED)
//! ```
//!
//! and nothing else. Every transition is one conditional UPDATE on the expected current status,
//! so of two concurrent updates from the same status exactly one wins and the other gets
//! FAILED_PRECONDITION. The filer attaches up to 10 photos when filing
//! (`crate::media::attach`, purpose COMPLAINT_IMAGE); they are seen exactly by who sees the
//! complaint ([`sees_complaint`]). Transitions are counted in `maru_complaint_transitions_total{to}`
//! (`to` = received (filed), in_progress, resolved, rejected, withdrawn).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tonic::Code;
use uuid::Uuid;

use super::{not_found, visible};
use crate::caller::Caller;
use crate::communities::access;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::fields::{enum_value, id, request_id, text, timestamp};
use crate::grpc::pb;
use crate::idempotency::{RequestId, remember, replayed};
use crate::media::attach;
use crate::state::AppState;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 10_000;
pub const MAX_CATEGORY_CHARS: usize = 50;
pub const MAX_REPLY_CHARS: usize = 5_000;

/// Where a complaint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Received,
    InProgress,
    Resolved,
    Rejected,
    Withdrawn,
}

impl Status {
    pub const ALL: [Status; 5] =
        [Status::Received, Status::InProgress, Status::Resolved, Status::Rejected, Status::Withdrawn];

    pub fn as_db(self) -> &'static str {
        match self {
            Status::Received => "RECEIVED",
            Status::InProgress => "IN_PROGRESS",
            Status::Resolved => "RESOLVED",
            Status::Rejected => "REJECTED",
            Status::Withdrawn => "WITHDRAWN",
        }
    }
    pub fn from_db(s: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|x| x.as_db() == s)
    }
    /// The metric label of a transition into this status.
    pub fn label(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::InProgress => "in_progress",
            Status::Resolved => "resolved",
            Status::Rejected => "rejected",
            Status::Withdrawn => "withdrawn",
        }
    }
    /// The only status a manager may move a complaint to `self` from (UpdateComplaintStatus);
    /// `None`: no manager transition leads to `self`.
    pub fn managed_from(self) -> Option<Status> {
        match self {
            Status::InProgress => Some(Status::Received),
            Status::Resolved | Status::Rejected => Some(Status::InProgress),
            Status::Received | Status::Withdrawn => None,
        }
    }
    pub fn to_pb(self) -> pb::ComplaintStatus {
        match self {
            Status::Received => pb::ComplaintStatus::Received,
            Status::InProgress => pb::ComplaintStatus::InProgress,
            Status::Resolved => pb::ComplaintStatus::Resolved,
            Status::Rejected => pb::ComplaintStatus::Rejected,
            Status::Withdrawn => pb::ComplaintStatus::Withdrawn,
        }
    }
    /// `Ok(None)` for UNSPECIFIED.
    pub fn from_pb(raw: i32) -> Result<Option<Self>, String> {
        Ok(match enum_value::<pb::ComplaintStatus>(raw, "complaint status")? {
            pb::ComplaintStatus::Unspecified => None,
            pb::ComplaintStatus::Received => Some(Status::Received),
            pb::ComplaintStatus::InProgress => Some(Status::InProgress),
            pb::ComplaintStatus::Resolved => Some(Status::Resolved),
            pb::ComplaintStatus::Rejected => Some(Status::Rejected),
            pb::ComplaintStatus::Withdrawn => Some(Status::Withdrawn),
        })
    }
}

/// A stored complaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Complaint {
    pub id: Uuid,
    pub community_id: Uuid,
    pub filed_by: Option<Uuid>,
    pub title: String,
    pub body: String,
    pub category: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub reply: String,
    pub replied_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<String> for Status {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Status::from_db(&s).ok_or_else(|| format!("unknown complaint status {s}"))
    }
}

#[derive(Debug, Serialize)]
pub struct FileComplaint {
    pub community_id: Uuid,
    pub title: String,
    pub body: String,
    pub category: String,
    /// Attached in the same transaction (`crate::media::attach`).
    pub media_ids: Vec<Uuid>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug)]
pub struct ListComplaints {
    pub community_id: Uuid,
    pub status: Option<Status>,
    pub page_size: i32,
    pub page_token: String,
}

#[derive(Debug)]
pub struct UpdateStatus {
    pub complaint_id: Uuid,
    pub status: Status,
    /// Empty = keep the current reply.
    pub reply: String,
}

// ---- conversions

impl TryFrom<pb::FileComplaintRequest> for FileComplaint {
    type Error = AppError;
    fn try_from(r: pb::FileComplaintRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = FileComplaint {
            community_id: id(&mut v, "community_id", &r.community_id),
            title: text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false),
            body: text(&mut v, "body", &r.body, 1, MAX_BODY_CHARS, true),
            category: text(&mut v, "category", &r.category, 0, MAX_CATEGORY_CHARS, false),
            media_ids: attach::parse_ids(&mut v, "media_ids", &r.media_ids),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::ListComplaintsRequest> for ListComplaints {
    type Error = AppError;
    fn try_from(r: pb::ListComplaintsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let status = v.check("status", Status::from_pb(r.status)).flatten();
        v.finish()?;
        Ok(ListComplaints { community_id, status, page_size: r.page_size, page_token: r.page_token })
    }
}

impl TryFrom<pb::UpdateComplaintStatusRequest> for UpdateStatus {
    type Error = AppError;
    fn try_from(r: pb::UpdateComplaintStatusRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let complaint_id = id(&mut v, "complaint_id", &r.complaint_id);
        let status = match Status::from_pb(r.status) {
            Ok(Some(s)) => s,
            Ok(None) => {
                v.add("status", "is required");
                Status::Received
            }
            Err(e) => {
                v.add("status", e);
                Status::Received
            }
        };
        let reply = text(&mut v, "reply", &r.reply, 0, MAX_REPLY_CHARS, true);
        v.finish()?;
        Ok(UpdateStatus { complaint_id, status, reply })
    }
}

/// `c` with its attached `media` (`crate::media::attach::shown`).
pub fn to_pb(c: Complaint, media: Vec<pb::Media>) -> pb::Complaint {
    pb::Complaint {
        id: c.id.to_string(),
        community_id: c.community_id.to_string(),
        filed_by: c.filed_by.map(|u| u.to_string()).unwrap_or_default(),
        title: c.title,
        body: c.body,
        category: c.category,
        status: c.status.to_pb() as i32,
        reply: c.reply,
        replied_at: c.replied_at.map(timestamp),
        created_at: Some(timestamp(c.created_at)),
        updated_at: Some(timestamp(c.updated_at)),
        media,
    }
}

fn transition(to: Status) {
    metrics::counter!("maru_complaint_transitions_total", "to" => to.label()).increment(1);
}

// ---- use cases

#[tracing::instrument(name = "complaints.file_complaint", skip_all, err(level = "debug"))]
pub async fn file_complaint(state: &AppState, caller: &Caller, cmd: FileComplaint) -> AppResult<Complaint> {
    access::resident(&state.db, caller, cmd.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(c) = replayed(state, &mut tx, "FileComplaint", caller, cmd.request_id.as_ref(), &cmd).await? {
        return Ok(c);
    }
    let complaint = store::insert_complaint(&mut tx, &cmd, caller.user_id).await?;
    attach::set(&mut tx, caller.user_id, attach::Kind::Complaint, complaint.id, &cmd.media_ids, "media_ids").await?;
    remember(&mut tx, "FileComplaint", caller, cmd.request_id.as_ref(), &complaint).await?;
    crate::db::commit(&state.db, tx).await?;
    transition(Status::Received);
    tracing::info!(complaint_id = %complaint.id, community_id = %complaint.community_id, "complaint filed");
    Ok(complaint)
}

/// The complaint if the caller may see it: its filer, managers and admins. Anyone else gets
/// the same NOT_FOUND as for an unknown id.
async fn seen(state: &AppState, caller: &Caller, complaint_id: Uuid) -> AppResult<(Complaint, access::Access)> {
    let c = store::get_complaint(&state.db, complaint_id).await?.ok_or_else(|| not_found(Reason::ComplaintNotFound))?;
    let access = visible(state, caller, c.community_id, Reason::ComplaintNotFound).await?;
    if c.filed_by != Some(caller.user_id) && !access.can_manage() {
        return Err(not_found(Reason::ComplaintNotFound));
    }
    Ok((c, access))
}

#[tracing::instrument(name = "complaints.get_complaint", skip_all, err(level = "debug"))]
pub async fn get_complaint(state: &AppState, caller: &Caller, complaint_id: Uuid) -> AppResult<Complaint> {
    Ok(seen(state, caller, complaint_id).await?.0)
}

/// Whether `caller` sees complaint `id`: the reader for `crate::media::attach` (its photos
/// are seen by its filer, the community's managers and admins; other members, even of the
/// same community, do not).
pub fn sees_complaint<'a>(state: &'a AppState, caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move {
        match seen(state, caller, id).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Code::NotFound | Code::PermissionDenied) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// Members: their own complaints; managers and admins: all. Newest first.
#[tracing::instrument(name = "complaints.list_complaints", skip_all, err(level = "debug"))]
pub async fn list_complaints(
    state: &AppState,
    caller: &Caller,
    q: ListComplaints,
) -> AppResult<(Vec<Complaint>, String)> {
    let access = access::member(&state.db, caller, q.community_id).await?;
    let filer = if access.can_manage() { None } else { Some(caller.user_id) };
    let query = ("complaints", q.community_id, q.status.map(Status::as_db), filer);
    let page = state.pager.page::<store::Cursor>(q.page_size, &q.page_token, &query)?;
    let rows =
        store::list_complaints(&state.db, q.community_id, q.status, filer, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |c| (c.created_at, c.id)))
}

#[tracing::instrument(name = "complaints.update_complaint_status", skip_all, err(level = "debug"))]
pub async fn update_complaint_status(state: &AppState, caller: &Caller, cmd: UpdateStatus) -> AppResult<Complaint> {
    let (c, _) = seen(state, caller, cmd.complaint_id).await?;
    access::manager(&state.db, caller, c.community_id).await?;
    let refused = |from: Status| {
        AppError::failed_precondition(
            Reason::InvalidStatusTransition,
            format!("a complaint cannot move from {} to {}", from.as_db(), cmd.status.as_db()),
        )
        .with_meta("from", from.as_db())
        .with_meta("to", cmd.status.as_db())
    };
    let Some(from) = cmd.status.managed_from() else {
        return Err(refused(c.status));
    };
    match store::transition(&state.db, cmd.complaint_id, from, cmd.status, &cmd.reply, caller.user_id).await? {
        Some(updated) => {
            transition(cmd.status);
            tracing::info!(complaint_id = %updated.id, to = cmd.status.as_db(), "complaint status changed");
            Ok(updated)
        }
        // Not in the expected status (maybe moved by someone else meanwhile), or deleted.
        None => match store::get_complaint(&state.db, cmd.complaint_id).await? {
            Some(now) => Err(refused(now.status)),
            None => Err(not_found(Reason::ComplaintNotFound)),
        },
    }
}

#[tracing::instrument(name = "complaints.withdraw_complaint", skip_all, err(level = "debug"))]
pub async fn withdraw_complaint(state: &AppState, caller: &Caller, complaint_id: Uuid) -> AppResult<Complaint> {
    let (c, _) = seen(state, caller, complaint_id).await?;
    if c.filed_by != Some(caller.user_id) {
        return Err(AppError::permission_denied(
            Reason::ComplaintFilerRequired,
            "only the member who filed a complaint may withdraw it",
        ));
    }
    let refused = |s: Status| {
        AppError::failed_precondition(
            Reason::ComplaintNotWithdrawable,
            format!("only a RECEIVED complaint can be withdrawn; this one is {}", s.as_db()),
        )
        .with_meta("status", s.as_db())
    };
    if c.status != Status::Received {
        return Err(refused(c.status));
    }
    match store::withdraw(&state.db, complaint_id, caller.user_id).await? {
        Some(updated) => {
            transition(Status::Withdrawn);
            Ok(updated)
        }
        None => match store::get_complaint(&state.db, complaint_id).await? {
            Some(now) => Err(refused(now.status)),
            None => Err(not_found(Reason::ComplaintNotFound)),
        },
    }
}

/// Every SQL statement of complaints.
/// Sets `maru_complaints{status}` from the database (every replica agrees), like the
/// membership gauge; refreshed by `jobs::community_gauges`.
pub async fn refresh_complaint_gauge(state: &AppState) -> AppResult<()> {
    let counts = store::status_counts(&state.db).await?;
    for status in Status::ALL {
        let n = counts.iter().find(|(s, _)| s == status.as_db()).map_or(0, |(_, n)| *n);
        metrics::gauge!("maru_complaints", "status" => status.as_db()).set(n as f64);
    }
    Ok(())
}

pub mod store {
    use chrono::{DateTime, Utc};
    use sqlx::{PgConnection, PgExecutor};
    use uuid::Uuid;

    use super::{Complaint, FileComplaint, Status};
    use crate::error::AppResult;

    /// Sort key of ListComplaints: (created_at, id), descending.
    pub type Cursor = (DateTime<Utc>, Uuid);

    const COLUMNS: &str =
        "id, community_id, filed_by, title, body, category, status, reply, replied_at, created_at, updated_at";

    pub async fn insert_complaint(conn: &mut PgConnection, c: &FileComplaint, filer: Uuid) -> AppResult<Complaint> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into community_complaints (id, community_id, filed_by, title, body, category)
             values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(c.community_id)
        .bind(filer)
        .bind(&c.title)
        .bind(&c.body)
        .bind(&c.category)
        .fetch_one(conn)
        .await?)
    }

    /// Complaints per status, all communities.
    pub async fn status_counts(db: impl PgExecutor<'_>) -> AppResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("select status, count(*) from community_complaints group by status").fetch_all(db).await?)
    }

    pub async fn get_complaint(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Complaint>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from community_complaints where id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    pub async fn list_complaints(
        db: impl PgExecutor<'_>,
        community_id: Uuid,
        status: Option<Status>,
        filer: Option<Uuid>,
        after: Option<Cursor>,
        limit: i64,
    ) -> AppResult<Vec<Complaint>> {
        let (created, id) = after.map_or((None, None), |(c, i)| (Some(c), Some(i)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_complaints
              where community_id = $1
                and ($2::text is null or status = $2)
                and ($3::uuid is null or filed_by = $3)
                and ($4::timestamptz is null or (created_at, id) < ($4, $5))
              order by created_at desc, id desc
              limit $6"
        )))
        .bind(community_id)
        .bind(status.map(Status::as_db))
        .bind(filer)
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?)
    }

    /// Moves a complaint `from` → `to` if it is still in `from`; `None` otherwise. A non-empty
    /// `reply` replaces the reply.
    pub async fn transition(
        db: impl PgExecutor<'_>,
        id: Uuid,
        from: Status,
        to: Status,
        reply: &str,
        by: Uuid,
    ) -> AppResult<Option<Complaint>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update community_complaints
                set status = $3,
                    reply = case when $4 = '' then reply else $4 end,
                    replied_by = case when $4 = '' then replied_by else $5 end,
                    replied_at = case when $4 = '' then replied_at else now() end,
                    updated_at = now()
              where id = $1 and status = $2
          returning {COLUMNS}"
        )))
        .bind(id)
        .bind(from.as_db())
        .bind(to.as_db())
        .bind(reply)
        .bind(by)
        .fetch_optional(db)
        .await?)
    }

    /// Withdraws the filer's complaint if it is still RECEIVED; `None` otherwise.
    pub async fn withdraw(db: impl PgExecutor<'_>, id: Uuid, filer: Uuid) -> AppResult<Option<Complaint>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update community_complaints set status = 'WITHDRAWN', updated_at = now()
              where id = $1 and filed_by = $2 and status = 'RECEIVED'
          returning {COLUMNS}"
        )))
        .bind(id)
        .bind(filer)
        .fetch_optional(db)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_manager_transitions_exist() {
        let mut allowed = Vec::new();
        for from in Status::ALL {
            for to in Status::ALL {
                if to.managed_from() == Some(from) {
                    allowed.push((from, to));
                }
            }
        }
        assert_eq!(
            allowed,
            [
                (Status::Received, Status::InProgress),
                (Status::InProgress, Status::Resolved),
                (Status::InProgress, Status::Rejected)
            ]
        );
        for s in Status::ALL {
            assert_eq!(Status::from_db(s.as_db()), Some(s));
            assert_eq!(Status::from_pb(s.to_pb() as i32), Ok(Some(s)));
        }
        assert_eq!(Status::from_pb(0), Ok(None));
        assert!(Status::from_pb(99).is_err());
    }
}
