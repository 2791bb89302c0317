//! Issue 14 (sessions and privileges): an access token works only while its session is live and
//! its account active, and is judged with the account's current role — on every replica, at
//! once, whether the session state comes from Redis or from the database.

use maru::caller::Role;
use maru::grpc::pb;
use maru::grpc::pb::community_service_client::CommunityServiceClient;
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;

fn who_am_i(
    app: &TestApp,
    token: &str,
) -> impl Future<Output = Result<tonic::Response<pb::WhoAmIResponse>, tonic::Status>> {
    let mut c = app.auth();
    let r = bearer(token, pb::WhoAmIRequest {});
    async move { c.who_am_i(r).await }
}

fn list_users(
    app: &TestApp,
    token: &str,
) -> impl Future<Output = Result<tonic::Response<pb::ListUsersResponse>, tonic::Status>> {
    let mut c = app.admin();
    let r =
        bearer(token, pb::ListUsersRequest { query: String::new(), role: 0, page_size: 10, page_token: String::new() });
    async move { c.list_users(r).await }
}

fn create_community(
    app: &TestApp,
    token: &str,
    name: &str,
) -> impl Future<Output = Result<tonic::Response<pb::CreateCommunityResponse>, tonic::Status>> {
    let mut c = CommunityServiceClient::new(app.channel.clone());
    let r = bearer(
        token,
        pb::CreateCommunityRequest {
            kind: pb::CommunityKind::Club as i32,
            name: name.into(),
            address: "경기도 수원시".into(),
            join_code: String::new(),
            external_code: String::new(),
            request_id: String::new(),
        },
    );
    async move { c.create_community(r).await }
}

/// Two replicas on one database and one Redis (same key prefix).
async fn two_replicas(pool: PgPool) -> (TestApp, TestApp) {
    let settings = test_settings();
    let a = TestApp::spawn_settings(pool.clone(), settings.clone()).await;
    let b = TestApp::spawn_settings(pool, settings).await;
    (a, b)
}

#[sqlx::test]
async fn admin_revoke_takes_effect_at_once_on_every_replica(pool: PgPool) {
    let (a, b) = two_replicas(pool).await;
    let boss = a.admin_user("boss").await;
    // Both replicas have seen (and cached) the session as an admin's.
    list_users(&a, &boss.token).await.expect("admin lists users on a");
    list_users(&b, &boss.token).await.expect("admin lists users on b");
    create_community(&b, &boss.token, "before revoke").await.expect("admin creates a community");

    // `maru admin revoke boss`, as the CLI runs it (its own state, not a server's).
    let cli = maru::state::AppState::new((*b.state.settings).clone(), b.state.db.clone()).unwrap();
    cli.cache.probe().await;
    maru::accounts::ops::set_role(&cli, "boss", Role::User).await.unwrap();

    // The old token is an ordinary user's on both replicas at once.
    for app in [&a, &b] {
        assert_err(list_users(app, &boss.token).await, Code::PermissionDenied, "ADMIN_REQUIRED");
        assert_err(create_community(app, &boss.token, "after revoke").await, Code::PermissionDenied, "ADMIN_REQUIRED");
        who_am_i(app, &boss.token).await.expect("still signed in as a user");
    }
    // A grant takes effect at once as well, without a new login.
    maru::accounts::ops::set_role(&cli, "boss", Role::Admin).await.unwrap();
    list_users(&a, &boss.token).await.expect("granted again");
    let communities: i64 = sqlx::query_scalar("select count(*) from communities").fetch_one(&a.state.db).await.unwrap();
    assert_eq!(communities, 1, "nothing was created after the revoke");

    let m = a.metrics().await;
    assert!(m.contains("maru_cache_requests_total{cache=\"session\",result=\"hit\"}"), "{m}");
}

