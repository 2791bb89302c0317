//! Logs (JSON to stdout, plus Loki when configured) and the Prometheus recorder.
//!
//! Loki labels are only `service_name`, `env` and `level`; request id, rpc, code, latency and
//! user id travel in the JSON body. Loki delivery runs in a background task with a bounded
//! queue: when Loki is down, lines keep going to stdout and the Loki copies are dropped once
//! the queue is full; the server never blocks on it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Environment, Settings};

/// Latency buckets, 1 ms … 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Ingest run buckets, 100 ms … 30 min (a run pages through a remote API with retries).
pub const INGEST_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Views per call of the view batcher, 1 … 10,000 (`feed.view_batch_max`).
pub const VIEW_BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 10000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .with_recommended_naming(true)
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("maru_ingest_run_duration_seconds".into()), INGEST_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("maru_view_batch_size".into()), VIEW_BATCH_BUCKETS)
                })
                .and_then(|b| b.upkeep_timeout(Duration::from_secs(5)).install_recorder())
                .expect("the metrics recorder is installed once, at startup");
            describe();
            // Exemplars of sampled RPCs on this histogram's buckets (OpenMetrics scrapes).
            crate::traces::openmetrics::EXEMPLARS.set_buckets(LATENCY_BUCKETS);
            metrics::gauge!("maru_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread at startup");
            handle
        })
        .clone()
}

/// Gives every platform metric family its HELP line (`promtool check metrics` refuses families
/// without one); each domain describes its own through its own function, which the application
/// calls at start-up (a lower layer does not call up into the domains). A metric recorded
/// anywhere under `src/` without a description fails `describes_every_metric_recorded_in_src`.
pub fn describe() {
    describe_platform();
    crate::sessions::describe();
    crate::mail::describe();
}

