//! Server-wide behaviour: health and shutdown, readiness, reflection, gRPC-web with CORS,
//! request ids, deadlines, message limits, statuses tonic builds itself, Redis outage, CLI.

use std::collections::HashMap;
use std::time::Duration;

use maru::app::Application;
use maru::grpc::pb;
use prost::Message;
use sqlx::PgPool;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

use crate::helpers::*;

#[sqlx::test]
async fn health_flips_to_not_serving_before_the_drain(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.grpc.shutdown_grace_ms = 400;
        s.grpc.drain_timeout_ms = 1000;
    })
    .await;
    let mut health = app.health();
    for service in ["", "maru.v1.AuthService", "maru.v1.AdminService"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }
    let r = health.check(HealthCheckRequest { service: "maru.v1.Nope".into() }).await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);

    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status, ServingStatus::Serving as i32);

    app.shutdown.shutdown();
    let next =
        tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("a status update").unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // During the grace period the server still answers, but reports not ready.
    let ready = reqwest::get(format!("http://{}/readyz", app.admin_addr)).await.unwrap();
    assert_eq!(ready.status(), 503);
    app.auth().login(pb::LoginRequest { login: "nobody".into(), password: PASSWORD.into() }).await.unwrap_err();
    // The drain is bounded even with the Watch stream still open.
    tokio::time::timeout(Duration::from_secs(15), app.task).await.expect("server stops").unwrap().unwrap();
}

#[sqlx::test]
async fn the_admin_port_stays_up_until_the_grpc_listener_has_drained(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.grpc.shutdown_grace_ms = 100;
        s.grpc.drain_timeout_ms = 2_000;
    })
    .await;
    // An open Watch stream keeps the drain going until its timeout.
    let mut watch = app.health().watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    app.shutdown.shutdown();
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // Past the grace period the gRPC listener is closed ...
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(app.grpc_addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the gRPC listener closes after the grace period");
    // ... while the drain still runs, the admin port answers: not ready, metrics scraped.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!app.task.is_finished());
    let ready = reqwest::get(format!("http://{}/readyz", app.admin_addr)).await.unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = reqwest::get(format!("http://{}/metrics", app.admin_addr)).await.unwrap();
    assert_eq!(metrics.status(), 200);
    tokio::time::timeout(Duration::from_secs(10), app.task).await.expect("server stops").unwrap().unwrap();
    // Then it is gone too.
    assert!(reqwest::get(format!("http://{}/healthz", app.admin_addr)).await.is_err());
}

#[test]
fn the_default_shutdown_grace_lets_balancers_see_not_serving() {
    assert!(maru::config::Settings::default().grpc.shutdown_grace_ms >= 2_000);
}

#[sqlx::test]
async fn not_serving_until_the_database_is_ready_and_created_when_missing(pool: PgPool) {
    let name = format!("maru_create_{}", uuid::Uuid::new_v4().simple());
    let base = pool.connect_options();
    let url = format!("postgres://{}@{}:{}/{}", base.get_username(), base.get_host(), base.get_port(), name);

    // Without permission to create it, the server waits: NOT_SERVING, calls refused with retry info.
    let mut s = test_settings();
    s.database.url = url.clone().into();
    s.database.create_if_missing = false;
    let app = Application::build(s).await.unwrap();
    let (addr, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(r.status, ServingStatus::NotServing as i32);
    let r = pb::auth_service_client::AuthServiceClient::new(channel)
        .login(pb::LoginRequest { login: "x".into(), password: PASSWORD.into() })
        .await;
    let status = assert_err(r, Code::Unavailable, "NOT_READY");
    assert!(status.get_details_retry_info().is_some());
    assert_eq!(reqwest::get(format!("http://{admin}/readyz")).await.unwrap().status(), 503);
    stop.shutdown();
    task.await.unwrap().unwrap();

    // With it, the database is created and migrated, then SERVING.
    let mut s = test_settings();
    s.database.url = url.into();
    let app = Application::build(s).await.unwrap();
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr())).unwrap().connect().await.unwrap();
    let stop = app.shutdown_handle();
    let state = app.state();
    let task = tokio::spawn(app.run_until_stopped());
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut serving = false;
    for _ in 0..100 {
        let r = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        if r.status == ServingStatus::Serving as i32 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "server became SERVING after creating the database");
    pb::auth_service_client::AuthServiceClient::new(channel)
        .sign_up(pb::SignUpRequest { display_name: "Fresh".into(), ..sign_up_req("fresh", "fresh@example.com") })
        .await
        .unwrap();
    stop.shutdown();
    task.await.unwrap().unwrap();
    state.db.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("drop database \"{name}\" with (force)"))).execute(&pool).await.unwrap();
}

