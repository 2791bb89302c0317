//! Sports-club events: CRUD and validation, visibility by category, participants, geofenced
//! check-in boundaries, fees, settlement (exactly once, across restarts and replicas, never
//! partial), stats and penalties, the Naver geocoder against a local server, and the
//! authorization matrix. Time is a shared `TestClock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Utc};
use maru::clock::TestClock;
use maru::grpc::pb;
use prost_types::{FieldMask, Timestamp};
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::*;

const VENUE: (f64, f64) = (37.5665, 126.9780);

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, 0).unwrap()
}

/// `metres` due north of the venue (exact under haversine: R·Δφ).
fn north(metres: f64) -> (f64, f64) {
    (VENUE.0 + (metres / 6_371_000.0).to_degrees(), VENUE.1)
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

fn settings() -> maru::config::Settings {
    let mut s = test_settings();
    s.events.settle_interval_ms = 50;
    s
}

/// A sports club with a manager, members, an outsider and an admin; the clock at [`t0`].
struct Club {
    app: TestApp,
    clock: Arc<TestClock>,
    club: String,
    manager: TestUser,
    member: TestUser,
    outsider: TestUser,
    admin: TestUser,
}

impl Club {
    async fn new(pool: PgPool) -> Self {
        Self::with(pool, settings()).await
    }

    async fn with(pool: PgPool, s: maru::config::Settings) -> Self {
        let clock = TestClock::new(t0());
        let app = TestApp::spawn_clock(pool, s, clock.clone()).await;
        let club = app.community("SPORTS_CLUB", "FC 마루").await;
        let manager = app.user("coach").await;
        let member = app.user("striker").await;
        let outsider = app.user("outsider").await;
        let admin = app.admin_user("boss").await;
        app.add_member(&club, &manager, "APPROVED", "MANAGER").await;
        app.add_member(&club, &member, "APPROVED", "MEMBER").await;
        Self { app, clock, club, manager, member, outsider, admin }
    }

    /// Another APPROVED member.
    async fn join(&self, handle: &str) -> TestUser {
        let u = self.app.user(handle).await;
        self.app.add_member(&self.club, &u, "APPROVED", "MEMBER").await;
        u
    }

    fn create_req(&self, title: &str) -> pb::CreateEventRequest {
        pb::CreateEventRequest {
            community_id: self.club.clone(),
            title: title.into(),
            address: "서울특별시 중구 세종대로 110".into(),
            gender_category: pb::GenderCategory::All as i32,
            fee: 10_000,
            starts_at: Some(ts(t0() + Duration::hours(2))),
            ends_at: Some(ts(t0() + Duration::hours(4))),
            description: "주말 경기".into(),
            latitude: Some(VENUE.0),
            longitude: Some(VENUE.1),
            request_id: String::new(),
        }
    }

    /// An event (starts t0+2h, ends t0+4h, fee 10,000) with `participants`.
    async fn event(&self, participants: &[&TestUser]) -> String {
        let e = self
            .app
            .events()
            .create_event(self.manager.req(self.create_req("정기 경기")))
            .await
            .unwrap()
            .into_inner()
            .event
            .unwrap();
        for p in participants {
            self.add(&e.id, p).await;
        }
        e.id
    }

    async fn add(&self, event: &str, user: &TestUser) {
        self.app
            .events()
            .add_participant(self.manager.req(pb::AddParticipantRequest {
                event_id: event.into(),
                user_id: user.id.clone(),
                ..Default::default()
            }))
            .await
            .unwrap();
    }

    async fn check_in(&self, who: &TestUser, event: &str, at: (f64, f64)) -> Result<pb::CheckInResponse, Status> {
        self.app
            .events()
            .check_in(who.req(pb::CheckInRequest {
                event_id: event.into(),
                latitude: at.0,
                longitude: at.1,
                ..Default::default()
            }))
            .await
            .map(|r| r.into_inner())
    }

    async fn penalties(&self, event: &str) -> Vec<(String, String, i32)> {
        let mut rows: Vec<(String, String, i32)> = sqlx::query_as(
            "select user_id::text, reason, points from event_penalties where event_id = $1 order by user_id, reason",
        )
        .bind(Uuid::parse_str(event).unwrap())
        .fetch_all(&self.app.state.db)
        .await
        .unwrap();
        rows.sort();
        rows
    }

    async fn settled(&self, event: &str) -> bool {
        sqlx::query_scalar::<_, Option<DateTime<Utc>>>("select settled_at from events where id = $1")
            .bind(Uuid::parse_str(event).unwrap())
            .fetch_one(&self.app.state.db)
            .await
            .unwrap()
            .is_some()
    }

    async fn wait_settled(&self, event: &str) {
        for _ in 0..200 {
            if self.settled(event).await {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(25)).await;
        }
        panic!("event {event} was never settled");
    }
}

// ---- CRUD and validation

#[sqlx::test]
async fn create_get_list_update_delete(pool: PgPool) {
    let c = Club::new(pool).await;
    let mut api = c.app.events();
    let mut req = c.create_req("정기 경기");
    req.request_id = "create-1".into();
    let e = api.create_event(c.manager.req(req.clone())).await.unwrap().into_inner().event.unwrap();
    assert_eq!((e.title.as_str(), e.fee, e.latitude, e.longitude), ("정기 경기", 10_000, VENUE.0, VENUE.1));
    assert_eq!(e.gender_category, pb::GenderCategory::All as i32);
    // The same request id replays the same event.
    let again = api.create_event(c.manager.req(req)).await.unwrap().into_inner().event.unwrap();
    assert_eq!(again.id, e.id);

    // Members read it; their participation shows once added.
    let got = api.get_event(c.member.req(pb::GetEventRequest { event_id: e.id.clone() })).await.unwrap();
    assert!(got.into_inner().event.unwrap().my_participation.is_none());
    c.add(&e.id, &c.member).await;
    let got = api.get_event(c.member.req(pb::GetEventRequest { event_id: e.id.clone() })).await.unwrap();
    let got = got.into_inner().event.unwrap();
    let mine = got.my_participation.unwrap();
    assert_eq!((mine.attendance, mine.fee_status), (pb::Attendance::Absent as i32, pb::FeeStatus::NotPaid as i32));
    assert_eq!(got.participant_count, 1);

    // List by time range, paged.
    for i in 0..3 {
        let mut r = c.create_req(&format!("경기 {i}"));
        r.starts_at = Some(ts(t0() + Duration::days(i + 1)));
        r.ends_at = Some(ts(t0() + Duration::days(i + 1) + Duration::hours(2)));
        api.create_event(c.manager.req(r)).await.unwrap();
    }
    let list = |from: Option<DateTime<Utc>>, token: String, size: i32| pb::ListEventsRequest {
        community_id: c.club.clone(),
        from: from.map(ts),
        to: None,
        page_size: size,
        page_token: token,
    };
    let p1 = api.list_events(c.member.req(list(None, String::new(), 3))).await.unwrap().into_inner();
    assert_eq!(p1.events.len(), 3);
    assert_eq!(p1.events[0].id, e.id);
    let p2 = api.list_events(c.member.req(list(None, p1.next_page_token, 3))).await.unwrap().into_inner();
    assert_eq!((p2.events.len(), p2.next_page_token.as_str()), (1, ""));
    let later = api.list_events(c.member.req(list(Some(t0() + Duration::days(2)), String::new(), 0))).await.unwrap();
    assert_eq!(later.into_inner().events.len(), 2);

    // Update by mask.
    let upd = api
        .update_event(c.manager.req(pb::UpdateEventRequest {
            event_id: e.id.clone(),
            title: "바뀐 경기".into(),
            fee: 0,
            latitude: Some(37.0),
            longitude: Some(127.0),
            update_mask: mask(&["title", "fee", "location"]),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!((upd.title.as_str(), upd.fee, upd.latitude, upd.longitude), ("바뀐 경기", 0, 37.0, 127.0));
    assert_eq!(upd.description, "주말 경기");

    // Ends before it starts after the update: INVALID_ARGUMENT, not INTERNAL.
    let r = api
        .update_event(c.manager.req(pb::UpdateEventRequest {
            event_id: e.id.clone(),
            ends_at: Some(ts(t0())),
            update_mask: mask(&["ends_at"]),
            ..Default::default()
        }))
        .await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["ends_at"]);

    api.delete_event(c.manager.req(pb::DeleteEventRequest { event_id: e.id.clone() })).await.unwrap();
    let r = api.get_event(c.manager.req(pb::GetEventRequest { event_id: e.id.clone() })).await;
    assert_err(r, Code::NotFound, "EVENT_NOT_FOUND");
    let r = api.delete_event(c.manager.req(pb::DeleteEventRequest { event_id: e.id })).await;
    assert_err(r, Code::NotFound, "EVENT_NOT_FOUND");
}

#[sqlx::test]
async fn invalid_input_names_every_field(pool: PgPool) {
    let c = Club::new(pool).await;
    let mut api = c.app.events();
    let r = api
        .create_event(c.manager.req(pb::CreateEventRequest {
            community_id: "nope".into(),
            title: " ".into(),
            address: String::new(),
            gender_category: 9,
            fee: -1,
            starts_at: None,
            ends_at: Some(Timestamp { seconds: 0, nanos: -5 }),
            description: "x".repeat(2001),
            latitude: Some(91.0),
            longitude: Some(0.0),
            request_id: "bad id!".into(),
        }))
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violations(&s),
        [
            "community_id",
            "title",
            "address",
            "gender_category",
            "fee",
            "starts_at",
            "ends_at",
            "description",
            "latitude",
            "request_id"
        ]
    );

    let mut req = c.create_req("x");
    req.ends_at = req.starts_at;
    req.longitude = None;
    let s = assert_err(api.create_event(c.manager.req(req)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["ends_at", "longitude"]);

    // Without geocoding configured, coordinates are required.
    let mut req = c.create_req("x");
    req.latitude = None;
    req.longitude = None;
    let s = assert_err(api.create_event(c.manager.req(req)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["latitude", "longitude"]);

    let s = assert_err(
        api.update_event(c.manager.req(pb::UpdateEventRequest {
            event_id: String::new(),
            update_mask: mask(&["nope"]),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["event_id", "update_mask"]);

    let e = c.event(&[&c.member]).await;
    let s = assert_err(c.check_in(&c.member, &e, (f64::NAN, 200.0)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["latitude"]);
    let s = assert_err(
        api.confirm_fee(c.manager.req(pb::ConfirmFeeRequest { event_id: "x".into(), user_id: String::new() })).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["event_id", "user_id"]);
    let s = assert_err(
        api.set_member_gender(c.manager.req(pb::SetMemberGenderRequest {
            community_id: c.club.clone(),
            user_id: c.member.id.clone(),
            gender: pb::GenderCategory::All as i32,
        }))
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["gender"]);
    let r = api
        .list_events(c.member.req(pb::ListEventsRequest {
            community_id: c.club.clone(),
            page_token: "forged".into(),
            ..Default::default()
        }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");

    // Events belong to sports clubs only.
    let apt = c.app.community("APARTMENT", "아파트").await;
    c.app.add_member(&apt, &c.manager, "APPROVED", "MANAGER").await;
    let mut req = c.create_req("x");
    req.community_id = apt;
    assert_err(api.create_event(c.manager.req(req)).await, Code::FailedPrecondition, "NOT_SPORTS_CLUB");
}

// ---- categories and participants

#[sqlx::test]
async fn categories_decide_visibility_and_lock_once_joined(pool: PgPool) {
    let c = Club::new(pool).await;
    let mut api = c.app.events();
    let woman = c.join("keeper").await;
    let gender = |u: &TestUser, g: pb::GenderCategory| pb::SetMemberGenderRequest {
        community_id: c.club.clone(),
        user_id: u.id.clone(),
        gender: g as i32,
    };
    api.set_member_gender(c.manager.req(gender(&woman, pb::GenderCategory::Female))).await.unwrap();
    api.set_member_gender(c.manager.req(gender(&c.member, pb::GenderCategory::Male))).await.unwrap();
    let r = api.set_member_gender(c.manager.req(gender(&c.outsider, pb::GenderCategory::Male))).await;
    assert_err(r, Code::NotFound, "MEMBER_NOT_FOUND");

    let mut req = c.create_req("여자부");
    req.gender_category = pb::GenderCategory::Female as i32;
    let fem = api.create_event(c.manager.req(req)).await.unwrap().into_inner().event.unwrap().id;
    let all = c.event(&[]).await;

    let list = |u: &TestUser| u.req(pb::ListEventsRequest { community_id: c.club.clone(), ..Default::default() });
    let ids = |r: pb::ListEventsResponse| r.events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(api.list_events(list(&c.member)).await.unwrap().into_inner()), std::slice::from_ref(&all));
    assert_eq!(ids(api.list_events(list(&woman)).await.unwrap().into_inner()).len(), 2);
    assert_eq!(ids(api.list_events(list(&c.manager)).await.unwrap().into_inner()).len(), 2);
    let r = api.get_event(c.member.req(pb::GetEventRequest { event_id: fem.clone() })).await;
    assert_err(r, Code::NotFound, "EVENT_NOT_FOUND");

    // Adding outside the category, or a non-member, is refused.
    let add = |u: &TestUser, e: &str| pb::AddParticipantRequest {
        event_id: e.into(),
        user_id: u.id.clone(),
        ..Default::default()
    };
    let r = api.add_participant(c.manager.req(add(&c.member, &fem))).await;
    assert_err(r, Code::FailedPrecondition, "CATEGORY_MISMATCH");
    let r = api.add_participant(c.manager.req(add(&c.outsider, &fem))).await;
    assert_err(r, Code::NotFound, "MEMBER_NOT_FOUND");

    // Non-participants of the category, then the category locks once someone joined.
    let non = api
        .list_non_participants(
            c.manager.req(pb::ListNonParticipantsRequest { event_id: fem.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(non.members.iter().map(|m| m.handle.as_str()).collect::<Vec<_>>(), ["keeper"]);
    let change = |e: &str, g: pb::GenderCategory| pb::UpdateEventRequest {
        event_id: e.into(),
        gender_category: g as i32,
        update_mask: mask(&["gender_category"]),
        ..Default::default()
    };
    api.update_event(c.manager.req(change(&fem, pb::GenderCategory::Male))).await.unwrap();
    api.update_event(c.manager.req(change(&fem, pb::GenderCategory::Female))).await.unwrap();
    api.add_participant(c.manager.req(add(&woman, &fem))).await.unwrap();
    let r = api.update_event(c.manager.req(change(&fem, pb::GenderCategory::Male))).await;
    assert_err(r, Code::FailedPrecondition, "CATEGORY_LOCKED");
    // Unchanged category in the mask is fine.
    api.update_event(c.manager.req(change(&fem, pb::GenderCategory::Female))).await.unwrap();
}

#[sqlx::test]
async fn participants_are_added_once_listed_and_removed(pool: PgPool) {
    let c = Club::new(pool).await;
    let mut api = c.app.events();
    let second = c.join("winger").await;
    let e = c.event(&[&c.member]).await;
    let add =
        |u: &TestUser| pb::AddParticipantRequest { event_id: e.clone(), user_id: u.id.clone(), ..Default::default() };
    assert_err(api.add_participant(c.manager.req(add(&c.member))).await, Code::AlreadyExists, "ALREADY_PARTICIPANT");
    let p = api.add_participant(c.manager.req(add(&second))).await.unwrap().into_inner().participant.unwrap();
    assert_eq!(p.handle, "winger");

    let page = |token: String| pb::ListParticipantsRequest { event_id: e.clone(), page_size: 1, page_token: token };
    let p1 = api.list_participants(c.member.req(page(String::new()))).await.unwrap().into_inner();
    let p2 = api.list_participants(c.member.req(page(p1.next_page_token.clone()))).await.unwrap().into_inner();
    let handles: Vec<_> = p1.participants.iter().chain(&p2.participants).map(|p| p.handle.clone()).collect();
    assert_eq!(handles, ["striker", "winger"]);
    let non = api
        .list_non_participants(
            c.manager.req(pb::ListNonParticipantsRequest { event_id: e.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(non.members.iter().map(|m| m.handle.as_str()).collect::<Vec<_>>(), ["coach"]);

    let rm = |u: &TestUser| pb::RemoveParticipantRequest { event_id: e.clone(), user_id: u.id.clone() };
    api.remove_participant(c.manager.req(rm(&second))).await.unwrap();
    assert_err(api.remove_participant(c.manager.req(rm(&second))).await, Code::NotFound, "PARTICIPANT_NOT_FOUND");
}

// ---- check-in

#[sqlx::test]
async fn check_in_boundaries(pool: PgPool) {
    let c = Club::new(pool).await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(c.join(&format!("player{i}")).await);
    }
    let refs: Vec<&TestUser> = users.iter().chain([&c.member]).collect();
    let e = c.event(&refs).await;
    let start = t0() + Duration::hours(2);

    // 61 minutes before the start: not open yet (the window decides before the distance).
    c.clock.set(start - Duration::minutes(61));
    let s = assert_err(c.check_in(&users[0], &e, VENUE).await, Code::FailedPrecondition, "NOT_OPEN_YET");
    assert!(s.get_details_error_info().unwrap().metadata.contains_key("opens_at"));

    // 59 minutes before: open; 401 m is too far with the distance in metadata, 399 m is fine.
    c.clock.set(start - Duration::minutes(59));
    let s = assert_err(c.check_in(&users[0], &e, north(401.0)).await, Code::FailedPrecondition, "TOO_FAR");
    let meta = s.get_details_error_info().unwrap().metadata;
    let d: f64 = meta["distance_m"].parse().unwrap();
    assert!((d - 401.0).abs() < 0.1, "{d}");
    assert_eq!(meta["radius_m"], "400");
    let ok = c.check_in(&users[0], &e, north(399.0)).await.unwrap();
    assert_eq!(ok.attendance, pb::Attendance::Attend as i32);
    assert!((ok.distance_m - 399.0).abs() < 0.1);
    // A second check-in.
    assert_err(c.check_in(&users[0], &e, VENUE).await, Code::AlreadyExists, "ALREADY_CHECKED_IN");

    c.clock.set(start + Duration::minutes(19));
    assert_eq!(c.check_in(&users[1], &e, VENUE).await.unwrap().attendance, pb::Attendance::Attend as i32);
    c.clock.set(start + Duration::minutes(21));
    assert_eq!(c.check_in(&users[2], &e, VENUE).await.unwrap().attendance, pb::Attendance::Late as i32);
    c.clock.set(start + Duration::hours(2) - Duration::seconds(1));
    assert_eq!(c.check_in(&users[3], &e, VENUE).await.unwrap().attendance, pb::Attendance::Late as i32);
    c.clock.set(start + Duration::hours(2));
    assert_err(c.check_in(&users[4], &e, VENUE).await, Code::FailedPrecondition, "EVENT_ENDED");

    // Not a participant; not a member at all.
    let extra = c.join("bench").await;
    c.clock.set(start);
    assert_err(c.check_in(&extra, &e, VENUE).await, Code::FailedPrecondition, "NOT_PARTICIPANT");
    assert_err(c.check_in(&c.outsider, &e, VENUE).await, Code::NotFound, "EVENT_NOT_FOUND");

    // The participant list shows the outcome.
    let list = c
        .app
        .events()
        .list_participants(c.member.req(pb::ListParticipantsRequest { event_id: e.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    let late = list.participants.iter().filter(|p| p.attendance == pb::Attendance::Late as i32).count();
    let attend = list.participants.iter().filter(|p| p.attendance == pb::Attendance::Attend as i32).count();
    assert_eq!((attend, late), (2, 2));
    let metrics = c.app.metrics().await;
    for r in ["too_far", "not_open_yet", "event_ended", "already_checked_in", "attend", "late"] {
        assert!(metrics.contains(&format!("maru_event_check_ins_total{{result=\"{r}\"}}")), "{r}");
    }
}

/// docs/events.md's order: the end (or the settlement) is decided before "already checked in",
/// and a refused distance is never shown rounded down to the radius.
#[sqlx::test]
async fn check_in_refusals_follow_the_documented_order(pool: PgPool) {
    let c = Club::new(pool).await;
    let other = c.join("keeper").await;
    let e = c.event(&[&c.member, &other]).await;
    let start = t0() + Duration::hours(2);
    c.clock.set(start);

    // 400.05 m: TOO_FAR, shown as 400.1 m (it used to read "you are 400 m …; … 400 m or less").
    let s = assert_err(c.check_in(&other, &e, north(400.05)).await, Code::FailedPrecondition, "TOO_FAR");
    assert_eq!(s.message(), "you are 400.1 m from the venue; check-in needs 400 m or less");
    let meta = s.get_details_error_info().unwrap().metadata;
    assert_eq!((meta["distance_m"].as_str(), meta["radius_m"].as_str()), ("400.1", "400"));

    assert_eq!(c.check_in(&c.member, &e, VENUE).await.unwrap().attendance, pb::Attendance::Attend as i32);
    // In the window: too far is decided before "already checked in", which follows.
    assert_err(c.check_in(&c.member, &e, north(5_000.0)).await, Code::FailedPrecondition, "TOO_FAR");
    assert_err(c.check_in(&c.member, &e, VENUE).await, Code::AlreadyExists, "ALREADY_CHECKED_IN");

    // After the end: EVENT_ENDED for the participant who checked in too, before and after settlement.
    c.clock.set(start + Duration::hours(2));
    assert_err(c.check_in(&c.member, &e, VENUE).await, Code::FailedPrecondition, "EVENT_ENDED");
    assert_err(c.check_in(&other, &e, VENUE).await, Code::FailedPrecondition, "EVENT_ENDED");
    c.wait_settled(&e).await;
    assert_err(c.check_in(&c.member, &e, VENUE).await, Code::FailedPrecondition, "EVENT_ENDED");
}

#[sqlx::test]
async fn fifty_concurrent_check_ins_make_one_row(pool: PgPool) {
    let c = Club::new(pool).await;
    let e = c.event(&[&c.member]).await;
    c.clock.set(t0() + Duration::hours(2));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut api = c.app.events();
        let req = c.member.req(pb::CheckInRequest {
            event_id: e.clone(),
            latitude: VENUE.0,
            longitude: VENUE.1,
            ..Default::default()
        });
        tasks.push(tokio::spawn(async move { api.check_in(req).await }));
    }
    let (mut ok, mut dup) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!((s.code(), reason(&s).as_str()), (Code::AlreadyExists, "ALREADY_CHECKED_IN"), "{s:?}");
                dup += 1;
            }
        }
    }
    assert_eq!((ok, dup), (1, 49));
    let rows: i64 =
        sqlx::query_scalar("select count(*) from event_check_ins").fetch_one(&c.app.state.db).await.unwrap();
    assert_eq!(rows, 1);
}

#[sqlx::test]
async fn managers_force_attendance(pool: PgPool) {
    let c = Club::new(pool).await;
    let e = c.event(&[&c.member]).await;
    let mut api = c.app.events();
    c.clock.set(t0() + Duration::hours(3));
    assert_eq!(c.check_in(&c.member, &e, VENUE).await.unwrap().attendance, pb::Attendance::Late as i32);
    let force = |u: &TestUser| pb::ForceAttendRequest { event_id: e.clone(), user_id: u.id.clone() };
    let p = api.force_attend(c.manager.req(force(&c.member))).await.unwrap().into_inner().participant.unwrap();
    assert_eq!(p.attendance, pb::Attendance::Attend as i32);
    assert_err(api.force_attend(c.manager.req(force(&c.outsider))).await, Code::NotFound, "PARTICIPANT_NOT_FOUND");
    assert_err(api.force_attend(c.member.req(force(&c.member))).await, Code::PermissionDenied, "MANAGER_REQUIRED");
    // After settlement nothing changes any more.
    c.clock.set(t0() + Duration::hours(5));
    c.wait_settled(&e).await;
    assert_err(api.force_attend(c.manager.req(force(&c.member))).await, Code::FailedPrecondition, "EVENT_SETTLED");
}

// ---- fees

#[sqlx::test]
async fn fee_state_machine(pool: PgPool) {
    let c = Club::new(pool).await;
    let e = c.event(&[&c.member]).await;
    let mut api = c.app.events();
    let report = || c.member.req(pb::ReportFeePaidRequest { event_id: e.clone(), ..Default::default() });
    let who = pb::ConfirmFeeRequest { event_id: e.clone(), user_id: c.member.id.clone() };
    let reject = pb::RejectFeeRequest { event_id: e.clone(), user_id: c.member.id.clone() };

    assert_err(api.confirm_fee(c.manager.req(who.clone())).await, Code::FailedPrecondition, "FEE_NOT_PENDING");
    assert_err(api.reject_fee(c.manager.req(reject.clone())).await, Code::FailedPrecondition, "FEE_NOT_PENDING");
    assert_eq!(api.report_fee_paid(report()).await.unwrap().into_inner().fee_status, pb::FeeStatus::Pending as i32);
    assert_err(api.report_fee_paid(report()).await, Code::FailedPrecondition, "FEE_ALREADY_REPORTED");

    let pending = api
        .list_pending_fees(
            c.manager.req(pb::ListPendingFeesRequest { community_id: c.club.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.fees.len(), 1);
    assert_eq!((pending.fees[0].handle.as_str(), pending.fees[0].fee), ("striker", 10_000));

    let r = api.reject_fee(c.manager.req(reject.clone())).await.unwrap().into_inner();
    assert_eq!(r.fee_status, pb::FeeStatus::NotPaid as i32);
    api.report_fee_paid(report()).await.unwrap();
    let r = api.confirm_fee(c.manager.req(who.clone())).await.unwrap().into_inner();
    assert_eq!(r.fee_status, pb::FeeStatus::Paid as i32);
    assert_err(api.confirm_fee(c.manager.req(who.clone())).await, Code::FailedPrecondition, "FEE_ALREADY_PAID");
    assert_err(api.reject_fee(c.manager.req(reject)).await, Code::FailedPrecondition, "FEE_ALREADY_PAID");
    assert_err(api.report_fee_paid(report()).await, Code::FailedPrecondition, "FEE_ALREADY_PAID");
    assert_err(api.confirm_fee(c.member.req(who)).await, Code::PermissionDenied, "MANAGER_REQUIRED");

    // Not a participant; an event without a fee.
    let other = c.join("sub").await;
    let r =
        api.report_fee_paid(other.req(pb::ReportFeePaidRequest { event_id: e.clone(), ..Default::default() })).await;
    assert_err(r, Code::FailedPrecondition, "NOT_PARTICIPANT");
    let r =
        api.confirm_fee(c.manager.req(pb::ConfirmFeeRequest { event_id: e.clone(), user_id: other.id.clone() })).await;
    assert_err(r, Code::NotFound, "PARTICIPANT_NOT_FOUND");
    let mut free = c.create_req("무료");
    free.fee = 0;
    let free = api.create_event(c.manager.req(free)).await.unwrap().into_inner().event.unwrap().id;
    c.add(&free, &c.member).await;
    let r = api.report_fee_paid(c.member.req(pb::ReportFeePaidRequest { event_id: free, ..Default::default() })).await;
    assert_err(r, Code::FailedPrecondition, "NO_FEE");
    let m = c.app.metrics().await;
    for to in ["pending", "paid", "not_paid"] {
        assert!(m.contains(&format!("maru_event_fee_transitions_total{{to=\"{to}\"}}")), "{to}");
    }
}

#[sqlx::test]
async fn fifty_concurrent_confirmations_make_one_transition(pool: PgPool) {
    let c = Club::new(pool).await;
    let e = c.event(&[&c.member]).await;
    c.app
        .events()
        .report_fee_paid(c.member.req(pb::ReportFeePaidRequest { event_id: e.clone(), ..Default::default() }))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut api = c.app.events();
        let req = c.manager.req(pb::ConfirmFeeRequest { event_id: e.clone(), user_id: c.member.id.clone() });
        tasks.push(tokio::spawn(async move { api.confirm_fee(req).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!((s.code(), reason(&s).as_str()), (Code::FailedPrecondition, "FEE_ALREADY_PAID"), "{s:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((ok, refused), (1, 49));
}

// ---- settlement

/// member: LATE + NOT_PAID; absent: ABSENT; payer: ATTEND + PENDING (no penalty); paid: ATTEND + PAID.
async fn scenario(c: &Club) -> (String, [TestUser; 3]) {
    let absent = c.join("absentee").await;
    let pender = c.join("pender").await;
    let payer = c.join("payer").await;
    let e = c.event(&[&c.member, &absent, &pender, &payer]).await;
    let mut api = c.app.events();
    c.clock.set(t0() + Duration::hours(2));
    c.check_in(&pender, &e, VENUE).await.unwrap();
    c.check_in(&payer, &e, VENUE).await.unwrap();
    c.clock.set(t0() + Duration::hours(3));
    c.check_in(&c.member, &e, VENUE).await.unwrap();
    api.report_fee_paid(pender.req(pb::ReportFeePaidRequest { event_id: e.clone(), ..Default::default() }))
        .await
        .unwrap();
    api.report_fee_paid(payer.req(pb::ReportFeePaidRequest { event_id: e.clone(), ..Default::default() }))
        .await
        .unwrap();
    api.confirm_fee(c.manager.req(pb::ConfirmFeeRequest { event_id: e.clone(), user_id: payer.id.clone() }))
        .await
        .unwrap();
    (e, [absent, pender, payer])
}

fn expected(c: &Club, absent: &TestUser) -> Vec<(String, String, i32)> {
    let mut v = vec![
        (c.member.id.clone(), "LATE".to_string(), 1),
        (c.member.id.clone(), "NOT_PAID".to_string(), 1),
        (absent.id.clone(), "ABSENT".to_string(), 3),
    ];
    v.sort();
    v
}

#[sqlx::test]
async fn an_ended_event_is_settled_once_with_stats_and_penalties(pool: PgPool) {
    let c = Club::new(pool).await;
    let (e, [absent, ..]) = scenario(&c).await;
    assert!(!c.settled(&e).await);
    c.clock.set(t0() + Duration::hours(4));
    c.wait_settled(&e).await;
    assert_eq!(c.penalties(&e).await, expected(&c, &absent));
    // Settling again does nothing.
    assert!(maru::events::settle::settle_due(&c.app.state).await.unwrap().is_empty());
    assert_eq!(c.penalties(&e).await.len(), 3);

    let mut api = c.app.events();
    let ev = api.get_event(c.member.req(pb::GetEventRequest { event_id: e.clone() })).await.unwrap();
    assert!(ev.into_inner().event.unwrap().settled_at.is_some());
    let stats = |u: &TestUser, who: &TestUser| {
        who.req(pb::GetMemberStatsRequest { community_id: c.club.clone(), user_id: u.id.clone() })
    };
    let s = api.get_member_stats(stats(&c.member, &c.member)).await.unwrap().into_inner().stats.unwrap();
    assert_eq!((s.total, s.joined, s.attended, s.late, s.absent, s.penalty_points), (1, 1, 0, 1, 0, 2));
    let s = api.get_member_stats(stats(&absent, &c.manager)).await.unwrap().into_inner().stats.unwrap();
    assert_eq!((s.joined, s.absent, s.penalty_points), (1, 1, 3));
    assert_err(api.get_member_stats(stats(&absent, &c.member)).await, Code::PermissionDenied, "MANAGER_REQUIRED");
    let r = api.get_member_stats(stats(&c.outsider, &c.manager)).await;
    assert_err(r, Code::NotFound, "MEMBER_NOT_FOUND");

    let all = api
        .list_member_stats(
            c.manager.req(pb::ListMemberStatsRequest { community_id: c.club.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.stats.len(), 5);
    assert_eq!(all.stats.iter().map(|s| s.penalty_points).sum::<i32>(), 5);
    // The manager was not a participant: total 1, joined 0.
    let coach = all.stats.iter().find(|s| s.handle == "coach").unwrap();
    assert_eq!((coach.total, coach.joined), (1, 0));

    let pens = |who: &TestUser, user: &str| {
        who.req(pb::ListPenaltiesRequest { community_id: c.club.clone(), user_id: user.into(), ..Default::default() })
    };
    assert_eq!(api.list_penalties(pens(&c.manager, "")).await.unwrap().into_inner().penalties.len(), 3);
    assert_eq!(api.list_penalties(pens(&c.manager, &absent.id)).await.unwrap().into_inner().penalties.len(), 1);
    let mine = api.list_penalties(pens(&c.member, "")).await.unwrap().into_inner().penalties;
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|p| p.user_id == c.member.id));
    assert_err(api.list_penalties(pens(&c.member, &absent.id)).await, Code::PermissionDenied, "MANAGER_REQUIRED");

    let m = c.app.metrics().await;
    assert!(m.contains("maru_event_settlements_total"));
    assert!(m.contains("maru_event_settlement_lag_seconds"));
    for r in ["absent", "late", "not_paid"] {
        assert!(m.contains(&format!("maru_event_penalties_total{{reason=\"{r}\"}}")), "{r}");
    }
    // The settled event no longer takes participants.
    let r = api
        .add_participant(c.manager.req(pb::AddParticipantRequest {
            event_id: e,
            user_id: c.manager.id.clone(),
            ..Default::default()
        }))
        .await;
    assert_err(r, Code::FailedPrecondition, "EVENT_SETTLED");
}

#[sqlx::test]
async fn an_event_that_ended_while_down_is_settled_on_start(pool: PgPool) {
    let c = Club::new(pool.clone()).await;
    let (e, [absent, ..]) = scenario(&c).await;
    c.app.shutdown.shutdown();
    let _ = c.app.task.await;
    // Time passes with no server running.
    c.clock.set(t0() + Duration::days(1));
    let clock: Arc<dyn maru::clock::Clock> = c.clock.clone();
    let mut s = settings();
    s.events.settle_interval_ms = 3_600_000; // only the first, immediate tick
    let app = TestApp::spawn_clock(pool, s, clock).await;
    let c2 = Club { app, ..c };
    c2.wait_settled(&e).await;
    assert_eq!(c2.penalties(&e).await, expected(&c2, &absent));
}

#[sqlx::test]
async fn two_replicas_settle_each_event_exactly_once(pool: PgPool) {
    let c = Club::new(pool.clone()).await;
    let clock: Arc<dyn maru::clock::Clock> = c.clock.clone();
    let replica = TestApp::spawn_clock(pool.clone(), settings(), clock).await;
    let (e, [absent, ..]) = scenario(&c).await;
    let mut more = Vec::new();
    for i in 0..5 {
        more.push(c.event(&[&absent]).await);
        let _ = i;
    }
    // Both replicas' jobs and explicit calls race for the same ended events.
    c.clock.set(t0() + Duration::hours(4));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let state = if i % 2 == 0 { c.app.state.clone() } else { replica.state.clone() };
        tasks.push(tokio::spawn(async move { maru::events::settle::settle_due(&state).await.unwrap().len() }));
    }
    let mut settled_by_calls = 0;
    for t in tasks {
        settled_by_calls += t.await.unwrap();
    }
    for id in more.iter().chain([&e]) {
        c.wait_settled(id).await;
    }
    assert!(settled_by_calls <= 6);
    assert_eq!(c.penalties(&e).await, expected(&c, &absent));
    let total: i64 = sqlx::query_scalar("select count(*) from event_penalties").fetch_one(&pool).await.unwrap();
    assert_eq!(total, 3 + 5, "one ABSENT per extra event, nothing twice");
    let points: i64 = sqlx::query_scalar("select sum(points) from event_penalties where user_id = $1")
        .bind(Uuid::parse_str(&absent.id).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(points, 3 * 6);
}

#[sqlx::test]
async fn a_failing_settlement_leaves_nothing_then_completes(pool: PgPool) {
    let c = Club::new(pool.clone()).await;
    let (e, [absent, ..]) = scenario(&c).await;
    // Another event ending at the same time, whose settlement does not fail.
    let other = c.event(&[&absent]).await;
    // Make the insert of the member's LATE row fail halfway through the settlement.
    sqlx::raw_sql(
        "create function fail_penalty() returns trigger language plpgsql as $$
         begin
           if new.reason = 'LATE' then raise exception 'injected failure'; end if;
           return new;
         end $$;
         create trigger fail_penalty before insert on event_penalties
           for each row execute function fail_penalty();",
    )
    .execute(&pool)
    .await
    .unwrap();
    c.clock.set(t0() + Duration::hours(5));
    assert!(maru::events::settle::settle_due(&c.app.state).await.is_err());
    tokio::time::sleep(StdDuration::from_millis(200)).await; // the job tries too
    assert!(!c.settled(&e).await);
    assert!(c.penalties(&e).await.is_empty(), "no partial settlement");
    // The failing event does not hold up the others.
    c.wait_settled(&other).await;
    assert_eq!(c.penalties(&other).await.len(), 1);

    sqlx::raw_sql("drop trigger fail_penalty on event_penalties").execute(&pool).await.unwrap();
    c.wait_settled(&e).await;
    assert_eq!(c.penalties(&e).await, expected(&c, &absent));
}

// ---- geocoding

struct Naver {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// A local server speaking the Naver geocoding API: `one` → one match, `two` → two, `none`
/// → none, `boom` → HTTP 500; anything else 401 without the right keys.
async fn naver() -> Naver {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let hits = Arc::new(AtomicUsize::new(0));
    async fn geocode(State(hits): State<Arc<AtomicUsize>>, headers: HeaderMap, uri: Uri) -> axum::response::Response {
        hits.fetch_add(1, Ordering::SeqCst);
        let key_ok = headers.get("X-NCP-APIGW-API-KEY-ID").is_some_and(|v| v == "naver-id")
            && headers.get("X-NCP-APIGW-API-KEY").is_some_and(|v| v == "naver-secret");
        if !key_ok {
            return (StatusCode::UNAUTHORIZED, r#"{"error":{"errorCode":"200","message":"Authentication Failed"}}"#)
                .into_response();
        }
        let addr = |x: &str, y: &str| {
            serde_json::json!({"roadAddress": "서울특별시 중구 세종대로 110", "jibunAddress": "", "englishAddress": "",
                "addressElements": [], "x": x, "y": y, "distance": 0.0})
        };
        let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let addresses = match query.as_str() {
            "boom" => return (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
            "two" => vec![addr("126.9780", "37.5665"), addr("127.0", "37.0")],
            "none" => vec![],
            _ => vec![addr("126.9780", "37.5665")],
        };
        let n = addresses.len();
        let body = serde_json::json!({
            "status": "OK",
            "meta": {"totalCount": n, "page": 1, "count": n},
            "addresses": addresses,
            "errorMessage": ""
        });
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
    }
    let router =
        axum::Router::new().route("/map-geocode/v2/geocode", axum::routing::get(geocode)).with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Naver { base, hits }
}

#[sqlx::test]
async fn addresses_are_geocoded_through_naver_and_cached(pool: PgPool) {
    let naver = naver().await;
    let mut s = settings();
    s.events.geocoder_base_url = naver.base.clone();
    s.events.geocoder_key_id = Some("naver-id".into());
    s.events.geocoder_key = Some(SecretString::from("naver-secret"));
    s.events.geocoder_retries = 1;
    let c = Club::with(pool, s).await;
    let mut api = c.app.events();
    let geo = |address: &str| {
        let mut r = c.create_req("원정");
        r.address = address.into();
        r.latitude = None;
        r.longitude = None;
        c.manager.req(r)
    };
    let e = api.create_event(geo("서울특별시 중구 세종대로 110")).await.unwrap().into_inner().event.unwrap();
    assert_eq!((e.latitude, e.longitude), VENUE);
    let before = naver.hits.load(Ordering::SeqCst);
    api.create_event(geo("서울특별시 중구 세종대로 110")).await.unwrap();
    if c.app.state.cache.is_up() {
        assert_eq!(naver.hits.load(Ordering::SeqCst), before, "the second lookup is served from the cache");
    }
    let s = assert_err(api.create_event(geo("two")).await, Code::InvalidArgument, "ADDRESS_NOT_FOUND");
    assert_eq!(violations(&s), ["address"]);
    assert_err(api.create_event(geo("none")).await, Code::InvalidArgument, "ADDRESS_NOT_FOUND");
    let s = assert_err(api.create_event(geo("boom")).await, Code::Unavailable, "GEOCODING_UNAVAILABLE");
    assert!(!s.message().contains("naver-secret"));
    // Explicit coordinates skip the geocoder.
    let hits = naver.hits.load(Ordering::SeqCst);
    let mut r = c.create_req("명시");
    r.address = "boom".into();
    api.create_event(c.manager.req(r)).await.unwrap();
    assert_eq!(naver.hits.load(Ordering::SeqCst), hits);
    // An address change in UpdateEvent is geocoded too.
    let upd = api
        .update_event(c.manager.req(pb::UpdateEventRequest {
            event_id: e.id,
            address: "none".into(),
            update_mask: mask(&["address"]),
            ..Default::default()
        }))
        .await;
    assert_err(upd, Code::InvalidArgument, "ADDRESS_NOT_FOUND");
}

#[sqlx::test]
async fn wrong_geocoder_keys_are_unavailable_not_internal(pool: PgPool) {
    let naver = naver().await;
    let mut s = settings();
    s.events.geocoder_base_url = naver.base.clone();
    s.events.geocoder_key_id = Some("naver-id".into());
    s.events.geocoder_key = Some(SecretString::from("wrong"));
    let c = Club::with(pool, s).await;
    let mut r = c.create_req("x");
    r.latitude = None;
    r.longitude = None;
    let st =
        assert_err(c.app.events().create_event(c.manager.req(r)).await, Code::Unavailable, "GEOCODING_UNAVAILABLE");
    assert!(!st.message().contains("wrong"));
    assert_eq!(naver.hits.load(Ordering::SeqCst), 1, "a 401 is not retried");
}

// ---- authorization matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Outsider,
    Pending,
    Member,
    Manager,
    Admin,
}

#[sqlx::test]
async fn authorization_matrix(pool: PgPool) {
    let c = Club::new(pool).await;
    let target = c.join("target").await;
    let pending = c.app.user("waiting").await;
    c.app.add_member(&c.club, &pending, "PENDING", "MEMBER").await;
    let e = c.event(&[&c.member, &target]).await;
    c.clock.set(t0() + Duration::hours(2));
    let token = |w: Who| match w {
        Who::Anonymous => None,
        Who::Outsider => Some(c.outsider.token.clone()),
        Who::Pending => Some(pending.token.clone()),
        Who::Member => Some(c.member.token.clone()),
        Who::Manager => Some(c.manager.token.clone()),
        Who::Admin => Some(c.admin.token.clone()),
    };
    fn req<T>(t: &Option<String>, m: T) -> tonic::Request<T> {
        match t {
            Some(t) => bearer(t, m),
            None => tonic::Request::new(m),
        }
    }
    // (rpc, who may, error for members) — outsiders get the community/event NOT_FOUND or
    // MEMBERSHIP_REQUIRED, anonymous callers UNAUTHENTICATED.
    const MANAGER: &str = "manager";
    const MEMBER: &str = "member";
    const PARTICIPANT: &str = "participant";
    let rpcs: &[(&str, &str, bool)] = &[
        // (name, level, names an event)
        ("CreateEvent", MANAGER, false),
        ("UpdateEvent", MANAGER, true),
        ("GetEvent", MEMBER, true),
        ("ListEvents", MEMBER, false),
        ("AddParticipant", MANAGER, true),
        ("ListParticipants", MEMBER, true),
        ("ListNonParticipants", MANAGER, true),
        ("SetMemberGender", MANAGER, false),
        ("CheckIn", PARTICIPANT, true),
        ("ForceAttend", MANAGER, true),
        ("ReportFeePaid", PARTICIPANT, true),
        ("ListPendingFees", MANAGER, false),
        ("RejectFee", MANAGER, true),
        ("ConfirmFee", MANAGER, true),
        ("GetMemberStats", MEMBER, false),
        ("ListMemberStats", MANAGER, false),
        ("ListPenalties", MEMBER, false),
        ("RemoveParticipant", MANAGER, true),
        ("DeleteEvent", MANAGER, true),
    ];
    for who in [Who::Anonymous, Who::Outsider, Who::Pending, Who::Member, Who::Manager, Who::Admin] {
        for &(name, level, names_event) in rpcs {
            // Skip destructive calls until last, and only for the allowed caller that runs last.
            if matches!(name, "RemoveParticipant" | "DeleteEvent") && who == Who::Manager {
                continue;
            }
            let t = token(who);
            let mut api = c.app.events();
            let ev = e.clone();
            let club = c.club.clone();
            let r: Result<(), Status> = match name {
                "CreateEvent" => api.create_event(req(&t, c.create_req("m"))).await.map(|_| ()),
                "UpdateEvent" => api
                    .update_event(req(
                        &t,
                        pb::UpdateEventRequest {
                            event_id: ev,
                            title: "t".into(),
                            update_mask: mask(&["title"]),
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                "GetEvent" => api.get_event(req(&t, pb::GetEventRequest { event_id: ev })).await.map(|_| ()),
                "ListEvents" => api
                    .list_events(req(&t, pb::ListEventsRequest { community_id: club, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "AddParticipant" => {
                    let u = c.join(&format!("add{}", who as u8)).await;
                    api.add_participant(req(
                        &t,
                        pb::AddParticipantRequest { event_id: ev, user_id: u.id, ..Default::default() },
                    ))
                    .await
                    .map(|_| ())
                }
                "ListParticipants" => api
                    .list_participants(req(&t, pb::ListParticipantsRequest { event_id: ev, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "ListNonParticipants" => api
                    .list_non_participants(req(
                        &t,
                        pb::ListNonParticipantsRequest { event_id: ev, ..Default::default() },
                    ))
                    .await
                    .map(|_| ()),
                "SetMemberGender" => api
                    .set_member_gender(req(
                        &t,
                        pb::SetMemberGenderRequest {
                            community_id: club,
                            user_id: target.id.clone(),
                            gender: pb::GenderCategory::Male as i32,
                        },
                    ))
                    .await
                    .map(|_| ()),
                "CheckIn" => api
                    .check_in(req(
                        &t,
                        pb::CheckInRequest {
                            event_id: ev,
                            latitude: VENUE.0,
                            longitude: VENUE.1,
                            ..Default::default()
                        },
                    ))
                    .await
                    .map(|_| ()),
                "ForceAttend" => api
                    .force_attend(req(&t, pb::ForceAttendRequest { event_id: ev, user_id: target.id.clone() }))
                    .await
                    .map(|_| ()),
                "ReportFeePaid" => api
                    .report_fee_paid(req(&t, pb::ReportFeePaidRequest { event_id: ev, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "ListPendingFees" => api
                    .list_pending_fees(req(&t, pb::ListPendingFeesRequest { community_id: club, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "RejectFee" => {
                    // Put the target's fee in PENDING so the allowed call succeeds.
                    sqlx::query("update event_participants set fee_status = 'PENDING' where user_id = $1")
                        .bind(Uuid::parse_str(&target.id).unwrap())
                        .execute(&c.app.state.db)
                        .await
                        .unwrap();
                    api.reject_fee(req(&t, pb::RejectFeeRequest { event_id: ev, user_id: target.id.clone() }))
                        .await
                        .map(|_| ())
                }
                "ConfirmFee" => {
                    sqlx::query("update event_participants set fee_status = 'PENDING' where user_id = $1")
                        .bind(Uuid::parse_str(&target.id).unwrap())
                        .execute(&c.app.state.db)
                        .await
                        .unwrap();
                    api.confirm_fee(req(&t, pb::ConfirmFeeRequest { event_id: ev, user_id: target.id.clone() }))
                        .await
                        .map(|_| ())
                }
                "GetMemberStats" => api
                    .get_member_stats(req(
                        &t,
                        pb::GetMemberStatsRequest { community_id: club, user_id: target.id.clone() },
                    ))
                    .await
                    .map(|_| ()),
                "ListMemberStats" => api
                    .list_member_stats(req(&t, pb::ListMemberStatsRequest { community_id: club, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "ListPenalties" => api
                    .list_penalties(req(&t, pb::ListPenaltiesRequest { community_id: club, ..Default::default() }))
                    .await
                    .map(|_| ()),
                "RemoveParticipant" => api
                    .remove_participant(req(
                        &t,
                        pb::RemoveParticipantRequest { event_id: ev, user_id: target.id.clone() },
                    ))
                    .await
                    .map(|_| ()),
                "DeleteEvent" => api.delete_event(req(&t, pb::DeleteEventRequest { event_id: ev })).await.map(|_| ()),
                other => unreachable!("{other}"),
            };
            let expect: Option<(Code, &str)> = match (who, level) {
                (Who::Anonymous, _) => Some((Code::Unauthenticated, "TOKEN_MISSING")),
                (Who::Outsider | Who::Pending, _) if names_event => Some((Code::NotFound, "EVENT_NOT_FOUND")),
                (Who::Outsider | Who::Pending, _) => Some((Code::PermissionDenied, "MEMBERSHIP_REQUIRED")),
                (Who::Member, MANAGER) => Some((Code::PermissionDenied, "MANAGER_REQUIRED")),
                // The member's own stats are allowed; someone else's are not.
                (Who::Member, MEMBER) if name == "GetMemberStats" => Some((Code::PermissionDenied, "MANAGER_REQUIRED")),
                (Who::Member, _) => None,
                (Who::Manager | Who::Admin, PARTICIPANT) => Some((Code::FailedPrecondition, "NOT_PARTICIPANT")),
                (Who::Manager | Who::Admin, _) => None,
            };
            match (expect, r) {
                (None, Ok(())) => {}
                (Some((code, why)), Err(s)) => {
                    assert_eq!((s.code(), reason(&s).as_str()), (code, why), "{name} as {who:?}: {s:?}")
                }
                (e, r) => panic!("{name} as {who:?}: expected {e:?}, got {r:?}"),
            }
        }
    }
}

// ---- webhook outbox

#[sqlx::test]
async fn settlement_notices_reach_the_webhook_once_with_retries(pool: PgPool) {
    use axum::http::StatusCode;
    // A Slack-like incoming webhook that fails twice, then accepts.
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let (c2, b2) = (calls.clone(), bodies.clone());
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (calls, bodies) = (c2.clone(), b2.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                bodies.lock().push(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut s = settings();
    s.events.webhook_url = Some(SecretString::from(url));
    s.events.webhook_backoff_ms = 20;
    let c = Club::with(pool.clone(), s.clone()).await;
    // A second replica delivers too: still one notice.
    let clock: Arc<dyn maru::clock::Clock> = c.clock.clone();
    let _replica = TestApp::spawn_clock(pool.clone(), s, clock).await;
    let (e, _) = scenario(&c).await;
    c.clock.set(t0() + Duration::hours(4));
    c.wait_settled(&e).await;
    for _ in 0..200 {
        if !bodies.lock().is_empty() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    let got = bodies.lock().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let json: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(json["text"], json["content"]);
    assert_eq!(json["text"], "[FC 마루] 정기 경기: settled — absent 1, late 1, not paid 1");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let (attempts, delivered): (i32, bool) =
        sqlx::query_as("select attempts, delivered_at is not null from event_webhook_outbox where event_id = $1")
            .bind(Uuid::parse_str(&e).unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((attempts, delivered), (3, true));
    let m = c.app.metrics().await;
    assert!(m.contains("maru_event_outbox_backlog"));
    assert!(m.contains(r#"maru_event_webhook_deliveries_total{result="failed"}"#) || m.contains("delivered"));
}

/// A webhook that answers 503 with `Retry-After: 30` is tried again in 30 s, not after the
/// 20 ms backoff (which it would be, were Retry-After ignored).
#[sqlx::test]
async fn the_outbox_honours_retry_after(pool: PgPool) {
    use axum::http::StatusCode;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let calls = counter.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "30")], "slow down")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut s = settings();
    s.events.webhook_url = Some(SecretString::from(url));
    s.events.webhook_backoff_ms = 20;
    let c = Club::with(pool.clone(), s).await;
    let (e, _) = scenario(&c).await;
    c.clock.set(t0() + Duration::hours(4));
    c.wait_settled(&e).await;
    let row = || async {
        sqlx::query_as::<_, (i32, f64, Option<String>)>(
            "select attempts, extract(epoch from next_attempt_at - now())::float8, last_error
               from event_webhook_outbox where event_id = $1",
        )
        .bind(Uuid::parse_str(&e).unwrap())
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let mut got = row().await;
    for _ in 0..200 {
        if got.0 >= 1 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
        got = row().await;
    }
    let (attempts, next_in_s, last_error) = got;
    assert_eq!(attempts, 1);
    assert_eq!(last_error.as_deref(), Some("HTTP 503 Service Unavailable"));
    assert!(next_in_s > 20.0 && next_in_s <= 30.0, "next attempt in {next_in_s} s");
    // Several settlement ticks later, still one call.
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---- metrics hygiene

/// `promtool check metrics` refuses a family without HELP: after a check-in, fee reports, a
/// settlement and a delivered webhook notice (every events family recorded), every `# TYPE` on
/// `/metrics` has its `# HELP`. CI also runs promtool itself on a live scrape
/// (`monitoring/ci_live.sh`).
#[sqlx::test]
async fn every_metric_family_on_metrics_has_help(pool: PgPool) {
    let router = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut s = settings();
    s.events.webhook_url = Some(SecretString::from(url));
    let c = Club::with(pool, s).await;
    let (e, _) = scenario(&c).await;
    c.clock.set(t0() + Duration::hours(4));
    c.wait_settled(&e).await;

    let families = [
        "maru_event_check_ins_total",
        "maru_event_fee_transitions_total",
        "maru_event_penalties_total",
        "maru_event_settlements_total",
        "maru_event_settlement_lag_seconds",
        "maru_event_settlement_pending_seconds",
        "maru_event_webhook_deliveries_total",
        "maru_event_outbox_backlog",
    ];
    let mut text = String::new();
    for _ in 0..200 {
        text = c.app.metrics().await;
        if families.iter().all(|f| text.contains(&format!("# TYPE {f} "))) {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    let typed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let helped: std::collections::HashSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next()).collect();
    for f in families {
        assert!(typed.contains(&f), "{f} was not recorded:\n{text}");
    }
    assert!(typed.len() > 30, "{typed:?}");
    let missing: Vec<&&str> = typed.iter().filter(|t| !helped.contains(**t)).collect();
    assert!(missing.is_empty(), "families without HELP: {missing:?}");
}

#[sqlx::test]
async fn retries_with_a_request_id_get_the_first_answer(pool: PgPool) {
    // Issue 13 pt 5 (AIP-155): a mobile client retrying after a lost reply gets its first
    // answer, not ALREADY_*; without a request id the retry is refused as before.
    let c = Club::new(pool).await;
    let e = c.event(&[]).await;
    let mut api = c.app.events();
    let add = |rid: &str| pb::AddParticipantRequest {
        event_id: e.clone(),
        user_id: c.member.id.clone(),
        request_id: rid.into(),
    };
    let first = api.add_participant(c.manager.req(add("add-1"))).await.unwrap().into_inner().participant.unwrap();
    let again = api.add_participant(c.manager.req(add("add-1"))).await.unwrap().into_inner().participant.unwrap();
    assert_eq!(again, first);
    assert_err(api.add_participant(c.manager.req(add(""))).await, Code::AlreadyExists, "ALREADY_PARTICIPANT");
    // The same id for another request is refused.
    let other = pb::AddParticipantRequest { user_id: c.manager.id.clone(), ..add("add-1") };
    assert_err(api.add_participant(c.manager.req(other)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");

    // Check-in: twenty concurrent retries of one request: one row, every answer the first.
    c.clock.set(t0() + Duration::hours(2) + Duration::minutes(25));
    let at = north(120.0);
    let check_in =
        |rid: &str| pb::CheckInRequest { event_id: e.clone(), latitude: at.0, longitude: at.1, request_id: rid.into() };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut api = c.app.events();
        let req = c.member.req(check_in("in-1"));
        tasks.push(tokio::spawn(async move { api.check_in(req).await.map(|r| r.into_inner()) }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect("every retry gets the first answer"));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].attendance, pb::Attendance::Late as i32);
    assert!((answers[0].distance_m - 120.0).abs() < 0.01, "{}", answers[0].distance_m);
    let rows: i64 =
        sqlx::query_scalar("select count(*) from event_check_ins").fetch_one(&c.app.state.db).await.unwrap();
    assert_eq!(rows, 1);
    assert_err(c.check_in(&c.member, &e, at).await, Code::AlreadyExists, "ALREADY_CHECKED_IN");

    // Fee reported paid: the retry gets PENDING, not FEE_ALREADY_REPORTED.
    let report = |rid: &str| c.member.req(pb::ReportFeePaidRequest { event_id: e.clone(), request_id: rid.into() });
    let first = api.report_fee_paid(report("fee-1")).await.unwrap().into_inner();
    assert_eq!(first.fee_status, pb::FeeStatus::Pending as i32);
    let again = api.report_fee_paid(report("fee-1")).await.unwrap().into_inner();
    assert_eq!(again, first);
    assert_err(api.report_fee_paid(report("")).await, Code::FailedPrecondition, "FEE_ALREADY_REPORTED");
    let bad = api.report_fee_paid(report("no spaces allowed")).await;
    let s = assert_err(bad, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["request_id"]);
}
