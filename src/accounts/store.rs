//! Every SQL statement of accounts and sessions.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{Device, PendingCode, SessionInfo, User, UserFilter};
use crate::caller::Role;
use crate::db::escape_like;
use crate::error::{AppResult, Reason};
use crate::sessions::SessionState;

const USER_COLUMNS: &str = "id, handle, email, display_name, role, created_at";

pub struct NewUser<'a> {
    pub handle: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: &'a str,
}

pub async fn insert_user(conn: &mut PgConnection, u: &NewUser<'_>) -> AppResult<User> {
    let user = sqlx::query_as::<_, User>(
        "insert into users (id, handle, email, password_hash, display_name)
         values ($1, $2, $3, $4, $5)
         returning id, handle, email, display_name, role, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(u.handle)
    .bind(u.email)
    .bind(u.password_hash)
    .bind(u.display_name)
    .fetch_one(conn)
    .await?;
    Ok(user)
}

/// Which of handle and email is already registered (a fast pre-check; the unique indexes
/// decide under concurrency).
pub async fn taken(db: impl PgExecutor<'_>, handle: &str, email: &str) -> AppResult<Option<Reason>> {
    let row: Option<(bool,)> = sqlx::query_as(
        "select lower(handle) = lower($1) from users
         where lower(handle) = lower($1) or lower(email) = lower($2)
         order by 1 desc limit 1",
    )
    .bind(handle)
    .bind(email)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(h,)| if h { Reason::HandleTaken } else { Reason::EmailTaken }))
}

pub async fn get_user(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<User>> {
    let sql = format!("select {USER_COLUMNS} from users where id = $1 and deleted_at is null");
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?)
}

/// The live or suspended account whose handle or email is `login`, with its password hash and
/// whether it is suspended (deleted accounts are not found).
pub async fn find_for_login(db: impl PgExecutor<'_>, login: &str) -> AppResult<Option<(User, String, bool)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        user: User,
        password_hash: String,
        suspended: bool,
    }
    let sql = format!(
        "select {USER_COLUMNS}, password_hash, suspended_at is not null as suspended from users
         where (lower(handle) = lower($1) or lower(email) = lower($1))
           and (deleted_at is null or suspended_at is not null)
         order by suspended_at nulls first
         limit 1"
    );
    let row = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql)).bind(login).fetch_optional(db).await?;
    Ok(row.map(|r| (r.user, r.password_hash, r.suspended)))
}

pub async fn password_hash(db: impl PgExecutor<'_>, user_id: Uuid) -> AppResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("select password_hash from users where id = $1 and deleted_at is null")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.0))
}

