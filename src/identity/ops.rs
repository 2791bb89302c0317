//! Identity use cases. Who may do what:
//! - anyone: StartExternalLogin, FinishExternalLogin (holding the `state` and the provider's
//!   code is the authority), CompleteRegistration, SendLinkCode, LinkIdentity (holding the
//!   ticket is; linking also needs the account's password or a mailed code);
//! - a caller: their own identities (ListIdentities, UnlinkIdentity).

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;

use super::model::{
    Identity, Profile, TicketKind, hash_secret, pkce_challenge, random_token, suggest_display_name, suggest_handle,
};
use super::providers::{Providers, failure, method_of};
use super::store::{self, NewState, NewTicket};
use crate::accounts::external::{self as accounts_ext, NewExternalUser, Opened};
use crate::accounts::{Device, Email, Handle};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason};
use crate::mail::Lang;
use crate::state::AppState;

/// What FinishExternalLogin answers.
pub enum Finished {
    SignedIn(Opened),
    Register { ticket: String, expires_at: DateTime<Utc>, profile: Profile, handle: String, name: String },
    Link { ticket: String, expires_at: DateTime<Utc>, handle: String, has_password: bool },
}

pub struct Start {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

pub struct CompleteRegistration {
    pub ticket: String,
    pub handle: Handle,
    pub display_name: String,
    pub email: Option<Email>,
}

pub enum Proof {
    Password(SecretString),
    Code(String),
}

fn state_invalid(provider: &str) -> AppError {
    failure(provider, "state_invalid");
    AppError::unauthenticated(
        Reason::ExternalStateInvalid,
        "the login state is unknown, used, expired or for another provider; start again",
    )
}

fn ticket_invalid() -> AppError {
    AppError::unauthenticated(
        Reason::ExternalTicketInvalid,
        "the ticket is unknown, used or expired; sign in with the provider again",
    )
}

#[tracing::instrument(name = "identity.start_external_login", skip_all, err(level = "debug"))]
pub async fn start_external_login(
    state: &AppState,
    providers: &Providers,
    provider: &str,
    redirect_uri: &str,
) -> AppResult<Start> {
    let p = providers.get(provider)?;
    if !p.settings.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(AppError::invalid("redirect_uri", "is not a redirect URI configured for this provider"));
    }
    let now = state.clock.now();
    let login_state = random_token();
    let verifier = random_token();
    let nonce = random_token();
    let url = providers.authorization_url(p, redirect_uri, &login_state, &pkce_challenge(&verifier), &nonce).await?;
    let expires_at = now + Duration::seconds(state.settings.identity.state_ttl_s as i64);
    store::insert_state(
        &state.db,
        &NewState {
            state_hash: &hash_secret(&login_state),
            provider: &p.name,
            redirect_uri,
            pkce_verifier: &verifier,
            nonce: &nonce,
            expires_at,
            now,
        },
    )
    .await?;
    Ok(Start { authorization_url: url, state: login_state, expires_at })
}

