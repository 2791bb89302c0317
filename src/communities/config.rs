//! The apartment-registry settings (`[registry]`, `MARU__REGISTRY__…`) and their validation;
//! `crate::config` assembles them into the settings.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::secrets::masked_opt;

/// The public apartment registry (AptListService) for `maru import apartments --from-api`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// API base URL, e.g. `https://apis.data.go.kr/1613000/AptListService3`.
    pub base_url: String,
    /// Path of the list operation under the base URL.
    pub list_path: String,
    /// The portal's service key (the "Decoding" key; it is URL-encoded when sent). Secret:
    /// set `MARU__REGISTRY__SERVICE_KEY`; never in a file in the repository.
    #[serde(serialize_with = "masked_opt")]
    pub service_key: Option<SecretString>,
    /// Rows requested per page (`numOfRows`).
    pub rows_per_page: u32,
    /// Longest time one page request may take, connection included.
    pub request_timeout_ms: u64,
    /// Retries of a page after a time-out, a connection error, 429 or 5xx.
    pub retries: u32,
    /// First retry delay; doubles with each retry (at most 30 s).
    pub backoff_ms: u64,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            base_url: "https://apis.data.go.kr/1613000/AptListService3".into(),
            list_path: "/getTotalAptList3".into(),
            service_key: None,
            rows_per_page: 1000,
            request_timeout_ms: 10_000,
            retries: 3,
            backoff_ms: 500,
        }
    }
}

impl RegistrySettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        match url::Url::parse(&self.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => errs.push(format!("registry.base_url: `{}` is not an http(s) URL without a query", self.base_url)),
        }
        if !self.list_path.starts_with('/') || self.list_path.contains(['?', '#']) {
            errs.push("registry.list_path: must start with `/` and hold no query".into());
        }
        if let Some(key) = &self.service_key
            && key.expose_secret().trim().is_empty()
        {
            errs.push("registry.service_key: must not be empty when set".into());
        }
        if !(1..=10_000).contains(&self.rows_per_page) {
            errs.push("registry.rows_per_page: must be 1 to 10000".into());
        }
        if self.request_timeout_ms == 0 {
            errs.push("registry.request_timeout_ms: must be positive".into());
        }
        if self.retries > 10 {
            errs.push("registry.retries: must be at most 10".into());
        }
    }
}
