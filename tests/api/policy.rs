//! Per-RPC policies from the proto (`proto/maru/v1/policy.proto`): every method's rate class and
//! caller rule, the caller rule enforced by the layer before the handler and the rate limiter,
//! and the start-up checks of per-method rate limits.

use maru::app::Application;
use maru::config::BucketSettings;
use maru::grpc::pb;
use maru::grpc::policy::{CallerRule, RpcClass};
use prost::Message;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

const AUTH: RpcClass = RpcClass::Auth;
const SENSITIVE: RpcClass = RpcClass::Sensitive;
const WRITE: RpcClass = RpcClass::Write;
const READ: RpcClass = RpcClass::Read;
const NONE: CallerRule = CallerRule::None;
const ANONYMOUS_OK: CallerRule = CallerRule::AnonymousOk;
const REQUIRED: CallerRule = CallerRule::Required;
const ADMIN: CallerRule = CallerRule::Admin;

/// Every maru RPC (`maru.v1.` omitted) with its rate class and caller rule, as read from each
/// handler and its ops (who may call) and from what the RPC does.
const POLICIES: &[(&str, RpcClass, CallerRule)] = &[
    ("AuthService/SignUp", AUTH, NONE),
    ("AuthService/Login", AUTH, NONE),
    ("AuthService/Refresh", AUTH, NONE),
    ("AuthService/Logout", WRITE, NONE),
    ("AuthService/ChangePassword", SENSITIVE, REQUIRED),
    ("AuthService/WhoAmI", READ, REQUIRED),
    ("AuthService/ListSessions", READ, REQUIRED),
    ("AuthService/RevokeSession", SENSITIVE, REQUIRED),
    ("AuthService/LogoutAll", SENSITIVE, REQUIRED),
    ("AuthService/SendVerificationCode", SENSITIVE, REQUIRED),
    ("AuthService/VerifyEmail", SENSITIVE, REQUIRED),
    ("AuthService/RequestPasswordReset", AUTH, NONE),
    ("AuthService/ResetPassword", AUTH, NONE),
    ("AdminService/ListUsers", READ, ADMIN),
    ("CommunityService/SearchCommunities", READ, ANONYMOUS_OK),
    ("CommunityService/GetCommunity", READ, ANONYMOUS_OK),
    ("CommunityService/CreateCommunity", WRITE, ADMIN),
    ("CommunityService/RequestMembership", WRITE, REQUIRED),
    ("CommunityService/ListMembershipRequests", READ, REQUIRED),
    ("CommunityService/DecideMembership", WRITE, REQUIRED),
    ("CommunityService/DecideMemberships", WRITE, REQUIRED),
    ("CommunityService/ListMembers", READ, REQUIRED),
    ("CommunityService/SetMemberRole", WRITE, REQUIRED),
    ("CommunityService/LeaveCommunity", WRITE, REQUIRED),
    ("CommunityService/RemoveMember", WRITE, REQUIRED),
    ("CommunityService/ListMyCommunities", READ, ANONYMOUS_OK),
    ("NoticeService/CreateNotice", WRITE, REQUIRED),
    ("NoticeService/GetNotice", READ, REQUIRED),
    ("NoticeService/ListNotices", READ, REQUIRED),
    ("NoticeService/UpdateNotice", WRITE, REQUIRED),
    ("NoticeService/DeleteNotice", WRITE, REQUIRED),
    ("ComplaintService/FileComplaint", WRITE, REQUIRED),
    ("ComplaintService/GetComplaint", READ, REQUIRED),
    ("ComplaintService/ListComplaints", READ, REQUIRED),
    ("ComplaintService/UpdateComplaintStatus", WRITE, REQUIRED),
    ("ComplaintService/WithdrawComplaint", WRITE, REQUIRED),
    ("ContactService/CreateContact", WRITE, REQUIRED),
    ("ContactService/ListContacts", READ, REQUIRED),
    ("ContactService/UpdateContact", WRITE, REQUIRED),
    ("ContactService/DeleteContact", WRITE, REQUIRED),
    ("ScheduleService/CreateSchedule", WRITE, REQUIRED),
    ("ScheduleService/ListSchedules", READ, REQUIRED),
    ("ScheduleService/UpdateSchedule", WRITE, REQUIRED),
    ("ScheduleService/DeleteSchedule", WRITE, REQUIRED),
    ("PollService/CreatePoll", WRITE, REQUIRED),
    ("PollService/GetPoll", READ, REQUIRED),
    ("PollService/ListPolls", READ, REQUIRED),
    ("PollService/ClosePoll", WRITE, REQUIRED),
    ("PollService/CastVote", WRITE, REQUIRED),
    ("EventService/CreateEvent", WRITE, REQUIRED),
    ("EventService/UpdateEvent", WRITE, REQUIRED),
    ("EventService/DeleteEvent", WRITE, REQUIRED),
    ("EventService/GetEvent", READ, REQUIRED),
    ("EventService/ListEvents", READ, REQUIRED),
    ("EventService/AddParticipant", WRITE, REQUIRED),
    ("EventService/RemoveParticipant", WRITE, REQUIRED),
    ("EventService/ListParticipants", READ, REQUIRED),
    ("EventService/ListNonParticipants", READ, REQUIRED),
    ("EventService/SetMemberGender", WRITE, REQUIRED),
    ("EventService/CheckIn", WRITE, REQUIRED),
    ("EventService/ForceAttend", WRITE, REQUIRED),
    ("EventService/ReportFeePaid", WRITE, REQUIRED),
    ("EventService/ListPendingFees", READ, REQUIRED),
    ("EventService/ConfirmFee", WRITE, REQUIRED),
    ("EventService/RejectFee", WRITE, REQUIRED),
    ("EventService/GetMemberStats", READ, REQUIRED),
    ("EventService/ListMemberStats", READ, REQUIRED),
    ("EventService/ListPenalties", READ, REQUIRED),
    ("FeedService/CreatePost", WRITE, REQUIRED),
    ("FeedService/GetPost", READ, ANONYMOUS_OK),
    ("FeedService/UpdatePost", WRITE, REQUIRED),
    ("FeedService/DeletePost", WRITE, REQUIRED),
    ("FeedService/SetPostStatus", WRITE, REQUIRED),
    ("FeedService/ListPosts", READ, ANONYMOUS_OK),
    ("FeedService/ListHomeFeed", READ, REQUIRED),
    ("FeedService/CreateComment", WRITE, REQUIRED),
    ("FeedService/ListComments", READ, ANONYMOUS_OK),
    ("FeedService/UpdateComment", WRITE, REQUIRED),
    ("FeedService/DeleteComment", WRITE, REQUIRED),
    ("FeedService/Like", WRITE, REQUIRED),
    ("FeedService/Unlike", WRITE, REQUIRED),
    ("FeedService/ListLikers", READ, ANONYMOUS_OK),
    ("ProfileService/GetProfile", READ, ANONYMOUS_OK),
    ("ProfileService/UpdateProfile", WRITE, REQUIRED),
    ("ProfileService/DeleteAccount", SENSITIVE, REQUIRED),
    ("SocialService/Follow", WRITE, REQUIRED),
    ("SocialService/Unfollow", WRITE, REQUIRED),
    ("SocialService/RemoveFollower", WRITE, REQUIRED),
    ("SocialService/ListFollowers", READ, ANONYMOUS_OK),
    ("SocialService/ListFollowing", READ, ANONYMOUS_OK),
    ("TeamService/ProposeTeam", WRITE, REQUIRED),
    ("TeamService/ApproveTeam", WRITE, REQUIRED),
    ("TeamService/RejectTeam", WRITE, REQUIRED),
    ("TeamService/GetTeam", READ, REQUIRED),
    ("TeamService/ListTeams", READ, REQUIRED),
    ("TeamService/UpdateTeam", WRITE, REQUIRED),
    ("TeamService/SetTeamState", WRITE, REQUIRED),
    ("TeamService/DeleteTeam", WRITE, REQUIRED),
    ("TeamService/Apply", WRITE, REQUIRED),
    ("TeamService/WithdrawApplication", WRITE, REQUIRED),
    ("TeamService/ListApplications", READ, REQUIRED),
    ("TeamService/DecideApplication", WRITE, REQUIRED),
    ("TeamService/LeaveTeam", WRITE, REQUIRED),
    ("TeamService/RemoveTeamMember", WRITE, REQUIRED),
    ("TeamService/ListTeamMembers", READ, REQUIRED),
    ("TeamService/LikeTeam", WRITE, REQUIRED),
    ("TeamService/UnlikeTeam", WRITE, REQUIRED),
    ("TrialService/ListTrials", READ, ANONYMOUS_OK),
    ("TrialService/GetTrial", READ, ANONYMOUS_OK),
    ("TrialService/ListTrialRevisions", READ, ANONYMOUS_OK),
    ("TrialService/RunIngest", SENSITIVE, ADMIN),
    ("TrialService/ListIngestRuns", READ, ADMIN),
    ("ProfileService/ListProfileActivity", READ, ANONYMOUS_OK),
    ("ProfileService/SearchProfiles", READ, ANONYMOUS_OK),
    ("ProductService/CreateProduct", WRITE, REQUIRED),
    ("ProductService/GetProduct", READ, ANONYMOUS_OK),
    ("ProductService/UpdateProduct", WRITE, REQUIRED),
    ("ProductService/DeleteProduct", WRITE, REQUIRED),
    ("ProductService/SetProductStatus", WRITE, REQUIRED),
    ("ProductService/ListProducts", READ, ANONYMOUS_OK),
    ("ProductService/ListUserProducts", READ, ANONYMOUS_OK),
    ("ProductService/LikeProduct", WRITE, REQUIRED),
    ("ProductService/UnlikeProduct", WRITE, REQUIRED),
    ("ProductService/RecommendProducts", READ, ANONYMOUS_OK),
    ("ReportService/CreateReport", WRITE, REQUIRED),
    ("ReportService/ListReports", READ, ADMIN),
    ("ReportService/ResolveReport", WRITE, ADMIN),
    ("ReportService/GetReportStats", READ, ADMIN),
    ("ReportService/ListModerationActions", READ, ADMIN),
    ("ReportService/ReinstateUser", SENSITIVE, ADMIN),
    ("ChatService/CreateRoom", WRITE, REQUIRED),
    ("ChatService/GetRoom", READ, REQUIRED),
    ("ChatService/ListMyRooms", READ, REQUIRED),
    ("ChatService/InviteToRoom", WRITE, REQUIRED),
    ("ChatService/LeaveRoom", WRITE, REQUIRED),
    ("ChatService/RemoveFromRoom", WRITE, REQUIRED),
    ("ChatService/RenameRoom", WRITE, REQUIRED),
    ("ChatService/BlockUser", WRITE, REQUIRED),
    ("ChatService/UnblockUser", WRITE, REQUIRED),
    ("ChatService/SendMessage", WRITE, REQUIRED),
    ("ChatService/EditMessage", WRITE, REQUIRED),
    ("ChatService/DeleteMessage", WRITE, REQUIRED),
    ("ChatService/MarkRead", WRITE, REQUIRED),
    ("ChatService/ListMessages", READ, REQUIRED),
    ("ChatService/Subscribe", READ, REQUIRED),
    ("AuthService/StartGuestSession", AUTH, NONE),
    ("AuthService/ConvertGuest", SENSITIVE, REQUIRED),
    ("MediaService/CreateUpload", WRITE, REQUIRED),
    ("MediaService/CompleteUpload", WRITE, REQUIRED),
    ("MediaService/UploadMedia", WRITE, REQUIRED),
    ("MediaService/GetMedia", READ, REQUIRED),
    ("IdentityService/StartExternalLogin", AUTH, NONE),
    ("IdentityService/FinishExternalLogin", AUTH, NONE),
    ("IdentityService/CompleteRegistration", AUTH, NONE),
    ("IdentityService/SendLinkCode", SENSITIVE, NONE),
    ("IdentityService/LinkIdentity", SENSITIVE, NONE),
    ("IdentityService/ListIdentities", READ, REQUIRED),
    ("IdentityService/UnlinkIdentity", SENSITIVE, REQUIRED),
];

