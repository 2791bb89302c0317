//! Distributed traces (issue 22): `tracing` spans exported as OpenTelemetry spans over OTLP/gRPC
//! when `trace.otlp_endpoint` is set. Off by default: then no exporter, no OpenTelemetry layer,
//! and the spans below are disabled callsites (DEBUG, filtered out by the log filter).
//!
//! - One span per RPC (the RPC layer's `rpc` span, with `rpc.system`, `rpc.service`,
//!   `rpc.method` and `rpc.grpc.status_code`), per SQL statement ([`SqlSpans`], from sqlx's own
//!   statement events: the first words of the statement, never its bound values; those of a
//!   transaction begun with `db::begin` under its `transaction` span), per Redis
//!   command ([`redis_span`]), per outbound HTTP call ([`send`], which also propagates
//!   `traceparent`), per background job run ([`job_span`]).
//! - Sampling ([`KeepSampler`] + [`TailKeep`]): a new trace is kept by `trace.sample_ratio` on its
//!   trace id; a sampled parent (a trusted proxy's `traceparent`, or a local parent) is followed.
//!   With `trace.keep_errors` or `trace.slow_threshold_ms`, the traces the ratio dropped are still
//!   recorded and held in memory until their root span ends: an error or a slow root exports the
//!   whole trace, the rest is dropped. The hold is bounded ([`MAX_HELD_SPANS`]).
//! - Only spans of maru's own code are exported, and only their declared fields: no log events
//!   (they may echo input), no SQL values, no headers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample, SpanData,
    SpanProcessor,
};
use parking_lot::Mutex;
use tracing::Instrument;
use tracing::dispatcher::WeakDispatch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;

use crate::config::{Environment, Settings, TraceSettings};

pub mod openmetrics;

/// The instrumentation scope of every span maru exports.
const SCOPE: &str = "maru";

/// Spans of traces the ratio dropped, held until their root ends; beyond it they are dropped.
pub const MAX_HELD_SPANS: usize = 20_000;

/// Decisions remembered for spans that end after their root (background work of a request).
const REMEMBERED_DECISIONS: usize = 4096;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The tracer provider for `settings`, or `None` when `trace.otlp_endpoint` is unset. Must be
/// called inside a Tokio runtime (the tonic exporter's channel).
pub fn provider(settings: &Settings) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(endpoint) = &settings.trace.otlp_endpoint else { return Ok(None) };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_millis(settings.trace.export_timeout_ms))
        .build()?;
    Ok(Some(provider_with(settings, BatchSpanProcessor::builder(exporter).build())))
}

/// The provider of `settings` around `processor` (the batch exporter; tests may pass another).
pub fn provider_with(settings: &Settings, processor: impl SpanProcessor + 'static) -> SdkTracerProvider {
    let t = &settings.trace;
    let env = match settings.env {
        Environment::Development => "development",
        Environment::Production => "production",
    };
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(settings.log.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", env),
        ])
        .build();
    openmetrics::tracing_built();
    SdkTracerProvider::builder()
        .with_sampler(KeepSampler { ratio: t.sample_ratio, tail: t.tail_keep() })
        .with_span_processor(TailKeep::new(t, processor))
        .with_resource(resource)
        .build()
}

/// Remembers the process's provider so that [`shutdown`] can flush it.
pub fn install(provider: SdkTracerProvider) {
    let _ = PROVIDER.set(provider);
}

/// Exports what is still buffered and stops the exporter (at the end of `serve`). Blocks:
/// called from a blocking thread, since the exporter needs the runtime to send.
pub async fn shutdown() {
    if let Some(p) = PROVIDER.get().cloned() {
        let done = tokio::task::spawn_blocking(move || p.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "trace exporter shutdown failed");
        }
    }
}

