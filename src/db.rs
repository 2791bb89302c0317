//! PostgreSQL: pool construction, database creation, embedded migrations, the SQL helpers
//! every store shares, and the guard rails of expensive reads (issue 14 point 3):
//!
//! - **RPC deadline**: the per-RPC layer runs each unary call [`with_deadline`]; an
//!   [`ExpensiveRead`] sets `statement_timeout` (transaction-local) to what is left of it, so
//!   PostgreSQL cancels the statement when the RPC gives up instead of running on.
//! - **Cancel on drop**: when the RPC future is dropped mid-read (client cancelled, server
//!   deadline), the running statement is cancelled in PostgreSQL at once (`pg_cancel_backend`
//!   of that backend, only while it still runs that transaction).
//! - **Bulkhead**: expensive reads (searches of posts, profiles and products; trial listing)
//!   get at most `database.max_expensive_reads` pooled connections at once, and one
//!   [`ReadKind`] at most half of them (rounded up); beyond that RESOURCE_EXHAUSTED `CAPACITY_EXCEEDED` with
//!   `RetryInfo` after waiting in line up to 250 ms, so a flood of one kind leaves the rest of
//!   the pool to everyone else and the other kinds of expensive read a share of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Code;

use crate::error::{AppError, AppResult, Reason};

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::DatabaseSettings;

/// An enum stored as text (its upper-case name): the type with `ALL`, `as_db` and `from_db`.
/// Domain models declare theirs with it (`db_enum!(Genre { Web => "WEB", … })`).
macro_rules! db_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name { $($variant,)* }

        impl $name {
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            pub fn as_db(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
            #[allow(dead_code)]
            pub fn from_db(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}
pub(crate) use db_enum;

/// The migrations in `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub fn connect_options(s: &DatabaseSettings) -> anyhow::Result<PgConnectOptions> {
    let opts: PgConnectOptions = s.url.expose_secret().parse()?;
    Ok(opts.application_name("maru").log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500)))
}

/// Pooled connections idle at least this long are pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// A pool that connects on first use, so the server can start (NOT_SERVING) before the
/// database is reachable.
pub fn lazy_pool(s: &DatabaseSettings) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        // Every acquire emits a TRACE event that telemetry turns into the acquire histogram.
        .acquire_time_level(tracing::log::LevelFilter::Trace)
        // sqlx pings every connection it hands out: one more round trip per query on a busy
        // pool. Ping only those idle long enough to have been dropped by a restart or a
        // firewall; a busy connection proves itself with every query.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_connections(s.max_connections)
        .min_connections(s.min_connections)
        .acquire_timeout(Duration::from_millis(s.acquire_timeout_ms))
        .connect_lazy_with(connect_options(s)?))
}

