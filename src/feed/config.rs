//! The feed settings (`[feed]`, `MARU__FEED__…`) and their validation; `crate::config`
//! assembles them into the settings.

use serde::{Deserialize, Serialize};

/// The feed: view counting and caching (docs/feed.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// How often pending post views are flushed from Redis to PostgreSQL (one replica at a time).
    pub view_flush_interval_s: u64,
    /// Longest a view waits in the process' queue before it is sent to Redis.
    pub view_batch_interval_ms: u64,
    /// Views sent to Redis in one call; this many waiting are sent at once.
    pub view_batch_max: usize,
    /// Views the queue holds; beyond that a view is sent to Redis on the request path.
    pub view_queue_capacity: usize,
    /// Cache post detail, community feed pages and profiles in Redis.
    pub cache_enabled: bool,
    /// Lifetime of a cached post (invalidated by every write that changes it before that).
    pub post_cache_ttl_s: u64,
    /// Lifetime of a cached community feed page (invalidated likewise).
    pub page_cache_ttl_s: u64,
    /// Lifetime of a cached profile (invalidated likewise).
    pub profile_cache_ttl_s: u64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            view_flush_interval_s: 60,
            view_batch_interval_ms: 100,
            view_batch_max: 500,
            view_queue_capacity: 50_000,
            cache_enabled: true,
            post_cache_ttl_s: 300,
            page_cache_ttl_s: 60,
            profile_cache_ttl_s: 300,
        }
    }
}

impl FeedSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if !(1..=3600).contains(&self.view_flush_interval_s) {
            errs.push("feed.view_flush_interval_s: must be 1 to 3600".into());
        }
        if !(1..=60_000).contains(&self.view_batch_interval_ms) {
            errs.push("feed.view_batch_interval_ms: must be 1 to 60000".into());
        }
        if !(1..=10_000).contains(&self.view_batch_max) {
            errs.push("feed.view_batch_max: must be 1 to 10000".into());
        }
        if !(1..=1_000_000).contains(&self.view_queue_capacity) {
            errs.push("feed.view_queue_capacity: must be 1 to 1000000".into());
        }
        // Cached entries must expire well before the version keys that guard them (1 day).
        for (name, v) in [
            ("post_cache_ttl_s", self.post_cache_ttl_s),
            ("page_cache_ttl_s", self.page_cache_ttl_s),
            ("profile_cache_ttl_s", self.profile_cache_ttl_s),
        ] {
            if !(1..=3600).contains(&v) {
                errs.push(format!("feed.{name}: must be 1 to 3600"));
            }
        }
    }
}