/// The layers that turn maru's spans into OpenTelemetry spans of `provider`: the
/// `tracing-opentelemetry` layer (maru's own spans only, no events) and [`SqlSpans`].
pub fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{Targets, filter_fn};
    let tracer = provider.tracer(SCOPE);
    let spans = tracing_opentelemetry::OpenTelemetryLayer::new(tracer.clone())
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_error_events_to_status(false)
        .with_error_events_to_exceptions(false)
        .with_error_fields_to_exceptions(false)
        .with_tracked_inactivity(false)
        // The hint matters: without one, the subscriber's level hint is the other layers' (the
        // log filter's `info`) and DEBUG spans and sqlx's DEBUG statement events never fire.
        .with_filter(
            filter_fn(|m| m.is_span() && m.target().starts_with("maru") && *m.level() <= tracing::Level::DEBUG)
                .with_max_level_hint(tracing::Level::DEBUG),
        );
    let sql = SqlSpans { tracer, dispatch: OnceLock::new() }.with_filter(
        Targets::new().with_target("sqlx::query", tracing::Level::DEBUG).with_target(TX_TARGET, tracing::Level::DEBUG),
    );
    spans.and_then(sql)
}

/// [`layer`] of `provider`, or a layer that does nothing. Not an `Option<Layer>`: that wrapper
/// does not pass `on_register_dispatch` on, and [`SqlSpans`] never learnt its dispatch (no SQL
/// spans from the binary, whose subscriber is global; tests add [`layer`] directly).
pub fn layer_if<S>(provider: Option<&SdkTracerProvider>) -> Box<dyn Layer<S> + Send + Sync + 'static>
where
    S: tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match provider {
        Some(p) => layer(p).boxed(),
        None => tracing_subscriber::layer::Identity::new().boxed(),
    }
}

// ---- sampling

/// Parent-based ratio sampling; what the ratio drops is recorded (not sampled) when the tail
/// rules (errors, slow roots) may still keep it, else not recorded at all.
#[derive(Debug, Clone)]
pub struct KeepSampler {
    pub ratio: f64,
    pub tail: bool,
}

/// Whether `ratio` keeps `trace_id` (the lower 63 bits of its last 8 bytes, like the SDK's
/// `TraceIdRatioBased`, so every service deciding on the same id agrees).
pub fn ratio_keeps(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) >> 1;
    low < (ratio * (1u64 << 63) as f64) as u64
}

impl ShouldSample for KeepSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[opentelemetry::trace::Link],
    ) -> SamplingResult {
        let parent = parent.map(|cx| cx.span().span_context().clone()).filter(SpanContext::is_valid);
        let head = match &parent {
            Some(p) => p.is_sampled(),
            None => ratio_keeps(trace_id, self.ratio),
        };
        let decision = if head {
            SamplingDecision::RecordAndSample
        } else if self.tail {
            SamplingDecision::RecordOnly
        } else {
            SamplingDecision::Drop
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state: parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
        }
    }
}

/// Passes sampled spans to `inner`; holds the recorded-only spans of a trace until its local
/// root ends, then passes them all (marked sampled) if the root failed or was slow.
#[derive(Debug)]
pub struct TailKeep<P> {
    inner: P,
    slow: Option<Duration>,
    keep_errors: bool,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    spans: HashMap<TraceId, Vec<SpanData>>,
    count: usize,
    decided: VecDeque<(TraceId, bool)>,
}

impl<P: SpanProcessor> TailKeep<P> {
    pub fn new(t: &TraceSettings, inner: P) -> Self {
        Self {
            inner,
            slow: (t.slow_threshold_ms > 0).then(|| Duration::from_millis(t.slow_threshold_ms)),
            keep_errors: t.keep_errors,
            held: Mutex::new(Held::default()),
        }
    }

    fn keeps_root(&self, span: &SpanData) -> bool {
        let failed = self.keep_errors && matches!(span.status, Status::Error { .. });
        let took = span.end_time.duration_since(span.start_time).unwrap_or_default();
        failed || self.slow.is_some_and(|t| took >= t)
    }

    fn pass(&self, mut span: SpanData) {
        let sc = &span.span_context;
        span.span_context = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            TraceFlags::SAMPLED,
            sc.is_remote(),
            sc.trace_state().clone(),
        );
        self.inner.on_end(span);
    }
}

