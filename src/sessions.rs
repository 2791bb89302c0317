//! Session state behind access tokens. An access token is a signed claim; on every
//! authenticated call the auth layer also asks [`Sessions::check`] whether the token's session
//! (`sid`) is still live and its account active, and judges the call with the account's
//! *current* role (a revoked admin's old token is an ordinary user's token at once).
//!
//! - The state is read through the Redis cache (cache `session`, key per session, versioned by
//!   a per-user scope) and loaded from the database on a miss or while Redis is down. What the
//!   database says is loaded by the loader the application passes in (accounts own the tables).
//! - Every write that ends a session or changes an account's role or existence calls
//!   [`sessions_changed`] after its commit and before it returns: Logout, refresh-token reuse,
//!   ChangePassword, DeleteAccount, `maru admin grant`/`revoke`. It moves the user's scope
//!   version, so every replica's next call reads the database.
//! - Fail closed: when neither Redis nor the database can answer, the call is refused
//!   (UNAVAILABLE `DATABASE_UNAVAILABLE` with RetryInfo), never let through.
//!
//! Metrics: `maru_cache_requests_total{cache="session"}` (hits, misses, bypass) and
//! `maru_session_rejections_total{reason}` (`unknown`, `revoked`, `account_deleted`,
//! `user_mismatch`, `unavailable`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tonic::Code;
use uuid::Uuid;

use crate::cache::Cache;
use crate::caller::{Caller, Role};
use crate::error::{AppError, AppResult, Reason};

/// The cache the session state is read through (`maru_cache_requests_total{cache="session"}`).
pub const SESSION_CACHE: &str = "session";

/// What the database says about one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub user_id: Uuid,
    /// Not revoked (logout, refresh-token reuse, password change elsewhere, account deletion).
    pub live: bool,
    /// The account is not deleted.
    pub active: bool,
    /// The account's current deployment-wide role.
    pub role: Role,
}

/// Loads a session's state from the database; `None` for an unknown session.
pub type SessionLoader = Arc<dyn Fn(Uuid) -> BoxFuture<'static, AppResult<Option<SessionState>>> + Send + Sync>;

/// Why a token's session no longer admits calls (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Unknown,
    Revoked,
    AccountDeleted,
    /// The session belongs to another account than the token's subject.
    UserMismatch,
}

impl Ended {
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Unknown => "unknown",
            Ended::Revoked => "revoked",
            Ended::AccountDeleted => "account_deleted",
            Ended::UserMismatch => "user_mismatch",
        }
    }
}

/// The outcome of a session check.
#[derive(Debug)]
pub enum Verdict {
    /// The session is live: the caller with the account's current role.
    Live(Caller),
    Ended(Ended),
    /// Neither the cache nor the database could answer: refuse the call (retryable).
    Unavailable(AppError),
}

/// The session check the auth layer runs on every call that presents a token.
pub struct Sessions {
    cache: Cache,
    load: SessionLoader,
    ttl: Duration,
}

fn user_scope(user_id: Uuid) -> String {
    format!("auth:user:{user_id}")
}

fn session_key(session_id: Uuid) -> String {
    format!("auth:session:{session_id}")
}

/// After a committed write that ended sessions of `user_id` or changed the account's role or
/// existence: every cached session state of the user is dropped (on every replica, since they
/// share Redis). Call it before the write returns.
pub async fn sessions_changed(cache: &Cache, user_id: Uuid) {
    cache.invalidate(&[user_scope(user_id)]).await;
}

impl Sessions {
    /// `ttl` bounds how long a cached state lives without an invalidation (see the module docs).
    pub fn new(cache: Cache, load: SessionLoader, ttl: Duration) -> Self {
        Self { cache, load, ttl }
    }