/// Creates the database named in the settings when it does not exist.
pub async fn create_if_missing(s: &DatabaseSettings) -> anyhow::Result<()> {
    let opts = connect_options(s)?;
    let name = opts.get_database().unwrap_or("maru").to_owned();
    let mut conn = PgConnection::connect_with(&opts.clone().database("postgres")).await?;
    let exists: Option<(i32,)> =
        sqlx::query_as("select 1 from pg_database where datname = $1").bind(&name).fetch_optional(&mut conn).await?;
    if exists.is_none() {
        let sql = format!("create database \"{}\"", name.replace('"', "\"\""));
        match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "database created"),
            // Another replica created it first.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}

/// Applies pending migrations (serialised across replicas by sqlx's advisory lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The start-up retry: from 250 ms, doubling up to 10 s, each plus up to as much again in
/// jitter (replicas started together do not knock together), with no limit: a server waits
/// NOT_SERVING for its database however long it is away.
pub const READY_RETRY: crate::retry::Policy =
    crate::retry::Policy { first: Duration::from_millis(250), max: Duration::from_secs(10), retries: None };

/// Creates the database if asked to (`create` and `database.create_if_missing`) and applies the
/// migrations, retrying with [`READY_RETRY`] until it succeeds; every failure is logged.
pub async fn prepare_until_ready(s: &DatabaseSettings, pool: &PgPool, create: bool) {
    prepare_with_retry(s, pool, create, READY_RETRY).await;
}

/// [`prepare_until_ready`] with a given retry policy; gives up (returning the last error) only
/// when the policy has a limit.
pub async fn prepare_with_retry(
    s: &DatabaseSettings,
    pool: &PgPool,
    create: bool,
    policy: crate::retry::Policy,
) -> Option<anyhow::Error> {
    use backon::Retryable;
    let attempt = || async {
        if create && s.create_if_missing {
            create_if_missing(s).await?;
        }
        migrate(pool).await
    };
    attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .notify(|e: &anyhow::Error, delay| {
            tracing::warn!(error = format!("{e:#}"), retry_ms = delay.as_millis() as u64, "database not ready");
        })
        .await
        .err()
}

/// Watches a database that was reachable: probes it every `interval` on a connection of its
/// own (outside the pool, so a pool held by busy or slow calls is not taken for an outage;
/// re-opened after a failure) and calls `changed(up)` whenever the answer changes. A probe that
/// takes longer than the interval (at least 1 s) counts as down. Runs until dropped.
pub async fn monitor<F, Fut>(opts: PgConnectOptions, interval: Duration, mut changed: F)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = ()>,
{
    let limit = interval.max(Duration::from_secs(1));
    let mut conn: Option<PgConnection> = None;
    let mut up = true;
    metrics::gauge!("maru_database_up").set(1.0);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let probe = async {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(PgConnection::connect_with(&opts).await?),
            };
            c.ping().await
        };
        let ok = matches!(tokio::time::timeout(limit, probe).await, Ok(Ok(())));
        if !ok {
            // A broken or timed-out connection is not reused.
            conn = None;
        }
        if ok != up {
            up = ok;
            metrics::gauge!("maru_database_up").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("database reachable again: SERVING");
            } else {
                tracing::warn!("database unreachable: NOT_SERVING until it answers again");
            }
            changed(up).await;
        }
    }
}

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `f` (an RPC) with `deadline` visible to the reads it makes ([`deadline`]).
pub async fn with_deadline<F: Future>(deadline: Instant, f: F) -> F::Output {
    DEADLINE.scope(deadline, f).await
}

/// The deadline of the RPC being served, if any.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// What an expensive read is: each kind may hold at most half of the [`Bulkhead`], so a flood
/// of searches cannot refuse every trial listing (and the other way round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// `FeedService.ListPosts` with a query (bigram search).
    PostSearch,
    /// `TrialService.ListTrials` (joins, substring filters, an exact count).
    TrialList,
    /// `ProfileService.SearchProfiles` (bigram search over accounts).
    ProfileSearch,
    /// `ProductService.ListProducts` with a query (bigram search).
    ProductSearch,
}

impl ReadKind {
    pub const ALL: [ReadKind; 4] =
        [ReadKind::PostSearch, ReadKind::TrialList, ReadKind::ProfileSearch, ReadKind::ProductSearch];

    /// The `kind` label of the `maru_expensive_reads_*` metrics.
    pub fn label(self) -> &'static str {
        match self {
            ReadKind::PostSearch => "post_search",
            ReadKind::TrialList => "trial_list",
            ReadKind::ProfileSearch => "profile_search",
            ReadKind::ProductSearch => "product_search",
        }
    }
}

/// The share of the pool expensive reads may hold at once, and each kind's share of it.
#[derive(Clone)]
pub struct Bulkhead {
    permits: Arc<Semaphore>,
    /// One per [`ReadKind`], in the order of `ReadKind::ALL`.
    kinds: Arc<[Semaphore]>,
    size: usize,
    per_kind: usize,
    /// `statement_timeout` of a read outside any RPC deadline.
    fallback_timeout: Duration,
}

impl Bulkhead {
    pub fn new(size: usize, fallback_timeout: Duration) -> Self {
        let per_kind = size.div_ceil(2).max(1);
        let kinds = ReadKind::ALL.iter().map(|_| Semaphore::new(per_kind)).collect();
        Self { permits: Arc::new(Semaphore::new(size)), kinds, size, per_kind, fallback_timeout }
    }

