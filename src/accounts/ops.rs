//! Account use cases. Who may do what:
//! - anyone: SignUp, Login, Refresh, Logout (holding the refresh token is the authority);
//! - a caller: ChangePassword, WhoAmI, and their own sessions: ListSessions, RevokeSession,
//!   LogoutAll; their own address: SendVerificationCode, VerifyEmail;
//! - anyone: RequestPasswordReset (answered alike for every address), ResetPassword (holding
//!   the mailed token is the authority);
//! - an operator at the CLI: grant and revoke ADMIN.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::model::{
    ChangePassword, Device, Login, RequestReset, ResetPassword, SendCode, SessionInfo, SignUp, Tokens, User,
    UserFilter, VerifyEmail, hash_code, new_code, same_hash,
};
use super::refresh::{hash_refresh_token, new_refresh_token};
use super::store::{self, NewUser, TokenUse};
use crate::caller::{Caller, Role};
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{self, Owner};
use crate::mail::{self, Kind, templates};
use crate::sessions::{SessionLoader, sessions_changed};
use crate::state::AppState;

/// Cache key of a user as WhoAmI returns it.
pub fn user_cache_key(id: uuid::Uuid) -> String {
    format!("user:{id}")
}

#[tracing::instrument(name = "accounts.sign_up", skip_all, err(level = "debug"))]
pub async fn sign_up(state: &AppState, cmd: SignUp) -> AppResult<User> {
    #[derive(Serialize)]
    struct Fingerprint<'a> {
        handle: &'a str,
        email: &'a str,
        display_name: &'a str,
    }
    let email = cmd.email.as_str().to_lowercase();
    let fp = Fingerprint { handle: cmd.handle.as_str(), email: &email, display_name: &cmd.display_name };
    let rid = cmd.request_id.as_ref();
    // A completed duplicate is answered before the expensive hash.
    if let Some(user) = idempotency::lookup(&state.db, "SignUp", Owner::Anonymous, rid, &fp).await? {
        return Ok(user);
    }
    // Cheap refusal before an expensive hash; the unique indexes still decide races.
    if let Some(reason) = store::taken(&state.db, cmd.handle.as_str(), cmd.email.as_str()).await? {
        return Err(taken_error(reason));
    }
    let hash = state.passwords.hash(&cmd.password).await?;

    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(user) = idempotency::replayed(state, &mut tx, "SignUp", Owner::Anonymous, rid, &fp).await? {
        return Ok(user);
    }
    let user = store::insert_user(
        &mut tx,
        &NewUser {
            handle: cmd.handle.as_str(),
            email: cmd.email.as_str(),
            password_hash: &hash,
            display_name: &cmd.display_name,
        },
    )
    .await?;
    idempotency::remember(&mut tx, "SignUp", Owner::Anonymous, rid, &user).await?;
    crate::db::commit(&state.db, tx).await?;
    registration_counted("password");
    tracing::info!(user_id = %user.id, "account created");
    Ok(user)
}

/// ALREADY_EXISTS for a handle or email found taken before the write (counted as the unique
/// conflict it would have been).
pub(super) fn taken_error(reason: Reason) -> AppError {
    metrics::counter!("maru_unique_conflicts_total", "constraint" => constraint_of(reason)).increment(1);
    AppError::already_exists(reason, taken_message(reason))
}

/// `maru_logins_total{method, outcome}`: every credential exchange — `password` (Login),
/// `refresh` (Refresh), `guest` (StartGuestSession); `rate_limited` is counted by the admission
/// layer (`crate::grpc::admission`).
pub(super) fn login_counted(method: &'static str, outcome: &'static str) {
    metrics::counter!("maru_logins_total", "method" => method, "outcome" => outcome).increment(1);
}

/// `maru_registrations_total{method}`: accounts created — `password` (SignUp) or
/// `guest_conversion` (ConvertGuest).
pub(super) fn registration_counted(method: &'static str) {
    metrics::counter!("maru_registrations_total", "method" => method).increment(1);
}

fn constraint_of(reason: Reason) -> &'static str {
    crate::error::UNIQUE_CONSTRAINTS.iter().find(|(_, r)| *r == reason).map_or("other", |(c, _)| c)
}

