//! `request_id` idempotency for creates: the same caller sending the same `request_id` gets the
//! original result, also when the duplicates arrive concurrently. The key is claimed inside
//! the create's own transaction, so a failed create leaves no key behind and a concurrent
//! duplicate waits on the unique index until the first commits, then replays its result.
//! Keys expire after `idempotency.ttl_s`; a sweeper deletes expired rows.

use chrono::{Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

use crate::error::{AppError, AppResult, Reason, Violations};

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

/// Which caller and method a key belongs to, e.g. `SignUp:anonymous` or `CreatePost:<user id>`.
pub fn scope(method: &str, caller: Option<uuid::Uuid>) -> String {
    match caller {
        Some(id) => format!("{method}:{id}"),
        None => format!("{method}:anonymous"),
    }
}

/// SHA-256 of the request's meaningful fields (never secrets), to detect a key reused for a
/// different request.
pub fn fingerprint(value: &impl Serialize) -> Vec<u8> {
    Sha256::digest(serde_json::to_vec(value).unwrap_or_default()).to_vec()
}

/// Outcome of claiming a key.
pub enum Claim<T> {
    /// The key was used before: here is the original result.
    Replay(T),
    /// The key is ours; finish with [`complete`] in the same transaction.
    Fresh,
}

/// Looks up a completed request without claiming anything (a cheap pre-check before expensive
/// work such as password hashing).
pub async fn lookup<T: DeserializeOwned>(db: &PgPool, scope: &str, id: &RequestId, fp: &[u8]) -> AppResult<Option<T>> {
    let row: Option<(Vec<u8>, Option<serde_json::Value>)> = sqlx::query_as(
        "select fingerprint, response from idempotency_keys
         where scope = $1 and request_id = $2 and expires_at > now()",
    )
    .bind(scope)
    .bind(id.as_str())
    .fetch_optional(db)
    .await?;
    match row {
        Some((stored, Some(resp))) => replay(&stored, fp, resp).map(Some),
        _ => Ok(None),
    }
}

/// Claims `id` within the caller's transaction, or returns the original result.
pub async fn claim<T: DeserializeOwned>(
    conn: &mut PgConnection,
    scope: &str,
    id: &RequestId,
    fp: &[u8],
    ttl_s: u64,
) -> AppResult<Claim<T>> {
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
        return Ok(Claim::Fresh);
    }
    // The other request committed (its transaction held the key until then).
    let (stored, resp): (Vec<u8>, Option<serde_json::Value>) =
        sqlx::query_as("select fingerprint, response from idempotency_keys where scope = $1 and request_id = $2")
            .bind(scope)
            .bind(id.as_str())
            .fetch_one(&mut *conn)
            .await?;
    match resp {
        Some(resp) => replay(&stored, fp, resp).map(Claim::Replay),
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

/// Stores the result of a fresh request, in the same transaction that created it.
pub async fn complete<T: Serialize>(conn: &mut PgConnection, scope: &str, id: &RequestId, result: &T) -> AppResult<()> {
    let value = serde_json::to_value(result).map_err(|e| AppError::Internal(e.into()))?;
    sqlx::query("update idempotency_keys set response = $3 where scope = $1 and request_id = $2")
        .bind(scope)
        .bind(id.as_str())
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes expired keys; returns how many.
pub async fn sweep(db: &PgPool) -> AppResult<u64> {
    Ok(sqlx::query("delete from idempotency_keys where expires_at <= now()").execute(db).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(RequestId::parse("").unwrap(), None);
        assert!(RequestId::parse("abc-DEF_123").unwrap().is_some());
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"a".repeat(65)).is_err());
    }
}
