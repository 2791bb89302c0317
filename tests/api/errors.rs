//! Honest errors (issue 14, points 6–8): bad input is INVALID_ARGUMENT with a field violation,
//! never INTERNAL; malformed framing is `MALFORMED_MESSAGE`; echoed input is bounded; a lost
//! database connection is UNAVAILABLE with RetryInfo; a committed write is never answered with
//! a retryable error.

use bytes::Bytes;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use sqlx::PgPool;
use tonic::{Code, Status};

use maru::grpc::pb;

use crate::helpers::*;

#[path = "../support/raw_codec.rs"]
mod raw_codec;
use raw_codec::RawCodec;

/// Sends `body` to `path` as `token`.
async fn send(app: &TestApp, path: &str, token: &str, body: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    grpc.unary(bearer(token, body), path, RawCodec).await.map(tonic::Response::into_inner)
}

/// Every unary method of maru's services: path and input type.
fn unary_methods() -> Vec<(String, MessageDescriptor)> {
    let pool = DescriptorPool::decode(maru::grpc::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for service in pool.services().filter(|s| s.full_name().starts_with("maru.")) {
        for m in service.methods().filter(|m| !m.is_client_streaming() && !m.is_server_streaming()) {
            out.push((format!("/{}/{}", service.full_name(), m.name()), m.input()));
        }
    }
    out
}

/// The path of every string field of `desc` (nested messages included, to `depth`), as a
/// list of field descriptors from the top.
fn string_fields(desc: &MessageDescriptor, depth: usize) -> Vec<Vec<FieldDescriptor>> {
    let mut out = Vec::new();
    for f in desc.fields() {
        match f.kind() {
            Kind::String if !f.is_map() => out.push(vec![f.clone()]),
            Kind::Message(m) if depth > 0 && !f.is_map() && !m.full_name().starts_with("google.protobuf.") => {
                for mut sub in string_fields(&m, depth - 1) {
                    sub.insert(0, f.clone());
                    out.push(sub);
                }
            }
            _ => {}
        }
    }
    out
}

/// A message of `desc` with only the field at `path` set to `value` (lists get one item).
fn with_string(desc: &MessageDescriptor, path: &[FieldDescriptor], value: &str) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    let f = &path[0];
    let v = if path.len() == 1 {
        Value::String(value.to_owned())
    } else {
        let Kind::Message(m) = f.kind() else { unreachable!() };
        Value::Message(with_string(&m, &path[1..], value))
    };
    msg.set_field(f, if f.is_list() { Value::List(vec![v]) } else { v });
    msg
}

/// Point 7: PostgreSQL rejects NUL in text. Every string field of every request message (nested
/// ones too) holding a NUL, sent as an admin (who passes every caller rule), is answered with a
/// designed status, never INTERNAL or UNKNOWN.
#[sqlx::test]
async fn a_nul_in_any_string_field_of_any_rpc_is_never_internal(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("nuladmin").await;
    let mut cases = 0;
    let mut wrong = Vec::new();
    for (path, desc) in unary_methods() {
        for field in string_fields(&desc, 2) {
            let name = field.iter().map(|f| f.name()).collect::<Vec<_>>().join(".");
            // Something in front of the NUL, so "required" checks pass and the text reaches
            // whatever uses it.
            let body = prost::Message::encode_to_vec(&with_string(&desc, &field, "ab\0cd"));
            cases += 1;
            if let Err(s) = send(&app, &path, &admin.token, body.into()).await
                && matches!(s.code(), Code::Internal | Code::Unknown)
            {
                wrong.push(format!("{path} {name}: {:?} {} {}", s.code(), reason(&s), s.message()));
            }
        }
    }
    assert!(cases > 150, "the walk found {cases} string fields");
    assert!(wrong.is_empty(), "{} of {cases} NUL cases went wrong:\n{}", wrong.len(), wrong.join("\n"));
}

