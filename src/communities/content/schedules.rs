//! Schedules: the community calendar. Managers (and admins) edit, APPROVED members list the
//! entries overlapping a time range, ordered by start. Every entry keeps `ends_at ≥ starts_at`
//! (checked on input, after merging an update, and by `community_schedules_range_check`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{not_found, visible};
use crate::caller::Caller;
use crate::communities::access;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::fields::{id, mask, request_id, text, time, timestamp};
use crate::grpc::pb;
use crate::idempotency::{RequestId, remember, replayed};
use crate::state::AppState;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_LOCATION_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;

/// A stored calendar entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Schedule {
    pub id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub location: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The editable values of an entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleData {
    pub title: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub location: String,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct CreateSchedule {
    pub community_id: Uuid,
    pub data: ScheduleData,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The fields an update changes (`None` = unchanged).
#[derive(Debug, Default)]
pub struct SchedulePatch {
    pub title: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub location: Option<String>,
    pub description: Option<String>,
}

impl SchedulePatch {
    /// `old` with the patch applied; INVALID_ARGUMENT when the result would end before it
    /// starts (naming the changed time fields).
    pub fn apply(&self, old: &Schedule) -> AppResult<ScheduleData> {
        let data = ScheduleData {
            title: self.title.clone().unwrap_or_else(|| old.title.clone()),
            starts_at: self.starts_at.unwrap_or(old.starts_at),
            ends_at: self.ends_at.unwrap_or(old.ends_at),
            location: self.location.clone().unwrap_or_else(|| old.location.clone()),
            description: self.description.clone().unwrap_or_else(|| old.description.clone()),
        };
        if data.ends_at < data.starts_at {
            let field = if self.ends_at.is_some() { "ends_at" } else { "starts_at" };
            return Err(AppError::invalid(field, "the entry would end before it starts"));
        }
        Ok(data)
    }
}

#[derive(Debug)]
pub struct UpdateSchedule {
    pub schedule_id: Uuid,
    pub patch: SchedulePatch,
}

#[derive(Debug, Serialize)]
pub struct ListSchedules {
    pub community_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(skip)]
    pub page_size: i32,
    #[serde(skip)]
    pub page_token: String,
}

// ---- conversions

impl TryFrom<pb::CreateScheduleRequest> for CreateSchedule {
    type Error = AppError;
    fn try_from(r: pb::CreateScheduleRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let title = text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false);
        let starts_at = time(&mut v, "starts_at", r.starts_at.as_ref(), true);
        let ends_at = time(&mut v, "ends_at", r.ends_at.as_ref(), true);
        if let (Some(s), Some(e)) = (starts_at, ends_at)
            && e < s
        {
            v.add("ends_at", "must not be before starts_at");
        }
        let location = text(&mut v, "location", &r.location, 0, MAX_LOCATION_CHARS, false);
        let description = text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        let (Some(starts_at), Some(ends_at)) = (starts_at, ends_at) else {
            return Err(AppError::internal("validated times missing"));
        };
        Ok(CreateSchedule {
            community_id,
            data: ScheduleData { title, starts_at, ends_at, location, description },
            request_id,
        })
    }
}

impl TryFrom<pb::UpdateScheduleRequest> for UpdateSchedule {
    type Error = AppError;
    fn try_from(r: pb::UpdateScheduleRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let schedule_id = id(&mut v, "schedule_id", &r.schedule_id);
        let mut patch = SchedulePatch::default();
        let fields = ["title", "starts_at", "ends_at", "location", "description"];
        for path in mask(&mut v, r.update_mask.as_ref(), &fields) {
            match path.as_str() {
                "title" => patch.title = Some(text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false)),
                "starts_at" => patch.starts_at = time(&mut v, "starts_at", r.starts_at.as_ref(), true),
                "ends_at" => patch.ends_at = time(&mut v, "ends_at", r.ends_at.as_ref(), true),
                "location" => {
                    patch.location = Some(text(&mut v, "location", &r.location, 0, MAX_LOCATION_CHARS, false))
                }
                "description" => {
                    patch.description =
                        Some(text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true))
                }
                _ => {}
            }
        }
        if let (Some(s), Some(e)) = (patch.starts_at, patch.ends_at)
            && e < s
        {
            v.add("ends_at", "must not be before starts_at");
        }
        v.finish()?;
        Ok(UpdateSchedule { schedule_id, patch })
    }
}

impl TryFrom<pb::ListSchedulesRequest> for ListSchedules {
    type Error = AppError;
    fn try_from(r: pb::ListSchedulesRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let from = time(&mut v, "from", r.from.as_ref(), true);
        let to = time(&mut v, "to", r.to.as_ref(), true);
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            v.add("to", "must be after from");
        }
        if r.page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        v.finish()?;
        let (Some(from), Some(to)) = (from, to) else {
            return Err(AppError::internal("validated times missing"));
        };
        Ok(ListSchedules { community_id, from, to, page_size: r.page_size, page_token: r.page_token })
    }
}

