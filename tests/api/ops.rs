//! Operations: rate limiting, load shedding, metrics label sets and budgets, Loki shipping
//! and the PII scan of everything logged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use maru::config::BucketSettings;
use maru::grpc::pb;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::logs;

fn login_req(login: &str) -> pb::LoginRequest {
    pb::LoginRequest { login: login.into(), password: "wrong password".into() }
}

fn with_xff<T>(msg: T, xff: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-forwarded-for", xff.parse().unwrap());
    r
}

#[sqlx::test]
async fn over_the_bucket_is_resource_exhausted_with_the_exact_delay(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.buckets.auth = BucketSettings { per_minute: 60, burst: 2 };
    })
    .await;
    for _ in 0..2 {
        assert_err(app.auth().login(login_req("someone")).await, Code::Unauthenticated, "BAD_CREDENTIALS");
    }
    let status = assert_err(app.auth().login(login_req("someone")).await, Code::ResourceExhausted, "RATE_LIMITED");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("bucket").map(String::as_str), Some("auth"));
    assert_eq!(info.metadata.get("limit").map(String::as_str), Some("60/min burst 2"));
    let delay = status.get_details_retry_info().unwrap().retry_delay.expect("a delay");
    assert!(delay > Duration::ZERO && delay <= Duration::from_millis(1001), "{delay:?}");

    // A spoofed x-forwarded-for from an untrusted peer changes nothing.
    let r = app.auth().login(with_xff(login_req("someone"), "203.0.113.77")).await;
    assert_err(r, Code::ResourceExhausted, "RATE_LIMITED");

    // Health and reflection are exempt.
    for _ in 0..20 {
        app.health().check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    }

    // After the advertised delay the call goes through.
    tokio::time::sleep(delay).await;
    assert_err(app.auth().login(login_req("someone")).await, Code::Unauthenticated, "BAD_CREDENTIALS");
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"maru_rate_limit_decisions_total{bucket="auth",decision="rejected"}"#));
}

#[sqlx::test]
async fn trusted_proxies_separate_clients_and_users_have_their_own_bucket(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.rate_limit.buckets.auth = BucketSettings { per_minute: 1, burst: 2 };
        s.rate_limit.buckets.read = BucketSettings { per_minute: 1, burst: 1 };
    })
    .await;
    // Behind the trusted proxy, 203.0.113.1 is throttled …
    let _ = app
        .auth()
        .sign_up(with_xff(
            pb::SignUpRequest {
                handle: "proxied".into(),
                email: "proxied@example.com".into(),
                password: PASSWORD.into(),
                display_name: "P".into(),
                request_id: String::new(),
            },
            "203.0.113.1",
        ))
        .await
        .unwrap();
    let login = app
        .auth()
        .login(with_xff(pb::LoginRequest { login: "proxied".into(), password: PASSWORD.into() }, "203.0.113.1"))
        .await
        .unwrap()
        .into_inner();
    assert_err(
        app.auth().login(with_xff(login_req("x"), "203.0.113.1")).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    // … while another client behind it is not.
    assert_err(
        app.auth().login(with_xff(login_req("x"), "203.0.113.2")).await,
        Code::Unauthenticated,
        "BAD_CREDENTIALS",
    );

    // A signed-in caller is counted by user, not by address: its read bucket is its own.
    let me = bearer(&login.access_token, pb::WhoAmIRequest {});
    app.auth().who_am_i(me).await.unwrap();
    let r = app.auth().who_am_i(bearer(&login.access_token, pb::WhoAmIRequest {})).await;
    assert_err(r, Code::ResourceExhausted, "RATE_LIMITED");
    // Anonymous calls from the same address still have their own budget.
    assert_err(app.auth().who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated, "TOKEN_MISSING");
}

#[sqlx::test]
async fn load_shedding_refuses_with_retry_info(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.rate_limit.max_in_flight = 1).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut c = app.auth();
        tasks.push(tokio::spawn(async move {
            c.sign_up(pb::SignUpRequest {
                handle: format!("shed{i}"),
                email: format!("shed{i}@example.com"),
                password: PASSWORD.into(),
                display_name: "S".into(),
                request_id: String::new(),
            })
            .await
        }));
    }
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!((s.code(), reason(&s).as_str()), (Code::Unavailable, "OVERLOADED"), "{s:?}");
                assert!(s.get_details_retry_info().is_some());
                shed += 1;
            }
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
    assert!(app.metrics().await.contains("maru_load_shed_total"));
}

