//! Media SQL: the `media`, `media_variants` and `media_jobs` tables.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row as _};
use uuid::Uuid;

use super::model::{Purpose, State};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone)]
pub struct MediaRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub purpose: Purpose,
    pub state: State,
    pub declared_type: String,
    pub size_bytes: i64,
    pub sha256: Option<Vec<u8>>,
    pub object_key: String,
    pub content_type: Option<String>,
    pub failure_reason: Option<String>,
    pub upload_expires_at: DateTime<Utc>,
    pub upload_started_at: Option<DateTime<Utc>>,
    pub attached_kind: Option<String>,
    pub attached_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VariantRow {
    pub name: String,
    pub object_key: String,
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub size_bytes: i64,
}

const COLUMNS: &str = "id, owner_id, purpose, state, declared_type, size_bytes, sha256, object_key, content_type, \
     failure_reason, upload_expires_at, upload_started_at, attached_kind, attached_id, created_at";

fn row_to_media(r: &sqlx::postgres::PgRow) -> AppResult<MediaRow> {
    let purpose: String = r.try_get("purpose")?;
    let state: String = r.try_get("state")?;
    Ok(MediaRow {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        purpose: Purpose::parse(&purpose).ok_or_else(|| AppError::internal(format!("unknown purpose {purpose}")))?,
        state: State::parse(&state).ok_or_else(|| AppError::internal(format!("unknown media state {state}")))?,
        declared_type: r.try_get("declared_type")?,
        size_bytes: r.try_get("size_bytes")?,
        sha256: r.try_get("sha256")?,
        object_key: r.try_get("object_key")?,
        content_type: r.try_get("content_type")?,
        failure_reason: r.try_get("failure_reason")?,
        upload_expires_at: r.try_get("upload_expires_at")?,
        upload_started_at: r.try_get("upload_started_at")?,
        attached_kind: r.try_get("attached_kind")?,
        attached_id: r.try_get("attached_id")?,
        created_at: r.try_get("created_at")?,
    })
}

pub struct NewMedia<'a> {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub purpose: Purpose,
    pub declared_type: &'a str,
    pub size_bytes: i64,
    pub sha256: Option<&'a [u8]>,
    pub object_key: &'a str,
    pub upload_expires_at: DateTime<Utc>,
}

/// Serialises a user's CreateUploads (the quota check and the insert), in the transaction.
pub async fn lock_owner_quota(tx: &mut PgConnection, owner: Uuid) -> AppResult<()> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('media-quota:' || $1::text, 0))")
        .bind(owner)
        .execute(tx)
        .await?;
    Ok(())
}

/// The uploads and declared bytes of `owner` since `since`.
pub async fn usage_since(tx: &mut PgConnection, owner: Uuid, since: DateTime<Utc>) -> AppResult<(i64, i64)> {
    let r = sqlx::query(
        "select count(*) as n, coalesce(sum(size_bytes), 0)::bigint as bytes from media where owner_id = $1 and created_at >= $2",
    )
    .bind(owner)
    .bind(since)
    .fetch_one(tx)
    .await?;
    Ok((r.try_get("n")?, r.try_get("bytes")?))
}

pub async fn insert(tx: &mut PgConnection, m: &NewMedia<'_>) -> AppResult<()> {
    sqlx::query(
        "insert into media (id, owner_id, purpose, declared_type, size_bytes, sha256, object_key, upload_expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(m.id)
    .bind(m.owner_id)
    .bind(m.purpose.as_str())
    .bind(m.declared_type)
    .bind(m.size_bytes)
    .bind(m.sha256)
    .bind(m.object_key)
    .bind(m.upload_expires_at)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn get(db: &PgPool, id: Uuid) -> AppResult<Option<MediaRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("select {COLUMNS} from media where id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?;
    r.as_ref().map(row_to_media).transpose()
}

pub async fn get_for_update(tx: &mut PgConnection, id: Uuid) -> AppResult<Option<MediaRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!("select {COLUMNS} from media where id = $1 for update")))
        .bind(id)
        .fetch_optional(tx)
        .await?;
    r.as_ref().map(row_to_media).transpose()
}

/// Marks the upload token used: true for the first caller only (the token is single-use).
pub async fn start_upload(db: &PgPool, id: Uuid, now: DateTime<Utc>) -> AppResult<Option<MediaRow>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "update media set upload_started_at = $2
         where id = $1 and state = 'UPLOADING' and upload_started_at is null and upload_expires_at > $2
         returning {COLUMNS}"
    )))
    .bind(id)
    .bind(now)
    .fetch_optional(db)
    .await?;
    r.as_ref().map(row_to_media).transpose()
}

