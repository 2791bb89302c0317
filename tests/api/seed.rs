//! `maru seed demo`: the demo complex the README walk-through uses, checked through the API.

use std::path::PathBuf;

use maru::grpc::pb;
use maru::grpc::pb::chat_service_client::ChatServiceClient;
use maru::grpc::pb::community_service_client::CommunityServiceClient;
use maru::grpc::pb::complaint_service_client::ComplaintServiceClient;
use maru::grpc::pb::notice_service_client::NoticeServiceClient;
use maru::grpc::pb::poll_service_client::PollServiceClient;
use maru::grpc::pb::product_service_client::ProductServiceClient;
use maru::grpc::pb::report_service_client::ReportServiceClient;
use maru::grpc::pb::team_service_client::TeamServiceClient;
use maru::seed::{DEMO_CHATS, DEMO_DEV_CLUB, DEMO_KAPT_CODE, DEMO_PASSWORD, DEMO_PRODUCTS};
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::{TestApp, assert_err, bearer};

const REGISTRY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apartments-gyeonggi.json");

async fn token(app: &TestApp, handle: &str) -> String {
    let login = pb::LoginRequest { login: handle.into(), password: DEMO_PASSWORD.into() };
    app.auth().login(login).await.expect("demo account logs in").into_inner().access_token
}

