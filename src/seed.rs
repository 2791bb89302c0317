//! `maru seed demo`: the apartment registry plus one lived-in demo complex, 용인신갈푸르지오
//! (kaptCode A44658807), built through the same use cases the RPCs call — so the demo data
//! obeys every rule the API enforces (memberships decided by a manager, one vote per member, …).
//!
//! Accounts (password [`DEMO_PASSWORD`], documented in the README; a demo, never for production):
//! `demo.admin` (deployment ADMIN), `demo.manager` (MANAGER of the complex), residents `demo.kim`
//! and `demo.lee` (APPROVED), `demo.park` (PENDING, for the walk-through's DecideMembership).
//! Content: two notices (one pinned), three contacts, two schedules, a complaint by demo.kim and
//! an open poll with demo.lee's vote.
//!
//! Also a sports club, FC 마루 (join code [`DEMO_CLUB_CODE`]), managed by demo.manager, with
//! demo.kim and demo.lee as players: a match that ended an hour before seeding (demo.lee was
//! marked present, demo.kim never came, nobody paid; the server settles it when it starts:
//! demo.kim ABSENT +3, demo.lee NOT_PAID +1) and a match under way at Seoul City Hall
//! (37.5665, 126.9780) until two hours after seeding, for check-ins.
//!
//! And a university club, [`DEMO_DEV_CLUB`] (a CLUB community: sign-ups wait for a manager),
//! managed by demo.manager, for team building (DOMAIN §2, `docs/teams.md`): approved members
//! `demo.jiwoo`, `demo.minji`, `demo.hyun`, `demo.sora`, `demo.taeyang`, and `demo.yuna` still
//! PENDING; one team in each state — 마루 웹 포털 (RECRUITING, led by demo.jiwoo, with an approved,
//! a pending and a rejected application and open seats), 캠퍼스 맛집 지도 (IN_PROGRESS), AI 스터디
//! 봇 (ACCOMPLISHED), 레트로 게임 잼 (PENDING_APPROVAL) and 코인 자동매매 봇 (REJECTED) — and likes
//! (3 on the web portal, 1 on the map, 4 on the bot). Built through `teams::ops` like an RPC would.
//!
//! And a market (DOMAIN §3, `docs/market.md`, `docs/reports.md`): three sellers — `demo.hana`
//! (furniture and interior), `demo.jun` (camping and outdoor), `demo.seo` (digital) — with twelve
//! products ([`DEMO_PRODUCTS`]: Korean names and tags, prices, sale links), likes by the residents
//! and club members so that recommendations have co-likes to explain, and three OPEN reports on
//! two products for the admin queue: 명품 가방 초특가 (FRAUD, by demo.kim and demo.lee) and 등산
//! 배낭 45L (SPAM, by demo.park). demo.seo's products are never reported. Built through
//! `market::ops` and `reports::ops` from the same requests the RPCs take.
//!
//! And chat (DOMAIN §3, `docs/chat.md`): [`DEMO_CHATS`] — a DM between the residents demo.kim and
//! demo.lee, a DM in which demo.kim asks demo.hana about one of her products, and a group, 마루
//! 101동 이웃 (owner demo.manager, with demo.kim, demo.lee and demo.park); each with a few
//! messages, and demo.lee's read mark at the end of the group so that unread counts differ.
//! Built through `chat::ops` from the same requests the RPCs take.
//!
//! And feed posts with photos in the demo complex ([`DEMO_PHOTO_POSTS`]: demo.kim with two,
//! demo.lee and demo.manager with one): the images are drawn in code ([`Scene::jpeg`]),
//! uploaded, processed into their variants and attached through the media and feed use cases.
//!
//! Running it again changes nothing (it reports that the demo exists); the registry import is
//! idempotent anyway. The registry ([`DEMO_REGISTRY`], the Gyeonggi export of
//! `tests/fixtures/apartments-gyeonggi.json`) is compiled into the binary, so the command works
//! from any directory and in the container image, which holds only the binary.

use std::path::PathBuf;