pub async fn update_password(db: impl PgExecutor<'_>, user_id: Uuid, hash: &str) -> AppResult<()> {
    sqlx::query("update users set password_hash = $2, updated_at = now() where id = $1")
        .bind(user_id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn set_role_by_handle(db: impl PgExecutor<'_>, handle: &str, role: Role) -> AppResult<Option<User>> {
    let sql = format!(
        "update users set role = $2, updated_at = now()
         where lower(handle) = lower($1) and deleted_at is null and role <> 'GUEST'
         returning {USER_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql)).bind(handle).bind(role.as_db()).fetch_optional(db).await?)
}

/// Users newest first, after the `(created_at, id)` cursor.
pub async fn list_users(
    db: impl PgExecutor<'_>,
    filter: &UserFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<User>> {
    let sql = format!(
        "select {USER_COLUMNS} from users
         where deleted_at is null
           and ($1::text is null or handle ilike '%' || $1 || '%' or display_name ilike '%' || $1 || '%')
           and ($2::text is null or role = $2)
           and ($3::timestamptz is null or (created_at, id) < ($3, $4))
         order by created_at desc, id desc
         limit $5"
    );
    let query = filter.query.as_deref().map(escape_like);
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(query)
        .bind(filter.role.map(Role::as_db))
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// The state of a session as the auth layer's session check needs it (its account's deletion
/// and role included); `None` for an unknown session.
pub async fn session_state(db: impl PgExecutor<'_>, session_id: Uuid) -> AppResult<Option<SessionState>> {
    let row: Option<(Uuid, bool, bool, String)> = sqlx::query_as(
        "select s.user_id, s.revoked_at is null, u.deleted_at is null, u.role
         from sessions s join users u on u.id = s.user_id
         where s.id = $1",
    )
    .bind(session_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(user_id, live, active, role)| SessionState {
        user_id,
        live,
        active,
        // An unknown role admits nothing beyond a user's rights.
        role: Role::from_db(&role).unwrap_or(Role::User),
    }))
}

pub async fn insert_session(conn: &mut PgConnection, user_id: Uuid, device: &Device) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("insert into sessions (id, user_id, user_agent, address) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(user_id)
        .bind(&device.user_agent)
        .bind(&device.address)
        .execute(conn)
        .await?;
    Ok(id)
}

/// Serialises the logins of one user (the session limit counts live sessions). `no key
/// update` does not block rows that reference the user.
pub async fn lock_user_sessions(conn: &mut PgConnection, user_id: Uuid) -> AppResult<()> {
    sqlx::query("select 1 from users where id = $1 for no key update").bind(user_id).execute(conn).await?;
    Ok(())
}

/// Revokes the user's live sessions beyond the newest `keep`; returns how many.
pub async fn revoke_sessions_beyond(conn: &mut PgConnection, user_id: Uuid, keep: i64) -> AppResult<u64> {
    Ok(sqlx::query(
        "update sessions set revoked_at = now(), revoked_reason = 'session limit'
         where id in (select id from sessions
                      where user_id = $1 and revoked_at is null and expires_at > now()
                      order by created_at desc, id desc offset $2)",
    )
    .bind(user_id)
    .bind(keep)
    .execute(conn)
    .await?
    .rows_affected())
}

/// The user's live sessions (not revoked, refresh token not expired), newest first, after the
/// `(created_at, id)` cursor.
pub async fn list_sessions(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<SessionInfo>> {
    let (at, id) = after.unzip();
    Ok(sqlx::query_as::<_, SessionInfo>(
        "select id, created_at, last_used_at, expires_at, user_agent, address from sessions
         where user_id = $1 and revoked_at is null and expires_at > now()
           and ($2::timestamptz is null or (created_at, id) < ($2, $3))
         order by created_at desc, id desc limit $4",
    )
    .bind(user_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Revokes one live session of the user; false when the user has no such live session.
pub async fn revoke_own_session(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update sessions set revoked_at = now(), revoked_reason = $3
         where id = $1 and user_id = $2 and revoked_at is null and expires_at > now()",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(reason)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn insert_refresh_token(
    conn: &mut PgConnection,
    hash: &[u8],
    session_id: Uuid,
    expires_at: DateTime<Utc>,
) -> AppResult<()> {
    // The session lasts as long as its newest refresh token.
    sqlx::query(
        "with t as (insert into refresh_tokens (token_hash, session_id, expires_at) values ($1, $2, $3))
         update sessions set expires_at = $3 where id = $2",
    )
    .bind(hash)
    .bind(session_id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// What presenting a refresh token found.
#[derive(Debug)]
pub enum TokenUse {
    /// Unused, unexpired, live session: now marked used.
    Fresh {
        session_id: Uuid,
        user_id: Uuid,
    },
    /// Used before: a replay (or a stolen copy).
    Reused {
        session_id: Uuid,
        user_id: Uuid,
    },
    Revoked,
    Expired,
    Unknown,
    /// The session's account is suspended (its sessions were revoked with the suspension).
    Suspended,
}

/// Marks the token used if it may be used; the row lock makes concurrent presentations of one
/// token serialise, so only the first is `Fresh`.
pub async fn use_refresh_token(conn: &mut PgConnection, hash: &[u8]) -> AppResult<TokenUse> {
    let fresh: Option<(Uuid, Uuid)> = sqlx::query_as(
        "update refresh_tokens rt set used_at = now()
         from sessions s
         where rt.token_hash = $1 and rt.used_at is null and rt.expires_at > now()
           and s.id = rt.session_id and s.revoked_at is null
         returning rt.session_id, s.user_id",
    )
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((session_id, user_id)) = fresh {
        return Ok(TokenUse::Fresh { session_id, user_id });
    }
    let row: Option<(Uuid, Uuid, bool, bool, bool, bool)> = sqlx::query_as(
        "select rt.session_id, s.user_id, rt.used_at is not null, s.revoked_at is not null, rt.expires_at <= now(),
                u.suspended_at is not null
         from refresh_tokens rt join sessions s on s.id = rt.session_id join users u on u.id = s.user_id
         where rt.token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        None => TokenUse::Unknown,
        Some((_, _, _, _, _, true)) => TokenUse::Suspended,
        Some((session_id, user_id, used, revoked, expired, false)) => match (used, revoked, expired) {
            (_, true, _) => TokenUse::Revoked,
            (true, _, _) => TokenUse::Reused { session_id, user_id },
            (_, _, true) => TokenUse::Expired,
            _ => TokenUse::Unknown,
        },
    })
}

/// The session (and its user) a refresh token belongs to.
pub async fn session_of_token(db: impl PgExecutor<'_>, hash: &[u8]) -> AppResult<Option<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "select rt.session_id, s.user_id from refresh_tokens rt join sessions s on s.id = rt.session_id
         where rt.token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(db)
    .await?)
}

pub async fn touch_session(db: impl PgExecutor<'_>, session_id: Uuid) -> AppResult<()> {
    sqlx::query("update sessions set last_used_at = now() where id = $1").bind(session_id).execute(db).await?;
    Ok(())
}

pub async fn revoke_session(db: impl PgExecutor<'_>, session_id: Uuid, reason: &str) -> AppResult<()> {
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = $2 where id = $1 and revoked_at is null")
        .bind(session_id)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(())
}

/// Revokes every live session of the user except `keep`; returns how many.
pub async fn revoke_other_sessions(db: impl PgExecutor<'_>, user_id: Uuid, keep: Uuid, reason: &str) -> AppResult<u64> {
    Ok(sqlx::query(
        "update sessions set revoked_at = now(), revoked_reason = $3
         where user_id = $1 and id <> $2 and revoked_at is null",
    )
    .bind(user_id)
    .bind(keep)
    .bind(reason)
    .execute(db)
    .await?
    .rows_affected())
}

/// Deletes refresh tokens expired for more than a day; returns how many.
pub async fn delete_expired_refresh_tokens(db: impl PgExecutor<'_>) -> AppResult<u64> {
    Ok(sqlx::query("delete from refresh_tokens where expires_at < now() - interval '1 day'")
        .execute(db)
        .await?
        .rows_affected())
}

// ---- email verification and password reset

/// The account's address and whether it is verified, the account row locked (sends of one
/// account take turns); `None` for a deleted account.
pub async fn lock_user_email(conn: &mut PgConnection, user_id: Uuid) -> AppResult<Option<(String, bool)>> {
    Ok(sqlx::query_as(
        "select email, email_verified_at is not null from users where id = $1 and deleted_at is null
         for no key update",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

/// Stores a new code for the account, replacing any earlier one (attempts start again).
pub async fn upsert_code(
    conn: &mut PgConnection,
    user_id: Uuid,
    code_hash: &[u8],
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "insert into email_verification_codes (user_id, code_hash, attempts, expires_at, created_at)
         values ($1, $2, 0, $3, $4)
         on conflict (user_id) do update
            set code_hash = excluded.code_hash, attempts = 0, expires_at = excluded.expires_at,
                created_at = excluded.created_at",
    )
    .bind(user_id)
    .bind(code_hash)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The account's pending code, locked (concurrent attempts take turns and all count).
pub async fn lock_pending_code(conn: &mut PgConnection, user_id: Uuid) -> AppResult<Option<PendingCode>> {
    Ok(sqlx::query_as(
        "select code_hash, attempts, expires_at from email_verification_codes where user_id = $1 for update",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn count_code_attempt(conn: &mut PgConnection, user_id: Uuid) -> AppResult<()> {
    sqlx::query("update email_verification_codes set attempts = attempts + 1 where user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the account's code and marks its address verified (at `now`, unless it already
/// was); returns when it was verified.
pub async fn verify_email(conn: &mut PgConnection, user_id: Uuid, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    sqlx::query("delete from email_verification_codes where user_id = $1").bind(user_id).execute(&mut *conn).await?;
    let (at,): (DateTime<Utc>,) = sqlx::query_as(
        "update users set email_verified_at = coalesce(email_verified_at, $2) where id = $1
         returning email_verified_at",
    )
    .bind(user_id)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(at)
}

/// The live account whose address is `email` (case-insensitively), with the address as stored.
pub async fn live_user_by_email(db: impl PgExecutor<'_>, email: &str) -> AppResult<Option<(Uuid, String)>> {
    Ok(sqlx::query_as("select id, email from users where lower(email) = lower($1) and deleted_at is null")
        .bind(email)
        .fetch_optional(db)
        .await?)
}

pub async fn insert_reset_token(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "insert into password_reset_tokens (token_hash, user_id, expires_at, created_at) values ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

const USABLE_RESET_TOKEN: &str = "t.token_hash = $1 and t.used_at is null and t.expires_at > $2
    and u.id = t.user_id and u.deleted_at is null";

/// The account of a usable reset token (a read, before the expensive password hash).
pub async fn reset_token_user(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> AppResult<Option<Uuid>> {
    let sql = format!("select t.user_id from password_reset_tokens t, users u where {USABLE_RESET_TOKEN}");
    let row: Option<(Uuid,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token_hash).bind(now).fetch_optional(db).await?;
    Ok(row.map(|r| r.0))
}

/// Uses a reset token if it is usable: of concurrent uses exactly one gets the account.
pub async fn use_reset_token(
    conn: &mut PgConnection,
    token_hash: &[u8],
    now: DateTime<Utc>,
) -> AppResult<Option<Uuid>> {
    let sql = format!(
        "update password_reset_tokens t set used_at = $2 from users u where {USABLE_RESET_TOKEN}
         returning t.user_id"
    );
    let row: Option<(Uuid,)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(token_hash).bind(now).fetch_optional(conn).await?;
    Ok(row.map(|r| r.0))
}

/// After a reset: every other reset token of the account stops working, and the address is
/// verified (the token came through it).
pub async fn finish_reset(conn: &mut PgConnection, user_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    sqlx::query("update password_reset_tokens set used_at = $2 where user_id = $1 and used_at is null")
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("update users set email_verified_at = coalesce(email_verified_at, $2) where id = $1")
        .bind(user_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts a guest account (no email, no usable password) unless its handle is taken; `None`
/// when it is (the caller draws another handle).
pub async fn insert_guest(
    conn: &mut PgConnection,
    handle: &str,
    display_name: &str,
    expires_at: DateTime<Utc>,
) -> AppResult<Option<User>> {
    let sql = format!(
        "insert into users (id, handle, email, password_hash, display_name, role, guest_expires_at)
         values ($1, $2, '', '', $3, 'GUEST', $4)
         on conflict do nothing
         returning {USER_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(handle)
        .bind(display_name)
        .bind(expires_at)
        .fetch_optional(conn)
        .await?)
}

/// When the guest `user_id`'s visit ends; `None` for a non-guest (or unknown) account.
pub async fn guest_expiry(db: impl PgExecutor<'_>, user_id: Uuid) -> AppResult<Option<DateTime<Utc>>> {
    let row: Option<(Option<DateTime<Utc>>,)> =
        sqlx::query_as("select guest_expires_at from users where id = $1 and role = 'GUEST' and deleted_at is null")
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(row.and_then(|r| r.0))
}

/// Makes the live guest `user_id` (not expired at `now`) a USER with these credentials, keeping
/// its id; `None` when it is not a live guest. Unique indexes decide taken handles and emails.
pub async fn convert_guest(
    conn: &mut PgConnection,
    user_id: Uuid,
    u: &NewUser<'_>,
    now: DateTime<Utc>,
) -> AppResult<Option<User>> {
    let sql = format!(
        "update users set handle = $2, email = $3, password_hash = $4, display_name = $5, role = 'USER',
                guest_expires_at = null, guest_converted_at = $6, updated_at = now()
         where id = $1 and role = 'GUEST' and deleted_at is null and guest_expires_at > $6
         returning {USER_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, User>(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(u.handle)
        .bind(u.email)
        .bind(u.password_hash)
        .bind(u.display_name)
        .bind(now)
        .fetch_optional(conn)
        .await?)
}

/// Claims the nightly guest clean-up of `slot`: true for the one transaction that inserts the
/// slot's row (a concurrent claim waits for it, then finds the row and gets false).
pub async fn claim_guest_cleanup(conn: &mut PgConnection, slot: DateTime<Utc>) -> AppResult<bool> {
    Ok(sqlx::query("insert into guest_cleanup_runs (slot, deleted) values ($1, 0) on conflict do nothing")
        .bind(slot)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Records how many guests the clean-up of `slot` deleted.
pub async fn finish_guest_cleanup(conn: &mut PgConnection, slot: DateTime<Utc>, deleted: u64) -> AppResult<()> {
    sqlx::query("update guest_cleanup_runs set deleted = $2, ran_at = now() where slot = $1")
        .bind(slot)
        .bind(deleted as i64)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the guests whose visit ended at or before `now`, with everything that references
/// them (sessions, refresh tokens, memberships: `on delete cascade`); returns their ids.
pub async fn delete_expired_guests(conn: &mut PgConnection, now: DateTime<Utc>) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> =
        sqlx::query_as("delete from users where role = 'GUEST' and guest_expires_at <= $1 returning id")
            .bind(now)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Guests whose visit has not ended at `now`.
pub async fn count_active_guests(db: impl PgExecutor<'_>, now: DateTime<Utc>) -> AppResult<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "select count(*) from users where role = 'GUEST' and guest_expires_at > $1 and deleted_at is null",
    )
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(n)
}

// ---- external identities (`super::external`)

/// `Some(suspended)` for a live or suspended account, `None` for a deleted or unknown one.
pub async fn account_standing(db: impl PgExecutor<'_>, user_id: Uuid) -> AppResult<Option<bool>> {
    let row: Option<(bool,)> = sqlx::query_as(
        "select suspended_at is not null from users
         where id = $1 and (deleted_at is null or suspended_at is not null)",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(s,)| s))
}

/// The live account whose verified address is `email`: id, handle, whether it has a password.
pub async fn verified_owner(db: impl PgExecutor<'_>, email: &str) -> AppResult<Option<(Uuid, String, bool)>> {
    Ok(sqlx::query_as(
        "select id, handle, password_hash <> '' from users
         where lower(email) = lower($1) and email <> '' and email_verified_at is not null and deleted_at is null",
    )
    .bind(email)
    .fetch_optional(db)
    .await?)
}

pub async fn delete_code(conn: &mut PgConnection, user_id: Uuid) -> AppResult<()> {
    sqlx::query("delete from email_verification_codes where user_id = $1").bind(user_id).execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::db::fixtures::user;

    /// The user statements share one column list; the list filters on text (wildcards
    /// literal), role and the cursor.
    #[sqlx::test]
    async fn users_by_filter_and_cursor(pool: PgPool) {
        let kim = user(&pool, "kim_100", false).await;
        let lee = user(&pool, "lee", true).await;
        let park = user(&pool, "park1000", false).await;
        let ids = |v: Vec<User>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
        let list = |query: Option<&str>, role: Option<Role>| {
            let (pool, filter) = (pool.clone(), UserFilter { query: query.map(Into::into), role });
            async move { ids(list_users(&pool, &filter, None, 10).await.unwrap()) }
        };
        assert_eq!(list(None, None).await, [park, lee, kim]);
        assert_eq!(list(Some("_1"), None).await, [kim], "_ is literal");
        assert_eq!(list(Some("100"), None).await, [park, kim]);
        assert_eq!(list(None, Some(Role::Admin)).await, [lee]);
        let all = list_users(&pool, &UserFilter { query: None, role: None }, None, 1).await.unwrap();
        let rest = list_users(&pool, &UserFilter { query: None, role: None }, Some((all[0].created_at, all[0].id)), 10);
        assert_eq!(ids(rest.await.unwrap()), [lee, kim]);

        assert_eq!(get_user(&pool, kim).await.unwrap().unwrap().handle, "kim_100");
        let (found, hash, suspended) = find_for_login(&pool, "LEE@example.com").await.unwrap().unwrap();
        assert_eq!((found.id, hash.as_str(), suspended), (lee, "x", false));
        // A suspended account is found (Login tells it apart once the password checked out),
        // a deleted one is not.
        sqlx::query("update users set deleted_at = now(), suspended_at = now() where id = $1")
            .bind(lee)
            .execute(&pool)
            .await
            .unwrap();
        assert!(find_for_login(&pool, "lee@example.com").await.unwrap().unwrap().2);
        sqlx::query("update users set suspended_at = null where id = $1").bind(lee).execute(&pool).await.unwrap();
        assert!(find_for_login(&pool, "lee@example.com").await.unwrap().is_none());
        let promoted = set_role_by_handle(&pool, "KIM_100", Role::Admin).await.unwrap().unwrap();
        assert_eq!((promoted.id, promoted.role), (kim, Role::Admin));
        assert!(set_role_by_handle(&pool, "nobody", Role::Admin).await.unwrap().is_none());
    }
}