/// UPLOADING → PROCESSING with the sniffed type, and its job queued, in `tx`.
pub async fn complete(tx: &mut PgConnection, id: Uuid, content_type: &str, now: DateTime<Utc>) -> AppResult<()> {
    sqlx::query("update media set state = 'PROCESSING', content_type = $2, completed_at = $3 where id = $1 and state = 'UPLOADING'")
        .bind(id)
        .bind(content_type)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into media_jobs (media_id, run_at) values ($1, $2) on conflict (media_id) do nothing")
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

pub async fn variants(db: &PgPool, id: Uuid) -> AppResult<Vec<VariantRow>> {
    Ok(sqlx::query_as(
        "select name, object_key, content_type, width, height, size_bytes from media_variants where media_id = $1 order by width",
    )
    .bind(id)
    .fetch_all(db)
    .await?)
}

pub async fn variant(db: &PgPool, id: Uuid, name: &str) -> AppResult<Option<VariantRow>> {
    Ok(variants(db, id).await?.into_iter().find(|v| v.name == name))
}

// ---- the job queue ----

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub media_id: Uuid,
    pub attempts: i32,
}

/// Claims the oldest due job: queued and due, or running with an expired lease (its worker
/// died). `FOR UPDATE SKIP LOCKED`: replicas never claim the same job at once.
pub async fn claim_job(db: &PgPool, worker: &str, lease_s: i64, now: DateTime<Utc>) -> AppResult<Option<Job>> {
    let r = sqlx::query(
        "update media_jobs j set state = 'running', attempts = attempts + 1, worker = $1,
                lease_until = $3 + make_interval(secs => $2), updated_at = $3
         where media_id = (
             select media_id from media_jobs
             where (state = 'queued' and run_at <= $3) or (state = 'running' and lease_until < $3)
             order by run_at
             for update skip locked
             limit 1)
         returning j.media_id, j.attempts",
    )
    .bind(worker)
    .bind(lease_s as f64)
    .bind(now)
    .fetch_optional(db)
    .await?;
    r.map(|r| Ok(Job { media_id: r.try_get("media_id")?, attempts: r.try_get("attempts")? })).transpose()
}

/// Extends the lease of a job this worker still holds; false when it lost it.
pub async fn heartbeat(db: &PgPool, media_id: Uuid, worker: &str, lease_s: i64, now: DateTime<Utc>) -> AppResult<bool> {
    let r = sqlx::query(
        "update media_jobs set lease_until = $4 + make_interval(secs => $3), updated_at = $4
         where media_id = $1 and worker = $2 and state = 'running'",
    )
    .bind(media_id)
    .bind(worker)
    .bind(lease_s as f64)
    .bind(now)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn upsert_variant(db: &PgPool, media_id: Uuid, v: &VariantRow) -> AppResult<()> {
    sqlx::query(
        "insert into media_variants (media_id, name, object_key, content_type, width, height, size_bytes)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (media_id, name) do update set object_key = excluded.object_key,
             content_type = excluded.content_type, width = excluded.width, height = excluded.height,
             size_bytes = excluded.size_bytes",
    )
    .bind(media_id)
    .bind(&v.name)
    .bind(&v.object_key)
    .bind(&v.content_type)
    .bind(v.width)
    .bind(v.height)
    .bind(v.size_bytes)
    .execute(db)
    .await?;
    Ok(())
}

/// PROCESSING → READY or FAILED and the job done (or dead), once: only a media still
/// PROCESSING changes. False when another worker finished it first.
pub async fn finish(
    db: &PgPool,
    media_id: Uuid,
    ready: bool,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let mut tx = crate::db::begin(db).await?;
    let r = sqlx::query(
        "update media set state = $2, failure_reason = $3, finished_at = $4 where id = $1 and state = 'PROCESSING'",
    )
    .bind(media_id)
    .bind(if ready { "READY" } else { "FAILED" })
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        // Another worker finished it: its job row is already final.
        return Ok(false);
    }
    sqlx::query(
        "update media_jobs set state = $2, last_error = $3, lease_until = null, updated_at = $4 where media_id = $1",
    )
    .bind(media_id)
    .bind(if ready { "done" } else { "dead" })
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    crate::db::commit(db, tx).await?;
    Ok(true)
}

/// A failed attempt that may be retried: queued again at `run_at`.
pub async fn retry_later(
    db: &PgPool,
    media_id: Uuid,
    worker: &str,
    error: &str,
    run_at: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "update media_jobs set state = 'queued', run_at = $4, last_error = $3, lease_until = null, updated_at = now()
         where media_id = $1 and worker = $2 and state = 'running'",
    )
    .bind(media_id)
    .bind(worker)
    .bind(error)
    .bind(run_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Jobs waiting or running, and the age in seconds of the oldest (0 when none).
pub async fn queue_stats(db: &PgPool, now: DateTime<Utc>) -> AppResult<(i64, f64)> {
    let r = sqlx::query(
        "select count(*) as n, coalesce(extract(epoch from ($1 - min(created_at))), 0)::float8 as age
         from media_jobs where state in ('queued', 'running')",
    )
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok((r.try_get("n")?, r.try_get("age")?))
}

/// Media older than `before` never completed or never attached, at most `limit`: their object
/// keys (original and variants), for the clean-up.
pub async fn stale(db: &PgPool, before: DateTime<Utc>, limit: i64) -> AppResult<Vec<(Uuid, Vec<String>)>> {
    let rows = sqlx::query(
        "select m.id, array_remove(array_agg(v.object_key), null) || m.object_key as keys
         from media m left join media_variants v on v.media_id = m.id
         where m.attached_id is null and m.created_at < $1 and m.state <> 'PROCESSING'
         group by m.id order by m.created_at limit $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("keys")?))).collect()
}