#[sqlx::test]
async fn seed_demo_builds_the_walk_through_complex_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    // The registry compiled into the binary; then the same data from a file (`--registry`).
    let first = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(first.created);
    assert_eq!(first.registry.as_ref().map(|s| s.created), Some(5067));
    let again = maru::seed::demo(&app.state, Some(PathBuf::from(REGISTRY))).await.unwrap();
    assert!(!again.created, "a second run changes nothing");
    assert_eq!(again.community_id, first.community_id);
    assert_eq!(again.registry.as_ref().map(|s| s.unchanged), Some(5067));
    let c = first.community_id.to_string();

    let mut communities = CommunityServiceClient::new(app.channel.clone());
    let found = communities
        .search_communities(pb::SearchCommunitiesRequest { query: "신갈푸르지오".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.communities.len(), 1);
    assert_eq!(found.communities[0].external_code, DEMO_KAPT_CODE);
    assert_eq!(found.communities[0].id, c);

    let (kim, manager, park) =
        (token(&app, "demo.kim").await, token(&app, "demo.manager").await, token(&app, "demo.park").await);
    let home = communities.list_my_communities(bearer(&kim, pb::ListMyCommunitiesRequest::default())).await.unwrap();
    let home = home.into_inner().communities;
    // The complex and the sports club, both APPROVED.
    let mut names: Vec<&str> = home.iter().map(|h| h.community.as_ref().unwrap().name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["FC 마루", "용인신갈푸르지오"]);
    assert!(home.iter().all(|h| h.membership.as_ref().unwrap().status() == pb::MembershipStatus::Approved));

    // Notices: pinned first.
    let mut notices = NoticeServiceClient::new(app.channel.clone());
    let list = notices
        .list_notices(bearer(&kim, pb::ListNoticesRequest { community_id: c.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(list.len(), 2);
    assert!(list[0].pinned && !list[1].pinned);

    // demo.park is pending: no access until the manager decides.
    let r = notices
        .list_notices(bearer(&park, pb::ListNoticesRequest { community_id: c.clone(), ..Default::default() }))
        .await;
    assert_err(r, Code::PermissionDenied, "MEMBERSHIP_REQUIRED");
    let pending = communities
        .list_membership_requests(bearer(
            &manager,
            pb::ListMembershipRequestsRequest { community_id: c.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(pending.iter().map(|m| m.user_handle.as_str()).collect::<Vec<_>>(), ["demo.park"]);

    // One open poll with demo.lee's vote; demo.kim's complaint is visible to the manager.
    let polls = PollServiceClient::new(app.channel.clone())
        .list_polls(bearer(&kim, pb::ListPollsRequest { community_id: c.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .polls;
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].total_votes, 1);
    assert_eq!(polls[0].state(), pb::PollState::Open);
    let complaints = ComplaintServiceClient::new(app.channel.clone())
        .list_complaints(bearer(&manager, pb::ListComplaintsRequest { community_id: c, ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .complaints;
    assert_eq!(complaints.len(), 1);
    assert_eq!(complaints[0].status(), pb::ComplaintStatus::Received);

    // The sports club: two matches, both with demo.kim and demo.lee.
    let club = communities
        .search_communities(pb::SearchCommunitiesRequest { query: "FC 마루".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .communities;
    assert_eq!(club.len(), 1);
    assert_eq!(club[0].kind(), pb::CommunityKind::SportsClub);
    let events = app
        .events()
        .list_events(bearer(&manager, pb::ListEventsRequest { community_id: club[0].id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.participant_count == 2), "{events:?}");
}

/// `maru seed demo` from a directory that is not the repository (as in the container image,
/// which holds only the binary): the registry is compiled in. It used to fail there, looking
/// for `tests/fixtures/apartments-gyeonggi.json` relative to the working directory.
#[sqlx::test]
async fn seed_demo_works_from_any_directory(pool: PgPool) {
    let o = pool.connect_options();
    let url =
        format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), o.get_database().unwrap());
    let elsewhere = std::env::temp_dir().join(format!("maru-seed-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&elsewhere).unwrap();
    assert!(!elsewhere.join("tests/fixtures/apartments-gyeonggi.json").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maru"))
        .args(["seed", "demo"])
        .current_dir(&elsewhere)
        .env("MARU__DATABASE__URL", &url)
        .env("MARU__REDIS__URL", "redis://127.0.0.1:1")
        .env("MARU__LOG__LEVEL", "error")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&elsewhere).ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("created 5067  updated 0  unchanged 0  failed 0"), "{stdout}");
    assert!(stdout.contains(&format!("demo complex 용인신갈푸르지오 ({DEMO_KAPT_CODE}): created")), "{stdout}");
    assert!(stdout.contains(&format!("club {DEMO_DEV_CLUB} (community_id ")), "{stdout}");

    // What it seeded works through the API.
    let app = TestApp::spawn(pool).await;
    let kim = token(&app, "demo.kim").await;
    let home = CommunityServiceClient::new(app.channel.clone())
        .list_my_communities(bearer(&kim, pb::ListMyCommunitiesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .communities;
    assert_eq!(home.len(), 2);
}

/// The team-building club of `maru seed demo`: members approved and pending, a team in each of
/// the five states, applications in each state, likes — made once (a second run adds no row).
#[sqlx::test]
async fn seed_demo_builds_the_team_building_club_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let first = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(first.dev_club_created);
    let counts = || async {
        sqlx::query_scalar::<_, Vec<i64>>(
            "select array[(select count(*) from communities), (select count(*) from community_memberships),
                          (select count(*) from users), (select count(*) from teams),
                          (select count(*) from team_applications), (select count(*) from team_members),
                          (select count(*) from team_likes)]",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = counts().await;
    let again = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(!again.dev_club_created, "a second run adds nothing");
    assert_eq!(again.dev_club_id, first.dev_club_id);
    assert_eq!(counts().await, before, "communities, memberships, users, teams, applications, members, likes");
    // A database seeded before the club existed gets it on the next run, once.
    sqlx::query("delete from communities where id = $1").bind(first.dev_club_id).execute(&pool).await.unwrap();
    sqlx::query("delete from users where handle in ('demo.jiwoo','demo.minji','demo.hyun','demo.sora','demo.taeyang','demo.yuna')")
        .execute(&pool)
        .await
        .unwrap();
    let third = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(third.dev_club_created && !third.created);
    let club = third.dev_club_id.to_string();

    let mut communities = CommunityServiceClient::new(app.channel.clone());
    let found = communities
        .search_communities(pb::SearchCommunitiesRequest { query: DEMO_DEV_CLUB.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .communities;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind(), pb::CommunityKind::Club);
    assert_eq!(found[0].id, club);

    let (manager, jiwoo, yuna) =
        (token(&app, "demo.manager").await, token(&app, "demo.jiwoo").await, token(&app, "demo.yuna").await);
    let pending = communities
        .list_membership_requests(bearer(
            &manager,
            pb::ListMembershipRequestsRequest { community_id: club.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(pending.iter().map(|m| m.user_handle.as_str()).collect::<Vec<_>>(), ["demo.yuna"]);

    let mut teams = TeamServiceClient::new(app.channel.clone());
    let list = |token: &str, state: pb::TeamState| {
        let req = pb::ListTeamsRequest { community_id: club.clone(), state: state as i32, ..Default::default() };
        bearer(token, req)
    };
    let mut by_state = Vec::new();
    for s in [
        pb::TeamState::PendingApproval,
        pb::TeamState::Rejected,
        pb::TeamState::Recruiting,
        pb::TeamState::InProgress,
        pb::TeamState::Accomplished,
    ] {
        let got = teams.list_teams(list(&manager, s)).await.unwrap().into_inner().teams;
        assert_eq!(got.len(), 1, "one team {s:?}: {got:?}");
        assert_eq!(got[0].state(), s);
        by_state.push(got.into_iter().next().unwrap());
    }
    let titles: Vec<&str> = by_state.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["레트로 게임 잼", "코인 자동매매 봇", "마루 웹 포털", "캠퍼스 맛집 지도", "AI 스터디 봇"]);
    let likes: Vec<i64> = by_state.iter().map(|t| t.like_count).collect();
    assert_eq!(likes, [0, 0, 3, 1, 4]);
    let members: Vec<i64> = by_state.iter().map(|t| t.member_count).collect();
    assert_eq!(members, [1, 1, 2, 2, 2]);
    // Members see the three approved teams, not the pending or rejected one; the pending sign-up nothing.
    let listed = teams
        .list_teams(bearer(&jiwoo, pb::ListTeamsRequest { community_id: club.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .teams;
    assert_eq!(listed.len(), 3);
    let r = teams
        .list_teams(bearer(&yuna, pb::ListTeamsRequest { community_id: club.clone(), ..Default::default() }))
        .await;
    assert_err(r, Code::PermissionDenied, "MEMBERSHIP_REQUIRED");

    // The recruiting team's applications: one in each state; seats BACKEND 1/2, FRONTEND 1/2, DESIGN 0/1.
    let portal = &by_state[2];
    let apps = teams
        .list_applications(bearer(
            &jiwoo,
            pb::ListApplicationsRequest { team_id: portal.id.clone(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner()
        .applications;
    let mut states: Vec<(String, pb::ApplicationState)> =
        apps.iter().map(|a| (a.applicant.as_ref().unwrap().handle.clone(), a.state())).collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            ("demo.hyun".to_owned(), pb::ApplicationState::Pending),
            ("demo.minji".to_owned(), pb::ApplicationState::Approved),
            ("demo.sora".to_owned(), pb::ApplicationState::Rejected),
        ]
    );
    let seats: Vec<(pb::TeamRole, i32, i32)> = portal.roles.iter().map(|r| (r.role(), r.filled, r.capacity)).collect();
    assert_eq!(seats, [(pb::TeamRole::Backend, 1, 2), (pb::TeamRole::Frontend, 1, 2), (pb::TeamRole::Design, 0, 1)]);
    assert!(!by_state[1].decision_note.is_empty(), "the rejection carries the manager's note");
}

/// The market of `maru seed demo`: three sellers, twelve products with Korean names and tags,
/// likes with co-likes to recommend from, and three OPEN reports on two products in the admin
/// queue — made once (a second run adds no row).
#[sqlx::test]
async fn seed_demo_builds_the_market_once(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let first = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(first.market_created);
    let counts = || async {
        sqlx::query_scalar::<_, Vec<i64>>(
            "select array[(select count(*) from users), (select count(*) from products),
                          (select count(*) from product_likes), (select count(*) from reports),
                          (select count(*) from reports where state = 'OPEN')]",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = counts().await;
    assert_eq!(before[1..], [12, 26, 3, 3], "products, likes, reports, open reports");
    let again = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(!again.market_created, "a second run adds nothing");
    assert_eq!(counts().await, before, "users, products, likes, reports");

    // Anyone scrolls the whole catalogue, newest first, in pages with the page token.
    let mut products = ProductServiceClient::new(app.channel.clone());
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = products
            .list_products(pb::ListProductsRequest { page_size: 5, page_token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.products);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    let names: Vec<&str> = seen.iter().map(|p| p.name.as_str()).collect();
    let mut want: Vec<&str> = DEMO_PRODUCTS.iter().map(|p| p.1).collect();
    want.reverse();
    assert_eq!(names, want);
    assert!(seen.iter().all(|p| p.status() == pb::ProductStatus::OnSale && p.sale_link.starts_with("https://")));
    let likes: Vec<i64> = seen.iter().rev().map(|p| p.like_count).collect();
    assert_eq!(likes, [3, 4, 2, 0, 3, 2, 2, 1, 4, 2, 2, 1]);
    let by_tag = products
        .list_products(pb::ListProductsRequest { tag: "캠핑".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(by_tag.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["접이식 캠핑 의자", "2인용 캠핑 텐트"]);
    let seo = products
        .list_user_products(pb::ListUserProductsRequest { handle: "demo.seo".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .products;
    assert_eq!(seo.len(), 4);

    // demo.kim's recommendations: first the ones their likes explain (co-likes among them), then
    // the newest to fill the page; never a product they liked.
    let kim = token(&app, "demo.kim").await;
    let recs = products
        .recommend_products(bearer(&kim, pb::RecommendProductsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .recommendations;
    let explained = recs.iter().take_while(|r| r.source() != pb::RecommendationSource::Newest).count();
    assert!(explained > 0, "{recs:?}");
    assert!(recs[explained..].iter().all(|r| r.source() == pb::RecommendationSource::Newest), "{recs:?}");
    assert!(recs.iter().any(|r| r.co_likers > 0), "{recs:?}");
    assert!(recs.iter().all(|r| !r.product.as_ref().unwrap().liked_by_me), "{recs:?}");

    // The admin queue: the bag (two FRAUD reports) first, then the backpack (one SPAM).
    let admin = token(&app, "demo.admin").await;
    let queue = ReportServiceClient::new(app.channel.clone())
        .list_reports(bearer(&admin, pb::ListReportsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .targets;
    let name_of = |id: &str| seen.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_default();
    let got: Vec<(String, i64, Vec<pb::ReportReason>)> =
        queue.iter().map(|t| (name_of(&t.target_id), t.report_count, t.reasons().collect())).collect();
    assert_eq!(
        got,
        [
            ("명품 가방 초특가".to_owned(), 2, vec![pb::ReportReason::Fraud]),
            ("등산 배낭 45L".to_owned(), 1, vec![pb::ReportReason::Spam]),
        ]
    );
    assert!(queue.iter().all(|t| t.target_type() == pb::ReportTargetType::Product && !t.auto_hidden));
}

/// The chats of `maru seed demo`, seen through ChatService by their members: two DMs and a group,
/// their messages in order, demo.lee's read mark on the group, and nothing for outsiders.
#[sqlx::test]
async fn seed_demo_builds_the_chats_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let first = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(first.chat_created);
    let again = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(!again.chat_created, "a second run adds nothing");

    let chat = ChatServiceClient::new(app.channel.clone());
    let rooms_of = |token: String| {
        let mut chat = chat.clone();
        async move {
            let req = pb::ListMyRoomsRequest { page_size: 50, page_token: String::new() };
            chat.list_my_rooms(bearer(&token, req)).await.unwrap().into_inner().rooms
        }
    };
    let kim = rooms_of(token(&app, "demo.kim").await).await;
    assert_eq!(kim.len(), 3, "demo.kim is in every demo room: {kim:?}");
    let lee = token(&app, "demo.lee").await;
    let lee_rooms = rooms_of(lee.clone()).await;
    assert_eq!(lee_rooms.len(), 2);
    let group = lee_rooms.iter().find(|r| r.title == "마루 101동 이웃").expect("the demo group");
    assert_eq!(group.kind, pb::ChatRoomKind::Group as i32);
    assert_eq!(group.members.len(), 4);
    assert_eq!(group.unread_count, 0, "demo.lee read the group to its end");
    let dm = lee_rooms.iter().find(|r| r.kind == pb::ChatRoomKind::Direct as i32).expect("demo.lee's DM");
    assert_eq!(dm.unread_count, 2, "demo.kim's two messages are unread: demo.lee never marked the DM read");

    for (creator, others, title, messages) in DEMO_CHATS {
        let rooms = rooms_of(token(&app, creator).await).await;
        let room = rooms
            .iter()
            .find(|r| {
                r.title == *title
                    && r.members.len() == others.len() + 1
                    && others.iter().all(|o| r.members.iter().any(|m| m.user.as_ref().is_some_and(|u| u.handle == *o)))
            })
            .unwrap_or_else(|| panic!("{creator}'s room with {others:?}"));
        let req = pb::ListMessagesRequest { room_id: room.id.clone(), page_size: 100, ..Default::default() };
        let mut chat = chat.clone();
        let got = chat.list_messages(bearer(&token(&app, creator).await, req)).await.unwrap().into_inner().messages;
        let got: Vec<(String, String)> =
            got.into_iter().map(|m| (m.author.map(|a| a.handle).unwrap_or_default(), m.text)).collect();
        let want: Vec<(String, String)> = messages.iter().map(|(a, t)| ((*a).to_owned(), (*t).to_owned())).collect();
        assert_eq!(got, want);
    }
    let outsider = token(&app, "demo.seo").await;
    assert!(rooms_of(outsider).await.is_empty(), "demo.seo is in no demo room");
}

#[sqlx::test]
async fn seed_demo_posts_photos_once(pool: PgPool) {
    use maru::grpc::pb::feed_service_client::FeedServiceClient;
    let app = TestApp::spawn_with(pool, |s| s.media.data_dir = crate::media::data_dir()).await;
    let first = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(first.photos_created);
    let again = maru::seed::demo(&app.state, None).await.unwrap();
    assert!(!again.photos_created, "a second run adds nothing");
    let (media, posts): (i64, i64) = sqlx::query_as(
        "select (select count(*) from media), (select count(distinct attached_id) from media where attached_kind = 'post')",
    )
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((media, posts), (4, 3), "four photos on three posts, once");

    // A resident reads the complex's feed with the photos, READY with both variants, and the
    // variant URLs serve JPEG or WebP bytes.
    let kim = token(&app, "demo.kim").await;
    let req = pb::ListPostsRequest { community_id: first.community_id.to_string(), ..Default::default() };
    let page = FeedServiceClient::new(app.channel.clone()).list_posts(bearer(&kim, req)).await.unwrap().into_inner();
    let with_photos: Vec<_> = page.posts.iter().filter(|p| !p.media.is_empty()).collect();
    assert_eq!(with_photos.len(), 3);
    for (author, text, scenes) in maru::seed::DEMO_PHOTO_POSTS {
        let post = with_photos.iter().find(|p| p.text == *text).expect("the demo post");
        assert_eq!(post.author.as_ref().map(|a| a.handle.as_str()), Some(*author));
        assert_eq!(post.media.len(), scenes.len());
        for m in &post.media {
            assert_eq!(m.state, pb::MediaState::Ready as i32);
            assert_eq!(m.variants.len(), 2);
            let display = m.variants.iter().find(|v| v.name == "display").unwrap();
            assert_eq!((display.width, display.height), (960, 720), "never upscaled");
            let r = reqwest::get(&display.url).await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(!r.bytes().await.unwrap().is_empty());
        }
    }
}
