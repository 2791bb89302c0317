//! Every SQL statement of external identities: login states, tickets, linked identities.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{Identity, LoginState, Ticket, TicketKind};
use crate::error::AppResult;

pub struct NewState<'a> {
    pub state_hash: &'a [u8],
    pub provider: &'a str,
    pub redirect_uri: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub async fn insert_state(db: impl PgExecutor<'_>, s: &NewState<'_>) -> AppResult<()> {
    sqlx::query(
        "insert into external_login_states (state_hash, provider, redirect_uri, pkce_verifier, nonce, expires_at, created_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(s.state_hash)
    .bind(s.provider)
    .bind(s.redirect_uri)
    .bind(s.pkce_verifier)
    .bind(s.nonce)
    .bind(s.expires_at)
    .bind(s.now)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the state and returns it: of two concurrent uses exactly one gets it.
pub async fn take_state(db: impl PgExecutor<'_>, state_hash: &[u8]) -> AppResult<Option<LoginState>> {
    Ok(sqlx::query_as(
        "delete from external_login_states where state_hash = $1
         returning provider, redirect_uri, pkce_verifier, nonce, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(db)
    .await?)
}

/// Deletes states that expired before `before` (a login abandoned at the provider).
pub async fn delete_expired_states(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> AppResult<u64> {
    let r = sqlx::query("delete from external_login_states where expires_at < $1").bind(before).execute(db).await?;
    Ok(r.rows_affected())
}

pub struct NewTicket<'a> {
    pub ticket_hash: &'a [u8],
    pub kind: TicketKind,
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub email_verified: bool,
    pub suggested_handle: &'a str,
    pub suggested_name: &'a str,
    pub user_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

pub async fn insert_ticket(db: impl PgExecutor<'_>, t: &NewTicket<'_>) -> AppResult<()> {
    sqlx::query(
        "insert into external_tickets (ticket_hash, kind, provider, subject, email, email_verified,
             suggested_handle, suggested_name, user_id, expires_at, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(t.ticket_hash)
    .bind(t.kind.as_db())
    .bind(t.provider)
    .bind(t.subject)
    .bind(t.email)
    .bind(t.email_verified)
    .bind(t.suggested_handle)
    .bind(t.suggested_name)
    .bind(t.user_id)
    .bind(t.expires_at)
    .bind(t.now)
    .execute(db)
    .await?;
    Ok(())
}

const TICKET_COLUMNS: &str =
    "provider, subject, email, email_verified, suggested_handle, suggested_name, user_id, attempts, expires_at";

/// A usable ticket: unused, unexpired, of its kind, fewer than the most wrong proofs allowed
/// (`$1` hash, `$2` kind, `$3` now, `$4` most attempts).
const USABLE: &str = "ticket_hash = $1 and kind = $2 and used_at is null and expires_at > $3 and attempts < $4";

/// The usable ticket.
pub async fn usable_ticket(
    db: impl PgExecutor<'_>,
    ticket_hash: &[u8],
    kind: TicketKind,
    now: DateTime<Utc>,
    max_attempts: i32,
) -> AppResult<Option<Ticket>> {
    let sql = format!("select {TICKET_COLUMNS} from external_tickets where {USABLE}");
    fetch_ticket(db, sql, ticket_hash, kind, now, max_attempts).await
}

/// Marks the ticket used if it still is usable; of two concurrent uses exactly one gets it.
pub async fn use_ticket(
    conn: &mut PgConnection,
    ticket_hash: &[u8],
    kind: TicketKind,
    now: DateTime<Utc>,
    max_attempts: i32,
) -> AppResult<Option<Ticket>> {
    let sql = format!("update external_tickets set used_at = $3 where {USABLE} returning {TICKET_COLUMNS}");
    fetch_ticket(conn, sql, ticket_hash, kind, now, max_attempts).await
}

/// Runs `sql` (a statement on [`USABLE`] tickets returning [`TICKET_COLUMNS`]).
async fn fetch_ticket(
    db: impl PgExecutor<'_>,
    sql: String,
    ticket_hash: &[u8],
    kind: TicketKind,
    now: DateTime<Utc>,
    max_attempts: i32,
) -> AppResult<Option<Ticket>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(ticket_hash)
        .bind(kind.as_db())
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(db)
        .await?)
}

pub async fn count_ticket_attempt(db: impl PgExecutor<'_>, ticket_hash: &[u8]) -> AppResult<()> {
    sqlx::query("update external_tickets set attempts = attempts + 1 where ticket_hash = $1")
        .bind(ticket_hash)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes tickets that expired before `before`.
pub async fn delete_expired_tickets(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> AppResult<u64> {
    let r = sqlx::query("delete from external_tickets where expires_at < $1").bind(before).execute(db).await?;
    Ok(r.rows_affected())
}

/// The account a provider identity is linked to, its last login stamped.
pub async fn touch_identity(
    db: impl PgExecutor<'_>,
    provider: &str,
    subject: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<Uuid>> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "update external_identities set last_login_at = $3 where provider = $1 and subject = $2 returning user_id",
    )
    .bind(provider)
    .bind(subject)
    .bind(now)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(u,)| u))
}

/// Links an identity (unique per provider and subject, and per account and provider: a
/// violation maps to ALREADY_EXISTS `IDENTITY_TAKEN`).
pub async fn insert_identity(
    conn: &mut PgConnection,
    user_id: Uuid,
    provider: &str,
    subject: &str,
    email: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "insert into external_identities (id, user_id, provider, subject, email, linked_at, last_login_at)
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(provider)
    .bind(subject)
    .bind(email)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list_identities(db: impl PgExecutor<'_>, user_id: Uuid) -> AppResult<Vec<Identity>> {
    Ok(sqlx::query_as(
        "select provider, subject, email, linked_at, last_login_at from external_identities
         where user_id = $1 order by linked_at, provider",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

/// The providers of the account's identities, rows locked (concurrent unlinks take turns).
pub async fn lock_identities(conn: &mut PgConnection, user_id: Uuid) -> AppResult<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("select provider from external_identities where user_id = $1 order by provider for update")
            .bind(user_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

pub async fn delete_identity(conn: &mut PgConnection, user_id: Uuid, provider: &str) -> AppResult<bool> {
    let r = sqlx::query("delete from external_identities where user_id = $1 and provider = $2")
        .bind(user_id)
        .bind(provider)
        .execute(conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