#[test]
fn every_method_in_the_descriptor_has_the_policy_of_the_table() {
    let registry = maru::grpc::registry().expect("every maru method declares a policy");
    let set = prost_types::FileDescriptorSet::decode(maru::grpc::FILE_DESCRIPTOR_SET).unwrap();
    let mut seen = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let name = format!("{}.{}/{}", file.package(), service.name(), method.name());
                let short = name.strip_prefix("maru.v1.").unwrap_or_else(|| panic!("{name}: not a maru service"));
                let Some((_, class, caller)) = POLICIES.iter().find(|(n, _, _)| *n == short) else {
                    panic!("{name} is not in the table of this test");
                };
                let info = registry.get(&format!("/{name}")).unwrap_or_else(|| panic!("{name} not registered"));
                assert_eq!((info.policy.rate_class, info.policy.caller), (Some(*class), *caller), "{name}");
                seen.push(short.to_owned());
            }
        }
    }
    let stale: Vec<_> = POLICIES.iter().filter(|(n, _, _)| !seen.iter().any(|s| s == n)).collect();
    assert!(stale.is_empty(), "in the table but not in the protos: {stale:?}");
    assert_eq!(seen.len(), POLICIES.len());
    // CheckIn changes state: it is a write whatever its name starts with.
    let check_in = registry.get("/maru.v1.EventService/CheckIn").unwrap();
    assert_eq!(check_in.policy.rate_class, Some(RpcClass::Write));
    // Health and reflection: anyone, never rate limited.
    for path in ["/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"] {
        assert_eq!(registry.get(path).unwrap().policy.rate_class, None, "{path}");
    }
}