    /// A slot of `kind`'s share and of the whole bulkhead, waiting in line (FIFO) at most
    /// [`QUEUE_WAIT`] and never past `until`: a read that frees its slot within that time lets the
    /// next one in instead of refusing it; a flood waits, then is refused.
    async fn acquire(&self, kind: ReadKind, until: Instant) -> AppResult<(OwnedSemaphorePermit, KindPermit)> {
        let index = ReadKind::ALL.iter().position(|k| *k == kind).unwrap_or_default();
        let refused = |running: usize, what: &str| {
            metrics::counter!("maru_expensive_reads_refused_total", "kind" => kind.label()).increment(1);
            AppError::Retry {
                code: Code::ResourceExhausted,
                reason: Reason::CapacityExceeded,
                message: format!("{running} {what} are running; retry shortly"),
                retry_after: Duration::from_millis(250),
                metadata: Default::default(),
            }
            .with_meta("limit", "expensive_reads")
        };
        let give_up = until.min(Instant::now() + QUEUE_WAIT);
        let kind_permit = match tokio::time::timeout_at(give_up.into(), self.kinds[index].acquire()).await {
            Ok(Ok(p)) => {
                p.forget();
                KindPermit { kinds: self.kinds.clone(), index }
            }
            _ if Instant::now() >= until => return Err(deadline_exceeded()),
            _ => return Err(refused(self.per_kind, &format!("expensive reads of this kind ({})", kind.label()))),
        };
        match tokio::time::timeout_at(give_up.into(), self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok((permit, kind_permit)),
            _ if Instant::now() >= until => Err(deadline_exceeded()),
            _ => Err(refused(self.size, "expensive reads (searches, listings)")),
        }
    }
}

/// How long an expensive read waits in line for a slot before it is refused.
const QUEUE_WAIT: Duration = Duration::from_millis(250);

/// A slot of one kind's share, given back on drop.
struct KindPermit {
    kinds: Arc<[Semaphore]>,
    index: usize,
}

impl Drop for KindPermit {
    fn drop(&mut self) {
        self.kinds[self.index].add_permits(1);
    }
}

/// Begins a transaction on `pool`, like `pool.begin()`; when tracing is on it is one
/// `transaction` span from here to its COMMIT or ROLLBACK, the parent of its statements
/// (`crate::traces::SqlSpans`).
pub async fn begin(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let start = crate::traces::transaction_start();
    let tx = pool.begin().await?;
    crate::traces::transaction_begun(start);
    Ok(tx)
}

/// Commits `tx` (begun on `pool`). A connection lost during COMMIT leaves the outcome unknown
/// to this side: the commit record may have reached PostgreSQL's log before the connection
/// broke. Answering UNAVAILABLE then would tell a client the change was not made when it may
/// have been, and a client without a request_id would write it twice. So the transaction's id is
/// read before COMMIT and, when the connection breaks, its status is looked up on `pool`
/// ([`resolve_commit`]): committed → `Ok` (the caller answers as if nothing had happened),
/// aborted → the usual UNAVAILABLE (nothing was written: retrying is safe), not known before
/// the call's deadline → DEADLINE_EXCEEDED (which in gRPC means the change may have been
/// made; a retry with the same request_id answers what was done).
pub async fn commit(pool: &PgPool, mut tx: sqlx::Transaction<'static, sqlx::Postgres>) -> AppResult<()> {
    let xid: Option<i64> = sqlx::query_scalar("select txid_current_if_assigned()").fetch_one(&mut *tx).await?;
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) if crate::error::is_connection_lost(&e) => match xid {
            // No transaction id: it wrote nothing, so nothing can have been committed.
            None => Err(e.into()),
            Some(xid) => {
                let until = deadline().unwrap_or_else(Instant::now).max(Instant::now() + COMMIT_RESOLVE_MIN);
                match resolve_commit(pool, xid, until).await {
                    Some(true) => {
                        metrics::counter!("maru_db_commit_outcome_resolved_total", "outcome" => "committed")
                            .increment(1);
                        tracing::warn!(xid, "the connection broke during COMMIT; the transaction committed");
                        Ok(())
                    }
                    Some(false) => {
                        metrics::counter!("maru_db_commit_outcome_resolved_total", "outcome" => "aborted").increment(1);
                        Err(e.into())
                    }
                    None => {
                        metrics::counter!("maru_db_commit_outcome_resolved_total", "outcome" => "unknown").increment(1);
                        tracing::warn!(xid, "the connection broke during COMMIT; its outcome is unknown");
                        Err(AppError::refused(
                            Code::DeadlineExceeded,
                            Reason::DeadlineExceeded,
                            "the database connection broke while committing and the outcome could not be \
                             confirmed in time: the change may have been made; retry with the same request_id",
                        ))
                    }
                }
            }
        },
        Err(e) => Err(e.into()),
    }
}

