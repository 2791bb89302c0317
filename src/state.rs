//! The state every op receives: the pool, the cache, the settings, the token and page keys,
//! the password hasher and the clock. Built once by the application (or by the CLI and tests,
//! without servers); cheap to clone.

use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context as _;
use rand::RngCore;
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::config::{Environment, Settings};
use crate::db::Bulkhead;
use crate::paging::Pager;
use crate::password::Passwords;
use crate::tokens::TokenKeys;

/// Everything an op needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<StateInner>);

pub struct StateInner {
    pub db: PgPool,
    pub cache: Cache,
    pub settings: Arc<Settings>,
    pub tokens: Arc<TokenKeys>,
    pub passwords: Passwords,
    pub pager: Pager,
    /// "Now" for time-dependent rules (events); a test clock in tests.
    pub clock: Arc<dyn Clock>,
    /// The share of the pool expensive reads may hold ([`crate::db::ExpensiveRead`]).
    pub expensive_reads: Bulkhead,
}

impl Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.0
    }
}

impl AppState {
    /// State for the CLI and tests: no servers, same rules.
    pub fn new(settings: Settings, db: PgPool) -> anyhow::Result<Self> {
        Self::with_clock(settings, db, Arc::new(SystemClock))
    }

    /// As [`Self::new`] with another clock.
    pub fn with_clock(settings: Settings, db: PgPool, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let (secret, _) = jwt_secret(&settings)?;
        let cache = Cache::new(&settings.redis);
        Ok(Self(Arc::new(StateInner {
            db,
            cache,
            tokens: Arc::new(TokenKeys::new(&secret, &settings.auth.issuer, settings.auth.access_ttl_s)),
            passwords: Passwords::new(settings.auth.max_concurrent_hashes),
            pager: Pager::new(&secret),
            expensive_reads: Bulkhead::new(settings.expensive_reads(), settings.grpc.request_timeout()),
            settings: Arc::new(settings),
            clock,
        })))
    }
}

/// The configured key, the key file, or — in development only — a random key (`true`).
fn jwt_secret(settings: &Settings) -> anyhow::Result<(Vec<u8>, bool)> {
    if let Some(key) = &settings.auth.jwt_key {
        return Ok((key.expose_secret().as_bytes().to_vec(), false));
    }
    if let Some(path) = &settings.auth.jwt_key_file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok((bytes.trim_ascii().to_vec(), false));
    }
    anyhow::ensure!(settings.env == Environment::Development, "auth.jwt_key is required in production");
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    Ok((key, true))
}