    /// Whether `claimed` (the verified token's subject, session and role) may act now.
    pub async fn check(&self, claimed: Caller) -> Verdict {
        let load = self.load.clone();
        let sid = claimed.session_id;
        let state = self
            .cache
            .get_or_load_scoped(SESSION_CACHE, &[user_scope(claimed.user_id)], &session_key(sid), self.ttl, || {
                load(sid)
            })
            .await;
        let verdict = match state {
            Err(e) => {
                tracing::warn!(error = %e, "session check: neither cache nor database answered; call refused");
                metrics::counter!("maru_session_rejections_total", "reason" => "unavailable").increment(1);
                return Verdict::Unavailable(unavailable());
            }
            Ok(None) => Verdict::Ended(Ended::Unknown),
            Ok(Some(s)) if s.user_id != claimed.user_id => Verdict::Ended(Ended::UserMismatch),
            Ok(Some(s)) if !s.active => Verdict::Ended(Ended::AccountDeleted),
            Ok(Some(s)) if !s.live => Verdict::Ended(Ended::Revoked),
            Ok(Some(s)) => Verdict::Live(Caller { role: s.role, ..claimed }),
        };
        if let Verdict::Ended(why) = verdict {
            metrics::counter!("maru_session_rejections_total", "reason" => why.as_str()).increment(1);
        }
        verdict
    }
}

fn unavailable() -> AppError {
    AppError::Retry {
        code: Code::Unavailable,
        reason: Reason::DatabaseUnavailable,
        message: "the session cannot be verified now; retry shortly".into(),
        retry_after: Duration::from_secs(1),
        metadata: Default::default(),
    }
}

/// HELP lines of this module's metrics.
pub fn describe() {
    metrics::describe_counter!(
        "maru_session_rejections_total",
        "Calls refused by the session check, by reason (unknown, revoked, account_deleted, user_mismatch, unavailable)."
    );
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::Settings;

    /// A cache whose Redis never answers (nothing listens on the port).
    fn redis_down() -> Cache {
        let mut s = Settings::default().redis;
        s.url = secrecy::SecretString::from("redis://127.0.0.1:1/");
        s.command_timeout_ms = 50;
        Cache::new(&s)
    }

    fn loader(f: impl Fn(Uuid) -> AppResult<Option<SessionState>> + Send + Sync + 'static) -> SessionLoader {
        let f = Arc::new(f);
        Arc::new(move |sid| {
            let f = f.clone();
            Box::pin(async move { f(sid) })
        })
    }

    fn caller(role: Role) -> Caller {
        Caller { user_id: Uuid::now_v7(), session_id: Uuid::now_v7(), role }
    }

    #[tokio::test]
    async fn neither_cache_nor_database_fails_closed() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let sessions = Sessions::new(
            redis_down(),
            loader(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                Err(sqlx::Error::PoolTimedOut.into())
            }),
            Duration::from_secs(60),
        );
        match sessions.check(caller(Role::Admin)).await {
            Verdict::Unavailable(e) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert!(matches!(e, AppError::Retry { reason: Reason::DatabaseUnavailable, .. }), "{e:?}");
            }
            other => panic!("must fail closed, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the database was asked");

        // Any database failure, not only a busy pool.
        let sessions = Sessions::new(
            redis_down(),
            loader(|_| Err(AppError::Internal(anyhow::anyhow!("broken")))),
            Duration::from_secs(60),
        );
        assert!(matches!(sessions.check(caller(Role::User)).await, Verdict::Unavailable(_)));
    }

    #[tokio::test]
    async fn without_redis_the_database_decides() {
        let who = caller(Role::Admin);
        let state = |live, active, role, user_id| SessionState { user_id, live, active, role };
        let cases = [
            (Some(state(true, true, Role::Admin, who.user_id)), "live admin"),
            (Some(state(true, true, Role::User, who.user_id)), "live user"),
            (Some(state(false, true, Role::Admin, who.user_id)), "revoked"),
            (Some(state(true, false, Role::Admin, who.user_id)), "account_deleted"),
            (Some(state(true, true, Role::Admin, Uuid::now_v7())), "user_mismatch"),
            (None, "unknown"),
        ];
        for (found, want) in cases {
            let sessions = Sessions::new(redis_down(), loader(move |_| Ok(found)), Duration::from_secs(60));
            let got = match sessions.check(who).await {
                Verdict::Live(c) if c.role == Role::Admin => "live admin",
                Verdict::Live(c) => {
                    assert_eq!((c.user_id, c.session_id), (who.user_id, who.session_id));
                    "live user"
                }
                Verdict::Ended(e) => e.as_str(),
                Verdict::Unavailable(e) => panic!("{e:?}"),
            };
            assert_eq!(got, want);
        }
    }
}