#[tracing::instrument(name = "identity.finish_external_login", skip_all, err(level = "debug"))]
pub async fn finish_external_login(
    state: &AppState,
    providers: &Providers,
    device: &Device,
    provider: &str,
    code: &str,
    login_state: &str,
) -> AppResult<Finished> {
    let p = providers.get(provider)?;
    let method = method_of(p);
    let now = state.clock.now();
    // Consumed whatever follows: a state is good for one try.
    let Some(started) = store::take_state(&state.db, &hash_secret(login_state)).await? else {
        accounts_ext::login_outcome(method, "state_invalid");
        return Err(state_invalid(&p.name));
    };
    if started.expires_at <= now || started.provider != p.name {
        accounts_ext::login_outcome(method, "state_invalid");
        return Err(state_invalid(&p.name));
    }
    let profile =
        match providers.profile(p, code, &started.redirect_uri, &started.pkce_verifier, &started.nonce, now).await {
            Ok(profile) => profile,
            Err(e) => {
                let outcome =
                    if e.reason() == Reason::ProviderUnavailable { "provider_unavailable" } else { "refused" };
                accounts_ext::login_outcome(method, outcome);
                return Err(e);
            }
        };

    // A linked identity signs in.
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(user_id) = store::touch_identity(&mut *tx, &p.name, &profile.subject, now).await? {
        let opened = match accounts_ext::open_session(state, &mut tx, user_id, device).await {
            Ok(o) => o,
            Err(e) => {
                accounts_ext::login_outcome(method, "suspended");
                return Err(e);
            }
        };
        crate::db::commit(&state.db, tx).await?;
        accounts_ext::session_opened(state, &opened, method).await;
        tracing::info!(provider = %p.name, user_id = %opened.user.id, "external login");
        return Ok(Finished::SignedIn(opened));
    }
    drop(tx);

    let ticket = random_token();
    let expires_at = now + Duration::seconds(state.settings.identity.ticket_ttl_s as i64);
    let handle = suggest_handle(&profile);
    let name = suggest_display_name(&profile);
    // Only an address the provider verified can point at an account, and only at one whose
    // owner verified it too; linking then waits for that account's proof.
    let owner = match (&profile.email, profile.email_verified) {
        (Some(email), true) => accounts_ext::verified_owner(state, email).await?,
        _ => None,
    };
    let mut new = NewTicket {
        ticket_hash: &hash_secret(&ticket),
        kind: TicketKind::Register,
        provider: &p.name,
        subject: &profile.subject,
        email: profile.email.as_deref().unwrap_or_default(),
        email_verified: profile.email_verified,
        suggested_handle: &handle,
        suggested_name: &name,
        user_id: None,
        expires_at,
        now,
    };
    if let Some((user_id, account_handle, has_password)) = owner {
        new.kind = TicketKind::Link;
        new.user_id = Some(user_id);
        store::insert_ticket(&state.db, &new).await?;
        accounts_ext::login_outcome(method, "link_required");
        tracing::info!(provider = %p.name, user_id = %user_id, "external identity matches an account: link required");
        return Ok(Finished::Link { ticket, expires_at, handle: account_handle, has_password });
    }
    store::insert_ticket(&state.db, &new).await?;
    accounts_ext::login_outcome(method, "registration_required");
    tracing::info!(provider = %p.name, "new external identity: registration ticket issued");
    Ok(Finished::Register { ticket, expires_at, profile, handle, name })
}

#[tracing::instrument(name = "identity.complete_registration", skip_all, err(level = "debug"))]
pub async fn complete_registration(
    state: &AppState,
    providers: &Providers,
    device: &Device,
    cmd: CompleteRegistration,
) -> AppResult<Opened> {
    let now = state.clock.now();
    let max = state.settings.identity.max_link_attempts;
    let hash = hash_secret(&cmd.ticket);
    let mut tx = crate::db::begin(&state.db).await?;
    // Rolled back with the rest if the account cannot be made (a taken handle): the ticket
    // stays usable for another try.
    let Some(t) = store::use_ticket(&mut tx, &hash, TicketKind::Register, now, max).await? else {
        return Err(ticket_invalid());
    };
    let method = providers.get(&t.provider).map_or("oidc", method_of);
    let provider_email = Email::parse(&t.email).ok();
    let (email, verified) = match cmd.email {
        None => (provider_email, t.email_verified),
        Some(e) => {
            let same = e.as_str().eq_ignore_ascii_case(&t.email);
            (Some(e), same && t.email_verified)
        }
    };
    let user = accounts_ext::create_external_user(
        state,
        &mut tx,
        &NewExternalUser {
            handle: &cmd.handle,
            email: email.as_ref(),
            display_name: &cmd.display_name,
            email_verified: verified,
        },
    )
    .await?;
    store::insert_identity(&mut tx, user.id, &t.provider, &t.subject, &t.email, now).await?;
    let opened = accounts_ext::open_session(state, &mut tx, user.id, device).await?;
    crate::db::commit(&state.db, tx).await?;
    accounts_ext::registered(method);
    accounts_ext::session_opened(state, &opened, method).await;
    tracing::info!(provider = %t.provider, user_id = %user.id, "account created from an external identity");
    Ok(opened)
}

#[tracing::instrument(name = "identity.send_link_code", skip_all, err(level = "debug"))]
pub async fn send_link_code(state: &AppState, ticket: &str, lang: Lang) -> AppResult<DateTime<Utc>> {
    let now = state.clock.now();
    let max = state.settings.identity.max_link_attempts;
    let Some(t) = store::usable_ticket(&state.db, &hash_secret(ticket), TicketKind::Link, now, max).await? else {
        return Err(ticket_invalid());
    };
    let user_id = t.user_id.ok_or_else(ticket_invalid)?;
    let what = accounts_ext::CodeMail::Link { provider: &t.provider };
    accounts_ext::send_account_code(state, user_id, lang, what, "send_link_code").await
}

