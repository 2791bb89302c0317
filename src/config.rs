//! Typed settings: built-in defaults → optional TOML file → `MARU__SECTION__KEY` environment.
//!
//! Every setting has a default that works on a machine with PostgreSQL on 127.0.0.1:5432 and
//! nothing else. Secrets are [`SecretString`] and never printed; `maru check-config` shows
//! them masked. [`Settings::load`] reports every problem at once: values of the wrong type
//! first (all of them), then every rule [`Settings::validate`] finds.
//!
//! This module holds the platform's sections and assembles the settings; each domain owns its
//! own section and its validation (`trials`, `registry` (communities), `events`, `feed`, `teams`:
//! `src/<domain>/config.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::accounts::config::GuestSettings;
use crate::chat::config::ChatSettings;
use crate::communities::config::RegistrySettings;
use crate::events::config::EventsSettings;
use crate::feed::config::FeedSettings;
use crate::identity::config::IdentitySettings;
use crate::market::config::MarketSettings;
use crate::media::config::MediaSettings;
use crate::reports::config::ReportsSettings;
use crate::secrets::{masked_opt, masked_url};
use crate::teams::config::TeamsSettings;
use crate::trials::config::TrialsSettings;

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
    pub teams: TeamsSettings,
    pub market: MarketSettings,
    pub reports: ReportsSettings,
    pub chat: ChatSettings,
    pub mail: MailSettings,
    pub guests: GuestSettings,
    pub media: MediaSettings,
    pub identity: IdentitySettings,
    pub web: WebSettings,
    pub trace: TraceSettings,
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
    /// After SIGTERM: time health stays NOT_SERVING (and `/readyz` 503) before the listener
    /// closes, so balancers stop sending first. Set it to at least the balancer's health-check
    /// interval times its unhealthy threshold.
    pub shutdown_grace_ms: u64,
    /// After the listener closes: the longest time in-flight RPCs may take to finish.
    pub drain_timeout_ms: u64,
    /// Record the per-RPC `grpc_server_*` metrics (off only to measure their cost).
    pub rpc_metrics: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients: streams per connection.
    pub max_concurrent_streams: u32,
    /// Open connections per client address (IPv6 per /64); `rate_limit.trusted_proxies` are
    /// exempt. 0: no cap.
    pub max_connections_per_address: usize,
    /// A connection that has not sent its HTTP/2 preface (or HTTP/1.1 request head) by then is
    /// closed.
    pub handshake_timeout_ms: u64,
    /// HTTP/2 PING interval on every connection (0: none); a peer that does not answer within
    /// `http2_keepalive_timeout_ms` is disconnected.
    pub http2_keepalive_interval_ms: u64,
    pub http2_keepalive_timeout_ms: u64,
    /// TCP keepalive idle time, seconds (0: off).
    pub tcp_keepalive_s: u64,
    /// Longest time a unary response may wait for its client to take it (HTTP/2 flow control);
    /// then its connection is closed.
    pub response_send_timeout_ms: u64,
    /// Health/Watch and reflection streams open at once per client address; beyond that
    /// RESOURCE_EXHAUSTED `CAPACITY_EXCEEDED`. 0: no cap.
    pub max_streams_per_address: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// HTTP listen address for `/metrics`, `/healthz` and `/readyz`.
    pub listen: String,
}

/// The reference web app (`web/`), served as static files under `/app/` on the gRPC listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// Serve `web.dir` under `/app/` (on by default: the README's first command gives the UI
    /// once the app is built; until then `/app/` says how to build it).
    pub enabled: bool,
    /// The built app (`npm run build` in `web/` writes `web/dist`); relative to the working
    /// directory.
    pub dir: String,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self { enabled: true, dir: "web/dist".into() }
    }
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
    /// How often the database is probed (on a connection of its own, outside the pool) once the
    /// server is ready: health NOT_SERVING and `/readyz` 503 while it does not answer.
    pub probe_interval_ms: u64,
    /// Pooled connections expensive reads (post search) may hold at once; more are refused
    /// with RESOURCE_EXHAUSTED `CAPACITY_EXCEEDED`. At most `max_connections`.
    pub max_expensive_reads: usize,
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
    /// Keyring file (`<kid> <key>` per line, the first signs, all verify), used before
    /// `jwt_key` and `jwt_key_file`; re-read when it changes (`crate::keyring`).
    pub jwt_keyring_file: Option<PathBuf>,
    /// How often the keyring file is checked for changes.
    pub keyring_reload_s: u64,
    pub issuer: String,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
    /// Password hashes computed at once; the rest queue, so a sign-up storm cannot starve
    /// the async runtime. 0 = number of CPUs.
    pub max_concurrent_hashes: usize,
    /// Longest time a session's cached state (live, account active, role) is trusted without an
    /// invalidation; every write that ends a session or changes a role invalidates it at once.
    pub session_cache_ttl_s: u64,
    /// Live sessions (signed-in devices) per user; a login beyond it revokes the oldest.
    pub max_sessions_per_user: u32,
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

