//! `request_id` idempotency: the same caller sending the same `request_id` to the same method
//! gets the original result, also when the duplicates arrive concurrently. One API for every
//! create (and any other retryable mutation):
//!
//! ```text
//! let mut tx = crate::db::begin(&state.db).await?;
//! if let Some(done) = replayed(state, &mut tx, "CreateX", caller, cmd.request_id.as_ref(), &cmd).await? {
//!     return Ok(done);
//! }
//! let x = store::insert_x(&mut tx, &cmd).await?;
//! remember(&mut tx, "CreateX", caller, cmd.request_id.as_ref(), &x).await?;
//! crate::db::commit(&state.db, tx).await?; // never UNAVAILABLE for a commit that happened
//! ```
//!
//! The key (method, [`Owner`], request id) is claimed inside the create's own transaction, so a
//! failed create leaves no key behind and a concurrent duplicate waits on the unique index until
//! the first commits, then replays its result. The request's fingerprint (SHA-256 of its
//! meaningful fields, never secrets) is stored with the key: the same id with a different
//! request is INVALID_ARGUMENT `REQUEST_ID_REUSED`; a duplicate of a request still in flight is
//! FAILED_PRECONDITION `REQUEST_IN_PROGRESS`. [`lookup`] answers a completed duplicate before
//! expensive work (SignUp's password hash) without claiming anything. Keys expire after
//! `idempotency.ttl_s`; [`sweep`] deletes expired rows. Without a request id every call is a
//! no-op, so an op calls the same two functions whether or not the client sent one.

