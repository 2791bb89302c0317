//! The trials settings (`[trials]`, `MARU__TRIALS__…`) and their validation; `crate::config`
//! assembles them into the settings.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;
use crate::secrets::masked_opt;

/// Clinical-trial open data: the odcloud gateway and the ingest schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrialsSettings {
    /// Gateway base URL, e.g. `https://api.odcloud.kr/api`.
    pub base_url: String,
    /// Dataset path under the base URL.
    pub dataset_path: String,
    /// The gateway's service key (the "Decoding" key; it is URL-encoded when sent). Secret:
    /// set `MARU__TRIALS__SERVICE_KEY`; never in a file in the repository.
    #[serde(serialize_with = "masked_opt")]
    pub service_key: Option<SecretString>,
    /// Rows requested per page.
    pub per_page: u32,
    /// Longest time one page request may take, connection included.
    pub request_timeout_ms: u64,
    /// Retries of a page after a time-out, a connection error, 429 or 5xx (not after 4xx).
    pub retries: u32,
    /// First retry delay; doubles with each retry up to `max_backoff_ms`.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Cron expression (5 fields, or 6 with seconds first) of the scheduled ingest.
    pub schedule: String,
    /// IANA time zone the schedule is read in.
    pub time_zone: String,
    /// Run the scheduled ingest (it also needs `service_key`).
    pub enabled: bool,
}

impl Default for TrialsSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.odcloud.kr/api".into(),
            dataset_path: "/3074271/v1/uddi:cfc19dda-6f75-4c57-86a8-bb9c8b103887".into(),
            service_key: None,
            per_page: 100,
            request_timeout_ms: 10_000,
            retries: 3,
            backoff_ms: 500,
            max_backoff_ms: 10_000,
            schedule: "0 0 * * *".into(),
            time_zone: "Asia/Seoul".into(),
            enabled: true,
        }
    }
}

impl TrialsSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => errs.push(format!("trials.base_url: `{}` is not an http(s) URL without a query", self.base_url)),
        }
        if !self.dataset_path.starts_with('/') || self.dataset_path.contains(['?', '#']) {
            errs.push("trials.dataset_path: must start with `/` and hold no query".into());
        }
        if let Some(key) = &self.service_key
            && key.expose_secret().trim().is_empty()
        {
            errs.push("trials.service_key: must not be empty when set".into());
        }
        if !(1..=1000).contains(&self.per_page) {
            errs.push("trials.per_page: must be 1 to 1000".into());
        }
        if self.request_timeout_ms == 0 {
            errs.push("trials.request_timeout_ms: must be positive".into());
        }
        if self.retries > 10 {
            errs.push("trials.retries: must be at most 10".into());
        }
        if self.backoff_ms > self.max_backoff_ms {
            errs.push("trials.backoff_ms: must not exceed max_backoff_ms".into());
        }
        if let Err(e) = Schedule::parse(&self.schedule, &self.time_zone) {
            errs.extend(e);
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