/// The least time [`commit`] spends finding out a broken COMMIT's outcome, even past the call's
/// deadline (a restarted PostgreSQL answers within a few seconds).
const COMMIT_RESOLVE_MIN: Duration = Duration::from_secs(5);

/// Whether transaction `xid` committed (`txid_status`), asked on `pool` every 200 ms until it
/// answers or `until`: `None` when it did not answer in time (or the id is too old to know).
pub async fn resolve_commit(pool: &PgPool, xid: i64, until: Instant) -> Option<bool> {
    loop {
        let status: Result<Option<String>, sqlx::Error> =
            sqlx::query_scalar("select txid_status($1)").bind(xid).fetch_one(pool).await;
        match status.as_ref().map(|s| s.as_deref()) {
            Ok(Some("committed")) => return Some(true),
            Ok(Some("aborted")) => return Some(false),
            // Still in progress (the backend has not noticed its client went) or too old.
            Ok(_) | Err(_) => {}
        }
        if Instant::now() + Duration::from_millis(200) >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A read-only transaction of an expensive read: a slot of the [`Bulkhead`], a
/// `statement_timeout` of the RPC's remaining deadline, and cancellation in PostgreSQL when
/// dropped before [`Self::finish`].
pub struct ExpensiveRead {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    cancel: CancelOnDrop,
    until: Instant,
    _permit: (OwnedSemaphorePermit, KindPermit),
}

impl ExpensiveRead {
    pub async fn begin(pool: &PgPool, bulkhead: &Bulkhead, kind: ReadKind) -> AppResult<Self> {
        let until = deadline().unwrap_or_else(|| Instant::now() + bulkhead.fallback_timeout);
        let permit = bulkhead.acquire(kind, until).await?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(deadline_exceeded());
        }
        let mut tx = begin(pool).await?;
        let (pid, started, _): (i32, DateTime<Utc>, String) =
            sqlx::query_as("select pg_backend_pid(), now(), set_config('statement_timeout', $1, true)")
                .bind(format!("{}ms", left.as_millis().max(1)))
                .fetch_one(&mut *tx)
                .await?;
        metrics::counter!("maru_expensive_reads_total", "kind" => kind.label()).increment(1);
        Ok(Self { tx, cancel: CancelOnDrop { pool: pool.clone(), pid, started, armed: true }, until, _permit: permit })
    }

    /// The transaction's connection.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Ends the read with the result of its statements: a statement cancelled by the
    /// deadline is DEADLINE_EXCEEDED (not an internal error).
    pub async fn finish<T>(mut self, result: AppResult<T>) -> AppResult<T> {
        self.cancel.armed = false;
        let value = match result {
            Ok(v) => v,
            Err(AppError::Internal(_)) if Instant::now() >= self.until => return Err(deadline_exceeded()),
            Err(e) => return Err(e),
        };
        // Read only: nothing to commit.
        self.tx.rollback().await?;
        Ok(value)
    }
}

fn deadline_exceeded() -> AppError {
    AppError::refused(Code::DeadlineExceeded, Reason::DeadlineExceeded, "the deadline passed during a search")
}

/// Cancels the backend's statement when an [`ExpensiveRead`] is dropped unfinished, if that
/// backend still runs the same transaction (`xact_start`), so nothing else is cancelled.
struct CancelOnDrop {
    pool: PgPool,
    pid: i32,
    started: DateTime<Utc>,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (pool, pid, started) = (self.pool.clone(), self.pid, self.started);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let r = sqlx::query(
                    "select pg_cancel_backend(pid) from pg_stat_activity
                      where pid = $1 and xact_start = $2 and state = 'active'",
                )
                .bind(pid)
                .bind(started)
                .execute(&pool)
                .await;
                metrics::counter!("maru_expensive_reads_cancelled_total").increment(1);
                if let Err(e) = r {
                    tracing::warn!(error = %e, pid, "could not cancel an abandoned read");
                }
            });
        }
    }
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
pub fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// What an operator should hear about the server's PostgreSQL settings: things maru relies on
/// but cannot set itself. Without autovacuum (or the statistics it runs on, `track_counts`)
/// nothing ANALYZEs the tables, so the planner works from the statistics of an empty table
/// and list queries go to sequential scans as the data grows (80× slower in the feed load
/// runs, `loadtest/RESULTS.md`). Logged at start-up; `MaruPostgresAutovacuumOff` alerts on it.
pub async fn setting_warnings<'e>(db: impl sqlx::PgExecutor<'e>) -> anyhow::Result<Vec<String>> {
    let (autovacuum, track_counts): (String, String) =
        sqlx::query_as("select current_setting('autovacuum'), current_setting('track_counts')").fetch_one(db).await?;
    Ok(warnings_for(&autovacuum, &track_counts))
}