fn describe_platform() {
    describe_counter!("grpc_server_started_total", "RPCs started on the server.");
    describe_counter!("grpc_server_handled_total", "RPCs completed on the server, by gRPC code.");
    describe_histogram!("grpc_server_handling_seconds", Unit::Seconds, "RPC latency until the status is sent.");
    describe_counter!("grpc_server_msg_received_total", "Request messages received.");
    describe_counter!("grpc_server_msg_sent_total", "Response messages sent.");
    describe_gauge!("maru_redis_up", "1 when Redis is reachable and in use, 0 when the cache is bypassed.");
    describe_histogram!("maru_redis_command_seconds", Unit::Seconds, "Redis command latency.");
    describe_counter!("maru_redis_errors_total", "Redis commands that failed or timed out.");
    describe_counter!("maru_cache_requests_total", "Cache lookups by cache and result (hit, miss, bypass).");
    describe_counter!("maru_unique_conflicts_total", "Unique-constraint conflicts by constraint.");
    describe_counter!(
        "maru_auth_events_total",
        "Account events other than logins and registrations (logout, change_password, revoke_session, logout_all), by outcome."
    );
    describe_counter!(
        "maru_logins_total",
        "Credential exchanges by method (password, refresh, guest; github, google, oidc for identity providers) and outcome (ok, bad_credentials, suspended, rate_limited, reused, revoked, invalid, disabled; state_invalid, refused, provider_unavailable, registration_required, link_required)."
    );
    describe_counter!(
        "maru_registrations_total",
        "Accounts created, by method (password, guest_conversion; github, google, oidc)."
    );
    describe_gauge!(
        "maru_guests_active",
        "Guest accounts whose visit has not ended (set from the database every guests.cleanup_check_s)."
    );
    describe_counter!("maru_guests_started_total", "Guest visits started (StartGuestSession).");
    describe_counter!("maru_guests_converted_total", "Guests turned into accounts (ConvertGuest).");
    describe_counter!("maru_guests_deleted_total", "Expired guests deleted by the nightly clean-up.");
    describe_counter!("maru_guest_refusals_total", "Calls of guests refused with GUEST_READ_ONLY.");
    describe_counter!(
        "maru_external_login_failures_total",
        "External logins refused, by provider (the configured name) and reason (state_invalid, provider_unavailable, code, token, signature, issuer, audience, expiry, nonce, algorithm, format, subject)."
    );
    describe_counter!(
        "maru_jwks_refreshes_total",
        "JWKS fetches of OIDC providers by provider and outcome (ok, failed, rate_limited: an unknown key id within identity.jwks_min_refetch_s of the last fetch)."
    );
    describe_counter!("maru_auth_token_checks_total", "Bearer tokens checked by outcome.");
    describe_counter!(
        "maru_sessions_evicted_total",
        "Sessions revoked because a login went beyond the per-user limit."
    );
    describe_counter!("maru_auth_keyring_reloads_total", "Keyring file reloads by outcome (ok, error).");
    describe_gauge!("maru_auth_keys", "Keys in the signing keyring (the first signs, all verify).");
    describe_histogram!("maru_password_hash_seconds", Unit::Seconds, "Argon2 hash/verify time.");
    describe_histogram!("maru_password_hash_wait_seconds", Unit::Seconds, "Time queued for a hashing slot.");
    describe_counter!("maru_idempotent_replays_total", "Creates answered from a stored request_id result.");
    describe_gauge!("maru_db_pool_connections", "Database pool connections by state (idle, in_use, max).");
    describe_counter!("maru_db_pool_acquire_timeouts_total", "RPCs refused because no pooled connection came in time.");
    describe_histogram!("maru_db_pool_acquire_seconds", Unit::Seconds, "Time to get a pooled database connection.");
    describe_counter!("maru_db_slow_queries_total", "Statements slower than 500 ms.");
    describe_counter!("maru_rate_limit_decisions_total", "Rate-limit decisions by bucket (allowed, rejected).");
    describe_gauge!("maru_rate_limit_keys", "Keys (users or client IPs) tracked by the rate limiter.");
    describe_gauge!(
        "maru_inflight_requests",
        "RPCs in flight until their response is taken by the client (health and reflection excluded)."
    );
    describe_counter!("maru_load_shed_total", "RPCs refused with UNAVAILABLE because the in-flight limit was reached.");
    describe_counter!(
        "maru_stream_limit_rejections_total",
        "Health/Watch and reflection streams refused because their client address had too many open."
    );
    describe_gauge!("maru_grpc_connections", "Open connections of the gRPC listener.");
    describe_counter!("maru_expensive_reads_total", "Expensive reads (post searches, trial listings) started.");
    describe_counter!(
        "maru_expensive_reads_refused_total",
        "Expensive reads refused with CAPACITY_EXCEEDED because their share of the pool was in use."
    );
    describe_counter!(
        "maru_expensive_reads_cancelled_total",
        "Expensive reads abandoned by their RPC and cancelled in PostgreSQL."
    );
    describe_counter!(
        "maru_grpc_connections_total",
        "Connections to the gRPC listener by outcome (accepted, rejected_address_limit, accept_error)."
    );
    describe_counter!(
        "maru_grpc_connections_closed_total",
        "Connections closed by the server by reason (handshake_timeout, send_timeout)."
    );
    describe_gauge!("maru_grpc_responses_unsent", "Unary responses produced but not yet taken by their client.");
    describe_gauge!("maru_ready", "1 once the database is reachable and migrated.");
    describe_gauge!(
        "maru_database_up",
        "1 while the database answers the readiness probe (its own connection), 0 during an outage (health NOT_SERVING)."
    );
    describe_counter!(
        "maru_db_connections_lost_total",
        "Queries that failed because their database connection was lost (terminated backend, restart); answered UNAVAILABLE."
    );
    describe_counter!(
        "maru_db_commit_outcome_resolved_total",
        "COMMITs whose connection broke, by what txid_status then said (committed: answered OK; aborted: UNAVAILABLE; unknown: DEADLINE_EXCEEDED)."
    );
    describe_gauge!("maru_build_info", "Build information.");
    describe_counter!("maru_ingest_runs_total", "Ingest runs by source and result (succeeded, failed, skipped).");
    describe_counter!(
        "maru_ingest_rows_total",
        "Rows of successful ingest runs by outcome (created, updated, unchanged, failed)."
    );
    describe_gauge!(
        "maru_ingest_last_success_timestamp_seconds",
        Unit::Seconds,
        "Unix time the last successful ingest run of the source finished (from the database, on every replica)."
    );
    describe_histogram!("maru_ingest_run_duration_seconds", Unit::Seconds, "Ingest run duration, fetch and write.");
    describe_gauge!(
        "maru_community_memberships",
        "Community memberships by status, all communities (from the database every 30 s, on every replica)."
    );
    describe_counter!(
        "maru_membership_decisions_total",
        "Membership requests decided by managers (approved, rejected)."
    );
    describe_gauge!(
        "maru_complaints",
        "Community complaints by status, all communities (from the database every 30 s, on every replica)."
    );
    describe_counter!(
        "maru_complaint_transitions_total",
        "Complaint status changes by target status (filing = received)."
    );
    describe_counter!("maru_poll_votes_total", "Poll votes counted.");
    describe_counter!(
        "maru_trace_tail_kept_total",
        "Traces the sample ratio dropped but kept because their root span failed or was slow (trace.keep_errors, trace.slow_threshold_ms)."
    );
    describe_counter!(
        "maru_trace_held_spans_dropped_total",
        "Spans of undecided traces dropped because too many were held (their traces can no longer be kept)."
    );
}

/// Turns sqlx's own events into metrics: every pool acquire (`sqlx::pool::acquire`, emitted at
/// TRACE with `acquired_after_secs`) feeds `maru_db_pool_acquire_seconds`, and every slow
/// statement (`sqlx::query` at WARN, over 500 ms) counts in `maru_db_slow_queries_total`.
/// It has its own filter, so it works whatever the log level.
pub fn sqlx_metrics_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::Targets;
    SqlxMetrics.with_filter(
        Targets::new()
            .with_target("sqlx::pool::acquire", tracing::Level::TRACE)
            .with_target("sqlx::query", tracing::Level::WARN),
    )
}

struct SqlxMetrics;

