//! The media settings (`[media]`, `MARU__MEDIA__…`) and their validation (docs/media.md#settings).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::secrets::masked_opt;

/// Where media bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// Files under `media.data_dir`; uploads and downloads go through maru's own listener.
    Local,
    /// An S3-compatible bucket; clients PUT and GET with presigned URLs.
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    pub backend: MediaBackend,
    /// Directory of the local backend (created on start).
    pub data_dir: String,
    /// Base URL clients reach maru's gRPC listener at, for the local backend's upload and
    /// download URLs (e.g. `https://api.example.org`). Empty: `http://<grpc.listen>`.
    pub public_url: String,
    /// Seconds an upload URL stays valid.
    pub upload_ttl_s: u64,
    /// Seconds a variant URL answered by GetMedia stays valid.
    pub url_ttl_s: u64,
    /// Largest upload of any purpose, bytes (each purpose has its own, smaller or equal, limit).
    pub max_upload_bytes: u64,
    /// Uploads one user may create per day (UTC).
    pub quota_uploads_per_day: u32,
    /// Bytes one user may declare per day (UTC).
    pub quota_bytes_per_day: u64,
    /// Largest decoded image, pixels (width × height): bigger ones (decompression bombs) FAIL.
    pub max_pixels: u64,
    /// Images one replica processes at once.
    pub workers: usize,
    /// Seconds a worker holds a job before another replica may take it over (it renews the
    /// lease every third of that while it works).
    pub job_lease_s: u64,
    /// Processing attempts before a job is dead (its media FAILED).
    pub job_max_attempts: i32,
    /// Milliseconds between two polls of the queue when it was empty.
    pub poll_interval_ms: u64,
    /// Seconds after which media never completed or never attached are deleted.
    pub cleanup_after_s: u64,
    /// Hours after an account's deletion its media (attached or not) are deleted, objects
    /// and variants included. A suspended account's media are kept (it may be reinstated).
    pub owner_deleted_grace_h: u64,
    /// For tests only (the SIGKILL fault test): milliseconds a worker sleeps after storing
    /// each variant, so a job can be caught half done. 0 (the default) in any deployment.
    pub test_processing_delay_ms: u64,
    /// HMAC key of the local backend's upload and download tokens. Unset: derived from the
    /// access-token signing key (`auth.jwt_key`).
    #[serde(serialize_with = "masked_opt")]
    pub url_key: Option<SecretString>,
    pub s3_bucket: String,
    /// S3-compatible endpoint (MinIO, moto, …); empty for AWS.
    pub s3_endpoint: String,
    pub s3_region: String,
    #[serde(serialize_with = "masked_opt")]
    pub s3_access_key_id: Option<SecretString>,
    #[serde(serialize_with = "masked_opt")]
    pub s3_secret_access_key: Option<SecretString>,
    /// Allow a plain-HTTP endpoint (local S3-compatible servers).
    pub s3_allow_http: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Local,
            data_dir: "data/media".into(),
            public_url: String::new(),
            upload_ttl_s: 900,
            url_ttl_s: 3600,
            max_upload_bytes: 10 * 1024 * 1024,
            quota_uploads_per_day: 200,
            quota_bytes_per_day: 500 * 1024 * 1024,
            max_pixels: 50_000_000,
            workers: 2,
            job_lease_s: 60,
            job_max_attempts: 5,
            poll_interval_ms: 1000,
            cleanup_after_s: 24 * 3600,
            owner_deleted_grace_h: 30 * 24,
            test_processing_delay_ms: 0,
            url_key: None,
            s3_bucket: String::new(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
        }
    }
}

impl MediaSettings {
    /// The origins a browser reaches media at — the PUT of an upload, the GET of a variant —
    /// for a page's Content-Security-Policy (`connect-src`, `img-src`): the local backend's
    /// `public_url` (filled in from the bound port at start when empty), the S3 endpoint, or any
    /// `https://*.amazonaws.com` for AWS itself.
    pub fn browser_origins(&self) -> Vec<String> {
        let origin = |u: &str| {
            url::Url::parse(u).ok().map(|u| u.origin()).filter(|o| o.is_tuple()).map(|o| o.ascii_serialization())
        };
        match self.backend {
            MediaBackend::Local => origin(&self.public_url).into_iter().collect(),
            MediaBackend::S3 if self.s3_endpoint.is_empty() => vec!["https://*.amazonaws.com".to_owned()],
            MediaBackend::S3 => origin(&self.s3_endpoint).into_iter().collect(),
        }
    }

    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if self.backend == MediaBackend::Local && self.data_dir.trim().is_empty() {
            errs.push("media.data_dir: must not be empty with the local backend".into());
        }
        if self.backend == MediaBackend::S3 && self.s3_bucket.trim().is_empty() {
            errs.push("media.s3_bucket: required with the s3 backend".into());
        }
        if !self.public_url.is_empty() && url::Url::parse(&self.public_url).is_err() {
            errs.push("media.public_url: must be an absolute URL".into());
        }
        if !(30..=7 * 24 * 3600).contains(&self.upload_ttl_s) {
            errs.push("media.upload_ttl_s: must be 30 to 604800".into());
        }
        if !(30..=7 * 24 * 3600).contains(&self.url_ttl_s) {
            errs.push("media.url_ttl_s: must be 30 to 604800".into());
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_upload_bytes) {
            errs.push("media.max_upload_bytes: must be 1 KiB to 1 GiB".into());
        }
        if self.max_pixels < 1_000_000 {
            errs.push("media.max_pixels: must be at least 1000000".into());
        }
        if !(1..=64).contains(&self.workers) {
            errs.push("media.workers: must be 1 to 64".into());
        }
        if !(3..=3600).contains(&self.job_lease_s) {
            errs.push("media.job_lease_s: must be 3 to 3600".into());
        }
        if !(1..=100).contains(&self.job_max_attempts) {
            errs.push("media.job_max_attempts: must be 1 to 100".into());
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            errs.push("media.poll_interval_ms: must be 10 to 60000".into());
        }
        if self.cleanup_after_s < 60 {
            errs.push("media.cleanup_after_s: must be at least 60".into());
        }
        if !(1..=10 * 365 * 24).contains(&self.owner_deleted_grace_h) {
            errs.push("media.owner_deleted_grace_h: must be 1 to 87600".into());
        }
        if self.test_processing_delay_ms > 600_000 {
            errs.push("media.test_processing_delay_ms: must be at most 600000 (and 0 outside tests)".into());
        }
    }
}
