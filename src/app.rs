//! The application: the gRPC server with its layers, the admin HTTP server, readiness,
//! background jobs and graceful shutdown. The state ops share is [`crate::state`].
//!
//! Start-up: both listeners bind at once; health is NOT_SERVING (and `/readyz` 503) until the
//! database is reachable, created if missing and migrated; afterwards a monitor probes the
//! database and reports NOT_SERVING (and `/readyz` 503) while it does not answer. Shutdown (SIGTERM, SIGINT or
//! [`ShutdownHandle::shutdown`]): health flips to NOT_SERVING first, the listener stays open
//! for `grpc.shutdown_grace_ms` (default 5 s) so balancers notice, then in-flight RPCs get at
//! most `grpc.drain_timeout_ms` to finish. The admin port (`/readyz` 503, `/metrics`) stays up
//! until that drain is over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use http::{HeaderName, Method};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::grpc::admission::{Admission, AdmissionLayer};
use crate::grpc::connections::{ConnectionLimits, Connections, expose_connect_info};
use crate::grpc::layer::{RpcLayer, RpcLayerConfig, mark_protocol};
use crate::grpc::{maru_services, reflection};
use crate::services::{Routes, RoutesBuilder};
use crate::sessions::Sessions;
use crate::state::AppState;
use crate::{accounts, admin, communities, db, events, feed, jobs, market, reports, social, teams, telemetry, trials};

/// The HELP lines of the domains' metric families (the platform's are described with the
/// recorder, in [`telemetry`]).
pub fn describe_domain_metrics() {
    events::ops::describe_metrics();
    feed::register_metrics();
    market::register_metrics();
    crate::chat::register_metrics();
    reports::register_metrics();
    teams::ops::describe_metrics();
    crate::media::register_metrics();
}

/// Triggers the same graceful shutdown as SIGTERM.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

pub struct Application {
    state: AppState,
    grpc: TcpListener,
    admin: TcpListener,
    ready: Arc<AtomicBool>,
    /// Create the database and run migrations before declaring readiness.
    prepare_db: bool,
    shutdown_tx: watch::Sender<bool>,
}

