//! AuthService and AdminService end to end: every RPC's success path, invalid input, token
//! problems, refresh-token rotation and reuse detection, idempotency and the sign-up race.

use std::collections::HashMap;

use maru::grpc::pb;
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;

#[sqlx::test]
async fn sign_up_login_who_am_i(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.sign_up("minsu").await;
    assert_eq!(user.handle, "minsu");
    assert_eq!(user.email, "minsu@example.com");
    assert_eq!(user.role, pb::Role::User as i32);

    // Login by email, any letter case.
    let login = app.login("MINSU@example.com").await;
    assert!(!login.access_token.is_empty() && !login.refresh_token.is_empty());
    assert_eq!(login.user.as_ref().unwrap().id, user.id);
    let exp = login.access_expires_at.unwrap().seconds - chrono::Utc::now().timestamp();
    assert!((890..=900).contains(&exp), "access token lives 15 min, got {exp}s");

    let me = app.auth().who_am_i(bearer(&login.access_token, pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().id, user.id);
    // Served from the cache the second time, same answer.
    let again = app.auth().who_am_i(bearer(&login.access_token, pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(again.user.unwrap().handle, "minsu");
}

#[sqlx::test]
async fn sign_up_reports_every_invalid_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .auth()
        .sign_up(pb::SignUpRequest {
            handle: "a!".into(),
            email: "not-an-email".into(),
            password: "short".into(),
            display_name: " ".into(),
            request_id: "has spaces".into(),
        })
        .await;
    let status = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&status), ["handle", "email", "password", "display_name", "request_id"]);

    // Upper case is folded, other characters refused.
    let user = app.auth().sign_up(sign_up_req("Mixed.Case_1", "m@example.com")).await.unwrap().into_inner();
    assert_eq!(user.user.unwrap().handle, "mixed.case_1");
    let r = app.auth().sign_up(sign_up_req("한글", "k@example.com")).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["handle"]);
}

#[sqlx::test]
async fn duplicates_are_refused_case_insensitively(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.auth().sign_up(sign_up_req("jiwoo", "jiwoo@example.com")).await.unwrap();
    let r = app.auth().sign_up(sign_up_req("JIWOO", "other@example.com")).await;
    assert_err(r, Code::AlreadyExists, "HANDLE_TAKEN");
    let r = app.auth().sign_up(sign_up_req("other", "JiWoo@Example.COM")).await;
    assert_err(r, Code::AlreadyExists, "EMAIL_TAKEN");
}

/// Runs `n` concurrent sign-ups built by `req(i)`; returns the count per code.
async fn race(app: &TestApp, n: usize, req: impl Fn(usize) -> pb::SignUpRequest) -> HashMap<Code, usize> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut client = app.auth();
        let r = req(i);
        tasks
            .push(tokio::spawn(async move { client.sign_up(r).await.map(|_| ()).map_err(|s| (s.code(), reason(&s))) }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => *counts.entry(Code::Ok).or_default() += 1,
            Err((code, reason)) => {
                assert!(matches!(reason.as_str(), "HANDLE_TAKEN" | "EMAIL_TAKEN"), "{code:?} {reason}");
                *counts.entry(code).or_default() += 1
            }
        }
    }
    counts
}

#[sqlx::test]
async fn two_hundred_concurrent_sign_ups_with_one_handle_make_one_account(pool: PgPool) {
    // 200 argon2 hashes queue behind a bounded hasher; on a loaded CI machine that can take
    // longer than the default 10 s deadline, and this test is about the race, not latency.
    let app = TestApp::spawn_with(pool.clone(), |s| s.grpc.request_timeout_ms = 120_000).await;
    let counts = race(&app, 200, |i| sign_up_req("racer", &format!("racer{i}@example.com"))).await;
    assert_eq!(counts, HashMap::from([(Code::Ok, 1), (Code::AlreadyExists, 199)]));
    let rows: i64 =
        sqlx::query_scalar("select count(*) from users where lower(handle) = 'racer'").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1);

    // The same for one email in different letter case.
    let counts = race(&app, 200, |i| {
        let email = if i % 2 == 0 { "Same@Example.com" } else { "same@example.COM" };
        sign_up_req(&format!("email{i}"), email)
    })
    .await;
    assert_eq!(counts, HashMap::from([(Code::Ok, 1), (Code::AlreadyExists, 199)]));
    let rows: i64 = sqlx::query_scalar("select count(*) from users where lower(email) = 'same@example.com'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert!(app.metrics().await.contains("maru_unique_conflicts_total{constraint=\"users_email_key\"}"));
}

