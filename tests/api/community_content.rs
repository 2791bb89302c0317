//! Community content: notices, complaints, contacts, schedules and polls — success and invalid
//! input per RPC, ordering, the authorization matrix, the complaint state machine, and votes
//! raced by real concurrent clients.

use chrono::{DateTime, Duration, Utc};
use maru::grpc::pb;
use maru::grpc::pb::complaint_service_client::ComplaintServiceClient;
use maru::grpc::pb::contact_service_client::ContactServiceClient;
use maru::grpc::pb::notice_service_client::NoticeServiceClient;
use maru::grpc::pb::poll_service_client::PollServiceClient;
use maru::grpc::pb::schedule_service_client::ScheduleServiceClient;
use prost_types::{FieldMask, Timestamp};
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::*;
use crate::logs;

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn at(t: &Option<Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

/// A community with one caller of each kind, plus a second member (`filer`) and another
/// community managed by `other_manager`.
struct Fx {
    app: TestApp,
    community: String,
    other_community: String,
    outsider: TestUser,
    pending: TestUser,
    member: TestUser,
    filer: TestUser,
    other_manager: TestUser,
    manager: TestUser,
    admin: TestUser,
}

impl Fx {
    async fn new(pool: PgPool) -> Self {
        Self::with_app(TestApp::spawn(pool).await).await
    }

    async fn with_app(app: TestApp) -> Self {
        let community = app.community("APARTMENT", "래미안 1단지").await;
        let other_community = app.community("APARTMENT", "자이 2단지").await;
        let outsider = app.user("outsider").await;
        let pending = app.user("pending").await;
        let member = app.user("member").await;
        let filer = app.user("filer").await;
        let other_manager = app.user("othermanager").await;
        let manager = app.user("manager").await;
        let admin = app.admin_user("operator").await;
        app.add_member(&community, &pending, "PENDING", "MEMBER").await;
        app.add_member(&community, &member, "APPROVED", "MEMBER").await;
        app.add_member(&community, &filer, "APPROVED", "MEMBER").await;
        app.add_member(&community, &manager, "APPROVED", "MANAGER").await;
        app.add_member(&other_community, &other_manager, "APPROVED", "MANAGER").await;
        // A pending request elsewhere does not count here either.
        app.add_member(&other_community, &outsider, "APPROVED", "MEMBER").await;
        Fx { app, community, other_community, outsider, pending, member, filer, other_manager, manager, admin }
    }

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

    fn req<T>(&self, who: Who, msg: T) -> Request<T> {
        as_who(self.user(who), msg)
    }

    fn notices(&self) -> NoticeServiceClient<Channel> {
        NoticeServiceClient::new(self.app.channel.clone())
    }
    fn complaints(&self) -> ComplaintServiceClient<Channel> {
        ComplaintServiceClient::new(self.app.channel.clone())
    }
    fn contacts(&self) -> ContactServiceClient<Channel> {
        ContactServiceClient::new(self.app.channel.clone())
    }
    fn schedules(&self) -> ScheduleServiceClient<Channel> {
        ScheduleServiceClient::new(self.app.channel.clone())
    }
    fn polls(&self) -> PollServiceClient<Channel> {
        PollServiceClient::new(self.app.channel.clone())
    }

    // ---- content made by the manager

    fn notice_req(&self, title: &str, pinned: bool) -> pb::CreateNoticeRequest {
        pb::CreateNoticeRequest {
            community_id: self.community.clone(),
            title: title.into(),
            body: format!("{title} 본문"),
            pinned,
            request_id: String::new(),
            ..Default::default()
        }
    }

    async fn notice(&self, title: &str, pinned: bool) -> pb::Notice {
        let r = self.notices().create_notice(self.manager.req(self.notice_req(title, pinned))).await;
        r.unwrap().into_inner().notice.unwrap()
    }

    fn complaint_req(&self, title: &str) -> pb::FileComplaintRequest {
        pb::FileComplaintRequest {
            community_id: self.community.clone(),
            title: title.into(),
            body: "밤마다 윗집 소음이 심합니다".into(),
            category: "소음".into(),
            request_id: String::new(),
            ..Default::default()
        }
    }

    async fn complaint_by(&self, user: &TestUser, title: &str) -> pb::Complaint {
        let r = self.complaints().file_complaint(user.req(self.complaint_req(title))).await;
        r.unwrap().into_inner().complaint.unwrap()
    }

    fn contact_req(&self, name: &str, category: &str) -> pb::CreateContactRequest {
        pb::CreateContactRequest {
            community_id: self.community.clone(),
            name: name.into(),
            phone: "031-123-4567".into(),
            category: category.into(),
            description: String::new(),
            request_id: String::new(),
        }
    }

    async fn contact(&self, name: &str, category: &str) -> pb::Contact {
        let r = self.contacts().create_contact(self.manager.req(self.contact_req(name, category))).await;
        r.unwrap().into_inner().contact.unwrap()
    }

    fn schedule_req(&self, title: &str, starts: DateTime<Utc>, ends: DateTime<Utc>) -> pb::CreateScheduleRequest {
        pb::CreateScheduleRequest {
            community_id: self.community.clone(),
            title: title.into(),
            starts_at: Some(ts(starts)),
            ends_at: Some(ts(ends)),
            location: "관리동 2층".into(),
            description: String::new(),
            request_id: String::new(),
        }
    }

    async fn schedule(&self, title: &str, starts: DateTime<Utc>, ends: DateTime<Utc>) -> pb::Schedule {
        let r = self.schedules().create_schedule(self.manager.req(self.schedule_req(title, starts, ends))).await;
        r.unwrap().into_inner().schedule.unwrap()
    }

    fn poll_req(&self, question: &str, options: &[&str]) -> pb::CreatePollRequest {
        pb::CreatePollRequest {
            community_id: self.community.clone(),
            question: question.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            closes_at: Some(ts(Utc::now() + Duration::days(7))),
            request_id: String::new(),
        }
    }

    async fn poll(&self, question: &str) -> pb::Poll {
        let r = self.polls().create_poll(self.manager.req(self.poll_req(question, &["찬성", "반대"]))).await;
        r.unwrap().into_inner().poll.unwrap()
    }

    async fn vote(&self, user: &TestUser, poll: &pb::Poll, option: usize) -> Result<pb::Poll, Status> {
        let msg = pb::CastVoteRequest {
            poll_id: poll.id.clone(),
            option_id: poll.options[option].id.clone(),
            ..Default::default()
        };
        self.polls().cast_vote(user.req(msg)).await.map(|r| r.into_inner().poll.unwrap())
    }

    async fn set_complaint_status(&self, id: &str, status: &str) {
        sqlx::query("update community_complaints set status = $2 where id = $1")
            .bind(Uuid::parse_str(id).unwrap())
            .bind(status)
            .execute(&self.app.state.db)
            .await
            .unwrap();
    }

    async fn vote_rows(&self, poll_id: &str) -> Vec<(String, i64)> {
        sqlx::query_as(
            "select option_id::text, count(*) from community_poll_votes where poll_id = $1
              group by option_id order by option_id",
        )
        .bind(Uuid::parse_str(poll_id).unwrap())
        .fetch_all(&self.app.state.db)
        .await
        .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Notices

#[sqlx::test]
async fn notices_are_listed_pinned_first_then_newest_and_paged(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let a = fx.notice("a 일반", false).await;
    let b = fx.notice("b 고정", true).await;
    let c = fx.notice("c 일반", false).await;
    let d = fx.notice("d 고정", true).await;
    let e = fx.notice("e 일반", false).await;
    // Another community's notice never shows up here.
    let mut other = fx.notice_req("elsewhere", true);
    other.community_id = fx.other_community.clone();
    fx.notices().create_notice(fx.other_manager.req(other)).await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let msg = pb::ListNoticesRequest { community_id: fx.community.clone(), page_size: 2, page_token: token };
        let page = fx.notices().list_notices(fx.member.req(msg)).await.unwrap().into_inner();
        assert!(page.notices.len() <= 2);
        seen.extend(page.notices.into_iter().map(|n| n.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, [d.id, b.id, e.id, c.id, a.id]);

    // A token is bound to its community.
    let first = fx
        .notices()
        .list_notices(fx.member.req(pb::ListNoticesRequest {
            community_id: fx.community.clone(),
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let r = fx
        .notices()
        .list_notices(fx.admin.req(pb::ListNoticesRequest {
            community_id: fx.other_community.clone(),
            page_size: 1,
            page_token: first.next_page_token,
        }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
}

#[sqlx::test]
async fn notice_crud_update_mask_and_invalid_input(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let n = fx.notice("엘리베이터 점검", false).await;
    assert_eq!(n.author_id, fx.manager.id);
    assert_eq!(n.community_id, fx.community);

    let got = fx.notices().get_notice(fx.member.req(pb::GetNoticeRequest { notice_id: n.id.clone() })).await.unwrap();
    assert_eq!(got.into_inner().notice.unwrap(), n);

    // Only the masked fields change.
    let msg = pb::UpdateNoticeRequest {
        notice_id: n.id.clone(),
        title: "엘리베이터 점검 (변경)".into(),
        body: "ignored".into(),
        pinned: true,
        update_mask: mask(&["title", "pinned"]),
        ..Default::default()
    };
    let u = fx.notices().update_notice(fx.manager.req(msg)).await.unwrap().into_inner().notice.unwrap();
    assert_eq!((u.title.as_str(), u.body.as_str(), u.pinned), ("엘리베이터 점검 (변경)", n.body.as_str(), true));
    assert!(at(&u.updated_at) >= at(&n.updated_at));

    // No mask, an unknown path, a bad value in a masked field: every problem at once.
    let msg = pb::UpdateNoticeRequest { notice_id: n.id.clone(), update_mask: None, ..Default::default() };
    let s =
        assert_err(fx.notices().update_notice(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["update_mask"]);
    let msg = pb::UpdateNoticeRequest {
        notice_id: "nope".into(),
        title: " ".into(),
        update_mask: mask(&["title", "author_id"]),
        ..Default::default()
    };
    let s =
        assert_err(fx.notices().update_notice(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["notice_id", "update_mask", "title"]);

    // Create: every bad field named.
    let msg = pb::CreateNoticeRequest {
        community_id: "x".into(),
        title: "t".repeat(201),
        body: String::new(),
        pinned: false,
        request_id: "bad id!".into(),
        ..Default::default()
    };
    let s =
        assert_err(fx.notices().create_notice(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["community_id", "title", "body", "request_id"]);
    let mut msg = fx.notice_req("t", false);
    msg.community_id = Uuid::new_v4().to_string();
    assert_err(fx.notices().create_notice(fx.manager.req(msg)).await, Code::NotFound, "COMMUNITY_NOT_FOUND");

    // request_id: the same caller and key replays the original notice.
    let mut msg = fx.notice_req("관리비 안내", false);
    msg.request_id = "notice-1".into();
    let first = fx.notices().create_notice(fx.manager.req(msg.clone())).await.unwrap().into_inner().notice.unwrap();
    let again = fx.notices().create_notice(fx.manager.req(msg.clone())).await.unwrap().into_inner().notice.unwrap();
    assert_eq!(first, again);
    msg.title = "different".into();
    assert_err(fx.notices().create_notice(fx.manager.req(msg)).await, Code::InvalidArgument, "REQUEST_ID_REUSED");

    // Delete; then it is gone for everyone.
    fx.notices().delete_notice(fx.manager.req(pb::DeleteNoticeRequest { notice_id: n.id.clone() })).await.unwrap();
    let r = fx.notices().get_notice(fx.admin.req(pb::GetNoticeRequest { notice_id: n.id.clone() })).await;
    assert_err(r, Code::NotFound, "NOTICE_NOT_FOUND");
    let r = fx.notices().delete_notice(fx.manager.req(pb::DeleteNoticeRequest { notice_id: n.id.clone() })).await;
    assert_err(r, Code::NotFound, "NOTICE_NOT_FOUND");
    let r = fx.notices().get_notice(fx.member.req(pb::GetNoticeRequest { notice_id: String::new() })).await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["notice_id"]);
}

// ---------------------------------------------------------------------------------------------
// Complaints

#[sqlx::test]
async fn complaints_are_private_to_the_filer_and_the_office(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let mine = fx.complaint_by(&fx.member, "주차 문제").await;
    assert_eq!(mine.status, pb::ComplaintStatus::Received as i32);
    assert_eq!((mine.filed_by.as_str(), mine.category.as_str()), (fx.member.id.as_str(), "소음"));
    let theirs = fx.complaint_by(&fx.filer, "소음 문제").await;
    let managers = fx.complaint_by(&fx.manager, "관리자도 주민").await;

    let list = |who: &TestUser, status: pb::ComplaintStatus| {
        let mut c = fx.complaints();
        let msg = pb::ListComplaintsRequest {
            community_id: fx.community.clone(),
            status: status as i32,
            page_size: 0,
            page_token: String::new(),
        };
        let req = who.req(msg);
        async move {
            c.list_complaints(req).await.unwrap().into_inner().complaints.into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(&fx.member, pb::ComplaintStatus::Unspecified).await, [mine.id.as_str()]);
    assert_eq!(
        list(&fx.manager, pb::ComplaintStatus::Unspecified).await,
        [managers.id.clone(), theirs.id.clone(), mine.id.clone()]
    );
    assert_eq!(list(&fx.admin, pb::ComplaintStatus::Unspecified).await.len(), 3);

    // The filer sees the office's reply; filtering by status.
    let msg = pb::UpdateComplaintStatusRequest {
        complaint_id: mine.id.clone(),
        status: pb::ComplaintStatus::InProgress as i32,
        reply: "확인 중입니다".into(),
    };
    let moved = fx.complaints().update_complaint_status(fx.manager.req(msg)).await.unwrap().into_inner();
    assert!(moved.complaint.unwrap().replied_at.is_some());
    let got = fx
        .complaints()
        .get_complaint(fx.member.req(pb::GetComplaintRequest { complaint_id: mine.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .complaint
        .unwrap();
    assert_eq!((got.status, got.reply.as_str()), (pb::ComplaintStatus::InProgress as i32, "확인 중입니다"));
    assert_eq!(list(&fx.manager, pb::ComplaintStatus::InProgress).await, [mine.id.as_str()]);
    assert_eq!(list(&fx.manager, pb::ComplaintStatus::Received).await.len(), 2);
    assert!(list(&fx.member, pb::ComplaintStatus::Received).await.is_empty());

    // Another member's complaint is NOT_FOUND, like an unknown id.
    let r = fx.complaints().get_complaint(fx.member.req(pb::GetComplaintRequest { complaint_id: theirs.id })).await;
    assert_err(r, Code::NotFound, "COMPLAINT_NOT_FOUND");
    let r = fx
        .complaints()
        .get_complaint(fx.member.req(pb::GetComplaintRequest { complaint_id: Uuid::new_v4().to_string() }))
        .await;
    assert_err(r, Code::NotFound, "COMPLAINT_NOT_FOUND");

    // Paging over the manager's view.
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let msg = pb::ListComplaintsRequest {
            community_id: fx.community.clone(),
            status: 0,
            page_size: 1,
            page_token: token,
        };
        let page = fx.complaints().list_complaints(fx.manager.req(msg)).await.unwrap().into_inner();
        ids.extend(page.complaints.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids.len(), 3);
}

#[sqlx::test]
async fn complaint_input_is_validated_and_filing_is_idempotent(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let msg = pb::FileComplaintRequest {
        community_id: String::new(),
        title: String::new(),
        body: "b".repeat(10_001),
        category: "c".repeat(51),
        request_id: String::new(),
        ..Default::default()
    };
    let s =
        assert_err(fx.complaints().file_complaint(fx.member.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["community_id", "title", "body", "category"]);

    let mut msg = fx.complaint_req("중복 접수 방지");
    msg.request_id = "complaint-1".into();
    let a = fx.complaints().file_complaint(fx.member.req(msg.clone())).await.unwrap().into_inner();
    let b = fx.complaints().file_complaint(fx.member.req(msg)).await.unwrap().into_inner();
    assert_eq!(a, b);
    let n: i64 =
        sqlx::query_scalar("select count(*) from community_complaints").fetch_one(&fx.app.state.db).await.unwrap();
    assert_eq!(n, 1);

    let c = fx.complaint_by(&fx.member, "x").await;
    for (status, field) in [(0, "status"), (42, "status")] {
        let msg = pb::UpdateComplaintStatusRequest { complaint_id: c.id.clone(), status, reply: String::new() };
        let s = assert_err(
            fx.complaints().update_complaint_status(fx.manager.req(msg)).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violations(&s), [field]);
    }
    let msg = pb::UpdateComplaintStatusRequest {
        complaint_id: "zz".into(),
        status: pb::ComplaintStatus::InProgress as i32,
        reply: "r".repeat(5001),
    };
    let s = assert_err(
        fx.complaints().update_complaint_status(fx.manager.req(msg)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["complaint_id", "reply"]);
}

const STATUSES: [(pb::ComplaintStatus, &str); 5] = [
    (pb::ComplaintStatus::Received, "RECEIVED"),
    (pb::ComplaintStatus::InProgress, "IN_PROGRESS"),
    (pb::ComplaintStatus::Resolved, "RESOLVED"),
    (pb::ComplaintStatus::Rejected, "REJECTED"),
    (pb::ComplaintStatus::Withdrawn, "WITHDRAWN"),
];

#[sqlx::test]
async fn every_complaint_transition_is_allowed_or_refused_as_documented(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let allowed = [("RECEIVED", "IN_PROGRESS"), ("IN_PROGRESS", "RESOLVED"), ("IN_PROGRESS", "REJECTED")];
    for (_, from) in STATUSES {
        for (to, to_name) in STATUSES {
            let c = fx.complaint_by(&fx.filer, &format!("{from} → {to_name}")).await;
            fx.set_complaint_status(&c.id, from).await;
            let msg = pb::UpdateComplaintStatusRequest {
                complaint_id: c.id.clone(),
                status: to as i32,
                reply: String::new(),
            };
            let r = fx.complaints().update_complaint_status(fx.manager.req(msg)).await;
            if allowed.contains(&(from, to_name)) {
                let c = r.unwrap_or_else(|s| panic!("{from} → {to_name}: {s:?}")).into_inner().complaint.unwrap();
                assert_eq!(c.status, to as i32, "{from} → {to_name}");
            } else {
                let s = r.expect_err(&format!("{from} → {to_name} must be refused"));
                assert_eq!((s.code(), reason(&s).as_str()), (Code::FailedPrecondition, "INVALID_STATUS_TRANSITION"));
                let info = s.get_details_error_info().unwrap();
                assert_eq!(info.metadata.get("from").map(String::as_str), Some(from), "{from} → {to_name}");
                assert_eq!(info.metadata.get("to").map(String::as_str), Some(to_name));
                let status: String = sqlx::query_scalar("select status from community_complaints where id = $1")
                    .bind(Uuid::parse_str(&c.id).unwrap())
                    .fetch_one(&fx.app.state.db)
                    .await
                    .unwrap();
                assert_eq!(status, from, "a refused transition changes nothing");
            }
        }
    }
    let text = fx.app.metrics().await;
    assert!(text.contains(r#"maru_complaint_transitions_total{to="in_progress"}"#), "{text}");
    assert!(text.contains(r#"maru_complaint_transitions_total{to="received"}"#));
}

#[sqlx::test]
async fn concurrent_status_updates_from_the_same_state_have_one_winner(pool: PgPool) {
    let fx = Fx::new(pool).await;
    for round in 0..5 {
        let c = fx.complaint_by(&fx.filer, &format!("race {round}")).await;
        fx.set_complaint_status(&c.id, "IN_PROGRESS").await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let mut client = fx.complaints();
            let to = if i % 2 == 0 { pb::ComplaintStatus::Resolved } else { pb::ComplaintStatus::Rejected };
            let req = (if i % 3 == 0 { &fx.admin } else { &fx.manager }).req(pb::UpdateComplaintStatusRequest {
                complaint_id: c.id.clone(),
                status: to as i32,
                reply: format!("{i}"),
            });
            tasks.push(tokio::spawn(async move { client.update_complaint_status(req).await }));
        }
        let mut ok = 0;
        for r in futures::future::join_all(tasks).await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(s) => {
                    assert_eq!((s.code(), reason(&s).as_str()), (Code::FailedPrecondition, "INVALID_STATUS_TRANSITION"))
                }
            }
        }
        assert_eq!(ok, 1, "round {round}");
    }
}

#[sqlx::test]
async fn only_the_filer_withdraws_and_only_while_received(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let c = fx.complaint_by(&fx.filer, "철회할 민원").await;
    let withdraw = |who: &TestUser, id: &str| {
        let mut client = fx.complaints();
        let req = who.req(pb::WithdrawComplaintRequest { complaint_id: id.into() });
        async move { client.withdraw_complaint(req).await }
    };
    assert_err(withdraw(&fx.member, &c.id).await, Code::NotFound, "COMPLAINT_NOT_FOUND");
    assert_err(withdraw(&fx.manager, &c.id).await, Code::PermissionDenied, "COMPLAINT_FILER_REQUIRED");
    assert_err(withdraw(&fx.admin, &c.id).await, Code::PermissionDenied, "COMPLAINT_FILER_REQUIRED");
    let done = withdraw(&fx.filer, &c.id).await.unwrap().into_inner().complaint.unwrap();
    assert_eq!(done.status, pb::ComplaintStatus::Withdrawn as i32);
    let s = assert_err(withdraw(&fx.filer, &c.id).await, Code::FailedPrecondition, "COMPLAINT_NOT_WITHDRAWABLE");
    assert_eq!(s.get_details_error_info().unwrap().metadata.get("status").map(String::as_str), Some("WITHDRAWN"));
    // A withdrawn complaint cannot be worked on.
    let msg = pb::UpdateComplaintStatusRequest {
        complaint_id: c.id.clone(),
        status: pb::ComplaintStatus::InProgress as i32,
        reply: String::new(),
    };
    let r = fx.complaints().update_complaint_status(fx.manager.req(msg)).await;
    assert_err(r, Code::FailedPrecondition, "INVALID_STATUS_TRANSITION");

    for (_, status) in &STATUSES[1..] {
        let c = fx.complaint_by(&fx.filer, status).await;
        fx.set_complaint_status(&c.id, status).await;
        let s = assert_err(withdraw(&fx.filer, &c.id).await, Code::FailedPrecondition, "COMPLAINT_NOT_WITHDRAWABLE");
        assert_eq!(s.get_details_error_info().unwrap().metadata.get("status").map(String::as_str), Some(*status));
    }
    assert_err(withdraw(&fx.filer, "not-a-uuid").await, Code::InvalidArgument, "INVALID_ARGUMENT");
}

// ---------------------------------------------------------------------------------------------
// Contacts

#[sqlx::test]
async fn contacts_crud_order_and_phone_rules(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let security = fx.contact("경비실", "보안").await;
    let office = fx.contact("관리사무소", "관리").await;
    let repair = fx.contact("기전실", "관리").await;
    assert_eq!(office.phone, "031-123-4567");

    let list = |token: String| {
        let mut c = fx.contacts();
        let req = fx.member.req(pb::ListContactsRequest {
            community_id: fx.community.clone(),
            page_size: 2,
            page_token: token,
        });
        async move { c.list_contacts(req).await.unwrap().into_inner() }
    };
    let p1 = list(String::new()).await;
    let p2 = list(p1.next_page_token.clone()).await;
    assert!(p2.next_page_token.is_empty());
    let ids: Vec<_> = p1.contacts.iter().chain(&p2.contacts).map(|c| c.id.clone()).collect();
    // By category (관리 < 보안), then name (관리사무소 < 기전실).
    assert_eq!(ids, [office.id.clone(), repair.id.clone(), security.id.clone()]);

    let msg = pb::UpdateContactRequest {
        contact_id: office.id.clone(),
        phone: "+82 31 987 6543".into(),
        name: "ignored".into(),
        update_mask: mask(&["phone", "description"]),
        description: "평일 09-18시".into(),
        ..Default::default()
    };
    let u = fx.contacts().update_contact(fx.manager.req(msg)).await.unwrap().into_inner().contact.unwrap();
    assert_eq!(
        (u.name.as_str(), u.phone.as_str(), u.description.as_str()),
        ("관리사무소", "+82 31 987 6543", "평일 09-18시")
    );

    let msg = pb::CreateContactRequest {
        community_id: fx.community.clone(),
        name: String::new(),
        phone: "call us".into(),
        category: "c".repeat(51),
        description: String::new(),
        request_id: String::new(),
    };
    let s =
        assert_err(fx.contacts().create_contact(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["name", "phone", "category"]);
    let msg = pb::UpdateContactRequest {
        contact_id: office.id.clone(),
        phone: "12".into(),
        update_mask: mask(&["phone"]),
        ..Default::default()
    };
    let s =
        assert_err(fx.contacts().update_contact(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["phone"]);

    let mut msg = fx.contact_req("방재실", "보안");
    msg.request_id = "contact-1".into();
    let a = fx.contacts().create_contact(fx.manager.req(msg.clone())).await.unwrap().into_inner();
    let b = fx.contacts().create_contact(fx.manager.req(msg)).await.unwrap().into_inner();
    assert_eq!(a, b);

    fx.contacts()
        .delete_contact(fx.manager.req(pb::DeleteContactRequest { contact_id: repair.id.clone() }))
        .await
        .unwrap();
    let r =
        fx.contacts().delete_contact(fx.manager.req(pb::DeleteContactRequest { contact_id: repair.id.clone() })).await;
    assert_err(r, Code::NotFound, "CONTACT_NOT_FOUND");
    let msg = pb::ListContactsRequest { community_id: fx.community.clone(), page_size: 10, page_token: String::new() };
    let all = fx.contacts().list_contacts(fx.member.req(msg)).await.unwrap().into_inner().contacts;
    assert_eq!(all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["관리사무소", "경비실", "방재실"]);
}

#[sqlx::test]
async fn phone_numbers_are_never_logged(pool: PgPool) {
    let captured = logs::capture();
    let app = TestApp::spawn_with(pool, |s| s.log.access_log = true).await;
    let fx = Fx::with_app(app).await;
    let phone = format!("010-{}-{}", 1000 + rand_digits() % 9000, 1000 + rand_digits() % 9000);
    let mut msg = fx.contact_req("개인 연락처", "기타");
    msg.phone = phone.clone();
    let c = fx.contacts().create_contact(fx.manager.req(msg.clone())).await.unwrap().into_inner().contact.unwrap();
    let _ = fx.contacts().create_contact(fx.member.req(msg)).await; // refused
    let new_phone = format!("{phone}9");
    let _ = fx
        .contacts()
        .update_contact(fx.manager.req(pb::UpdateContactRequest {
            contact_id: c.id.clone(),
            phone: new_phone.clone(),
            update_mask: mask(&["phone"]),
            ..Default::default()
        }))
        .await;
    let _ = fx
        .contacts()
        .list_contacts(
            fx.member.req(pb::ListContactsRequest { community_id: fx.community.clone(), ..Default::default() }),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut everything = captured.stdout_text();
    for (labels, line) in captured.loki_lines() {
        everything.push_str(&labels);
        everything.push_str(&line);
    }
    assert!(everything.contains("ContactService"), "the capture works");
    assert!(!everything.contains(&phone), "a log line contains a phone number");
}

fn rand_digits() -> u32 {
    Uuid::new_v4().as_u128() as u32
}

// ---------------------------------------------------------------------------------------------
// Schedules

#[sqlx::test]
async fn schedules_are_listed_by_overlap_with_the_range_ordered_by_start(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let day = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").unwrap().with_timezone(&Utc);
    let h = Duration::hours;
    let before = fx.schedule("전날 행사", day - h(5), day - h(3)).await;
    let spans_start = fx.schedule("밤샘 공사", day - h(2), day + h(2)).await;
    let inside_late = fx.schedule("저녁 회의", day + h(18), day + h(20)).await;
    let inside_early = fx.schedule("아침 청소", day + h(8), day + h(9)).await;
    let instant = fx.schedule("정전 시각", day + h(12), day + h(12)).await;
    let spans_end = fx.schedule("야간 점검", day + h(23), day + h(26)).await;
    let ends_at_from = fx.schedule("끝나는 일정", day - h(1), day).await;
    let starts_at_to = fx.schedule("다음날 행사", day + h(24), day + h(25)).await;
    let mut elsewhere = fx.schedule_req("다른 단지", day + h(10), day + h(11));
    elsewhere.community_id = fx.other_community.clone();
    fx.schedules().create_schedule(fx.other_manager.req(elsewhere)).await.unwrap();

    let range = |from: DateTime<Utc>, to: DateTime<Utc>, page_size: i32, token: String| pb::ListSchedulesRequest {
        community_id: fx.community.clone(),
        from: Some(ts(from)),
        to: Some(ts(to)),
        page_size,
        page_token: token,
    };
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let page =
            fx.schedules().list_schedules(fx.member.req(range(day, day + h(24), 2, token))).await.unwrap().into_inner();
        ids.extend(page.schedules.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(ids, [spans_start.id, inside_early.id, instant.id, inside_late.id, spans_end.id]);
    for s in [&before, &ends_at_from, &starts_at_to] {
        assert!(!ids.contains(&s.id), "{} is outside [from, to)", s.title);
    }

    // from ≥ to, or missing bounds: INVALID_ARGUMENT naming them.
    let r = fx.schedules().list_schedules(fx.member.req(range(day, day, 0, String::new()))).await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["to"]);
    let msg = pb::ListSchedulesRequest { community_id: fx.community.clone(), ..Default::default() };
    let s =
        assert_err(fx.schedules().list_schedules(fx.member.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["from", "to"]);
}

#[sqlx::test]
async fn schedule_crud_and_ends_not_before_starts(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let start = Utc::now() + Duration::days(3);
    let s = fx.schedule("소독", start, start + Duration::hours(2)).await;
    assert_eq!(at(&s.starts_at).timestamp(), start.timestamp());

    let mut bad = fx.schedule_req("", start, start - Duration::minutes(1));
    bad.location = "l".repeat(201);
    let st = assert_err(
        fx.schedules().create_schedule(fx.manager.req(bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&st), ["title", "ends_at", "location"]);
    let mut bad = fx.schedule_req("t", start, start);
    bad.starts_at = None;
    bad.ends_at = Some(Timestamp { seconds: 0, nanos: -5 });
    let st = assert_err(
        fx.schedules().create_schedule(fx.manager.req(bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&st), ["starts_at", "ends_at"]);
    let mut bad = fx.schedule_req("t", start, start);
    bad.ends_at = Some(Timestamp { seconds: i64::MAX / 2, nanos: 0 });
    let st = assert_err(
        fx.schedules().create_schedule(fx.manager.req(bad)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&st), ["ends_at"]);

    // Moving only the end before the start is refused; moving both is fine.
    let msg = pb::UpdateScheduleRequest {
        schedule_id: s.id.clone(),
        ends_at: Some(ts(start - Duration::hours(1))),
        update_mask: mask(&["ends_at"]),
        ..Default::default()
    };
    let st = assert_err(
        fx.schedules().update_schedule(fx.manager.req(msg)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&st), ["ends_at"]);
    let msg = pb::UpdateScheduleRequest {
        schedule_id: s.id.clone(),
        starts_at: Some(ts(start + Duration::days(10))),
        update_mask: mask(&["starts_at"]),
        ..Default::default()
    };
    let st = assert_err(
        fx.schedules().update_schedule(fx.manager.req(msg)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&st), ["starts_at"]);
    let msg = pb::UpdateScheduleRequest {
        schedule_id: s.id.clone(),
        title: "소독 (연기)".into(),
        starts_at: Some(ts(start + Duration::days(10))),
        ends_at: Some(ts(start + Duration::days(10) + Duration::hours(1))),
        update_mask: mask(&["title", "starts_at", "ends_at"]),
        ..Default::default()
    };
    let u = fx.schedules().update_schedule(fx.manager.req(msg)).await.unwrap().into_inner().schedule.unwrap();
    assert_eq!((u.title.as_str(), u.location.as_str()), ("소독 (연기)", "관리동 2층"));
    assert_eq!(at(&u.starts_at).timestamp(), (start + Duration::days(10)).timestamp());

    let mut msg = fx.schedule_req("재활용 수거", start, start);
    msg.request_id = "schedule-1".into();
    let a = fx.schedules().create_schedule(fx.manager.req(msg.clone())).await.unwrap().into_inner();
    let b = fx.schedules().create_schedule(fx.manager.req(msg)).await.unwrap().into_inner();
    assert_eq!(a, b);

    let del = pb::DeleteScheduleRequest { schedule_id: s.id.clone() };
    fx.schedules().delete_schedule(fx.manager.req(del.clone())).await.unwrap();
    assert_err(fx.schedules().delete_schedule(fx.manager.req(del)).await, Code::NotFound, "SCHEDULE_NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------
// Polls

#[sqlx::test]
async fn polls_count_votes_show_my_vote_and_close(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let p = fx.poll("놀이터 리모델링에 찬성하십니까?").await;
    assert_eq!(p.options.iter().map(|o| o.text.as_str()).collect::<Vec<_>>(), ["찬성", "반대"]);
    assert_eq!((p.state, p.total_votes, p.my_option_id.as_str()), (pb::PollState::Open as i32, 0, ""));

    let after = fx.vote(&fx.member, &p, 0).await.unwrap();
    assert_eq!(
        (after.total_votes, after.options[0].votes, after.my_option_id.clone()),
        (1, 1, p.options[0].id.clone())
    );
    fx.vote(&fx.filer, &p, 1).await.unwrap();
    fx.vote(&fx.manager, &p, 1).await.unwrap();
    // A second vote, for the same or another option, is refused.
    assert_err(fx.vote(&fx.member, &p, 1).await, Code::AlreadyExists, "ALREADY_VOTED");
    assert_err(fx.vote(&fx.member, &p, 0).await, Code::AlreadyExists, "ALREADY_VOTED");

    let got = fx.polls().get_poll(fx.filer.req(pb::GetPollRequest { poll_id: p.id.clone() })).await.unwrap();
    let got = got.into_inner().poll.unwrap();
    assert_eq!(got.options.iter().map(|o| o.votes).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((got.total_votes, got.my_option_id.clone()), (3, p.options[1].id.clone()));
    let rows = fx.vote_rows(&p.id).await;
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 3);
    // The admin sees results but has no vote.
    let got = fx.polls().get_poll(fx.admin.req(pb::GetPollRequest { poll_id: p.id.clone() })).await.unwrap();
    assert_eq!(got.into_inner().poll.unwrap().my_option_id, "");

    // An option of another poll.
    let q = fx.poll("두 번째 투표").await;
    let msg = pb::CastVoteRequest { poll_id: q.id.clone(), option_id: p.options[0].id.clone(), ..Default::default() };
    let s = assert_err(fx.polls().cast_vote(fx.member.req(msg)).await, Code::InvalidArgument, "POLL_OPTION_NOT_FOUND");
    assert_eq!(violations(&s), ["option_id"]);
    let msg = pb::CastVoteRequest { poll_id: q.id.clone(), option_id: "x".into(), ..Default::default() };
    let s = assert_err(fx.polls().cast_vote(fx.member.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["option_id"]);

    // Close: no more votes; closing again changes nothing.
    let closed = fx.polls().close_poll(fx.manager.req(pb::ClosePollRequest { poll_id: q.id.clone() })).await.unwrap();
    let closed = closed.into_inner().poll.unwrap();
    assert_eq!(closed.state, pb::PollState::Closed as i32);
    assert!(closed.closed_at.is_some());
    assert_err(fx.vote(&fx.member, &q, 0).await, Code::FailedPrecondition, "POLL_CLOSED");
    let again = fx.polls().close_poll(fx.admin.req(pb::ClosePollRequest { poll_id: q.id.clone() })).await.unwrap();
    assert_eq!(again.into_inner().poll.unwrap().closed_at, closed.closed_at);

    // Past its deadline, a poll is closed without anyone closing it.
    let r = fx.poll("기한 지난 투표").await;
    sqlx::query("update community_polls set closes_at = now() - interval '1 second' where id = $1")
        .bind(Uuid::parse_str(&r.id).unwrap())
        .execute(&fx.app.state.db)
        .await
        .unwrap();
    assert_err(fx.vote(&fx.member, &r, 0).await, Code::FailedPrecondition, "POLL_CLOSED");
    let got = fx.polls().get_poll(fx.member.req(pb::GetPollRequest { poll_id: r.id.clone() })).await.unwrap();
    assert_eq!(got.into_inner().poll.unwrap().state, pb::PollState::Closed as i32);
    assert!(fx.vote_rows(&r.id).await.is_empty() && fx.vote_rows(&q.id).await.is_empty());

    // ListPolls by state, newest first.
    let list = |state: pb::PollState| {
        let mut c = fx.polls();
        let req = fx.member.req(pb::ListPollsRequest {
            community_id: fx.community.clone(),
            state: state as i32,
            page_size: 0,
            page_token: String::new(),
        });
        async move { c.list_polls(req).await.unwrap().into_inner().polls.into_iter().map(|p| p.id).collect::<Vec<_>>() }
    };
    assert_eq!(list(pb::PollState::Unspecified).await, [r.id.clone(), q.id.clone(), p.id.clone()]);
    assert_eq!(list(pb::PollState::Open).await, [p.id.as_str()]);
    assert_eq!(list(pb::PollState::Closed).await, [r.id.clone(), q.id.clone()]);
    let mut msg = pb::ListPollsRequest { community_id: fx.community.clone(), page_size: 1, ..Default::default() };
    let first = fx.polls().list_polls(fx.member.req(msg.clone())).await.unwrap().into_inner();
    assert_eq!(first.polls.len(), 1);
    msg.page_token = first.next_page_token;
    let second = fx.polls().list_polls(fx.member.req(msg.clone())).await.unwrap().into_inner();
    assert_eq!(second.polls[0].id, q.id);
    msg.state = pb::PollState::Open as i32;
    assert_err(fx.polls().list_polls(fx.member.req(msg)).await, Code::InvalidArgument, "PAGE_TOKEN_INVALID");

    let text = fx.app.metrics().await;
    assert!(text.contains("maru_poll_votes_total"), "{text}");
}

#[sqlx::test]
async fn poll_input_is_validated(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let mut msg = fx.poll_req("", &["하나"]);
    msg.closes_at = Some(ts(Utc::now() - Duration::minutes(1)));
    let s = assert_err(fx.polls().create_poll(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["question", "options", "closes_at"]);
    let msg = fx.poll_req("q", &["Yes", "No", " yes ", ""]);
    let s = assert_err(fx.polls().create_poll(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["options[2]", "options[3]"]);
    let eleven: Vec<String> = (0..11).map(|i| format!("option {i}")).collect();
    let mut msg = fx.poll_req("q", &[]);
    msg.options = eleven;
    let s = assert_err(fx.polls().create_poll(fx.manager.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["options"]);
    let msg = pb::ListPollsRequest { community_id: fx.community.clone(), state: 9, ..Default::default() };
    let s = assert_err(fx.polls().list_polls(fx.member.req(msg)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["state"]);

    // No deadline: open until closed. Ten options is fine. request_id replays.
    let ten: Vec<String> = (0..10).map(|i| format!("option {i}")).collect();
    let mut msg = fx.poll_req("열 가지", &[]);
    msg.options = ten;
    msg.closes_at = None;
    msg.request_id = "poll-1".into();
    let a = fx.polls().create_poll(fx.manager.req(msg.clone())).await.unwrap().into_inner().poll.unwrap();
    assert_eq!((a.options.len(), a.closes_at, a.state), (10, None, pb::PollState::Open as i32));
    let b = fx.polls().create_poll(fx.manager.req(msg)).await.unwrap().into_inner().poll.unwrap();
    assert_eq!(a.id, b.id);
    let n: i64 = sqlx::query_scalar("select count(*) from community_polls").fetch_one(&fx.app.state.db).await.unwrap();
    assert_eq!(n, 1);
}

#[sqlx::test]
async fn one_member_voting_100_times_at_once_counts_once(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let p = fx.poll("동시에 100번").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let mut client = PollServiceClient::new(fx.app.channel.clone());
        let req = fx.member.req(pb::CastVoteRequest {
            poll_id: p.id.clone(),
            option_id: p.options[i % 2].id.clone(),
            ..Default::default()
        });
        tasks.push(tokio::spawn(async move { client.cast_vote(req).await }));
    }
    let (mut ok, mut dup) = (0, 0);
    for r in futures::future::join_all(tasks).await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!((s.code(), reason(&s).as_str()), (Code::AlreadyExists, "ALREADY_VOTED"), "{s:?}");
                dup += 1;
            }
        }
    }
    assert_eq!((ok, dup), (1, 99));
    let rows = fx.vote_rows(&p.id).await;
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 1);
    let got = fx.polls().get_poll(fx.member.req(pb::GetPollRequest { poll_id: p.id.clone() })).await.unwrap();
    assert_eq!(got.into_inner().poll.unwrap().total_votes, 1);
    assert!(fx.app.metrics().await.contains("community_poll_votes_poll_id_user_id_key"));
}

/// `n` APPROVED members of `community` with access tokens, made directly (no password hashing).
async fn voters(app: &TestApp, community: &str, n: usize) -> Vec<TestUser> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = Uuid::now_v7();
        let handle = format!("voter{i}");
        sqlx::query(
            "insert into users (id, handle, email, password_hash, display_name) values ($1, $2, $3, 'x', 'Voter')",
        )
        .bind(id)
        .bind(&handle)
        .bind(format!("{handle}@example.com"))
        .execute(&app.state.db)
        .await
        .unwrap();
        let token = app.session_token(id, maru::caller::Role::User).await;
        let user = TestUser { id: id.to_string(), handle, token, refresh: String::new() };
        app.add_member(community, &user, "APPROVED", "MEMBER").await;
        out.push(user);
    }
    out
}

#[sqlx::test]
async fn a_hundred_members_voting_at_once_are_all_counted(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let mut req = fx.poll_req("100명 동시 투표", &["1번", "2번", "3번"]);
    req.closes_at = None;
    let p = fx.polls().create_poll(fx.manager.req(req)).await.unwrap().into_inner().poll.unwrap();
    let voters = voters(&fx.app, &fx.community, 100).await;
    let mut tasks = Vec::new();
    for (i, v) in voters.iter().enumerate() {
        let mut client = PollServiceClient::new(fx.app.channel.clone());
        let req = v.req(pb::CastVoteRequest {
            poll_id: p.id.clone(),
            option_id: p.options[i % 3].id.clone(),
            ..Default::default()
        });
        tasks.push(tokio::spawn(async move { client.cast_vote(req).await }));
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap().expect("every member's first vote counts");
    }
    let got = fx.polls().get_poll(fx.member.req(pb::GetPollRequest { poll_id: p.id.clone() })).await.unwrap();
    let got = got.into_inner().poll.unwrap();
    let counts: Vec<i64> = got.options.iter().map(|o| o.votes).collect();
    assert_eq!(counts, [34, 33, 33]);
    assert_eq!(got.total_votes, 100);
    let rows = fx.vote_rows(&p.id).await;
    for o in &got.options {
        let stored = rows.iter().find(|(id, _)| *id == o.id).map_or(0, |(_, n)| *n);
        assert_eq!(o.votes, stored, "option {} equals its rows", o.text);
    }
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 100);
}

#[sqlx::test]
async fn a_vote_racing_close_poll_is_counted_only_if_it_committed_first(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let p = fx.poll("마감 경쟁").await;
    let voters = voters(&fx.app, &fx.community, 30).await;
    let mut tasks = Vec::new();
    for v in &voters {
        let mut client = PollServiceClient::new(fx.app.channel.clone());
        let req = v.req(pb::CastVoteRequest {
            poll_id: p.id.clone(),
            option_id: p.options[0].id.clone(),
            ..Default::default()
        });
        tasks.push(tokio::spawn(async move { client.cast_vote(req).await.map(|_| ()) }));
    }
    let mut closer = fx.polls();
    let close = closer.close_poll(fx.manager.req(pb::ClosePollRequest { poll_id: p.id.clone() }));
    let (closed, results) = tokio::join!(close, futures::future::join_all(tasks));
    let closed = closed.unwrap().into_inner().poll.unwrap();
    let mut ok = 0;
    for r in results {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err(s) => assert_eq!((s.code(), reason(&s).as_str()), (Code::FailedPrecondition, "POLL_CLOSED")),
        }
    }
    // Every vote accepted had committed when the close did (its result, read after the close,
    // already counts them all), and nothing is counted after it.
    assert_eq!(closed.total_votes, ok);
    assert_err(fx.vote(&voters[0], &p, 1).await, Code::FailedPrecondition, "POLL_CLOSED");
    assert_eq!(fx.vote_rows(&p.id).await.iter().map(|(_, n)| n).sum::<i64>(), ok);
}

// ---------------------------------------------------------------------------------------------
// Authorization matrix

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateNotice,
    GetNotice,
    ListNotices,
    UpdateNotice,
    DeleteNotice,
    FileComplaint,
    GetComplaint,
    ListComplaints,
    UpdateComplaintStatus,
    WithdrawComplaint,
    CreateContact,
    ListContacts,
    UpdateContact,
    DeleteContact,
    CreateSchedule,
    ListSchedules,
    UpdateSchedule,
    DeleteSchedule,
    CreatePoll,
    GetPoll,
    ListPolls,
    ClosePoll,
    CastVote,
}

/// Calls `rpc` as `who` on fresh content of the fixture's community (made by its manager; a
/// complaint is filed by `filer`, another member).
async fn call(fx: &Fx, rpc: Rpc, who: Who) -> Result<(), Status> {
    let now = Utc::now();
    match rpc {
        Rpc::CreateNotice => fx.notices().create_notice(fx.req(who, fx.notice_req("n", false))).await.map(drop),
        Rpc::GetNotice => {
            let n = fx.notice("n", false).await;
            fx.notices().get_notice(fx.req(who, pb::GetNoticeRequest { notice_id: n.id })).await.map(drop)
        }
        Rpc::ListNotices => {
            let msg = pb::ListNoticesRequest { community_id: fx.community.clone(), ..Default::default() };
            fx.notices().list_notices(fx.req(who, msg)).await.map(drop)
        }
        Rpc::UpdateNotice => {
            let n = fx.notice("n", false).await;
            let msg = pb::UpdateNoticeRequest {
                notice_id: n.id,
                pinned: true,
                update_mask: mask(&["pinned"]),
                ..Default::default()
            };
            fx.notices().update_notice(fx.req(who, msg)).await.map(drop)
        }
        Rpc::DeleteNotice => {
            let n = fx.notice("n", false).await;
            fx.notices().delete_notice(fx.req(who, pb::DeleteNoticeRequest { notice_id: n.id })).await.map(drop)
        }
        Rpc::FileComplaint => fx.complaints().file_complaint(fx.req(who, fx.complaint_req("c"))).await.map(drop),
        Rpc::GetComplaint => {
            let c = fx.complaint_by(&fx.filer, "c").await;
            fx.complaints().get_complaint(fx.req(who, pb::GetComplaintRequest { complaint_id: c.id })).await.map(drop)
        }
        Rpc::ListComplaints => {
            let msg = pb::ListComplaintsRequest { community_id: fx.community.clone(), ..Default::default() };
            fx.complaints().list_complaints(fx.req(who, msg)).await.map(drop)
        }
        Rpc::UpdateComplaintStatus => {
            let c = fx.complaint_by(&fx.filer, "c").await;
            let msg = pb::UpdateComplaintStatusRequest {
                complaint_id: c.id,
                status: pb::ComplaintStatus::InProgress as i32,
                reply: String::new(),
            };
            fx.complaints().update_complaint_status(fx.req(who, msg)).await.map(drop)
        }
        Rpc::WithdrawComplaint => {
            let c = fx.complaint_by(&fx.filer, "c").await;
            let msg = pb::WithdrawComplaintRequest { complaint_id: c.id };
            fx.complaints().withdraw_complaint(fx.req(who, msg)).await.map(drop)
        }
        Rpc::CreateContact => fx.contacts().create_contact(fx.req(who, fx.contact_req("c", "k"))).await.map(drop),
        Rpc::ListContacts => {
            let msg = pb::ListContactsRequest { community_id: fx.community.clone(), ..Default::default() };
            fx.contacts().list_contacts(fx.req(who, msg)).await.map(drop)
        }
        Rpc::UpdateContact => {
            let c = fx.contact("c", "k").await;
            let msg = pb::UpdateContactRequest {
                contact_id: c.id,
                name: "d".into(),
                update_mask: mask(&["name"]),
                ..Default::default()
            };
            fx.contacts().update_contact(fx.req(who, msg)).await.map(drop)
        }
        Rpc::DeleteContact => {
            let c = fx.contact("c", "k").await;
            fx.contacts().delete_contact(fx.req(who, pb::DeleteContactRequest { contact_id: c.id })).await.map(drop)
        }
        Rpc::CreateSchedule => {
            let msg = fx.schedule_req("s", now, now + Duration::hours(1));
            fx.schedules().create_schedule(fx.req(who, msg)).await.map(drop)
        }
        Rpc::ListSchedules => {
            let msg = pb::ListSchedulesRequest {
                community_id: fx.community.clone(),
                from: Some(ts(now - Duration::days(1))),
                to: Some(ts(now + Duration::days(1))),
                ..Default::default()
            };
            fx.schedules().list_schedules(fx.req(who, msg)).await.map(drop)
        }
        Rpc::UpdateSchedule => {
            let s = fx.schedule("s", now, now + Duration::hours(1)).await;
            let msg = pb::UpdateScheduleRequest {
                schedule_id: s.id,
                location: "x".into(),
                update_mask: mask(&["location"]),
                ..Default::default()
            };
            fx.schedules().update_schedule(fx.req(who, msg)).await.map(drop)
        }
        Rpc::DeleteSchedule => {
            let s = fx.schedule("s", now, now + Duration::hours(1)).await;
            fx.schedules().delete_schedule(fx.req(who, pb::DeleteScheduleRequest { schedule_id: s.id })).await.map(drop)
        }
        Rpc::CreatePoll => fx.polls().create_poll(fx.req(who, fx.poll_req("p", &["a", "b"]))).await.map(drop),
        Rpc::GetPoll => {
            let p = fx.poll("p").await;
            fx.polls().get_poll(fx.req(who, pb::GetPollRequest { poll_id: p.id })).await.map(drop)
        }
        Rpc::ListPolls => {
            let msg = pb::ListPollsRequest { community_id: fx.community.clone(), ..Default::default() };
            fx.polls().list_polls(fx.req(who, msg)).await.map(drop)
        }
        Rpc::ClosePoll => {
            let p = fx.poll("p").await;
            fx.polls().close_poll(fx.req(who, pb::ClosePollRequest { poll_id: p.id })).await.map(drop)
        }
        Rpc::CastVote => {
            let p = fx.poll("p").await;
            let msg = pb::CastVoteRequest { poll_id: p.id, option_id: p.options[0].id.clone(), ..Default::default() };
            fx.polls().cast_vote(fx.req(who, msg)).await.map(drop)
        }
    }
}

/// The reason a refusal carries, given its code.
fn expected_reason(rpc: Rpc, who: Who, code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "TOKEN_MISSING",
        Code::NotFound => match rpc {
            Rpc::GetNotice | Rpc::UpdateNotice | Rpc::DeleteNotice => "NOTICE_NOT_FOUND",
            Rpc::GetComplaint | Rpc::UpdateComplaintStatus | Rpc::WithdrawComplaint => "COMPLAINT_NOT_FOUND",
            Rpc::UpdateContact | Rpc::DeleteContact => "CONTACT_NOT_FOUND",
            Rpc::UpdateSchedule | Rpc::DeleteSchedule => "SCHEDULE_NOT_FOUND",
            _ => "POLL_NOT_FOUND",
        },
        Code::PermissionDenied if rpc == Rpc::WithdrawComplaint => "COMPLAINT_FILER_REQUIRED",
        Code::PermissionDenied if who == Who::Member => "MANAGER_REQUIRED",
        Code::PermissionDenied => "MEMBERSHIP_REQUIRED",
        _ => "",
    }
}

#[sqlx::test]
async fn authorization_matrix(pool: PgPool) {
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD, Unauthenticated as UA};
    let fx = Fx::new(pool).await;
    #[rustfmt::skip]
    let table: &[(Rpc, [Code; 7])] = &[
        //                        anonymous, non-member, pending, member, other manager, manager, admin
        (Rpc::CreateNotice,          [UA, PD, PD, PD, PD, OK, OK]),
        (Rpc::GetNotice,             [UA, NF, NF, OK, NF, OK, OK]),
        (Rpc::ListNotices,           [UA, PD, PD, OK, PD, OK, OK]),
        (Rpc::UpdateNotice,          [UA, NF, NF, PD, NF, OK, OK]),
        (Rpc::DeleteNotice,          [UA, NF, NF, PD, NF, OK, OK]),
        // Filing is an act in one's own name: an admin must be a member.
        (Rpc::FileComplaint,         [UA, PD, PD, OK, PD, OK, PD]),
        // Someone else's complaint: only the office sees it; other members get NOT_FOUND.
        (Rpc::GetComplaint,          [UA, NF, NF, NF, NF, OK, OK]),
        (Rpc::ListComplaints,        [UA, PD, PD, OK, PD, OK, OK]),
        (Rpc::UpdateComplaintStatus, [UA, NF, NF, NF, NF, OK, OK]),
        // Only the filer withdraws (tested separately); the office is told so, others see nothing.
        (Rpc::WithdrawComplaint,     [UA, NF, NF, NF, NF, PD, PD]),
        (Rpc::CreateContact,         [UA, PD, PD, PD, PD, OK, OK]),
        (Rpc::ListContacts,          [UA, PD, PD, OK, PD, OK, OK]),
        (Rpc::UpdateContact,         [UA, NF, NF, PD, NF, OK, OK]),
        (Rpc::DeleteContact,         [UA, NF, NF, PD, NF, OK, OK]),
        (Rpc::CreateSchedule,        [UA, PD, PD, PD, PD, OK, OK]),
        (Rpc::ListSchedules,         [UA, PD, PD, OK, PD, OK, OK]),
        (Rpc::UpdateSchedule,        [UA, NF, NF, PD, NF, OK, OK]),
        (Rpc::DeleteSchedule,        [UA, NF, NF, PD, NF, OK, OK]),
        (Rpc::CreatePoll,            [UA, PD, PD, PD, PD, OK, OK]),
        (Rpc::GetPoll,               [UA, NF, NF, OK, NF, OK, OK]),
        (Rpc::ListPolls,             [UA, PD, PD, OK, PD, OK, OK]),
        (Rpc::ClosePoll,             [UA, NF, NF, PD, NF, OK, OK]),
        // Voting is an act in one's own name: an admin must be a member.
        (Rpc::CastVote,              [UA, NF, NF, OK, NF, OK, PD]),
    ];
    // Every content RPC of the proto is in the table.
    let methods = maru::grpc::methods()
        .values()
        .filter(|m| {
            ["NoticeService", "ComplaintService", "ContactService", "ScheduleService", "PollService"]
                .iter()
                .any(|s| m.service == format!("maru.v1.{s}"))
        })
        .count();
    assert_eq!(methods, table.len());

    let mut failures = Vec::new();
    for (rpc, codes) in table {
        for (who, want) in WHO.iter().zip(codes) {
            let got = call(&fx, *rpc, *who).await;
            let (code, why) = match &got {
                Ok(()) => (Code::Ok, String::new()),
                Err(s) => (s.code(), reason(s)),
            };
            let want_reason = expected_reason(*rpc, *who, *want);
            if code != *want || why != want_reason {
                failures.push(format!("{rpc:?} as {who:?}: got {code:?} {why}, want {want:?} {want_reason}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[sqlx::test]
async fn content_of_an_unknown_community_or_id_is_not_found(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let unknown = Uuid::new_v4().to_string();
    let msg = pb::ListNoticesRequest { community_id: unknown.clone(), ..Default::default() };
    assert_err(fx.notices().list_notices(fx.admin.req(msg)).await, Code::NotFound, "COMMUNITY_NOT_FOUND");
    let r = fx.polls().get_poll(fx.admin.req(pb::GetPollRequest { poll_id: unknown.clone() })).await;
    assert_err(r, Code::NotFound, "POLL_NOT_FOUND");
    let msg = pb::CastVoteRequest { poll_id: unknown.clone(), option_id: unknown.clone(), ..Default::default() };
    assert_err(fx.polls().cast_vote(fx.member.req(msg)).await, Code::NotFound, "POLL_NOT_FOUND");
    let msg = pb::UpdateContactRequest {
        contact_id: unknown.clone(),
        update_mask: mask(&["category"]),
        ..Default::default()
    };
    assert_err(fx.contacts().update_contact(fx.manager.req(msg)).await, Code::NotFound, "CONTACT_NOT_FOUND");
    let msg = pb::UpdateScheduleRequest {
        schedule_id: unknown.clone(),
        update_mask: mask(&["location"]),
        ..Default::default()
    };
    assert_err(fx.schedules().update_schedule(fx.manager.req(msg)).await, Code::NotFound, "SCHEDULE_NOT_FOUND");
    // A manager of another community learns nothing about this one's content.
    let n = fx.notice("비공개", false).await;
    let r = fx.notices().get_notice(fx.other_manager.req(pb::GetNoticeRequest { notice_id: n.id })).await;
    assert_err(r, Code::NotFound, "NOTICE_NOT_FOUND");
}

#[sqlx::test]
async fn malformed_ids_are_invalid_argument_naming_the_field_for_every_rpc(pool: PgPool) {
    let fx = Fx::new(pool).await;
    let bad = || "not-a-uuid".to_string();
    let now = Utc::now();
    let range = (Some(ts(now)), Some(ts(now + Duration::days(1))));
    let results: Vec<(&str, Result<(), Status>)> = vec![
        (
            "community_id",
            fx.notices()
                .create_notice(
                    fx.manager.req(pb::CreateNoticeRequest { community_id: bad(), ..fx.notice_req("t", false) }),
                )
                .await
                .map(drop),
        ),
        (
            "notice_id",
            fx.notices().get_notice(fx.manager.req(pb::GetNoticeRequest { notice_id: bad() })).await.map(drop),
        ),
        (
            "community_id",
            fx.notices()
                .list_notices(fx.manager.req(pb::ListNoticesRequest { community_id: bad(), ..Default::default() }))
                .await
                .map(drop),
        ),
        (
            "notice_id",
            fx.notices()
                .update_notice(fx.manager.req(pb::UpdateNoticeRequest {
                    notice_id: bad(),
                    update_mask: mask(&["pinned"]),
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "notice_id",
            fx.notices().delete_notice(fx.manager.req(pb::DeleteNoticeRequest { notice_id: bad() })).await.map(drop),
        ),
        (
            "community_id",
            fx.complaints()
                .file_complaint(
                    fx.member.req(pb::FileComplaintRequest { community_id: bad(), ..fx.complaint_req("t") }),
                )
                .await
                .map(drop),
        ),
        (
            "complaint_id",
            fx.complaints()
                .get_complaint(fx.manager.req(pb::GetComplaintRequest { complaint_id: bad() }))
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.complaints()
                .list_complaints(
                    fx.manager.req(pb::ListComplaintsRequest { community_id: bad(), ..Default::default() }),
                )
                .await
                .map(drop),
        ),
        (
            "status",
            fx.complaints()
                .list_complaints(fx.manager.req(pb::ListComplaintsRequest {
                    community_id: fx.community.clone(),
                    status: 99,
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "complaint_id",
            fx.complaints()
                .update_complaint_status(fx.manager.req(pb::UpdateComplaintStatusRequest {
                    complaint_id: bad(),
                    status: 2,
                    reply: String::new(),
                }))
                .await
                .map(drop),
        ),
        (
            "complaint_id",
            fx.complaints()
                .withdraw_complaint(fx.member.req(pb::WithdrawComplaintRequest { complaint_id: bad() }))
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.contacts()
                .create_contact(
                    fx.manager.req(pb::CreateContactRequest { community_id: bad(), ..fx.contact_req("n", "k") }),
                )
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.contacts()
                .list_contacts(fx.manager.req(pb::ListContactsRequest { community_id: bad(), ..Default::default() }))
                .await
                .map(drop),
        ),
        (
            "page_size",
            fx.contacts()
                .list_contacts(fx.manager.req(pb::ListContactsRequest {
                    community_id: fx.community.clone(),
                    page_size: -1,
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "page_token",
            fx.contacts()
                .list_contacts(fx.manager.req(pb::ListContactsRequest {
                    community_id: fx.community.clone(),
                    page_token: "forged.token".into(),
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "contact_id",
            fx.contacts()
                .update_contact(fx.manager.req(pb::UpdateContactRequest {
                    contact_id: bad(),
                    update_mask: mask(&["category"]),
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "contact_id",
            fx.contacts()
                .delete_contact(fx.manager.req(pb::DeleteContactRequest { contact_id: bad() }))
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.schedules()
                .create_schedule(
                    fx.manager.req(pb::CreateScheduleRequest { community_id: bad(), ..fx.schedule_req("t", now, now) }),
                )
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.schedules()
                .list_schedules(fx.manager.req(pb::ListSchedulesRequest {
                    community_id: bad(),
                    from: range.0,
                    to: range.1,
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "schedule_id",
            fx.schedules()
                .update_schedule(fx.manager.req(pb::UpdateScheduleRequest {
                    schedule_id: bad(),
                    update_mask: mask(&["location"]),
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
        (
            "schedule_id",
            fx.schedules()
                .delete_schedule(fx.manager.req(pb::DeleteScheduleRequest { schedule_id: bad() }))
                .await
                .map(drop),
        ),
        (
            "community_id",
            fx.polls()
                .create_poll(
                    fx.manager.req(pb::CreatePollRequest { community_id: bad(), ..fx.poll_req("q", &["a", "b"]) }),
                )
                .await
                .map(drop),
        ),
        ("poll_id", fx.polls().get_poll(fx.manager.req(pb::GetPollRequest { poll_id: bad() })).await.map(drop)),
        (
            "community_id",
            fx.polls()
                .list_polls(fx.manager.req(pb::ListPollsRequest { community_id: bad(), ..Default::default() }))
                .await
                .map(drop),
        ),
        ("poll_id", fx.polls().close_poll(fx.manager.req(pb::ClosePollRequest { poll_id: bad() })).await.map(drop)),
        (
            "poll_id",
            fx.polls()
                .cast_vote(fx.member.req(pb::CastVoteRequest {
                    poll_id: bad(),
                    option_id: Uuid::new_v4().to_string(),
                    ..Default::default()
                }))
                .await
                .map(drop),
        ),
    ];
    for (i, (field, r)) in results.into_iter().enumerate() {
        let s = r.expect_err(&format!("case {i} ({field}) must fail"));
        assert_eq!(s.code(), Code::InvalidArgument, "case {i}: {s:?}");
        assert_eq!(violations(&s), [field], "case {i}");
    }
}

#[sqlx::test]
async fn a_retried_vote_with_a_request_id_gets_the_poll_not_already_voted(pool: PgPool) {
    // Issue 13 pt 5: a retry after a lost reply gets the poll with its vote counted.
    let fx = Fx::new(pool).await;
    let p = fx.poll("재시도 투표").await;
    let vote = |rid: &str, option: usize| pb::CastVoteRequest {
        poll_id: p.id.clone(),
        option_id: p.options[option].id.clone(),
        request_id: rid.into(),
    };
    let first = fx.polls().cast_vote(fx.member.req(vote("v-1", 1))).await.unwrap().into_inner().poll.unwrap();
    assert_eq!((first.total_votes, first.my_option_id.clone()), (1, p.options[1].id.clone()));
    let again = fx.polls().cast_vote(fx.member.req(vote("v-1", 1))).await.unwrap().into_inner().poll.unwrap();
    assert_eq!((again.total_votes, again.options[1].votes, again.my_option_id), (1, 1, p.options[1].id.clone()));
    assert_err(fx.polls().cast_vote(fx.member.req(vote("", 1))).await, Code::AlreadyExists, "ALREADY_VOTED");
    assert_err(fx.polls().cast_vote(fx.member.req(vote("v-1", 0))).await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    assert_eq!(fx.vote_rows(&p.id).await.iter().map(|(_, n)| n).sum::<i64>(), 1);
}
