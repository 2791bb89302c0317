//! CommunityService end to end: search, communities, memberships and roles, the authorization
//! matrix, races decided by the database, the cached home screen (also across two server
//! instances and without Redis), and the apartment registry import (file and API).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use maru::communities::registry::{self, Source, Summary};
use maru::grpc::pb;
use maru::grpc::pb::community_service_client::CommunityServiceClient;
use maru::grpc::pb::profile_service_client::ProfileServiceClient;
use parking_lot::Mutex;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apartments-gyeonggi.json");
const FIXTURE_ROWS: u64 = 5067;

fn client(app: &TestApp) -> CommunityServiceClient<Channel> {
    CommunityServiceClient::new(app.channel.clone())
}

async fn create(
    app: &TestApp,
    admin: &TestUser,
    kind: pb::CommunityKind,
    name: &str,
    join_code: &str,
) -> pb::Community {
    client(app)
        .create_community(admin.req(pb::CreateCommunityRequest {
            kind: kind as i32,
            name: name.into(),
            address: "경기도 수원장안구 파장동".into(),
            join_code: join_code.into(),
            ..Default::default()
        }))
        .await
        .expect("CreateCommunity")
        .into_inner()
        .community
        .unwrap()
}

fn join(community: &str) -> pb::RequestMembershipRequest {
    pb::RequestMembershipRequest {
        community_id: community.into(),
        building: "101".into(),
        unit: "1004".into(),
        verification_code: String::new(),
        ..Default::default()
    }
}

async fn request(app: &TestApp, user: &TestUser, community: &str) -> pb::Membership {
    client(app)
        .request_membership(user.req(join(community)))
        .await
        .expect("RequestMembership")
        .into_inner()
        .membership
        .unwrap()
}

async fn decide(
    app: &TestApp,
    who: &TestUser,
    membership: &str,
    approve: bool,
) -> Result<pb::Membership, tonic::Status> {
    client(app)
        .decide_membership(who.req(pb::DecideMembershipRequest {
            membership_id: membership.into(),
            approve,
            note: String::new(),
        }))
        .await
        .map(|r| r.into_inner().membership.unwrap())
}

async fn set_role(
    app: &TestApp,
    who: &TestUser,
    community: &str,
    user: &TestUser,
    role: pb::MemberRole,
) -> Result<pb::Membership, tonic::Status> {
    client(app)
        .set_member_role(who.req(pb::SetMemberRoleRequest {
            community_id: community.into(),
            user_id: user.id.clone(),
            role: role as i32,
        }))
        .await
        .map(|r| r.into_inner().membership.unwrap())
}

async fn my_communities(app: &TestApp, user: Option<&TestUser>) -> Vec<pb::MyCommunity> {
    client(app)
        .list_my_communities(as_who(user, pb::ListMyCommunitiesRequest::default()))
        .await
        .expect("ListMyCommunities")
        .into_inner()
        .communities
}

/// (community id, membership status) of a home screen.
fn home(items: &[pb::MyCommunity]) -> Vec<(String, i32)> {
    items
        .iter()
        .map(|m| (m.community.as_ref().unwrap().id.clone(), m.membership.as_ref().map_or(0, |m| m.status)))
        .collect()
}

async fn managers(pool: &PgPool, community: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(
        "select count(*) from community_memberships
         where community_id = $1::uuid and status = 'APPROVED' and role = 'MANAGER'",
    )
    .bind(community)
    .fetch_one(pool)
    .await
    .unwrap()
    .0
}

async fn membership_id(pool: &PgPool, community: &str, user: &TestUser) -> String {
    sqlx::query_as::<_, (uuid::Uuid,)>(
        "select id from community_memberships where community_id = $1::uuid and user_id = $2::uuid
         and status in ('PENDING', 'APPROVED')",
    )
    .bind(community)
    .bind(&user.id)
    .fetch_one(pool)
    .await
    .unwrap()
    .0
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Search and communities.

#[sqlx::test]
async fn search_matches_name_or_address_with_paging_and_kind(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    for (kind, name, address) in [
        ("APARTMENT", "파장삼익", "경기도 수원장안구 파장동"),
        ("APARTMENT", "파장현대아파트", "경기도 수원장안구 파장동"),
        ("APARTMENT", "정자아너스빌", "경기도 수원장안구 정자동"),
        ("APARTMENT", "북수원I-PARK", "경기도 수원장안구 파장동"),
        ("CLUB", "파장 독서회", "서울 종로구"),
        ("APARTMENT", "100%_행복", "경기도 용인시"),
        ("APARTMENT", "100a행복", "경기도 용인시"),
    ] {
        sqlx::query("insert into communities (id, kind, name, address) values ($1, $2, $3, $4)")
            .bind(uuid::Uuid::now_v7())
            .bind(kind)
            .bind(name)
            .bind(address)
            .execute(&app.state.db)
            .await
            .unwrap();
    }
    let search = |query: &str, kind: pb::CommunityKind, page_size: i32, page_token: String| {
        let mut c = client(&app);
        let r = pb::SearchCommunitiesRequest { query: query.into(), kind: kind as i32, page_size, page_token };
        async move { c.search_communities(r).await }
    };
    let names = |r: &pb::SearchCommunitiesResponse| r.communities.iter().map(|c| c.name.clone()).collect::<Vec<_>>();

    // Name or address, ordered by name; anonymous.
    let r = search(" 파장 ", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["북수원I-PARK", "파장 독서회", "파장삼익", "파장현대아파트"]);
    assert_eq!(r.total_size, 4);
    assert!(!r.total_size_is_lower_bound, "an exact count");
    assert!(r.next_page_token.is_empty());
    assert!(r.communities.iter().all(|c| c.join_code.is_empty()));

    // Kind filter.
    let r = search("파장", pb::CommunityKind::Club, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["파장 독서회"]);
    assert_eq!(r.total_size, 1);

    // Case-insensitive, on the address.
    let r = search("i-park", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["북수원I-PARK"]);

    // Two characters (served by the bigram indexes): case-insensitive too, wildcards literal.
    let r = search("i-", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["북수원I-PARK"]);
    let r = search("0%", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!((names(&r), r.total_size), (vec!["100%_행복".to_owned()], 1));
    let r = search("정자", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["정자아너스빌"]);

    // % and _ are literal.
    let r = search("0%_", pb::CommunityKind::Unspecified, 0, String::new()).await.unwrap().into_inner();
    assert_eq!(names(&r), ["100%_행복"]);

    // Paging: every row once, total on every page.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = search("수원", pb::CommunityKind::Unspecified, 2, token).await.unwrap().into_inner();
        assert_eq!(r.total_size, 4);
        assert!(r.communities.len() <= 2);
        seen.extend(names(&r));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, ["북수원I-PARK", "정자아너스빌", "파장삼익", "파장현대아파트"]);

    // A token only works with its own query.
    let first = search("수원", pb::CommunityKind::Unspecified, 2, String::new()).await.unwrap().into_inner();
    let r = search("파장", pb::CommunityKind::Unspecified, 2, first.next_page_token.clone()).await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let r = search("수원", pb::CommunityKind::Apartment, 2, first.next_page_token).await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");

    // Too short, unknown kind, negative page size: every field at once.
    let r = client(&app)
        .search_communities(pb::SearchCommunitiesRequest {
            query: " 파 ".into(),
            kind: 42,
            page_size: -1,
            page_token: String::new(),
        })
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["query", "kind", "page_size"]);
    let r = search("", pb::CommunityKind::Unspecified, 0, String::new()).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["query"]);

    // Signed in works the same; a bad token is still refused.
    let r = client(&app)
        .search_communities(admin.req(pb::SearchCommunitiesRequest { query: "정자".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&r), ["정자아너스빌"]);
    let r = client(&app)
        .search_communities(bearer(
            "not-a-token",
            pb::SearchCommunitiesRequest { query: "정자".into(), ..Default::default() },
        ))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
}

