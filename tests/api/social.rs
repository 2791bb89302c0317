//! ProfileService and SocialService: profiles, soft delete, follows and their counts.

use maru::grpc::pb;
use maru::grpc::pb::profile_service_client::ProfileServiceClient;
use maru::grpc::pb::social_service_client::SocialServiceClient;
use prost_types::FieldMask;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::helpers::{TestApp, TestUser, assert_err, violations};

fn profiles(app: &TestApp) -> ProfileServiceClient<Channel> {
    ProfileServiceClient::new(app.channel.clone())
}

fn social(app: &TestApp) -> SocialServiceClient<Channel> {
    SocialServiceClient::new(app.channel.clone())
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

async fn profile(app: &TestApp, handle: &str, who: Option<&TestUser>) -> pb::Profile {
    let msg = pb::GetProfileRequest { handle: handle.into() };
    let req = match who {
        Some(u) => u.req(msg),
        None => Request::new(msg),
    };
    profiles(app).get_profile(req).await.unwrap().into_inner().profile.unwrap()
}

async fn follow_rows(app: &TestApp, column: &str, user: &TestUser) -> i64 {
    let sql = format!("select count(*) from follows where {column} = $1");
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(uuid::Uuid::parse_str(&user.id).unwrap())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    n
}

async fn follow(app: &TestApp, who: &TestUser, handle: &str) -> pb::FollowResponse {
    social(app)
        .follow(who.req(pb::FollowRequest { handle: handle.into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
}

#[sqlx::test]
async fn profiles_are_public_and_only_their_owner_edits_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let jimin = app.user("jimin").await;

    let p = profile(&app, "JIMIN", None).await;
    assert_eq!((p.handle.as_str(), p.display_name.as_str(), p.follower_count), ("jimin", "User jimin", 0));

    let updated = profiles(&app)
        .update_profile(jimin.req(pb::UpdateProfileRequest {
            display_name: "지민".into(),
            bio: "안녕하세요, 판교 사는 지민입니다".into(),
            link1: "https://blog.example/jimin".into(),
            image_url: "https://img.example/j.png".into(),
            link2: "ignored: not in the mask".into(),
            update_mask: mask(&["display_name", "bio", "link1", "image_url"]),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(updated.display_name, "지민");
    assert_eq!(updated.link2, "");
    assert_eq!(profile(&app, "jimin", None).await.bio, "안녕하세요, 판교 사는 지민입니다");
    // WhoAmI (cached) shows the new display name at once.
    let me = app.auth().who_am_i(jimin.req(pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().display_name, "지민");

    // Clearing a link with an empty value.
    let cleared = profiles(&app)
        .update_profile(jimin.req(pb::UpdateProfileRequest { update_mask: mask(&["link1"]), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!((cleared.link1.as_str(), cleared.display_name.as_str()), ("", "지민"));

    // Anonymous callers cannot edit.
    assert_err(
        profiles(&app).update_profile(Request::new(pb::UpdateProfileRequest::default())).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
}

#[sqlx::test]
async fn invalid_profile_input_names_every_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let u = app.user("minsu").await;
    let s = assert_err(
        profiles(&app)
            .update_profile(u.req(pb::UpdateProfileRequest {
                display_name: " ".into(),
                bio: "가".repeat(501),
                link1: "javascript:alert(1)".into(),
                link2: "not a url".into(),
                image_url: "ftp://img.example/a.png".into(),
                update_mask: mask(&["display_name", "bio", "link1", "link2", "image_url"]),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["display_name", "bio", "link1", "link2", "image_url"]);
    let s = assert_err(
        profiles(&app).update_profile(u.req(pb::UpdateProfileRequest::default())).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["update_mask"]);
    let s = assert_err(
        profiles(&app)
            .update_profile(u.req(pb::UpdateProfileRequest { update_mask: mask(&["email"]), ..Default::default() }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["update_mask"]);
    for bad in ["", "ab", "no spaces", "한글핸들"] {
        let s = assert_err(
            profiles(&app).get_profile(Request::new(pb::GetProfileRequest { handle: bad.into() })).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violations(&s), ["handle"], "{bad:?}");
    }
    assert_err(
        profiles(&app).get_profile(Request::new(pb::GetProfileRequest { handle: "nobody".into() })).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
}

#[sqlx::test]
async fn a_deleted_account_disappears_but_keeps_its_handle(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let gone = app.user("leaving").await;
    let friend = app.user("friend").await;
    follow(&app, &gone, "friend").await;
    follow(&app, &friend, "leaving").await;
    assert_eq!(profile(&app, "friend", None).await.follower_count, 1);

    let s = assert_err(
        profiles(&app).delete_account(gone.req(pb::DeleteAccountRequest { confirm_handle: "friend".into() })).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["confirm_handle"]);
    assert_err(
        profiles(&app)
            .delete_account(Request::new(pb::DeleteAccountRequest { confirm_handle: "leaving".into() }))
            .await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    profiles(&app)
        .delete_account(gone.req(pb::DeleteAccountRequest { confirm_handle: "Leaving".into() }))
        .await
        .unwrap();

    assert_err(
        profiles(&app).get_profile(Request::new(pb::GetProfileRequest { handle: "leaving".into() })).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    let f = profile(&app, "friend", None).await;
    assert_eq!((f.follower_count, f.following_count), (0, 0), "the deleted account's follows vanish");
    let followers = social(&app)
        .list_followers(Request::new(pb::ListFollowersRequest { handle: "friend".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert!(followers.profiles.is_empty());
    assert_err(
        social(&app).follow(friend.req(pb::FollowRequest { handle: "leaving".into(), ..Default::default() })).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    // The handle stays reserved.
    assert_err(
        app.auth().sign_up(crate::helpers::sign_up_req("leaving", "new@example.com")).await,
        Code::AlreadyExists,
        "HANDLE_TAKEN",
    );
    // Deleting twice: the account's old token no longer acts at all (issue 14).
    assert_err(
        profiles(&app).delete_account(gone.req(pb::DeleteAccountRequest { confirm_handle: "leaving".into() })).await,
        Code::Unauthenticated,
        "SESSION_ENDED",
    );
    // Its refresh token was revoked with every session.
    assert_eq!(
        app.auth().refresh(pb::RefreshRequest { refresh_token: gone.refresh.clone() }).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

#[sqlx::test]
async fn follow_is_idempotent_and_counts_equal_rows(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.user("alice").await;
    let b = app.user("bob").await;

    let first = follow(&app, &a, "bob").await;
    assert!(first.created);
    let p = first.profile.unwrap();
    assert_eq!((p.follower_count, p.followed_by_me), (1, true));
    let again = follow(&app, &a, "BOB").await;
    assert!(!again.created, "following twice is OK and changes nothing");
    assert_eq!(again.profile.unwrap().follower_count, 1);
    assert_eq!(follow_rows(&app, "followee_id", &b).await, 1);

    assert!(profile(&app, "bob", Some(&a)).await.followed_by_me);
    assert!(!profile(&app, "bob", None).await.followed_by_me);
    assert_eq!(profile(&app, "alice", None).await.following_count, 1);

    // Following yourself.
    let s = assert_err(
        social(&app).follow(a.req(pb::FollowRequest { handle: "alice".into(), ..Default::default() })).await,
        Code::InvalidArgument,
        "CANNOT_FOLLOW_SELF",
    );
    assert_eq!(violations(&s), ["handle"]);
    assert_err(
        social(&app).follow(a.req(pb::FollowRequest { handle: "nobody".into(), ..Default::default() })).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );

    // Unfollow twice: removed, then nothing to remove.
    let un = |u: &TestUser| u.req(pb::UnfollowRequest { handle: "bob".into() });
    assert!(social(&app).unfollow(un(&a)).await.unwrap().into_inner().removed);
    assert!(!social(&app).unfollow(un(&a)).await.unwrap().into_inner().removed);
    assert_eq!(profile(&app, "bob", None).await.follower_count, 0);

    // Bob removes Alice from his followers.
    follow(&app, &a, "bob").await;
    let rm = social(&app).remove_follower(b.req(pb::RemoveFollowerRequest { handle: "alice".into() })).await.unwrap();
    assert!(rm.into_inner().removed);
    assert_eq!(follow_rows(&app, "followee_id", &b).await, 0);
    let rm = social(&app).remove_follower(b.req(pb::RemoveFollowerRequest { handle: "alice".into() })).await.unwrap();
    assert!(!rm.into_inner().removed);
}

#[sqlx::test]
async fn follow_lists_page_newest_first(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let star = app.user("star").await;
    let fans = app.fast_users("fan", 5).await;
    for f in &fans {
        follow(&app, f, "star").await;
    }
    follow(&app, &star, "fan0").await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = social(&app)
            .list_followers(Request::new(pb::ListFollowersRequest {
                handle: "star".into(),
                page_size: 2,
                page_token: token.clone(),
            }))
            .await
            .unwrap()
            .into_inner();
        seen.extend(r.profiles.into_iter().map(|p| p.handle));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, ["fan4", "fan3", "fan2", "fan1", "fan0"]);
    let following = social(&app)
        .list_following(Request::new(pb::ListFollowingRequest { handle: "star".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(following.profiles.iter().map(|p| p.handle.as_str()).collect::<Vec<_>>(), ["fan0"]);

    // A token is bound to its list.
    let first = social(&app)
        .list_followers(Request::new(pb::ListFollowersRequest {
            handle: "star".into(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let s = assert_err(
        social(&app)
            .list_following(Request::new(pb::ListFollowingRequest {
                handle: "star".into(),
                page_size: 1,
                page_token: first.next_page_token,
            }))
            .await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(violations(&s), ["page_token"]);
    let s = assert_err(
        social(&app)
            .list_followers(Request::new(pb::ListFollowersRequest {
                handle: "star".into(),
                page_size: -1,
                page_token: String::new(),
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["page_size"]);
}

#[sqlx::test]
async fn writes_need_a_caller(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.user("target").await;
    let h = || "target".to_string();
    let mut c = social(&app);
    assert_err(
        c.follow(Request::new(pb::FollowRequest { handle: h(), ..Default::default() })).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    assert_err(
        c.unfollow(Request::new(pb::UnfollowRequest { handle: h() })).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    assert_err(
        c.remove_follower(Request::new(pb::RemoveFollowerRequest { handle: h() })).await,
        Code::Unauthenticated,
        "TOKEN_MISSING",
    );
    // A bad token is refused even where anonymous callers are allowed.
    assert_err(
        c.list_followers(crate::helpers::bearer(
            "garbage",
            pb::ListFollowersRequest { handle: h(), ..Default::default() },
        ))
        .await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
}

#[sqlx::test]
async fn one_user_following_100_times_at_once_makes_one_row(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.user("racer").await;
    let b = app.user("popular").await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let mut c = social(&app);
        let req = a.req(pb::FollowRequest { handle: "popular".into(), ..Default::default() });
        tasks.push(tokio::spawn(async move { c.follow(req).await }));
    }
    let mut created = 0;
    for r in futures::future::join_all(tasks).await {
        if r.unwrap().expect("follow is idempotent").into_inner().created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(follow_rows(&app, "followee_id", &b).await, 1);
    assert_eq!(profile(&app, "popular", None).await.follower_count, 1);
}

#[sqlx::test]
async fn a_hundred_users_following_at_once_are_all_counted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let star = app.user("celebrity").await;
    let fans = app.fast_users("crowd", 100).await;
    let mut tasks = Vec::new();
    for f in &fans {
        let mut c = social(&app);
        let req = f.req(pb::FollowRequest { handle: "celebrity".into(), ..Default::default() });
        tasks.push(tokio::spawn(async move { c.follow(req).await }));
    }
    for r in futures::future::join_all(tasks).await {
        assert!(r.unwrap().unwrap().into_inner().created);
    }
    assert_eq!(follow_rows(&app, "followee_id", &star).await, 100);
    assert_eq!(profile(&app, "celebrity", None).await.follower_count, 100);

    // And all unfollowing at once while half follow again: counts still equal rows.
    let mut tasks = Vec::new();
    for f in &fans {
        let mut c = social(&app);
        let req = f.req(pb::UnfollowRequest { handle: "celebrity".into() });
        tasks.push(tokio::spawn(async move { c.unfollow(req).await.map(|_| ()) }));
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap().unwrap();
    }
    assert_eq!(follow_rows(&app, "followee_id", &star).await, 0);
    assert_eq!(profile(&app, "celebrity", None).await.follower_count, 0);
}

#[sqlx::test]
async fn profiles_are_cached_but_never_stale_after_a_write_on_either_instance(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert!(app.state.cache.is_up(), "this test needs Redis");
    let prefix = app.redis_prefix.clone();
    let app2 = TestApp::spawn_with(pool.clone(), move |s| s.redis.key_prefix = prefix).await;
    let both = [&app, &app2];
    let a = app.user("alice").await;
    let b = app.user("bob").await;

    // A NOT_FOUND is not cached: a handle signed up afterwards is found at once.
    assert_err(
        profiles(&app).get_profile(Request::new(pb::GetProfileRequest { handle: "carol".into() })).await,
        Code::NotFound,
        "USER_NOT_FOUND",
    );
    let c = app.user("carol").await;
    assert_eq!(profile(&app, "carol", None).await.handle, "carol");

    // Cached: a change made behind maru's back is not seen on either instance...
    for x in both {
        profile(x, "bob", None).await;
    }
    sqlx::query("update users set display_name = 'Behind' where handle = 'bob'").execute(&pool).await.unwrap();
    for x in both {
        assert_ne!(profile(x, "bob", None).await.display_name, "Behind", "served from the cache");
    }
    // ...while an instance with the cache switched off reads the row.
    let uncached = TestApp::spawn_with(pool.clone(), |s| s.feed.cache_enabled = false).await;
    assert_eq!(profile(&uncached, "bob", None).await.display_name, "Behind");

    // Follow on instance 1: both profiles change on both instances at once; `followed_by_me`
    // is the reader's own.
    follow(&app, &a, "bob").await;
    for x in both {
        let bob = profile(x, "bob", None).await;
        assert_eq!((bob.follower_count, bob.followed_by_me), (1, false));
        assert!(profile(x, "bob", Some(&a)).await.followed_by_me);
        assert!(!profile(x, "bob", Some(&c)).await.followed_by_me);
        assert_eq!(profile(x, "alice", None).await.following_count, 1);
    }
    // Unfollow on instance 2.
    social(&app2).unfollow(a.req(pb::UnfollowRequest { handle: "bob".into() })).await.unwrap();
    for x in both {
        assert_eq!(profile(x, "bob", None).await.follower_count, 0);
        assert!(!profile(x, "bob", Some(&a)).await.followed_by_me);
        assert_eq!(profile(x, "alice", Some(&b)).await.following_count, 0);
    }
    // RemoveFollower on instance 1.
    follow(&app2, &b, "alice").await;
    assert_eq!(profile(&app, "alice", None).await.follower_count, 1);
    social(&app).remove_follower(a.req(pb::RemoveFollowerRequest { handle: "bob".into() })).await.unwrap();
    for x in both {
        assert_eq!(profile(x, "alice", None).await.follower_count, 0);
        assert_eq!(profile(x, "bob", None).await.following_count, 0);
    }
    // UpdateProfile on instance 2.
    profiles(&app2)
        .update_profile(b.req(pb::UpdateProfileRequest {
            display_name: "밥".into(),
            update_mask: mask(&["display_name"]),
            ..Default::default()
        }))
        .await
        .unwrap();
    for x in both {
        assert_eq!(profile(x, "bob", None).await.display_name, "밥");
    }
    // A deleted follower leaves the counts of everyone they followed, cached or not.
    follow(&app, &c, "bob").await;
    for x in both {
        assert_eq!(profile(x, "bob", None).await.follower_count, 1);
    }
    profiles(&app2).delete_account(c.req(pb::DeleteAccountRequest { confirm_handle: "carol".into() })).await.unwrap();
    for x in both {
        assert_eq!(profile(x, "bob", None).await.follower_count, 0);
        assert_err(
            profiles(x).get_profile(Request::new(pb::GetProfileRequest { handle: "carol".into() })).await,
            Code::NotFound,
            "USER_NOT_FOUND",
        );
    }
}

/// Alice's `(followed_by_me, follows_me)` on Bob's profile and Bob's on Alice's, read twice on
/// each instance (the second time from the `follow_pair` cache); every answer must agree.
async fn follow_flags(apps: &[&TestApp], a: &TestUser, b: &TestUser) -> (bool, bool, bool, bool) {
    let mut seen = Vec::new();
    for x in apps {
        for _ in 0..2 {
            let (ab, ba) = (profile(x, &b.handle, Some(a)).await, profile(x, &a.handle, Some(b)).await);
            seen.push((ab.followed_by_me, ab.follows_me, ba.followed_by_me, ba.follows_me));
        }
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "instances or repeats disagree: {seen:?}");
    seen[0]
}

/// `followed_by_me` and `follows_me` of a signed-in reader are cached per reader and profile;
/// Follow, Unfollow and RemoveFollower move them on both instances before they return, and a
/// third account's follow leaves the pair's entries alone.
#[sqlx::test]
async fn follow_flags_are_cached_but_never_stale_after_a_follow_write_on_either_instance(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert!(app.state.cache.is_up(), "this test needs Redis");
    let prefix = app.redis_prefix.clone();
    let app2 = TestApp::spawn_with(pool, move |s| s.redis.key_prefix = prefix).await;
    let both = [&app, &app2];
    let (a, b, c) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    assert_eq!(follow_flags(&both, &a, &b).await, (false, false, false, false));
    follow(&app, &a, "bob").await;
    assert_eq!(follow_flags(&both, &a, &b).await, (true, false, false, true), "alice followed bob");
    follow(&app2, &b, "alice").await;
    assert_eq!(follow_flags(&both, &a, &b).await, (true, true, true, true), "bob followed alice");
    social(&app).unfollow(a.req(pb::UnfollowRequest { handle: "bob".into() })).await.unwrap();
    assert_eq!(follow_flags(&both, &a, &b).await, (false, true, true, false), "alice unfollowed bob");
    social(&app2).remove_follower(a.req(pb::RemoveFollowerRequest { handle: "bob".into() })).await.unwrap();
    assert_eq!(follow_flags(&both, &a, &b).await, (false, false, false, false), "alice removed bob");

    // Served from the cache: a row written behind maru's back is not seen...
    let id = |u: &TestUser| uuid::Uuid::parse_str(&u.id).unwrap();
    sqlx::query("insert into follows (follower_id, followee_id) values ($1, $2)")
        .bind(id(&a))
        .bind(id(&b))
        .execute(&app.state.db)
        .await
        .unwrap();
    for x in both {
        assert!(!profile(x, "bob", Some(&a)).await.followed_by_me, "served from the cache");
    }
    // ...and Carol's follow of Bob moves Bob's profile (its count reads the rows again), not
    // Alice's flags on it.
    follow(&app, &c, "bob").await;
    for x in both {
        let bob = profile(x, "bob", Some(&a)).await;
        assert_eq!((bob.follower_count, bob.followed_by_me), (2, false));
    }
}

#[sqlx::test]
async fn a_retried_follow_with_a_request_id_gets_its_first_answer(pool: PgPool) {
    // Issue 13 pt 5: a retry after a lost reply gets `created: true` and the profile it was
    // first shown, not a silent no-op.
    let app = TestApp::spawn(pool).await;
    let a = app.user("alice").await;
    let b = app.user("bob").await;
    let req = |handle: &str, rid: &str| a.req(pb::FollowRequest { handle: handle.into(), request_id: rid.into() });
    let first = social(&app).follow(req("bob", "f-1")).await.unwrap().into_inner();
    assert!(first.created);
    // The handle is normalised before it is compared: BOB is the same request.
    let again = social(&app).follow(req("BOB", "f-1")).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert!(!social(&app).follow(req("bob", "")).await.unwrap().into_inner().created);
    assert_eq!(follow_rows(&app, "followee_id", &b).await, 1);
    app.user("carol").await;
    assert_err(social(&app).follow(req("carol", "f-1")).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    let s =
        assert_err(social(&app).follow(req("carol", &"x".repeat(65))).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["request_id"]);
}

#[sqlx::test]
async fn developer_profiles_have_a_position_tags_links_and_an_etag(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let dev = app.user("dev").await;
    let fan = app.user("fan").await;
    let before = profile(&app, "dev", None).await;
    assert_eq!(
        (before.position, before.tech_tags.len(), before.links.len(), before.etag.as_str()),
        (pb::DeveloperPosition::Unspecified as i32, 0, 0, "v1")
    );
    let update = |req: pb::UpdateProfileRequest| {
        let mut api = profiles(&app);
        let req = dev.req(req);
        async move { api.update_profile(req).await.map(|r| r.into_inner().profile.unwrap()) }
    };
    let p = update(pb::UpdateProfileRequest {
        bio: "백엔드 개발자입니다. Rust와 PostgreSQL을 좋아해요.".into(),
        position: pb::DeveloperPosition::Fullstack as i32,
        tech_tags: vec!["#Rust".into(), "rust".into(), "PostgreSQL".into(), "쿠버네티스".into()],
        links: vec!["https://github.com/dev".into(), "https://dev.example/blog".into()],
        update_mask: mask(&["bio", "position", "tech_tags", "links"]),
        etag: before.etag.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(p.position, pb::DeveloperPosition::Fullstack as i32);
    assert_eq!(p.tech_tags, ["rust", "postgresql", "쿠버네티스"]);
    assert_eq!(p.links, ["https://github.com/dev", "https://dev.example/blog"]);
    assert_eq!(p.etag, "v2");
    let seen = profile(&app, "dev", Some(&fan)).await;
    assert_eq!(seen, pb::Profile { activity: seen.activity, ..p.clone() });

    // A stale etag is refused with the current one; nothing changes.
    let stale = update(pb::UpdateProfileRequest {
        position: pb::DeveloperPosition::Design as i32,
        update_mask: mask(&["position"]),
        etag: before.etag.clone(),
        ..Default::default()
    })
    .await;
    let s = assert_err(stale, Code::Aborted, "ETAG_MISMATCH");
    let meta = tonic_types::StatusExt::get_error_details(&s).error_info().unwrap().metadata.clone();
    assert_eq!(meta.get("etag").map(String::as_str), Some("v2"));
    assert_eq!(profile(&app, "dev", None).await.position, pb::DeveloperPosition::Fullstack as i32);
    // UNSPECIFIED clears the position; without an etag the update is unconditional.
    let p = update(pb::UpdateProfileRequest { update_mask: mask(&["position", "tech_tags"]), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((p.position, p.tech_tags.len(), p.links.len(), p.etag.as_str()), (0, 0, 2, "v3"));

    // Every bad field is named at once; hostile sizes and NUL bytes are plain field violations.
    let bad = update(pb::UpdateProfileRequest {
        bio: "a".repeat(1_000_000),
        position: 99,
        tech_tags: (0..21).map(|i| format!("t{i}")).collect(),
        links: vec!["https://a.example/\u{0}".into(); 6],
        update_mask: mask(&["bio", "position", "tech_tags", "links"]),
        etag: "nope".into(),
        ..Default::default()
    })
    .await;
    let mut fields = violations(&assert_err(bad, Code::InvalidArgument, "INVALID_ARGUMENT"));
    fields.sort();
    assert_eq!(fields, ["bio", "etag", "links", "position", "tech_tags"]);
    let bad = update(pb::UpdateProfileRequest {
        tech_tags: vec!["a\u{0}b".into(), "two words".into()],
        links: vec!["javascript:alert(1)".into()],
        update_mask: mask(&["tech_tags", "links"]),
        ..Default::default()
    })
    .await;
    let mut fields = violations(&assert_err(bad, Code::InvalidArgument, "INVALID_ARGUMENT"));
    fields.sort();
    assert_eq!(fields, ["links", "tech_tags"]);
    assert_eq!(profile(&app, "dev", None).await.etag, "v3", "nothing was written");
}

#[sqlx::test]
async fn get_profile_says_whether_they_follow_me(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.user("alice").await;
    let b = app.user("bob").await;
    follow(&app, &b, "alice").await;
    let seen_by_alice = profile(&app, "bob", Some(&a)).await;
    assert_eq!((seen_by_alice.follows_me, seen_by_alice.followed_by_me), (true, false));
    let seen_by_bob = profile(&app, "alice", Some(&b)).await;
    assert_eq!((seen_by_bob.follows_me, seen_by_bob.followed_by_me), (false, true));
    // Cached as anonymous readers see it: never leaks one reader's answer to another.
    assert!(!profile(&app, "bob", None).await.follows_me);
    let c = app.user("carol").await;
    assert!(!profile(&app, "bob", Some(&c)).await.follows_me);
    social(&app).unfollow(b.req(pb::UnfollowRequest { handle: "alice".into() })).await.unwrap();
    assert!(!profile(&app, "bob", Some(&a)).await.follows_me);
}

async fn search(app: &TestApp, req: pb::SearchProfilesRequest) -> Result<(Vec<String>, String), tonic::Status> {
    let r = profiles(app).search_profiles(Request::new(req)).await?.into_inner();
    Ok((r.profiles.into_iter().map(|p| p.handle).collect(), r.next_page_token))
}

async fn search_all(app: &TestApp, req: pb::SearchProfilesRequest) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (handles, next) =
            search(app, pb::SearchProfilesRequest { page_size: 2, page_token: token, ..req.clone() }).await.unwrap();
        out.extend(handles);
        if next.is_empty() {
            return out;
        }
        token = next;
    }
}

#[sqlx::test]
async fn people_search_finds_korean_substrings_filters_and_never_shows_deleted_accounts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let set = |u: &TestUser, name: &str, bio: &str, position: pb::DeveloperPosition, tags: &[&str]| {
        let mut api = profiles(&app);
        let req = u.req(pb::UpdateProfileRequest {
            display_name: name.into(),
            bio: bio.into(),
            position: position as i32,
            tech_tags: tags.iter().map(|t| t.to_string()).collect(),
            update_mask: mask(&["display_name", "bio", "position", "tech_tags"]),
            ..Default::default()
        });
        async move { api.update_profile(req).await.unwrap() }
    };
    use pb::DeveloperPosition::{Backend, Design, Frontend};
    let jimin = app.user("jimin").await;
    let minsu = app.user("minsu_dev").await;
    let seoyeon = app.user("seoyeon").await;
    let gone = app.user("gone").await;
    set(&jimin, "김지민", "판교에서 일하는 백엔드 개발자", Backend, &["rust", "postgresql"]).await;
    set(&minsu, "이민수", "프론트엔드, 가끔 백엔드", Frontend, &["react", "타입스크립트"]).await;
    set(&seoyeon, "박서연", "UI 디자인 100% 진심", Design, &["figma"]).await;
    set(&gone, "백엔드 탈퇴자", "백엔드", Backend, &["rust"]).await;
    profiles(&app).delete_account(gone.req(pb::DeleteAccountRequest { confirm_handle: "gone".into() })).await.unwrap();

    let q = |query: &str| pb::SearchProfilesRequest { query: query.into(), ..Default::default() };
    // Two Korean characters, in the bio, the name or a tag; newest account first; pages of 2.
    assert_eq!(search_all(&app, q("백엔")).await, ["minsu_dev", "jimin"]);
    assert_eq!(search_all(&app, q("지민")).await, ["jimin"]);
    assert_eq!(search_all(&app, q("스크립")).await, ["minsu_dev"]);
    // Handles and tags, case-insensitively; LIKE wildcards are literal.
    assert_eq!(search_all(&app, q("MINSU")).await, ["minsu_dev"]);
    assert_eq!(search_all(&app, q("PostgreSQL")).await, ["jimin"]);
    assert_eq!(search_all(&app, q("0%")).await, ["seoyeon"]);
    assert_eq!(search_all(&app, q("_d")).await, ["minsu_dev"]);
    assert!(search_all(&app, q("%%")).await.is_empty());
    // A match never spans two fields.
    assert!(search_all(&app, q("민이")).await.is_empty());
    // Filters, alone or with a query.
    let by = |position: pb::DeveloperPosition, tag: &str, query: &str| pb::SearchProfilesRequest {
        query: query.into(),
        position: position as i32,
        tech_tag: tag.into(),
        ..Default::default()
    };
    assert_eq!(search_all(&app, by(Backend, "", "")).await, ["jimin"]);
    assert_eq!(search_all(&app, by(pb::DeveloperPosition::Unspecified, "#Rust", "")).await, ["jimin"]);
    assert_eq!(search_all(&app, by(Frontend, "", "백엔")).await, ["minsu_dev"]);
    assert!(search_all(&app, by(Design, "rust", "")).await.is_empty());
    // The deleted account is found by nothing.
    for req in [q("탈퇴"), q("gone"), by(Backend, "rust", "백엔")] {
        assert!(!search_all(&app, req).await.contains(&"gone".to_owned()));
    }
    // Tokens are bound to the search.
    let (_, token) = search(&app, pb::SearchProfilesRequest { page_size: 1, ..q("백엔") }).await.unwrap();
    assert!(!token.is_empty());
    let r = search(&app, pb::SearchProfilesRequest { page_token: token, ..q("지민") }).await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");

    // Bad input: every field named; nothing at all to search by is INVALID_ARGUMENT on query.
    let bad = pb::SearchProfilesRequest {
        query: "a\u{0}b".into(),
        position: 99,
        tech_tag: "two words".into(),
        page_size: -1,
        ..Default::default()
    };
    let mut fields = violations(&assert_err(search(&app, bad).await, Code::InvalidArgument, "INVALID_ARGUMENT"));
    fields.sort();
    assert_eq!(fields, ["position", "query", "tech_tag"]);
    for query in ["백", &"가".repeat(1_000_000)] {
        let s = assert_err(search(&app, q(query)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), ["query"]);
    }
    let s = assert_err(search(&app, Default::default()).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["query"]);
    let huge = pb::SearchProfilesRequest { page_size: i32::MAX, ..q("백엔") };
    assert_eq!(search(&app, huge).await.unwrap().0.len(), 2);
}