#[sqlx::test]
async fn request_id_replays_the_original_result(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut req = sign_up_req("idem", "idem@example.com");
    req.request_id = "signup-7f3a".into();

    // Concurrent duplicates: all answered with the one account.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut client = app.auth();
        let r = req.clone();
        tasks.push(tokio::spawn(async move { client.sign_up(r).await }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().expect("every duplicate succeeds").into_inner().user.unwrap().id);
    }
    assert_eq!(ids.len(), 1);
    let rows: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&pool).await.unwrap();
    assert_eq!(rows, 1);

    // A later retry too.
    let again = app.auth().sign_up(req.clone()).await.unwrap().into_inner();
    assert_eq!(Some(&again.user.unwrap().id), ids.first());

    // The same key for a different request is refused.
    let mut other = sign_up_req("idem2", "idem2@example.com");
    other.request_id = "signup-7f3a".into();
    let status = assert_err(app.auth().sign_up(other).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(violations(&status), ["request_id"]);
}

#[sqlx::test]
async fn wrong_login_and_wrong_password_look_the_same(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.sign_up("hana").await;
    let a = app.auth().login(pb::LoginRequest { login: "hana".into(), password: "wrong password".into() }).await;
    let b = app.auth().login(pb::LoginRequest { login: "nobody".into(), password: PASSWORD.into() }).await;
    let (a, b) = (
        assert_err(a, Code::Unauthenticated, "BAD_CREDENTIALS"),
        assert_err(b, Code::Unauthenticated, "BAD_CREDENTIALS"),
    );
    assert_eq!(a.message(), b.message());
    let r = app.auth().login(pb::LoginRequest { login: " ".into(), password: String::new() }).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["login", "password"]);
}

#[sqlx::test]
async fn refresh_rotates_and_reuse_revokes_the_family(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("yuna").await;
    let first = app.auth().refresh(pb::RefreshRequest { refresh_token: u.refresh.clone() }).await.unwrap().into_inner();
    assert_ne!(first.refresh_token, u.refresh);
    assert_ne!(first.access_token, u.token);
    app.auth().who_am_i(bearer(&first.access_token, pb::WhoAmIRequest {})).await.unwrap();

    // Replaying the used token revokes the whole family …
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: u.refresh.clone() }).await;
    assert_err(r, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    // … so the legitimately rotated token is dead too.
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: first.refresh_token }).await;
    assert_err(r, Code::Unauthenticated, "SESSION_REVOKED");

    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: "no-such-token".into() }).await;
    assert_err(r, Code::Unauthenticated, "REFRESH_TOKEN_INVALID");
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: String::new() }).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["refresh_token"]);
}

#[sqlx::test]
async fn concurrent_refreshes_of_one_token_rotate_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("twice").await;
    let (mut a, mut b) = (app.auth(), app.auth());
    let (ra, rb) = tokio::join!(
        a.refresh(pb::RefreshRequest { refresh_token: u.refresh.clone() }),
        b.refresh(pb::RefreshRequest { refresh_token: u.refresh.clone() })
    );
    let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "exactly one presentation of a token rotates it");
}

#[sqlx::test]
async fn logout_revokes_the_session(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("sora").await;
    app.auth().logout(pb::LogoutRequest { refresh_token: u.refresh.clone() }).await.unwrap();
    // Idempotent.
    app.auth().logout(pb::LogoutRequest { refresh_token: u.refresh.clone() }).await.unwrap();
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: u.refresh.clone() }).await;
    assert_err(r, Code::Unauthenticated, "SESSION_REVOKED");
    let r = app.auth().logout(pb::LogoutRequest { refresh_token: "unknown".into() }).await;
    assert_err(r, Code::Unauthenticated, "REFRESH_TOKEN_INVALID");
}

#[sqlx::test]
async fn change_password_revokes_the_other_sessions(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let here = app.user("dami").await;
    let elsewhere = app.login("dami").await;

    let r = app
        .auth()
        .change_password(here.req(pb::ChangePasswordRequest {
            old_password: "not my password".into(),
            new_password: "a brand new secret".into(),
        }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "BAD_CREDENTIALS")), ["old_password"]);
    let r = app
        .auth()
        .change_password(
            here.req(pb::ChangePasswordRequest { old_password: PASSWORD.into(), new_password: "short".into() }),
        )
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["new_password"]);
    let r = app
        .auth()
        .change_password(pb::ChangePasswordRequest { old_password: PASSWORD.into(), new_password: "x".repeat(10) })
        .await;
    assert_err(r, Code::Unauthenticated, "TOKEN_MISSING");

    app.auth()
        .change_password(here.req(pb::ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: "a brand new secret".into(),
        }))
        .await
        .unwrap();
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: elsewhere.refresh_token }).await;
    assert_err(r, Code::Unauthenticated, "SESSION_REVOKED");
    app.auth().refresh(pb::RefreshRequest { refresh_token: here.refresh.clone() }).await.expect("own session survives");

    let r = app.auth().login(pb::LoginRequest { login: "dami".into(), password: PASSWORD.into() }).await;
    assert_err(r, Code::Unauthenticated, "BAD_CREDENTIALS");
    app.auth().login(pb::LoginRequest { login: "dami".into(), password: "a brand new secret".into() }).await.unwrap();
}