use chrono::{Duration, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::accounts::model::{Email, Handle, SignUp};
use crate::caller::{Caller, Role};
use crate::chat::model::{CreateRoom, SendMessage};
use crate::chat::ops as chat;
use crate::communities::access::MemberRole;
use crate::communities::content::complaints::{self, FileComplaint};
use crate::communities::content::contacts::{self, CreateContact};
use crate::communities::content::notices::{self, CreateNotice};
use crate::communities::content::polls::{self, CastVote, CreatePoll};
use crate::communities::content::schedules::{self, CreateSchedule, ScheduleData};
use crate::communities::model::{Decision, JoinRequest, Kind, NewCommunity};
use crate::communities::{ops as communities, registry};
use crate::events::model::{Category, Coords, CreateEvent, EventUser, Venue};
use crate::events::ops as events;
use crate::feed::model::CreatePost;
use crate::grpc::pb;
use crate::market::model::CreateProduct;
use crate::market::ops as market;
use crate::reports::model::CreateReport;
use crate::reports::ops as reports;
use crate::state::AppState;
use crate::teams::model::{Apply, Genre, ProposeTeam, TeamRole, TeamState};
use crate::teams::ops as teams;

/// Registry code of the demo complex.
pub const DEMO_KAPT_CODE: &str = "A44658807";
/// Password of every demo account.
pub const DEMO_PASSWORD: &str = "maru-demo-1234";
/// Join code of the demo sports club.
pub const DEMO_CLUB_CODE: &str = "goal2026";

/// Name of the demo team-building club.
pub const DEMO_DEV_CLUB: &str = "maru 개발 동아리";

/// The Gyeonggi apartment registry (AptListService rows, 5,067 complexes), compiled in.
pub const DEMO_REGISTRY: &[u8] = include_bytes!("../tests/fixtures/apartments-gyeonggi.json");

/// What `seed demo` made (or found).
#[derive(Debug)]
pub struct Demo {
    pub community_id: Uuid,
    pub created: bool,
    pub registry: Option<registry::Summary>,
    /// The team-building club [`DEMO_DEV_CLUB`].
    pub dev_club_id: Uuid,
    /// False when the club was there already (nothing was added).
    pub dev_club_created: bool,
    /// False when the market's sellers were there already (nothing was added).
    pub market_created: bool,
    /// False when the demo chats were there already (nothing was added).
    pub chat_created: bool,
    /// False when the feed's photo posts were there already (nothing was added).
    pub photos_created: bool,
}

/// Imports the registry (`registry_file`, or the compiled-in [`DEMO_REGISTRY`]) and builds the
/// demo complex once.
pub async fn demo(state: &AppState, registry_file: Option<PathBuf>) -> anyhow::Result<Demo> {
    let source = match registry_file {
        Some(path) => registry::Source::File(path),
        None => registry::Source::Bundled { name: "the bundled Gyeonggi registry", json: DEMO_REGISTRY },
    };
    let summary = crate::console::import_apartments(state, source).await?;
    let community_id: Uuid = sqlx::query_scalar("select id from communities where external_code = $1")
        .bind(DEMO_KAPT_CODE)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the registry has no complex {DEMO_KAPT_CODE} (용인신갈푸르지오)"))?;
    let exists: bool = sqlx::query_scalar("select exists (select 1 from users where lower(handle) = 'demo.manager')")
        .fetch_one(&state.db)
        .await?;
    if !exists {
        build(state, community_id).await.map_err(|e| anyhow::anyhow!("seeding the demo complex failed: {e}"))?;
    }
    // Separately: a database seeded before the club existed gets it on the next run.
    let (dev_club_id, dev_club_created) =
        dev_club(state).await.map_err(|e| anyhow::anyhow!("seeding the demo club {DEMO_DEV_CLUB} failed: {e}"))?;
    // Likewise the market, which needs the residents and club members as its customers.
    let market_created =
        market_demo(state).await.map_err(|e| anyhow::anyhow!("seeding the demo market failed: {e}"))?;
    // And chat, between the residents, the manager and a seller.
    let chat_created = chat_demo(state).await.map_err(|e| anyhow::anyhow!("seeding the demo chats failed: {e}"))?;
    // And feed posts with photos in the demo complex (drawn in code, processed like uploads).
    let photos_created = photo_posts_demo(state, community_id)
        .await
        .map_err(|e| anyhow::anyhow!("seeding the demo photo posts failed: {e}"))?;
    Ok(Demo {
        community_id,
        created: !exists,
        registry: Some(summary),
        dev_club_id,
        dev_club_created,
        market_created,
        chat_created,
        photos_created,
    })
}

/// A demo account made by an earlier step, as a caller.
async fn existing(state: &AppState, handle: &str) -> crate::error::AppResult<Caller> {
    let (user_id, role): (Uuid, String) = sqlx::query_as("select id, role from users where lower(handle) = $1")
        .bind(handle)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| crate::error::AppError::internal(format!("demo account {handle} is missing")))?;
    let role = if role == "ADMIN" { Role::Admin } else { Role::User };
    Ok(Caller { user_id, session_id: Uuid::nil(), role })
}

async fn account(state: &AppState, handle: &str, name: &str) -> crate::error::AppResult<Caller> {
    let cmd = SignUp {
        handle: Handle::parse(handle).map_err(|e| crate::error::AppError::invalid("handle", e))?,
        email: Email::parse(&format!("{handle}@demo.maru.example"))
            .map_err(|e| crate::error::AppError::invalid("email", e))?,
        password: SecretString::from(DEMO_PASSWORD),
        display_name: name.to_owned(),
        request_id: None,
    };
    let user = crate::accounts::ops::sign_up(state, cmd).await?;
    // The seed acts as each user; use cases only read the id and the role.
    Ok(Caller { user_id: user.id, session_id: Uuid::nil(), role: user.role })
}