impl<S: tracing::Subscriber> Layer<S> for SqlxMetrics {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        struct Secs(Option<f64>);
        impl tracing::field::Visit for Secs {
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "acquired_after_secs" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let meta = event.metadata();
        if meta.target() == "sqlx::pool::acquire" {
            let mut secs = Secs(None);
            event.record(&mut secs);
            if let Some(v) = secs.0 {
                metrics::histogram!("maru_db_pool_acquire_seconds").record(v);
            }
        } else if meta.target() == "sqlx::query" && *meta.level() <= tracing::Level::WARN {
            metrics::counter!("maru_db_slow_queries_total").increment(1);
        }
    }
}

/// The JSON log layer (one object per line, span fields included) writing to `writer`. When
/// the line belongs to a traced span (`crate::traces`), it also carries `trace_id` and
/// `span_id`, the ids the trace backend shows.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let dispatch = crate::traces::SharedDispatch::default();
    let json =
        tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(true).with_span_list(false);
    tracing_subscriber::fmt::layer()
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(TraceIds { inner: json, dispatch: dispatch.clone() })
        .with_writer(writer)
        .and_then(crate::traces::DispatchSlot(dispatch))
}

/// A JSON line formatter that appends `"trace_id"` and `"span_id"` of the event's span.
struct TraceIds<F> {
    inner: F,
    dispatch: crate::traces::SharedDispatch,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for TraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.event_scope().and_then(|mut scope| scope.next()).map(|span| span.id()).and_then(|id| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            crate::traces::ids_of(&id, &dispatch)
        });
        let Some((trace_id, span_id)) = ids else { return self.inner.format_event(ctx, writer, event) };
        let mut line = String::new();
        self.inner.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        match line.trim_end_matches('\n').strip_suffix('}') {
            Some(open) => writeln!(writer, r#"{open},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#),
            None => writer.write_str(&line),
        }
    }
}

/// The Loki layer: labels `service_name` and `env` (tracing-loki adds `level`), nothing else;
/// everything per-request travels in the line. Returns the task that ships the batches.
pub fn loki_layer(
    settings: &Settings,
    url: &str,
) -> anyhow::Result<(tracing_loki::Layer, tracing_loki::BackgroundTask)> {
    let env = match settings.env {
        Environment::Development => "development",
        Environment::Production => "production",
    };
    Ok(tracing_loki::builder()
        .label("service_name", &settings.log.service_name)?
        .label("env", env)?
        .build_url(url::Url::parse(url)?)?)
}

/// Installs the global subscriber. Returns the Loki task to spawn, if Loki is configured.
pub fn init_logging(settings: &Settings) -> anyhow::Result<Option<tracing_loki::BackgroundTask>> {
    let filter = EnvFilter::try_new(&settings.log.level)?;
    let stdout = if settings.log.format == "pretty" {
        tracing_subscriber::fmt::layer().with_target(true).boxed()
    } else {
        json_layer(std::io::stdout).boxed()
    };
    let (loki, task) = match &settings.log.loki_url {
        Some(url) => {
            let (layer, task) = loki_layer(settings, url)?;
            (Some(layer), Some(task))
        }
        None => (None, None),
    };
    // Traces, when `trace.otlp_endpoint` is set (`crate::traces`).
    let provider = crate::traces::provider(settings)?;
    tracing_subscriber::registry()
        .with(stdout.with_filter(filter.clone()))
        .with(loki.map(|l| l.with_filter(filter)))
        .with(sqlx_metrics_layer())
        .with(crate::traces::layer_if(provider.as_ref()))
        .try_init()?;
    if let Some(provider) = provider {
        crate::traces::install(provider);
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::sync::Arc;

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use parking_lot::Mutex;

    /// Remembers the described names; records nothing.
    #[derive(Default)]
    struct Descriptions(Arc<Mutex<BTreeSet<String>>>);

    impl Recorder for Descriptions {
        fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().insert(key.as_str().to_owned());
        }
        fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().insert(key.as_str().to_owned());
        }
        fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
            self.0.lock().insert(key.as_str().to_owned());
        }
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// Names given as a string literal to `counter!`, `gauge!` or `histogram!` in `dir`.
    fn recorded_names(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                recorded_names(&path, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    if text[..at].ends_with("describe_") {
                        continue;
                    }
                    let rest = text[at + macro_name.len()..].trim_start();
                    let Some(lit) = rest.strip_prefix('"') else { continue };
                    let name = &lit[..lit.find('"').unwrap_or(0)];
                    if name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    {
                        out.insert(name.to_owned());
                    }
                }
            }
        }
    }

    #[test]
    fn describes_every_metric_recorded_in_src() {
        let recorder = Descriptions::default();
        let described = recorder.0.clone();
        metrics::with_local_recorder(&recorder, || {
            super::describe();
            crate::app::describe_domain_metrics();
        });
        let described = described.lock().clone();
        let mut recorded = BTreeSet::new();
        recorded_names(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut recorded);
        assert!(recorded.len() > 40, "the scan found only {recorded:?}");
        let missing: Vec<&String> = recorded.difference(&described).collect();
        assert!(missing.is_empty(), "metrics without a description (add them to a describe function): {missing:?}");
    }
}