#[sqlx::test]
async fn ended_sessions_refuse_their_access_tokens_on_every_replica(pool: PgPool) {
    let (a, b) = two_replicas(pool).await;

    // Logout (on b) ends the session's access tokens (used on a).
    let sora = a.user("sora").await;
    who_am_i(&a, &sora.token).await.expect("live");
    b.auth().logout(pb::LogoutRequest { refresh_token: sora.refresh.clone() }).await.unwrap();
    assert_err(who_am_i(&a, &sora.token).await, Code::Unauthenticated, "SESSION_ENDED");
    assert_err(who_am_i(&b, &sora.token).await, Code::Unauthenticated, "SESSION_ENDED");

    // Refresh-token reuse detection stops the thief's and the owner's access tokens.
    let yuna = a.user("yuna").await;
    let rotated =
        a.auth().refresh(pb::RefreshRequest { refresh_token: yuna.refresh.clone() }).await.unwrap().into_inner();
    who_am_i(&a, &yuna.token).await.expect("the first access token is still live");
    who_am_i(&b, &rotated.access_token).await.expect("the rotated one too");
    let r = b.auth().refresh(pb::RefreshRequest { refresh_token: yuna.refresh.clone() }).await;
    assert_err(r, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    for token in [&yuna.token, &rotated.access_token] {
        assert_err(who_am_i(&a, token).await, Code::Unauthenticated, "SESSION_ENDED");
        assert_err(who_am_i(&b, token).await, Code::Unauthenticated, "SESSION_ENDED");
    }

    // ChangePassword ends the other sessions, not the caller's.
    let here = a.user("dami").await;
    let elsewhere = a.login("dami").await;
    who_am_i(&a, &elsewhere.access_token).await.expect("live");
    who_am_i(&b, &elsewhere.access_token).await.expect("live");
    b.auth()
        .change_password(here.req(pb::ChangePasswordRequest {
            old_password: PASSWORD.into(),
            new_password: "a brand new secret".into(),
        }))
        .await
        .unwrap();
    assert_err(who_am_i(&a, &elsewhere.access_token).await, Code::Unauthenticated, "SESSION_ENDED");
    who_am_i(&a, &here.token).await.expect("the caller's own session goes on");

    let m = a.metrics().await;
    assert!(m.contains("# HELP maru_session_rejections_total"), "{m}");
    assert!(m.contains("maru_session_rejections_total{reason=\"revoked\"}"), "{m}");
}

#[sqlx::test]
async fn a_signed_token_of_an_unknown_or_foreign_session_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("token").await;
    let other = app.user("other").await;
    let uid: uuid::Uuid = u.id.parse().unwrap();
    let now = chrono::Utc::now();

    // Signed with the right key, but the session was never created.
    let (random_sid, _) = app.state.tokens.issue(uid, uuid::Uuid::new_v4(), Role::Admin, now).unwrap();
    assert_err(who_am_i(&app, &random_sid).await, Code::Unauthenticated, "SESSION_ENDED");
    assert_err(list_users(&app, &random_sid).await, Code::Unauthenticated, "SESSION_ENDED");
    // Also where anonymous callers are welcome: a presented token must be good.
    let r = app.trials().list_trials(bearer(&random_sid, pb::ListTrialsRequest::default())).await;
    assert_err(r, Code::Unauthenticated, "SESSION_ENDED");

    // Another account's live session.
    let other_sid: uuid::Uuid = sqlx::query_scalar("select id from sessions where user_id = $1")
        .bind(uuid::Uuid::parse_str(&other.id).unwrap())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let (foreign, _) = app.state.tokens.issue(uid, other_sid, Role::User, now).unwrap();
    assert_err(who_am_i(&app, &foreign).await, Code::Unauthenticated, "SESSION_ENDED");

    // Login does not look at the bearer token: a client holding an ended one can log in.
    app.auth()
        .login(bearer(&random_sid, pb::LoginRequest { login: "token".into(), password: PASSWORD.into() }))
        .await
        .expect("login ignores the bearer token");
    let m = app.metrics().await;
    assert!(m.contains("maru_session_rejections_total{reason=\"unknown\"}"), "{m}");
    assert!(m.contains("maru_session_rejections_total{reason=\"user_mismatch\"}"), "{m}");
}