async fn join(
    state: &AppState,
    who: &Caller,
    community_id: Uuid,
    building: &str,
    unit: &str,
) -> crate::error::AppResult<Uuid> {
    let req = JoinRequest {
        community_id,
        building: building.into(),
        unit: unit.into(),
        verification_code: String::new(),
        request_id: None,
    };
    Ok(communities::request_membership(state, who, req).await?.id)
}

async fn approve(state: &AppState, manager: &Caller, membership_id: Uuid) -> crate::error::AppResult<()> {
    let d = Decision { membership_id, approve: true, note: Some("입주민 확인".into()) };
    communities::decide_membership(state, manager, d).await.map(|_| ())
}

async fn build(state: &AppState, c: Uuid) -> crate::error::AppResult<()> {
    let mut admin = account(state, "demo.admin", "maru 운영자").await?;
    crate::accounts::ops::set_role(state, "demo.admin", Role::Admin).await?;
    admin.role = Role::Admin;
    let manager = account(state, "demo.manager", "관리사무소").await?;
    let kim = account(state, "demo.kim", "김민수").await?;
    let lee = account(state, "demo.lee", "이서연").await?;
    let park = account(state, "demo.park", "박지훈").await?;

    // The first manager: an admin approves the request and promotes them.
    let m = join(state, &manager, c, "관리동", "101").await?;
    approve(state, &admin, m).await?;
    communities::set_member_role(state, &admin, c, manager.user_id, MemberRole::Manager).await?;
    for (who, building, unit) in [(&kim, "101", "1203"), (&lee, "103", "502")] {
        let id = join(state, who, c, building, unit).await?;
        approve(state, &manager, id).await?;
    }
    join(state, &park, c, "105", "1701").await?; // stays PENDING

    let notice = |title: &str, body: &str, pinned| CreateNotice {
        community_id: c,
        title: title.into(),
        body: body.into(),
        pinned,
        media_ids: vec![],
        request_id: None,
    };
    notices::create_notice(
        state,
        &manager,
        notice(
            "관리비 납부 안내",
            "이번 달 관리비는 25일까지 납부해 주세요. 자동이체 신청은 관리사무소에서 받습니다.",
            true,
        ),
    )
    .await?;
    notices::create_notice(
        state,
        &manager,
        notice("승강기 정기 점검", "103동 승강기 정기 점검이 있습니다. 점검 시간에는 계단을 이용해 주세요.", false),
    )
    .await?;

    for (name, phone, category, description) in [
        ("관리사무소", "031-000-0001", "관리", "평일 09:00–18:00"),
        ("경비실 (정문)", "031-000-0002", "경비", "24시간"),
        ("승강기 유지보수", "031-000-0003", "시설", "고장 신고"),
    ] {
        let cmd = CreateContact {
            community_id: c,
            name: name.into(),
            phone: phone.into(),
            category: category.into(),
            description: description.into(),
            request_id: None,
        };
        contacts::create_contact(state, &manager, cmd).await?;
    }

    let day = Utc::now() + Duration::days(7);
    for (title, hours, location) in
        [("재활용품 분리수거", 3, "지하 주차장 입구"), ("입주자대표회의", 2, "관리동 회의실")]
    {
        let data = ScheduleData {
            title: title.into(),
            starts_at: day,
            ends_at: day + Duration::hours(hours),
            location: location.into(),
            description: String::new(),
        };
        schedules::create_schedule(state, &manager, CreateSchedule { community_id: c, data, request_id: None }).await?;
    }

    let complaint = FileComplaint {
        community_id: c,
        title: "101동 지하주차장 조명 고장".into(),
        body: "B1 출입구 쪽 조명 두 개가 며칠째 꺼져 있습니다.".into(),
        category: "시설".into(),
        media_ids: vec![],
        request_id: None,
    };
    complaints::file_complaint(state, &kim, complaint).await?;

    let poll = CreatePoll {
        community_id: c,
        question: "놀이터 리모델링 시공사 선정".into(),
        options: vec!["A사 (친환경 소재)".into(), "B사 (최저가)".into(), "보류".into()],
        closes_at: Some(Utc::now() + Duration::days(14)),
        request_id: None,
    };
    let poll = polls::create_poll(state, &manager, poll).await?;
    let option_id =
        poll.options.first().map(|o| o.id).ok_or_else(|| crate::error::AppError::internal("poll without options"))?;
    polls::cast_vote(state, &lee, CastVote { poll_id: poll.poll.id, option_id, request_id: None }).await?;

    sports_club(state, &admin, &manager, &[&kim, &lee]).await
}