impl<P: SpanProcessor> SpanProcessor for TailKeep<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        name_rpc_span(&mut span);
        if span.span_context.is_sampled() {
            self.inner.on_end(span);
            return;
        }
        let trace = span.span_context.trace_id();
        let root = span.parent_span_id == SpanId::INVALID || span.parent_span_is_remote;
        let mut held = self.held.lock();
        if !root {
            match held.decided.iter().find(|(t, _)| *t == trace).map(|(_, keep)| *keep) {
                Some(true) => {
                    drop(held);
                    self.pass(span);
                }
                Some(false) => {}
                None if held.count >= MAX_HELD_SPANS => {
                    // Roots that never end (or a burst): start over rather than grow.
                    held.spans.clear();
                    held.count = 0;
                    metrics::counter!("maru_trace_held_spans_dropped_total").increment(MAX_HELD_SPANS as u64);
                }
                None => {
                    held.spans.entry(trace).or_default().push(span);
                    held.count += 1;
                }
            }
            return;
        }
        let keep = self.keeps_root(&span);
        let children = held.spans.remove(&trace).unwrap_or_default();
        held.count -= children.len();
        if held.decided.len() >= REMEMBERED_DECISIONS {
            held.decided.pop_front();
        }
        held.decided.push_back((trace, keep));
        drop(held);
        if keep {
            metrics::counter!("maru_trace_tail_kept_total").increment(1);
            openmetrics::EXEMPLARS.kept(trace);
            children.into_iter().for_each(|s| self.pass(s));
            self.pass(span);
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The RPC layer's span is named `rpc` (a `tracing` span's name is static): exported, it takes
/// the method's name (`maru.v1.FeedService/CreatePost`, its `rpc` field) and the server kind.
/// Done here so that nothing about it costs when tracing is off.
fn name_rpc_span(span: &mut SpanData) {
    if span.name != "rpc" || span.instrumentation_scope.name() != SCOPE {
        return;
    }
    if let Some(kv) = span.attributes.iter().find(|kv| kv.key.as_str() == "rpc") {
        span.name = kv.value.as_str().into_owned().into();
        span.span_kind = SpanKind::Server;
    }
}

// ---- SQL statements

/// The target of the event [`transaction_begun`] emits for [`SqlSpans`].
const TX_TARGET: &str = "maru::traces::db";

/// Where a transaction started, when tracing is on (`crate::db::begin` calls this before it
/// asks the pool, then [`transaction_begun`]).
pub fn transaction_start() -> Option<SystemTime> {
    openmetrics::tracing_on().then(SystemTime::now)
}

/// Opens the `transaction` span of a transaction that `start` began (see [`SqlSpans`]).
pub fn transaction_begun(start: Option<SystemTime>) {
    let Some(start) = start else { return };
    let nanos = start.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default();
    tracing::debug!(target: TX_TARGET, begun_unix_nanos = nanos, "transaction begun");
}

/// The open transaction of a span (in its registry extensions): its `transaction` span, the
/// parent of the statements run under that span until COMMIT or ROLLBACK. A transaction
/// dropped without either (sqlx rolls it back later, unlogged) ends when the span that began it
/// closes, marked `dropped`.
struct OpenTx {
    cx: Context,
    ended: bool,
}

impl OpenTx {
    fn end(&mut self, outcome: &'static str, at: SystemTime) {
        if !self.ended {
            self.ended = true;
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("db.transaction.outcome", outcome));
            span.end_with_timestamp(at);
        }
    }
}

impl Drop for OpenTx {
    fn drop(&mut self) {
        self.end("dropped", SystemTime::now());
    }
}

/// The nearest open transaction of `id` or its ancestors: the span that holds it, its context.
fn open_tx(registry: &tracing_subscriber::Registry, id: &tracing::span::Id) -> Option<(tracing::span::Id, Context)> {
    use tracing_subscriber::registry::LookupSpan;
    registry
        .span(id)?
        .scope()
        .find_map(|s| s.extensions().get::<OpenTx>().filter(|t| !t.ended).map(|t| (s.id(), t.cx.clone())))
}

