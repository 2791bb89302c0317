//! Every SQL statement of reports and moderation.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{
    Action, ModerationAction, Report, ReportFilter, ReportReason, ReportState, ReportStats, ReportedTarget, Target,
    TargetType,
};
use crate::error::AppResult;

/// Sort key of the queue: the target's first report in the listed state, then the target.
pub type QueueCursor = (DateTime<Utc>, String, Uuid);
/// Sort key of the moderation log: (created_at, id), both descending.
pub type ActionCursor = (DateTime<Utc>, Uuid);

const REPORT_COLUMNS: &str = "id, target_type, target_id, reason, details, state, created_at, resolved_at";
const ACTION_COLUMNS: &str = "id, actor_id, action, target_type, target_id, owner_id, note, reports, created_at";

/// The live account with `handle`.
pub async fn user_by_handle(db: impl PgExecutor<'_>, handle: &str) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar("select id from users where lower(handle) = lower($1) and deleted_at is null")
        .bind(handle)
        .fetch_optional(db)
        .await?)
}

pub async fn insert_report(
    conn: &mut PgConnection,
    reporter: Uuid,
    target: Target,
    reason: ReportReason,
    details: &str,
) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into reports (id, reporter_id, target_type, target_id, owner_id, reason, details)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(reporter)
    .bind(target.kind.as_db())
    .bind(target.id)
    .bind(target.owner)
    .bind(reason.as_db())
    .bind(details)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn get_report(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Report>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {REPORT_COLUMNS} from reports where id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// One more open report of `target`, under the lock of its `report_targets` row (held until the
/// transaction ends, so concurrent reports of one target count one after the other): the open
/// reports now, and whether it is hidden already.
pub async fn count_open_report(conn: &mut PgConnection, kind: TargetType, id: Uuid) -> AppResult<(i32, bool)> {
    Ok(sqlx::query_as(
        "insert into report_targets (target_type, target_id, open_reports) values ($1, $2, 1)
         on conflict (target_type, target_id) do update set open_reports = report_targets.open_reports + 1
         returning open_reports, hidden_at is not null",
    )
    .bind(kind.as_db())
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// Locks the target's row for a resolution; `(hidden_from)`: the status an auto-hide replaced,
/// if it is hidden. `None` when the target was never reported.
pub async fn lock_target(conn: &mut PgConnection, kind: TargetType, id: Uuid) -> AppResult<Option<Option<String>>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("select hidden_from from report_targets where target_type = $1 and target_id = $2 for update")
            .bind(kind.as_db())
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|r| r.0))
}

/// Marks the target hidden by the threshold, remembering the status it had.
pub async fn mark_hidden(conn: &mut PgConnection, kind: TargetType, id: Uuid, before: &str) -> AppResult<()> {
    sqlx::query(
        "update report_targets set hidden_at = now(), hidden_from = $3 where target_type = $1 and target_id = $2",
    )
    .bind(kind.as_db())
    .bind(id)
    .bind(before)
    .execute(conn)
    .await?;
    Ok(())
}

