//! The events settings (`[events]`, `MARU__EVENTS__…`) and their validation; `crate::config`
//! assembles them into the settings.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::secrets::masked_opt;

/// Sports-club events: check-in rules, penalty points, settlement and the Naver geocoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Farthest a check-in may be from the venue, metres.
    pub check_in_radius_m: f64,
    /// Check-in opens this many minutes before the start.
    pub check_in_opens_min: i64,
    /// A check-in up to this many minutes after the start is ATTEND; later is LATE.
    pub late_after_min: i64,
    /// Penalty points applied at settlement.
    pub absent_points: i32,
    pub late_points: i32,
    pub not_paid_points: i32,
    /// How often each replica looks for ended, unsettled events.
    pub settle_interval_ms: u64,
    /// Naver Cloud geocoding API base URL (path `/map-geocode/v2/geocode` is appended).
    pub geocoder_base_url: String,
    /// `X-NCP-APIGW-API-KEY-ID`. Geocoding is off (explicit coordinates required) without it.
    pub geocoder_key_id: Option<String>,
    /// `X-NCP-APIGW-API-KEY`. Secret: set `MARU__EVENTS__GEOCODER_KEY`.
    #[serde(serialize_with = "masked_opt")]
    pub geocoder_key: Option<SecretString>,
    pub geocoder_timeout_ms: u64,
    /// Retries after a time-out, a connection error, 429 or 5xx.
    pub geocoder_retries: u32,
    /// How long a geocoding result is cached in Redis.
    pub geocode_cache_ttl_s: u64,
    /// Slack/Discord-compatible incoming webhook notified of each settlement. Secret (the URL
    /// is the credential): set `MARU__EVENTS__WEBHOOK_URL`.
    #[serde(serialize_with = "masked_opt")]
    pub webhook_url: Option<SecretString>,
    pub webhook_timeout_ms: u64,
    /// Delivery attempts before a notice is given up (kept in the outbox with its last error).
    pub webhook_max_attempts: i32,
    /// First retry delay; doubles with each attempt, at most one hour.
    pub webhook_backoff_ms: u64,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            check_in_radius_m: 400.0,
            check_in_opens_min: 60,
            late_after_min: 20,
            absent_points: 3,
            late_points: 1,
            not_paid_points: 1,
            settle_interval_ms: 5_000,
            geocoder_base_url: "https://naveropenapi.apigw.ntruss.com".into(),
            geocoder_key_id: None,
            geocoder_key: None,
            geocoder_timeout_ms: 5_000,
            geocoder_retries: 2,
            geocode_cache_ttl_s: 7 * 24 * 3600,
            webhook_url: None,
            webhook_timeout_ms: 5_000,
            webhook_max_attempts: 10,
            webhook_backoff_ms: 1_000,
        }
    }
}

impl EventsSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if !(self.check_in_radius_m.is_finite() && self.check_in_radius_m > 0.0) {
            errs.push("events.check_in_radius_m: must be positive".into());
        }
        if self.check_in_opens_min < 0 || self.late_after_min < 0 {
            errs.push("events.check_in_opens_min, events.late_after_min: must not be negative".into());
        }
        if self.absent_points < 0 || self.late_points < 0 || self.not_paid_points < 0 {
            errs.push("events.*_points: must not be negative".into());
        }
        if self.settle_interval_ms == 0 {
            errs.push("events.settle_interval_ms: must be positive".into());
        }
        match url::Url::parse(&self.geocoder_base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => errs.push(format!(
                "events.geocoder_base_url: `{}` is not an http(s) URL without a query",
                self.geocoder_base_url
            )),
        }
        if self.geocoder_key_id.is_some() != self.geocoder_key.is_some() {
            errs.push("events.geocoder_key_id and events.geocoder_key: set both or neither".into());
        }
        if self.geocoder_timeout_ms == 0 {
            errs.push("events.geocoder_timeout_ms: must be positive".into());
        }
        if self.geocoder_retries > 10 {
            errs.push("events.geocoder_retries: must be at most 10".into());
        }
        if let Some(url) = &self.webhook_url
            && !url::Url::parse(url.expose_secret()).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            errs.push("events.webhook_url: must be an http(s) URL".into());
        }
        if self.webhook_timeout_ms == 0 || self.webhook_max_attempts < 1 {
            errs.push("events.webhook_timeout_ms, events.webhook_max_attempts: must be positive".into());
        }
    }
}