/// One client span per SQL statement, made from sqlx's `sqlx::query` event (emitted when the
/// statement finishes, with its duration) under the span that ran it. The span is named by the
/// statement's first words (`insert into posts`, `select id from users`, `COMMIT`): statements
/// bind their values, so the text holds none.
///
/// A transaction begun with `crate::db::begin` is one more span, `transaction`, from before the
/// pool's BEGIN to the end of its COMMIT or ROLLBACK (`db.transaction.outcome`), and the
/// statements run meanwhile under the span that began it are its children. sqlx logs no event
/// for BEGIN (nor for the rollback of a dropped transaction), so BEGIN has no span of its own.
/// A statement run on the pool, outside the transaction but under the same span while it is
/// open, is shown inside it too: the statement events do not name their connection.
pub struct SqlSpans {
    tracer: SdkTracer,
    dispatch: OnceLock<WeakDispatch>,
}

impl<S> Layer<S> for SqlSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let Some(dispatch) = self.dispatch.get().and_then(WeakDispatch::upgrade) else { return };
        // The span that ran the statement, from the registry (this layer's own filter sees
        // only sqlx's events, so its context would hide every span).
        let current = dispatch.current_span();
        let Some(parent) = event.parent().or_else(|| current.id()) else { return };
        let Some(cx) = tracing_opentelemetry::get_otel_context(parent, &dispatch) else { return };
        if !cx.span().span_context().is_valid() {
            return;
        }
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else { return };
        if event.metadata().target() == TX_TARGET {
            use tracing_subscriber::registry::LookupSpan;
            struct Begun(u64);
            impl tracing::field::Visit for Begun {
                fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                    if field.name() == "begun_unix_nanos" {
                        self.0 = value;
                    }
                }
                fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
            }
            let mut begun = Begun(0);
            event.record(&mut begun);
            let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(begun.0);
            let span = self
                .tracer
                .span_builder("transaction")
                .with_kind(SpanKind::Client)
                .with_start_time(start)
                .with_attributes([KeyValue::new("db.system.name", "postgresql")])
                .start_with_context(&self.tracer, &cx);
            if let Some(owner) = registry.span(parent) {
                // A transaction still open under the same span (dropped, not yet rolled back)
                // ends here.
                owner.extensions_mut().replace(OpenTx { cx: cx.with_span(span), ended: false });
            }
            return;
        }
        let tx = open_tx(registry, parent);
        let cx = tx.as_ref().map(|(_, tx)| tx.clone()).unwrap_or(cx);
        #[derive(Default)]
        struct Fields {
            summary: String,
            secs: f64,
            rows: Option<u64>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "summary" {
                    self.summary = value.to_owned();
                }
            }
            fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
                if field.name() == "elapsed_secs" {
                    self.secs = value;
                }
            }
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "rows_returned" {
                    self.rows = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let name = statement_name(&f.summary);
        let end = SystemTime::now();
        let start = end.checked_sub(Duration::from_secs_f64(f.secs.max(0.0))).unwrap_or(end);
        let mut attributes =
            vec![KeyValue::new("db.system.name", "postgresql"), KeyValue::new("db.query.summary", name.clone())];
        if let Some(rows) = f.rows {
            attributes.push(KeyValue::new("db.response.returned_rows", rows as i64));
        }
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &cx);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
        let outcome = match f.summary.as_str() {
            "COMMIT" => "commit",
            "ROLLBACK" => "rollback",
            _ => return,
        };
        use tracing_subscriber::registry::LookupSpan;
        if let Some((owner, _)) = tx
            && let Some(owner) = registry.span(&owner)
            && let Some(mut open) = owner.extensions_mut().remove::<OpenTx>()
        {
            open.end(outcome, end);
        }
    }
}

/// A statement's span name from sqlx's summary (its first four words): up to the first
/// parenthesis, comma or placeholder, e.g. `insert into posts (id, …` → `insert into posts`.
pub fn statement_name(summary: &str) -> String {
    let cut = summary.find(['(', ',', '$', '\'', '…']).unwrap_or(summary.len());
    let name = summary[..cut].trim();
    if name.is_empty() { "SQL".to_owned() } else { name.to_owned() }
}