/// The texts of issue 14 that reached PostgreSQL with a NUL: each is INVALID_ARGUMENT naming
/// its field.
#[sqlx::test]
async fn a_nul_in_logins_searches_and_notes_is_a_violation_of_that_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("nuladmin").await;
    let nul = "김\0철수".to_owned();
    let s = assert_err(
        app.auth().login(pb::LoginRequest { login: nul.clone(), password: PASSWORD.into() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["login"]);
    let s = assert_err(
        app.admin().list_users(admin.req(pb::ListUsersRequest { query: nul.clone(), ..Default::default() })).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["query"]);
    let mut feed = pb::feed_service_client::FeedServiceClient::new(app.channel.clone());
    let s = assert_err(
        feed.list_posts(admin.req(pb::ListPostsRequest { query: nul.clone(), page_size: 10, ..Default::default() }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["query"]);
    let mut communities = pb::community_service_client::CommunityServiceClient::new(app.channel.clone());
    let s = assert_err(
        communities
            .decide_membership(admin.req(pb::DecideMembershipRequest {
                membership_id: uuid::Uuid::now_v7().to_string(),
                approve: true,
                note: nul.clone(),
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["note"]);
}

/// Point 8: a 100,000-character `update_mask` path comes back cut, not twice in full.
#[sqlx::test]
async fn a_huge_update_mask_path_is_echoed_truncated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("masker").await;
    let mut social = pb::profile_service_client::ProfileServiceClient::new(app.channel.clone());
    let path = "가".repeat(100_000);
    let s = assert_err(
        social
            .update_profile(user.req(pb::UpdateProfileRequest {
                update_mask: Some(prost_types::FieldMask { paths: vec![path.clone(); 3] }),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    // As sent: grpc-message percent-encoded, details in base64.
    let trailers = 9 * s.message().chars().count() + s.details().len() * 4 / 3;
    assert!(trailers < 6 * 1024, "{trailers} bytes of trailers");
    assert!(s.message().contains('…'), "{}", s.message());
    let named = violations(&s);
    assert_eq!(named[0], "update_mask");
    assert!(named.iter().all(|f| f == "update_mask" || f.is_empty()), "{named:?}");
}

/// Point 8: reflection's unknown symbol is echoed cut.
#[sqlx::test]
async fn reflection_echoes_an_unknown_symbol_truncated(pool: PgPool) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let app = TestApp::spawn(pool).await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(format!("maru.v1.{}", "x".repeat(100_000)))),
    };
    let mut stream = client.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let s = stream.message().await.expect_err("unknown symbol");
    assert_eq!(s.code(), Code::NotFound);
    assert_eq!(reason(&s), "NOT_FOUND");
    assert!(s.message().len() < 1024, "{} bytes", s.message().len());
}

/// One call over raw HTTP/2 with `body` as the request body: the final `grpc-status` (headers of
/// a trailers-only answer, else trailers) and the ErrorInfo reason.
async fn raw_grpc(app: &TestApp, path: &str, body: Vec<u8>) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(app.grpc_addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post(format!("http://{}{path}", app.grpc_addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(body.into(), true).unwrap();
    let resp = resp.await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut headers = parts.headers;
    if !headers.contains_key("grpc-status") {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        headers = body.trailers().await.unwrap().unwrap_or_default();
    }
    let status = tonic::Status::from_header_map(&headers).expect("a grpc-status");
    (format!("{:?}", status.code()), reason(&status))
}

/// Point 7: malformed framing is the client's fault: INVALID_ARGUMENT `MALFORMED_MESSAGE`.
#[sqlx::test]
async fn malformed_frames_are_invalid_argument_malformed_message(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let login = prost::Message::encode_to_vec(&pb::LoginRequest { login: "who".into(), password: PASSWORD.into() });
    let frame = |flag: u8| {
        let mut out = vec![flag];
        out.extend_from_slice(&(login.len() as u32).to_be_bytes());
        out.extend_from_slice(&login);
        out
    };
    let path = "/maru.v1.AuthService/Login";
    let want = ("InvalidArgument".to_owned(), "MALFORMED_MESSAGE".to_owned());
    assert_eq!(raw_grpc(&app, path, frame(1)).await, want, "compressed flag without grpc-encoding");
    assert_eq!(raw_grpc(&app, path, frame(2)).await, want, "compression flag 2");
    assert_eq!(raw_grpc(&app, path, Vec::new()).await, want, "no message at all");
    assert_eq!(raw_grpc(&app, path, frame(0)[..3].to_vec()).await, want, "a cut frame header");

    // grpc-web-text whose body is not base64.
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", app.grpc_addr))
        .header("content-type", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .body("!!!! not base64 !!!!")
        .send()
        .await
        .unwrap();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let status = match tonic::Status::from_header_map(&headers) {
        Some(s) => s,
        None => {
            // The trailer frame, base64 encoded like the rest of the body.
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap();
            let trailer = String::from_utf8_lossy(&raw[5..]).into_owned();
            let mut map = http::HeaderMap::new();
            for line in trailer.split("\r\n").filter(|l| !l.is_empty()) {
                let (k, v) = line.split_once(':').unwrap();
                map.insert(http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(), v.trim().parse().unwrap());
            }
            tonic::Status::from_header_map(&map).unwrap()
        }
    };
    assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, "MALFORMED_MESSAGE"), "{status:?}");
}

/// Point 7: a connection terminated under maru (`pg_terminate_backend`) is UNAVAILABLE with
/// RetryInfo, never INTERNAL, and the pool drops it: calls succeed again afterwards.
#[sqlx::test]
async fn terminated_backends_are_unavailable_with_retry_info_then_replaced(pool: PgPool) {
    use sqlx::{ConnectOptions, Connection};
    use tonic_types::StatusExt;
    let app = TestApp::spawn(pool.clone()).await;
    app.sign_up("terminated").await;
    let mut other = pool.connect_options().connect().await.unwrap();
    for round in 0..3 {
        // Fill the pool with idle connections, then kill them all from outside.
        let calls = (0..8).map(|_| {
            let mut auth = app.auth();
            async move { auth.login(pb::LoginRequest { login: "nobody".into(), password: PASSWORD.into() }).await }
        });
        futures::future::join_all(calls).await;
        let killed: i64 = sqlx::query_scalar(
            "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid()) t",
        )
        .fetch_one(&mut other)
        .await
        .unwrap();
        assert!(killed > 0, "round {round}: no backend to terminate");
        let mut failures = 0;
        let mut recovered = false;
        for _ in 0..(pool.options().get_max_connections() + 2) {
            match app.auth().login(pb::LoginRequest { login: "terminated".into(), password: PASSWORD.into() }).await {
                Ok(_) => {
                    recovered = true;
                    break;
                }
                Err(s) => {
                    failures += 1;
                    assert_eq!(s.code(), Code::Unavailable, "round {round}: {s:?}");
                    assert_eq!(reason(&s), "DATABASE_UNAVAILABLE", "round {round}: {s:?}");
                    assert!(s.get_details_retry_info().is_some(), "round {round}: no RetryInfo: {s:?}");
                }
            }
        }
        assert!(recovered, "round {round}: still failing after {failures} calls");
    }
    other.close().await.unwrap();
}

/// Point 6: a create is answered from its own transaction. With one connection in the pool,
/// a create and its replay (same `request_id`) both succeed: before, the answer was read after
/// the commit on a second connection, and the replay (its transaction still open) waited for one
/// until the acquire timeout and answered UNAVAILABLE for a committed write.
#[sqlx::test]
async fn creates_and_their_replays_are_answered_from_their_own_transaction(pool: PgPool) {
    let one = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let app = TestApp::spawn(one).await;
    let user = app.user("onewriter").await;
    let mut feed = pb::feed_service_client::FeedServiceClient::new(app.channel.clone());
    let post_req = pb::CreatePostRequest {
        public: true,
        text: "한 연결".into(),
        request_id: "one-post".into(),
        ..Default::default()
    };
    let first = feed.create_post(user.req(post_req.clone())).await.unwrap().into_inner().post.unwrap();
    let replay = feed.create_post(user.req(post_req)).await.unwrap().into_inner().post.unwrap();
    assert_eq!(first.id, replay.id);
    let comment_req = pb::CreateCommentRequest {
        post_id: first.id.clone(),
        text: "댓글".into(),
        request_id: "one-comment".into(),
        ..Default::default()
    };
    let c1 = feed.create_comment(user.req(comment_req.clone())).await.unwrap().into_inner();
    let c2 = feed.create_comment(user.req(comment_req)).await.unwrap().into_inner();
    assert_eq!(c1, c2);
    let rows: i64 = sqlx::query_scalar("select count(*) from posts").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1);
}