/// The closed set each metric label may take.
fn allowed_labels() -> HashMap<&'static str, BTreeSet<String>> {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let methods = maru::grpc::methods();
    let mut services: BTreeSet<String> = methods.values().map(|m| m.service.to_string()).collect();
    let mut names: BTreeSet<String> = methods.values().map(|m| m.method.to_string()).collect();
    services.insert("unknown".into());
    names.insert("unknown".into());
    let codes = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];
    let mut constraints: BTreeSet<String> =
        maru::error::UNIQUE_CONSTRAINTS.iter().map(|(c, _)| c.to_string()).collect();
    constraints.insert("other".into());
    HashMap::from([
        ("grpc_type", set(&["unary", "client_stream", "server_stream", "bidi_stream"])),
        ("grpc_service", services),
        ("grpc_method", names),
        ("grpc_code", codes.iter().map(|c| maru::grpc::layer::code_label(*c).to_string()).collect()),
        ("protocol", set(&["grpc", "grpc_web"])),
        ("cache", maru::cache::CACHES.iter().map(|c| c.to_string()).collect()),
        // cache lookups; ingest runs; event check-ins
        (
            "result",
            set(&[
                "hit",
                "miss",
                "bypass",
                "shared",
                "running",
                "succeeded",
                "failed",
                "skipped",
                "attend",
                "late",
                "too_far",
                "not_open_yet",
                "event_ended",
                "already_checked_in",
                "forced",
                "delivered",
            ]),
        ),
        // trial ingests; product recommendations
        ("source", set(&[maru::trials::model::SOURCE, "tags", "co_likes", "tags_and_co_likes", "newest"])),
        ("constraint", constraints),
        // chat_publish: chat's notices on the pub/sub channel; chat_streams: the per-user count
        // and media's object store operations
        (
            "op",
            set(&[
                "get",
                "fill",
                "invalidate",
                "hash",
                "verify",
                "view",
                "flush",
                "chat_publish",
                "chat_streams",
                "head",
                "put",
                "delete",
                "sign",
                "write",
            ]),
        ),
        (
            "event",
            set(&[
                "sign_up",
                "login",
                "refresh",
                "logout",
                "change_password",
                "revoke_session",
                "logout_all",
                // email verification and password reset
                "send_verification_code",
                "verify_email",
                "request_password_reset",
                "reset_password",
                // external identities (linking proofs)
                "send_link_code",
                "link_identity",
                "unlink_identity",
            ]),
        ),
        // auth events; ingested rows; gRPC connections
        (
            "outcome",
            set(&[
                "accepted",
                "rejected_address_limit",
                "accept_error",
                "ok",
                "bad_credentials",
                "invalid",
                "reused",
                "revoked",
                "expired",
                "created",
                "updated",
                "unchanged",
                "failed",
                // team proposals and applications
                "approved",
                "rejected",
                "submitted",
                "withdrawn",
                "role_full",
                // a suspended account's login or refresh
                "suspended",
                // a COMMIT whose connection broke (maru_db_commit_outcome_resolved_total)
                "committed",
                "aborted",
                "unknown",
                // email verification and password reset
                "already_verified",
                "rate_limited",
                "mismatch",
                "exhausted",
                "unknown",
                // guest visits turned off (rate_limited above: also logins refused by the rate limiter)
                "disabled",
                // media uploads, the local backend's HTTP routes, processing
                "quota_exceeded",
                "completed",
                "incomplete",
                "type_unsupported",
                "ready",
                // external logins (maru_logins_total) and linking
                "state_invalid",
                "refused",
                "provider_unavailable",
                "registration_required",
                "link_required",
                "no_password",
            ])
            .into_iter()
            // the media HTTP routes' outcomes (maru_media_http_requests_total)
            .chain(set(&maru::media::http::HTTP_OUTCOMES))
            .collect(),
        ),
        ("state", set(&["idle", "in_use", "max"])),
        // expensive reads (the bulkhead's kinds)
        // and the email outbox's mail kinds
        (
            "kind",
            maru::db::ReadKind::ALL
                .iter()
                .map(|k| k.label().to_string())
                .chain(maru::mail::Kind::ALL.iter().map(|k| k.as_str().to_string()))
                .collect(),
        ),
        ("bucket", set(&["auth", "sensitive", "write", "read"])),
        // rate limiting; membership decisions
        ("decision", set(&["allowed", "rejected", "approved"])),
        // memberships; complaints
        ("status", set(&["PENDING", "APPROVED", "REJECTED", "RECEIVED", "IN_PROGRESS", "RESOLVED", "WITHDRAWN"])),
        ("version", set(&[env!("CARGO_PKG_VERSION")])),
        // complaint transitions (community content); event fee transitions
        ("to", set(&["received", "in_progress", "resolved", "rejected", "withdrawn", "pending", "paid", "not_paid"])),
        // event penalties; connections closed by the server; sessions refused
        (
            "reason",
            set(&[
                // external login failures (maru_external_login_failures_total)
                "state_invalid",
                "provider_unavailable",
                "code",
                "token",
                "signature",
                "issuer",
                "audience",
                "expiry",
                "nonce",
                "algorithm",
                "format",
                "subject",
                "absent",
                "late",
                "not_paid",
                "handshake_timeout",
                "send_timeout",
                "unknown",
                "revoked",
                "account_deleted",
                "user_mismatch",
                "unavailable",
                // reports
                "SPAM",
                "ABUSE",
                "SEXUAL",
                "ILLEGAL",
                "FRAUD",
                "OTHER",
                // chat streams refused
                "user_limit",
                "replica_limit",
                // media processing failures
                "too_many_pixels",
                "undecodable",
                "encode",
                "attempts_exhausted",
            ]),
        ),
        // report resolutions
        ("action", set(&["DISMISS", "SUSPEND_TARGET", "WARN_USER", "SUSPEND_USER"])),
        // chat rooms created
        ("room_kind", set(&["direct", "group"])),
        // logins and registrations
        ("method", set(&["password", "refresh", "guest", "external", "guest_conversion", "github", "google", "oidc"])),
        // media purposes
        ("purpose", maru::media::model::Purpose::ALL.iter().map(|p| p.as_str().to_string()).collect()),
        // identity providers: configured names (those of tests/api/identity.rs)
        ("provider", set(&["google", "corp", "github", "ghe"])),
    ])
}