/// Distributed traces (OpenTelemetry, exported over OTLP/gRPC); see `crate::traces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSettings {
    /// OTLP/gRPC collector endpoint (e.g. `http://127.0.0.1:4317`); unset = no traces at all.
    pub otlp_endpoint: Option<String>,
    /// Share of new traces kept (0.0 … 1.0), decided on the trace id; a sampled `traceparent`
    /// of a trusted proxy is always followed.
    pub sample_ratio: f64,
    /// Traces whose root span (an RPC, a job run) lasts at least this long are kept whatever
    /// the ratio; 0 = off.
    pub slow_threshold_ms: u64,
    /// Traces whose root span ends in an error are kept whatever the ratio.
    pub keep_errors: bool,
    /// Longest wait for one export to the collector.
    pub export_timeout_ms: u64,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 0.1,
            slow_threshold_ms: 1000,
            keep_errors: true,
            export_timeout_ms: 5000,
        }
    }
}

impl TraceSettings {
    /// Whether a trace the ratio dropped is still recorded, to be kept if it turns out slow or
    /// failed (costs the recording of every span; see `crate::traces`).
    pub fn tail_keep(&self) -> bool {
        self.keep_errors || self.slow_threshold_ms > 0
    }

    fn validate(&self, errs: &mut Vec<String>) {
        if let Some(endpoint) = &self.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => errs.push(format!("trace.otlp_endpoint: `{endpoint}` is not an http(s):// URL")),
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            errs.push("trace.sample_ratio: must be between 0.0 and 1.0".into());
        }
        if self.export_timeout_ms == 0 {
            errs.push("trace.export_timeout_ms: must be positive".into());
        }
    }
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
            teams: TeamsSettings::default(),
            market: MarketSettings::default(),
            reports: ReportsSettings::default(),
            chat: ChatSettings::default(),
            mail: MailSettings::default(),
            guests: GuestSettings::default(),
            media: MediaSettings::default(),
            identity: IdentitySettings::default(),
            web: WebSettings::default(),
            trace: TraceSettings::default(),
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
            shutdown_grace_ms: 5_000,
            drain_timeout_ms: 10_000,
            rpc_metrics: true,
            max_concurrent_streams: 100,
            max_connections_per_address: 64,
            handshake_timeout_ms: 10_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
            tcp_keepalive_s: 60,
            response_send_timeout_ms: 30_000,
            max_streams_per_address: 16,
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
            probe_interval_ms: 1_000,
            max_expensive_reads: 5,
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
            jwt_keyring_file: None,
            keyring_reload_s: 10,
            issuer: "maru".into(),
            access_ttl_s: 15 * 60,
            refresh_ttl_s: 30 * 24 * 3600,
            max_concurrent_hashes: 0,
            session_cache_ttl_s: 60,
            max_sessions_per_user: 10,
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

/// Every problem found in the settings, reported together.
/// Email (`[mail]`, `MARU__MAIL__…`): the SMTP outbox, verification codes and password reset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// `smtps://host:465` (TLS), `smtp://host:587?tls=required` (STARTTLS), `smtp://host:port`
    /// (unencrypted: a local relay or the test sink); `user:password@` in the URL when the relay
    /// wants them. Unset: mail
    /// is kept in the outbox and not sent (a warning at start-up). Secret (may hold a password):
    /// set `MARU__MAIL__SMTP_URL`.
    #[serde(serialize_with = "masked_opt")]
    pub smtp_url: Option<SecretString>,
    /// The `From` of every mail, `Name <address>` or `address`.
    pub from: String,
    /// Mails one replica sends per poll at most.
    pub batch_size: u32,
    /// How often each replica looks for mail to send.
    pub poll_interval_ms: u64,
    /// Delivery attempts before a mail is given up (kept in the outbox with its last error).
    pub max_attempts: i32,
    /// First retry delay; doubles with each attempt (plus up to as much again in jitter), at
    /// most one hour.
    pub backoff_ms: u64,
    /// Longest time one SMTP delivery may take.
    pub timeout_ms: u64,
    /// Lifetime of an email verification code.
    pub code_ttl_s: u64,
    /// Wrong codes accepted before the code is dead and a new one is needed.
    pub code_max_attempts: i32,
    /// Lifetime of a password reset token.
    pub reset_ttl_s: u64,
    /// Link put in the reset mail, `{token}` replaced by the token; empty: the mail gives the
    /// token alone.
    pub reset_url: String,
    /// The window of the send limits below.
    pub limit_window_s: u64,
    /// Codes and reset mails requested for one address per window.
    pub max_per_address: i32,
    /// Codes requested by one account per window.
    pub max_per_account: i32,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "maru <no-reply@localhost>".into(),
            batch_size: 50,
            poll_interval_ms: 1_000,
            max_attempts: 10,
            backoff_ms: 5_000,
            timeout_ms: 10_000,
            code_ttl_s: 300,
            code_max_attempts: 5,
            reset_ttl_s: 1_800,
            reset_url: String::new(),
            limit_window_s: 3_600,
            max_per_address: 5,
            max_per_account: 5,
        }
    }
}