fn taken_message(reason: Reason) -> &'static str {
    if reason == Reason::HandleTaken { "handle is already taken" } else { "email is already registered" }
}

fn bad_credentials() -> AppError {
    AppError::unauthenticated(Reason::BadCredentials, "login or password is incorrect")
}

fn account_suspended() -> AppError {
    AppError::permission_denied(Reason::AccountSuspended, "this account is suspended")
}

#[tracing::instrument(name = "accounts.login", skip_all, err(level = "debug"))]
pub async fn login(state: &AppState, cmd: Login, device: &Device) -> AppResult<(Tokens, User)> {
    let found = store::find_for_login(&state.db, cmd.login.trim()).await?;
    let (user, hash, suspended) = match found {
        // A guest has no password (an empty hash): its handle never logs in.
        Some((_, h, _)) if h.is_empty() => (None, None, false),
        Some((u, h, s)) => (Some(u), Some(h), s),
        None => (None, None, false),
    };
    // Verified even when no account matched, so both failures take the same time.
    let ok = state.passwords.verify(&cmd.password, hash).await?;
    let user = match user {
        Some(u) if ok => u,
        _ => {
            login_counted("password", "bad_credentials");
            return Err(bad_credentials());
        }
    };
    // Said only to whoever knows the password: to anyone else a suspended account is an
    // unknown one.
    if suspended {
        login_counted("password", "suspended");
        return Err(account_suspended());
    }
    let mut tx = crate::db::begin(&state.db).await?;
    // Concurrent logins of one user take turns, so the limit holds exactly.
    store::lock_user_sessions(&mut tx, user.id).await?;
    let session_id = store::insert_session(&mut tx, user.id, device).await?;
    let tokens = issue_tokens(state, &mut tx, &user, session_id, None).await?;
    let limit = i64::from(state.settings.auth.max_sessions_per_user);
    let evicted = store::revoke_sessions_beyond(&mut tx, user.id, limit).await?;
    crate::db::commit(&state.db, tx).await?;
    if evicted > 0 {
        sessions_changed(&state.cache, user.id).await;
        metrics::counter!("maru_sessions_evicted_total").increment(evicted);
        tracing::info!(user_id = %user.id, evicted, "session limit: oldest sessions revoked");
    }
    login_counted("password", "ok");
    Ok((tokens, user))
}

/// A new token pair for the session; the refresh token lasts `auth.refresh_ttl_s`, or until
/// `until` when that is sooner (a guest's visit).
pub(super) async fn issue_tokens(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    user: &User,
    session_id: uuid::Uuid,
    until: Option<DateTime<Utc>>,
) -> AppResult<Tokens> {
    let now = Utc::now();
    let (refresh_token, hash) = new_refresh_token();
    let full = now + Duration::seconds(state.settings.auth.refresh_ttl_s as i64);
    let refresh_expires_at = until.map_or(full, |u| u.min(full));
    store::insert_refresh_token(conn, &hash, session_id, refresh_expires_at).await?;
    let (access_token, access_expires_at) = state.tokens.issue(user.id, session_id, user.role, now)?;
    Ok(Tokens { access_token, access_expires_at, refresh_token, refresh_expires_at })
}