#[sqlx::test]
async fn the_caller_rule_is_enforced_before_the_handler(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let user = app.user("plain").await;
    let admin = app.admin_user("boss").await;

    // CALLER_ADMIN: refused before ListUsers looks at its input (its handler would answer
    // INVALID_ARGUMENT for the unknown role first).
    let bad_role = || pb::ListUsersRequest { role: 99, ..Default::default() };
    assert_err(app.admin().list_users(user.req(bad_role())).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    assert_err(app.admin().list_users(bad_role()).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(app.admin().list_users(admin.req(bad_role())).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let r = app.trials().list_ingest_runs(user.req(pb::ListIngestRunsRequest::default())).await;
    assert_err(r, Code::PermissionDenied, "ADMIN_REQUIRED");
    app.trials().list_ingest_runs(admin.req(pb::ListIngestRunsRequest::default())).await.unwrap();

    // CALLER_REQUIRED: no token, a bad token, an expired one.
    assert_err(app.auth().who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated, "TOKEN_MISSING");
    let r = app.auth().who_am_i(bearer("not-a-jwt", pb::WhoAmIRequest {})).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_INVALID");
    let uid = uuid::Uuid::parse_str(&user.id).unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    let (expired, _) =
        app.state.tokens.issue(uid, uuid::Uuid::new_v4(), maru::caller::Role::User, long_ago).expect("token");
    let r = app.auth().who_am_i(bearer(&expired, pb::WhoAmIRequest {})).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_EXPIRED");

    // CALLER_ANONYMOUS_OK: anonymous is served, a presented bad token is not.
    app.trials().list_trials(pb::ListTrialsRequest::default()).await.unwrap();
    let r = app.trials().list_trials(bearer(&expired, pb::ListTrialsRequest::default())).await;
    assert_err(r, Code::Unauthenticated, "TOKEN_EXPIRED");

    // CALLER_NONE: Login and Refresh carry their own credential; a stale access token sent
    // along (as a client library's interceptor does) is not looked at.
    let login = app
        .auth()
        .login(bearer(&expired, pb::LoginRequest { login: "plain".into(), password: PASSWORD.into() }))
        .await
        .expect("login with an expired access token attached")
        .into_inner();
    app.auth()
        .refresh(bearer(&expired, pb::RefreshRequest { refresh_token: login.refresh_token }))
        .await
        .expect("refresh with an expired access token attached");
}

#[sqlx::test]
async fn refused_callers_do_not_use_up_a_rate_limit_bucket(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.buckets.read = BucketSettings { per_minute: 1, burst: 1 };
    })
    .await;
    // Anonymous calls of a CALLER_REQUIRED read are refused by the caller rule every time …
    for _ in 0..3 {
        assert_err(app.auth().who_am_i(pb::WhoAmIRequest {}).await, Code::Unauthenticated, "TOKEN_MISSING");
    }
    // … without counting against this address's read bucket: its one call is still there.
    communities(&app).search_communities(search("서울")).await.unwrap();
    let status =
        assert_err(communities(&app).search_communities(search("서울")).await, Code::ResourceExhausted, "RATE_LIMITED");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("bucket").map(String::as_str), Some("read"));
}