impl Application {
    /// Binds the listeners; the database is prepared once [`Self::run_until_stopped`] runs.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::lazy_pool(&settings.database)?;
        Self::build_with_pool(settings, pool, true).await
    }

    /// With an existing pool (tests pass a migrated per-test database).
    pub async fn build_with_pool(settings: Settings, pool: PgPool, prepare_db: bool) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, pool, prepare_db, Arc::new(SystemClock)).await
    }

    /// As [`Self::build_with_pool`] with another clock (tests control time with it).
    pub async fn build_with_clock(
        settings: Settings,
        pool: PgPool,
        prepare_db: bool,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        // Before anything records a metric.
        telemetry::metrics_handle();
        describe_domain_metrics();
        let grpc = TcpListener::bind(settings.grpc_addr())
            .await
            .with_context(|| format!("binding {}", settings.grpc.listen))?;
        let admin = TcpListener::bind(settings.admin_addr())
            .await
            .with_context(|| format!("binding {}", settings.admin.listen))?;
        if settings.auth.jwt_key.is_none()
            && settings.auth.jwt_key_file.is_none()
            && settings.auth.jwt_keyring_file.is_none()
        {
            tracing::warn!(
                "!!! auth.jwt_key is not set: using a random key. Tokens will not survive a restart and \
                 replicas will reject each other's tokens. Set MARU__AUTH__JWT_KEY in any shared deployment. !!!"
            );
        }
        let mut settings = settings;
        if settings.media.public_url.is_empty() {
            // The local media backend's URLs point at the port actually bound (`:0` in tests).
            let addr = grpc.local_addr()?;
            let host = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
            settings.media.public_url = format!("http://{}", SocketAddr::new(host, addr.port()));
        }
        let state = AppState::with_clock(settings, pool, clock)?;
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Self { state, grpc, admin, ready: Arc::new(AtomicBool::new(false)), prepare_db, shutdown_tx })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown_tx.clone())
    }

    /// Serves until SIGTERM/SIGINT or the shutdown handle, then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { state, grpc, admin, ready, prepare_db, shutdown_tx } = self;
        let settings = state.settings.clone();
        let admission = Admission::with_stream_cap(
            &settings.rate_limit,
            crate::grpc::registry()?,
            settings.grpc.max_streams_per_address,
        )?;
        let signals = spawn_signal_listener(&shutdown_tx);
        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_health(&reporter, ServingStatus::NotServing).await;
        // False while the database monitor finds the database unreachable (after readiness).
        let db_up = Arc::new(AtomicBool::new(true));
        let mut background = spawn_background(&state, &ready, &db_up, &reporter, prepare_db, &shutdown_tx);
        background.push(signals);
        let admin_addr = admin.local_addr()?;
        // The admin port outlives the gRPC listener: it stops only once the drain is over, so
        // `/readyz` (503) and `/metrics` answer throughout the shutdown.
        let (admin_stop_tx, admin_stop) = oneshot::channel::<()>();
        let admin_server = spawn_admin_server(admin, &state, &ready, &db_up, &shutdown_tx, admin_stop);

        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        let routes = grpc_routes(&state, routes, shutdown_tx.subscribe())?;
        background.push(admission.spawn_cleanup(Duration::from_secs(settings.rate_limit.cleanup_interval_s.max(1))));
        let (shutdown_signal, drained) = shutdown_signalling(&settings, &reporter, &shutdown_tx);

        settings.warnings().iter().for_each(|w| tracing::warn!("{w}"));
        tracing::info!(grpc = %grpc.local_addr()?, admin = %admin_addr, "maru listening");
        let media_http = crate::media::http_layer(&state)?;
        let server =
            serve_grpc(grpc, &state, &ready, routes, AdmissionLayer::new(admission), media_http, shutdown_signal);
        let result = drain(server, drained, Duration::from_millis(settings.grpc.drain_timeout_ms)).await;
        // Views answered before the drain are queued in this process: into Redis before exit.
        state.views.drain().await;

        let _ = shutdown_tx.send(true);
        tracing::info!("gRPC listener drained; stopping the admin port");
        let _ = admin_stop_tx.send(());
        let _ = admin_server.await;
        for task in background {
            task.abort();
        }
        tracing::info!("maru stopped");
        result
    }
}

/// OS signals feed the same shutdown channel as the handle.
fn spawn_signal_listener(shutdown_tx: &watch::Sender<bool>) -> JoinHandle<()> {
    let signal_tx = shutdown_tx.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = signal_tx.send(true);
    })
}

/// The Redis monitor, the readiness task (database prepared, then health SERVING) and the jobs.
fn spawn_background(
    state: &AppState,
    ready: &Arc<AtomicBool>,
    db_up: &Arc<AtomicBool>,
    reporter: &HealthReporter,
    prepare_db: bool,
    shutdown_tx: &watch::Sender<bool>,
) -> Vec<JoinHandle<()>> {
    let mut background = vec![state.cache.spawn_monitor(Duration::from_millis(state.settings.redis.probe_interval_ms))];
    background.push(tokio::spawn(become_ready(
        state.clone(),
        ready.clone(),
        db_up.clone(),
        reporter.clone(),
        prepare_db,
        shutdown_tx.subscribe(),
    )));
    background.extend(jobs::spawn_all(state, shutdown_tx.subscribe()));
    background
}

/// Admin HTTP: metrics and probes, kept up through the grace period and the drain (until
/// `stop` fires) so probes and the last scrapes see the shutdown.
fn spawn_admin_server(
    listener: TcpListener,
    state: &AppState,
    ready: &Arc<AtomicBool>,
    db_up: &Arc<AtomicBool>,
    shutdown_tx: &watch::Sender<bool>,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let admin_state = AdminHttp {
        state: state.clone(),
        ready: ready.clone(),
        db_up: db_up.clone(),
        metrics: telemetry::metrics_handle(),
        stopping: shutdown_tx.subscribe(),
    };
    let admin_router = axum::Router::new()
        .route("/metrics", get(metrics_endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(admin_state));
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.await;
        };
        if let Err(e) = axum::serve(listener, admin_router).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "admin server failed");
        }
    })
}