async fn sports_club(
    state: &AppState,
    admin: &Caller,
    manager: &Caller,
    players: &[&Caller],
) -> crate::error::AppResult<()> {
    let club = NewCommunity {
        kind: Kind::SportsClub,
        name: "FC 마루".into(),
        address: "서울특별시 중구 세종대로 110".into(),
        join_code: Some(DEMO_CLUB_CODE.into()),
        external_code: None,
        request_id: None,
    };
    let club = communities::create_community(state, admin, club).await?.id;
    let join = |who: &Caller| {
        let req = JoinRequest {
            community_id: club,
            building: String::new(),
            unit: String::new(),
            verification_code: DEMO_CLUB_CODE.into(),
            request_id: None,
        };
        let who = *who;
        async move { communities::request_membership(state, &who, req).await }
    };
    join(manager).await?;
    communities::set_member_role(state, admin, club, manager.user_id, MemberRole::Manager).await?;
    for p in players {
        join(p).await?;
    }

    let now = Utc::now();
    let city_hall = Coords { latitude: 37.5665, longitude: 126.9780 };
    let event = |title: &str, starts_at, ends_at| CreateEvent {
        community_id: club,
        title: title.into(),
        address: "서울특별시 중구 세종대로 110".into(),
        category: Category::All,
        fee: 10_000,
        starts_at,
        ends_at,
        description: String::new(),
        venue: Venue::Explicit(city_hall),
        request_id: None,
    };
    let ended = events::create_event(
        state,
        manager,
        event("지난 정기 경기", now - Duration::hours(3), now - Duration::hours(1)),
    )
    .await?
    .id;
    let under_way = events::create_event(
        state,
        manager,
        event("오늘 정기 경기", now - Duration::minutes(10), now + Duration::hours(2)),
    )
    .await?
    .id;
    for p in players {
        for event_id in [ended, under_way] {
            events::add_participant(state, manager, EventUser { event_id, user_id: p.user_id }, None).await?;
        }
    }
    // The last player came to the ended match (marked by the manager); the others did not.
    if let Some(present) = players.last() {
        events::force_attend(state, manager, EventUser { event_id: ended, user_id: present.user_id }).await?;
    }
    Ok(())
}

