//! The SQL of the email outbox and of the send counters.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::error::AppResult;

pub async fn insert_mail(conn: &mut PgConnection, kind: &str, to: &str, subject: &str, body: &str) -> AppResult<()> {
    sqlx::query("insert into email_outbox (id, kind, recipient, subject, body) values ($1, $2, $3, $4, $5)")
        .bind(Uuid::now_v7())
        .bind(kind)
        .bind(to)
        .bind(subject)
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}

/// A mail taken for delivery.
#[derive(Debug, sqlx::FromRow)]
pub struct Due {
    pub id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i32,
}

/// The oldest due mail nobody else holds, locked until the transaction ends.
pub async fn take_due(conn: &mut PgConnection) -> AppResult<Option<Due>> {
    Ok(sqlx::query_as(
        "select id, kind, recipient, subject, body, attempts from email_outbox
          where sent_at is null and failed_at is null and next_attempt_at <= now()
          order by next_attempt_at, id
          limit 1
          for update skip locked",
    )
    .fetch_optional(conn)
    .await?)
}

/// Marks a mail sent and erases its body (it holds a code or a token).
pub async fn mark_sent(conn: &mut PgConnection, id: Uuid) -> AppResult<()> {
    sqlx::query(
        "update email_outbox set sent_at = now(), attempts = attempts + 1, body = '', last_error = null
          where id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt: tried again in `backoff_ms`, or given up (`give_up`).
pub async fn mark_failed(
    conn: &mut PgConnection,
    id: Uuid,
    error: &str,
    backoff_ms: f64,
    give_up: bool,
) -> AppResult<()> {
    sqlx::query(
        "update email_outbox
            set attempts = attempts + 1, last_error = $2,
                next_attempt_at = now() + make_interval(secs => $3::float8 / 1000),
                failed_at = case when $4::bool then now() end
          where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(backoff_ms)
    .bind(give_up)
    .execute(conn)
    .await?;
    Ok(())
}

/// Seconds since the oldest mail neither sent nor given up was queued; 0 when none.
pub async fn oldest_pending_age_s(db: impl PgExecutor<'_>) -> AppResult<f64> {
    let (age,): (Option<f64>,) = sqlx::query_as(
        "select extract(epoch from now() - min(created_at))::float8 from email_outbox
          where sent_at is null and failed_at is null",
    )
    .fetch_one(db)
    .await?;
    Ok(age.unwrap_or(0.0).max(0.0))
}

/// Adds one to the counter of `key` in the window starting at `window_start`; returns the count.
pub async fn count_send(conn: &mut PgConnection, key: &str, window_start: DateTime<Utc>) -> AppResult<i32> {
    let (count,): (i32,) = sqlx::query_as(
        "insert into email_send_counts (key, window_start, count) values ($1, $2, 1)
         on conflict (key, window_start) do update set count = email_send_counts.count + 1
         returning count",
    )
    .bind(key)
    .bind(window_start)
    .fetch_one(conn)
    .await?;
    Ok(count)
}

pub async fn delete_old_send_counts(db: impl PgExecutor<'_>) -> AppResult<u64> {
    Ok(sqlx::query("delete from email_send_counts where window_start < now() - interval '2 days'")
        .execute(db)
        .await?
        .rows_affected())
}