/// Most series a metric family may have (histogram series counted per bucket line).
fn series_budget(family: &str) -> usize {
    match family {
        f if f.starts_with("grpc_server_") => 6000,
        f if f.starts_with("process_") => 10,
        _ => 200,
    }
}

#[sqlx::test]
async fn every_rpc_is_measured_with_closed_label_sets(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("metered").await;
    let admin = app.admin_user("meterboss").await;

    // Every unary RPC of every maru service, with an empty message, as anonymous, user and admin:
    // whatever the answer, never INTERNAL or UNKNOWN.
    let mut paths: Vec<_> = maru::grpc::methods()
        .iter()
        .filter(|(_, m)| m.service.starts_with("maru.") && m.grpc_type == maru::grpc::GrpcType::Unary)
        .map(|(p, m)| (p.clone(), m.clone()))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(paths.len() >= 7, "{paths:?}");
    for (path, _) in &paths {
        for token in [None, Some(&user.token), Some(&admin.token)] {
            let mut grpc = tonic::client::Grpc::new(app.channel.clone());
            grpc.ready().await.unwrap();
            let codec = tonic_prost::ProstCodec::<(), ()>::default();
            let req = match token {
                Some(t) => bearer(t, ()),
                None => tonic::Request::new(()),
            };
            let r = grpc.unary(req, http::uri::PathAndQuery::try_from(path.as_str()).unwrap(), codec).await;
            if let Err(s) = r {
                assert!(!matches!(s.code(), Code::Internal | Code::Unknown), "{path}: {s:?}");
                assert!(!reason(&s).is_empty(), "{path}: every error carries ErrorInfo: {s:?}");
            }
        }
    }

    let text = app.metrics().await;
    let allowed = allowed_labels();
    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, _value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
        *families.entry(family.to_string()).or_default() += 1;
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            let v = v.trim_matches('"');
            if matches!(k, "le" | "quantile") {
                continue;
            }
            let set = allowed.get(k).unwrap_or_else(|| panic!("{name}: label `{k}` has no closed set in this test"));
            assert!(set.contains(v), "{name}: `{k}=\"{v}\"` is outside its closed set");
        }
    }
    for (family, n) in &families {
        assert!(*n <= series_budget(family), "{family} has {n} series, over its budget");
    }
    for (path, m) in &paths {
        let needle = format!(
            r#"grpc_server_handled_total{{grpc_type="unary",grpc_service="{}",grpc_method="{}""#,
            m.service, m.method
        );
        assert!(text.contains(&needle), "{path} was not measured");
    }
    for name in [
        "grpc_server_started_total",
        "grpc_server_handling_seconds_bucket",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "process_resident_memory_bytes",
        "maru_db_pool_connections",
        "maru_build_info",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
}