/// A reflection request, the same in v1 and v1alpha.
enum Ask {
    ListServices,
    FileContainingSymbol(String),
    FileByFilename(String),
}

/// A reflection response, the same in v1 and v1alpha.
#[derive(Debug)]
enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
}

/// One reflection request and its response, over a client of either version; an
/// `ErrorResponse` comes back as a status.
trait Reflect {
    async fn ask(&mut self, ask: Ask) -> Result<Answer, tonic::Status>;
}

macro_rules! reflect_with {
    ($version:ident) => {
        impl Reflect
            for tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient<
                tonic::transport::Channel,
            >
        {
            async fn ask(&mut self, ask: Ask) -> Result<Answer, tonic::Status> {
                use tonic_reflection::pb::$version::ServerReflectionRequest;
                use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
                use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
                let message_request = match ask {
                    Ask::ListServices => MessageRequest::ListServices(String::new()),
                    Ask::FileContainingSymbol(s) => MessageRequest::FileContainingSymbol(s),
                    Ask::FileByFilename(f) => MessageRequest::FileByFilename(f),
                };
                let req = ServerReflectionRequest { host: String::new(), message_request: Some(message_request) };
                let mut stream = self.server_reflection_info(tokio_stream::once(req)).await?.into_inner();
                let resp = stream.message().await?.expect("one response per request");
                Ok(match resp.message_response.expect("a response") {
                    MessageResponse::ListServicesResponse(l) => {
                        Answer::Services(l.service.into_iter().map(|s| s.name).collect())
                    }
                    MessageResponse::FileDescriptorResponse(f) => Answer::Files(f.file_descriptor_proto),
                    MessageResponse::ErrorResponse(e) => {
                        return Err(tonic::Status::new(e.error_code.into(), e.error_message));
                    }
                    other => panic!("unexpected reflection response {other:?}"),
                })
            }
        }
    };
}
reflect_with!(v1);
reflect_with!(v1alpha);

/// What `grpcurl describe` does: lists the services, fetches the file of each, then every file
/// those depend on. Panics on any failure; returns the service names and the raw files in
/// dependency order (as served, custom options included).
async fn describe_everything(client: &mut impl Reflect, version: &str) -> (Vec<String>, Vec<Vec<u8>>) {
    let Answer::Services(mut services) = client.ask(Ask::ListServices).await.unwrap() else {
        panic!("{version}: expected a service list");
    };
    services.sort();
    let mut files: HashMap<String, (Vec<u8>, Vec<String>)> = HashMap::new();
    let mut wanted = Vec::new();
    let add = |raw: Vec<u8>, files: &mut HashMap<_, _>, wanted: &mut Vec<String>| {
        let fd = prost_types::FileDescriptorProto::decode(raw.as_slice()).unwrap();
        wanted.extend(fd.dependency.iter().cloned());
        files.insert(fd.name().to_owned(), (raw, fd.dependency));
    };
    for service in &services {
        match client.ask(Ask::FileContainingSymbol(service.clone())).await {
            Ok(Answer::Files(raws)) => raws.into_iter().for_each(|raw| add(raw, &mut files, &mut wanted)),
            other => panic!("{version}: file_containing_symbol({service}): {other:?}"),
        }
    }
    while let Some(name) = wanted.pop() {
        if files.contains_key(&name) {
            continue;
        }
        match client.ask(Ask::FileByFilename(name.clone())).await {
            Ok(Answer::Files(raws)) => raws.into_iter().for_each(|raw| add(raw, &mut files, &mut wanted)),
            other => panic!("{version}: file_by_filename({name}): {other:?}"),
        }
    }
    // Dependencies first.
    fn visit(name: &str, files: &HashMap<String, (Vec<u8>, Vec<String>)>, out: &mut Vec<String>) {
        if out.iter().any(|n| n == name) {
            return;
        }
        for dep in &files[name].1 {
            visit(dep, files, out);
        }
        out.push(name.to_owned());
    }
    let mut order = Vec::new();
    let mut names: Vec<_> = files.keys().cloned().collect();
    names.sort();
    for name in &names {
        visit(name, &files, &mut order);
    }
    (services, order.iter().map(|n| files[n].0.clone()).collect())
}