#[sqlx::test]
async fn create_validates_is_admin_only_and_idempotent(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    let user = app.user("someone").await;
    let good = pb::CreateCommunityRequest {
        kind: pb::CommunityKind::SportsClub as i32,
        name: " 수원 FC ".into(),
        address: "경기도 수원시".into(),
        join_code: "GOAL-2026".into(),
        external_code: String::new(),
        request_id: "create-1".into(),
    };
    assert_err(client(&app).create_community(good.clone()).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(client(&app).create_community(user.req(good.clone())).await, Code::PermissionDenied, "ADMIN_REQUIRED");

    let c = client(&app).create_community(admin.req(good.clone())).await.unwrap().into_inner().community.unwrap();
    assert_eq!(c.name, "수원 FC");
    assert_eq!(c.kind, pb::CommunityKind::SportsClub as i32);
    assert_eq!(c.join_code, "GOAL-2026");
    // Same request id: the same community, not a second one.
    let again = client(&app).create_community(admin.req(good.clone())).await.unwrap().into_inner().community.unwrap();
    assert_eq!(again.id, c.id);
    let n: (i64,) = sqlx::query_as("select count(*) from communities").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(n.0, 1);
    let other = pb::CreateCommunityRequest { name: "다른 이름".into(), ..good.clone() };
    assert_err(client(&app).create_community(admin.req(other)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");

    // Every bad field at once.
    let bad = pb::CreateCommunityRequest {
        kind: 0,
        name: "  ".into(),
        address: "주".repeat(201),
        join_code: "x".into(),
        external_code: "A 1".into(),
        request_id: "no spaces allowed".into(),
    };
    let s = assert_err(client(&app).create_community(admin.req(bad)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["kind", "name", "address", "join_code", "external_code", "request_id"]);
    let no_code = pb::CreateCommunityRequest { join_code: String::new(), request_id: String::new(), ..good.clone() };
    let s =
        assert_err(client(&app).create_community(admin.req(no_code)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["join_code"]);

    // A registry code is unique.
    let apt = pb::CreateCommunityRequest {
        kind: pb::CommunityKind::Apartment as i32,
        name: "파장삼익".into(),
        address: "경기도 수원장안구 파장동".into(),
        external_code: "A44085102".into(),
        ..Default::default()
    };
    let created = client(&app).create_community(admin.req(apt.clone())).await.unwrap().into_inner().community.unwrap();
    assert_eq!(created.external_code, "A44085102");
    assert_err(client(&app).create_community(admin.req(apt)).await, Code::AlreadyExists, "COMMUNITY_EXISTS");
}

#[sqlx::test]
async fn get_community_shows_the_join_code_only_to_managers_and_admins(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    let member = app.user("member").await;
    let manager = app.user("manager").await;
    let outsider = app.user("outsider").await;
    let club = create(&app, &admin, pb::CommunityKind::SportsClub, "수원 FC", "GOAL-2026").await;
    app.add_member(&club.id, &member, "APPROVED", "MEMBER").await;
    app.add_member(&club.id, &manager, "APPROVED", "MANAGER").await;
    let get = |who: Option<&TestUser>| {
        let mut c = client(&app);
        let r = as_who(who, pb::GetCommunityRequest { community_id: club.id.clone() });
        async move { c.get_community(r).await.unwrap().into_inner().community.unwrap() }
    };
    for (who, code) in [
        (None, ""),
        (Some(&outsider), ""),
        (Some(&member), ""),
        (Some(&manager), "GOAL-2026"),
        (Some(&admin), "GOAL-2026"),
    ] {
        let c = get(who).await;
        assert_eq!(c.join_code, code, "{:?}", who.map(|u| &u.handle));
        assert_eq!(c.member_count, 2);
        assert_eq!(c.name, "수원 FC");
    }
    let r =
        client(&app).get_community(pb::GetCommunityRequest { community_id: uuid::Uuid::new_v4().to_string() }).await;
    assert_err(r, Code::NotFound, "COMMUNITY_NOT_FOUND");
    let r = client(&app).get_community(pb::GetCommunityRequest { community_id: "nope".into() }).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["community_id"]);
}

// ---------------------------------------------------------------------------------------------
// Memberships.

#[sqlx::test]
async fn apartment_requests_need_building_and_unit_and_are_single(pool: PgPool) {
    let captured = crate::logs::capture();
    let app = TestApp::spawn_with(pool, |s| s.log.access_log = true).await;
    let user = app.user("resident").await;
    let apt = app.community("APARTMENT", "파장삼익").await;

    let r = client(&app)
        .request_membership(user.req(pb::RequestMembershipRequest { community_id: apt.clone(), ..Default::default() }))
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["building", "unit"]);
    let secret_unit = "9753-1";
    let r = client(&app)
        .request_membership(user.req(pb::RequestMembershipRequest {
            community_id: apt.clone(),
            building: "10 1".into(),
            unit: format!("{secret_unit}{}", "0".repeat(20)),
            verification_code: String::new(),
            ..Default::default()
        }))
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["building", "unit"]);
    assert!(!s.message().contains(secret_unit));

    let m = client(&app)
        .request_membership(user.req(pb::RequestMembershipRequest {
            community_id: apt.clone(),
            building: "102".into(),
            unit: secret_unit.into(),
            verification_code: String::new(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Pending as i32);
    assert_eq!(m.role, pb::MemberRole::Member as i32);
    assert_eq!((m.building.as_str(), m.unit.as_str()), ("102", secret_unit));
    assert_eq!(m.user_handle, "resident");

    // A second active request is refused by the unique index.
    let r = client(&app).request_membership(user.req(join(&apt))).await;
    assert_err(r, Code::AlreadyExists, "ALREADY_MEMBER");
    let r = client(&app).request_membership(user.req(join(&uuid::Uuid::new_v4().to_string()))).await;
    assert_err(r, Code::NotFound, "COMMUNITY_NOT_FOUND");
    let r = client(&app).request_membership(user.req(join("x"))).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["community_id"]);
    assert_err(client(&app).request_membership(join(&apt)).await, Code::Unauthenticated, "TOKEN_MISSING");

    // A club needs no dwelling.
    let club = app.community("CLUB", "독서회").await;
    let m = client(&app)
        .request_membership(user.req(pb::RequestMembershipRequest { community_id: club, ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Pending as i32);

    // Unit numbers are personal data: never logged.
    assert!(!captured.stdout_text().contains(secret_unit), "a unit number reached the log");
}

#[sqlx::test]
async fn sports_club_join_code_approves_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    let player = app.user("player").await;
    let club = create(&app, &admin, pb::CommunityKind::SportsClub, "수원 FC", "GOAL-2026").await;
    let code = |c: &str| pb::RequestMembershipRequest {
        community_id: club.id.clone(),
        verification_code: c.into(),
        ..Default::default()
    };
    let r = client(&app).request_membership(player.req(code(""))).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["verification_code"]);
    let r = client(&app).request_membership(player.req(code("GOAL-2025"))).await;
    assert_err(r, Code::PermissionDenied, "VERIFICATION_CODE_MISMATCH");
    let r = client(&app).request_membership(player.req(code("goal-2026"))).await;
    assert_err(r, Code::PermissionDenied, "VERIFICATION_CODE_MISMATCH");
    // A wrong code leaves nothing behind.
    assert!(my_communities(&app, Some(&player)).await.is_empty());

    let m = client(&app)
        .request_membership(player.req(code(" GOAL-2026 ")))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(m.status, pb::MembershipStatus::Approved as i32);
    assert!(m.decided_at.is_some());
    // Approved: the member may list members at once.
    let members = client(&app)
        .list_members(player.req(pb::ListMembersRequest { community_id: club.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.iter().map(|m| m.user_handle.as_str()).collect::<Vec<_>>(), ["player"]);
    let r = client(&app).request_membership(player.req(code("GOAL-2026"))).await;
    assert_err(r, Code::AlreadyExists, "ALREADY_MEMBER");
}

#[sqlx::test]
async fn requests_are_listed_decided_once_and_counted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let manager = app.user("manager").await;
    let member = app.user("member").await;
    let apt = app.community("APARTMENT", "파장삼익").await;
    app.add_member(&apt, &manager, "APPROVED", "MANAGER").await;
    app.add_member(&apt, &member, "APPROVED", "MEMBER").await;
    let mut applicants = Vec::new();
    for i in 0..5 {
        let u = app.user(&format!("applicant{i}")).await;
        request(&app, &u, &apt).await;
        applicants.push(u);
    }

    // Oldest first, paged.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = client(&app)
            .list_membership_requests(manager.req(pb::ListMembershipRequestsRequest {
                community_id: apt.clone(),
                page_size: 2,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.memberships.iter().all(|m| m.status == pb::MembershipStatus::Pending as i32));
        // Managers see building and unit to verify residency.
        assert!(r.memberships.iter().all(|m| m.building == "101" && m.unit == "1004"));
        seen.extend(r.memberships.into_iter().map(|m| m.user_handle));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, applicants.iter().map(|u| u.handle.clone()).collect::<Vec<_>>());
    let r = client(&app)
        .list_membership_requests(
            member.req(pb::ListMembershipRequestsRequest { community_id: apt.clone(), ..Default::default() }),
        )
        .await;
    assert_err(r, Code::PermissionDenied, "MANAGER_REQUIRED");

    let first = membership_id(&app.state.db, &apt, &applicants[0]).await;
    let second = membership_id(&app.state.db, &apt, &applicants[1]).await;
    let r = client(&app)
        .decide_membership(manager.req(pb::DecideMembershipRequest {
            membership_id: first.clone(),
            approve: true,
            note: "환영합니다".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .membership
        .unwrap();
    assert_eq!(r.status, pb::MembershipStatus::Approved as i32);
    assert_eq!(r.note, "환영합니다");
    assert!(r.decided_at.is_some());
    let r = decide(&app, &manager, &second, false).await.unwrap();
    assert_eq!(r.status, pb::MembershipStatus::Rejected as i32);
    assert_err(decide(&app, &manager, &first, false).await, Code::FailedPrecondition, "MEMBERSHIP_ALREADY_DECIDED");
    assert_err(decide(&app, &manager, &second, true).await, Code::FailedPrecondition, "MEMBERSHIP_ALREADY_DECIDED");
    assert_err(
        decide(&app, &manager, &uuid::Uuid::new_v4().to_string(), true).await,
        Code::NotFound,
        "MEMBERSHIP_NOT_FOUND",
    );
    let r = client(&app)
        .decide_membership(manager.req(pb::DecideMembershipRequest {
            membership_id: "x".into(),
            approve: true,
            note: "가".repeat(501),
        }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["membership_id", "note"]);

    // A rejected applicant may ask again.
    request(&app, &applicants[1], &apt).await;

    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"maru_membership_decisions_total{decision="approved"}"#), "{metrics}");
    assert!(metrics.contains(r#"maru_membership_decisions_total{decision="rejected"}"#));
    // Refreshed from the database by a job on every replica (its first run is at start-up).
    for status in ["PENDING", "APPROVED", "REJECTED"] {
        assert!(metrics.contains(&format!(r#"maru_community_memberships{{status="{status}"}}"#)), "{metrics}");
    }
}

/// The club admin's bulk approval: every request named by several concurrent bulk calls (and
/// single decisions) is decided exactly once, and each is reported decided by one call only.
#[sqlx::test]
async fn bulk_decisions_decide_each_request_once_under_concurrency(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    let manager = app.user("president").await;
    let member = app.user("member").await;
    let club = app.community("CLUB", "코딩 동아리").await;
    let other = app.community("CLUB", "다른 동아리").await;
    app.add_member(&club, &manager, "APPROVED", "MANAGER").await;
    app.add_member(&club, &member, "APPROVED", "MEMBER").await;
    let applicants = app.fast_users("signup", 30).await;
    let mut ids = Vec::new();
    for u in &applicants {
        app.add_member(&club, u, "PENDING", "MEMBER").await;
        ids.push(membership_id(&app.state.db, &club, u).await);
    }
    // A request of another club is never decided through this one.
    let stranger = app.user("stranger").await;
    app.add_member(&other, &stranger, "PENDING", "MEMBER").await;
    let foreign = membership_id(&app.state.db, &other, &stranger).await;

    let pending = client(&app)
        .list_membership_requests(manager.req(pb::ListMembershipRequestsRequest {
            community_id: club.clone(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .memberships;
    assert_eq!(pending.len(), 30);

    let bulk = |ids: Vec<String>, approve: bool| pb::DecideMembershipsRequest {
        community_id: club.clone(),
        membership_ids: ids,
        approve,
        note: "환영합니다".into(),
    };
    let r = client(&app).decide_memberships(member.req(bulk(ids.clone(), true))).await;
    assert_err(r, Code::PermissionDenied, "MANAGER_REQUIRED");
    let r = client(&app).decide_memberships(manager.req(bulk(vec![], true))).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["membership_ids"]);
    let r = client(&app).decide_memberships(manager.req(bulk(vec!["x".into()], true))).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["membership_ids[0]"]);

    // Eight callers race: overlapping windows of the same 30 ids, approving and rejecting.
    let mut tasks = Vec::new();
    for i in 0..8usize {
        let window: Vec<String> = ids.iter().cycle().skip(i * 4).take(20).cloned().chain([foreign.clone()]).collect();
        let who = if i % 2 == 0 { manager.clone() } else { admin.clone() };
        let (mut c, req) = (client(&app), bulk(window, i % 3 != 0));
        tasks.push(tokio::spawn(async move { c.decide_memberships(who.req(req)).await.unwrap().into_inner() }));
    }
    let mut decided = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(r.not_decided.contains(&foreign));
        decided.extend(r.decided.into_iter().map(|m| m.id));
    }
    decided.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(decided, expected, "every request decided by exactly one call");
    let (still_pending, foreign_pending): (i64, bool) = sqlx::query_as(
        "select count(*) filter (where community_id = $1 and status = 'PENDING'),
                bool_or(id = $2 and status = 'PENDING')
           from community_memberships",
    )
    .bind(uuid::Uuid::parse_str(&club).unwrap())
    .bind(uuid::Uuid::parse_str(&foreign).unwrap())
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((still_pending, foreign_pending), (0, true));
    // A second bulk call decides nothing.
    let again = client(&app).decide_memberships(manager.req(bulk(ids.clone(), true))).await.unwrap().into_inner();
    assert_eq!((again.decided.len(), again.not_decided.len()), (0, 30));
}

#[sqlx::test]
async fn members_are_searched_by_name_or_handle(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let club = app.community("CLUB", "코딩 동아리").await;
    let kim = app.user("kim_dev").await;
    let lee = app.user("lee").await;
    let park = app.user("park").await;
    for u in [&kim, &lee, &park] {
        app.add_member(&club, u, "APPROVED", "MEMBER").await;
    }
    sqlx::query("update users set display_name = '이순신' where handle = 'lee'").execute(&app.state.db).await.unwrap();
    let search = |q: &str| {
        let mut c = client(&app);
        let req = kim.req(pb::ListMembersRequest { community_id: club.clone(), query: q.into(), ..Default::default() });
        async move {
            c.list_members(req)
                .await
                .map(|r| r.into_inner().members.into_iter().map(|m| m.user_handle).collect::<Vec<_>>())
        }
    };
    assert_eq!(search("KIM").await.unwrap(), ["kim_dev"]);
    assert_eq!(search("순신").await.unwrap(), ["lee"]);
    assert_eq!(search("User").await.unwrap(), ["kim_dev", "park"]);
    // LIKE wildcards are searched for literally.
    assert_eq!(search("m_d").await.unwrap(), ["kim_dev"]);
    assert!(search("%e").await.unwrap().is_empty());
    assert_eq!(search("").await.unwrap().len(), 3);
    let r = search("k").await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["query"]);
}

#[sqlx::test]
async fn concurrent_decisions_one_wins(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    let m1 = app.user("manager1").await;
    let m2 = app.user("manager2").await;
    let apt = app.community("APARTMENT", "파장삼익").await;
    app.add_member(&apt, &m1, "APPROVED", "MANAGER").await;
    app.add_member(&apt, &m2, "APPROVED", "MANAGER").await;
    for round in 0..5 {
        let applicant = app.user(&format!("applicant{round}")).await;
        let id = request(&app, &applicant, &apt).await.id;
        let mut tasks = Vec::new();
        for (i, who) in [&m1, &m2, &admin, &m1, &m2, &admin].into_iter().enumerate() {
            let (mut c, who, id) = (client(&app), who.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                c.decide_membership(who.req(pb::DecideMembershipRequest {
                    membership_id: id,
                    approve: i % 2 == 0,
                    note: String::new(),
                }))
                .await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(s) => {
                    assert_eq!(
                        (s.code(), reason(&s).as_str()),
                        (Code::FailedPrecondition, "MEMBERSHIP_ALREADY_DECIDED"),
                        "{s:?}"
                    );
                }
            }
        }
        assert_eq!(ok, 1, "round {round}: exactly one decision wins");
    }
}

#[sqlx::test]
async fn roles_members_leaving_and_the_last_manager(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    let manager = app.user("manager").await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let pending = app.user("pending").await;
    let apt = app.community("APARTMENT", "파장삼익").await;
    app.add_member(&apt, &manager, "APPROVED", "MANAGER").await;
    for u in [&alice, &bob] {
        request(&app, u, &apt).await;
        decide(&app, &manager, &membership_id(&pool, &apt, u).await, true).await.unwrap();
    }
    request(&app, &pending, &apt).await;

    let list = |who: &TestUser, role: pb::MemberRole| {
        let mut c = client(&app);
        let r = who.req(pb::ListMembersRequest { community_id: apt.clone(), role: role as i32, ..Default::default() });
        async move { c.list_members(r).await.map(|r| r.into_inner().members) }
    };
    let handles = |ms: &[pb::Membership]| ms.iter().map(|m| m.user_handle.clone()).collect::<Vec<_>>();
    let all = list(&alice, pb::MemberRole::Unspecified).await.unwrap();
    assert_eq!(handles(&all), ["manager", "alice", "bob"]);
    // Other members do not see building and unit; managers do.
    assert!(all.iter().all(|m| m.building.is_empty() && m.unit.is_empty()));
    let seen_by_manager = list(&manager, pb::MemberRole::Unspecified).await.unwrap();
    assert!(seen_by_manager.iter().filter(|m| m.user_handle != "manager").all(|m| m.unit == "1004"));
    assert_eq!(handles(&list(&alice, pb::MemberRole::Manager).await.unwrap()), ["manager"]);
    let r = client(&app)
        .list_members(alice.req(pb::ListMembersRequest { community_id: apt.clone(), role: 7, ..Default::default() }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["role"]);
    assert_err(list(&pending, pb::MemberRole::Unspecified).await, Code::PermissionDenied, "MEMBERSHIP_REQUIRED");

    // Roles.
    assert_err(
        set_role(&app, &alice, &apt, &bob, pb::MemberRole::Manager).await,
        Code::PermissionDenied,
        "MANAGER_REQUIRED",
    );
    let m = set_role(&app, &manager, &apt, &alice, pb::MemberRole::Manager).await.unwrap();
    assert_eq!(m.role, pb::MemberRole::Manager as i32);
    assert_eq!(managers(&pool, &apt).await, 2);
    // Idempotent.
    set_role(&app, &manager, &apt, &alice, pb::MemberRole::Manager).await.unwrap();
    assert_err(
        set_role(&app, &manager, &apt, &pending, pb::MemberRole::Manager).await,
        Code::NotFound,
        "MEMBER_NOT_FOUND",
    );
    let r = client(&app)
        .set_member_role(manager.req(pb::SetMemberRoleRequest {
            community_id: apt.clone(),
            user_id: "x".into(),
            role: 0,
        }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["user_id"]);
    let r = client(&app)
        .set_member_role(manager.req(pb::SetMemberRoleRequest {
            community_id: apt.clone(),
            user_id: bob.id.clone(),
            role: 0,
        }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["role"]);

    // Alice demotes the first manager; she is now the last one.
    set_role(&app, &alice, &apt, &manager, pb::MemberRole::Member).await.unwrap();
    assert_err(
        set_role(&app, &admin, &apt, &alice, pb::MemberRole::Member).await,
        Code::FailedPrecondition,
        "LAST_MANAGER",
    );
    let leave = |who: &TestUser| {
        let mut c = client(&app);
        let r = who.req(pb::LeaveCommunityRequest { community_id: apt.clone() });
        async move { c.leave_community(r).await }
    };
    assert_err(leave(&alice).await, Code::FailedPrecondition, "LAST_MANAGER");
    let remove = |who: &TestUser, whom: &TestUser| {
        let mut c = client(&app);
        let r = who.req(pb::RemoveMemberRequest { community_id: apt.clone(), user_id: whom.id.clone() });
        async move { c.remove_member(r).await }
    };
    assert_err(remove(&admin, &alice).await, Code::FailedPrecondition, "LAST_MANAGER");
    assert_eq!(managers(&pool, &apt).await, 1);

    // Members leave; a pending request is withdrawn; managers remove.
    leave(&bob).await.unwrap();
    assert_err(leave(&bob).await, Code::NotFound, "MEMBERSHIP_NOT_FOUND");
    leave(&pending).await.unwrap();
    assert_err(remove(&manager, &alice).await, Code::PermissionDenied, "MANAGER_REQUIRED");
    remove(&alice, &manager).await.unwrap();
    assert_err(remove(&alice, &manager).await, Code::NotFound, "MEMBER_NOT_FOUND");
    assert_eq!(handles(&list(&alice, pb::MemberRole::Unspecified).await.unwrap()), ["alice"]);
    // Bob may come back.
    request(&app, &bob, &apt).await;

    // Invalid input is reported per field, never INTERNAL.
    let r = client(&app).leave_community(bob.req(pb::LeaveCommunityRequest { community_id: " ".into() })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["community_id"]);
    let r = client(&app)
        .leave_community(bob.req(pb::LeaveCommunityRequest { community_id: uuid::Uuid::new_v4().to_string() }))
        .await;
    assert_err(r, Code::NotFound, "COMMUNITY_NOT_FOUND");
    let r = client(&app)
        .remove_member(alice.req(pb::RemoveMemberRequest { community_id: "x".into(), user_id: "y".into() }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["community_id", "user_id"]);
    let r = client(&app)
        .list_membership_requests(alice.req(pb::ListMembershipRequestsRequest {
            community_id: apt.clone(),
            page_size: 5,
            page_token: "forged.token".into(),
        }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let r = client(&app)
        .list_members(alice.req(pb::ListMembersRequest { community_id: "".into(), ..Default::default() }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["community_id"]);

    // A community without managers is run by admins; promoting is allowed, of course.
    let club = app.community("CLUB", "독서회").await;
    app.add_member(&club, &bob, "APPROVED", "MEMBER").await;
    set_role(&app, &admin, &club, &bob, pb::MemberRole::Manager).await.unwrap();
    assert_err(
        set_role(&app, &admin, &club, &bob, pb::MemberRole::Member).await,
        Code::FailedPrecondition,
        "LAST_MANAGER",
    );
}

#[sqlx::test]
async fn two_managers_demoting_each_other_at_once_leave_exactly_one(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let a = app.user("managera").await;
    let b = app.user("managerb").await;
    for round in 0..8 {
        let c = app.community("CLUB", &format!("클럽 {round}")).await;
        app.add_member(&c, &a, "APPROVED", "MANAGER").await;
        app.add_member(&c, &b, "APPROVED", "MANAGER").await;
        let (x, y) =
            (set_role(&app, &a, &c, &b, pb::MemberRole::Member), set_role(&app, &b, &c, &a, pb::MemberRole::Member));
        let (x, y) = tokio::join!(x, y);
        let ok = [&x, &y].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {x:?} {y:?}");
        let loser = if x.is_ok() { y.unwrap_err() } else { x.unwrap_err() };
        // The loser is either no longer a manager, or would have removed the last one.
        assert!(
            matches!(
                (loser.code(), reason(&loser).as_str()),
                (Code::PermissionDenied, "MANAGER_REQUIRED") | (Code::FailedPrecondition, "LAST_MANAGER")
            ),
            "{loser:?}"
        );
        assert_eq!(managers(&pool, &c).await, 1, "round {round}");
    }
    // Leaving at once: the same rule.
    let c = app.community("CLUB", "동시 탈퇴").await;
    app.add_member(&c, &a, "APPROVED", "MANAGER").await;
    app.add_member(&c, &b, "APPROVED", "MANAGER").await;
    let leave = |who: &TestUser| {
        let mut cl = client(&app);
        let r = who.req(pb::LeaveCommunityRequest { community_id: c.clone() });
        async move { cl.leave_community(r).await }
    };
    let (x, y) = tokio::join!(leave(&a), leave(&b));
    assert_eq!([&x, &y].iter().filter(|r| r.is_ok()).count(), 1, "{x:?} {y:?}");
    assert_eq!(managers(&pool, &c).await, 1);
}

// ---------------------------------------------------------------------------------------------
// The authorization matrix.

struct Cast {
    outsider: TestUser,
    pending: TestUser,
    member: TestUser,
    other_manager: TestUser,
    manager: TestUser,
    admin: TestUser,
    /// An APPROVED member acted upon (roles, removal).
    target: TestUser,
    /// Has a PENDING request in every fresh community.
    applicant: TestUser,
}

impl Cast {
    fn user(&self, who: Who) -> Option<&TestUser> {
        match who {
            Who::Anonymous => None,
            Who::Outsider => Some(&self.outsider),
            Who::Pending => Some(&self.pending),
            Who::Member => Some(&self.member),
            Who::OtherManager => Some(&self.other_manager),
            Who::Manager => Some(&self.manager),
            Who::Admin => Some(&self.admin),
        }
    }
}

/// A fresh apartment with the cast in place; returns (community id, the applicant's request id).
async fn stage(app: &TestApp, cast: &Cast, n: usize) -> (String, String) {
    let c = app.community("APARTMENT", &format!("매트릭스 {n}")).await;
    app.add_member(&c, &cast.pending, "PENDING", "MEMBER").await;
    app.add_member(&c, &cast.member, "APPROVED", "MEMBER").await;
    app.add_member(&c, &cast.manager, "APPROVED", "MANAGER").await;
    app.add_member(&c, &cast.target, "APPROVED", "MEMBER").await;
    app.add_member(&c, &cast.applicant, "PENDING", "MEMBER").await;
    let request = membership_id(&app.state.db, &c, &cast.applicant).await;
    (c, request)
}

#[sqlx::test]
async fn authorization_matrix(pool: PgPool) {
    use Code::{
        AlreadyExists as AE, FailedPrecondition as FP, NotFound as NF, Ok as OK, PermissionDenied as PD,
        Unauthenticated as UA,
    };
    let app = TestApp::spawn(pool).await;
    let cast = Cast {
        outsider: app.user("outsider").await,
        pending: app.user("pending").await,
        member: app.user("member").await,
        other_manager: app.user("othermanager").await,
        manager: app.user("manager").await,
        admin: app.admin_user("admin").await,
        target: app.user("target").await,
        applicant: app.user("applicant").await,
    };
    let elsewhere = app.community("CLUB", "다른 모임").await;
    app.add_member(&elsewhere, &cast.other_manager, "APPROVED", "MANAGER").await;

    // Columns: anonymous, signed-in non-member, pending, member, manager elsewhere, manager, admin.
    let matrix: [(&str, [Code; 7]); 12] = [
        ("SearchCommunities", [OK, OK, OK, OK, OK, OK, OK]),
        ("GetCommunity", [OK, OK, OK, OK, OK, OK, OK]),
        ("ListMyCommunities", [OK, OK, OK, OK, OK, OK, OK]),
        ("CreateCommunity", [UA, PD, PD, PD, PD, PD, OK]),
        ("RequestMembership", [UA, OK, AE, AE, OK, AE, OK]),
        ("ListMembershipRequests", [UA, PD, PD, PD, PD, OK, OK]),
        ("DecideMembership", [UA, PD, PD, PD, PD, OK, OK]),
        ("DecideMemberships", [UA, PD, PD, PD, PD, OK, OK]),
        ("ListMembers", [UA, PD, PD, OK, PD, OK, OK]),
        ("SetMemberRole", [UA, PD, PD, PD, PD, OK, OK]),
        ("LeaveCommunity", [UA, NF, OK, OK, NF, FP, NF]),
        ("RemoveMember", [UA, PD, PD, PD, PD, OK, OK]),
    ];
    // Every RPC of the service is in the matrix.
    let rpcs: std::collections::BTreeSet<&str> =
        maru::grpc::methods().values().filter(|m| m.service == "maru.v1.CommunityService").map(|m| m.method).collect();
    assert_eq!(rpcs, matrix.iter().map(|(r, _)| *r).collect());

    let mut n = 0;
    let mut failures = Vec::new();
    for (rpc, expected) in &matrix {
        for (who, want) in WHO.iter().zip(expected) {
            n += 1;
            let (c, request) = stage(&app, &cast, n).await;
            let user = cast.user(*who);
            let mut cl = client(&app);
            let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |_| Code::Ok);
            let got = match *rpc {
                "SearchCommunities" => code(
                    cl.search_communities(as_who(
                        user,
                        pb::SearchCommunitiesRequest { query: "매트릭스".into(), ..Default::default() },
                    ))
                    .await
                    .map(drop),
                ),
                "GetCommunity" => code(
                    cl.get_community(as_who(user, pb::GetCommunityRequest { community_id: c.clone() })).await.map(drop),
                ),
                "ListMyCommunities" => {
                    code(cl.list_my_communities(as_who(user, pb::ListMyCommunitiesRequest::default())).await.map(drop))
                }
                "CreateCommunity" => code(
                    cl.create_community(as_who(
                        user,
                        pb::CreateCommunityRequest {
                            kind: pb::CommunityKind::Club as i32,
                            name: format!("새 모임 {n}"),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(drop),
                ),
                "RequestMembership" => code(cl.request_membership(as_who(user, join(&c))).await.map(drop)),
                "ListMembershipRequests" => code(
                    cl.list_membership_requests(as_who(
                        user,
                        pb::ListMembershipRequestsRequest { community_id: c.clone(), ..Default::default() },
                    ))
                    .await
                    .map(drop),
                ),
                "DecideMembership" => code(
                    cl.decide_membership(as_who(
                        user,
                        pb::DecideMembershipRequest {
                            membership_id: request.clone(),
                            approve: true,
                            note: String::new(),
                        },
                    ))
                    .await
                    .map(drop),
                ),
                "DecideMemberships" => code(
                    cl.decide_memberships(as_who(
                        user,
                        pb::DecideMembershipsRequest {
                            community_id: c.clone(),
                            membership_ids: vec![request.clone()],
                            approve: true,
                            note: String::new(),
                        },
                    ))
                    .await
                    .map(drop),
                ),
                "ListMembers" => code(
                    cl.list_members(as_who(
                        user,
                        pb::ListMembersRequest { community_id: c.clone(), ..Default::default() },
                    ))
                    .await
                    .map(drop),
                ),
                "SetMemberRole" => code(
                    cl.set_member_role(as_who(
                        user,
                        pb::SetMemberRoleRequest {
                            community_id: c.clone(),
                            user_id: cast.target.id.clone(),
                            role: pb::MemberRole::Manager as i32,
                        },
                    ))
                    .await
                    .map(drop),
                ),
                "LeaveCommunity" => code(
                    cl.leave_community(as_who(user, pb::LeaveCommunityRequest { community_id: c.clone() }))
                        .await
                        .map(drop),
                ),
                "RemoveMember" => code(
                    cl.remove_member(as_who(
                        user,
                        pb::RemoveMemberRequest { community_id: c.clone(), user_id: cast.target.id.clone() },
                    ))
                    .await
                    .map(drop),
                ),
                other => panic!("{other} is not in the matrix"),
            };
            if got != *want {
                failures.push(format!("{rpc} as {who:?}: expected {want:?}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The home screen and its cache.

/// Community names of a home screen, in order.
fn names_of(items: &[pb::MyCommunity]) -> Vec<String> {
    items.iter().map(|m| m.community.as_ref().unwrap().name.clone()).collect()
}

/// Runs `maru import apartments --file` with `rows` against the test's database and Redis key
/// prefix, as an operator would; returns what it printed.
fn cli_import(pool: &PgPool, redis_prefix: &str, rows: &Value) -> String {
    let file = std::env::temp_dir().join(format!("apartments-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, serde_json::to_vec(rows).unwrap()).unwrap();
    let o = pool.connect_options();
    let url =
        format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), o.get_database().unwrap());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maru"))
        .args(["import", "apartments", "--file", file.to_str().unwrap()])
        .env("MARU__DATABASE__URL", &url)
        .env("MARU__REDIS__KEY_PREFIX", redis_prefix)
        .env("MARU__LOG__LEVEL", "error")
        .output()
        .unwrap();
    std::fs::remove_file(&file).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[sqlx::test]
async fn home_screen_is_never_stale_after_a_write_on_either_instance(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    assert!(app.state.cache.is_up(), "this test needs Redis");
    let prefix = app.redis_prefix.clone();
    let app2 = TestApp::spawn_with(pool.clone(), move |s| s.redis.key_prefix = prefix).await;
    let manager = app.user("manager").await;
    let user = app.user("resident").await;
    let admin = app.admin_user("boss").await;
    // The complex comes from the registry, imported by the CLI (a third process) on the same
    // database and Redis.
    let complex = |name: &str| {
        json!([{"kaptCode": "A10000001", "kaptName": name, "as1": "경기도", "as2": "수원장안구", "as3": "파장동",
                "as4": "", "bjdCode": "4111112900"}])
    };
    let import = cli_import(&pool, &app.redis_prefix, &complex("가나다 아파트"));
    assert!(import.contains("created 1  updated 0"), "{import}");
    let apt: String = sqlx::query_scalar("select id::text from communities where external_code = 'A10000001'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let club = app.community("CLUB", "라마바 모임").await;
    app.add_member(&apt, &manager, "APPROVED", "MANAGER").await;
    app.add_member(&club, &manager, "APPROVED", "MANAGER").await;

    let pending = pb::MembershipStatus::Pending as i32;
    let approved = pb::MembershipStatus::Approved as i32;
    // Both instances cache the empty home screen.
    for a in [&app, &app2] {
        assert!(my_communities(a, Some(&user)).await.is_empty());
        assert!(my_communities(a, Some(&user)).await.is_empty());
    }
    // Join (on instance 1): both show it at once.
    let m = request(&app, &user, &apt).await;
    for a in [&app, &app2] {
        assert_eq!(home(&my_communities(a, Some(&user)).await), [(apt.clone(), pending)]);
    }
    // Approve (on instance 2).
    decide(&app2, &manager, &m.id, true).await.unwrap();
    for a in [&app, &app2] {
        let items = my_communities(a, Some(&user)).await;
        assert_eq!(home(&items), [(apt.clone(), approved)]);
        assert_eq!(items[0].membership.as_ref().unwrap().role, pb::MemberRole::Member as i32);
        assert!(items[0].community.as_ref().unwrap().join_code.is_empty());
    }
    // Role change.
    set_role(&app, &manager, &apt, &user, pb::MemberRole::Manager).await.unwrap();
    for a in [&app, &app2] {
        let items = my_communities(a, Some(&user)).await;
        assert_eq!(items[0].membership.as_ref().unwrap().role, pb::MemberRole::Manager as i32);
    }
    // A second community, ordered by name.
    request(&app2, &user, &club).await;
    for a in [&app, &app2] {
        assert_eq!(home(&my_communities(a, Some(&user)).await), [(apt.clone(), approved), (club.clone(), pending)]);
    }
    // A profile edit (instance 2): the memberships show the member's new name.
    ProfileServiceClient::new(app2.channel.clone())
        .update_profile(user.req(pb::UpdateProfileRequest {
            display_name: "새 이름".into(),
            update_mask: Some(prost_types::FieldMask { paths: vec!["display_name".into()] }),
            ..Default::default()
        }))
        .await
        .unwrap();
    for a in [&app, &app2] {
        let items = my_communities(a, Some(&user)).await;
        let names: Vec<&str> =
            items.iter().map(|m| m.membership.as_ref().unwrap().user_display_name.as_str()).collect();
        assert_eq!(names, ["새 이름", "새 이름"]);
    }
    // `maru import apartments` renames the complex: every member's home screen and the
    // anonymous sample show the new name at once, on both instances (it was 5 minutes).
    for a in [&app, &app2] {
        assert!(names_of(&my_communities(a, None).await).contains(&"가나다 아파트".to_owned()));
    }
    let import = cli_import(&pool, &app.redis_prefix, &complex("가나다 아파트 리모델링"));
    assert!(import.contains("created 0  updated 1"), "{import}");
    assert!(!import.contains("warning"), "{import}");
    for a in [&app, &app2] {
        for who in [&user, &manager] {
            let names = names_of(&my_communities(a, Some(who)).await);
            assert_eq!(names, ["가나다 아파트 리모델링", "라마바 모임"]);
        }
        let sample = names_of(&my_communities(a, None).await);
        assert!(sample.contains(&"가나다 아파트 리모델링".to_owned()), "{sample:?}");
    }
    // A community created (instance 2) joins the cached anonymous sample on both instances.
    create(&app2, &admin, pb::CommunityKind::Club, "마바사 동호회", "").await;
    for a in [&app, &app2] {
        assert!(names_of(&my_communities(a, None).await).contains(&"마바사 동호회".to_owned()));
    }
    // Paging over the cached list.
    let first = client(&app)
        .list_my_communities(user.req(pb::ListMyCommunitiesRequest { page_size: 1, page_token: String::new() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(home(&first.communities), [(apt.clone(), approved)]);
    let second = client(&app2)
        .list_my_communities(user.req(pb::ListMyCommunitiesRequest { page_size: 1, page_token: first.next_page_token }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(home(&second.communities), [(club.clone(), pending)]);
    assert!(second.next_page_token.is_empty());
    // Leave (instance 2) and removal (instance 1).
    client(&app2).leave_community(user.req(pb::LeaveCommunityRequest { community_id: club.clone() })).await.unwrap();
    for a in [&app, &app2] {
        assert_eq!(home(&my_communities(a, Some(&user)).await), [(apt.clone(), approved)]);
    }
    client(&app)
        .remove_member(manager.req(pb::RemoveMemberRequest { community_id: apt.clone(), user_id: user.id.clone() }))
        .await
        .unwrap();
    for a in [&app, &app2] {
        assert!(my_communities(a, Some(&user)).await.is_empty());
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"maru_cache_requests_total{cache="my_communities",result="hit"}"#), "{metrics}");
}

#[sqlx::test]
async fn home_screen_works_without_redis(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.redis.url = "redis://127.0.0.1:1".to_owned().into()).await;
    assert!(!app.state.cache.is_up());
    let manager = app.user("manager").await;
    let user = app.user("resident").await;
    let apt = app.community("APARTMENT", "가나다 아파트").await;
    app.add_member(&apt, &manager, "APPROVED", "MANAGER").await;
    assert!(my_communities(&app, Some(&user)).await.is_empty());
    let m = request(&app, &user, &apt).await;
    assert_eq!(home(&my_communities(&app, Some(&user)).await), [(apt.clone(), pb::MembershipStatus::Pending as i32)]);
    decide(&app, &manager, &m.id, true).await.unwrap();
    assert_eq!(home(&my_communities(&app, Some(&user)).await), [(apt.clone(), pb::MembershipStatus::Approved as i32)]);
    assert_eq!(my_communities(&app, None).await.len(), 1);
    let metrics = app.metrics().await;
    assert!(metrics.contains(r#"maru_cache_requests_total{cache="my_communities",result="bypass"}"#));
}

#[sqlx::test]
async fn anonymous_home_is_a_sample_of_the_newest(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let admin = app.admin_user("boss").await;
    for i in 0..11 {
        create(&app, &admin, pb::CommunityKind::Club, &format!("모임 {i:02}"), "").await;
    }
    let items = my_communities(&app, None).await;
    assert_eq!(items.len(), 10);
    assert!(items.iter().all(|m| m.membership.is_none() && m.community.as_ref().unwrap().join_code.is_empty()));
    // Cached, and invalidated by a create.
    let newest = create(&app, &admin, pb::CommunityKind::SportsClub, "최신 클럽", "CODE-1234").await;
    let items = my_communities(&app, None).await;
    assert_eq!(items.len(), 10);
    assert_eq!(items[0].community.as_ref().unwrap().id, newest.id);
    assert!(items[0].community.as_ref().unwrap().join_code.is_empty());
    let r = client(&app)
        .list_my_communities(pb::ListMyCommunitiesRequest { page_size: -1, page_token: String::new() })
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["page_size"]);
}

// ---------------------------------------------------------------------------------------------
// Registry import.

fn fixture_rows() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture readable")).expect("fixture is JSON")
}

fn counts(s: &Summary) -> (u64, u64, u64, u64, u64) {
    (s.fetched, s.created, s.updated, s.unchanged, s.failed)
}

async fn apartment_updated_at(pool: &PgPool) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    sqlx::query_as::<_, (String, chrono::DateTime<chrono::Utc>)>(
        "select external_code, updated_at from communities where external_code is not null",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[sqlx::test]
async fn importing_the_fixture_twice_changes_nothing_the_second_time(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let quiet = |_| {};
    let first = registry::import(&app.state, Source::File(PathBuf::from(FIXTURE)), &quiet).await.unwrap();
    assert_eq!(counts(&first), (FIXTURE_ROWS, FIXTURE_ROWS, 0, 0, 0), "{first:?}");
    let before = apartment_updated_at(&pool).await;
    assert_eq!(before.len() as u64, FIXTURE_ROWS);
    let second = registry::import(&app.state, Source::File(PathBuf::from(FIXTURE)), &quiet).await.unwrap();
    assert_eq!(counts(&second), (FIXTURE_ROWS, 0, 0, FIXTURE_ROWS, 0), "{second:?}");
    assert_eq!(apartment_updated_at(&pool).await, before, "an unchanged row is not written");

    // One renamed complex is one update.
    let mut rows = fixture_rows();
    rows[1]["kaptName"] = json!("파장삼익 리모델링");
    let file = std::env::temp_dir().join(format!("apartments-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, serde_json::to_vec(&rows).unwrap()).unwrap();
    let third = registry::import(&app.state, Source::File(file.clone()), &quiet).await.unwrap();
    std::fs::remove_file(&file).ok();
    assert_eq!(counts(&third), (FIXTURE_ROWS, 0, 1, FIXTURE_ROWS - 1, 0));

    // Imported complexes are searchable, with their registry data.
    let r = client(&app)
        .search_communities(pb::SearchCommunitiesRequest { query: "리모델링".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total_size, 1);
    let c = &r.communities[0];
    assert_eq!((c.external_code.as_str(), c.bjd_code.as_str()), ("A44085102", "4111112900"));
    assert_eq!(c.address, "경기도 수원장안구 파장동");
    assert_eq!(c.kind, pb::CommunityKind::Apartment as i32);
    let r = client(&app)
        .search_communities(pb::SearchCommunitiesRequest {
            query: "수원장안구".into(),
            page_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.total_size > 5 && r.communities.len() == 5 && !r.next_page_token.is_empty(), "{}", r.total_size);
}

#[sqlx::test]
async fn cli_imports_a_file_and_reports_the_summary(pool: PgPool) {
    let rows: Vec<Value> =
        fixture_rows().into_iter().take(30).chain([json!({"kaptCode": "", "kaptName": "이름만"})]).collect();
    let file = std::env::temp_dir().join(format!("apartments-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, serde_json::to_vec(&rows).unwrap()).unwrap();
    let o = pool.connect_options();
    let url =
        format!("postgres://{}@{}:{}/{}", o.get_username(), o.get_host(), o.get_port(), o.get_database().unwrap());
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_maru"))
            .args(["import", "apartments", "--file", file.to_str().unwrap()])
            .env("MARU__DATABASE__URL", &url)
            .env("MARU__REDIS__URL", "redis://127.0.0.1:1")
            .env("MARU__LOG__LEVEL", "error")
            .output()
            .unwrap()
    };
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("created 30  updated 0  unchanged 0  failed 1"), "{text}");
    assert!(text.contains("row 31: kaptCode is missing or malformed"), "{text}");
    let out = run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("created 0  updated 0  unchanged 30  failed 1"), "{text}");
    std::fs::remove_file(&file).ok();
    // Neither a file nor --from-api: a usage error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maru")).args(["import", "apartments"]).output().unwrap();
    assert!(!out.status.success());
}

// The AptListService API, served locally in its JSON format with real paging.

const API_KEY: &str = "registry+Key/with==padding";
const API_PATH: &str = "/1613000/AptListService3/getTotalAptList3";

struct FakeRegistry {
    rows: Vec<Value>,
    /// (pageNo, numOfRows) of every request.
    requests: Mutex<Vec<(u32, u32)>>,
}

async fn registry_api(State(s): State<Arc<FakeRegistry>>, uri: Uri) -> Response {
    let respond = |status: StatusCode, body: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json;charset=UTF-8")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    if uri.path() != API_PATH {
        return respond(StatusCode::NOT_FOUND, json!({}));
    }
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if q.get("serviceKey").map(String::as_str) != Some(API_KEY) {
        // The portal answers a bad key with 200 and an error header.
        return respond(
            StatusCode::OK,
            json!({"response": {"header": {"resultCode": "30", "resultMsg": "SERVICE KEY IS NOT REGISTERED ERROR."}}}),
        );
    }
    assert_eq!(q.get("_type").map(String::as_str), Some("json"));
    let page: u32 = q.get("pageNo").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per: u32 = q.get("numOfRows").and_then(|p| p.parse().ok()).unwrap_or(10);
    s.requests.lock().push((page, per));
    let items: Vec<Value> =
        s.rows.iter().skip(((page.max(1) - 1) * per) as usize).take(per as usize).cloned().collect();
    respond(
        StatusCode::OK,
        json!({"response": {
            "header": {"resultCode": "00", "resultMsg": "NORMAL SERVICE"},
            "body": {"items": items, "numOfRows": per.to_string(), "pageNo": page.to_string(), "totalCount": s.rows.len().to_string()}
        }}),
    )
}

async fn start_registry(rows: Vec<Value>) -> (SocketAddr, Arc<FakeRegistry>) {
    let state = Arc::new(FakeRegistry { rows, requests: Mutex::new(Vec::new()) });
    let router = axum::Router::new().fallback(registry_api).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, state)
}

#[sqlx::test]
async fn imports_from_the_aptlistservice_api_page_by_page(pool: PgPool) {
    let (addr, api) = start_registry(fixture_rows()).await;
    let base = format!("http://{addr}/1613000/AptListService3");
    let app = TestApp::spawn_with(pool.clone(), move |s| {
        s.registry.base_url = base;
        s.registry.service_key = Some(SecretString::from(API_KEY));
        s.registry.rows_per_page = 1000;
        s.registry.backoff_ms = 10;
    })
    .await;
    let fetched = Mutex::new(Vec::new());
    let progress = |p: registry::Progress| {
        if let registry::Progress::Fetched { rows, total } = p {
            fetched.lock().push((rows, total));
        }
    };
    let s = registry::import(&app.state, Source::Api, &progress).await.unwrap();
    assert_eq!(counts(&s), (FIXTURE_ROWS, FIXTURE_ROWS, 0, 0, 0));
    assert_eq!(*api.requests.lock(), [(1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 1000), (6, 1000)]);
    assert_eq!(fetched.lock()[0], (1000, FIXTURE_ROWS as usize));

    // The API and the file describe the same registry: nothing changes.
    let s = registry::import(&app.state, Source::File(PathBuf::from(FIXTURE)), &|_| {}).await.unwrap();
    assert_eq!(counts(&s), (FIXTURE_ROWS, 0, 0, FIXTURE_ROWS, 0));

    // A wrong key: the portal's error, without the key.
    let (addr, _) = start_registry(fixture_rows()).await;
    let wrong = "wrong+key/value==";
    let mut settings = test_settings();
    settings.registry.base_url = format!("http://{addr}/1613000/AptListService3");
    settings.registry.service_key = Some(SecretString::from(wrong));
    let state = maru::state::AppState::new(settings, pool.clone()).unwrap();
    let e = registry::import(&state, Source::Api, &|_| {}).await.unwrap_err().to_string();
    assert!(e.contains("30") && e.contains("SERVICE KEY"), "{e}");
    assert!(!e.contains("wrong") && !e.contains("wrong%2Bkey"), "{e}");

    // No key configured: refused, nothing fetched.
    let state = maru::state::AppState::new(test_settings(), pool).unwrap();
    let e = registry::import(&state, Source::Api, &|_| {}).await.unwrap_err().to_string();
    assert!(e.contains("registry.service_key"), "{e}");
}

#[sqlx::test]
async fn a_retried_membership_request_gets_its_first_answer(pool: PgPool) {
    // Issue 13 pt 5: a retry after a lost reply gets its membership, not ALREADY_MEMBER.
    let app = TestApp::spawn(pool).await;
    let user = app.user("resident").await;
    let apt = app.community("APARTMENT", "파장삼익").await;
    let req = |rid: &str| pb::RequestMembershipRequest { request_id: rid.into(), ..join(&apt) };
    let first = client(&app).request_membership(user.req(req("join-1"))).await.unwrap().into_inner();
    let again = client(&app).request_membership(user.req(req("join-1"))).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_err(client(&app).request_membership(user.req(req(""))).await, Code::AlreadyExists, "ALREADY_MEMBER");
    // Another dwelling under the same id is another request.
    let other = pb::RequestMembershipRequest { unit: "1005".into(), ..req("join-1") };
    assert_err(client(&app).request_membership(user.req(other)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    let rows: i64 = sqlx::query_scalar("select count(*) from community_memberships where user_id = $1::uuid")
        .bind(&user.id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}