#[tracing::instrument(name = "identity.link_identity", skip_all, err(level = "debug"))]
pub async fn link_identity(
    state: &AppState,
    providers: &Providers,
    device: &Device,
    ticket: &str,
    proof: Proof,
) -> AppResult<Opened> {
    const EVENT: &str = "link_identity";
    let now = state.clock.now();
    let max = state.settings.identity.max_link_attempts;
    let hash = hash_secret(ticket);
    let Some(t) = store::usable_ticket(&state.db, &hash, TicketKind::Link, now, max).await? else {
        return Err(ticket_invalid());
    };
    let user_id = t.user_id.ok_or_else(ticket_invalid)?;
    let mut tx = match proof {
        Proof::Password(password) => match accounts_ext::check_password(state, user_id, &password).await? {
            None => {
                accounts_ext::auth_event(EVENT, "no_password");
                return Err(AppError::failed_precondition(
                    Reason::IdentityLinkRequired,
                    "this account has no password: prove it with a mailed code (SendLinkCode)",
                ));
            }
            Some(false) => {
                store::count_ticket_attempt(&state.db, &hash).await?;
                accounts_ext::auth_event(EVENT, "bad_credentials");
                return Err(AppError::unauthenticated(Reason::BadCredentials, "the password is incorrect")
                    .with_meta("attempts_left", (max - t.attempts - 1).max(0)));
            }
            Some(true) => crate::db::begin(&state.db).await?,
        },
        Proof::Code(code) => accounts_ext::use_account_code(state, user_id, &code, EVENT).await?,
    };
    let Some(t) = store::use_ticket(&mut tx, &hash, TicketKind::Link, now, max).await? else {
        return Err(ticket_invalid());
    };
    store::insert_identity(&mut tx, user_id, &t.provider, &t.subject, &t.email, now).await?;
    let opened = accounts_ext::open_session(state, &mut tx, user_id, device).await?;
    crate::db::commit(&state.db, tx).await?;
    let method = providers.get(&t.provider).map_or("oidc", method_of);
    accounts_ext::auth_event(EVENT, "ok");
    accounts_ext::session_opened(state, &opened, method).await;
    tracing::info!(provider = %t.provider, user_id = %user_id, "external identity linked after proof");
    Ok(opened)
}

#[tracing::instrument(name = "identity.list_identities", skip_all, err(level = "debug"))]
pub async fn list_identities(state: &AppState, caller: &Caller) -> AppResult<Vec<Identity>> {
    store::list_identities(&state.db, caller.user_id).await
}

/// Unlinks the caller's identity of `provider`, unless it is the account's last way to sign in.
#[tracing::instrument(name = "identity.unlink_identity", skip_all, err(level = "debug"))]
pub async fn unlink_identity(state: &AppState, caller: &Caller, provider: &str) -> AppResult<()> {
    let mut tx = crate::db::begin(&state.db).await?;
    let linked = store::lock_identities(&mut tx, caller.user_id).await?;
    if !linked.iter().any(|p| p == provider) {
        return Err(AppError::not_found(Reason::IdentityNotFound, "identity"));
    }
    if linked.len() == 1 && !accounts_ext::has_password(state, caller.user_id).await? {
        return Err(AppError::failed_precondition(
            Reason::LastSignInMethod,
            "this is the account's only way to sign in: set a password or link another provider first",
        ));
    }
    store::delete_identity(&mut tx, caller.user_id, provider).await?;
    crate::db::commit(&state.db, tx).await?;
    accounts_ext::auth_event("unlink_identity", "ok");
    tracing::info!(provider, user_id = %caller.user_id, "external identity unlinked");
    Ok(())
}

/// How long an expired login state or ticket is kept before the sweep deletes it (a late
/// answer still finds it and is refused as expired rather than unknown).
const KEEP_EXPIRED: Duration = Duration::hours(1);

/// Deletes login states and registration/link tickets that expired more than an hour ago
/// (logins abandoned at the provider, registrations never completed); returns how many of
/// each. Run by every replica's periodic sweep (`crate::jobs`); deleting is idempotent, so
/// replicas racing each other do no harm.
pub async fn sweep_expired(state: &AppState) -> AppResult<(u64, u64)> {
    let before = state.clock.now() - KEEP_EXPIRED;
    let states = store::delete_expired_states(&state.db, before).await?;
    let tickets = store::delete_expired_tickets(&state.db, before).await?;
    Ok((states, tickets))
}
