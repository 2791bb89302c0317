//! Typed settings: built-in defaults → optional TOML file → `MARU__SECTION__KEY` environment.
//!
//! Every setting has a default that works on a machine with PostgreSQL on 127.0.0.1:5432 and
//! nothing else. Secrets are [`SecretString`] and never printed; `maru check-config` shows
//! them masked. [`Settings::validate`] reports every problem at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Deployment environment. `production` refuses to start without a configured JWT key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub env: Environment,
    pub grpc: GrpcSettings,
    pub admin: AdminSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub idempotency: IdempotencySettings,
    pub rate_limit: RateLimitSettings,
    pub trials: TrialsSettings,
    pub registry: RegistrySettings,
    pub events: EventsSettings,
    pub feed: FeedSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// gRPC (HTTP/2) and gRPC-web (HTTP/1.1) listen address.
    pub listen: String,
    /// Largest accepted or sent message, bytes.
    pub max_message_bytes: usize,
    /// Upper bound for any RPC; a smaller client `grpc-timeout` wins.
    pub request_timeout_ms: u64,
    /// Origins allowed for gRPC-web CORS; `*` allows any.
    pub cors_allowed_origins: Vec<String>,
    /// After SIGTERM: time health stays NOT_SERVING before the listener closes.
    pub shutdown_grace_ms: u64,
    /// After the listener closes: the longest time in-flight RPCs may take to finish.
    pub drain_timeout_ms: u64,
    /// Record the per-RPC `grpc_server_*` metrics (off only to measure their cost).
    pub rpc_metrics: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// HTTP listen address for `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    #[serde(serialize_with = "masked_url")]
    pub url: SecretString,
    /// Create the database named in `url` when it does not exist.
    pub create_if_missing: bool,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Longest wait for a pooled connection before the RPC fails with UNAVAILABLE.
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    #[serde(serialize_with = "masked_url")]
    pub url: SecretString,
    pub pool_size: usize,
    /// Every key maru writes starts with this prefix.
    pub key_prefix: String,
    /// Longest time one Redis command may take before the cache is bypassed.
    pub command_timeout_ms: u64,
    /// How often an unreachable Redis is probed again.
    pub probe_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC key for access tokens and page tokens (≥ 32 bytes). Unset in development: random.
    #[serde(serialize_with = "masked_opt")]
    pub jwt_key: Option<SecretString>,
    /// File holding the key, used when `jwt_key` is unset.
    pub jwt_key_file: Option<PathBuf>,
    pub issuer: String,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
    /// Password hashes computed at once; the rest queue, so a sign-up storm cannot starve
    /// the async runtime. 0 = number of CPUs.
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive, e.g. `info,maru=debug`.
    pub level: String,
    /// `json` (default) or `pretty`.
    pub format: String,
    /// Loki base URL (e.g. `http://127.0.0.1:3100`); unset = stdout only.
    pub loki_url: Option<String>,
    /// Value of the `service_name` log label.
    pub service_name: String,
    /// One access line per RPC (health checks excluded).
    pub access_log: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencySettings {
    /// How long a `request_id` is remembered.
    pub ttl_s: u64,
}

/// One token bucket: a sustained rate and a burst.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSettings {
    pub per_minute: u32,
    pub burst: u32,
}

/// One bucket per rate class; each RPC's class is its `(maru.v1.policy)` in the proto.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketClasses {
    /// RATE_CLASS_AUTH: SignUp, Login, Refresh.
    pub auth: BucketSettings,
    /// RATE_CLASS_SENSITIVE: ChangePassword, DeleteAccount, admin-triggered jobs.
    pub sensitive: BucketSettings,
    /// RATE_CLASS_WRITE: every other call that changes state.
    pub write: BucketSettings,
    /// RATE_CLASS_READ: calls that only read.
    pub read: BucketSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// RPCs served at once; beyond that UNAVAILABLE `OVERLOADED` (load shedding).
    pub max_in_flight: usize,
    /// Peers whose `x-forwarded-for` / `x-real-ip` are believed (CIDRs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How often idle keys are dropped from the buckets.
    pub cleanup_interval_s: u64,
    pub buckets: BucketClasses,
    /// Per-method buckets, keyed by `package.Service/Method`. The names are checked against the
    /// server's methods when the server starts.
    pub methods: std::collections::BTreeMap<String, BucketSettings>,
}

impl Default for BucketClasses {
    fn default() -> Self {
        Self {
            auth: BucketSettings { per_minute: 30, burst: 10 },
            sensitive: BucketSettings { per_minute: 6, burst: 3 },
            write: BucketSettings { per_minute: 600, burst: 60 },
            read: BucketSettings { per_minute: 3000, burst: 300 },
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_in_flight: 1024,
            trusted_proxies: Vec::new(),
            cleanup_interval_s: 60,
            buckets: BucketClasses::default(),
            methods: Default::default(),
        }
    }
}

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
    fn validate(&self, errs: &mut Vec<String>) {
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
    fn validate(&self, errs: &mut Vec<String>) {
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

/// The feed: view counting and caching (docs/feed.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// How often pending post views are flushed from Redis to PostgreSQL (one replica at a time).
    pub view_flush_interval_s: u64,
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
            cache_enabled: true,
            post_cache_ttl_s: 300,
            page_cache_ttl_s: 60,
            profile_cache_ttl_s: 300,
        }
    }
}