#[sqlx::test]
async fn reflection_v1_and_v1alpha_describe_every_service_with_its_policy(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "maru.v1.AdminService",
        "maru.v1.AuthService",
        "maru.v1.ChatService",
        "maru.v1.CommunityService",
        "maru.v1.ComplaintService",
        "maru.v1.ContactService",
        "maru.v1.EventService",
        "maru.v1.FeedService",
        "maru.v1.IdentityService",
        "maru.v1.MediaService",
        "maru.v1.NoticeService",
        "maru.v1.PollService",
        "maru.v1.ProductService",
        "maru.v1.ProfileService",
        "maru.v1.ReportService",
        "maru.v1.ScheduleService",
        "maru.v1.SocialService",
        "maru.v1.TeamService",
        "maru.v1.TrialService",
    ];
    let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let mut v1alpha =
        tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let described = [describe_everything(&mut v1, "v1").await, describe_everything(&mut v1alpha, "v1alpha").await];
    for (version, (services, files)) in ["v1", "v1alpha"].iter().zip(described) {
        assert_eq!(services, expected, "{version}");
        // The files as a client sees them, decoded with their options: CheckIn's policy is there.
        let mut set = Vec::new();
        for raw in &files {
            prost::encoding::bytes::encode(1, raw, &mut set);
        }
        let pool = prost_reflect::DescriptorPool::decode(set.as_slice()).unwrap();
        let ext = pool.get_extension_by_name("maru.v1.policy").expect("the policy option is served");
        let check_in = pool
            .get_service_by_name("maru.v1.EventService")
            .and_then(|s| s.methods().find(|m| m.name() == "CheckIn"))
            .expect("CheckIn");
        let options = check_in.options();
        assert!(options.has_extension(&ext), "{version}: CheckIn's options lost the policy");
        let policy: pb::Policy = options.get_extension(&ext).as_message().unwrap().transcode_to().unwrap();
        assert_eq!((policy.rate_class(), policy.caller()), (pb::RateClass::Write, pb::Caller::Required), "{version}");
    }

    // Error details resolve, so grpcurl can print them.
    let found = v1alpha.ask(Ask::FileContainingSymbol("google.rpc.ErrorInfo".into())).await.unwrap();
    assert!(matches!(found, Answer::Files(_)), "{found:?}");
    // A symbol no file defines: NOT_FOUND with the catalogued reason, not INTERNAL.
    let r = v1.ask(Ask::FileContainingSymbol("maru.v1.NoSuchThing".into())).await;
    assert_err(r, Code::NotFound, "NOT_FOUND");
}

