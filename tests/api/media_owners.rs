//! Media attached to notices, complaints, teams and profiles (issue 18): each owner kind takes
//! media ids on its writes and shows the media (variant URLs) on its reads; the refusals name
//! the request field (wrong purpose, not READY, someone else's, already attached); the database
//! decides a race of two owners for one media; readers see the media exactly where they may
//! see the owner (a member who may not read a complaint does not get its photo via GetMedia).

use maru::grpc::pb;
use maru::grpc::pb::complaint_service_client::ComplaintServiceClient;
use maru::grpc::pb::notice_service_client::NoticeServiceClient;
use maru::grpc::pb::profile_service_client::ProfileServiceClient;
use maru::grpc::pb::team_service_client::TeamServiceClient;
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;
use crate::media::{api, create_req, error_meta, get, spawn};

/// A READY media of `who` uploaded for `purpose`.
async fn ready(app: &TestApp, who: &TestUser, purpose: pb::MediaPurpose) -> String {
    crate::media::ready_for(app, who, purpose).await
}

/// Rows of notices, complaints and teams.
async fn owner_rows(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from community_notices), (select count(*) from community_complaints),
                (select count(*) from teams)",
    )
    .fetch_one(&app.state.db)
    .await
    .unwrap()
}

/// A media of `who` for `purpose` that is still UPLOADING.
async fn uploading(app: &TestApp, who: &TestUser, purpose: pb::MediaPurpose) -> String {
    let mut req = create_req("image/jpeg", 1000);
    req.purpose = purpose as i32;
    api(app).create_upload(who.req(req)).await.unwrap().into_inner().media_id
}

