//! Guest visits (docs/guests.md): StartGuestSession, the central read-only rule for guests,
//! ConvertGuest, and the nightly clean-up driven by a test clock.

use chrono::{Duration, Utc};
use maru::clock::TestClock;
use maru::grpc::pb;
use maru::grpc::pb::community_service_client::CommunityServiceClient;
use maru::grpc::pb::notice_service_client::NoticeServiceClient;
use maru::grpc::policy::{CallerRule, RpcClass};
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

fn notices(app: &TestApp) -> NoticeServiceClient<Channel> {
    NoticeServiceClient::new(app.channel.clone())
}

fn communities(app: &TestApp) -> CommunityServiceClient<Channel> {
    CommunityServiceClient::new(app.channel.clone())
}

async fn start(app: &TestApp) -> pb::StartGuestSessionResponse {
    app.auth().start_guest_session(pb::StartGuestSessionRequest {}).await.expect("guest session").into_inner()
}

fn convert_req(handle: &str) -> pb::ConvertGuestRequest {
    pb::ConvertGuestRequest {
        handle: handle.into(),
        email: format!("{handle}@example.com"),
        password: PASSWORD.into(),
        display_name: "Former guest".into(),
    }
}

/// A server whose demo complexes are two apartments, named by id and by registry code (plus an
/// entry that matches nothing); returns it with the two ids.
async fn app_with_demo(pool: PgPool) -> (TestApp, String, String) {
    let (demo, coded) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for (id, name, code) in [(demo, "데모 아파트", None), (coded, "코드 아파트", Some("A10027875"))] {
        sqlx::query("insert into communities (id, kind, name, external_code) values ($1, 'APARTMENT', $2, $3)")
            .bind(id)
            .bind(name)
            .bind(code)
            .execute(&pool)
            .await
            .unwrap();
    }
    let app = TestApp::spawn_with(pool, |s| {
        s.guests.complexes = vec![demo.to_string(), "A10027875".into(), "no-such-complex".into()]
    })
    .await;
    (app, demo.to_string(), coded.to_string())
}