fn warnings_for(autovacuum: &str, track_counts: &str) -> Vec<String> {
    let mut out = Vec::new();
    if autovacuum != "on" {
        out.push(
            "PostgreSQL runs with autovacuum = off: nothing vacuums or ANALYZEs maru's tables, so \
             planner statistics go stale and queries slow down as data grows; turn it on, or run \
             VACUUM ANALYZE regularly"
                .to_owned(),
        );
    }
    if track_counts != "on" {
        out.push(
            "PostgreSQL runs with track_counts = off: autovacuum cannot tell which tables need \
             vacuuming or analyzing; turn it on"
                .to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod setting_tests {
    use super::{escape_like, warnings_for};

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("파장"), "파장");
        assert_eq!(escape_like("10%_a\\"), "10\\%\\_a\\\\");
    }

    #[test]
    fn warns_only_about_what_is_off() {
        assert!(warnings_for("on", "on").is_empty());
        let w = warnings_for("off", "on");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("autovacuum = off"), "{w:?}");
        let w = warnings_for("on", "off");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("track_counts = off"), "{w:?}");
        assert_eq!(warnings_for("off", "off").len(), 2);
    }
}

#[cfg(test)]
mod retry_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::config::DatabaseSettings;
    use crate::retry::Policy;

    /// A "database" that accepts connections and hangs up at once, counting them.
    async fn hanging_up() -> (String, Arc<AtomicU32>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        (format!("postgres://postgres@{addr}/maru"), count)
    }

    #[tokio::test]
    async fn preparation_is_retried_with_backoff_and_a_bounded_policy_gives_up() {
        let (url, connections) = hanging_up().await;
        let s = DatabaseSettings { url: url.into(), create_if_missing: true, ..Default::default() };
        let pool = lazy_pool(&s).unwrap();
        let policy = Policy { first: Duration::from_millis(50), max: Duration::from_millis(100), retries: Some(2) };
        let started = Instant::now();
        let error = prepare_with_retry(&s, &pool, true, policy).await;
        assert!(error.is_some());
        // One connection per attempt (creating the database comes first): 1 + 2 retries, after
        // waiting at least 50 + 100 ms (jitter only adds).
        assert_eq!(connections.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    }
}

/// Rows the store tests of several domains start from, written straight to the database.
#[cfg(test)]
pub mod fixtures {
    use sqlx::PgPool;
    use uuid::Uuid;

    /// A live account (`ADMIN` when `admin`).
    pub async fn user(db: &PgPool, handle: &str, admin: bool) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name, role)
             values ($1, $2, $2 || '@example.com', 'x', $2, $3)",
        )
        .bind(id)
        .bind(handle)
        .bind(if admin { "ADMIN" } else { "USER" })
        .execute(db)
        .await
        .unwrap();
        id
    }

    /// A club named `name`.
    pub async fn community(db: &PgPool, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query("insert into communities (id, kind, name) values ($1, 'CLUB', $2)")
            .bind(id)
            .bind(name)
            .execute(db)
            .await
            .unwrap();
        id
    }

    /// A membership of `user` in `community` with `status` (`PENDING`, `APPROVED`, …).
    pub async fn membership(db: &PgPool, community: Uuid, user: Uuid, status: &str) {
        sqlx::query("insert into community_memberships (id, community_id, user_id, status) values ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(community)
            .bind(user)
            .bind(status)
            .execute(db)
            .await
            .unwrap();
    }
}

#[cfg(test)]
mod expensive_read_tests {
    use super::*;

    /// Backends running `marker` now.
    async fn running(pool: &PgPool, marker: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(
            "select count(*) from pg_stat_activity where state = 'active' and query like '%' || $1 || '%'
                and pid <> pg_backend_pid()",
        )
        .bind(marker)
        .fetch_one(pool)
        .await
        .unwrap();
        n
    }