impl FeedSettings {
    fn validate(&self, errs: &mut Vec<String>) {
        if !(1..=3600).contains(&self.view_flush_interval_s) {
            errs.push("feed.view_flush_interval_s: must be 1 to 3600".into());
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

fn masked_url<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(v.expose_secret()))
}

fn masked_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("********"),
        None => s.serialize_none(),
    }
}

/// Hides the password of a URL, keeping the rest readable.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "********".to_owned(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            env: Environment::Development,
            grpc: GrpcSettings::default(),
            admin: AdminSettings::default(),
            database: DatabaseSettings::default(),
            redis: RedisSettings::default(),
            auth: AuthSettings::default(),
            log: LogSettings::default(),
            idempotency: IdempotencySettings::default(),
            rate_limit: RateLimitSettings::default(),
            trials: TrialsSettings::default(),
            registry: RegistrySettings::default(),
            events: EventsSettings::default(),
            feed: FeedSettings::default(),
        }
    }
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 10_000,
            cors_allowed_origins: vec!["*".into()],
            shutdown_grace_ms: 0,
            drain_timeout_ms: 10_000,
            rpc_metrics: true,
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/maru"),
            create_if_missing: true,
            max_connections: 20,
            min_connections: 0,
            acquire_timeout_ms: 2_000,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("redis://127.0.0.1:6379"),
            pool_size: 16,
            key_prefix: "maru:".into(),
            command_timeout_ms: 250,
            probe_interval_ms: 2_000,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_key: None,
            jwt_key_file: None,
            issuer: "maru".into(),
            access_ttl_s: 15 * 60,
            refresh_ttl_s: 30 * 24 * 3600,
            max_concurrent_hashes: 0,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info,sqlx::postgres::notice=warn".into(),
            format: "json".into(),
            loki_url: None,
            service_name: "maru".into(),
            access_log: true,
        }
    }
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { ttl_s: 24 * 3600 }
    }
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

/// Every problem found in the settings, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl Settings {
    /// Defaults, then `file` (if given), then `MARU__SECTION__KEY` variables; validated.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigErrors> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigErrors(vec![format!("config file {} does not exist", file.display())]));
            }
            fig = fig.merge(Toml::file(file));
        }
        fig = fig.merge(Env::prefixed("MARU__").split("__"));
        let settings: Settings =
            fig.extract().map_err(|e| ConfigErrors(e.into_iter().map(|e| e.to_string()).collect()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every setting and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errs = Vec::new();
        for (name, addr) in [("grpc.listen", &self.grpc.listen), ("admin.listen", &self.admin.listen)] {
            if addr.parse::<SocketAddr>().is_err() {
                errs.push(format!("{name}: `{addr}` is not an address like 127.0.0.1:50051"));
            }
        }
        if self.grpc.max_message_bytes < 1024 {
            errs.push("grpc.max_message_bytes: must be at least 1024".into());
        }
        if self.grpc.request_timeout_ms == 0 {
            errs.push("grpc.request_timeout_ms: must be positive".into());
        }
        match url::Url::parse(self.database.url.expose_secret()) {
            Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
                if u.path().trim_start_matches('/').is_empty() {
                    errs.push("database.url: must name a database".into());
                }
            }
            _ => errs.push("database.url: must be a postgres:// URL".into()),
        }
        if self.database.max_connections == 0 {
            errs.push("database.max_connections: must be positive".into());
        }
        if self.database.min_connections > self.database.max_connections {
            errs.push("database.min_connections: must not exceed max_connections".into());
        }
        if self.database.acquire_timeout_ms == 0 {
            errs.push("database.acquire_timeout_ms: must be positive".into());
        }
        match url::Url::parse(self.redis.url.expose_secret()) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") => {}
            _ => errs.push("redis.url: must be a redis:// URL".into()),
        }
        if self.redis.pool_size == 0 {
            errs.push("redis.pool_size: must be positive".into());
        }
        if let Some(key) = &self.auth.jwt_key
            && key.expose_secret().len() < 32
        {
            errs.push("auth.jwt_key: must be at least 32 bytes".into());
        }
        if let Some(path) = &self.auth.jwt_key_file {
            match std::fs::read(path) {
                Ok(bytes) if bytes.trim_ascii().len() >= 32 => {}
                Ok(_) => errs.push(format!("auth.jwt_key_file: {} holds fewer than 32 bytes", path.display())),
                Err(e) => errs.push(format!("auth.jwt_key_file: cannot read {}: {e}", path.display())),
            }
        }
        if self.env == Environment::Production && self.auth.jwt_key.is_none() && self.auth.jwt_key_file.is_none() {
            errs.push("auth.jwt_key: required in production (MARU__AUTH__JWT_KEY or auth.jwt_key_file)".into());
        }
        if self.auth.access_ttl_s < 30 {
            errs.push("auth.access_ttl_s: must be at least 30".into());
        }
        if self.auth.refresh_ttl_s <= self.auth.access_ttl_s {
            errs.push("auth.refresh_ttl_s: must be longer than access_ttl_s".into());
        }
        if !matches!(self.log.format.as_str(), "json" | "pretty") {
            errs.push(format!("log.format: `{}` is not json or pretty", self.log.format));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errs.push(format!("log.level: `{}` is not a valid filter", self.log.level));
        }
        if let Some(loki) = &self.log.loki_url
            && url::Url::parse(loki).is_err()
        {
            errs.push(format!("log.loki_url: `{loki}` is not a URL"));
        }
        if self.rate_limit.max_in_flight == 0 {
            errs.push("rate_limit.max_in_flight: must be positive".into());
        }
        let b = &self.rate_limit.buckets;
        for (name, bucket) in [("auth", &b.auth), ("sensitive", &b.sensitive), ("write", &b.write), ("read", &b.read)]
            .into_iter()
            .chain(self.rate_limit.methods.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if bucket.per_minute == 0 || bucket.burst == 0 {
                errs.push(format!("rate_limit bucket {name}: per_minute and burst must be positive"));
            }
        }
        if self.idempotency.ttl_s < 60 {
            errs.push("idempotency.ttl_s: must be at least 60".into());
        }
        self.trials.validate(&mut errs);
        self.registry.validate(&mut errs);
        self.events.validate(&mut errs);
        self.feed.validate(&mut errs);
        if errs.is_empty() { Ok(()) } else { Err(ConfigErrors(errs)) }
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.listen.parse().expect("validated at startup")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.listen.parse().expect("validated at startup")
    }

    /// The effective settings as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        toml_like(&serde_json::to_value(self).unwrap_or_default())
    }
}

