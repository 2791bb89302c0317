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
        .follow(gone.req(pb::FollowRequest { handle: "mgr".into(), request_id: String::new() }))
        .await;
    ended(r.map(drop), "Follow");
    let r = feed()
        .like(gone.req(pb::LikeRequest {
            post_id: post.id.clone(),
            comment_id: String::new(),
            request_id: String::new(),
        }))
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