/// `routes` (health) plus reflection and every domain's services; each domain adds its own
/// (`<domain>::add_services`), with the message-size limits of [`crate::services`].
fn grpc_routes(state: &AppState, mut routes: RoutesBuilder, stopping: watch::Receiver<bool>) -> anyhow::Result<Routes> {
    routes.add_service(reflection::v1()?);
    routes.add_service(reflection::v1alpha()?);
    accounts::add_services(&mut routes, state);
    admin::add_services(&mut routes, state);
    trials::add_services(&mut routes, state);
    communities::add_services(&mut routes, state);
    events::add_services(&mut routes, state);
    social::add_services(&mut routes, state);
    feed::add_services(&mut routes, state);
    teams::add_services(&mut routes, state);
    market::add_services(&mut routes, state);
    crate::chat::add_services(&mut routes, state, stopping);
    reports::add_services(&mut routes, state);
    crate::media::add_services(&mut routes, state)?;
    crate::identity::add_services(&mut routes, state)?;
    Ok(routes.routes())
}

/// The shutdown sequence of the gRPC server: once shutdown is asked for, health turns
/// NOT_SERVING first (so balancers stop sending), the listener stays open for
/// `grpc.shutdown_grace_ms`, then the returned future completes and the server stops accepting;
/// the receiver fires at that moment, starting the drain.
fn shutdown_signalling(
    settings: &Settings,
    reporter: &HealthReporter,
    shutdown_tx: &watch::Sender<bool>,
) -> (impl Future<Output = ()> + Send + 'static, oneshot::Receiver<()>) {
    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let grace = Duration::from_millis(settings.grpc.shutdown_grace_ms);
    let stop_rx = shutdown_tx.subscribe();
    let reporter = reporter.clone();
    let signal = async move {
        stopped(stop_rx).await;
        set_health(&reporter, ServingStatus::NotServing).await;
        tracing::info!(grace_ms = grace.as_millis() as u64, "health NOT_SERVING; draining");
        tokio::time::sleep(grace).await;
        let _ = drain_tx.send(());
    };
    (signal, drain_rx)
}

/// The gRPC server on `listener` with its layers (outermost first: CORS, connection info and
/// protocol marking, gRPC-web, the per-RPC layer, admission), until `shutdown` completes.
/// Connections are admitted and watched by [`Connections`] (per-address cap, handshake and
/// send timeouts); HTTP/2 advertises `grpc.max_concurrent_streams` and pings idle peers.
fn serve_grpc(
    listener: TcpListener,
    state: &AppState,
    ready: &Arc<AtomicBool>,
    routes: Routes,
    admission: AdmissionLayer,
    media_http: crate::media::http::MediaHttpLayer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), tonic::transport::Error>> {
    let settings = &state.settings;
    let rpc_layer = RpcLayer::new(RpcLayerConfig {
        tokens: state.tokens.clone(),
        max_timeout: settings.grpc.request_timeout(),
        access_log: settings.log.access_log,
        metrics: settings.grpc.rpc_metrics,
        ready: ready.clone(),
        sessions: Arc::new(Sessions::new(
            state.cache.clone(),
            accounts::session_loader(state.db.clone()),
            Duration::from_secs(settings.auth.session_cache_ttl_s),
        )),
        trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
    });
    let g = &settings.grpc;
    let connections = Connections::new(ConnectionLimits::new(g, &settings.rate_limit.trusted_proxies));
    let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(g.max_concurrent_streams)
        .http2_keepalive_interval(ms(g.http2_keepalive_interval_ms))
        .http2_keepalive_timeout(ms(g.http2_keepalive_timeout_ms))
        .layer(cors_layer(&settings.grpc.cors_allowed_origins))
        // The local media backend's `PUT /media/upload/…` and `GET /media/…` (plain HTTP).
        .layer(media_http)
        // The reference web app's static files under `/app/` when `web.enabled` (plain HTTP).
        .layer(crate::web::WebLayer::new(&settings.web, &settings.media.browser_origins()))
        .layer(tower::util::MapRequestLayer::new(expose_connect_info))
        .layer(tower::util::MapRequestLayer::new(mark_protocol))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(rpc_layer)
        .layer(admission)
        .add_routes(routes)
        // TCP_NODELAY (set by `Connections`): without it a reply of more than one segment (a
        // feed page) waits for the client's delayed ACK — a flat 40 ms on every ListPosts.
        .serve_with_incoming_shutdown(connections.incoming(listener), shutdown)
}

