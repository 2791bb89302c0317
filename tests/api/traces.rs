//! Distributed traces (issue 22): the real OTLP/gRPC export, received by a local collector
//! (a tonic `TraceService` decoding the protobuf), checked span by span.
//!
//! Each test installs its own subscriber for its thread (`#[sqlx::test]` runs on a current-thread
//! runtime, so the server's tasks run there too): maru's JSON log layer and its trace layers,
//! exporting through maru's own tracer provider to the receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use maru::config::Settings;
use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sqlx::PgPool;
use tonic::Code;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{PASSWORD, TestApp, TestUser, test_settings};

/// What the receiver got: resource attributes and spans, per export.
#[derive(Default)]
struct Received {
    resources: Vec<Vec<KeyValue>>,
    spans: Vec<Span>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            got.resources.push(rs.resource.map(|r| r.attributes).unwrap_or_default());
            for ss in rs.scope_spans {
                got.spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A server traced to a local collector; the subscriber is this thread's until dropped.
struct Traced {
    app: TestApp,
    collector: Collector,
    provider: SdkTracerProvider,
    logs: Lines,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Traced {
    async fn spawn(pool: PgPool, adjust: impl FnOnce(&mut Settings)) -> Self {
        let collector = Collector::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut settings = test_settings();
        settings.log.access_log = true;
        settings.trace.otlp_endpoint = Some(format!("http://{addr}"));
        settings.trace.sample_ratio = 1.0;
        // Test clients come from 127.0.0.1: trusted unless a test says otherwise.
        settings.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        adjust(&mut settings);
        let provider = maru::traces::provider(&settings).unwrap().expect("an endpoint is set");
        let logs = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(maru::telemetry::json_layer(logs.clone()).with_filter(tracing_subscriber::EnvFilter::new("info")))
            .with(maru::traces::layer(&provider));
        let guard = tracing::subscriber::set_default(subscriber);
        fresh_interest();
        let app = TestApp::spawn_settings(pool, settings).await;
        Traced { app, collector, provider, logs, _guard: guard }
    }

    /// Exports what is batched (from a blocking thread: the exporter needs this runtime).
    async fn flush(&self) -> Vec<Span> {
        let p = self.provider.clone();
        tokio::task::spawn_blocking(move || p.force_flush()).await.unwrap().expect("flushed");
        self.collector.0.lock().unwrap().spans.clone()
    }

    /// Stops the server (its jobs would otherwise trace into the next test's subscriber).
    async fn stop(self) {
        self.app.shutdown.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.app.task).await;
    }

    fn feed(&self) -> FeedServiceClient<tonic::transport::Channel> {
        FeedServiceClient::new(self.app.channel.clone())
    }

    fn log_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn attr_str(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        AnyValue::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// The spans of `trace_id` (hex).
fn of_trace(spans: &[Span], trace_id: &str) -> Vec<Span> {
    spans.iter().filter(|s| hex(&s.trace_id) == trace_id).cloned().collect()
}

/// Whether `span` descends from `ancestor` within `spans`.
fn descends(spans: &[Span], span: &Span, ancestor: &Span) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..64 {
        if parent.is_empty() {
            return false;
        }
        if parent == ancestor.span_id {
            return true;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(p) => parent = p.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// Recomputes which call sites are enabled. A call site's interest is cached when it is first
/// hit; while at most one dispatcher is registered, tracing asks only the default dispatcher of
/// the thread that hit it — another test's thread (or this one before `set_default`) may have
/// cached "never" for sqlx's statement event or a DEBUG span. The server process has one global
/// subscriber and is not affected.
fn fresh_interest() {
    tracing::callsite::rebuild_interest_cache();
}

async fn create_post(t: &Traced, user: &TestUser, metadata: &[(&'static str, &str)]) -> (String, pb::Post) {
    fresh_interest();
    let mut req = user.req(pb::CreatePostRequest {
        public: true,
        text: "traced post".into(),
        tags: vec!["otel".into()],
        ..Default::default()
    });
    for (k, v) in metadata {
        req.metadata_mut().insert(*k, v.parse().unwrap());
    }
    let resp = t.feed().create_post(req).await.expect("create post");
    let trace_id =
        resp.metadata().get("x-trace-id").expect("the response carries x-trace-id").to_str().unwrap().to_owned();
    (trace_id, resp.into_inner().post.unwrap())
}

#[sqlx::test]
async fn a_create_post_is_one_trace_from_the_rpc_down_to_sql_and_redis(pool: PgPool) {
    let t = Traced::spawn(pool, |_| {}).await;
    let user = t.app.user("alice").await;
    let (trace_id, _) = create_post(&t, &user, &[]).await;
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let all = t.flush().await;
    let spans = of_trace(&all, &trace_id);

    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let root = roots[0];
    assert_eq!(root.name, "maru.v1.FeedService/CreatePost");
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(attr_str(root, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attr_str(root, "rpc.service").as_deref(), Some("maru.v1.FeedService"));
    assert_eq!(attr_str(root, "rpc.method").as_deref(), Some("CreatePost"));
    assert_eq!(attr_int(root, "rpc.grpc.status_code"), Some(0));

    // The use case's span, the statements under it, the Redis command of the session check.
    let op = spans.iter().find(|s| s.name == "feed.create_post").expect("the use case's span");
    assert!(descends(&spans, op, root));
    let insert = spans
        .iter()
        .find(|s| s.name == "insert into posts")
        .unwrap_or_else(|| panic!("the INSERT's span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert!(descends(&spans, insert, op), "the INSERT runs inside the use case");
    assert_eq!(insert.kind, SpanKind::Client as i32);
    assert_eq!(attr_str(insert, "db.system.name").as_deref(), Some("postgresql"));
    assert!(insert.end_time_unix_nano >= insert.start_time_unix_nano);
    assert!(
        spans.iter().any(|s| s.name == "COMMIT" && descends(&spans, s, op)),
        "the transaction's COMMIT: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // The transaction: one span from before BEGIN to the end of COMMIT, under the use case,
    // with the INSERT and the COMMIT as its children; named without values.
    let tx = spans
        .iter()
        .find(|s| s.name == "transaction" && descends(&spans, insert, s))
        .unwrap_or_else(|| panic!("the INSERT's transaction: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert!(descends(&spans, tx, op), "the transaction runs inside the use case");
    assert_eq!(tx.kind, SpanKind::Client as i32);
    assert_eq!(attr_str(tx, "db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(attr_str(tx, "db.transaction.outcome").as_deref(), Some("commit"));
    let commit = spans
        .iter()
        .find(|s| s.name == "COMMIT" && s.parent_span_id == tx.span_id)
        .expect("the COMMIT is the transaction's child");
    assert!(
        tx.start_time_unix_nano <= insert.start_time_unix_nano && insert.end_time_unix_nano <= tx.end_time_unix_nano
    );
    assert_eq!(commit.end_time_unix_nano, tx.end_time_unix_nano, "the transaction ends with its COMMIT");
    let in_tx: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id == tx.span_id).collect();
    assert!(
        in_tx.iter().all(
            |s| s.kind == SpanKind::Client as i32 && attr_str(s, "db.system.name").as_deref() == Some("postgresql")
        )
    );
    assert_eq!(spans.iter().filter(|s| s.name == "transaction").count(), 1, "one transaction in a CreatePost");
    let redis: Vec<&Span> =
        spans.iter().filter(|s| attr_str(s, "db.system.name").as_deref() == Some("redis")).collect();
    assert!(!redis.is_empty(), "a Redis command: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert!(redis.iter().all(|s| descends(&spans, s, root) && s.kind == SpanKind::Client as i32));

    // Resource: service name and version.
    let resources = t.collector.0.lock().unwrap().resources.clone();
    let res = resources.first().expect("a resource");
    let get = |k: &str| {
        res.iter().find(|kv| kv.key == k).and_then(|kv| kv.value.clone()).and_then(|v| v.value).and_then(|v| match v {
            AnyValue::StringValue(s) => Some(s),
            _ => None,
        })
    };
    assert_eq!(get("service.name").as_deref(), Some("maru"));
    assert_eq!(get("service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));

    // The access line of the RPC carries the trace id (and a span id of it).
    let lines = t.log_lines();
    let access = lines
        .iter()
        .find(|l| l["message"] == "rpc finished" && l["rpc"] == "maru.v1.FeedService/CreatePost")
        .expect("the access line");
    assert_eq!(access["trace_id"], trace_id.as_str());
    let span_id = access["span_id"].as_str().expect("span_id");
    assert!(spans.iter().any(|s| hex(&s.span_id) == span_id), "the line's span is exported");
    // Lines outside any request have no trace id.
    assert!(lines.iter().filter(|l| l.get("span").is_none()).all(|l| l.get("trace_id").is_none()));
}

#[sqlx::test]
async fn no_span_attribute_holds_an_email_phone_token_or_password(pool: PgPool) {
    let t = Traced::spawn(pool, |_| {}).await;
    let user = t.app.user("bob").await;
    create_post(&t, &user, &[]).await;
    let mut me = pb::auth_service_client::AuthServiceClient::new(t.app.channel.clone());
    me.who_am_i(user.req(pb::WhoAmIRequest {})).await.expect("whoami");
    // A failed login with a wrong password, a refresh with the refresh token.
    let _ =
        t.app.auth().login(pb::LoginRequest { login: "bob@example.com".into(), password: "wrong horse".into() }).await;
    let _ = t.app.auth().refresh(pb::RefreshRequest { refresh_token: user.refresh.clone() }).await;
    // A phone number in a community's contact directory (the manager writes it).
    let community = t.app.community("APARTMENT", "트레이스 1단지").await;
    t.app.add_member(&community, &user, "APPROVED", "MANAGER").await;
    let phone = "010-9876-5432";
    pb::contact_service_client::ContactServiceClient::new(t.app.channel.clone())
        .create_contact(user.req(pb::CreateContactRequest {
            community_id: community,
            name: "관리사무소".into(),
            phone: phone.into(),
            category: "관리".into(),
            description: String::new(),
            request_id: String::new(),
        }))
        .await
        .expect("create contact");
    // A password change, a reset request for the address, a logout.
    let new_password = "another horse battery";
    let _ = t
        .app
        .auth()
        .change_password(
            user.req(pb::ChangePasswordRequest { old_password: PASSWORD.into(), new_password: new_password.into() }),
        )
        .await;
    let _ = t
        .app
        .auth()
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: "bob@example.com".into(),
            lang: String::new(),
        })
        .await;
    let _ = t.app.auth().logout(pb::LogoutRequest { refresh_token: user.refresh.clone() }).await;
    let spans = t.flush().await;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for rpc in [
        "maru.v1.AuthService/SignUp",
        "maru.v1.AuthService/Login",
        "maru.v1.AuthService/Refresh",
        "maru.v1.ContactService/CreateContact",
        "maru.v1.AuthService/ChangePassword",
        "maru.v1.AuthService/RequestPasswordReset",
        "maru.v1.AuthService/Logout",
    ] {
        assert!(names.contains(&rpc), "{rpc} exported: {names:?}");
    }
    let forbidden = [
        "bob@example.com",
        PASSWORD,
        "wrong horse",
        new_password,
        user.token.as_str(),
        user.refresh.as_str(),
        "Bearer",
        phone,
        "98765432",
    ];
    let mut values = Vec::new();
    for s in &spans {
        values.push(s.name.clone());
        values.extend(s.status.as_ref().map(|st| st.message.clone()));
        for kv in s.attributes.iter().chain(s.events.iter().flat_map(|e| e.attributes.iter())) {
            values.push(format!("{}={:?}", kv.key, kv.value));
        }
    }
    for v in &values {
        for f in forbidden {
            assert!(!v.contains(f), "`{f}` in an exported span: {v}");
        }
        assert!(!v.contains('@'), "an email-like value in an exported span: {v}");
        // A Korean mobile number, with or without separators.
        let digits: String = v.chars().filter(char::is_ascii_digit).collect();
        assert!(!(v.contains("010-") || digits.contains("010") && digits.len() == 11), "a phone number: {v}");
    }
}

#[sqlx::test]
async fn a_trusted_proxys_traceparent_is_continued_and_an_untrusted_one_is_not(pool: PgPool) {
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{parent_trace}-{parent_span}-01");

    let t = Traced::spawn(pool.clone(), |_| {}).await;
    let user = t.app.user("carol").await;
    let (trace_id, _) = create_post(&t, &user, &[("traceparent", &traceparent), ("tracestate", "vendor=x")]).await;
    assert_eq!(trace_id, parent_trace, "the response names the caller's trace");
    let spans = of_trace(&t.flush().await, parent_trace);
    let root = spans.iter().find(|s| s.name == "maru.v1.FeedService/CreatePost").expect("the RPC's span");
    assert_eq!(hex(&root.parent_span_id), parent_span, "the caller's span is the parent");
    assert_eq!(root.trace_state, "vendor=x");
    assert!(
        spans.iter().any(|s| s.name == "insert into posts"),
        "its statements are in the same trace: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    t.stop().await;

    // The same header from a peer that is not a trusted proxy starts a new trace.
    let t = Traced::spawn(pool, |s| s.rate_limit.trusted_proxies.clear()).await;
    let user = t.app.user("dave").await;
    let (trace_id, _) = create_post(&t, &user, &[("traceparent", &traceparent)]).await;
    assert_ne!(trace_id, parent_trace);
    let spans = t.flush().await;
    assert!(of_trace(&spans, parent_trace).is_empty());
    let root = of_trace(&spans, &trace_id).into_iter().find(|s| s.name == "maru.v1.FeedService/CreatePost").unwrap();
    assert!(root.parent_span_id.is_empty(), "a root of its own");
}

#[sqlx::test]
async fn the_ratio_drops_traces_but_slow_and_failed_ones_are_kept_whole(pool: PgPool) {
    // Ratio 0 and no tail rules: nothing is exported, though the trace id is still answered.
    let t = Traced::spawn(pool.clone(), |s| {
        s.trace.sample_ratio = 0.0;
        s.trace.keep_errors = false;
        s.trace.slow_threshold_ms = 0;
    })
    .await;
    let user = t.app.user("erin").await;
    let (trace_id, _) = create_post(&t, &user, &[]).await;
    assert!(t.flush().await.is_empty(), "ratio 0 exports nothing (trace {trace_id})");
    t.stop().await;

    // Ratio 0, errors kept: an UNIMPLEMENTED call is exported, a successful one is not.
    let t = Traced::spawn(pool.clone(), |s| {
        s.trace.sample_ratio = 0.0;
        s.trace.keep_errors = true;
        s.trace.slow_threshold_ms = 0;
    })
    .await;
    let user = t.app.user("frank").await;
    let (ok_trace, _) = create_post(&t, &user, &[]).await;
    let mut grpc = tonic::client::Grpc::new(t.app.channel.clone());
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/maru.v1.NoSuchService/Nope"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let spans = t.flush().await;
    assert!(of_trace(&spans, &ok_trace).is_empty(), "the successful call is dropped");
    let failed: Vec<&Span> = spans.iter().filter(|s| attr_int(s, "rpc.grpc.status_code") == Some(12)).collect();
    assert_eq!(failed.len(), 1, "the failed call is kept: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    assert_eq!(failed[0].status.as_ref().map(|s| s.code), Some(2), "status ERROR");
    t.stop().await;

    // Ratio 0, slow threshold 1 ms: a CreatePost (a transaction in a debug build) is slower, and
    // its whole trace — children recorded before the root ended — is exported.
    let t = Traced::spawn(pool, |s| {
        s.trace.sample_ratio = 0.0;
        s.trace.keep_errors = false;
        s.trace.slow_threshold_ms = 1;
    })
    .await;
    let user = t.app.user("grace").await;
    let (trace_id, _) = create_post(&t, &user, &[]).await;
    let spans = of_trace(&t.flush().await, &trace_id);
    let root = spans.iter().find(|s| s.name == "maru.v1.FeedService/CreatePost").expect("the slow root is kept");
    assert!(root.end_time_unix_nano - root.start_time_unix_nano >= Duration::from_millis(1).as_nanos() as u64);
    assert!(spans.iter().any(|s| s.name == "insert into posts" && descends(&spans, s, root)), "with its children");
}

#[sqlx::test]
async fn an_openmetrics_scrape_links_a_latency_bucket_to_the_trace_of_a_sampled_request(pool: PgPool) {
    let t = Traced::spawn(pool, |_| {}).await;
    let user = t.app.user("hana").await;
    let (_, post) = create_post(&t, &user, &[]).await;
    // GetPost: a method no other traced test calls (the exemplars are the process's).
    fresh_interest();
    let resp = t.feed().get_post(user.req(pb::GetPostRequest { post_id: post.id.clone() })).await.expect("get post");
    let trace_id = resp.metadata().get("x-trace-id").expect("x-trace-id").to_str().unwrap().to_owned();

    let url = format!("http://{}/metrics", t.app.admin_addr);
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let resp = reqwest::Client::new().get(&url).header("accept", prometheus).send().await.unwrap();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text; version=1.0.0"), "{ctype}");
    let om = resp.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE grpc_server_handled counter\n"), "counter families without _total");
    let exemplar = format!(r#"# {{trace_id="{trace_id}"}} "#);
    let bucket = om
        .lines()
        .find(|l| {
            l.starts_with("grpc_server_handling_seconds_bucket{")
                && l.contains(r#"grpc_method="GetPost""#)
                && l.contains(&exemplar)
        })
        .unwrap_or_else(|| panic!("no GetPost bucket names trace {trace_id}"));
    // `… <count> # {trace_id="…"} <seconds> <unix time>`
    let after: Vec<&str> = bucket.split(&exemplar).nth(1).unwrap().split(' ').collect();
    assert_eq!(after.len(), 2, "{bucket}");
    let secs: f64 = after[0].parse().unwrap();
    let le: f64 =
        bucket.split(r#"le=""#).nth(1).unwrap().split('"').next().unwrap().replace("+Inf", "inf").parse().unwrap();
    assert!(secs > 0.0 && secs <= le, "{bucket}");
    assert!(after[1].parse::<f64>().unwrap() > 1.7e9, "a Unix timestamp in seconds: {bucket}");

    // Anyone else still gets the text format, without exemplars.
    let resp = reqwest::get(&url).await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(!text.contains("trace_id") && !text.contains("# EOF"));
    assert!(text.contains("# TYPE grpc_server_handled_total counter\n"));
    t.stop().await;
}

/// A one-shot command (`maru ingest trials`) exports its spans before the process exits: the
/// receiver holds them when the process is gone, one trace under a `cli.ingest` root.
#[sqlx::test]
async fn a_cli_command_flushes_its_spans_before_it_exits(pool: PgPool) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let o = pool.connect_options();
    let url =
        format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), o.get_database().unwrap());
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clinical-trials-3074271.json");
    // tokio's process: the receiver answers on this (current-thread) runtime meanwhile.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_maru"))
        .args(["ingest", "trials", "--from-file", fixture])
        .env("MARU__DATABASE__URL", &url)
        .env("MARU__REDIS__KEY_PREFIX", format!("maru-test-cli-trace-{}:", uuid::Uuid::new_v4().simple()))
        .env("MARU__LOG__LEVEL", "error")
        .env("MARU__TRACE__OTLP_ENDPOINT", format!("http://{addr}"))
        .env("MARU__TRACE__SAMPLE_RATIO", "1.0")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let spans = collector.0.lock().unwrap().spans.clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let root = spans.iter().find(|s| s.name == "cli.ingest").unwrap_or_else(|| panic!("the command's root: {names:?}"));
    assert!(root.parent_span_id.is_empty(), "a root");
    let trace = of_trace(&spans, &hex(&root.trace_id));
    assert!(trace.len() > 2, "the command's work is in its trace: {names:?}");
    assert!(trace.iter().all(|s| s.span_id == root.span_id || descends(&trace, s, root)));
    assert!(
        trace.iter().any(|s| attr_str(s, "db.system.name").as_deref() == Some("postgresql")),
        "its statements: {names:?}"
    );
    assert!(trace.iter().all(|s| s.end_time_unix_nano <= root.end_time_unix_nano));
}

/// A trace the ratio dropped but the tail rules kept (slow) still gives its exemplar, recorded
/// when the trace is decided.
#[sqlx::test]
async fn a_slow_request_kept_by_the_tail_rules_is_an_exemplar_too(pool: PgPool) {
    let t = Traced::spawn(pool, |s| {
        s.trace.sample_ratio = 0.0;
        s.trace.keep_errors = false;
        s.trace.slow_threshold_ms = 1;
    })
    .await;
    let user = t.app.user("ivan").await;
    let (_, post) = create_post(&t, &user, &[]).await;
    // CreateComment (a transaction, slower than 1 ms in a debug build like CreatePost above): a
    // method no other traced test calls.
    fresh_interest();
    let resp = t
        .feed()
        .create_comment(user.req(pb::CreateCommentRequest {
            post_id: post.id.clone(),
            text: "traced comment".into(),
            ..Default::default()
        }))
        .await
        .expect("create comment");
    let trace_id = resp.metadata().get("x-trace-id").expect("x-trace-id").to_str().unwrap().to_owned();
    let spans = of_trace(&t.flush().await, &trace_id);
    assert!(spans.iter().any(|s| s.name == "maru.v1.FeedService/CreateComment"), "the slow call is kept");

    let om = reqwest::Client::new()
        .get(format!("http://{}/metrics", t.app.admin_addr))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        om.lines().any(|l| l.starts_with("grpc_server_handling_seconds_bucket{")
            && l.contains(r#"grpc_method="CreateComment""#)
            && l.contains(&format!(r#"# {{trace_id="{trace_id}"}} "#))),
        "no CreateComment bucket names the kept trace {trace_id}"
    );
    t.stop().await;
}