/// The team-building club, once: `(club id, created)`.
async fn dev_club(state: &AppState) -> crate::error::AppResult<(Uuid, bool)> {
    let found: Option<Uuid> = sqlx::query_scalar("select id from communities where kind = 'CLUB' and name = $1")
        .bind(DEMO_DEV_CLUB)
        .fetch_optional(&state.db)
        .await?;
    if let Some(id) = found {
        return Ok((id, false));
    }
    let admin = existing(state, "demo.admin").await?;
    let manager = existing(state, "demo.manager").await?;
    let club = NewCommunity {
        kind: Kind::Club,
        name: DEMO_DEV_CLUB.into(),
        address: "maru 대학교 학생회관 301호".into(),
        join_code: None,
        external_code: None,
        request_id: None,
    };
    let club = communities::create_community(state, &admin, club).await?.id;
    let sign_up = |who: Caller| async move {
        let req = JoinRequest {
            community_id: club,
            building: String::new(),
            unit: String::new(),
            verification_code: String::new(),
            request_id: None,
        };
        communities::request_membership(state, &who, req).await.map(|m| m.id)
    };
    let decide = |by: Caller, membership_id: Uuid| async move {
        let d = Decision { membership_id, approve: true, note: Some("동아리 가입 승인".into()) };
        communities::decide_membership(state, &by, d).await.map(|_| ())
    };
    // The club's first manager: an admin approves and promotes them, as for the complex.
    decide(admin, sign_up(manager).await?).await?;
    communities::set_member_role(state, &admin, club, manager.user_id, MemberRole::Manager).await?;
    let mut members = Vec::new();
    for (handle, name) in [
        ("demo.jiwoo", "정지우"),
        ("demo.minji", "최민지"),
        ("demo.hyun", "한현"),
        ("demo.sora", "윤소라"),
        ("demo.taeyang", "강태양"),
    ] {
        let who = account(state, handle, name).await?;
        decide(manager, sign_up(who).await?).await?;
        members.push(who);
    }
    let yuna = account(state, "demo.yuna", "오유나").await?;
    sign_up(yuna).await?; // stays PENDING
    let [jiwoo, minji, hyun, sora, taeyang] = members[..] else {
        return Err(crate::error::AppError::internal("five demo club members"));
    };

    use TeamRole::*;
    let propose = |leader: Caller, title: &str, genre, description: &str, roles: Vec<(TeamRole, i32)>| {
        let cmd = ProposeTeam {
            community_id: club,
            title: title.into(),
            genre,
            description: description.into(),
            links: vec!["https://github.com/maru-demo".into()],
            image_url: String::new(),
            leader_role: roles[0].0,
            roles,
            media_ids: vec![],
            request_id: None,
        };
        async move { teams::propose_team(state, &leader, cmd).await.map(|t| t.team.id) }
    };
    let apply = |who: Caller, team_id: Uuid, role, message: &str| {
        let cmd = Apply { team_id, role, message: message.into(), request_id: None };
        async move { teams::apply(state, &who, cmd).await.map(|a| a.id) }
    };

    // RECRUITING, with one application in each state and open seats (BACKEND 1/2, FRONTEND 1/2,
    // DESIGN 0/1) for the walk-through.
    let portal = propose(
        jiwoo,
        "마루 웹 포털",
        Genre::Web,
        "동아리 공지와 프로젝트를 한곳에서 보는 웹 포털을 만듭니다. Rust 백엔드, React 프론트엔드.",
        vec![(Backend, 2), (Frontend, 2), (Design, 1)],
    )
    .await?;
    teams::decide_team(state, &manager, portal, true, "좋은 제안입니다").await?;
    let a = apply(minji, portal, Frontend, "React 경험이 있습니다.").await?;
    teams::decide_application(state, &jiwoo, a, true, "환영합니다").await?;
    apply(hyun, portal, Backend, "gRPC 서버를 만들어 보고 싶습니다.").await?; // stays PENDING
    let a = apply(sora, portal, Design, "UI 디자인을 맡고 싶어요.").await?;
    teams::decide_application(state, &jiwoo, a, false, "이번에는 내부 디자이너가 맡기로 했습니다").await?;

    // IN_PROGRESS: recruited, then started by its leader.
    let map = propose(
        minji,
        "캠퍼스 맛집 지도",
        Genre::App,
        "학교 주변 맛집을 지도에 모아 보는 모바일 앱.",
        vec![(Frontend, 1), (Backend, 1), (Design, 1)],
    )
    .await?;
    teams::decide_team(state, &manager, map, true, "").await?;
    let a = apply(taeyang, map, Backend, "지도 API 연동을 해 보았습니다.").await?;
    teams::decide_application(state, &minji, a, true, "").await?;
    teams::set_team_state(state, &minji, map, TeamState::InProgress).await?;

    // ACCOMPLISHED.
    let bot = propose(
        hyun,
        "AI 스터디 봇",
        Genre::Ai,
        "스터디 질문에 답하는 디스코드 봇. 지난 학기에 완성했습니다.",
        vec![(Ai, 2), (Backend, 1)],
    )
    .await?;
    teams::decide_team(state, &manager, bot, true, "").await?;
    let a = apply(jiwoo, bot, Backend, "봇 서버를 맡겠습니다.").await?;
    teams::decide_application(state, &hyun, a, true, "").await?;
    teams::set_team_state(state, &hyun, bot, TeamState::InProgress).await?;
    teams::set_team_state(state, &hyun, bot, TeamState::Accomplished).await?;

    // PENDING_APPROVAL (the walk-through's manager approves it) and REJECTED.
    propose(
        sora,
        "레트로 게임 잼",
        Genre::Game,
        "48시간 동안 8비트 스타일 게임을 만드는 게임 잼 팀.",
        vec![(Design, 1), (Frontend, 2), (Planning, 1)],
    )
    .await?;
    let coin = propose(
        taeyang,
        "코인 자동매매 봇",
        Genre::Other,
        "거래소 API로 자동매매를 합니다.",
        vec![(Backend, 1), (Ai, 1)],
    )
    .await?;
    teams::decide_team(state, &manager, coin, false, "동아리 활동 취지에 맞지 않습니다").await?;

    for (who, team) in [
        (minji, portal),
        (hyun, portal),
        (sora, portal),
        (jiwoo, map),
        (jiwoo, bot),
        (minji, bot),
        (sora, bot),
        (taeyang, bot),
    ] {
        teams::like_team(state, &who, team).await?;
    }
    Ok((club, true))
}