#[sqlx::test]
async fn health_of_an_unknown_service_is_not_found_service_unknown(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app.health().check(HealthCheckRequest { service: "maru.v1.NoSuchService".into() }).await;
    assert_err(r, Code::NotFound, "SERVICE_UNKNOWN");
    let r = app.health().watch(HealthCheckRequest { service: "maru.v1.NoSuchService".into() }).await;
    assert_err(r, Code::NotFound, "SERVICE_UNKNOWN");
    let known = app.health().check(HealthCheckRequest { service: "maru.v1.EventService".into() }).await.unwrap();
    assert_eq!(known.into_inner().status, ServingStatus::Serving as i32);
}

/// A gRPC-web frame around `msg`.
fn grpc_web_body(msg: &impl Message) -> Vec<u8> {
    let bytes = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Splits a gRPC-web response body into its message payloads and its trailers.
fn grpc_web_parse(body: &[u8]) -> (Vec<Vec<u8>>, HashMap<String, String>) {
    let (mut messages, mut trailers) = (Vec::new(), HashMap::new());
    let mut rest = body;
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n").filter(|l| !l.is_empty()) {
                let (k, v) = line.split_once(':').unwrap();
                trailers.insert(k.trim().to_lowercase(), v.trim().to_owned());
            }
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    (messages, trailers)
}

/// The `grpc-status` of a gRPC-web response (headers for trailers-only answers, else the
/// trailer frame) and whether it carries `grpc-status-details-bin`.
async fn grpc_web_status(resp: reqwest::Response) -> (Option<String>, bool) {
    let headers = resp.headers().clone();
    let (_, trailers) = grpc_web_parse(&resp.bytes().await.unwrap());
    let status =
        headers.get("grpc-status").map(|v| v.to_str().unwrap().to_owned()).or(trailers.get("grpc-status").cloned());
    (status, headers.contains_key("grpc-status-details-bin") || trailers.contains_key("grpc-status-details-bin"))
}

#[sqlx::test]
async fn grpc_web_over_http1_with_cors(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let url = |m: &str| format!("http://{}/maru.v1.AuthService/{m}", app.grpc_addr);

    // CORS preflight from a browser.
    let pre = http
        .request(reqwest::Method::OPTIONS, url("SignUp"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,authorization")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert!(pre.headers().get("access-control-allow-origin").is_some());
    // Listed by name: a `*` does not cover `authorization` by the Fetch standard.
    let allowed = pre.headers().get("access-control-allow-headers").unwrap().to_str().unwrap().to_lowercase();
    let allowed: Vec<&str> = allowed.split(',').map(str::trim).collect();
    for h in ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "x-request-id"] {
        assert!(allowed.contains(&h), "{h} is not in {allowed:?}");
    }

    let req = pb::SignUpRequest { display_name: "Web".into(), ..sign_up_req("webby", "webby@example.com") };
    let resp = http
        .post(url("SignUp"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", "https://app.example")
        .header("x-request-id", "web-req-1")
        .body(grpc_web_body(&req))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let expose = resp.headers().get("access-control-expose-headers").unwrap().to_str().unwrap().to_lowercase();
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"] {
        assert!(expose.contains(h), "{expose}");
    }
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "web-req-1");
    let (messages, trailers) = grpc_web_parse(&resp.bytes().await.unwrap());
    assert_eq!(trailers.get("grpc-status").map(String::as_str), Some("0"));
    let user = pb::SignUpResponse::decode(messages[0].as_slice()).unwrap().user.unwrap();
    assert_eq!(user.handle, "webby");

    // An error reaches the browser with its status and details.
    let resp = http
        .post(url("WhoAmI"))
        .header("content-type", "application/grpc-web+proto")
        .header("origin", "https://app.example")
        .body(grpc_web_body(&pb::WhoAmIRequest {}))
        .send()
        .await
        .unwrap();
    let (status, has_details) = grpc_web_status(resp).await;
    assert_eq!(status.as_deref(), Some("16"));
    assert!(has_details);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"grpc_server_handled_total{grpc_type="unary",grpc_service="maru.v1.AuthService",grpc_method="SignUp",protocol="grpc_web",grpc_code="OK"}"#),
        "{metrics}"
    );
}