impl MailSettings {
    /// Appends every problem of this section to `errs` (see `Settings::validate`).
    pub fn validate(&self, errs: &mut Vec<String>) {
        if let Some(url) = &self.smtp_url
            && !url::Url::parse(url.expose_secret()).is_ok_and(|u| matches!(u.scheme(), "smtp" | "smtps"))
        {
            errs.push("mail.smtp_url: must be an smtp:// or smtps:// URL".into());
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            errs.push(format!("mail.from: `{}` is not an address like `maru <no-reply@example.com>`", self.from));
        }
        for (name, v) in [
            ("mail.batch_size", u64::from(self.batch_size)),
            ("mail.poll_interval_ms", self.poll_interval_ms),
            ("mail.timeout_ms", self.timeout_ms),
            ("mail.code_ttl_s", self.code_ttl_s),
            ("mail.reset_ttl_s", self.reset_ttl_s),
            ("mail.limit_window_s", self.limit_window_s),
        ] {
            if v == 0 {
                errs.push(format!("{name}: must be positive"));
            }
        }
        for (name, v) in [
            ("mail.max_attempts", self.max_attempts),
            ("mail.code_max_attempts", self.code_max_attempts),
            ("mail.max_per_address", self.max_per_address),
            ("mail.max_per_account", self.max_per_account),
        ] {
            if v < 1 {
                errs.push(format!("{name}: must be at least 1"));
            }
        }
        if !self.reset_url.is_empty() && !self.reset_url.contains("{token}") {
            errs.push("mail.reset_url: must contain `{token}`".into());
        }
    }
}

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
        let settings = Self::extract(&fig)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings `fig` holds, or every value of the wrong type (or unknown) in it.
    ///
    /// Deserialization stops at the first bad value, so after a failure each setting the
    /// providers set (`section.key`, or a top-level key) is tried alone on top of the defaults,
    /// and the errors of all of them are reported, each naming where its value came from
    /// (`database.max_connections: invalid type: … (MARU__DATABASE__MAX_CONNECTIONS)`).
    pub fn extract(fig: &Figment) -> Result<Self, ConfigErrors> {
        let first = match fig.extract::<Settings>() {
            Ok(settings) => return Ok(settings),
            Err(e) => e,
        };
        let mut errs = Vec::new();
        for (key, value) in provided_keys(fig) {
            let alone =
                Figment::from(Serialized::defaults(Settings::default())).merge(Serialized::global(&key, &value));
            if let Err(e) = alone.extract::<Settings>() {
                errs.extend(e.into_iter().map(|e| format!("{key}: {} ({})", e.kind, origin(fig, &key))));
            }
        }
        if errs.is_empty() {
            errs = first.into_iter().map(|e| e.to_string()).collect();
        }
        Err(ConfigErrors(errs))
    }

    /// Settings that are valid but probably not meant: logged at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.env == Environment::Production && self.grpc.cors_allowed_origins.iter().any(|o| o == "*") {
            warnings.push(
                "grpc.cors_allowed_origins: `*` lets any web site call maru from its visitors' browsers; \
                 list your frontends' origins in production"
                    .to_owned(),
            );
        }
        if self.mail.smtp_url.is_none() {
            warnings.push(
                "mail.smtp_url is not set: verification codes and password reset mails are kept in the \
                 outbox and not sent (set MARU__MAIL__SMTP_URL, e.g. smtp://127.0.0.1:2525)"
                    .to_owned(),
            );
        }
        warnings
    }

    /// How many pooled connections expensive reads may hold: `database.max_expensive_reads`, at
    /// most the whole pool.
    pub fn expensive_reads(&self) -> usize {
        self.database.max_expensive_reads.min(self.database.max_connections as usize).max(1)
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
        for origin in &self.grpc.cors_allowed_origins {
            if let Err(why) = check_cors_origin(origin) {
                errs.push(format!("grpc.cors_allowed_origins: `{origin}` {why}"));
            }
        }
        if self.grpc.request_timeout_ms == 0 {
            errs.push("grpc.request_timeout_ms: must be positive".into());
        }
        // More than the pool is allowed (a small pool keeps the default): the bulkhead is then
        // the whole pool (`Settings::expensive_reads`).
        if self.database.max_expensive_reads == 0 {
            errs.push("database.max_expensive_reads: must be at least 1".into());
        }
        for (name, v) in [
            ("grpc.max_concurrent_streams", u64::from(self.grpc.max_concurrent_streams)),
            ("grpc.handshake_timeout_ms", self.grpc.handshake_timeout_ms),
            ("grpc.http2_keepalive_timeout_ms", self.grpc.http2_keepalive_timeout_ms),
            ("grpc.response_send_timeout_ms", self.grpc.response_send_timeout_ms),
        ] {
            if v == 0 {
                errs.push(format!("{name}: must be positive"));
            }
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
        // Its contents are checked when the keyring is built (`crate::keyring`): a file that does
        // not parse stops the start-up with the line at fault.
        if let Some(path) = &self.auth.jwt_keyring_file
            && let Err(e) = std::fs::read_to_string(path)
        {
            errs.push(format!("auth.jwt_keyring_file: cannot read {}: {e}", path.display()));
        }
        if !(1..=3600).contains(&self.auth.keyring_reload_s) {
            errs.push("auth.keyring_reload_s: must be between 1 and 3600".into());
        }
        if self.env == Environment::Production
            && self.auth.jwt_key.is_none()
            && self.auth.jwt_key_file.is_none()
            && self.auth.jwt_keyring_file.is_none()
        {
            errs.push("auth.jwt_key: required in production (MARU__AUTH__JWT_KEY or auth.jwt_key_file)".into());
        }
        if self.auth.access_ttl_s < 30 {
            errs.push("auth.access_ttl_s: must be at least 30".into());
        }
        if !(1..=1000).contains(&self.auth.max_sessions_per_user) {
            errs.push("auth.max_sessions_per_user: must be between 1 and 1000".into());
        }
        if !(1..=3600).contains(&self.auth.session_cache_ttl_s) {
            errs.push("auth.session_cache_ttl_s: must be between 1 and 3600".into());
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
        self.teams.validate(&mut errs);
        self.market.validate(&mut errs);
        self.reports.validate(&mut errs);
        self.chat.validate(&mut errs);
        self.mail.validate(&mut errs);
        self.guests.validate(&mut errs);
        self.media.validate(&mut errs);
        self.identity.validate(&mut errs);
        if self.web.enabled && self.web.dir.trim().is_empty() {
            errs.push("web.dir: must not be empty when web.enabled".into());
        }
        self.trace.validate(&mut errs);
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

/// Every key the providers of `fig` set, down to one level inside a section (a section's
/// field; map-valued fields such as `rate_limit.methods` as a whole), with its merged value.
fn provided_keys(fig: &Figment) -> Vec<(String, figment::value::Value)> {
    let mut out = Vec::new();
    let Ok(figment::value::Value::Dict(_, top)) = fig.find_value("") else {
        return out;
    };
    for (section, value) in top {
        match value {
            figment::value::Value::Dict(_, fields) => {
                out.extend(fields.into_iter().map(|(k, v)| (format!("{section}.{k}"), v)));
            }
            other => out.push((section, other)),
        }
    }
    out
}

/// Where the value of `key` came from: its environment variable, or the file.
fn origin(fig: &Figment, key: &str) -> String {
    match fig.find_metadata(key) {
        Some(md) if md.name.contains("environment variable") => {
            format!("MARU__{}", key.replace('.', "__").to_uppercase())
        }
        Some(md) => match &md.source {
            Some(source) => format!("{} {source}", md.name),
            None => md.name.to_string(),
        },
        None => "unknown source".to_owned(),
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

/// An allowed CORS origin is `*` or exactly what a browser sends in `Origin`:
/// `scheme://host[:port]`, without a path, query or trailing slash (which would never match).
fn check_cors_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" {
        return Ok(());
    }
    let Ok(url) = url::Url::parse(origin) else {
        return Err("is not an origin like https://app.example.com");
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("is not an http(s) origin like https://app.example.com");
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err("must be scheme://host[:port] only");
    }
    if origin.ends_with('/') || url.path() != "/" {
        return Err("must not have a path or a trailing slash (browsers send scheme://host[:port])");
    }
    // Browsers send the origin's ASCII serialization: lower-case host, no default port.
    if url.origin().ascii_serialization() != origin {
        return Err("is not written as browsers send it (lower-case host, no default port)");
    }
    Ok(())
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
    fn every_value_of_the_wrong_type_is_reported_at_once() {
        let file = "env = 'prod'\nbogus = 1\n[database]\nmax_connections = 'abc'\nmin_connections = 'x'\n\
                    [grpc]\nrequest_timeout_ms = 'x'\n[feed]\ncache_enabled = true\n";
        let fig = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(file));
        let errs = Settings::extract(&fig).unwrap_err().0;
        assert_eq!(errs.len(), 5, "{errs:#?}");
        for (key, what) in [
            ("env", "unknown variant: found `prod`"),
            ("bogus", "unknown field: found `bogus`"),
            ("database.max_connections", "found string \"abc\""),
            ("database.min_connections", "found string \"x\""),
            ("grpc.request_timeout_ms", "found string \"x\""),
        ] {
            let named = |e: &&String| e.starts_with(&format!("{key}: ")) && e.contains(what) && e.contains("TOML");
            assert!(errs.iter().any(|e| named(&e)), "{key}: {errs:#?}");
        }
        // Good values next to bad ones are not reported; without bad ones the settings load.
        let fig = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string("[database]\nmax_connections = 7\n[feed]\ncache_enabled = false\n"));
        let s = Settings::extract(&fig).unwrap();
        assert_eq!((s.database.max_connections, s.feed.cache_enabled), (7, false));
    }

    #[test]
    fn cors_origins_are_checked() {
        let mut s = Settings::default();
        s.grpc.cors_allowed_origins = vec![
            "https://app.example.com".into(),
            "http://localhost:5173".into(),
            "*".into(),
            "https://app.example.com/".into(),
            "https://app.example.com/path".into(),
            "app.example.com".into(),
            "ftp://app.example.com".into(),
            "https://App.Example.com".into(),
            "https://app.example.com:443".into(),
        ];
        let errs = s.validate().unwrap_err().0;
        let cors: Vec<_> = errs.iter().filter(|e| e.starts_with("grpc.cors_allowed_origins")).collect();
        assert_eq!(cors.len(), 6, "{cors:#?}");
        assert!(cors[0].contains("`https://app.example.com/`") && cors[0].contains("trailing slash"), "{}", cors[0]);
        for ok in ["`https://app.example.com`", "`http://localhost:5173`", "`*`"] {
            assert!(!cors.iter().any(|e| e.contains(ok)), "{ok} is valid");
        }
    }

    #[test]
    fn a_small_pool_caps_the_expensive_reads() {
        let mut s = Settings::default();
        assert_eq!(s.expensive_reads(), 5);
        s.database.max_connections = 3;
        s.validate().expect("a pool smaller than the default bulkhead is valid");
        assert_eq!(s.expensive_reads(), 3);
        s.database.max_expensive_reads = 0;
        assert!(s.validate().unwrap_err().0.iter().any(|e| e.starts_with("database.max_expensive_reads")));
    }

    #[test]
    fn a_wildcard_origin_in_production_is_warned_about() {
        let mut s = Settings::default();
        s.mail.smtp_url = Some(SecretString::from("smtp://127.0.0.1:2525"));
        assert!(s.warnings().is_empty());
        s.env = Environment::Production;
        assert_eq!(s.grpc.cors_allowed_origins, vec!["*".to_owned()]);
        assert!(s.warnings().iter().any(|w| w.starts_with("grpc.cors_allowed_origins")));
        s.grpc.cors_allowed_origins = vec!["https://app.example.com".into()];
        assert!(s.warnings().is_empty());
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

    #[test]
    fn mail_settings_are_checked_and_no_smtp_url_is_warned_about() {
        let mut s = Settings::default();
        assert!(s.warnings().iter().any(|w| w.starts_with("mail.smtp_url is not set")));
        s.mail.smtp_url = Some(SecretString::from("http://x"));
        s.mail.from = "not an address".into();
        s.mail.code_max_attempts = 0;
        s.mail.reset_url = "https://app.example.com/reset".into();
        s.mail.poll_interval_ms = 0;
        let errs = s.validate().unwrap_err().0;
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().all(|e| e.starts_with("mail.")), "{errs:?}");
        s.mail = MailSettings {
            smtp_url: Some(SecretString::from("smtp://user:pw@127.0.0.1:2525")),
            reset_url: "https://app.example.com/reset?token={token}".into(),
            ..Default::default()
        };
        s.validate().unwrap();
        assert!(s.warnings().is_empty());
    }
}