/// Redis down: the database answers every session check, with the same results.
#[sqlx::test]
async fn without_redis_the_database_decides(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    assert!(!app.state.cache.is_up());
    let boss = app.admin_user("boss").await;
    let u = app.user("sora").await;
    who_am_i(&app, &u.token).await.expect("live");
    list_users(&app, &boss.token).await.expect("admin");

    maru::accounts::ops::set_role(&app.state, "boss", Role::User).await.unwrap();
    assert_err(list_users(&app, &boss.token).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    app.auth().logout(pb::LogoutRequest { refresh_token: u.refresh.clone() }).await.unwrap();
    assert_err(who_am_i(&app, &u.token).await, Code::Unauthenticated, "SESSION_ENDED");
    let m = app.metrics().await;
    assert!(m.contains("maru_cache_requests_total{cache=\"session\",result=\"bypass\"}"), "{m}");
}

/// Issue 14 point 2, step by step: a token from before DeleteAccount acts nowhere, CreatePost
/// writes nothing, and the account leaves every membership read and count.
#[sqlx::test]
async fn a_deleted_account_cannot_act_and_leaves_every_membership_read(pool: PgPool) {
    use maru::grpc::pb::complaint_service_client::ComplaintServiceClient;
    use maru::grpc::pb::feed_service_client::FeedServiceClient;
    use maru::grpc::pb::notice_service_client::NoticeServiceClient;
    use maru::grpc::pb::profile_service_client::ProfileServiceClient;
    use maru::grpc::pb::social_service_client::SocialServiceClient;

    let app = TestApp::spawn(pool).await;
    let communities = || CommunityServiceClient::new(app.channel.clone());
    let feed = || FeedServiceClient::new(app.channel.clone());
    let c = app.community("APARTMENT", "푸르지오").await;
    let other = app.community("CLUB", "클럽").await;
    let mgr = app.user("mgr").await;
    let gone = app.user("gone").await;
    let applicant = app.user("applicant").await;
    app.add_member(&c, &mgr, "APPROVED", "MANAGER").await;
    app.add_member(&c, &gone, "APPROVED", "MANAGER").await;
    app.add_member(&c, &applicant, "PENDING", "MEMBER").await;
    let post = feed()
        .create_post(mgr.req(pb::CreatePostRequest {
            community_id: c.clone(),
            text: "안녕하세요".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .post
        .unwrap();
    // The token works before the deletion (and its session state is cached as live).
    NoticeServiceClient::new(app.channel.clone())
        .list_notices(gone.req(pb::ListNoticesRequest { community_id: c.clone(), ..Default::default() }))
        .await
        .expect("a member lists notices");

    let profiles = || ProfileServiceClient::new(app.channel.clone());
    profiles().delete_account(gone.req(pb::DeleteAccountRequest { confirm_handle: "gone".into() })).await.unwrap();
    profiles()
        .delete_account(applicant.req(pb::DeleteAccountRequest { confirm_handle: "applicant".into() }))
        .await
        .unwrap();

    // The old token acts nowhere.
    let ended = |r: Result<(), tonic::Status>, what: &str| {
        let s = r.expect_err(what);
        assert_eq!((s.code(), reason(&s).as_str()), (Code::Unauthenticated, "SESSION_ENDED"), "{what}: {s:?}");
    };
    let r = communities()
        .request_membership(
            gone.req(pb::RequestMembershipRequest { community_id: other.clone(), ..Default::default() }),
        )
        .await;
    ended(r.map(drop), "RequestMembership");
    let r = NoticeServiceClient::new(app.channel.clone())
        .list_notices(gone.req(pb::ListNoticesRequest { community_id: c.clone(), ..Default::default() }))
        .await;
    ended(r.map(drop), "ListNotices");
    let r = feed().list_posts(gone.req(pb::ListPostsRequest { community_id: c.clone(), ..Default::default() })).await;
    ended(r.map(drop), "ListPosts");
    let r = ComplaintServiceClient::new(app.channel.clone())
        .file_complaint(gone.req(pb::FileComplaintRequest {
            community_id: c.clone(),
            title: "소음".into(),
            body: "윗집".into(),
            ..Default::default()
        }))
        .await;
    ended(r.map(drop), "FileComplaint");
    let r = SocialServiceClient::new(app.channel.clone())
        .follow(gone.req(pb::FollowRequest { handle: "mgr".into(), ..Default::default() }))
        .await;
    ended(r.map(drop), "Follow");
    let r = feed()
        .like(gone.req(pb::LikeRequest { post_id: post.id.clone(), comment_id: String::new(), ..Default::default() }))
        .await;
    ended(r.map(drop), "Like");
    let r = feed()
        .create_post(gone.req(pb::CreatePostRequest {
            community_id: c.clone(),
            text: "유령".into(),
            ..Default::default()
        }))
        .await;
    ended(r.map(drop), "CreatePost");
    let gone_id = uuid::Uuid::parse_str(&gone.id).unwrap();
    let count = |sql: &'static str| {
        let db = app.state.db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).bind(gone_id).fetch_one(&db).await.unwrap() }
    };
    assert_eq!(count("select count(*) from posts where author_id = $1").await, 0);
    assert_eq!(count("select count(*) from community_complaints where filed_by = $1").await, 0);
    assert_eq!(count("select count(*) from follows where follower_id = $1").await, 0);
    assert_eq!(count("select count(*) from post_likes where user_id = $1").await, 0);

    // CreatePost itself (below the auth layer) refuses before writing, never after.
    let cmd = maru::feed::model::CreatePost {
        community_id: None,
        text: "유령".into(),
        tags: vec![],
        image_urls: vec![],
        media_ids: vec![],
        request_id: None,
    };
    let caller = maru::caller::Caller { user_id: gone_id, session_id: uuid::Uuid::now_v7(), role: Role::User };
    let r = maru::feed::ops::create_post(&app.state, &caller, cmd).await;
    assert_eq!(r.map(|_| ()).map_err(|e| e.code()), Err(Code::Unauthenticated));
    assert_eq!(count("select count(*) from posts where author_id = $1").await, 0, "no row written");

    // Membership reads and counts.
    let members = communities()
        .list_members(mgr.req(pb::ListMembersRequest { community_id: c.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.iter().map(|m| m.user_handle.as_str()).collect::<Vec<_>>(), ["mgr"]);
    let community = communities()
        .get_community(mgr.req(pb::GetCommunityRequest { community_id: c.clone() }))
        .await
        .unwrap()
        .into_inner()
        .community
        .unwrap();
    assert_eq!(community.member_count, 1);
    let pending = communities()
        .list_membership_requests(
            mgr.req(pb::ListMembershipRequestsRequest { community_id: c.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert!(pending.is_empty(), "the deleted applicant's request is gone: {pending:?}");
    let applicant_membership: uuid::Uuid =
        sqlx::query_scalar("select id from community_memberships where user_id = $1")
            .bind(uuid::Uuid::parse_str(&applicant.id).unwrap())
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    let r = communities()
        .decide_membership(mgr.req(pb::DecideMembershipRequest {
            membership_id: applicant_membership.to_string(),
            approve: true,
            note: String::new(),
        }))
        .await;
    assert_err(r, Code::NotFound, "MEMBERSHIP_NOT_FOUND");
    // The deleted co-manager does not count: mgr is the last manager and may not leave.
    let r = communities().leave_community(mgr.req(pb::LeaveCommunityRequest { community_id: c.clone() })).await;
    assert_err(r, Code::FailedPrecondition, "LAST_MANAGER");
}

// ---- Session management (issue 19): ListSessions, RevokeSession, LogoutAll, the session limit.

/// Logs `handle` in with `user_agent`; returns (access token, refresh token).
async fn login_from(app: &TestApp, handle: &str, user_agent: &str) -> (String, String) {
    let mut r = tonic::Request::new(pb::LoginRequest { login: handle.into(), password: PASSWORD.into() });
    r.metadata_mut().insert("user-agent", user_agent.parse().unwrap());
    let t = app.auth().login(r).await.expect("login").into_inner();
    (t.access_token, t.refresh_token)
}

async fn sessions_of(app: &TestApp, token: &str, page_size: i32, page_token: &str) -> pb::ListSessionsResponse {
    app.auth()
        .list_sessions(bearer(token, pb::ListSessionsRequest { page_size, page_token: page_token.into() }))
        .await
        .expect("list sessions")
        .into_inner()
}

async fn live_sessions_in_db(app: &TestApp, user_id: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from sessions where user_id = $1::uuid and revoked_at is null and expires_at > now()",
    )
    .bind(user_id)
    .fetch_one(&app.state.db)
    .await
    .unwrap()
}

#[sqlx::test]
async fn list_sessions_shows_each_device_newest_first_and_marks_the_current_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.sign_up("mina").await;
    let (phone, _) = login_from(&app, "mina", "maru-phone/1.0 (Android)").await;
    let (laptop, _) = login_from(&app, "mina", "maru-laptop/2.0\t(Linux)").await;

    let listed = sessions_of(&app, &phone, 0, "").await;
    assert_eq!(listed.sessions.len(), 2, "{listed:?}");
    assert!(listed.next_page_token.is_empty());
    let (newest, oldest) = (&listed.sessions[0], &listed.sessions[1]);
    assert!(newest.user_agent.contains("maru-laptop/2.0"), "{newest:?}");
    assert!(!newest.user_agent.chars().any(char::is_control), "control characters removed: {newest:?}");
    assert!(oldest.user_agent.contains("maru-phone/1.0 (Android)"), "{oldest:?}");
    assert_eq!((newest.current, oldest.current), (false, true), "the phone's token made the call");
    for s in &listed.sessions {
        assert_eq!(s.address, "127.0.0.1");
        let (created, expires) = (s.created_at.unwrap(), s.expires_at.unwrap());
        assert!(expires.seconds > created.seconds, "{s:?}");
        assert!(s.last_used_at.is_some());
    }
    // The laptop sees the same two sessions, the other one marked current.
    let from_laptop = sessions_of(&app, &laptop, 0, "").await;
    assert_eq!(from_laptop.sessions.iter().filter(|s| s.current).count(), 1);
    assert!(from_laptop.sessions[0].current);

    // Another user sees only their own.
    let other = app.user("joon").await;
    let theirs = sessions_of(&app, &other.token, 0, "").await;
    assert_eq!(theirs.sessions.len(), 1);
    assert!(theirs.sessions[0].current);
    assert_err(
        app.auth().list_sessions(pb::ListSessionsRequest::default()).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
}

#[sqlx::test]
async fn list_sessions_pages_without_repeating_or_skipping(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.sign_up("page").await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(login_from(&app, "page", &format!("device-{i}")).await.0);
    }
    let (mut seen, mut token) = (Vec::new(), String::new());
    let mut pages = 0;
    loop {
        let page = sessions_of(&app, &tokens[0], 2, &token).await;
        pages += 1;
        seen.extend(page.sessions.iter().map(|s| s.user_agent.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..5).rev().map(|i| format!("device-{i}")).collect();
    assert_eq!(seen.iter().map(|ua| ua.split(' ').next().unwrap().to_owned()).collect::<Vec<_>>(), expected);
    let r = app
        .auth()
        .list_sessions(bearer(&tokens[0], pb::ListSessionsRequest { page_size: 2, page_token: "forged.token".into() }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
}

#[sqlx::test]
async fn revoke_session_ends_that_device_at_once_and_never_anothers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.sign_up("hana").await;
    let (phone, _) = login_from(&app, "hana", "phone").await;
    let (stolen, stolen_refresh) = login_from(&app, "hana", "unknown device").await;
    who_am_i(&app, &stolen).await.expect("the other device works before");
    let listed = sessions_of(&app, &phone, 0, "").await;
    let target = listed.sessions.iter().find(|s| !s.current).unwrap().session_id.clone();

    // Another user cannot revoke it, nor learn that it exists.
    let mallory = app.user("mallory").await;
    let r = app.auth().revoke_session(mallory.req(pb::RevokeSessionRequest { session_id: target.clone() })).await;
    assert_err(r, Code::NotFound, "SESSION_NOT_FOUND");
    who_am_i(&app, &stolen).await.expect("still live after a stranger's attempt");

    app.auth()
        .revoke_session(bearer(&phone, pb::RevokeSessionRequest { session_id: target.clone() }))
        .await
        .expect("revoke");
    assert_err(who_am_i(&app, &stolen).await, Code::Unauthenticated, "SESSION_ENDED");
    let r = app.auth().refresh(pb::RefreshRequest { refresh_token: stolen_refresh }).await;
    assert_err(r, Code::Unauthenticated, "SESSION_REVOKED");
    who_am_i(&app, &phone).await.expect("the revoking device stays signed in");
    assert_eq!(sessions_of(&app, &phone, 0, "").await.sessions.len(), 1);

    // Twice, unknown, malformed, anonymous.
    let r = app.auth().revoke_session(bearer(&phone, pb::RevokeSessionRequest { session_id: target })).await;
    assert_err(r, Code::NotFound, "SESSION_NOT_FOUND");
    let r = app
        .auth()
        .revoke_session(bearer(&phone, pb::RevokeSessionRequest { session_id: uuid::Uuid::now_v7().to_string() }))
        .await;
    assert_err(r, Code::NotFound, "SESSION_NOT_FOUND");
    let r = app.auth().revoke_session(bearer(&phone, pb::RevokeSessionRequest { session_id: "x\0y".into() })).await;
    let status = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&status), vec!["session_id".to_string()]);
    let r = app.auth().revoke_session(pb::RevokeSessionRequest { session_id: String::new() }).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_MISSING");
}

#[sqlx::test]
async fn logout_all_ends_every_other_session_or_all_of_them(pool: PgPool) {
    let (a, b) = two_replicas(pool).await;
    a.sign_up("yuna").await;
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(login_from(&a, "yuna", &format!("d{i}")).await.0);
    }
    for t in &tokens {
        who_am_i(&b, t).await.expect("cached as live on the other replica");
    }
    let r = a.auth().logout_all(bearer(&tokens[0], pb::LogoutAllRequest { keep_current: true })).await.unwrap();
    assert_eq!(r.into_inner().revoked, 3);
    who_am_i(&b, &tokens[0]).await.expect("the calling session is kept");
    for t in &tokens[1..] {
        assert_err(who_am_i(&b, t).await, Code::Unauthenticated, "SESSION_ENDED");
    }
    let r = b.auth().logout_all(bearer(&tokens[0], pb::LogoutAllRequest { keep_current: false })).await.unwrap();
    assert_eq!(r.into_inner().revoked, 1);
    for app in [&a, &b] {
        assert_err(who_am_i(app, &tokens[0]).await, Code::Unauthenticated, "SESSION_ENDED");
    }
    let r = a.auth().logout_all(pb::LogoutAllRequest { keep_current: false }).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_MISSING");
}

#[sqlx::test]
async fn a_login_beyond_the_session_limit_revokes_the_oldest(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.auth.max_sessions_per_user = 3).await;
    let user = app.sign_up("limit").await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(login_from(&app, "limit", &format!("device-{i}")).await.0);
    }
    for t in &tokens[..2] {
        assert_err(who_am_i(&app, t).await, Code::Unauthenticated, "SESSION_ENDED");
    }
    for t in &tokens[2..] {
        who_am_i(&app, t).await.expect("the three newest stay");
    }
    let listed = sessions_of(&app, &tokens[4], 0, "").await;
    let agents: Vec<&str> = listed.sessions.iter().map(|s| s.user_agent.split(' ').next().unwrap()).collect();
    assert_eq!(agents, ["device-4", "device-3", "device-2"]);
    assert_eq!(live_sessions_in_db(&app, &user.id).await, 3);
    let m = app.metrics().await;
    assert!(m.lines().any(|l| l.starts_with("maru_sessions_evicted_total") && l.ends_with(" 2")), "{m}");
}

#[sqlx::test]
async fn concurrent_logins_never_exceed_the_session_limit(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.auth.max_sessions_per_user = 3).await;
    let user = app.sign_up("race").await;
    let logins = (0..12).map(|i| {
        let app = &app;
        async move { login_from(app, "race", &format!("racer-{i}")).await }
    });
    let tokens = futures::future::join_all(logins).await;
    assert_eq!(tokens.len(), 12);
    assert_eq!(live_sessions_in_db(&app, &user.id).await, 3, "exactly the limit stays live");
    let mut live = 0;
    for (t, _) in &tokens {
        if who_am_i(&app, t).await.is_ok() {
            live += 1;
        }
    }
    assert_eq!(live, 3);
}

// ---- Key rotation (issue 19): access and page tokens name their key; the keyring file is
// re-read while the server runs.

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("a JWT").kid.expect("a kid")
}

