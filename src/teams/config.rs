//! The team-building settings (`[teams]`, `MARU__TEAMS__…`) and their validation;
//! `crate::config` assembles them into the settings.

use serde::{Deserialize, Serialize};

/// Team building: caching of team detail and lists (docs/teams.md#caching).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamsSettings {
    /// Cache team detail and team list pages in Redis.
    pub cache_enabled: bool,
    /// Lifetime of a cached team (every write that changes it invalidates it before that).
    pub team_cache_ttl_s: u64,
    /// Lifetime of a cached page of a club's teams (invalidated likewise).
    pub page_cache_ttl_s: u64,
}

impl Default for TeamsSettings {
    fn default() -> Self {
        Self { cache_enabled: true, team_cache_ttl_s: 300, page_cache_ttl_s: 60 }
    }
}

impl TeamsSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        // Cached entries must expire well before the version keys that guard them (1 day).
        for (name, v) in [("team_cache_ttl_s", self.team_cache_ttl_s), ("page_cache_ttl_s", self.page_cache_ttl_s)] {
            if !(1..=3600).contains(&v) {
                errs.push(format!("teams.{name}: must be 1 to 3600"));
            }
        }
    }
}