/// After a resolution: no open reports, not hidden by the threshold any more.
pub async fn clear_target(conn: &mut PgConnection, kind: TargetType, id: Uuid) -> AppResult<()> {
    sqlx::query(
        "update report_targets set open_reports = 0, hidden_at = null, hidden_from = null
          where target_type = $1 and target_id = $2",
    )
    .bind(kind.as_db())
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Resolves every OPEN report of the target with `action_id`; how many.
pub async fn resolve_reports(
    conn: &mut PgConnection,
    kind: TargetType,
    id: Uuid,
    state: ReportState,
    action_id: Uuid,
) -> AppResult<u64> {
    Ok(sqlx::query(
        "update reports set state = $3, resolution_id = $4, resolved_at = now()
          where target_type = $1 and target_id = $2 and state = 'OPEN'",
    )
    .bind(kind.as_db())
    .bind(id)
    .bind(state.as_db())
    .bind(action_id)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The owner recorded with the target's reports.
pub async fn target_owner(db: impl PgExecutor<'_>, kind: TargetType, id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "select owner_id from reports where target_type = $1 and target_id = $2 and owner_id is not null limit 1",
    )
    .bind(kind.as_db())
    .bind(id)
    .fetch_optional(db)
    .await?
    .flatten())
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_action(
    conn: &mut PgConnection,
    id: Uuid,
    actor: Option<Uuid>,
    action: Action,
    kind: TargetType,
    target: Uuid,
    owner: Option<Uuid>,
    note: &str,
) -> AppResult<()> {
    sqlx::query(
        "insert into moderation_actions (id, actor_id, action, target_type, target_id, owner_id, note)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(actor)
    .bind(action.as_db())
    .bind(kind.as_db())
    .bind(target)
    .bind(owner)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_action_reports(conn: &mut PgConnection, id: Uuid, reports: i64) -> AppResult<()> {
    sqlx::query("update moderation_actions set reports = $2 where id = $1")
        .bind(id)
        .bind(i32::try_from(reports).unwrap_or(i32::MAX))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_action(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<ModerationAction>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {ACTION_COLUMNS} from moderation_actions where id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// A page of the queue: targets with reports in `f.state`, by their first such report.
pub async fn list_targets(
    db: impl PgExecutor<'_>,
    f: &ReportFilter,
    after: Option<QueueCursor>,
    limit: i64,
) -> AppResult<Vec<ReportedTarget>> {
    let (at, kind, id) = after.map_or((None, None, None), |(a, k, i)| (Some(a), Some(k), Some(i)));
    Ok(sqlx::query_as(
        "select r.target_type, r.target_id, (array_agg(r.owner_id))[1] as owner_id, count(*) as report_count,
                array_agg(distinct r.reason) as reasons, min(r.created_at) as first_reported_at,
                max(r.created_at) as last_reported_at,
                coalesce(bool_or(t.hidden_at is not null), false) as auto_hidden,
                (array_agg(r.id order by r.created_at, r.id))[1:10] as report_ids
           from reports r
           left join report_targets t on t.target_type = r.target_type and t.target_id = r.target_id
          where r.state = $1 and ($2::text is null or r.target_type = $2) and ($3::text is null or r.reason = $3)
          group by r.target_type, r.target_id
         having $4::timestamptz is null or (min(r.created_at), r.target_type, r.target_id) > ($4, $5, $6)
          order by min(r.created_at), r.target_type, r.target_id
          limit $7",
    )
    .bind(f.state.as_db())
    .bind(f.target_type.map(|t| t.as_db()))
    .bind(f.reason.map(|r| r.as_db()))
    .bind(at)
    .bind(kind)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

pub async fn get_reports(db: impl PgExecutor<'_>, ids: &[Uuid]) -> AppResult<Vec<Report>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {REPORT_COLUMNS} from reports where id = any($1) order by created_at, id"
    )))
    .bind(ids)
    .fetch_all(db)
    .await?)
}

pub async fn list_actions(
    db: impl PgExecutor<'_>,
    after: Option<ActionCursor>,
    limit: i64,
) -> AppResult<Vec<ModerationAction>> {
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {ACTION_COLUMNS} from moderation_actions
          where $1::timestamptz is null or (created_at, id) < ($1, $2)
          order by created_at desc, id desc limit $3"
    )))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The open queue: its size and the age of its oldest report (for the gauges).
pub async fn queue_size_and_oldest(db: impl PgExecutor<'_>) -> AppResult<(i64, Option<DateTime<Utc>>)> {
    Ok(sqlx::query_as("select count(*), min(created_at) from reports where state = 'OPEN'").fetch_one(db).await?)
}

/// Counts of the reports made since `since` by reason, state and target type, and the median
/// time to resolve those resolved.
pub async fn stats(db: &sqlx::PgPool, since: DateTime<Utc>) -> AppResult<ReportStats> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "select 'reason', reason, count(*) from reports where created_at >= $1 group by reason
         union all select 'state', state, count(*) from reports where created_at >= $1 group by state
         union all select 'target_type', target_type, count(*) from reports where created_at >= $1 group by target_type
         order by 1, 2",
    )
    .bind(since)
    .fetch_all(db)
    .await?;
    let (total, median): (i64, Option<f64>) = sqlx::query_as(
        "select count(*),
                percentile_cont(0.5) within group (order by extract(epoch from resolved_at - created_at))
                  filter (where resolved_at is not null)
           from reports where created_at >= $1",
    )
    .bind(since)
    .fetch_one(db)
    .await?;
    let mut out = ReportStats { total, median_seconds_to_resolve: median.unwrap_or(0.0), ..Default::default() };
    for (group, key, n) in rows {
        match group.as_str() {
            "reason" => out.by_reason.push((key, n)),
            "state" => out.by_state.push((key, n)),
            _ => out.by_target_type.push((key, n)),
        }
    }
    Ok(out)
}

/// Suspends account `id`: hidden like a deleted account, every session revoked; false when it
/// is already gone (deleted or suspended).
pub async fn suspend_user(conn: &mut PgConnection, id: Uuid) -> AppResult<bool> {
    let n = sqlx::query(
        "update users set deleted_at = now(), suspended_at = now(), updated_at = now()
          where id = $1 and deleted_at is null",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(
        "update sessions set revoked_at = now(), revoked_reason = 'account_suspended'
          where user_id = $1 and revoked_at is null",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(n == 1)
}

/// Lifts the suspension of the suspended account `handle`; its id, `None` when no suspended
/// account has that handle (deleted accounts stay deleted).
pub async fn reinstate_user(conn: &mut PgConnection, handle: &str) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "update users set deleted_at = null, suspended_at = null, updated_at = now()
          where lower(handle) = lower($1) and suspended_at is not null
          returning id",
    )
    .bind(handle)
    .fetch_optional(conn)
    .await?)
}

/// Lifts the suspension of account `id` (an auto-hide dismissed); nothing when it is not
/// suspended.
pub async fn reinstate_user_id(conn: &mut PgConnection, id: Uuid) -> AppResult<()> {
    sqlx::query(
        "update users set deleted_at = null, suspended_at = null, updated_at = now()
          where id = $1 and suspended_at is not null",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