fn communities(app: &TestApp) -> pb::community_service_client::CommunityServiceClient<tonic::transport::Channel> {
    pb::community_service_client::CommunityServiceClient::new(app.channel.clone())
}

fn search(query: &str) -> pb::SearchCommunitiesRequest {
    pb::SearchCommunitiesRequest { query: query.into(), ..Default::default() }
}

#[sqlx::test]
async fn check_in_counts_against_the_write_bucket(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.buckets.write = BucketSettings { per_minute: 1, burst: 1 };
    })
    .await;
    let user = app.user("runner").await;
    let check_in = || {
        user.req(pb::CheckInRequest {
            event_id: uuid::Uuid::new_v4().to_string(),
            latitude: 37.5665,
            longitude: 126.978,
            ..Default::default()
        })
    };
    // The first reaches the handler (no such event) …
    assert_err(app.events().check_in(check_in()).await, Code::NotFound, "EVENT_NOT_FOUND");
    // … the second is over the write bucket (it was counted as a read, by its name).
    let status = assert_err(app.events().check_in(check_in()).await, Code::ResourceExhausted, "RATE_LIMITED");
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.metadata.get("bucket").map(String::as_str), Some("write"));
}

#[sqlx::test]
async fn unknown_or_exempt_methods_in_rate_limit_overrides_stop_the_start_up(pool: PgPool) {
    let mut settings = test_settings();
    let bucket = BucketSettings { per_minute: 1, burst: 1 };
    settings.rate_limit.methods.insert("maru.v1.AuthService/ResetEverything".into(), bucket.clone());
    settings.rate_limit.methods.insert("grpc.health.v1.Health/Check".into(), bucket.clone());
    settings.rate_limit.methods.insert("maru.v1.EventService/CheckIn".into(), bucket);
    let app = Application::build_with_pool(settings, pool.clone(), false).await.expect("binds");
    let err = format!("{:#}", app.run_until_stopped().await.expect_err("refuses to start"));
    assert!(err.contains("maru.v1.AuthService/ResetEverything"), "{err}");
    assert!(err.contains("exempt from rate limits: grpc.health.v1.Health/Check"), "{err}");
    assert!(!err.contains("CheckIn"), "{err}");

    // `maru check-config` reports the same.
    let file = std::env::temp_dir().join(format!("maru-policy-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, "[rate_limit.methods.\"maru.v1.AuthService/ResetEverything\"]\nper_minute = 1\nburst = 1\n")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maru"))
        .args(["--config", file.to_str().unwrap(), "check-config"])
        .env("MARU__LOG__LEVEL", "warn")
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("maru.v1.AuthService/ResetEverything"), "{stderr}");
}