#[sqlx::test]
async fn access_lines_reach_loki_with_only_the_allowed_labels(pool: PgPool) {
    let captured = logs::capture();
    let app = TestApp::spawn_with(pool, |s| s.log.access_log = true).await;
    let rid = format!("loki-{}", uuid::Uuid::new_v4().simple());
    let mut r = tonic::Request::new(pb::WhoAmIRequest {});
    r.metadata_mut().insert("x-request-id", rid.parse().unwrap());
    let _ = app.auth().who_am_i(r).await;

    let mut found = None;
    for _ in 0..100 {
        found =
            captured.loki_lines().into_iter().find(|(_, line)| line.contains(&rid) && line.contains("rpc finished"));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (labels, line) = found.expect("the access line reached the Loki receiver");
    let names: BTreeSet<&str> =
        labels.trim_matches(|c| c == '{' || c == '}').split(',').map(|p| p.split('=').next().unwrap().trim()).collect();
    assert_eq!(names, BTreeSet::from(["env", "level", "service_name"]), "{labels}");
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["grpc_code"], "Unauthenticated", "{line}");
    assert_eq!(json["rpc"], "maru.v1.AuthService/WhoAmI");
    assert!(json["latency_ms"].is_number());
    assert!(json.get("user_id").is_some() && json.get("request_id").is_some(), "{line}");

    // Every Loki stream of the whole run used only those labels.
    for (labels, _) in captured.loki_lines() {
        assert!(labels.contains("service_name=\"maru\"") && labels.matches('=').count() == 3, "{labels}");
    }
    // Health checks are not access-logged.
    assert!(!captured.stdout_text().contains("grpc.health.v1.Health/Check\",\"grpc_code"));
}