/// Rotates a refresh token. A token presented twice revokes its whole session: whoever holds
/// the other copy (the legitimate client or a thief) must log in again.
#[tracing::instrument(name = "accounts.refresh", skip_all, err(level = "debug"))]
pub async fn refresh(state: &AppState, token: &str) -> AppResult<Tokens> {
    let hash = hash_refresh_token(token);
    let mut tx = crate::db::begin(&state.db).await?;
    let outcome = store::use_refresh_token(&mut tx, &hash).await?;
    let mut ended = None;
    let (label, result) = match outcome {
        TokenUse::Fresh { session_id, user_id } => match store::get_user(&mut *tx, user_id).await? {
            Some(user) => {
                store::touch_session(&mut *tx, session_id).await?;
                // A guest's session never outlives its visit.
                let until = if user.role == Role::Guest { store::guest_expiry(&mut *tx, user.id).await? } else { None };
                let tokens = issue_tokens(state, &mut tx, &user, session_id, until).await?;
                ("ok", Ok(tokens))
            }
            // Suspension revokes the sessions in its transaction, so a fresh token's account is
            // only gone when it was deleted.
            None => {
                ("invalid", Err(AppError::unauthenticated(Reason::RefreshTokenInvalid, "account no longer exists")))
            }
        },
        TokenUse::Suspended => ("suspended", Err(account_suspended())),
        TokenUse::Reused { session_id, user_id } => {
            store::revoke_session(&mut *tx, session_id, "refresh token reuse").await?;
            ended = Some(user_id);
            tracing::warn!(session_id = %session_id, "refresh token reused: session revoked");
            (
                "reused",
                Err(AppError::unauthenticated(
                    Reason::RefreshTokenReused,
                    "refresh token was already used; session revoked",
                )),
            )
        }
        TokenUse::Revoked => {
            ("revoked", Err(AppError::unauthenticated(Reason::SessionRevoked, "session was revoked; log in again")))
        }
        TokenUse::Expired | TokenUse::Unknown => (
            "invalid",
            Err(AppError::unauthenticated(Reason::RefreshTokenInvalid, "refresh token is invalid or expired")),
        ),
    };
    // The revocation of a reused token must persist even though the call fails, and the
    // session's access tokens stop working before the call returns.
    crate::db::commit(&state.db, tx).await?;
    if let Some(user_id) = ended {
        sessions_changed(&state.cache, user_id).await;
    }
    login_counted("refresh", label);
    result
}

/// Revokes the session of `token`. Logging out twice is fine; an unknown token is not.
#[tracing::instrument(name = "accounts.logout", skip_all, err(level = "debug"))]
pub async fn logout(state: &AppState, token: &str) -> AppResult<()> {
    let hash = hash_refresh_token(token);
    let Some((session_id, user_id)) = store::session_of_token(&state.db, &hash).await? else {
        return Err(AppError::unauthenticated(Reason::RefreshTokenInvalid, "refresh token is invalid"));
    };
    store::revoke_session(&state.db, session_id, "logout").await?;
    sessions_changed(&state.cache, user_id).await;
    metrics::counter!("maru_auth_events_total", "event" => "logout", "outcome" => "ok").increment(1);
    Ok(())
}

/// Changes the password and revokes every other session of the caller.
#[tracing::instrument(name = "accounts.change_password", skip_all, err(level = "debug"))]
pub async fn change_password(state: &AppState, caller: &Caller, cmd: ChangePassword) -> AppResult<()> {
    let hash = store::password_hash(&state.db, caller.user_id).await?;
    if hash.is_none() {
        return Err(AppError::not_found(Reason::UserNotFound, "user"));
    }
    if !state.passwords.verify(&cmd.old, hash).await? {
        metrics::counter!("maru_auth_events_total", "event" => "change_password", "outcome" => "bad_credentials")
            .increment(1);
        return Err(Violations::one("old_password", "does not match the current password")
            .into_error_with(Reason::BadCredentials));
    }
    let new_hash = state.passwords.hash(&cmd.new).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    store::update_password(&mut *tx, caller.user_id, &new_hash).await?;
    let revoked = store::revoke_other_sessions(&mut *tx, caller.user_id, caller.session_id, "password changed").await?;
    crate::db::commit(&state.db, tx).await?;
    sessions_changed(&state.cache, caller.user_id).await;
    metrics::counter!("maru_auth_events_total", "event" => "change_password", "outcome" => "ok").increment(1);
    tracing::info!(revoked_sessions = revoked, "password changed");
    Ok(())
}

/// The caller's live sessions (signed-in devices), newest first.
#[tracing::instrument(name = "accounts.list_sessions", skip_all, err(level = "debug"))]
pub async fn list_sessions(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<SessionInfo>, String)> {
    let query = "list_sessions";
    let page = state.pager.page::<(DateTime<Utc>, Uuid)>(page_size, page_token, &query)?;
    let rows = store::list_sessions(&state.db, caller.user_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |s| (s.created_at, s.id)))
}

/// Ends one of the caller's sessions (another device, or this one). Another user's session is
/// NOT_FOUND, as an unknown one is.
#[tracing::instrument(name = "accounts.revoke_session", skip_all, err(level = "debug"))]
pub async fn revoke_session(state: &AppState, caller: &Caller, session_id: Uuid) -> AppResult<()> {
    if !store::revoke_own_session(&state.db, caller.user_id, session_id, "revoked by user").await? {
        return Err(AppError::not_found(Reason::SessionNotFound, "session"));
    }
    sessions_changed(&state.cache, caller.user_id).await;
    metrics::counter!("maru_auth_events_total", "event" => "revoke_session", "outcome" => "ok").increment(1);
    tracing::info!(session_id = %session_id, "session revoked by its user");
    Ok(())
}