/// Runs the server until it stops by itself, or until `drained` fires and in-flight RPCs had
/// `timeout` to finish (the rest of the connections are then closed).
async fn drain(
    server: impl Future<Output = Result<(), tonic::transport::Error>>,
    drained: oneshot::Receiver<()>,
    timeout: Duration,
) -> anyhow::Result<()> {
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.map_err(anyhow::Error::from),
        _ = async { let _ = drained.await; tokio::time::sleep(timeout).await; } => {
            tracing::warn!(drain_ms = timeout.as_millis() as u64, "drain timeout: closing remaining connections");
            Ok(())
        }
    }
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for svc in maru_services() {
        reporter.set_service_status(svc, status).await;
    }
}

/// Connects, creates and migrates the database (retrying with backoff), then flips health; then
/// watches the database ([`db::monitor`]): NOT_SERVING (and `/readyz` 503) while it does not
/// answer, SERVING again when it does — unless the server is shutting down.
async fn become_ready(
    state: AppState,
    ready: Arc<AtomicBool>,
    db_up: Arc<AtomicBool>,
    reporter: HealthReporter,
    prepare_db: bool,
    stopping: watch::Receiver<bool>,
) {
    db::prepare_until_ready(&state.settings.database, &state.db, prepare_db).await;
    match db::setting_warnings(&state.db).await {
        Ok(warnings) => warnings.iter().for_each(|w| tracing::warn!("{w}")),
        Err(e) => tracing::debug!(error = format!("{e:#}"), "could not read PostgreSQL settings"),
    }
    ready.store(true, Ordering::Release);
    metrics::gauge!("maru_ready").set(1.0);
    set_health(&reporter, ServingStatus::Serving).await;
    tracing::info!("database ready: SERVING");
    let interval = Duration::from_millis(state.settings.database.probe_interval_ms.max(50));
    // The pool's own options: tests hand the application a pool for another database.
    let opts = (*state.db.connect_options()).clone();
    db::monitor(opts, interval, |up| {
        let (reporter, stopping, db_up) = (reporter.clone(), stopping.clone(), db_up.clone());
        async move {
            db_up.store(up, Ordering::Release);
            if !*stopping.borrow() {
                set_health(&reporter, if up { ServingStatus::Serving } else { ServingStatus::NotServing }).await;
            }
        }
    })
    .await;
}

/// The request headers gRPC-web clients send (grpc-web, protobuf-es/connect-web transports).
pub const ALLOWED_REQUEST_HEADERS: [&str; 8] = [
    "authorization",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-request-id",
    "traceparent",
    "tracestate",
];

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS, Method::PUT, Method::GET])
        // Listed, not `*`: by the Fetch standard a wildcard does not cover `authorization`.
        .allow_headers(ALLOWED_REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers([
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-trace-id"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

struct AdminHttp {
    state: AppState,
    ready: Arc<AtomicBool>,
    /// False while the database does not answer the monitor's probe.
    db_up: Arc<AtomicBool>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    stopping: watch::Receiver<bool>,
}

/// The text format, or OpenMetrics with exemplars when the scraper asks for it
/// (`crate::traces::openmetrics`).
async fn metrics_endpoint(State(s): State<Arc<AdminHttp>>, headers: http::HeaderMap) -> axum::response::Response {
    use crate::traces::openmetrics;
    use axum::response::IntoResponse;
    let pool = &s.state.db;
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("maru_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("maru_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("maru_db_pool_connections", "state" => "max").set(f64::from(pool.options().get_max_connections()));
    process_collector().collect();
    let text = s.metrics.render();
    if openmetrics::wants_openmetrics(headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())) {
        let body = openmetrics::convert(&text, &openmetrics::EXEMPLARS);
        return ([(http::header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], body).into_response();
    }
    text.into_response()
}

fn process_collector() -> &'static metrics_process::Collector {
    static C: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let c = metrics_process::Collector::default();
        c.describe();
        c
    })
}

async fn readyz(State(s): State<Arc<AdminHttp>>) -> (StatusCode, &'static str) {
    if *s.stopping.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if s.ready.load(Ordering::Acquire) && !s.db_up.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    } else if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database not ready")
    }
}