/// Writes the keyring file with a modification time that differs from the last write's.
fn write_keyring(path: &std::path::Path, text: &str, generation: u64) {
    std::fs::write(path, text).unwrap();
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(generation);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(at).unwrap();
}

/// Polls `check` until it holds (the reload runs every second here); fails after 30 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never happened: {what}");
}

#[sqlx::test]
async fn the_signing_key_rotates_without_a_restart_or_a_logout(pool: PgPool) {
    const K1: &str = "first-key-first-key-first-key-first-key";
    const K2: &str = "second-key-second-key-second-key-second-key";
    let dir = std::env::temp_dir().join(format!("maru-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyring");
    write_keyring(&path, &format!("# signing key first\nk1 {K1}\n"), 0);
    let app = TestApp::spawn_with(pool, |s| {
        s.auth.jwt_key = None;
        s.auth.jwt_keyring_file = Some(path.clone());
        s.auth.keyring_reload_s = 1;
        // The waits below sign in once per poll: keep every session, so that the first one is
        // ended by its key's retirement and never by the per-user session cap.
        s.auth.max_sessions_per_user = 1000;
    })
    .await;
    app.sign_up("rota").await;
    let (old, _) = login_from(&app, "rota", "old").await;
    login_from(&app, "rota", "second device").await;
    assert_eq!(kid_of(&old), "k1");
    let page = sessions_of(&app, &old, 1, "").await;
    assert!(!page.next_page_token.is_empty());

    // Steps 1–2: the new key is added and signs; the old one still verifies.
    write_keyring(&path, &format!("k2 {K2}\nk1 {K1}\n"), 10);
    eventually("new tokens are signed with k2", || async { kid_of(&login_from(&app, "rota", "new").await.0) == "k2" })
        .await;
    let (new, _) = login_from(&app, "rota", "new").await;
    who_am_i(&app, &old).await.expect("a token of the old key still works");
    who_am_i(&app, &new).await.expect("a token of the new key works");
    let next = sessions_of(&app, &new, 1, &page.next_page_token).await;
    assert_eq!(next.sessions.len(), 1, "a page token of the old key still works");

    // A keyring that does not parse is refused; the keys in use stay.
    write_keyring(&path, "k3 too-short\n", 20);
    eventually("the refusal is counted", || async {
        app.metrics().await.contains("maru_auth_keyring_reloads_total{outcome=\"error\"}")
    })
    .await;
    who_am_i(&app, &old).await.expect("the ring in use stayed");
    assert_eq!(kid_of(&login_from(&app, "rota", "after refusal").await.0), "k2");

    // Step 3: the old key is retired; its tokens are refused, the new key's are not.
    write_keyring(&path, &format!("k2 {K2}\n"), 30);
    eventually("k1 is retired", || async {
        who_am_i(&app, &old).await.err().is_some_and(|s| reason(&s) == "TOKEN_INVALID")
    })
    .await;
    assert_err(who_am_i(&app, &old).await, Code::Unauthenticated, "TOKEN_INVALID");
    who_am_i(&app, &new).await.expect("k2's token works after k1 is retired");
    let r = app
        .auth()
        .list_sessions(bearer(&new, pb::ListSessionsRequest { page_size: 1, page_token: page.next_page_token }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    std::fs::remove_dir_all(&dir).unwrap();
}