/// Ends every session of the caller (`keep_current`: all but the calling one); returns how many.
#[tracing::instrument(name = "accounts.logout_all", skip_all, err(level = "debug"))]
pub async fn logout_all(state: &AppState, caller: &Caller, keep_current: bool) -> AppResult<u64> {
    // No session has the nil id, so `keep = nil` revokes them all.
    let keep = if keep_current { caller.session_id } else { Uuid::nil() };
    let revoked = store::revoke_other_sessions(&state.db, caller.user_id, keep, "logout all").await?;
    sessions_changed(&state.cache, caller.user_id).await;
    metrics::counter!("maru_auth_events_total", "event" => "logout_all", "outcome" => "ok").increment(1);
    tracing::info!(revoked_sessions = revoked, keep_current, "logged out everywhere");
    Ok(revoked)
}

#[tracing::instrument(name = "accounts.who_am_i", skip_all, err(level = "debug"))]
pub async fn who_am_i(state: &AppState, caller: &Caller) -> AppResult<User> {
    let db = &state.db;
    let user = state
        .cache
        .get_or_load("user", &user_cache_key(caller.user_id), std::time::Duration::from_secs(300), || async {
            store::get_user(db, caller.user_id).await
        })
        .await?;
    user.ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user"))
}

/// What the auth layer's session check loads on a cache miss: sessions and accounts are
/// accounts' tables (see [`crate::sessions`]).
pub fn session_loader(db: sqlx::PgPool) -> SessionLoader {
    std::sync::Arc::new(move |session_id| {
        let db = db.clone();
        Box::pin(async move { store::session_state(&db, session_id).await })
    })
}

/// Users newest first, after the `(created_at, id)` cursor: for operator tools, which decide
/// who may list them.
pub async fn list_users(
    state: &AppState,
    filter: &UserFilter,
    after: Option<(chrono::DateTime<Utc>, uuid::Uuid)>,
    limit: i64,
) -> AppResult<Vec<User>> {
    store::list_users(&state.db, filter, after, limit).await
}

/// Grants or revokes the deployment-wide ADMIN role (CLI bootstrap path).
pub async fn set_role(state: &AppState, handle: &str, role: Role) -> AppResult<User> {
    let user = store::set_role_by_handle(&state.db, handle.trim(), role)
        .await?
        .ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user"))?;
    state.cache.invalidate(&[user_cache_key(user.id)]).await;
    // Tokens issued before carry the old role; the session check reads the new one at once.
    sessions_changed(&state.cache, user.id).await;
    tracing::info!(user_id = %user.id, role = role.as_db(), "role changed");
    Ok(user)
}

fn email_rate_limited(wait: std::time::Duration, limit: &'static str) -> AppError {
    AppError::Retry {
        code: tonic::Code::ResourceExhausted,
        reason: Reason::EmailRateLimited,
        message: format!("too many mails asked for this {limit}; retry in {} s", wait.as_secs().max(1)),
        retry_after: wait,
        metadata: [("limit".to_owned(), limit.to_owned())].into(),
    }
}

pub(super) fn auth_event(event: &'static str, outcome: &'static str) {
    metrics::counter!("maru_auth_events_total", "event" => event, "outcome" => outcome).increment(1);
}

/// Mails a fresh verification code to the caller's address; returns when it expires.
#[tracing::instrument(name = "accounts.send_verification_code", skip_all, err(level = "debug"))]
pub async fn send_verification_code(state: &AppState, caller: &Caller, cmd: SendCode) -> AppResult<DateTime<Utc>> {
    const EVENT: &str = "send_verification_code";
    let mut tx = crate::db::begin(&state.db).await?;
    let Some((email, verified)) = store::lock_user_email(&mut tx, caller.user_id).await? else {
        return Err(AppError::not_found(Reason::UserNotFound, "user"));
    };
    if verified {
        auth_event(EVENT, "already_verified");
        return Err(AppError::failed_precondition(
            Reason::EmailAlreadyVerified,
            "the email address is already verified",
        ));
    }
    let expires_at = mail_code(state, &mut tx, caller.user_id, &email, cmd.lang, CodeMail::Verify, EVENT).await?;
    crate::db::commit(&state.db, tx).await?;
    mail::queued(Kind::VerificationCode);
    auth_event(EVENT, "ok");
    tracing::info!(user_id = %caller.user_id, "verification code queued");
    Ok(expires_at)
}

