//! The report settings (`[reports]`, `MARU__REPORTS__…`) and their validation.

use serde::{Deserialize, Serialize};

/// Reports and moderation (docs/reports.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportsSettings {
    /// A post, comment, product or user reported by this many distinct users (open reports) is
    /// hidden pending review, and shown again if its reports are dismissed.
    pub auto_hide_threshold: u32,
    /// Seconds between two refreshes of the open-queue gauges (`jobs::report_gauges`).
    pub queue_gauge_interval_s: u64,
}

impl Default for ReportsSettings {
    fn default() -> Self {
        Self { auto_hide_threshold: 5, queue_gauge_interval_s: 30 }
    }
}

impl ReportsSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if !(1..=1000).contains(&self.auto_hide_threshold) {
            errs.push("reports.auto_hide_threshold: must be 1 to 1000".into());
        }
        if !(1..=3600).contains(&self.queue_gauge_interval_s) {
            errs.push("reports.queue_gauge_interval_s: must be 1 to 3600".into());
        }
    }
}