#[sqlx::test]
async fn no_secret_or_personal_value_is_ever_logged(pool: PgPool) {
    let captured = logs::capture();
    let sink = crate::mail::SmtpSink::start().await;
    let mut settings = crate::mail::mail_settings(&sink.url());
    settings.log.access_log = true;
    let app = TestApp::spawn_settings(pool, settings).await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let email = format!("pii.{tag}@example.com");
    let password = format!("Pw-{tag}-secret");
    let new_password = format!("Np-{tag}-secret");
    let handle = format!("pii{tag}");

    let signup = |email: &str, pw: &str| pb::SignUpRequest {
        handle: handle.clone(),
        email: email.into(),
        password: pw.into(),
        display_name: "Pii".into(),
        request_id: format!("rq-{tag}"),
    };
    app.auth().sign_up(signup(&email, &password)).await.unwrap();
    let _ = app.auth().sign_up(signup(&email, &password)).await; // replay
    let _ = app.auth().sign_up(signup(&format!("bad {email}"), "short")).await; // invalid
    let _ = app.auth().login(pb::LoginRequest { login: email.clone(), password: format!("{password}-wrong") }).await;
    let login = app
        .auth()
        .login(pb::LoginRequest { login: email.clone(), password: password.clone() })
        .await
        .unwrap()
        .into_inner();
    let refreshed = app
        .auth()
        .refresh(pb::RefreshRequest { refresh_token: login.refresh_token.clone() })
        .await
        .unwrap()
        .into_inner();
    let _ = app.auth().refresh(pb::RefreshRequest { refresh_token: login.refresh_token.clone() }).await; // reuse
    let _ = app
        .auth()
        .change_password(bearer(
            &refreshed.access_token,
            pb::ChangePasswordRequest { old_password: password.clone(), new_password: new_password.clone() },
        ))
        .await;
    let _ = app.auth().who_am_i(bearer(&format!("{}x", login.access_token), pb::WhoAmIRequest {})).await;
    let _ = app.auth().logout(pb::LogoutRequest { refresh_token: refreshed.refresh_token.clone() }).await;

    // Email: a verification code (a wrong one, then the right one), a password reset for the
    // address and for an unknown one, the reset itself and a replay of its token.
    // (The reuse above revoked the session ChangePassword was called with: the password is the
    // first one.)
    let again = app
        .auth()
        .login(pb::LoginRequest { login: handle.clone(), password: password.clone() })
        .await
        .unwrap()
        .into_inner();
    app.auth()
        .send_verification_code(bearer(&again.access_token, pb::SendVerificationCodeRequest { lang: "en".into() }))
        .await
        .unwrap();
    let code = sink.wait_to(&email).await.code();
    let wrong_code = crate::mail::wrong(&code);
    for c in [&wrong_code, &code] {
        let _ = app.auth().verify_email(bearer(&again.access_token, pb::VerifyEmailRequest { code: c.clone() })).await;
    }
    let unknown_email = format!("nobody.{tag}@example.com");
    for e in [&email, &unknown_email] {
        let r = pb::RequestPasswordResetRequest { email: e.clone(), lang: String::new() };
        app.auth().request_password_reset(r).await.unwrap();
    }
    let reset_mail = sink.wait_for(2).await.into_iter().find(|m| m.subject.contains("비밀번호")).unwrap();
    let reset_token = reset_mail.reset_token();
    let reset_password = format!("Rp-{tag}-secret");
    for _ in 0..2 {
        let r = pb::ResetPasswordRequest { token: reset_token.clone(), new_password: reset_password.clone() };
        let _ = app.auth().reset_password(r).await;
    }

    tokio::time::sleep(Duration::from_millis(1500)).await; // let the Loki batches arrive
    let mut everything = captured.stdout_text();
    for (labels, line) in captured.loki_lines() {
        everything.push_str(&labels);
        everything.push_str(&line);
    }
    assert!(everything.contains(&login.user.unwrap().id), "the capture works: user ids are logged");
    for (what, secret) in [
        ("email", email.as_str()),
        ("email local part", &format!("pii.{tag}")),
        ("password", &password),
        ("new password", &new_password),
        ("access token", &login.access_token),
        ("access token signature", login.access_token.rsplit('.').next().unwrap()),
        ("refresh token", &login.refresh_token),
        ("rotated refresh token", &refreshed.refresh_token),
        ("verification code", &code),
        ("wrong verification code", &wrong_code),
        ("reset token", &reset_token),
        ("reset password", &reset_password),
        ("unknown email", &unknown_email),
        ("unknown email local part", &format!("nobody.{tag}")),
    ] {
        assert!(!everything.contains(secret), "a log line contains the {what}");
    }
}

/// Every cache's name is in the closed set of the `cache` label (the label test above only sees
/// the caches the tests running beside it happened to use).
#[test]
fn every_cache_name_is_in_the_closed_set_of_the_cache_label() {
    let names = [
        maru::teams::cache::TEAM_CACHE,
        maru::teams::cache::PAGE_CACHE,
        maru::teams::activity::ACTIVITY_CACHE,
        maru::sessions::SESSION_CACHE,
        maru::social::ops::PROFILE_CACHE,
        maru::social::ops::FOLLOW_PAIR_CACHE,
        maru::communities::cache::STANDING_CACHE,
        maru::communities::cache::MY_COMMUNITIES_CACHE,
        maru::feed::cache::POST_CACHE,
        maru::feed::cache::PAGE_CACHE,
        maru::market::cache::CACHE,
        "geocode",
        "user",
    ];
    for n in names {
        assert!(maru::cache::CACHES.contains(&n), "cache `{n}` is missing from maru::cache::CACHES");
    }
}