/// What a mailed account code is for: the mail says so.
#[derive(Debug, Clone, Copy)]
pub enum CodeMail<'a> {
    /// Verifying the account's address (SendVerificationCode).
    Verify,
    /// Linking a sign-in at this provider (its configured name) to the account.
    Link { provider: &'a str },
}

impl CodeMail<'_> {
    pub fn kind(self) -> Kind {
        match self {
            CodeMail::Verify => Kind::VerificationCode,
            CodeMail::Link { .. } => Kind::LinkCode,
        }
    }

    fn render(self, lang: mail::Lang, code: &str, minutes: u64) -> mail::Rendered {
        match self {
            CodeMail::Verify => templates::verification_code(lang, code, minutes),
            CodeMail::Link { provider } => templates::link_code(lang, code, minutes, provider),
        }
    }
}

/// Stores a fresh code for the account (replacing any earlier one) and queues it to `email`,
/// within the send limits per account and per address; returns when the code expires. The
/// caller commits `tx` and counts the mail (`mail::queued(what.kind())`).
pub(super) async fn mail_code(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    user_id: Uuid,
    email: &str,
    lang: mail::Lang,
    what: CodeMail<'_>,
    event: &'static str,
) -> AppResult<DateTime<Utc>> {
    let cfg = &state.settings.mail;
    let now = state.clock.now();
    let window = std::time::Duration::from_secs(cfg.limit_window_s);
    for (key, limit, label) in [
        (mail::account_key(user_id), cfg.max_per_account, "account"),
        (mail::address_key(email), cfg.max_per_address, "address"),
    ] {
        if let Some(wait) = mail::hit_send_limit(&mut *tx, &key, limit, window, now).await? {
            auth_event(event, "rate_limited");
            return Err(email_rate_limited(wait, label));
        }
    }
    let code = new_code();
    let expires_at = now + Duration::seconds(cfg.code_ttl_s as i64);
    store::upsert_code(tx, user_id, &hash_code(user_id, &code), expires_at, now).await?;
    // Accounts have no language of their own yet: the request's decides.
    let message = what.render(lang, &code, cfg.code_ttl_s.div_ceil(60));
    mail::enqueue(tx, what.kind(), email, &message).await?;
    Ok(expires_at)
}

/// Checks `code` against the account's pending code, locked in `tx`. A wrong code's attempt is
/// counted and committed, and the call fails; on success the code is left for the caller to
/// delete in `tx` (`store::verify_email` or `store::delete_code`).
pub(super) async fn check_code(
    state: &AppState,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    user_id: Uuid,
    code: &str,
    event: &'static str,
) -> AppResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    let max = state.settings.mail.code_max_attempts;
    let now = state.clock.now();
    let pending = store::lock_pending_code(&mut tx, user_id).await?;
    let expired = || {
        AppError::failed_precondition(
            Reason::VerificationCodeExpired,
            "no code is pending or it expired; ask for a new one",
        )
    };
    let Some(pending) = pending else {
        auth_event(event, "expired");
        return Err(expired());
    };
    if pending.attempts >= max {
        auth_event(event, "exhausted");
        return Err(AppError::failed_precondition(
            Reason::VerificationCodeExhausted,
            "too many wrong codes; ask for a new one",
        ));
    }
    if pending.expires_at <= now {
        auth_event(event, "expired");
        return Err(expired());
    }
    if !same_hash(&pending.code_hash, &hash_code(user_id, code)) {
        // The attempt counts even though the call fails.
        store::count_code_attempt(&mut tx, user_id).await?;
        crate::db::commit(&state.db, tx).await?;
        auth_event(event, "mismatch");
        let left = (max - pending.attempts - 1).max(0);
        return Err(AppError::permission_denied(Reason::VerificationCodeMismatch, "the code is not the mailed one")
            .with_meta("attempts_left", left));
    }
    Ok(tx)
}