use chrono::{Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::state::AppState;

/// A client-chosen idempotency key: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// Empty means "no idempotency".
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let r = raw.trim();
        if r.is_empty() {
            return Ok(None);
        }
        if r.len() > 64 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err("must be at most 64 characters of A-Z, a-z, 0-9, '-' and '_'".into());
        }
        Ok(Some(Self(r.to_owned())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose request ids a key is among: each signed-in caller has their own; anonymous callers
/// (SignUp) share one per method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User(Uuid),
    Anonymous,
}

impl From<&Caller> for Owner {
    fn from(c: &Caller) -> Self {
        Owner::User(c.user_id)
    }
}

impl From<Option<&Caller>> for Owner {
    fn from(c: Option<&Caller>) -> Self {
        c.map_or(Owner::Anonymous, Owner::from)
    }
}

/// The stored scope of a key, e.g. `SignUp:anonymous` or `CreatePost:<user id>`.
fn scope(method: &str, owner: Owner) -> String {
    match owner {
        Owner::User(id) => format!("{method}:{id}"),
        Owner::Anonymous => format!("{method}:anonymous"),
    }
}

/// SHA-256 of the request's meaningful fields, to detect a key reused for a different request.
fn fingerprint(value: &impl Serialize) -> Vec<u8> {
    Sha256::digest(serde_json::to_vec(value).unwrap_or_default()).to_vec()
}

/// Claims `rid` for `method` and `owner` in the create's transaction `tx`. `Some` is the
/// original result of an earlier request with the same id (the caller returns it and does
/// nothing else); `None` means "go ahead, then [`remember`] the result in `tx`".
pub async fn replayed<T: DeserializeOwned>(
    state: &AppState,
    tx: &mut PgConnection,
    method: &str,
    owner: impl Into<Owner>,
    rid: Option<&RequestId>,
    request: &impl Serialize,
) -> AppResult<Option<T>> {
    let Some(rid) = rid else { return Ok(None) };
    claim(tx, &scope(method, owner.into()), rid, &fingerprint(request), state.settings.idempotency.ttl_s).await
}

/// Stores the result of a fresh request under its request id, in the same transaction.
pub async fn remember<T: Serialize>(
    tx: &mut PgConnection,
    method: &str,
    owner: impl Into<Owner>,
    rid: Option<&RequestId>,
    result: &T,
) -> AppResult<()> {
    let Some(rid) = rid else { return Ok(()) };
    let value = serde_json::to_value(result).map_err(|e| AppError::Internal(e.into()))?;
    sqlx::query("update idempotency_keys set response = $3 where scope = $1 and request_id = $2")
        .bind(scope(method, owner.into()))
        .bind(rid.as_str())
        .bind(value)
        .execute(tx)
        .await?;
    Ok(())
}

/// The result of a completed earlier request with this id, without claiming anything: a cheap
/// pre-check before expensive work. [`replayed`] must still follow, in the transaction.
pub async fn lookup<T: DeserializeOwned>(
    db: &PgPool,
    method: &str,
    owner: impl Into<Owner>,
    rid: Option<&RequestId>,
    request: &impl Serialize,
) -> AppResult<Option<T>> {
    let Some(rid) = rid else { return Ok(None) };
    let row: Option<(Vec<u8>, Option<serde_json::Value>)> = sqlx::query_as(
        "select fingerprint, response from idempotency_keys
         where scope = $1 and request_id = $2 and expires_at > now()",
    )
    .bind(scope(method, owner.into()))
    .bind(rid.as_str())
    .fetch_optional(db)
    .await?;
    match row {
        Some((stored, Some(resp))) => replay(&stored, &fingerprint(request), resp).map(Some),
        _ => Ok(None),
    }
}

async fn claim<T: DeserializeOwned>(
    conn: &mut PgConnection,
    scope: &str,
    id: &RequestId,
    fp: &[u8],
    ttl_s: u64,
) -> AppResult<Option<T>> {
    let expires = Utc::now() + Duration::seconds(ttl_s as i64);
    // An expired key is taken over as if it were absent.
    let claimed = sqlx::query(
        "insert into idempotency_keys (scope, request_id, fingerprint, expires_at)
         values ($1, $2, $3, $4)
         on conflict (scope, request_id) do update
            set fingerprint = excluded.fingerprint, response = null,
                created_at = now(), expires_at = excluded.expires_at
          where idempotency_keys.expires_at <= now()",
    )
    .bind(scope)
    .bind(id.as_str())
    .bind(fp)
    .bind(expires)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(None);
    }
    // The other request committed (its transaction held the key until then).
    let (stored, resp): (Vec<u8>, Option<serde_json::Value>) =
        sqlx::query_as("select fingerprint, response from idempotency_keys where scope = $1 and request_id = $2")
            .bind(scope)
            .bind(id.as_str())
            .fetch_one(&mut *conn)
            .await?;
    match resp {
        Some(resp) => replay(&stored, fp, resp).map(Some),
        None => Err(AppError::failed_precondition(
            Reason::RequestInProgress,
            "a request with this request_id is in progress",
        )),
    }
}

fn replay<T: DeserializeOwned>(stored_fp: &[u8], fp: &[u8], resp: serde_json::Value) -> AppResult<T> {
    if stored_fp != fp {
        return Err(Violations::one("request_id", "was already used for a different request")
            .into_error_with(Reason::RequestIdReused));
    }
    metrics::counter!("maru_idempotent_replays_total").increment(1);
    serde_json::from_value(resp).map_err(|e| AppError::Internal(anyhow::anyhow!("stored idempotent response: {e}")))
}