/// The demo market's products: (seller handle, name, price in KRW, tags, description).
pub const DEMO_PRODUCTS: &[(&str, &str, i64, &[&str], &str)] = &[
    (
        "demo.hana",
        "원목 4인 식탁",
        180_000,
        &["가구", "원목", "빈티지"],
        "참나무 원목 식탁입니다. 의자 4개 포함, 직거래 우선.",
    ),
    (
        "demo.hana",
        "빈티지 스탠드 조명",
        45_000,
        &["조명", "빈티지", "인테리어"],
        "70년대 스타일 황동 스탠드. 전구 포함.",
    ),
    ("demo.hana", "라탄 수납 바구니", 12_000, &["수납", "라탄", "인테리어"], "거실 수납용 라탄 바구니 두 개 세트."),
    ("demo.hana", "명품 가방 초특가", 30_000, &["가방", "명품"], "정품 보장! 선입금하시면 바로 보내드립니다."),
    (
        "demo.jun",
        "2인용 캠핑 텐트",
        89_000,
        &["캠핑", "텐트", "아웃도어"],
        "두 번 사용한 2인용 돔 텐트. 그라운드시트 포함.",
    ),
    (
        "demo.jun",
        "접이식 캠핑 의자",
        25_000,
        &["캠핑", "의자", "아웃도어"],
        "가벼운 알루미늄 캠핑 의자, 수납 가방 포함.",
    ),
    (
        "demo.jun",
        "로드 자전거 (54)",
        350_000,
        &["자전거", "운동", "아웃도어"],
        "프레임 54 사이즈, 105 구동계. 정비 완료.",
    ),
    ("demo.jun", "등산 배낭 45L", 60_000, &["등산", "아웃도어", "가방"], "45리터 등산 배낭, 레인커버 포함."),
    (
        "demo.seo",
        "기계식 키보드",
        75_000,
        &["키보드", "디지털", "게이밍"],
        "갈축 텐키리스 기계식 키보드. 키캡 여분 있음.",
    ),
    ("demo.seo", "27인치 모니터", 160_000, &["모니터", "디지털"], "27인치 QHD 모니터, 불량 화소 없음."),
    ("demo.seo", "무선 이어폰", 55_000, &["이어폰", "디지털", "음향"], "노이즈 캔슬링 무선 이어폰, 케이스 포함."),
    ("demo.seo", "태블릿 거치대", 15_000, &["디지털", "액세서리"], "각도 조절 알루미늄 태블릿 거치대."),
];

/// Who likes which demo products (indexes into [`DEMO_PRODUCTS`]): residents like furniture
/// and camping, club members digital things, so co-likes have a structure to explain.
const DEMO_LIKES: &[(&str, &[usize])] = &[
    ("demo.kim", &[0, 1, 4, 5]),
    ("demo.lee", &[0, 1, 2]),
    ("demo.park", &[4, 5, 6, 7]),
    ("demo.jiwoo", &[8, 9, 10]),
    ("demo.minji", &[8, 10, 1]),
    ("demo.hyun", &[4, 6, 8]),
    ("demo.sora", &[1, 2, 0]),
    ("demo.taeyang", &[9, 8, 11]),
];

/// The demo market's OPEN reports: (reporter, product index, reason, details).
const DEMO_REPORTS: &[(&str, usize, pb::ReportReason, &str)] = &[
    ("demo.kim", 3, pb::ReportReason::Fraud, "정품 인증 없이 선입금만 요구합니다."),
    ("demo.lee", 3, pb::ReportReason::Fraud, "가품으로 보입니다."),
    ("demo.park", 7, pb::ReportReason::Spam, "같은 글을 하루에 여러 번 올립니다."),
];

/// The demo market, once: sellers, [`DEMO_PRODUCTS`], likes and open reports; `true` when made now.
async fn market_demo(state: &AppState) -> crate::error::AppResult<bool> {
    let exists: bool = sqlx::query_scalar("select exists (select 1 from users where lower(handle) = 'demo.hana')")
        .fetch_one(&state.db)
        .await?;
    if exists {
        return Ok(false);
    }
    let mut sellers = Vec::new();
    for (handle, name) in [("demo.hana", "한하나"), ("demo.jun", "문준호"), ("demo.seo", "서예린")] {
        sellers.push((handle, account(state, handle, name).await?));
    }
    let mut products = Vec::new();
    for (n, (seller, name, price, tags, description)) in DEMO_PRODUCTS.iter().enumerate() {
        let caller = sellers
            .iter()
            .find(|(h, _)| h == seller)
            .map(|(_, c)| *c)
            .ok_or_else(|| crate::error::AppError::internal(format!("demo seller {seller} is missing")))?;
        // The request a client would send, validated like one.
        let req = pb::CreateProductRequest {
            name: (*name).into(),
            price: *price,
            description: (*description).into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            image_url: format!("https://images.example.com/maru-demo/{}.jpg", n + 1),
            sale_link: format!("https://store.example.com/{seller}/{}", n + 1),
            request_id: String::new(),
            media_id: String::new(),
        };
        let cmd = CreateProduct::try_from(req)?;
        products.push(market::create_product(state, &caller, cmd).await?.product.id);
    }
    for (handle, liked) in DEMO_LIKES {
        let who = existing(state, handle).await?;
        for &i in *liked {
            market::like_product(state, &who, products[i], None).await?;
        }
    }
    for (handle, i, reason, details) in DEMO_REPORTS {
        let who = existing(state, handle).await?;
        let req = pb::CreateReportRequest {
            target: Some(pb::ReportTarget { product_id: products[*i].to_string(), ..Default::default() }),
            reason: *reason as i32,
            details: (*details).into(),
            request_id: String::new(),
        };
        reports::create_report(state, &who, CreateReport::try_from(req)?).await?;
    }
    Ok(true)
}