fn ids(media: &[pb::Media]) -> Vec<String> {
    media.iter().map(|m| m.id.clone()).collect()
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

/// An apartment with a manager, two members and an outsider.
struct Apt {
    app: TestApp,
    community: String,
    manager: TestUser,
    kim: TestUser,
    lee: TestUser,
    outsider: TestUser,
}

impl Apt {
    async fn new(pool: PgPool) -> Self {
        let app = spawn(pool, |_| {}).await;
        let community = app.community("APARTMENT", "판교 푸르지오").await;
        let manager = app.user("office").await;
        let kim = app.user("kim").await;
        let lee = app.user("lee").await;
        let outsider = app.user("outsider").await;
        app.add_member(&community, &manager, "APPROVED", "MANAGER").await;
        app.add_member(&community, &kim, "APPROVED", "MEMBER").await;
        app.add_member(&community, &lee, "APPROVED", "MEMBER").await;
        Self { app, community, manager, kim, lee, outsider }
    }
    fn notices(&self) -> NoticeServiceClient<tonic::transport::Channel> {
        NoticeServiceClient::new(self.app.channel.clone())
    }
    fn complaints(&self) -> ComplaintServiceClient<tonic::transport::Channel> {
        ComplaintServiceClient::new(self.app.channel.clone())
    }
    fn notice_req(&self, title: &str, media: &[&str]) -> pb::CreateNoticeRequest {
        pb::CreateNoticeRequest {
            community_id: self.community.clone(),
            title: title.into(),
            body: "본문".into(),
            media_ids: media.iter().map(|m| (*m).to_owned()).collect(),
            ..Default::default()
        }
    }
    async fn notice(&self, who: &TestUser, title: &str, media: &[&str]) -> Result<pb::Notice, tonic::Status> {
        self.notices()
            .create_notice(who.req(self.notice_req(title, media)))
            .await
            .map(|r| r.into_inner().notice.unwrap())
    }
    async fn complaint(&self, who: &TestUser, title: &str, media: &[&str]) -> Result<pb::Complaint, tonic::Status> {
        let req = pb::FileComplaintRequest {
            community_id: self.community.clone(),
            title: title.into(),
            body: "B1 조명이 꺼져 있습니다".into(),
            media_ids: media.iter().map(|m| (*m).to_owned()).collect(),
            ..Default::default()
        };
        self.complaints().file_complaint(who.req(req)).await.map(|r| r.into_inner().complaint.unwrap())
    }
}

#[sqlx::test]
async fn a_notice_carries_its_images_and_members_see_them(pool: PgPool) {
    let apt = Apt::new(pool).await;
    let app = &apt.app;
    let (a, b) = (
        ready(app, &apt.manager, pb::MediaPurpose::NoticeImage).await,
        ready(app, &apt.manager, pb::MediaPurpose::NoticeImage).await,
    );
    let n = apt.notice(&apt.manager, "승강기 점검", &[&b, &a]).await.unwrap();
    assert_eq!(ids(&n.media), [b.clone(), a.clone()]);
    assert!(n.media.iter().all(|m| m.variants.len() == 2));
    // Members read it with its images, in GetNotice and ListNotices; the URLs work.
    let got = apt.notices().get_notice(apt.kim.req(pb::GetNoticeRequest { notice_id: n.id.clone() })).await;
    let got = got.unwrap().into_inner().notice.unwrap();
    assert_eq!(ids(&got.media), [b.clone(), a.clone()]);
    let thumb = got.media[0].variants.iter().find(|v| v.name == "thumbnail").unwrap();
    assert_eq!(reqwest::get(&thumb.url).await.unwrap().status(), 200);
    let page = apt
        .notices()
        .list_notices(apt.kim.req(pb::ListNoticesRequest { community_id: apt.community.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&page.notices[0].media), [b.clone(), a.clone()]);
    // GetMedia: members yes, outsiders no.
    assert_eq!(get(app, &apt.kim, &a).await.unwrap().id, a);
    assert_err(get(app, &apt.outsider, &a).await, Code::NotFound, "MEDIA_NOT_FOUND");

    // Another manager edits: the images on the notice may stay (not theirs), new ones must be
    // their own; the ones left out are detached.
    let deputy = app.user("deputy").await;
    app.add_member(&apt.community, &deputy, "APPROVED", "MANAGER").await;
    let c = ready(app, &deputy, pb::MediaPurpose::NoticeImage).await;
    let edit = |media: &[&str]| pb::UpdateNoticeRequest {
        notice_id: n.id.clone(),
        media_ids: media.iter().map(|m| (*m).to_owned()).collect(),
        update_mask: mask(&["media_ids"]),
        ..Default::default()
    };
    let u = apt.notices().update_notice(deputy.req(edit(&[&a, &c]))).await.unwrap().into_inner().notice.unwrap();
    assert_eq!(ids(&u.media), [a.clone(), c.clone()]);
    assert_eq!(u.title, "승강기 점검", "only the masked field changed");
    assert_err(get(app, &apt.kim, &b).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // b is free again: attachable to another notice by its owner.
    let other = apt.notice(&apt.manager, "다른 공지", &[&b]).await.unwrap();
    assert_eq!(ids(&other.media), [b.as_str()]);

    // Deleting the notice releases its images to the clean-up.
    apt.notices().delete_notice(apt.manager.req(pb::DeleteNoticeRequest { notice_id: n.id.clone() })).await.unwrap();
    let attached: Vec<(Option<String>,)> =
        sqlx::query_as("select attached_kind from media where id = any($1::uuid[]) order by id")
            .bind(vec![a.clone(), c.clone()])
            .fetch_all(&app.state.db)
            .await
            .unwrap();
    assert_eq!(attached, [(None,), (None,)]);
    sqlx::query("update media set created_at = now() - interval '3 days'").execute(&app.state.db).await.unwrap();
    let storage = maru::media::storage::Storage::from_settings(&app.state.settings.media).unwrap();
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 2, "a and c, b stays");
    assert_eq!(get(app, &apt.kim, &b).await.unwrap().id, b);
}

#[sqlx::test]
async fn a_complaints_photos_are_seen_only_by_who_sees_the_complaint(pool: PgPool) {
    let apt = Apt::new(pool).await;
    let app = &apt.app;
    let photo = ready(app, &apt.kim, pb::MediaPurpose::ComplaintImage).await;
    let c = apt.complaint(&apt.kim, "조명 고장", &[&photo]).await.unwrap();
    assert_eq!(ids(&c.media), [photo.as_str()]);
    // The filer and the office see it, with the photo.
    for who in [&apt.kim, &apt.manager] {
        let got = apt.complaints().get_complaint(who.req(pb::GetComplaintRequest { complaint_id: c.id.clone() })).await;
        assert_eq!(ids(&got.unwrap().into_inner().complaint.unwrap().media), [photo.as_str()]);
        assert_eq!(get(app, who, &photo).await.unwrap().variants.len(), 2);
    }
    let list = apt
        .complaints()
        .list_complaints(
            apt.manager.req(pb::ListComplaintsRequest { community_id: apt.community.clone(), ..Default::default() }),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(&list.complaints[0].media), [photo.as_str()]);
    // Another member of the same community does not see the complaint, nor its photo.
    assert_err(
        apt.complaints().get_complaint(apt.lee.req(pb::GetComplaintRequest { complaint_id: c.id.clone() })).await,
        Code::NotFound,
        "COMPLAINT_NOT_FOUND",
    );
    assert_err(get(app, &apt.lee, &photo).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_err(get(app, &apt.outsider, &photo).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // An admin does.
    let admin = app.admin_user("root").await;
    assert_eq!(get(app, &admin, &photo).await.unwrap().id, photo);
}

/// What one owner kind is, for the shared refusal and race tests: writes `media` (as its
/// field) to a new owner of `who`.
#[derive(Clone, Copy, Debug)]
enum Owner {
    Notice,
    Complaint,
    Team,
    Profile,
}

impl Owner {
    fn purpose(self) -> pb::MediaPurpose {
        match self {
            Owner::Notice => pb::MediaPurpose::NoticeImage,
            Owner::Complaint => pb::MediaPurpose::ComplaintImage,
            Owner::Team => pb::MediaPurpose::TeamImage,
            Owner::Profile => pb::MediaPurpose::Avatar,
        }
    }
    /// The request field refusals name for the first media.
    fn field(self) -> &'static str {
        match self {
            Owner::Notice | Owner::Complaint => "media_ids[0]",
            Owner::Team | Owner::Profile => "media_id",
        }
    }
}

/// The apartment (notices, complaints) and a club (teams), `kim` allowed to write each.
struct World {
    apt: Apt,
    club: String,
}

impl World {
    async fn new(pool: PgPool) -> Self {
        let apt = Apt::new(pool).await;
        let club = apt.app.community("CLUB", "코딩 동아리").await;
        apt.app.add_member(&club, &apt.kim, "APPROVED", "MEMBER").await;
        // Kim writes notices as a manager of the apartment too.
        sqlx::query("update community_memberships set role = 'MANAGER' where user_id = $1::uuid")
            .bind(&apt.kim.id)
            .execute(&apt.app.state.db)
            .await
            .unwrap();
        Self { apt, club }
    }

    fn teams(&self) -> TeamServiceClient<tonic::transport::Channel> {
        TeamServiceClient::new(self.apt.app.channel.clone())
    }

    fn propose_req(&self, title: &str, media: &str) -> pb::ProposeTeamRequest {
        pb::ProposeTeamRequest {
            community_id: self.club.clone(),
            title: title.into(),
            genre: pb::TeamGenre::Web as i32,
            roles: vec![pb::RoleSeats { role: pb::TeamRole::Backend as i32, capacity: 2, filled: 0 }],
            leader_role: pb::TeamRole::Backend as i32,
            media_id: media.into(),
            ..Default::default()
        }
    }

    /// Writes a new owner of `kind` (for a profile: `who`'s own) with `media`; the media ids
    /// it then shows.
    async fn write(&self, kind: Owner, who: &TestUser, title: &str, media: &str) -> Result<Vec<String>, tonic::Status> {
        let apt = &self.apt;
        match kind {
            Owner::Notice => apt.notice(who, title, &[media]).await.map(|n| ids(&n.media)),
            Owner::Complaint => apt.complaint(who, title, &[media]).await.map(|c| ids(&c.media)),
            Owner::Team => self
                .teams()
                .propose_team(who.req(self.propose_req(title, media)))
                .await
                .map(|r| ids(r.into_inner().team.unwrap().media.as_slice())),
            Owner::Profile => ProfileServiceClient::new(apt.app.channel.clone())
                .update_profile(who.req(pb::UpdateProfileRequest {
                    media_id: media.into(),
                    update_mask: mask(&["media_id"]),
                    ..Default::default()
                }))
                .await
                .map(|r| ids(r.into_inner().profile.unwrap().media.as_slice())),
        }
    }
}

#[sqlx::test]
async fn every_owner_kind_refuses_bad_media_naming_its_field(pool: PgPool) {
    let w = World::new(pool).await;
    let app = &w.apt.app;
    let (kim, lee) = (&w.apt.kim, &w.apt.lee);
    for (n, kind) in [Owner::Notice, Owner::Complaint, Owner::Team, Owner::Profile].into_iter().enumerate() {
        let title = |s: &str| format!("{kind:?} {s} {n}");
        let field = kind.field();
        // Uploaded for another purpose.
        let post_photo = ready(app, kim, pb::MediaPurpose::PostImage).await;
        let s = assert_err(
            w.write(kind, kim, &title("purpose"), &post_photo).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violations(&s), [field], "{kind:?}");
        assert!(s.message().contains("POST_IMAGE"), "{kind:?}: {}", s.message());
        // Someone else's.
        let theirs = ready(app, lee, kind.purpose()).await;
        let s =
            assert_err(w.write(kind, kim, &title("theirs"), &theirs).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), [field], "{kind:?}");
        // Not an id.
        let s = assert_err(w.write(kind, kim, &title("bad"), "nope").await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), [field], "{kind:?}");
        // Not READY.
        let early = uploading(app, kim, kind.purpose()).await;
        let s =
            assert_err(w.write(kind, kim, &title("early"), &early).await, Code::FailedPrecondition, "MEDIA_NOT_READY");
        assert_eq!(error_meta(&s, "field").as_deref(), Some(field), "{kind:?}");
        assert_eq!(error_meta(&s, "state").as_deref(), Some("UPLOADING"), "{kind:?}");
        // Attached once.
        let mine = ready(app, kim, kind.purpose()).await;
        assert_eq!(w.write(kind, kim, &title("first"), &mine).await.unwrap(), [mine.as_str()], "{kind:?}");
        if let Owner::Profile = kind {
            // The same picture again on the same profile is no change; elsewhere it is attached.
            assert_eq!(w.write(kind, kim, "", &mine).await.unwrap(), [mine.as_str()]);
            continue;
        }
        let s = assert_err(
            w.write(kind, kim, &title("second"), &mine).await,
            Code::FailedPrecondition,
            "MEDIA_ALREADY_ATTACHED",
        );
        assert_eq!(error_meta(&s, "field").as_deref(), Some(field), "{kind:?}");
    }
    // Refused writes wrote nothing: one notice, one complaint, one team.
    let counts = owner_rows(app).await;
    assert_eq!(counts, (1, 1, 1));
    // A post cannot take an avatar either: attached elsewhere or not, the purpose decides.
    let avatar: String = sqlx::query_scalar("select id::text from media where attached_kind = 'profile'")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let s =
        assert_err(w.write(Owner::Team, kim, "avatar team", &avatar).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert!(s.message().contains("AVATAR"), "{}", s.message());
}

#[sqlx::test]
async fn of_two_owners_attaching_the_same_media_at_once_exactly_one_wins(pool: PgPool) {
    let w = World::new(pool).await;
    let app = &w.apt.app;
    let kim = &w.apt.kim;
    for kind in [Owner::Notice, Owner::Complaint, Owner::Team] {
        for round in 0..3 {
            let m = ready(app, kim, kind.purpose()).await;
            let (ta, tb) = (format!("{kind:?} a{round}"), format!("{kind:?} b{round}"));
            let (a, b) = tokio::join!(w.write(kind, kim, &ta, &m), w.write(kind, kim, &tb, &m));
            let (won, lost): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
            assert_eq!((won.len(), lost.len()), (1, 1), "{kind:?} round {round}");
            assert_err(lost.into_iter().next().unwrap(), Code::FailedPrecondition, "MEDIA_ALREADY_ATTACHED");
            assert_eq!(won.into_iter().next().unwrap().unwrap(), [m.as_str()]);
        }
    }
    // Only the winners were written.
    let counts = owner_rows(app).await;
    assert_eq!(counts, (3, 3, 3));
}

#[sqlx::test]
async fn a_teams_image_is_seen_where_the_team_is(pool: PgPool) {
    let w = World::new(pool).await;
    let app = &w.apt.app;
    let kim = &w.apt.kim;
    let member = app.user("member").await;
    app.add_member(&w.club, &member, "APPROVED", "MEMBER").await;
    let president = app.user("president").await;
    app.add_member(&w.club, &president, "APPROVED", "MANAGER").await;
    let image = ready(app, kim, pb::MediaPurpose::TeamImage).await;
    let team =
        w.teams().propose_team(kim.req(w.propose_req("노트 앱", &image))).await.unwrap().into_inner().team.unwrap();
    assert_eq!(team.media.as_ref().map(|m| m.variants.len()), Some(2));
    // Pending approval: the leader and the managers see it, other members do not.
    assert_err(get(app, &member, &image).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_eq!(get(app, &president, &image).await.unwrap().id, image);
    w.teams()
        .approve_team(president.req(pb::ApproveTeamRequest { team_id: team.id.clone(), note: String::new() }))
        .await
        .unwrap();
    // Approved: the club's members see the team with its image; outsiders do not.
    assert_eq!(get(app, &member, &image).await.unwrap().id, image);
    assert_err(get(app, &w.apt.outsider, &image).await, Code::NotFound, "MEDIA_NOT_FOUND");
    let list = w
        .teams()
        .list_teams(member.req(pb::ListTeamsRequest { community_id: w.club.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.teams[0].media.as_ref().map(|m| m.id.clone()), Some(image.clone()));
    // UpdateTeam replaces it; the old one is detached and hidden from members.
    let next = ready(app, kim, pb::MediaPurpose::TeamImage).await;
    let edit = pb::UpdateTeamRequest {
        team_id: team.id.clone(),
        media_id: next.clone(),
        update_mask: mask(&["media_id"]),
        ..Default::default()
    };
    let u = w.teams().update_team(kim.req(edit)).await.unwrap().into_inner().team.unwrap();
    assert_eq!(u.media.map(|m| m.id), Some(next.clone()));
    assert_err(get(app, &member, &image).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // Only the leader edits; a member's edit attaches nothing.
    let theirs = ready(app, &member, pb::MediaPurpose::TeamImage).await;
    let edit = pb::UpdateTeamRequest {
        team_id: team.id.clone(),
        media_id: theirs,
        update_mask: mask(&["media_id"]),
        ..Default::default()
    };
    assert_err(w.teams().update_team(member.req(edit)).await, Code::PermissionDenied, "TEAM_LEADER_REQUIRED");
    // Deleting the team releases its image.
    w.teams().delete_team(kim.req(pb::DeleteTeamRequest { team_id: team.id.clone() })).await.unwrap();
    let kind: Option<String> = sqlx::query_scalar("select attached_kind from media where id = $1::uuid")
        .bind(&next)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(kind, None);
}

#[sqlx::test]
async fn a_profile_picture_is_shown_with_the_profile(pool: PgPool) {
    let apt = Apt::new(pool).await;
    let app = &apt.app;
    let profiles = || ProfileServiceClient::new(app.channel.clone());
    let pic = ready(app, &apt.kim, pb::MediaPurpose::Avatar).await;
    let set = |media: &str| pb::UpdateProfileRequest {
        media_id: media.into(),
        update_mask: mask(&["media_id"]),
        ..Default::default()
    };
    let p = profiles().update_profile(apt.kim.req(set(&pic))).await.unwrap().into_inner().profile.unwrap();
    assert_eq!(p.media.as_ref().map(|m| m.id.clone()), Some(pic.clone()));
    // Anyone reads the profile with its picture (anonymous too); anyone signed in GetMedia's it.
    let got = profiles().get_profile(pb::GetProfileRequest { handle: "kim".into() }).await.unwrap().into_inner();
    let m = got.profile.unwrap().media.expect("the picture");
    assert_eq!((m.id.as_str(), m.variants.len()), (pic.as_str(), 2));
    assert_eq!(get(app, &apt.outsider, &pic).await.unwrap().id, pic);
    // Replaced: the old one is detached (hidden from others), the new one shown.
    let next = ready(app, &apt.kim, pb::MediaPurpose::Avatar).await;
    let p = profiles().update_profile(apt.kim.req(set(&next))).await.unwrap().into_inner().profile.unwrap();
    assert_eq!(p.media.map(|m| m.id), Some(next.clone()));
    assert_err(get(app, &apt.outsider, &pic).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // Empty: none.
    let p = profiles().update_profile(apt.kim.req(set(""))).await.unwrap().into_inner().profile.unwrap();
    assert!(p.media.is_none());
    // A deleted account's picture is seen by nobody else.
    profiles().update_profile(apt.kim.req(set(&next))).await.unwrap();
    profiles().delete_account(apt.kim.req(pb::DeleteAccountRequest { confirm_handle: "kim".into() })).await.unwrap();
    assert_err(get(app, &apt.outsider, &next).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_err(get(app, &apt.lee, &next).await, Code::NotFound, "MEDIA_NOT_FOUND");
}

/// Files under `dir`, recursively (0 when it does not exist).
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { files_under(&p) } else { 1 }
        })
        .sum()
}

#[sqlx::test]
async fn a_deleted_accounts_media_go_after_the_grace_period(pool: PgPool) {
    let clock = maru::clock::TestClock::new(chrono::Utc::now());
    let mut settings = test_settings();
    settings.media.data_dir = crate::media::data_dir();
    settings.media.poll_interval_ms = 50;
    let app = TestApp::spawn_clock(pool, settings, clock.clone()).await;
    let grace = app.state.settings.media.owner_deleted_grace_h as i64;
    assert_eq!(grace, 720, "the default: 30 days");
    let feed = || pb::feed_service_client::FeedServiceClient::new(app.channel.clone());
    let post = |who: &TestUser, media: String| {
        let req =
            pb::CreatePostRequest { public: true, text: "사진".into(), media_ids: vec![media], ..Default::default() };
        let mut feed = feed();
        let req = who.req(req);
        async move { feed.create_post(req).await.unwrap() }
    };
    let (kim, lee, sam) = (app.user("kim").await, app.user("lee").await, app.user("sam").await);
    // Kim: a post photo and a profile picture, both attached; lee and sam: a post photo each.
    post(&kim, ready(&app, &kim, pb::MediaPurpose::PostImage).await).await;
    let avatar = ready(&app, &kim, pb::MediaPurpose::Avatar).await;
    ProfileServiceClient::new(app.channel.clone())
        .update_profile(kim.req(pb::UpdateProfileRequest {
            media_id: avatar,
            update_mask: mask(&["media_id"]),
            ..Default::default()
        }))
        .await
        .unwrap();
    post(&lee, ready(&app, &lee, pb::MediaPurpose::PostImage).await).await;
    post(&sam, ready(&app, &sam, pb::MediaPurpose::PostImage).await).await;
    let dir = |who: &TestUser| std::path::Path::new(&app.state.settings.media.data_dir).join("media").join(&who.id);
    assert_eq!((files_under(&dir(&kim)), files_under(&dir(&lee))), (6, 3), "original + 2 variants each");

    // Kim deletes the account; sam is suspended (which may be lifted: sam's media stay).
    ProfileServiceClient::new(app.channel.clone())
        .delete_account(kim.req(pb::DeleteAccountRequest { confirm_handle: "kim".into() }))
        .await
        .unwrap();
    sqlx::query("update users set deleted_at = now(), suspended_at = now() where handle = 'sam'")
        .execute(&app.state.db)
        .await
        .unwrap();
    let storage = maru::media::storage::Storage::from_settings(&app.state.settings.media).unwrap();
    let count = |owner: &TestUser| {
        let db = app.state.db.clone();
        let owner = owner.id.clone();
        async move {
            sqlx::query_scalar::<_, i64>("select count(*) from media where owner_id = $1::uuid")
                .bind(owner)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };

    // Within the grace period nothing goes.
    clock.advance(chrono::Duration::hours(grace - 1));
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 0);
    assert_eq!((count(&kim).await, files_under(&dir(&kim))), (2, 6));

    // After it, kim's two media go, rows, objects and variants; nobody else's.
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 2);
    assert_eq!((count(&kim).await, files_under(&dir(&kim))), (0, 0));
    assert_eq!((count(&lee).await, files_under(&dir(&lee))), (1, 3));
    assert_eq!((count(&sam).await, files_under(&dir(&sam))), (1, 3));
    let variants: i64 =
        sqlx::query_scalar("select count(*) from media_variants").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(variants, 4, "lee's and sam's");
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 0);
    let cleaned = app.metrics().await;
    assert!(cleaned.contains("maru_media_owner_deleted_cleaned_total"), "the counter is exported");
}