/// Deletes expired keys; returns how many.
pub async fn sweep(db: &PgPool) -> AppResult<u64> {
    Ok(sqlx::query("delete from idempotency_keys where expires_at <= now()").execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn request_ids() {
        assert_eq!(RequestId::parse("").unwrap(), None);
        assert!(RequestId::parse("abc-DEF_123").unwrap().is_some());
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"a".repeat(65)).is_err());
    }

    fn rid(s: &str) -> RequestId {
        RequestId::parse(s).unwrap().unwrap()
    }

    /// One create through the API: `Ok(Err(original))` when replayed, `Ok(Ok(()))` when fresh.
    async fn create(
        state: &AppState,
        owner: Owner,
        id: Option<&RequestId>,
        request: &str,
        result: &str,
    ) -> AppResult<Result<(), String>> {
        let mut tx = crate::db::begin(&state.db).await?;
        if let Some(original) = replayed::<String>(state, &mut tx, "CreateThing", owner, id, &request).await? {
            return Ok(Err(original));
        }
        remember(&mut tx, "CreateThing", owner, id, &result.to_owned()).await?;
        crate::db::commit(&state.db, tx).await?;
        Ok(Ok(()))
    }

    #[sqlx::test]
    async fn replays_per_owner_method_and_id(pool: PgPool) {
        let state = AppState::new(Settings::default(), pool.clone()).unwrap();
        let (alice, bob) = (Owner::User(Uuid::now_v7()), Owner::User(Uuid::now_v7()));
        let key = rid("key-1");

        // Without a request id nothing is stored or replayed.
        assert_eq!(create(&state, alice, None, "a", "first").await.unwrap(), Ok(()));
        assert_eq!(create(&state, alice, None, "a", "second").await.unwrap(), Ok(()));
        let (keys,): (i64,) = sqlx::query_as("select count(*) from idempotency_keys").fetch_one(&pool).await.unwrap();
        assert_eq!(keys, 0);

        assert_eq!(lookup::<String>(&pool, "CreateThing", alice, Some(&key), &"a").await.unwrap(), None);
        assert_eq!(create(&state, alice, Some(&key), "a", "first").await.unwrap(), Ok(()));
        // The same owner, method, id and request: the original result, by lookup and in a transaction.
        assert_eq!(create(&state, alice, Some(&key), "a", "second").await.unwrap(), Err("first".into()));
        assert_eq!(lookup(&pool, "CreateThing", alice, Some(&key), &"a").await.unwrap(), Some("first".to_owned()));
        // Another owner (anonymous included) has its own ids.
        assert_eq!(create(&state, bob, Some(&key), "a", "bob's").await.unwrap(), Ok(()));
        assert_eq!(create(&state, Owner::Anonymous, Some(&key), "a", "anon").await.unwrap(), Ok(()));
        assert_eq!(create(&state, Owner::Anonymous, Some(&key), "a", "x").await.unwrap(), Err("anon".into()));
        // The same id for a different request.
        for err in [
            create(&state, alice, Some(&key), "b", "third").await.unwrap_err(),
            lookup::<String>(&pool, "CreateThing", alice, Some(&key), &"b").await.unwrap_err(),
        ] {
            assert_eq!(err.reason(), Reason::RequestIdReused);
            assert!(err.to_string().contains("request_id"), "{err}");
        }
    }

    #[sqlx::test]
    async fn a_rolled_back_or_expired_key_is_free_again(pool: PgPool) {
        let state = AppState::new(Settings::default(), pool.clone()).unwrap();
        let (owner, key) = (Owner::User(Uuid::now_v7()), rid("key-2"));
        let mut tx = crate::db::begin(&state.db).await.unwrap();
        assert!(replayed::<String>(&state, &mut tx, "CreateThing", owner, Some(&key), &"a").await.unwrap().is_none());
        tx.rollback().await.unwrap();
        assert_eq!(create(&state, owner, Some(&key), "b", "after rollback").await.unwrap(), Ok(()));

        sqlx::query("update idempotency_keys set expires_at = now() - interval '1 second'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(lookup::<String>(&pool, "CreateThing", owner, Some(&key), &"b").await.unwrap(), None);
        assert_eq!(create(&state, owner, Some(&key), "c", "after expiry").await.unwrap(), Ok(()));
        assert_eq!(create(&state, owner, Some(&key), "c", "again").await.unwrap(), Err("after expiry".into()));
        assert_eq!(sweep(&pool).await.unwrap(), 0);
    }
}
