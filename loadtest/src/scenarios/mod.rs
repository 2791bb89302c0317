//! The scenarios, one file each. A scenario seeds what it needs through the API, hands goose
//! its user types, and after the run judges the summary (and reads back the database where an
//! exact count is the point). A new scenario is a new file plus one line in [`ALL`].

pub mod chat;
pub mod contention;
pub mod detail_cache;
pub mod feed;
pub mod grpc_web;
pub mod market;
pub mod pool;
pub mod rate_limit_abuse;
pub mod search;
pub mod signup_storm;
pub mod team_detail;
pub mod whoami;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionError};
use sqlx::{Connection, PgConnection};
use tonic::transport::{Channel, Endpoint};
use url::Url;

use crate::report::{Check, Summary};
use crate::rpc::{Budget, TxResult};
use crate::server::ServerMetrics;

/// Pause between one user's transactions, drawn uniformly from `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Think {
    pub min: Duration,
    pub max: Duration,
}

impl Think {
    pub const NONE: Think = Think { min: Duration::ZERO, max: Duration::ZERO };

    pub const fn ms(min: u64, max: u64) -> Think {
        Think { min: Duration::from_millis(min), max: Duration::from_millis(max) }
    }
}

/// Users, duration and think time of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub users: usize,
    pub duration: Duration,
    pub think: Think,
}

impl Shape {
    const fn new(users: usize, secs: u64, think: Think) -> Shape {
        Shape { users, duration: Duration::from_secs(secs), think }
    }
}

/// One scenario as the CLI knows it.
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    pub full: Shape,
    pub smoke: Shape,
    pub build: fn(Arc<Ctx>) -> Box<dyn LoadScenario>,
}

pub const ALL: &[Entry] = &[
    whoami::ENTRY,
    feed::ENTRY,
    detail_cache::ENTRY,
    signup_storm::ENTRY,
    contention::ENTRY,
    rate_limit_abuse::ENTRY,
    pool::ENTRY,
    grpc_web::ENTRY,
    search::ENTRY,
    team_detail::ENTRY,
    market::ENTRY,
    chat::ENTRY,
];

pub fn find(name: &str) -> Option<&'static Entry> {
    ALL.iter().find(|e| e.name == name)
}

/// How long goose runs the users.
pub enum RunMode {
    /// Until the duration is over.
    Timed,
    /// Each user runs its transactions once; the duration only bounds the run.
    OnceEach,
}

#[async_trait]
pub trait LoadScenario: Send + Sync {
    fn mode(&self) -> RunMode {
        RunMode::Timed
    }

    /// Seeds what the run needs and returns goose's user types.
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>>;

    /// Judges the run: thresholds on the summary, invariants read back.
    async fn verify(&self, summary: &Summary) -> anyhow::Result<Vec<Check>>;

    /// What the seeding made, for other tools to drive the same data (`--seed-only FILE`).
    fn seeded(&self) -> Option<serde_json::Value> {
        None
    }

    /// The server's resident-memory goal in a full run (checked with `--server-metrics`).
    fn rss_goal_mb(&self) -> Option<f64> {
        None
    }
}

/// Flags only some scenarios read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Overrides the scenario's p99 goal (full runs only).
    pub p99_ms: Option<f64>,
    pub pool_expect: pool::Expect,
    pub race: contention::RaceKind,
    /// detail-cache: whether the server's cache is expected on.
    pub cache: detail_cache::CacheMode,
    /// search: with or without the search indexes, over how many complexes.
    pub search_index: search::IndexMode,
    pub complexes: Option<i64>,
    /// rate-limit-abuse: the target's read and auth buckets.
    pub read_bucket: rate_limit_abuse::Bucket,
    pub auth_bucket: rate_limit_abuse::Bucket,
    /// A report of an earlier run to compare throughput with.
    pub baseline: Option<PathBuf>,
    pub min_throughput_ratio: f64,
    /// team-detail: a second server on the same database with its caches off (origin, loopback).
    pub uncached_target: Option<String>,
    /// market: products in the catalogue, and likes by synthetic likers.
    pub products: Option<i64>,
    pub likes: Option<i64>,
    /// chat: subscriber streams sharing one HTTP/2 connection (default 1: each its own, like
    /// separate clients).
    pub streams_per_connection: usize,
}

/// Everything a scenario needs to know about its run.
pub struct Ctx {
    pub smoke: bool,
    pub users: usize,
    pub duration: Duration,
    pub think: Think,
    /// gRPC origins (`http://127.0.0.1:50051`), all loopback; users are spread round-robin.
    pub targets: Vec<String>,
    /// The database the server uses, for read-back checks (loopback).
    pub database_url: Url,
    /// Fixes the seeded data: the same seed seeds (and reuses) the same accounts.
    pub seed: u64,
    /// Random per run: names of data the run itself creates (sign-ups) are unique per run.
    pub tag: String,
    pub budget: Budget,
    pub request_timeout: Duration,
    pub options: Options,
    /// The target's Prometheus endpoint (`--server-metrics`), when given.
    pub server_metrics: Option<Arc<ServerMetrics>>,
}

impl Ctx {
    pub fn target(&self, i: usize) -> &str {
        &self.targets[i % self.targets.len()]
    }

    /// A lazily connecting HTTP/2 channel to target `i % targets`: one per user, like
    /// separate clients.
    pub fn channel(&self, i: usize) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(self.target(i).to_owned())?
            .timeout(self.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy())
    }

    pub async fn db(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(self.database_url.as_str())
            .await
            .with_context(|| format!("cannot read back from {}", redact(&self.database_url)))
    }
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}

/// This user's session data, set by its `on_start` transaction.
pub fn session<T: Clone + Send + Sync + 'static>(user: &GooseUser) -> TxResult<T> {
    user.get_session_data::<T>()
        .cloned()
        .ok_or_else(|| Box::new(TransactionError::Custom("user session is not initialised".into())))
}

/// A session that counts its user's calls (picks depend on user and call number, so a run is
/// reproducible).
pub trait Counted: Clone + Send + Sync + 'static {
    fn next_call(&mut self);
}

/// The user's session with its call counter advanced and stored.
pub fn advance<T: Counted>(user: &mut GooseUser) -> TxResult<T> {
    let mut s = session::<T>(user)?;
    s.next_call();
    user.set_session_data(s.clone());
    Ok(s)
}

/// A goose transaction calling `state.$method(user)`.
macro_rules! tx {
    ($state:expr, $name:literal, $method:ident) => {{
        let state = std::sync::Arc::clone(&$state);
        let f: goose::goose::TransactionFunction = std::sync::Arc::new(move |user| {
            let state = std::sync::Arc::clone(&state);
            Box::pin(async move { state.$method(user).await })
        });
        goose::goose::Transaction::new(f).set_name($name)
    }};
}
pub(crate) use tx;

/// Sets goose's think time on a user type.
pub fn with_think(s: Scenario, think: Think) -> anyhow::Result<Scenario> {
    s.set_wait_time(think.min, think.max).map_err(|e| anyhow::anyhow!("think time: {e}"))
}
