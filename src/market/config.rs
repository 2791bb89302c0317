//! The market settings (`[market]`, `MARU__MARKET__…`) and their validation; `crate::config`
//! assembles them into the settings.

use serde::{Deserialize, Serialize};

/// The market: caching of recommendation lists (docs/market.md#caching).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketSettings {
    /// Cache ranked recommendation lists in Redis.
    pub cache_enabled: bool,
    /// Longest life of a cached list: how late other people's likes and edits of other products
    /// reach it (the caller's own likes and profile, and edits of the product itself, refresh it
    /// at once).
    pub recommendation_cache_ttl_s: u64,
}

impl Default for MarketSettings {
    fn default() -> Self {
        Self { cache_enabled: true, recommendation_cache_ttl_s: 60 }
    }
}

impl MarketSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        // Cached entries must expire well before the version keys that guard them (1 day).
        if !(1..=3600).contains(&self.recommendation_cache_ttl_s) {
            errs.push("market.recommendation_cache_ttl_s: must be 1 to 3600".into());
        }
    }
}