#[sqlx::test]
async fn request_ids_are_echoed_and_in_error_details(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut r = tonic::Request::new(pb::WhoAmIRequest {});
    r.metadata_mut().insert("x-request-id", "trace-me-42".parse().unwrap());
    let status = app.auth().who_am_i(r).await.unwrap_err();
    assert_eq!(status.metadata().get("x-request-id").unwrap(), "trace-me-42");
    assert_eq!(status.get_details_request_info().unwrap().request_id, "trace-me-42");

    let ok = app.auth().login(pb::LoginRequest { login: "x".into(), password: PASSWORD.into() }).await.unwrap_err();
    let generated = ok.metadata().get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32, "generated ids are UUIDv7 hex");
}

#[sqlx::test]
async fn slow_calls_hit_the_server_deadline(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.request_timeout_ms = 1).await;
    let r = app
        .auth()
        .sign_up(pb::SignUpRequest { display_name: "Slow".into(), ..sign_up_req("slowpoke", "slow@example.com") })
        .await;
    assert_err(r, Code::DeadlineExceeded, "DEADLINE_EXCEEDED");
}

#[sqlx::test]
async fn a_client_deadline_is_deadline_exceeded_with_error_info_every_time(pool: PgPool) {
    // tonic enforces `grpc-timeout` itself, outside maru's layers (answering CANCELLED); maru's
    // own deadline must win that race every time. Sent over gRPC-web with reqwest, which does not
    // enforce the deadline on the client side as tonic's client would.
    let app = TestApp::spawn(pool).await;
    let http = reqwest::Client::new();
    for i in 0..20 {
        let req = pb::SignUpRequest {
            display_name: "Hurried".into(),
            ..sign_up_req(&format!("hurried{i}"), &format!("hurried{i}@example.com"))
        };
        let resp = http
            .post(format!("http://{}/maru.v1.AuthService/SignUp", app.grpc_addr))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("grpc-timeout", format!("{}m", 1 + i % 3))
            .body(grpc_web_body(&req))
            .send()
            .await
            .unwrap();
        let (status, details) = grpc_web_status(resp).await;
        assert_eq!(status.as_deref(), Some("4"), "call {i}: DEADLINE_EXCEEDED expected");
        assert!(details, "call {i}: the status carries ErrorInfo");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"grpc_method="SignUp",protocol="grpc_web",grpc_code="DeadlineExceeded"} 20"#),
        "{}",
        metrics.lines().filter(|l| l.contains("SignUp")).collect::<Vec<_>>().join("\n")
    );
}

#[sqlx::test]
async fn oversized_malformed_and_unknown_calls_get_designed_errors(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.max_message_bytes = 1024).await;
    let r = app
        .auth()
        .sign_up(pb::SignUpRequest { display_name: "x".repeat(4096), ..sign_up_req("big", "big@example.com") })
        .await;
    assert_err(r, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");

    // Bytes that are not a SignUpRequest: INVALID_ARGUMENT, never INTERNAL.
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let garbage = [0u8, 0, 0, 0, 3, 0xff, 0xff, 0xff];
    let resp = http
        .post(format!("http://{}/maru.v1.AuthService/SignUp", app.grpc_addr))
        .header("content-type", "application/grpc-web+proto")
        .body(garbage.to_vec())
        .send()
        .await
        .unwrap();
    let (status, has_details) = grpc_web_status(resp).await;
    assert_eq!(status.as_deref(), Some("3"));
    assert!(has_details);
    // A frame announcing 16 bytes but carrying 2: still the client's fault.
    let truncated = [0u8, 0, 0, 0, 16, 0x0a, 0x03];
    let resp = http
        .post(format!("http://{}/maru.v1.AuthService/SignUp", app.grpc_addr))
        .header("content-type", "application/grpc-web+proto")
        .body(truncated.to_vec())
        .send()
        .await
        .unwrap();
    let (status, has_details) = grpc_web_status(resp).await;
    assert_eq!(status.as_deref(), Some("3"));
    assert!(has_details);

    // An unknown method: UNIMPLEMENTED with ErrorInfo.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<pb::WhoAmIRequest, pb::WhoAmIResponse>::default();
    let path = http::uri::PathAndQuery::from_static("/maru.v1.AuthService/NoSuchMethod");
    let r = grpc.unary(tonic::Request::new(pb::WhoAmIRequest {}), path, codec).await;
    assert_err(r, Code::Unimplemented, "UNIMPLEMENTED");
}

