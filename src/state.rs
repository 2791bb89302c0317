//! The state every op receives: the pool, the cache, the settings, the token and page keys,
//! the password hasher and the clock. Built once by the application (or by the CLI and tests,
//! without servers); cheap to clone.

use std::ops::Deref;
use std::sync::Arc;

use sqlx::PgPool;

use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::db::Bulkhead;
use crate::keyring::Keyring;
use crate::paging::Pager;
use crate::password::Passwords;
use crate::tokens::TokenKeys;
use crate::views::batch::{BatchLimits, ViewBatcher};

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
    /// The signing keys of access and page tokens, reloaded by [`crate::keyring::watch`].
    pub keyring: Arc<Keyring>,
    /// "Now" for time-dependent rules (events); a test clock in tests.
    pub clock: Arc<dyn Clock>,
    /// The share of the pool expensive reads may hold ([`crate::db::ExpensiveRead`]).
    pub expensive_reads: Bulkhead,
    /// Views waiting to be counted in Redis ([`crate::views::record`]).
    pub views: ViewBatcher,
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
        let (keyring, _) = Keyring::from_settings(&settings)?;
        let keyring = Arc::new(keyring);
        let cache = Cache::new(&settings.redis);
        let views = ViewBatcher::new(
            cache.clone(),
            BatchLimits {
                interval: std::time::Duration::from_millis(settings.feed.view_batch_interval_ms),
                max: settings.feed.view_batch_max,
                capacity: settings.feed.view_queue_capacity,
            },
        );
        Ok(Self(Arc::new(StateInner {
            db,
            cache,
            tokens: Arc::new(TokenKeys::with_keyring(
                keyring.clone(),
                &settings.auth.issuer,
                settings.auth.access_ttl_s,
            )),
            passwords: Passwords::new(settings.auth.max_concurrent_hashes),
            pager: Pager::with_keyring(keyring.clone()),
            keyring,
            expensive_reads: Bulkhead::new(settings.expensive_reads(), settings.grpc.request_timeout()),
            settings: Arc::new(settings),
            clock,
            views,
        })))
    }
}