/// Checks the mailed code and marks the caller's address verified; returns when it was.
#[tracing::instrument(name = "accounts.verify_email", skip_all, err(level = "debug"))]
pub async fn verify_email(state: &AppState, caller: &Caller, cmd: VerifyEmail) -> AppResult<DateTime<Utc>> {
    const EVENT: &str = "verify_email";
    let now = state.clock.now();
    let tx = crate::db::begin(&state.db).await?;
    let mut tx = check_code(state, tx, caller.user_id, &cmd.code, EVENT).await?;
    let at = store::verify_email(&mut tx, caller.user_id, now).await?;
    crate::db::commit(&state.db, tx).await?;
    auth_event(EVENT, "ok");
    tracing::info!(user_id = %caller.user_id, "email verified");
    Ok(at)
}

/// Mails a reset token if an account has the address. Unknown addresses are answered alike:
/// the same send limit, the same token and mail made (not stored), the same answer.
#[tracing::instrument(name = "accounts.request_password_reset", skip_all, err(level = "debug"))]
pub async fn request_password_reset(state: &AppState, cmd: RequestReset) -> AppResult<()> {
    const EVENT: &str = "request_password_reset";
    let cfg = &state.settings.mail;
    let now = state.clock.now();
    let email = cmd.email.as_str();
    let mut tx = crate::db::begin(&state.db).await?;
    let window = std::time::Duration::from_secs(cfg.limit_window_s);
    if let Some(wait) =
        mail::hit_send_limit(&mut tx, &mail::address_key(email), cfg.max_per_address, window, now).await?
    {
        auth_event(EVENT, "rate_limited");
        return Err(email_rate_limited(wait, "address"));
    }
    let account = store::live_user_by_email(&mut *tx, email).await?;
    let (token, hash) = new_refresh_token();
    let message = templates::password_reset(cmd.lang, &token, cfg.reset_ttl_s.div_ceil(60), &cfg.reset_url);
    let Some((user_id, stored_email)) = account else {
        crate::db::commit(&state.db, tx).await?;
        auth_event(EVENT, "unknown");
        tracing::info!("password reset asked for an address without an account: nothing sent");
        return Ok(());
    };
    let expires_at = now + Duration::seconds(cfg.reset_ttl_s as i64);
    store::insert_reset_token(&mut tx, &hash, user_id, expires_at, now).await?;
    // To the address as the account has it, not as typed.
    mail::enqueue(&mut tx, Kind::PasswordReset, &stored_email, &message).await?;
    crate::db::commit(&state.db, tx).await?;
    mail::queued(Kind::PasswordReset);
    auth_event(EVENT, "ok");
    tracing::info!(user_id = %user_id, "password reset mail queued");
    Ok(())
}

/// Sets a new password with a reset token and ends every session of the account.
#[tracing::instrument(name = "accounts.reset_password", skip_all, err(level = "debug"))]
pub async fn reset_password(state: &AppState, cmd: ResetPassword) -> AppResult<()> {
    const EVENT: &str = "reset_password";
    let invalid = || {
        auth_event(EVENT, "invalid");
        AppError::unauthenticated(Reason::ResetTokenInvalid, "the reset token is invalid, used or expired")
    };
    let now = state.clock.now();
    let hash = hash_refresh_token(&cmd.token);
    // Cheap refusal before the expensive hash; the conditional update below decides races.
    if store::reset_token_user(&state.db, &hash, now).await?.is_none() {
        return Err(invalid());
    }
    let new_hash = state.passwords.hash(&cmd.new).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let Some(user_id) = store::use_reset_token(&mut tx, &hash, now).await? else {
        return Err(invalid());
    };
    store::update_password(&mut *tx, user_id, &new_hash).await?;
    store::finish_reset(&mut tx, user_id, now).await?;
    let revoked = store::revoke_other_sessions(&mut *tx, user_id, Uuid::nil(), "password reset").await?;
    crate::db::commit(&state.db, tx).await?;
    sessions_changed(&state.cache, user_id).await;
    auth_event(EVENT, "ok");
    tracing::info!(user_id = %user_id, revoked_sessions = revoked, "password reset");
    Ok(())
}