/// A demo chat: (creator, other members, group title — empty for a DM, messages as
/// (author, text)).
pub type DemoChat = (&'static str, &'static [&'static str], &'static str, &'static [(&'static str, &'static str)]);

/// The demo chats.
pub const DEMO_CHATS: &[DemoChat] = &[
    (
        "demo.kim",
        &["demo.lee"],
        "",
        &[
            ("demo.kim", "이번 주 토요일 분리수거 같이 해요?"),
            ("demo.lee", "좋아요! 오전 10시에 101동 앞에서 봬요."),
            ("demo.kim", "네, 박스는 제가 챙겨 갈게요."),
        ],
    ),
    (
        "demo.kim",
        &["demo.hana"],
        "",
        &[("demo.kim", "원목 협탁 아직 판매 중인가요?"), ("demo.hana", "네, 판매 중이에요. 직거래도 가능합니다.")],
    ),
    (
        "demo.manager",
        &["demo.kim", "demo.lee", "demo.park"],
        "마루 101동 이웃",
        &[
            ("demo.manager", "101동 이웃 여러분, 다음 주 화요일에 승강기 점검이 있습니다."),
            ("demo.lee", "몇 시부터인가요?"),
            ("demo.manager", "오전 9시부터 12시까지입니다. 계단을 이용해 주세요."),
            ("demo.park", "알려주셔서 감사합니다!"),
        ],
    ),
];

/// The demo chats, once (when demo.kim has no room yet); `true` when made now.
async fn chat_demo(state: &AppState) -> crate::error::AppResult<bool> {
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from chat_members m join users u on u.id = m.user_id where lower(u.handle) = 'demo.kim')",
    )
    .fetch_one(&state.db)
    .await?;
    if exists {
        return Ok(false);
    }
    for (creator, others, title, messages) in DEMO_CHATS {
        let who = existing(state, creator).await?;
        let req = pb::CreateRoomRequest {
            member_handles: others.iter().map(|h| (*h).to_owned()).collect(),
            title: (*title).into(),
            request_id: String::new(),
        };
        let (room, _) = chat::create_room(state, &who, CreateRoom::try_from(req)?).await?;
        let mut last = 0;
        for (author, text) in *messages {
            let author = existing(state, author).await?;
            let req = pb::SendMessageRequest {
                room_id: room.room.id.to_string(),
                text: (*text).into(),
                request_id: String::new(),
            };
            last = chat::send_message(state, &author, SendMessage::try_from(req)?).await?.seq;
        }
        if !title.is_empty() {
            chat::mark_read(state, &existing(state, "demo.lee").await?, room.room.id, last).await?;
        }
    }
    Ok(true)
}

/// The demo complex's feed posts with photos: (author, text, the scenes of its photos).
pub const DEMO_PHOTO_POSTS: &[(&str, &str, &[Scene])] = &[
    ("demo.kim", "단지 앞 벚꽃길이 활짝 폈어요 🌸 산책하기 딱 좋네요.", &[Scene::Blossom, Scene::Dusk]),
    ("demo.lee", "놀이터 새 단장 끝났습니다. 아이들이 좋아하네요.", &[Scene::Playground]),
    ("demo.manager", "101동 외벽 도색 공사가 마무리되었습니다. 협조해 주셔서 감사합니다.", &[Scene::Dusk]),
];

/// A demo photo, drawn in code (no binary files in the repository).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    Blossom,
    Playground,
    Dusk,
}