/// Every maru service applies `grpc.max_message_bytes` (set in one place for all of them): a
/// request over it is RESOURCE_EXHAUSTED `MESSAGE_TOO_LARGE` before anything decodes it.
#[sqlx::test]
async fn every_service_refuses_oversized_messages(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.grpc.max_message_bytes = 1024).await;
    let mut unary: Vec<(&str, &str)> = maru::grpc::methods()
        .values()
        .filter(|m| m.service.starts_with("maru.") && m.grpc_type == maru::grpc::GrpcType::Unary)
        .map(|m| (m.service, m.method))
        .collect();
    unary.sort_unstable();
    unary.dedup_by_key(|(service, _)| *service);
    assert_eq!(unary.len(), maru::grpc::maru_services().len(), "one unary method of every service");
    // An admin may call every method, so the caller rule (checked before the message is read)
    // never answers first.
    let admin = app.admin_user("bigsender").await;
    for (service, method) in unary {
        let mut grpc = tonic::client::Grpc::new(app.channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<pb::SignUpRequest, pb::WhoAmIResponse>::default();
        let path: http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
        let big = pb::SignUpRequest { display_name: "x".repeat(4096), ..Default::default() };
        let r = grpc.unary(admin.req(big), path, codec).await;
        let status = r.expect_err(service);
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
            "{service}"
        );
    }
}