impl GrpcSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl TrialsSettings {
    fn validate(&self, errs: &mut Vec<String>) {
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
        if let Err(e) = crate::trials::schedule::Schedule::parse(&self.schedule, &self.time_zone) {
            errs.extend(e);
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// Renders the masked settings as `section.key = value` lines (readable, grep-able).
fn toml_like(v: &serde_json::Value) -> String {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&p, v, out);
                }
            }
            other => {
                let env = format!("MARU__{}", prefix.replace('.', "__").to_uppercase());
                out.push(format!("{prefix} = {other}    # {env}"));
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = Settings::default();
        s.grpc.listen = "nope".into();
        s.database.max_connections = 0;
        s.auth.jwt_key = Some(SecretString::from("short"));
        s.log.format = "xml".into();
        let errs = s.validate().unwrap_err().0;
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn trials_settings_are_checked() {
        let mut s = Settings::default();
        s.trials.schedule = "61 * * * *".into();
        s.trials.time_zone = "Mars/Olympus".into();
        s.trials.per_page = 0;
        s.trials.base_url = "ftp://x".into();
        let errs = s.validate().unwrap_err().0;
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs.iter().all(|e| e.starts_with("trials.")), "{errs:?}");
    }

    #[test]
    fn production_requires_a_key() {
        let s = Settings { env: Environment::Production, ..Default::default() };
        let errs = s.validate().unwrap_err().0;
        assert!(errs.iter().any(|e| e.starts_with("auth.jwt_key")), "{errs:?}");
    }

    #[test]
    fn masked_output_hides_secrets() {
        let mut s = Settings::default();
        s.database.url = SecretString::from("postgres://u:hunter2secret@db:5432/maru");
        s.auth.jwt_key = Some(SecretString::from("k".repeat(40)));
        s.trials.service_key = Some(SecretString::from("odcloud-service-key-secret"));
        s.registry.service_key = Some(SecretString::from("registry-service-key-secret"));
        s.events.geocoder_key = Some(SecretString::from("naver-geocoder-key-secret"));
        s.events.webhook_url = Some(SecretString::from("https://hooks.slack.com/services/T0/B0/webhook-secret"));
        let out = s.to_masked_toml();
        assert!(!out.contains("naver-geocoder-key-secret"), "{out}");
        assert!(!out.contains("webhook-secret"), "{out}");
        assert!(out.contains("MARU__EVENTS__GEOCODER_KEY"), "{out}");
        assert!(!out.contains("odcloud-service-key-secret"), "{out}");
        assert!(out.contains("MARU__TRIALS__SERVICE_KEY"), "{out}");
        assert!(!out.contains("registry-service-key-secret"), "{out}");
        assert!(out.contains("MARU__REGISTRY__SERVICE_KEY"), "{out}");
        assert!(!out.contains("hunter2secret"), "{out}");
        assert!(!out.contains(&"k".repeat(40)), "{out}");
        assert!(out.contains("MARU__DATABASE__URL"), "{out}");
    }
}
