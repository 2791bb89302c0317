//! Guest visits (the apartment app's "look around"): StartGuestSession, ConvertGuest and the
//! nightly clean-up of expired guests.
//!
//! - A guest is an account with role GUEST, a generated handle (`guest_` and ten characters), no
//!   email and no usable password, and an expiry `guests.session_ttl_s` (default a day) after it
//!   started, by the application clock. Its one session cannot be refreshed past the expiry.
//! - It reads the demo complexes `guests.complexes` names through read-only memberships
//!   ([`crate::communities::guests`]); every RPC that is not a read refuses it centrally
//!   (PERMISSION_DENIED `GUEST_READ_ONLY`, `crate::grpc::policy::Policy::admit`), except those
//!   that declare `guests: true` (ConvertGuest).
//! - ConvertGuest turns the guest into a USER in place: same id, so whatever it did stays its
//!   own; its sessions stay valid (the session check reads the new role at once, and the next
//!   Refresh issues a refresh token of the normal lifetime). The guest memberships are dropped.
//!   A conditional update (still a guest, not expired) decides races with the clean-up and with
//!   a second conversion; the unique indexes decide taken handles and emails.
//! - The clean-up runs for each 00:00 Asia/Seoul slot once across replicas: the transaction
//!   that inserts the slot's row in `guest_cleanup_runs` deletes the guests expired by then; a
//!   concurrent replica waits on that row and skips. Deleting a user cascades to its sessions,
//!   refresh tokens and memberships.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Seoul;
use rand::Rng;
use uuid::Uuid;

use super::model::{ConvertGuest, Device, Tokens, User};
use super::ops::{issue_tokens, login_counted, registration_counted, taken_error, user_cache_key};
use super::store::{self, NewUser};
use crate::caller::Caller;
use crate::communities::guests as community_access;
use crate::error::{AppError, AppResult, Reason};
use crate::sessions::sessions_changed;
use crate::state::AppState;

/// A started guest visit.
#[derive(Debug)]
pub struct GuestVisit {
    pub tokens: Tokens,
    pub user: User,
    /// The demo complexes the guest may read.
    pub community_ids: Vec<Uuid>,
}

fn guest_handle() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..10).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("guest_{tail}")
}

/// Starts a guest visit: the account, its read-only memberships and one session, in one
/// transaction.
#[tracing::instrument(name = "accounts.start_guest_session", skip_all, err(level = "debug"))]
pub async fn start_guest_session(state: &AppState, device: &Device) -> AppResult<GuestVisit> {
    let cfg = &state.settings.guests;
    if !cfg.enabled {
        login_counted("guest", "disabled");
        return Err(AppError::failed_precondition(Reason::GuestsDisabled, "guest visits are disabled here"));
    }
    let expires_at = state.clock.now() + Duration::seconds(cfg.session_ttl_s as i64);
    let mut tx = crate::db::begin(&state.db).await?;
    // Ten characters of 36: a clash is rare; another draw settles it.
    let mut user = None;
    for _ in 0..5 {
        user = store::insert_guest(&mut tx, &guest_handle(), cfg.display_name.trim(), expires_at).await?;
        if user.is_some() {
            break;
        }
    }
    let user = user.ok_or_else(|| AppError::internal("no free guest handle after 5 draws"))?;
    let community_ids = community_access::grant(&mut tx, user.id, &cfg.complexes).await?;
    let session_id = store::insert_session(&mut tx, user.id, device).await?;
    let tokens = issue_tokens(state, &mut tx, &user, session_id, Some(expires_at)).await?;
    crate::db::commit(&state.db, tx).await?;
    login_counted("guest", "ok");
    metrics::counter!("maru_guests_started_total").increment(1);
    tracing::info!(user_id = %user.id, complexes = community_ids.len(), "guest visit started");
    Ok(GuestVisit { tokens, user, community_ids })
}

