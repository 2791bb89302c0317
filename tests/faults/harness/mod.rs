//! The harness: throw-away PostgreSQL and Redis per scenario, maru as a subprocess, the mixed
//! load, raw HTTP/2, and the reports.

pub mod load;
pub mod maru;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod report;
pub mod status;

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use sqlx::PgConnection;

use self::maru::MaruConfig;
use self::postgres::PgCluster;
use self::redis::RedisServer;

/// Runs a load scenario on its own runtime, one at a time: each loads its server and
/// measures memory and recovery, which another loaded scenario would distort.
pub fn scenario<F, Fut>(f: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    light_scenario(f);
}

thread_local! {
    /// When the running scenario started (for its report).
    pub static STARTED: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Runs a scenario of a few calls (nothing measured) on its own runtime, alongside others.
pub fn light_scenario<F, Fut>(f: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    STARTED.set(Some(std::time::Instant::now()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(f());
}

/// `secs` seconds, times `FAULTS_SOAK` (default 1): the load phases of every scenario, so a
/// soak runs the same faults under a longer load (`FAULTS_SOAK=20` ≈ 20× as long).
pub fn soak(secs: u64) -> std::time::Duration {
    let factor = std::env::var("FAULTS_SOAK").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(1).max(1);
    std::time::Duration::from_secs(secs * factor)
}

/// A scenario's own PostgreSQL cluster and Redis, and what its maru processes share.
pub struct Env {
    pub pg: PgCluster,
    pub redis: RedisServer,
    /// Shared by every replica of the scenario (tokens work on both); random per run.
    pub jwt_key: String,
    pub redis_prefix: String,
}

impl Env {
    pub async fn start() -> Self {
        let (pg, redis) = tokio::join!(PgCluster::start(), RedisServer::start());
        Self {
            pg,
            redis,
            jwt_key: format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>()),
            redis_prefix: format!("faults:{:08x}:", rand::random::<u32>()),
        }
    }

    /// Settings of a maru process using this environment.
    pub fn maru(&self, name: &str) -> MaruConfig {
        MaruConfig::new(name, &self.pg, Some(&self.redis), &self.jwt_key, &self.redis_prefix)
    }

    /// A direct connection to maru's database.
    pub async fn db(&self) -> PgConnection {
        self.pg.connect("maru").await
    }

    /// The 145 trials of the bundled fixture, through `maru ingest trials --from-file`.
    pub async fn ingest_trials(&self, cfg: &MaruConfig) {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clinical-trials-3074271.json");
        cfg.cli(&["ingest", "trials", "--from-file", file]).await;
    }
}