#[sqlx::test]
async fn a_guest_reads_the_demo_complexes_for_a_day(pool: PgPool) {
    let (app, demo, coded) = app_with_demo(pool).await;
    let other = app.community("APARTMENT", "남의 아파트").await;
    let before = Utc::now();
    let g = start(&app).await;
    let user = g.user.clone().unwrap();
    assert!(user.handle.starts_with("guest_") && user.handle.len() == 16, "{}", user.handle);
    assert_eq!((user.role, user.email.as_str(), user.display_name.as_str()), (pb::Role::Guest as i32, "", "Guest"));
    assert_eq!(g.community_ids, [demo.clone(), coded.clone()], "configured order; unknown entries skipped");
    let visit_end = g.refresh_expires_at.unwrap().seconds;
    let day = (before + Duration::days(1)).timestamp();
    assert!((day..day + 60).contains(&visit_end), "the visit lasts a day: {visit_end} vs {day}");

    // Reads of the demo complexes are served; another complex is closed as to any non-member.
    let list = |community_id: &str| {
        bearer(&g.access_token, pb::ListNoticesRequest { community_id: community_id.into(), ..Default::default() })
    };
    notices(&app).list_notices(list(&demo)).await.expect("a guest reads the demo complex's notices");
    assert_err(notices(&app).list_notices(list(&other)).await, Code::PermissionDenied, "MEMBERSHIP_REQUIRED");
    let who = app.auth().who_am_i(bearer(&g.access_token, pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(who.user.unwrap().id, user.id);
    // Guests are not counted as members.
    let c = communities(&app).get_community(pb::GetCommunityRequest { community_id: demo.clone() }).await.unwrap();
    assert_eq!(c.into_inner().community.unwrap().member_count, 0);

    // Writing is refused centrally, before the handler looks at the request.
    let create = pb::CreateNoticeRequest {
        community_id: demo.clone(),
        title: "t".into(),
        body: "b".into(),
        ..Default::default()
    };
    assert_err(
        notices(&app).create_notice(bearer(&g.access_token, create)).await,
        Code::PermissionDenied,
        "GUEST_READ_ONLY",
    );

    // Refreshing never outlives the visit.
    let r =
        app.auth().refresh(pb::RefreshRequest { refresh_token: g.refresh_token.clone() }).await.unwrap().into_inner();
    assert!(r.refresh_expires_at.unwrap().seconds <= visit_end);

    // A guest has no password: its handle does not log in.
    let r = app.auth().login(pb::LoginRequest { login: user.handle.clone(), password: PASSWORD.into() }).await;
    assert_err(r, Code::Unauthenticated, "BAD_CREDENTIALS");

    // Two guests get two accounts.
    let g2 = start(&app).await;
    assert_ne!(g2.user.unwrap().id, user.id);
}

/// Every write RPC of the policy registry (everything outside RATE_CLASS_READ that looks at the
/// token, except those declaring `guests: true`) refuses a guest with GUEST_READ_ONLY; no read
/// does. Read from the registry, so a new RPC is covered without touching this test.
#[sqlx::test]
async fn every_write_rpc_refuses_a_guest(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = start(&app).await;
    let mut paths: Vec<_> = maru::grpc::methods()
        .iter()
        .filter(|(_, m)| m.service.starts_with("maru.") && m.grpc_type == maru::grpc::GrpcType::Unary)
        .map(|(p, m)| (p.clone(), m.policy))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut refused, mut served) = (0, 0);
    for (path, policy) in &paths {
        let mut grpc = tonic::client::Grpc::new(app.channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let r = grpc
            .unary(bearer(&g.access_token, ()), http::uri::PathAndQuery::try_from(path.as_str()).unwrap(), codec)
            .await;
        let is_write = policy.rate_class != Some(RpcClass::Read)
            && !matches!(policy.caller, CallerRule::None | CallerRule::Admin)
            && !policy.guests;
        let got = r.as_ref().err().map(reason).unwrap_or_default();
        if is_write {
            let s = r.expect_err(path);
            assert_eq!((s.code(), reason(&s).as_str()), (Code::PermissionDenied, "GUEST_READ_ONLY"), "{path}");
            refused += 1;
        } else {
            assert_ne!(got, "GUEST_READ_ONLY", "{path}");
            served += 1;
        }
    }
    assert!(refused >= 80 && served >= 40, "walked {refused} writes and {served} others");
}

#[sqlx::test]
async fn convert_guest_keeps_the_account_and_its_session(pool: PgPool) {
    let (app, demo, _) = app_with_demo(pool).await;
    let taken = app.user("taken").await;
    let g = start(&app).await;
    let id = g.user.unwrap().id;
    let token = g.access_token.clone();

    // Validation as SignUp: every bad field at once; taken handle and email.
    let bad = pb::ConvertGuestRequest {
        handle: "x".into(),
        email: "nope".into(),
        password: "short".into(),
        display_name: " ".into(),
    };
    let s = assert_err(app.auth().convert_guest(bearer(&token, bad)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["handle", "email", "password", "display_name"]);
    let r = app.auth().convert_guest(bearer(&token, convert_req(&taken.handle))).await;
    assert_err(r, Code::AlreadyExists, "HANDLE_TAKEN");
    let r = app
        .auth()
        .convert_guest(bearer(
            &token,
            pb::ConvertGuestRequest { email: "TAKEN@example.com".into(), ..convert_req("fresh") },
        ))
        .await;
    assert_err(r, Code::AlreadyExists, "EMAIL_TAKEN");
    // Not a guest: a user, and no caller at all.
    let r = app.auth().convert_guest(taken.req(convert_req("another"))).await;
    assert_err(r, Code::FailedPrecondition, "NOT_A_GUEST");
    assert_err(app.auth().convert_guest(convert_req("another")).await, Code::Unauthenticated, "TOKEN_MISSING");

    let user = app.auth().convert_guest(bearer(&token, convert_req("minsu"))).await.unwrap().into_inner().user.unwrap();
    assert_eq!((user.id.as_str(), user.handle.as_str(), user.role), (id.as_str(), "minsu", pb::Role::User as i32));
    assert_eq!(user.email, "minsu@example.com");
    // The same access token is now a user's: WhoAmI shows the account, writes are no longer
    // refused as a guest's, and the demo membership is gone.
    let who = app.auth().who_am_i(bearer(&token, pb::WhoAmIRequest {})).await.unwrap().into_inner().user.unwrap();
    assert_eq!((who.handle.as_str(), who.role), ("minsu", pb::Role::User as i32));
    let create = pb::CreateNoticeRequest {
        community_id: demo.clone(),
        title: "t".into(),
        body: "b".into(),
        ..Default::default()
    };
    assert_err(
        notices(&app).create_notice(bearer(&token, create)).await,
        Code::PermissionDenied,
        "MEMBERSHIP_REQUIRED",
    );
    // The refresh token keeps working, and now yields a session of the normal length.
    let r =
        app.auth().refresh(pb::RefreshRequest { refresh_token: g.refresh_token.clone() }).await.unwrap().into_inner();
    assert!(r.refresh_expires_at.unwrap().seconds > (Utc::now() + Duration::days(2)).timestamp());
    // The new credentials log in to the same account; converting twice is refused.
    let login = app.login("minsu@example.com").await;
    assert_eq!(login.user.unwrap().id, id);
    let r = app.auth().convert_guest(bearer(&r.access_token, convert_req("minsu2"))).await;
    assert_err(r, Code::FailedPrecondition, "NOT_A_GUEST");
}

/// Races decided by the database: one guest converted twice at once (one wins), and two guests
/// claiming one handle at once (one wins, the other is told it is taken).
#[sqlx::test]
async fn concurrent_conversions_have_one_winner(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = start(&app).await;
    let calls = (0..4).map(|i| {
        let mut auth = app.auth();
        let req = bearer(&g.access_token, convert_req(&format!("racer{i}")));
        async move { auth.convert_guest(req).await }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_err(r, Code::FailedPrecondition, "NOT_A_GUEST");
    }

    let guests = futures::future::join_all((0..4).map(|_| start(&app))).await;
    let calls = guests.iter().map(|g| {
        let mut auth = app.auth();
        let req = bearer(
            &g.access_token,
            pb::ConvertGuestRequest {
                email: format!("{}@example.com", g.user.as_ref().unwrap().handle),
                ..convert_req("samename")
            },
        );
        async move { auth.convert_guest(req).await }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_err(r, Code::AlreadyExists, "HANDLE_TAKEN");
    }
}

async fn user_exists(app: &TestApp, id: &str) -> bool {
    sqlx::query_scalar::<_, bool>("select exists (select 1 from users where id = $1::uuid)")
        .bind(id)
        .fetch_one(&app.state.db)
        .await
        .unwrap()
}

/// The nightly clean-up with a test clock shared by two replicas: an expired guest is deleted
/// (with its sessions), a fresh and a converted one are kept, a second run of the same night
/// does nothing, and two replicas racing for a night run it once.
#[sqlx::test]
async fn the_nightly_cleanup_deletes_expired_guests_once(pool: PgPool) {
    let clock = TestClock::new(Utc::now());
    // The job checks at start-up only: the test drives the night itself.
    let settings = || {
        let mut s = test_settings();
        s.guests.cleanup_check_s = 3600;
        s
    };
    let a = TestApp::spawn_clock(pool.clone(), settings(), clock.clone()).await;
    let b = TestApp::spawn_clock(pool.clone(), settings(), clock.clone()).await;

    let expired = start(&a).await;
    let converted = start(&a).await;
    a.auth().convert_guest(bearer(&converted.access_token, convert_req("stays"))).await.unwrap();
    clock.advance(Duration::hours(25));
    let fresh = start(&b).await;
    let id = |g: &pb::StartGuestSessionResponse| g.user.as_ref().unwrap().id.clone();
    assert_eq!(
        maru::accounts::guests::refresh_active_gauge(&a.state).await.unwrap(),
        1,
        "only the fresh guest is active"
    );

    // The night after: one replica runs it, both racing.
    let (ra, rb) =
        tokio::join!(maru::accounts::guests::cleanup_due(&a.state), maru::accounts::guests::cleanup_due(&b.state));
    let mut outcomes = [ra.unwrap(), rb.unwrap()];
    outcomes.sort();
    assert_eq!(outcomes, [None, Some(1)], "one replica ran the night's clean-up and deleted one guest");
    assert!(!user_exists(&a, &id(&expired)).await);
    assert!(user_exists(&a, &id(&fresh)).await && user_exists(&a, &id(&converted)).await);
    let sessions: i64 = sqlx::query_scalar("select count(*) from sessions where user_id = $1::uuid")
        .bind(id(&expired))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "the guest's sessions went with it");
    let r = a.auth().who_am_i(bearer(&expired.access_token, pb::WhoAmIRequest {})).await;
    assert_err(r, Code::Unauthenticated, "SESSION_ENDED");
    // Running again the same night is harmless.
    assert_eq!(maru::accounts::guests::cleanup_due(&a.state).await.unwrap(), None);
    assert_eq!(maru::accounts::guests::cleanup_due(&b.state).await.unwrap(), None);

    // The next night the fresh guest has expired too; the converted account stays.
    clock.advance(Duration::hours(24));
    assert_eq!(maru::accounts::guests::cleanup_due(&b.state).await.unwrap(), Some(1));
    assert!(!user_exists(&a, &id(&fresh)).await && user_exists(&a, &id(&converted)).await);
    assert_eq!(maru::accounts::guests::refresh_active_gauge(&a.state).await.unwrap(), 0);
}

#[sqlx::test]
async fn guest_visits_can_be_turned_off(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.guests.enabled = false).await;
    let r = app.auth().start_guest_session(pb::StartGuestSessionRequest {}).await;
    assert_err(r, Code::FailedPrecondition, "GUESTS_DISABLED");
}

/// The value of one series in a scrape (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// Logins are counted by method and outcome where they happen (the rate limiter's refusals
/// included), registrations by method. The recorder is shared by the tests of this binary, so
/// the test compares its own before and after.
#[sqlx::test]
async fn logins_and_registrations_are_counted_by_method(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.buckets.auth = maru::config::BucketSettings { per_minute: 1, burst: 4 };
    })
    .await;
    let guest_ok = r#"maru_logins_total{method="guest",outcome="ok"}"#;
    let limited = r#"maru_logins_total{method="password",outcome="rate_limited"}"#;
    let converted = r#"maru_registrations_total{method="guest_conversion"}"#;
    let before = app.metrics().await;

    // SignUp, StartGuestSession, two Logins fill the burst of 4; the third Login is refused.
    app.sign_up("counted").await;
    let g = start(&app).await;
    app.login("counted").await;
    app.login("counted").await;
    let r = app.auth().login(pb::LoginRequest { login: "counted".into(), password: PASSWORD.into() }).await;
    assert_err(r, Code::ResourceExhausted, "RATE_LIMITED");
    app.auth().convert_guest(bearer(&g.access_token, convert_req("counted2"))).await.unwrap();

    let after = app.metrics().await;
    for name in [guest_ok, limited, converted] {
        assert!(series(&after, name) >= series(&before, name) + 1.0, "{name} not counted:\n{after}");
    }
}