#[sqlx::test]
async fn bad_tokens_are_unauthenticated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("token").await;
    let who = |t: &str| {
        let mut c = app.auth();
        let r = bearer(t, pb::WhoAmIRequest {});
        async move { c.who_am_i(r).await }
    };
    assert_err(app.auth().who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(who("garbage").await, Code::Unauthenticated, "TOKEN_INVALID");

    let mut tampered = u.token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_err(who(&tampered).await, Code::Unauthenticated, "TOKEN_INVALID");

    let user_id: uuid::Uuid = u.id.parse().unwrap();
    let foreign = maru::tokens::TokenKeys::new(&[9u8; 32], "maru", 900);
    let (t, _) = foreign.issue(user_id, user_id, maru::caller::Role::Admin, chrono::Utc::now()).unwrap();
    assert_err(who(&t).await, Code::Unauthenticated, "TOKEN_INVALID");

    let (expired, _) = app
        .state
        .tokens
        .issue(user_id, user_id, maru::caller::Role::User, chrono::Utc::now() - chrono::Duration::hours(1))
        .unwrap();
    assert_err(who(&expired).await, Code::Unauthenticated, "TOKEN_EXPIRED");

    let mut r = tonic::Request::new(pb::WhoAmIRequest {});
    r.metadata_mut().insert("authorization", format!("Basic {}", u.token).parse().unwrap());
    assert_err(app.auth().who_am_i(r).await, Code::Unauthenticated, "TOKEN_INVALID");
    // Login ignores the bearer header: a client holding a stale token can still log in.
    let r = app
        .auth()
        .login(bearer("garbage", pb::LoginRequest { login: "token".into(), password: PASSWORD.into() }))
        .await;
    assert!(r.is_ok(), "Login does not look at the bearer token");
}

#[sqlx::test]
async fn list_users_is_admin_only_and_paginates(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let boss = app.admin_user("boss").await;
    let user = app.user("plain").await;
    for h in ["kim.a", "kim.b", "kim.c", "lee.a"] {
        app.sign_up(h).await;
    }
    let req = |q: &str, size: i32, token: &str| pb::ListUsersRequest {
        query: q.into(),
        role: 0,
        page_size: size,
        page_token: token.into(),
    };
    let r = app.admin().list_users(user.req(req("", 10, ""))).await;
    assert_err(r, Code::PermissionDenied, "ADMIN_REQUIRED");
    let r = app.admin().list_users(req("", 10, "")).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_MISSING");

    // Three pages of two, newest first, no duplicates.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app.admin().list_users(boss.req(req("kim", 2, &token))).await.unwrap().into_inner();
        assert!(page.users.len() <= 2);
        seen.extend(page.users.iter().map(|u| u.handle.clone()));
        assert!(page.users.iter().all(|u| !u.email.is_empty()), "admins see emails");
        if page.next_page_token.is_empty() {
            break;
        }
        // The token is bound to the query.
        let r = app.admin().list_users(boss.req(req("lee", 2, &page.next_page_token))).await;
        assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID")), ["page_token"]);
        let mut tampered = page.next_page_token.clone();
        tampered.insert(1, 'x');
        let r = app.admin().list_users(boss.req(req("kim", 2, &tampered))).await;
        assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
        token = page.next_page_token;
    }
    assert_eq!(seen, ["kim.c", "kim.b", "kim.a"]);

    let admins = app
        .admin()
        .list_users(boss.req(pb::ListUsersRequest { role: pb::Role::Admin as i32, ..req("", 0, "") }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(admins.users.iter().map(|u| u.handle.as_str()).collect::<Vec<_>>(), ["boss"]);

    let r = app.admin().list_users(boss.req(req("", -1, ""))).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["page_size"]);
    let r = app.admin().list_users(boss.req(pb::ListUsersRequest { role: 42, ..req("", 0, "") })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["role"]);
    // Wildcards in the query match literally.
    let none = app.admin().list_users(boss.req(req("%", 100, ""))).await.unwrap().into_inner();
    assert!(none.users.is_empty());
    // Oversized pages are coerced to 100.
    let all = app.admin().list_users(boss.req(req("", 5000, ""))).await.unwrap().into_inner();
    assert_eq!(all.users.len(), 6);
}