pub async fn delete(db: &PgPool, id: Uuid, before: DateTime<Utc>) -> AppResult<bool> {
    let r = sqlx::query("delete from media where id = $1 and attached_id is null and created_at < $2")
        .bind(id)
        .bind(before)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Media of accounts deleted before `before` (not suspended: a suspension may be lifted), at
/// most `limit`, attached or not, not being processed: their object keys, for the clean-up.
pub async fn of_deleted_owners(db: &PgPool, before: DateTime<Utc>, limit: i64) -> AppResult<Vec<(Uuid, Vec<String>)>> {
    let rows = sqlx::query(
        "select m.id, array_remove(array_agg(v.object_key), null) || m.object_key as keys
         from media m join users u on u.id = m.owner_id
         left join media_variants v on v.media_id = m.id
         where u.deleted_at < $1 and u.suspended_at is null and m.state <> 'PROCESSING'
         group by m.id order by m.created_at limit $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("keys")?))).collect()
}

/// Deletes media `id` if its owner is still deleted since before `before` (and not suspended).
pub async fn delete_of_deleted_owner(db: &PgPool, id: Uuid, before: DateTime<Utc>) -> AppResult<bool> {
    let r = sqlx::query(
        "delete from media m using users u
         where m.id = $1 and u.id = m.owner_id and u.deleted_at < $2 and u.suspended_at is null
           and m.state <> 'PROCESSING'",
    )
    .bind(id)
    .bind(before)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Releases the upload token after a refused or broken PUT, so the client may PUT again.
pub async fn release_upload(db: &PgPool, id: Uuid) -> AppResult<()> {
    sqlx::query("update media set upload_started_at = null where id = $1 and state = 'UPLOADING'")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

// ---- attaching (see `super::attach`) ----

/// What attaching checks of one media, its row locked.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub purpose: String,
    pub state: String,
    pub attached_kind: Option<String>,
    pub attached_id: Option<Uuid>,
}

/// Locks the media `ids` (in id order, so two transactions never wait on each other in a
/// cycle) for an attachment in `tx`; a concurrent attachment of the same media waits here and
/// then sees the winner's.
pub async fn lock_for_attach(tx: &mut PgConnection, ids: &[Uuid]) -> AppResult<Vec<AttachRow>> {
    Ok(sqlx::query_as(
        "select id, owner_id, purpose, state, attached_kind, attached_id from media
         where id = any($1) order by id for update",
    )
    .bind(ids)
    .fetch_all(tx)
    .await?)
}

/// Makes `ids` (in this order) what `target` has attached: the others it had are detached.
pub async fn set_attached(tx: &mut PgConnection, kind: &str, target: Uuid, ids: &[Uuid]) -> AppResult<()> {
    sqlx::query(
        "update media set attached_kind = null, attached_id = null, attached_pos = null
         where attached_kind = $1 and attached_id = $2 and not (id = any($3))",
    )
    .bind(kind)
    .bind(target)
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update media m set attached_kind = $1, attached_id = $2, attached_pos = o.pos - 1
         from unnest($3::uuid[]) with ordinality as o(id, pos) where m.id = o.id",
    )
    .bind(kind)
    .bind(target)
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The media attached to any of `targets` of `kind`, each with its target, in attached order.
pub async fn attached_to(db: &PgPool, kind: &str, targets: &[Uuid]) -> AppResult<Vec<MediaRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from media where attached_kind = $1 and attached_id = any($2)
         order by attached_id, attached_pos"
    )))
    .bind(kind)
    .bind(targets)
    .fetch_all(db)
    .await?;
    rows.iter().map(row_to_media).collect()
}

/// The variants of every media of `ids`, with their media id.
pub async fn variants_of(db: &PgPool, ids: &[Uuid]) -> AppResult<Vec<(Uuid, VariantRow)>> {
    #[derive(sqlx::FromRow)]
    struct Of {
        media_id: Uuid,
        #[sqlx(flatten)]
        variant: VariantRow,
    }
    let rows: Vec<Of> = sqlx::query_as(
        "select media_id, name, object_key, content_type, width, height, size_bytes from media_variants
         where media_id = any($1) order by media_id, width",
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.media_id, r.variant)).collect())
}