/// Turns the calling guest into a real account (see the module docs).
#[tracing::instrument(name = "accounts.convert_guest", skip_all, err(level = "debug"))]
pub async fn convert_guest(state: &AppState, caller: &Caller, cmd: ConvertGuest) -> AppResult<User> {
    if !caller.is_guest() {
        return Err(not_a_guest());
    }
    // Cheap refusal before an expensive hash; the unique indexes still decide races.
    if let Some(reason) = store::taken(&state.db, cmd.handle.as_str(), cmd.email.as_str()).await? {
        return Err(taken_error(reason));
    }
    let hash = state.passwords.hash(&cmd.password).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let new = NewUser {
        handle: cmd.handle.as_str(),
        email: cmd.email.as_str(),
        password_hash: &hash,
        display_name: &cmd.display_name,
    };
    let Some(user) = store::convert_guest(&mut tx, caller.user_id, &new, state.clock.now()).await? else {
        return Err(not_a_guest());
    };
    community_access::revoke(&mut tx, user.id).await?;
    crate::db::commit(&state.db, tx).await?;
    // The session check and WhoAmI read the new role and name at once, on every replica.
    sessions_changed(&state.cache, user.id).await;
    state.cache.invalidate(&[user_cache_key(user.id)]).await;
    community_access::revoked(&state.cache, user.id).await;
    registration_counted("guest_conversion");
    metrics::counter!("maru_guests_converted_total").increment(1);
    tracing::info!(user_id = %user.id, "guest converted to an account");
    Ok(user)
}

fn not_a_guest() -> AppError {
    AppError::failed_precondition(Reason::NotAGuest, "only a guest whose visit has not ended can be converted")
}

/// The clean-up slot `now` falls in: the latest 00:00 Asia/Seoul at or before it.
pub fn cleanup_slot(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = now.with_timezone(&Seoul).date_naive();
    let midnight = day.and_time(NaiveTime::MIN);
    // Seoul has no daylight-saving time: every local midnight exists once.
    Seoul.from_local_datetime(&midnight).earliest().map_or(now, |t| t.with_timezone(&Utc))
}

/// Runs the clean-up of the slot the application clock is in, unless a replica already ran it:
/// `Some(deleted)` when this call ran it, `None` when it was done already.
#[tracing::instrument(name = "accounts.guest_cleanup", skip_all, err(level = "debug"))]
pub async fn cleanup_due(state: &AppState) -> AppResult<Option<u64>> {
    let now = state.clock.now();
    let slot = cleanup_slot(now);
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::claim_guest_cleanup(&mut tx, slot).await? {
        return Ok(None);
    }
    let deleted = store::delete_expired_guests(&mut tx, now).await?;
    store::finish_guest_cleanup(&mut tx, slot, deleted.len() as u64).await?;
    crate::db::commit(&state.db, tx).await?;
    for id in &deleted {
        sessions_changed(&state.cache, *id).await;
    }
    // Their memberships went with them (cascade): so do their cached standings.
    for chunk in deleted.chunks(500) {
        crate::communities::cache::members_changed(&state.cache, chunk).await;
    }
    metrics::counter!("maru_guests_deleted_total").increment(deleted.len() as u64);
    tracing::info!(slot = %slot, deleted = deleted.len(), "expired guests deleted");
    Ok(Some(deleted.len() as u64))
}

/// Sets `maru_guests_active` (guests whose visit has not ended) from the database.
pub async fn refresh_active_gauge(state: &AppState) -> AppResult<i64> {
    let n = store::count_active_guests(&state.db, state.clock.now()).await?;
    metrics::gauge!("maru_guests_active").set(n as f64);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_is_the_last_seoul_midnight() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // 00:00 KST is 15:00 UTC the day before.
        assert_eq!(cleanup_slot(at("2026-12-05T14:59:59Z")), at("2026-12-04T15:00:00Z"));
        assert_eq!(cleanup_slot(at("2026-12-05T15:00:00Z")), at("2026-12-05T15:00:00Z"));
        assert_eq!(cleanup_slot(at("2026-12-06T03:00:00Z")), at("2026-12-05T15:00:00Z"));
    }

    #[test]
    fn guest_handles_are_valid_handles() {
        for _ in 0..100 {
            let h = guest_handle();
            assert_eq!(super::super::model::Handle::parse(&h).unwrap().as_str(), h);
            assert_eq!(h.len(), 16);
        }
    }
}