// ---- Redis, outbound HTTP, jobs

/// The span of one Redis command (`op` is the cache operation's name, never a key).
pub fn redis_span(op: &'static str) -> tracing::Span {
    tracing::debug_span!(
        target: "maru::traces",
        "redis",
        otel.name = op,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = op,
        otel.status_code = tracing::field::Empty,
    )
}

/// The root span of one background job run.
pub fn job_span(job: &'static str) -> tracing::Span {
    tracing::debug_span!(target: "maru::traces", "job", otel.name = job, job.name = job, otel.status_code = tracing::field::Empty)
}

/// Runs one background job run `fut` inside its [`job_span`]; an `Err` marks it failed.
pub async fn job<T, E>(name: &'static str, fut: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let span = job_span(name);
    let out = fut.instrument(span.clone()).await;
    if out.is_err() {
        failed(&span);
    }
    out
}

/// Marks a span of [`redis_span`], [`job_span`] failed (a failed job run's trace is then kept
/// by `trace.keep_errors`).
pub fn failed(span: &tracing::Span) {
    span.record("otel.status_code", "ERROR");
}

/// Sends `req` inside a client span named `name` (e.g. `opendata.page`), with the trace context
/// in `traceparent`/`tracestate` so that the remote side can continue the trace. Records the
/// method, host and status code, never the path's query or any header.
pub async fn send(req: reqwest::RequestBuilder, name: &'static str) -> reqwest::Result<reqwest::Response> {
    let (client, built) = req.build_split();
    let mut request = built?;
    let span = tracing::debug_span!(
        target: "maru::traces",
        "http",
        otel.name = name,
        otel.kind = "client",
        http.request.method = request.method().as_str(),
        server.address = request.url().host_str().unwrap_or(""),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    inject(&span, request.headers_mut());
    let out = client.execute(request).instrument(span.clone()).await;
    match &out {
        Ok(resp) => {
            span.record("http.response.status_code", resp.status().as_u16());
            if resp.status().is_server_error() {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
    out
}

// ---- propagation

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes `span`'s trace context into `headers` (`traceparent`, `tracestate`); nothing when
/// tracing is off.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// Makes the W3C `traceparent`/`tracestate` of `headers` (gRPC or gRPC-web metadata) the parent
/// of `span`. The caller decides whether the sender is trusted.
pub fn accept_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of `span` (32 hex digits), when it is traced.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The trace and span id of `id` in `dispatch`, when its span is traced (the JSON log lines).
pub fn ids_of(id: &tracing::span::Id, dispatch: &tracing::Dispatch) -> Option<(TraceId, SpanId)> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}

/// Sets `span`'s RPC attributes (semantic conventions for gRPC servers).
pub fn rpc_attributes(span: &tracing::Span, service: &'static str, method: &'static str) {
    span.set_attribute("rpc.system", "grpc");
    span.set_attribute("rpc.service", service);
    span.set_attribute("rpc.method", method);
}

/// Records the final gRPC status of `span` (`label` its name); server-side failures (UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) mark it failed, client
/// mistakes do not (OpenTelemetry's conventions for gRPC servers).
pub fn rpc_status(span: &tracing::Span, code: tonic::Code, label: &'static str) {
    use tonic::Code;
    span.set_attribute("rpc.grpc.status_code", code as i64);
    if matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    ) {
        span.set_status(Status::error(label));
    }
}

/// Whether OpenTelemetry spans are being made in this process (`trace.otlp_endpoint` set).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// A shared handle of the slot [`DispatchSlot`] fills (for formatters, which get no dispatch).
pub type SharedDispatch = Arc<OnceLock<WeakDispatch>>;

/// Remembers the dispatch it is registered with in a [`SharedDispatch`].
pub struct DispatchSlot(pub SharedDispatch);

impl<S: tracing::Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_hold_no_values() {
        assert_eq!(statement_name("insert into posts (id, …"), "insert into posts");
        assert_eq!(statement_name("select id from users"), "select id from users");
        assert_eq!(statement_name("update users set handle = $1"), "update users set handle =");
        assert_eq!(statement_name("BEGIN"), "BEGIN");
        assert_eq!(statement_name("select 'x' …"), "select");
        assert_eq!(statement_name(""), "SQL");
    }

    #[test]
    fn the_ratio_decides_on_the_trace_id() {
        let low = TraceId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let high = TraceId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(ratio_keeps(low, 0.01));
        assert!(!ratio_keeps(high, 0.99));
        assert!(ratio_keeps(high, 1.0));
        assert!(!ratio_keeps(low, 0.0));
        // About the ratio over many ids.
        let kept = (0..10_000u64)
            .filter(|i| {
                let mut b = [0u8; 16];
                b[8..].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                ratio_keeps(TraceId::from_bytes(b), 0.25)
            })
            .count();
        assert!((2200..2800).contains(&kept), "{kept}");
    }
}

#[cfg(test)]
mod propagation_tests {
    use std::sync::Arc;

    use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
    use parking_lot::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps every span it is given.
    #[derive(Debug, Clone, Default)]
    struct Keep(Arc<Mutex<Vec<SpanData>>>);

    impl SpanProcessor for Keep {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().push(span);
        }
        fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn outbound_calls_carry_the_trace_context_of_their_client_span() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut settings = Settings::default();
            settings.trace.sample_ratio = 1.0;
            let kept = Keep::default();
            let provider = provider_with(&settings, kept.clone());
            let subscriber = tracing_subscriber::registry().with(layer(&provider));
            let _guard = tracing::subscriber::set_default(subscriber);
            tracing::callsite::rebuild_interest_cache();

            let seen: Arc<Mutex<Option<String>>> = Arc::default();
            let sink = seen.clone();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/x?q=secret-query", listener.local_addr().unwrap());
            let app = axum::Router::new().route(
                "/x",
                axum::routing::get(move |headers: http::HeaderMap| async move {
                    *sink.lock() = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    "ok"
                }),
            );
            tokio::spawn(async move { axum::serve(listener, app).await });

            let outer = tracing::info_span!("outer");
            let client = reqwest::Client::new();
            let status = send(client.get(&url), "test.call").instrument(outer.clone()).await.unwrap().status();
            assert!(status.is_success());
            drop(outer);

            let header = seen.lock().clone().expect("a traceparent was sent");
            let spans = kept.0.lock().clone();
            let call = spans.iter().find(|s| s.name == "test.call").expect("the client span");
            let outer = spans.iter().find(|s| s.name == "outer").expect("the caller's span");
            let sc = &call.span_context;
            assert_eq!(header, format!("00-{}-{}-01", sc.trace_id(), sc.span_id()), "the remote parent is the call");
            assert_eq!(call.parent_span_id, outer.span_context.span_id());
            assert_eq!(call.span_kind, SpanKind::Client);
            let attr = |k: &str| call.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.to_string());
            assert_eq!(attr("http.request.method").as_deref(), Some("GET"));
            assert_eq!(attr("server.address").as_deref(), Some("127.0.0.1"));
            assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
            assert!(call.attributes.iter().all(|kv| !kv.value.to_string().contains("secret-query")), "no query string");
        });
    }

    #[test]
    fn trace_settings_are_validated() {
        let mut s = Settings::default();
        s.trace.otlp_endpoint = Some("tempo:4317".into());
        s.trace.sample_ratio = 1.5;
        s.trace.export_timeout_ms = 0;
        let errs = s.validate().unwrap_err().0;
        for key in ["trace.otlp_endpoint", "trace.sample_ratio", "trace.export_timeout_ms"] {
            assert!(errs.iter().any(|e| e.starts_with(key)), "{key}: {errs:?}");
        }
        s.trace.otlp_endpoint = Some("http://127.0.0.1:4317".into());
        s.trace.sample_ratio = 0.0;
        s.trace.export_timeout_ms = 1;
        assert!(s.validate().is_ok());
    }
}