    /// Waits (up to a hang guard) until no backend runs `marker`.
    async fn gone(pool: &PgPool, marker: &str) -> bool {
        for _ in 0..100 {
            if running(pool, marker).await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn sleep_read(pool: &PgPool, bulkhead: &Bulkhead, marker: &str) -> AppResult<()> {
        let mut read = ExpensiveRead::begin(pool, bulkhead, ReadKind::PostSearch).await?;
        let sql = format!("select pg_sleep(30) /* {marker} */");
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(read.conn()).await.map(|_| ()).map_err(AppError::from);
        read.finish(r).await
    }

    #[sqlx::test]
    async fn a_read_past_the_rpc_deadline_is_cancelled_in_postgres(pool: PgPool) {
        // A fallback far beyond the hang guard: only the RPC deadline can end the statement.
        let bulkhead = Bulkhead::new(2, Duration::from_secs(600));
        let r = with_deadline(Instant::now() + Duration::from_millis(300), sleep_read(&pool, &bulkhead, "deadline-1"))
            .await;
        let e = r.unwrap_err();
        assert_eq!((e.code(), e.reason()), (Code::DeadlineExceeded, Reason::DeadlineExceeded), "{e:?}");
        assert_eq!(running(&pool, "deadline-1").await, 0, "the statement ended with the RPC");
    }

    #[sqlx::test]
    async fn a_read_dropped_by_its_rpc_is_cancelled_in_postgres(pool: PgPool) {
        let bulkhead = Bulkhead::new(2, Duration::from_secs(600));
        let abandoned =
            tokio::time::timeout(Duration::from_millis(300), sleep_read(&pool, &bulkhead, "dropped-1")).await;
        assert!(abandoned.is_err(), "the read was still running when dropped");
        assert!(gone(&pool, "dropped-1").await, "the abandoned statement was cancelled");
        // Its slot is free again.
        let mut read = ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.unwrap();
        let (one,): (i32,) = sqlx::query_as("select 1").fetch_one(read.conn()).await.unwrap();
        assert_eq!(read.finish(Ok(one)).await.unwrap(), 1);
    }

    #[sqlx::test]
    async fn expensive_reads_beyond_their_share_are_refused_with_retry_info(pool: PgPool) {
        let bulkhead = Bulkhead::new(1, Duration::from_secs(10));
        let held = ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.unwrap();
        let e = ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.err().expect("refused");
        assert_eq!((e.code(), e.reason()), (Code::ResourceExhausted, Reason::CapacityExceeded));
        assert!(matches!(e, AppError::Retry { .. }), "{e:?}");
        held.finish(Ok(())).await.unwrap();
        ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.unwrap().finish(Ok(())).await.unwrap();
    }

    #[sqlx::test]
    async fn a_flood_of_one_kind_leaves_the_other_kinds_a_share(pool: PgPool) {
        let bulkhead = Bulkhead::new(5, Duration::from_secs(10));
        let mut searches = Vec::new();
        for _ in 0..3 {
            searches.push(ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.unwrap());
        }
        let e = ExpensiveRead::begin(&pool, &bulkhead, ReadKind::PostSearch).await.err().expect("refused");
        assert_eq!((e.code(), e.reason()), (Code::ResourceExhausted, Reason::CapacityExceeded));
        // The refused search gave its kind slot back: still exactly 3 searches may run.
        let listings = [
            ExpensiveRead::begin(&pool, &bulkhead, ReadKind::TrialList).await.unwrap(),
            ExpensiveRead::begin(&pool, &bulkhead, ReadKind::TrialList).await.unwrap(),
        ];
        // The whole bulkhead (5) is held now: a third listing is refused by the total.
        let e = ExpensiveRead::begin(&pool, &bulkhead, ReadKind::TrialList).await.err().expect("refused");
        assert_eq!(e.code(), Code::ResourceExhausted);
        for read in searches.into_iter().chain(listings) {
            read.finish(Ok(())).await.unwrap();
        }
        for kind in ReadKind::ALL {
            // Each kind's slots came back: three of it run again.
            let mut reads = Vec::new();
            for _ in 0..3 {
                reads.push(ExpensiveRead::begin(&pool, &bulkhead, kind).await.unwrap());
            }
            for read in reads {
                read.finish(Ok(())).await.unwrap();
            }
        }
    }
}