#[sqlx::test]
async fn serves_without_redis(pool: PgPool) {
    let captured = crate::logs::capture();
    let app = TestApp::spawn_with(pool, |s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    assert!(!app.state.cache.is_up());
    // Unreachable from the start: still one warning (the capture is process-wide, so only presence).
    for _ in 0..100 {
        if captured.stdout_text().contains("redis unreachable: cache bypassed until it returns") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(captured.stdout_text().contains("redis unreachable: cache bypassed until it returns"));
    let u = app.user("offline").await;
    for _ in 0..2 {
        let me = app.auth().who_am_i(u.req(pb::WhoAmIRequest {})).await.unwrap().into_inner();
        assert_eq!(me.user.unwrap().handle, "offline");
    }
    assert!(!app.state.cache.is_up(), "still bypassing");
    // The gauge is process-wide (other test servers share it), so only its presence is checked.
    let metrics = app.metrics().await;
    assert!(metrics.contains("maru_redis_up "), "{metrics}");
    assert!(metrics.contains(r#"maru_cache_requests_total{cache="user",result="bypass"}"#));
}

#[sqlx::test]
async fn role_change_is_visible_at_once_through_the_cache(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("promoted").await;
    let role = |app: &TestApp, u: &TestUser| {
        let mut c = app.auth();
        let r = u.req(pb::WhoAmIRequest {});
        async move { c.who_am_i(r).await.unwrap().into_inner().user.unwrap().role }
    };
    assert_eq!(role(&app, &u).await, pb::Role::User as i32);
    assert_eq!(role(&app, &u).await, pb::Role::User as i32); // cached now
    maru::accounts::ops::set_role(&app.state, "promoted", maru::caller::Role::Admin).await.unwrap();
    assert_eq!(role(&app, &u).await, pb::Role::Admin as i32);
}

fn maru_cli(pool: &PgPool, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let o = pool.connect_options();
    let url =
        format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), o.get_database().unwrap());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_maru"));
    cmd.args(args)
        .env("MARU__DATABASE__URL", url)
        .env("MARU__REDIS__URL", "redis://127.0.0.1:1")
        .env("MARU__LOG__LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[sqlx::test]
async fn cli_grants_and_revokes_admin(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.sign_up("firstadmin").await;
    let out = maru_cli(&pool, &["admin", "grant", "firstadmin"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let login = app.login("firstadmin").await;
    assert_eq!(login.user.unwrap().role, pb::Role::Admin as i32);
    let out = maru_cli(&pool, &["admin", "revoke", "firstadmin"], &[]);
    assert!(out.status.success());
    assert_eq!(app.login("firstadmin").await.user.unwrap().role, pb::Role::User as i32);
    let out = maru_cli(&pool, &["admin", "grant", "nobody"], &[]);
    assert!(!out.status.success());
}

#[sqlx::test]
async fn check_config_masks_secrets_and_reports_every_problem(pool: PgPool) {
    let out = maru_cli(&pool, &["check-config"], &[("MARU__AUTH__JWT_KEY", "super-secret-key-value-0123456789abcdef")]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("super-secret-key-value"), "{text}");
    assert!(text.contains("grpc.listen = \"127.0.0.1:50051\""), "{text}");

    let out = maru_cli(
        &pool,
        &["check-config"],
        &[("MARU__GRPC__LISTEN", "nowhere"), ("MARU__DATABASE__MAX_CONNECTIONS", "0"), ("MARU__ENV", "production")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["grpc.listen", "database.max_connections", "auth.jwt_key"] {
        assert!(err.contains(field), "{err}");
    }
}

/// Values of the wrong type are all reported, each naming its variable (serde alone stops at
/// the first).
#[sqlx::test]
async fn check_config_reports_every_value_of_the_wrong_type(pool: PgPool) {
    let out = maru_cli(
        &pool,
        &["check-config"],
        &[("MARU__ENV", "prod"), ("MARU__DATABASE__MAX_CONNECTIONS", "abc"), ("MARU__GRPC__REQUEST_TIMEOUT_MS", "x")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for var in ["MARU__ENV", "MARU__DATABASE__MAX_CONNECTIONS", "MARU__GRPC__REQUEST_TIMEOUT_MS"] {
        assert!(err.contains(var), "{var} missing: {err}");
    }
}

#[sqlx::test]
async fn concurrent_misses_of_one_key_and_version_share_one_load(pool: PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    let app = TestApp::spawn(pool).await;
    assert!(app.state.cache.is_up(), "this test needs Redis");
    let cache = app.state.cache.clone();
    let loads = Arc::new(AtomicUsize::new(0));
    // Every load takes 200 ms; the `fail_first` first load fails instead of answering.
    let read = |n: u32, fail_first: bool| {
        let (cache, loads) = (cache.clone(), loads.clone());
        async move {
            cache
                .get_or_load("feed_page", "test:coalesce", Duration::from_secs(60), || async move {
                    let nth = loads.fetch_add(1, SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if fail_first && nth == 0 {
                        return Err(maru::error::AppError::internal("the first load fails"));
                    }
                    Ok(n)
                })
                .await
        }
    };

    let values = futures::future::join_all((0..20).map(|n| read(n, false))).await;
    assert_eq!(loads.load(SeqCst), 1, "20 concurrent misses, one load");
    let first = *values[0].as_ref().unwrap();
    assert!(values.iter().all(|v| v.as_ref().ok() == Some(&first)), "{values:?}");
    assert_eq!(read(99, false).await.unwrap(), first, "filled: a hit");
    assert_eq!(loads.load(SeqCst), 1);

    // A write moves the version: the next misses load again, and get the new value.
    cache.invalidate(&["test:coalesce".into()]).await;
    let values = futures::future::join_all((100..110).map(|n| read(n, false))).await;
    assert_eq!(loads.load(SeqCst), 2);
    assert!(values.iter().all(|v| v.as_ref().ok() == values[0].as_ref().ok()), "{values:?}");

    // A failing load does not strand the readers waiting on it: each loads for itself.
    cache.invalidate(&["test:coalesce".into()]).await;
    loads.store(0, SeqCst);
    let leader = tokio::spawn(read(0, true));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let followers = futures::future::join_all((1..4).map(|n| read(n, true))).await;
    assert!(leader.await.unwrap().is_err(), "the failed load's own caller sees its error");
    assert!(followers.iter().all(Result::is_ok), "{followers:?}");
    assert!(loads.load(SeqCst) >= 2, "followers loaded after the failure");
}

#[sqlx::test]
async fn start_up_warns_about_postgresql_settings_that_stale_the_planner(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let (autovacuum,): (String,) = sqlx::query_as("show autovacuum").fetch_one(&mut *conn).await.unwrap();
    let warnings = maru::db::setting_warnings(&mut *conn).await.unwrap();
    assert_eq!(
        warnings.iter().any(|w| w.contains("autovacuum = off")),
        autovacuum == "off",
        "autovacuum is {autovacuum}: {warnings:?}"
    );
    assert!(!warnings.iter().any(|w| w.contains("track_counts")), "{warnings:?}");
    // track_counts can be turned off for one session (superuser): the check reads the session's.
    sqlx::query("set track_counts = off").execute(&mut *conn).await.unwrap();
    let warnings = maru::db::setting_warnings(&mut *conn).await.unwrap();
    assert!(warnings.iter().any(|w| w.contains("track_counts = off")), "{warnings:?}");
    sqlx::query("reset track_counts").execute(&mut *conn).await.unwrap();

    // The server says so in its log once it is ready.
    let captured = crate::logs::capture();
    let _app = TestApp::spawn(pool).await;
    if autovacuum == "off" {
        for _ in 0..100 {
            if captured.stdout_text().contains("autovacuum = off") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(captured.stdout_text().contains("autovacuum = off"));
    }
}

#[sqlx::test]
async fn scoped_reads_follow_their_scopes_versions_in_one_round_trip(pool: PgPool) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use maru::cache::Cache;

    let app = TestApp::spawn(pool).await;
    assert!(app.state.cache.is_up(), "this test needs Redis");
    let cache = app.state.cache.clone();
    let loads = Arc::new(AtomicUsize::new(0));
    let scopes = ["test:all".to_owned(), "test:scope".to_owned()];
    let read = |n: u32| {
        let (cache, loads, scopes) = (cache.clone(), loads.clone(), scopes.clone());
        async move {
            cache
                .get_or_load_scoped("feed_page", &scopes, "test:entry", Duration::from_secs(60), || async move {
                    loads.fetch_add(1, SeqCst);
                    Ok::<_, maru::error::AppError>(n)
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(read(1).await, 1);
    assert_eq!(read(2).await, 1, "filled: a hit");
    assert_eq!(loads.load(SeqCst), 1);
    // Either scope moves the key.
    for (i, scope) in scopes.iter().enumerate() {
        cache.invalidate(std::slice::from_ref(scope)).await;
        let n = 10 + i as u32;
        assert_eq!(read(n).await, n, "after invalidating {scope}");
        assert_eq!(read(99).await, n);
    }
    assert_eq!(loads.load(SeqCst), 3);
    // The key under the current versions can be invalidated on its own (one profile).
    let versions = cache.versions(&scopes).await.unwrap();
    assert_eq!(versions, ["1", "1"], "each scope bumped once");
    cache.invalidate(&[Cache::scoped_key("test:entry", &versions)]).await;
    assert_eq!(read(20).await, 20);
    assert_eq!(loads.load(SeqCst), 4);
    // Other bases under the same scopes are their own entries.
    let other = cache
        .get_or_load_scoped("feed_page", &scopes, "test:other", Duration::from_secs(60), || async {
            Ok::<_, maru::error::AppError>(7u32)
        })
        .await
        .unwrap();
    assert_eq!((other, read(21).await), (7, 20));
}