impl Scene {
    /// A 960×720 JPEG: a sky gradient, apartment blocks with windows, and the scene's colours.
    pub fn jpeg(self) -> Vec<u8> {
        use image::{ImageEncoder as _, Rgb, RgbImage};
        let (w, h) = (960u32, 720u32);
        let (top, bottom, ground, accent): ([u8; 3], [u8; 3], [u8; 3], [u8; 3]) = match self {
            Scene::Blossom => ([150, 200, 245], [235, 240, 250], [120, 160, 90], [250, 180, 205]),
            Scene::Playground => ([110, 180, 240], [210, 235, 250], [90, 170, 90], [250, 200, 40]),
            Scene::Dusk => ([40, 40, 110], [240, 140, 90], [60, 60, 70], [255, 220, 120]),
        };
        let lerp = |a: u8, b: u8, t: f32| (f32::from(a) + (f32::from(b) - f32::from(a)) * t) as u8;
        let mut img = RgbImage::from_fn(w, h, |_, y| {
            let t = y as f32 / h as f32;
            Rgb([lerp(top[0], bottom[0], t), lerp(top[1], bottom[1], t), lerp(top[2], bottom[2], t)])
        });
        // Ground, then three blocks with a grid of windows (lit in the scene's accent).
        for y in h * 4 / 5..h {
            for x in 0..w {
                img.put_pixel(x, y, Rgb(ground));
            }
        }
        for (i, (x0, bw, bh)) in [(80u32, 200u32, 420u32), (360, 240, 500), (680, 200, 380)].into_iter().enumerate() {
            let y0 = h * 4 / 5 - bh;
            for y in y0..h * 4 / 5 {
                for x in x0..x0 + bw {
                    let window = (x - x0) % 40 >= 12 && (x - x0) % 40 < 30 && (y - y0) % 50 >= 15 && (y - y0) % 50 < 35;
                    let lit = window && !(x / 40 + y / 50 + i as u32).is_multiple_of(3);
                    let c = if lit {
                        accent
                    } else if window {
                        [70, 80, 95]
                    } else {
                        [200 - 20 * i as u8, 195, 185]
                    };
                    img.put_pixel(x, y, Rgb(c));
                }
            }
        }
        // Blossoms, balls or a moon: discs in the accent colour.
        let discs: &[(i32, i32, i32)] = match self {
            Scene::Blossom => &[(60, 600, 40), (180, 620, 50), (320, 590, 45), (620, 610, 55), (880, 600, 40)],
            Scene::Playground => &[(300, 650, 30), (520, 660, 25)],
            Scene::Dusk => &[(820, 120, 50)],
        };
        for &(cx, cy, r) in discs {
            for y in (cy - r).max(0)..(cy + r).min(h as i32) {
                for x in (cx - r).max(0)..(cx + r).min(w as i32) {
                    if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                        img.put_pixel(x as u32, y as u32, Rgb(accent));
                    }
                }
            }
        }
        let mut out = Vec::new();
        // Encoding an in-memory RGB image of a fixed size cannot fail.
        let _ = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).write_image(
            &img,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        );
        out
    }
}

/// A READY post photo of `who` with `bytes`: uploaded and processed through the media use
/// cases (the CLI has no background worker, so the queue is worked here; on a running server
/// its worker may take the job first, and this waits for it).
async fn demo_photo(
    state: &AppState,
    storage: &crate::media::storage::Storage,
    who: &Caller,
    bytes: Vec<u8>,
) -> crate::error::AppResult<Uuid> {
    use crate::media::{model::State, ops, store, worker};
    let cmd = ops::validate(
        &state.settings.media,
        pb::MediaPurpose::PostImage as i32,
        "image/jpeg",
        bytes.len() as i64,
        "",
        "",
    )?;
    let ticket = ops::create_upload(state, storage, who, cmd).await?;
    let m = store::get(&state.db, ticket.media_id)
        .await?
        .ok_or_else(|| crate::error::AppError::internal("the demo photo vanished"))?;
    storage.put(&m.object_key, bytes).await?;
    ops::complete_upload(state, storage, who, m.id).await?;
    for _ in 0..600 {
        worker::work_queued(state, storage).await?;
        let now = store::get(&state.db, m.id)
            .await?
            .ok_or_else(|| crate::error::AppError::internal("the demo photo vanished"))?;
        match now.state {
            State::Ready => return Ok(m.id),
            State::Failed => {
                return Err(crate::error::AppError::internal(format!(
                    "a demo photo failed processing: {}",
                    now.failure_reason.unwrap_or_default()
                )));
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    Err(crate::error::AppError::internal("a demo photo was not processed within a minute"))
}

/// [`DEMO_PHOTO_POSTS`] in the demo complex, once (false when demo.kim's photo post exists).
async fn photo_posts_demo(state: &AppState, community_id: Uuid) -> crate::error::AppResult<bool> {
    let exists: bool = sqlx::query_scalar(
        "select exists (select 1 from media m join users u on u.id = m.owner_id
                         where lower(u.handle) = 'demo.kim' and m.attached_kind = 'post')",
    )
    .fetch_one(&state.db)
    .await?;
    if exists {
        return Ok(false);
    }
    let storage = crate::media::storage::Storage::shared(&state.settings.media)
        .map_err(|e| crate::error::AppError::internal(format!("media store: {e:#}")))?;
    for (author, text, scenes) in DEMO_PHOTO_POSTS {
        let who = existing(state, author).await?;
        let mut media_ids = Vec::new();
        for scene in *scenes {
            media_ids.push(demo_photo(state, &storage, &who, scene.jpeg()).await?);
        }
        let cmd = CreatePost {
            community_id: Some(community_id),
            text: (*text).into(),
            tags: vec!["우리단지".into()],
            image_urls: vec![],
            media_ids,
            request_id: None,
        };
        crate::feed::ops::create_post(state, &who, cmd).await?;
    }
    Ok(true)
}