pub fn to_pb(s: Schedule) -> pb::Schedule {
    pb::Schedule {
        id: s.id.to_string(),
        community_id: s.community_id.to_string(),
        title: s.title,
        starts_at: Some(timestamp(s.starts_at)),
        ends_at: Some(timestamp(s.ends_at)),
        location: s.location,
        description: s.description,
        created_at: Some(timestamp(s.created_at)),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

// ---- use cases

#[tracing::instrument(name = "schedules.create_schedule", skip_all, err(level = "debug"))]
pub async fn create_schedule(state: &AppState, caller: &Caller, cmd: CreateSchedule) -> AppResult<Schedule> {
    access::manager(&state.db, caller, cmd.community_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(s) = replayed(state, &mut tx, "CreateSchedule", caller, cmd.request_id.as_ref(), &cmd).await? {
        return Ok(s);
    }
    let schedule = store::insert_schedule(&mut tx, cmd.community_id, &cmd.data, caller.user_id).await?;
    remember(&mut tx, "CreateSchedule", caller, cmd.request_id.as_ref(), &schedule).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(schedule)
}

/// Entries overlapping [from, to), by start.
#[tracing::instrument(name = "schedules.list_schedules", skip_all, err(level = "debug"))]
pub async fn list_schedules(state: &AppState, caller: &Caller, q: ListSchedules) -> AppResult<(Vec<Schedule>, String)> {
    let query = ("schedules", &q);
    let page = state.pager.page::<store::Cursor>(q.page_size, &q.page_token, &query)?;
    access::member(&state.db, caller, q.community_id).await?;
    let rows = store::list_schedules(&state.db, &q, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |s| (s.starts_at, s.id)))
}

#[tracing::instrument(name = "schedules.update_schedule", skip_all, err(level = "debug"))]
pub async fn update_schedule(state: &AppState, caller: &Caller, cmd: UpdateSchedule) -> AppResult<Schedule> {
    let found =
        store::get_schedule(&state.db, cmd.schedule_id).await?.ok_or_else(|| not_found(Reason::ScheduleNotFound))?;
    visible(state, caller, found.community_id, Reason::ScheduleNotFound).await?;
    access::manager(&state.db, caller, found.community_id).await?;
    // Lock, merge, check, write: a concurrent update of the other end cannot break the range.
    let mut tx = crate::db::begin(&state.db).await?;
    let old =
        store::lock_schedule(&mut tx, cmd.schedule_id).await?.ok_or_else(|| not_found(Reason::ScheduleNotFound))?;
    let data = cmd.patch.apply(&old)?;
    let updated = store::update_schedule(&mut tx, cmd.schedule_id, &data).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(updated)
}

#[tracing::instrument(name = "schedules.delete_schedule", skip_all, err(level = "debug"))]
pub async fn delete_schedule(state: &AppState, caller: &Caller, schedule_id: Uuid) -> AppResult<()> {
    let found =
        store::get_schedule(&state.db, schedule_id).await?.ok_or_else(|| not_found(Reason::ScheduleNotFound))?;
    visible(state, caller, found.community_id, Reason::ScheduleNotFound).await?;
    access::manager(&state.db, caller, found.community_id).await?;
    if store::delete_schedule(&state.db, schedule_id).await? {
        Ok(())
    } else {
        Err(not_found(Reason::ScheduleNotFound))
    }
}

/// Every SQL statement of schedules.
pub mod store {
    use chrono::{DateTime, Utc};
    use sqlx::{PgConnection, PgExecutor};
    use uuid::Uuid;

    use super::{ListSchedules, Schedule, ScheduleData};
    use crate::error::AppResult;

    /// Sort key of ListSchedules: (starts_at, id), ascending.
    pub type Cursor = (DateTime<Utc>, Uuid);

    const COLUMNS: &str = "id, community_id, title, starts_at, ends_at, location, description, created_at, updated_at";

    pub async fn insert_schedule(
        conn: &mut PgConnection,
        community_id: Uuid,
        d: &ScheduleData,
        by: Uuid,
    ) -> AppResult<Schedule> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into community_schedules
                    (id, community_id, title, starts_at, ends_at, location, description, created_by)
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(community_id)
        .bind(&d.title)
        .bind(d.starts_at)
        .bind(d.ends_at)
        .bind(&d.location)
        .bind(&d.description)
        .bind(by)
        .fetch_one(conn)
        .await?)
    }

    pub async fn get_schedule(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Schedule>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from community_schedules where id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?)
    }

    pub async fn lock_schedule(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<Schedule>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_schedules where id = $1 for update"
        )))
        .bind(id)
        .fetch_optional(conn)
        .await?)
    }

    /// Entries that start before `to` and end after `from`; an entry of no duration counts when
    /// it lies in [from, to).
    pub async fn list_schedules(
        db: impl PgExecutor<'_>,
        q: &ListSchedules,
        after: Option<Cursor>,
        limit: i64,
    ) -> AppResult<Vec<Schedule>> {
        let (starts, id) = after.map_or((None, None), |(s, i)| (Some(s), Some(i)));
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from community_schedules
              where community_id = $1
                and starts_at < $3
                and (ends_at > $2 or starts_at >= $2)
                and ($4::timestamptz is null or (starts_at, id) > ($4, $5))
              order by starts_at, id
              limit $6"
        )))
        .bind(q.community_id)
        .bind(q.from)
        .bind(q.to)
        .bind(starts)
        .bind(id)
        .bind(limit)
        .fetch_all(db)
        .await?)
    }

    pub async fn update_schedule(conn: &mut PgConnection, id: Uuid, d: &ScheduleData) -> AppResult<Schedule> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update community_schedules
                set title = $2, starts_at = $3, ends_at = $4, location = $5, description = $6, updated_at = now()
              where id = $1
          returning {COLUMNS}"
        )))
        .bind(id)
        .bind(&d.title)
        .bind(d.starts_at)
        .bind(d.ends_at)
        .bind(&d.location)
        .bind(&d.description)
        .fetch_one(conn)
        .await?)
    }

    pub async fn delete_schedule(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
        Ok(sqlx::query("delete from community_schedules where id = $1").bind(id).execute(db).await?.rows_affected()
            == 1)
    }
}
