//! Public API: what sign-in with external identity providers (`crate::identity`) needs of
//! accounts — creating an account without a password, opening a session on it (the session
//! limit and token issue of Login), the account a verified address belongs to, and proving an
//! account with its password or a mailed code (the verification code mechanism of
//! SendVerificationCode / VerifyEmail). The identity domain decides when; accounts keeps its
//! invariants here.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Device, Email, Handle, Tokens, User};
pub use super::ops::CodeMail;
use super::ops::{self, check_code, issue_tokens, login_counted, mail_code, registration_counted, taken_error};
use super::store::{self, NewUser};
use crate::error::{AppError, AppResult, Reason};
use crate::mail::{self, Lang};
use crate::sessions::sessions_changed;
use crate::state::AppState;

/// An account made from a provider identity: no password (an empty hash never logs in);
/// `email` may be empty (the provider gave none) and counts as verified when the provider
/// verified it.
pub struct NewExternalUser<'a> {
    pub handle: &'a Handle,
    pub email: Option<&'a Email>,
    pub display_name: &'a str,
    pub email_verified: bool,
}

/// Creates the account in `conn` (the caller's transaction). ALREADY_EXISTS `HANDLE_TAKEN` /
/// `EMAIL_TAKEN` as SignUp. Counted in `maru_registrations_total{method}` once committed
/// ([`registered`]).
pub async fn create_external_user(
    state: &AppState,
    conn: &mut PgConnection,
    u: &NewExternalUser<'_>,
) -> AppResult<User> {
    let email = u.email.map_or("", Email::as_str);
    if let Some(reason) =
        store::taken(&mut *conn, u.handle.as_str(), if email.is_empty() { "\u{0}" } else { email }).await?
    {
        return Err(taken_error(reason));
    }
    let user = store::insert_user(
        &mut *conn,
        &NewUser { handle: u.handle.as_str(), email, password_hash: "", display_name: u.display_name },
    )
    .await?;
    if u.email_verified && !email.is_empty() {
        store::verify_email(conn, user.id, state.clock.now()).await?;
    }
    Ok(user)
}

/// Counts an account created through a provider (`method`: github, google, oidc).
pub fn registered(method: &'static str) {
    registration_counted(method);
}

/// Counts an external sign-in attempt in `maru_logins_total{method, outcome}`.
pub fn login_outcome(method: &'static str, outcome: &'static str) {
    login_counted(method, outcome);
}

/// A session opened by [`open_session`]; pass it to [`session_opened`] once committed.
pub struct Opened {
    pub tokens: Tokens,
    pub user: User,
    evicted: u64,
}

/// Opens a session for the account in `conn` (the caller's transaction) as Login does: the
/// session limit evicts the oldest. NOT_FOUND `USER_NOT_FOUND` for a deleted account,
/// PERMISSION_DENIED `ACCOUNT_SUSPENDED` for a suspended one.
pub async fn open_session(
    state: &AppState,
    conn: &mut PgConnection,
    user_id: Uuid,
    device: &Device,
) -> AppResult<Opened> {
    match store::account_standing(&mut *conn, user_id).await? {
        None => return Err(AppError::not_found(Reason::UserNotFound, "user")),
        Some(true) => return Err(AppError::permission_denied(Reason::AccountSuspended, "this account is suspended")),
        Some(false) => {}
    }
    let user =
        store::get_user(&mut *conn, user_id).await?.ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user"))?;
    store::lock_user_sessions(conn, user.id).await?;
    let session_id = store::insert_session(conn, user.id, device).await?;
    let tokens = issue_tokens(state, conn, &user, session_id, None).await?;
    let limit = i64::from(state.settings.auth.max_sessions_per_user);
    let evicted = store::revoke_sessions_beyond(conn, user.id, limit).await?;
    Ok(Opened { tokens, user, evicted })
}

/// After the transaction of [`open_session`] committed: the evicted sessions stop at once and
/// the sign-in is counted.
pub async fn session_opened(state: &AppState, opened: &Opened, method: &'static str) {
    if opened.evicted > 0 {
        sessions_changed(&state.cache, opened.user.id).await;
        metrics::counter!("maru_sessions_evicted_total").increment(opened.evicted);
        tracing::info!(user_id = %opened.user.id, evicted = opened.evicted, "session limit: oldest sessions revoked");
    }
    login_counted(method, "ok");
}

/// The live account whose VERIFIED address is `email` (case-insensitively): its id, handle and
/// whether it has a password.
pub async fn verified_owner(state: &AppState, email: &str) -> AppResult<Option<(Uuid, String, bool)>> {
    store::verified_owner(&state.db, email).await
}

/// Whether the live account has a password.
pub async fn has_password(state: &AppState, user_id: Uuid) -> AppResult<bool> {
    Ok(store::password_hash(&state.db, user_id).await?.is_some_and(|h| !h.is_empty()))
}

/// Whether `password` is the account's; `None` when it has none.
pub async fn check_password(state: &AppState, user_id: Uuid, password: &SecretString) -> AppResult<Option<bool>> {
    let hash = store::password_hash(&state.db, user_id).await?.filter(|h| !h.is_empty());
    if hash.is_none() {
        return Ok(None);
    }
    Ok(Some(state.passwords.verify(password, hash).await?))
}

/// Mails a code to the account's address (its verified address), as SendVerificationCode:
/// the same code store, lifetime and send limits; the mail says what the code is for
/// (`what`). Returns when it expires.
pub async fn send_account_code(
    state: &AppState,
    user_id: Uuid,
    lang: Lang,
    what: CodeMail<'_>,
    event: &'static str,
) -> AppResult<DateTime<Utc>> {
    let mut tx = crate::db::begin(&state.db).await?;
    let Some((email, _)) = store::lock_user_email(&mut tx, user_id).await? else {
        return Err(AppError::not_found(Reason::UserNotFound, "user"));
    };
    let expires_at = mail_code(state, &mut tx, user_id, &email, lang, what, event).await?;
    crate::db::commit(&state.db, tx).await?;
    mail::queued(what.kind());
    tracing::info!(user_id = %user_id, "account code queued");
    Ok(expires_at)
}

/// Checks a code mailed by [`send_account_code`] (as VerifyEmail: attempts, expiry) and
/// consumes it in the returned transaction.
pub async fn use_account_code(
    state: &AppState,
    user_id: Uuid,
    code: &str,
    event: &'static str,
) -> AppResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    let tx = crate::db::begin(&state.db).await?;
    let mut tx = check_code(state, tx, user_id, code, event).await?;
    store::delete_code(&mut tx, user_id).await?;
    Ok(tx)
}

/// A mailed code as typed: the rules of VerifyEmail's `code`.
pub fn parse_account_code(raw: &str) -> Result<String, String> {
    super::model::parse_code(raw)
}

/// Counts an account event in `maru_auth_events_total{event, outcome}`.
pub fn auth_event(event: &'static str, outcome: &'static str) {
    ops::auth_event(event, outcome);
}
