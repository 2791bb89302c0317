//! ReportService (DOMAIN §3 reports, issue 16): reports once per reporter and target (raced),
//! the auto-hide threshold (raced), the admin queue grouped per target, resolutions (raced: one
//! wins), statistics, the moderation log and the authorization matrix.

use maru::grpc::pb;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use maru::grpc::pb::product_service_client::ProductServiceClient;
use maru::grpc::pb::profile_service_client::ProfileServiceClient;
use maru::grpc::pb::report_service_client::ReportServiceClient;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::*;

fn api(app: &TestApp) -> ReportServiceClient<Channel> {
    ReportServiceClient::new(app.channel.clone())
}

async fn product(app: &TestApp, seller: &TestUser, name: &str) -> pb::Product {
    let req = pb::CreateProductRequest { name: name.into(), price: 1000, ..Default::default() };
    ProductServiceClient::new(app.channel.clone())
        .create_product(seller.req(req))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap()
}

fn about_product(id: &str, reason: pb::ReportReason) -> pb::CreateReportRequest {
    pb::CreateReportRequest {
        target: Some(pb::ReportTarget { product_id: id.into(), ..Default::default() }),
        reason: reason as i32,
        details: "가품 의심".into(),
        request_id: String::new(),
    }
}

async fn report(app: &TestApp, who: &TestUser, req: pb::CreateReportRequest) -> Result<pb::Report, Status> {
    api(app).create_report(who.req(req)).await.map(|r| r.into_inner().report.unwrap())
}

fn resolve_target(kind: pb::ReportTargetType, id: &str, action: pb::ModerationActionType) -> pb::ResolveReportRequest {
    pb::ResolveReportRequest {
        report_id: String::new(),
        target_type: kind as i32,
        target_id: id.into(),
        action: action as i32,
        note: "검토함".into(),
    }
}

async fn profile(app: &TestApp, handle: &str) -> Result<pb::Profile, Status> {
    ProfileServiceClient::new(app.channel.clone())
        .get_profile(tonic::Request::new(pb::GetProfileRequest { handle: handle.into() }))
        .await
        .map(|r| r.into_inner().profile.unwrap())
}

fn feed(app: &TestApp) -> FeedServiceClient<Channel> {
    FeedServiceClient::new(app.channel.clone())
}

async fn comments(app: &TestApp, who: Option<&TestUser>, post: &str, parent: &str) -> Result<Vec<String>, Status> {
    let req = pb::ListCommentsRequest { post_id: post.into(), parent_id: parent.into(), ..Default::default() };
    feed(app).list_comments(as_who(who, req)).await.map(|r| r.into_inner().comments.into_iter().map(|c| c.id).collect())
}

async fn comment_count(app: &TestApp, post: &str) -> i64 {
    let r = feed(app).get_post(tonic::Request::new(pb::GetPostRequest { post_id: post.into() })).await.unwrap();
    r.into_inner().post.unwrap().comment_count
}

fn about(target: pb::ReportTarget) -> pb::CreateReportRequest {
    pb::CreateReportRequest { target: Some(target), ..about_product("", pb::ReportReason::Abuse) }
}

async fn product_status(app: &TestApp, who: &TestUser, id: &str) -> Result<i32, Status> {
    ProductServiceClient::new(app.channel.clone())
        .get_product(who.req(pb::GetProductRequest { product_id: id.into() }))
        .await
        .map(|r| r.into_inner().product.unwrap().status)
}

#[sqlx::test]
async fn a_report_is_made_once_about_what_the_reporter_can_see(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let reporter = app.user("reporter").await;
    let admin = app.admin_user("boss").await;
    let p = product(&app, &seller, "수상한 시계").await;
    let r = report(&app, &reporter, about_product(&p.id, pb::ReportReason::Fraud)).await.unwrap();
    assert_eq!((r.state, r.reason), (pb::ReportState::Open as i32, pb::ReportReason::Fraud as i32));
    assert_err(
        report(&app, &reporter, about_product(&p.id, pb::ReportReason::Spam)).await,
        Code::AlreadyExists,
        "ALREADY_REPORTED",
    );
    // With a request_id, a retry gets the first answer.
    let other = app.user("other").await;
    let again = pb::CreateReportRequest { request_id: "r-1".into(), ..about_product(&p.id, pb::ReportReason::Spam) };
    let first = report(&app, &other, again.clone()).await.unwrap();
    assert_eq!(report(&app, &other, again).await.unwrap().id, first.id);
    // Yourself, your own content, chat, unknown and hidden targets.
    let me = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { user_handle: "reporter".into(), ..Default::default() }),
        ..about_product("", pb::ReportReason::Abuse)
    };
    assert_err(report(&app, &reporter, me).await, Code::InvalidArgument, "CANNOT_REPORT_SELF");
    assert_err(
        report(&app, &seller, about_product(&p.id, pb::ReportReason::Spam)).await,
        Code::InvalidArgument,
        "CANNOT_REPORT_SELF",
    );
    let chat = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { chat_message_id: uuid::Uuid::now_v7().to_string(), ..Default::default() }),
        ..about_product("", pb::ReportReason::Abuse)
    };
    assert_err(report(&app, &reporter, chat).await, Code::NotFound, "CHAT_MESSAGE_NOT_FOUND");
    let ghost = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { user_handle: "ghost".into(), ..Default::default() }),
        ..about_product("", pb::ReportReason::Abuse)
    };
    assert_err(report(&app, &reporter, ghost).await, Code::NotFound, "USER_NOT_FOUND");
    let hidden = product(&app, &seller, "숨긴 상품").await;
    ProductServiceClient::new(app.channel.clone())
        .set_product_status(admin.req(pb::SetProductStatusRequest {
            product_id: hidden.id.clone(),
            status: pb::ProductStatus::Suspended as i32,
        }))
        .await
        .unwrap();
    assert_err(
        report(&app, &reporter, about_product(&hidden.id, pb::ReportReason::Spam)).await,
        Code::NotFound,
        "PRODUCT_NOT_FOUND",
    );
    let u = uuid::Uuid::now_v7().to_string();
    let post = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { post_id: u, ..Default::default() }),
        ..about_product("", pb::ReportReason::Abuse)
    };
    assert_err(report(&app, &reporter, post).await, Code::NotFound, "POST_NOT_FOUND");
    // Every bad field at once.
    let bad = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { product_id: p.id.clone(), post_id: "x".into(), ..Default::default() }),
        reason: 99,
        details: "가".repeat(1_001),
        request_id: "bad id".into(),
    };
    let s = assert_err(report(&app, &reporter, bad).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        violations(&s),
        ["target.post_id", "target", "reason", "details", "request_id"],
        "two targets set, one bad"
    );
    let none = pb::CreateReportRequest { target: None, reason: 1, ..Default::default() };
    assert_eq!(
        violations(&assert_err(report(&app, &reporter, none).await, Code::InvalidArgument, "INVALID_ARGUMENT")),
        ["target"]
    );
    let nul = pb::CreateReportRequest { details: "a\0b".into(), ..about_product(&p.id, pb::ReportReason::Other) };
    assert_err(report(&app, &reporter, nul).await, Code::InvalidArgument, "INVALID_ARGUMENT");
}

/// 100 concurrent identical reports by one user: one row, 99 ALREADY_REPORTED.
#[sqlx::test]
async fn a_hundred_concurrent_identical_reports_make_one_row(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let reporter = app.user("reporter").await;
    let p = product(&app, &seller, "도배 상품").await;
    let tasks = (0..100).map(|_| {
        let (mut c, r) = (api(&app), reporter.req(about_product(&p.id, pb::ReportReason::Spam)));
        tokio::spawn(async move { c.create_report(r).await.map(|_| ()).map_err(|s| reason(&s)) })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e == "ALREADY_REPORTED"), "{results:?}");
    let rows: i64 = sqlx::query_scalar("select count(*) from reports").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(rows, 1);
}

/// 20 distinct users reporting at once cross the threshold (5) once: the product is hidden by
/// exactly one AUTO_HIDE (reporters arriving after it no longer see it); dismissing its
/// reports shows it again.
#[sqlx::test]
async fn the_auto_hide_threshold_crossed_by_concurrent_reporters_hides_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let admin = app.admin_user("boss").await;
    let p = product(&app, &seller, "가짜 명품").await;
    let reporters = app.fast_users("reporter", 20).await;
    let tasks = reporters.iter().map(|u| {
        let (mut c, r) = (api(&app), u.req(about_product(&p.id, pb::ReportReason::Fraud)));
        tokio::spawn(async move { c.create_report(r).await.map(|_| ()).map_err(|s| reason(&s)) })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    // A reporter who arrives after the hide committed no longer sees the product.
    let ok = results.iter().filter(|r| r.is_ok()).count() as i64;
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e == "PRODUCT_NOT_FOUND"), "{results:?}");
    assert!(ok >= 5, "{results:?}");
    let hides: i64 = sqlx::query_scalar("select count(*) from moderation_actions where action = 'AUTO_HIDE'")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(hides, 1);
    assert_err(product_status(&app, &reporters[0], &p.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    let queue = api(&app).list_reports(admin.req(pb::ListReportsRequest::default())).await.unwrap().into_inner();
    assert_eq!(queue.targets.len(), 1);
    let t = &queue.targets[0];
    assert_eq!((t.report_count, t.auto_hidden, t.reports.len() as i64), (ok, true, ok.min(10)));
    assert_eq!(t.owner_id, seller.id);
    let done = api(&app)
        .resolve_report(admin.req(pb::ResolveReportRequest {
            report_id: t.reports[0].id.clone(),
            action: pb::ModerationActionType::Dismiss as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    assert_eq!(i64::from(done.reports), ok);
    assert_eq!(
        product_status(&app, &reporters[0], &p.id).await.unwrap(),
        pb::ProductStatus::OnSale as i32,
        "shown again"
    );
    assert!(
        api(&app)
            .list_reports(admin.req(pb::ListReportsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .targets
            .is_empty()
    );
    let dismissed = pb::ListReportsRequest { state: pb::ReportState::Dismissed as i32, ..Default::default() };
    assert_eq!(api(&app).list_reports(admin.req(dismissed)).await.unwrap().into_inner().targets[0].report_count, ok);
}

/// 20 admins resolving one target at once: one resolution, 19 ALREADY_RESOLVED, every report
/// ACTIONED by that one action; SUSPEND_TARGET hides the post from everyone but its author.
#[sqlx::test]
async fn twenty_admins_resolving_one_target_make_one_resolution(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let author = app.user("author").await;
    let mut feed = pb::feed_service_client::FeedServiceClient::new(app.channel.clone());
    let post = feed
        .create_post(author.req(pb::CreatePostRequest { public: true, text: "광고 광고".into(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .post
        .unwrap();
    let reporters = app.fast_users("reporter", 3).await;
    for u in &reporters {
        let req = pb::CreateReportRequest {
            target: Some(pb::ReportTarget { post_id: post.id.clone(), ..Default::default() }),
            reason: pb::ReportReason::Spam as i32,
            ..Default::default()
        };
        report(&app, u, req).await.unwrap();
    }
    // Read once so that the post detail is cached: the suspension must invalidate it.
    feed.get_post(reporters[0].req(pb::GetPostRequest { post_id: post.id.clone() })).await.unwrap();
    let mut admins = Vec::new();
    for i in 0..20 {
        admins.push(app.admin_user(&format!("admin{i}")).await);
    }
    let tasks = admins.iter().map(|a| {
        let mut c = api(&app);
        let r = a.req(resolve_target(pb::ReportTargetType::Post, &post.id, pb::ModerationActionType::SuspendTarget));
        tokio::spawn(async move { c.resolve_report(r).await.map(|_| ()).map_err(|s| reason(&s)) })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e == "ALREADY_RESOLVED"), "{results:?}");
    let (actions, actioned): (i64, i64) = sqlx::query_as(
        "select (select count(*) from moderation_actions), (select count(*) from reports where state = 'ACTIONED')",
    )
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!((actions, actioned), (1, 3));
    let r = feed.get_post(reporters[0].req(pb::GetPostRequest { post_id: post.id.clone() })).await;
    assert_err(r, Code::NotFound, "POST_NOT_FOUND");
    assert!(feed.get_post(author.req(pb::GetPostRequest { post_id: post.id.clone() })).await.is_ok());
    // The log and the statistics.
    let log = api(&app)
        .list_moderation_actions(admins[0].req(pb::ListModerationActionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.actions.len(), 1);
    assert_eq!((log.actions[0].action, log.actions[0].reports), (pb::ModerationActionType::SuspendTarget as i32, 3));
    assert_eq!(log.actions[0].owner_id, author.id);
    let stats =
        api(&app).get_report_stats(admins[0].req(pb::GetReportStatsRequest::default())).await.unwrap().into_inner();
    assert_eq!(stats.total, 3);
    assert_eq!(stats.by_state, [pb::ReportCount { key: "ACTIONED".into(), count: 3 }]);
    assert_eq!(stats.by_target_type, [pb::ReportCount { key: "POST".into(), count: 3 }]);
    assert!(stats.median_seconds_to_resolve >= 0.0);
    // Actions that do not apply change nothing.
    let user_target = pb::CreateReportRequest {
        target: Some(pb::ReportTarget { user_handle: "author".into(), ..Default::default() }),
        reason: pb::ReportReason::Abuse as i32,
        ..Default::default()
    };
    let r = report(&app, &reporters[0], user_target).await.unwrap();
    let suspend_user = pb::ResolveReportRequest {
        report_id: r.id.clone(),
        action: pb::ModerationActionType::SuspendTarget as i32,
        ..Default::default()
    };
    assert_err(
        api(&app).resolve_report(admins[0].req(suspend_user)).await,
        Code::FailedPrecondition,
        "REPORT_ACTION_UNSUPPORTED",
    );
    let warn = pb::ResolveReportRequest {
        report_id: r.id,
        action: pb::ModerationActionType::WarnUser as i32,
        ..Default::default()
    };
    assert!(api(&app).resolve_report(admins[0].req(warn)).await.is_ok());
}

#[sqlx::test]
async fn the_queue_pages_oldest_first_and_filters(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let reporter = app.user("reporter").await;
    let admin = app.admin_user("boss").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let p = product(&app, &seller, &format!("상품 {i}")).await;
        let reason = if i % 2 == 0 { pb::ReportReason::Spam } else { pb::ReportReason::Fraud };
        report(&app, &reporter, about_product(&p.id, reason)).await.unwrap();
        ids.push(p.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListReportsRequest { page_size: 2, page_token: token.clone(), ..Default::default() };
        let r = api(&app).list_reports(admin.req(req)).await.unwrap().into_inner();
        seen.extend(r.targets.into_iter().map(|t| t.target_id));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen, ids, "oldest first, each once");
    let fraud = pb::ListReportsRequest { reason: pb::ReportReason::Fraud as i32, ..Default::default() };
    assert_eq!(api(&app).list_reports(admin.req(fraud)).await.unwrap().into_inner().targets.len(), 2);
    let users = pb::ListReportsRequest { target_type: pb::ReportTargetType::User as i32, ..Default::default() };
    assert!(api(&app).list_reports(admin.req(users)).await.unwrap().into_inner().targets.is_empty());
    let bad = pb::ListReportsRequest { state: 42, page_size: -1, ..Default::default() };
    assert_err(api(&app).list_reports(admin.req(bad)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    let neither = pb::ResolveReportRequest { action: 1, ..Default::default() };
    let s = assert_err(api(&app).resolve_report(admin.req(neither)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["report_id"]);
    let unknown =
        pb::ResolveReportRequest { report_id: uuid::Uuid::now_v7().to_string(), action: 1, ..Default::default() };
    assert_err(api(&app).resolve_report(admin.req(unknown)).await, Code::NotFound, "REPORT_NOT_FOUND");
}

/// Every ReportService RPC × anonymous, a user and an admin.
#[sqlx::test]
async fn authorization_matrix(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app.user("seller").await;
    let user = app.user("someone").await;
    let admin = app.admin_user("boss").await;
    let mut failures = Vec::new();
    for rpc in ["CreateReport", "ListReports", "ResolveReport", "GetReportStats", "ListModerationActions"] {
        for (label, who) in [("anonymous", None), ("user", Some(&user)), ("admin", Some(&admin))] {
            let p = product(&app, &seller, "매트릭스").await;
            let filer = app.fast_users(&format!("f{}x{}_", rpc.len(), label.len()), 1).await.remove(0);
            report(&app, &filer, about_product(&p.id, pb::ReportReason::Spam)).await.unwrap();
            let mut c = api(&app);
            let r: Result<(), Status> = match rpc {
                "CreateReport" => {
                    c.create_report(as_who(who, about_product(&p.id, pb::ReportReason::Spam))).await.map(|_| ())
                }
                "ListReports" => c.list_reports(as_who(who, pb::ListReportsRequest::default())).await.map(|_| ()),
                "ResolveReport" => c
                    .resolve_report(as_who(
                        who,
                        resolve_target(pb::ReportTargetType::Product, &p.id, pb::ModerationActionType::Dismiss),
                    ))
                    .await
                    .map(|_| ()),
                "GetReportStats" => {
                    c.get_report_stats(as_who(who, pb::GetReportStatsRequest::default())).await.map(|_| ())
                }
                _ => c
                    .list_moderation_actions(as_who(who, pb::ListModerationActionsRequest::default()))
                    .await
                    .map(|_| ()),
            };
            let got = r.map_or_else(|s| reason(&s), |_| "OK".to_owned());
            let expected = match (rpc, label) {
                (_, "anonymous") => "TOKEN_MISSING",
                ("CreateReport", _) | (_, "admin") => "OK",
                _ => "ADMIN_REQUIRED",
            };
            if got != expected {
                failures.push(format!("{rpc} as {label}: expected {expected}, got {got}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SUSPEND_USER hides the account like DeleteAccount (its posts and products vanish), ends its
/// sessions at once and refuses sign-in; ReinstateUser undoes it.
#[sqlx::test]
async fn a_suspended_user_is_hidden_and_signed_out_until_reinstated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let spammer = app.user("spammer").await;
    let reporter = app.user("reporter").await;
    let admin = app.admin_user("boss").await;
    let p = product(&app, &spammer, "스팸 상품").await;
    // The profile is cached (GetProfile reads through the cache) before the suspension.
    assert!(profile(&app, "spammer").await.is_ok());
    assert!(profile(&app, "spammer").await.is_ok());
    // The spammer's token works (and its session check is cached) before the suspension.
    assert_eq!(product_status(&app, &spammer, &p.id).await.unwrap(), pb::ProductStatus::OnSale as i32);
    let r = report(&app, &reporter, about_product(&p.id, pb::ReportReason::Spam)).await.unwrap();
    let suspend = pb::ResolveReportRequest {
        report_id: r.id,
        action: pb::ModerationActionType::SuspendUser as i32,
        note: "반복 스팸".into(),
        ..Default::default()
    };
    let a = api(&app).resolve_report(admin.req(suspend)).await.unwrap().into_inner().action.unwrap();
    assert_eq!((a.owner_id.as_str(), a.reports), (spammer.id.as_str(), 1));
    let s = product_status(&app, &spammer, &p.id).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "the session ended at once: {s:?}");
    assert_err(product_status(&app, &reporter, &p.id).await, Code::NotFound, "PRODUCT_NOT_FOUND");
    assert_err(profile(&app, "spammer").await, Code::NotFound, "USER_NOT_FOUND");
    // Sign-in says why, but only to whoever knows the password; the refresh token says it too.
    let login = app.auth().login(pb::LoginRequest { login: "spammer".into(), password: PASSWORD.into() }).await;
    assert_err(login, Code::PermissionDenied, "ACCOUNT_SUSPENDED");
    let guess = app.auth().login(pb::LoginRequest { login: "spammer".into(), password: "wrong-password".into() }).await;
    assert_err(guess, Code::Unauthenticated, "BAD_CREDENTIALS");
    let refresh = app.auth().refresh(pb::RefreshRequest { refresh_token: spammer.refresh.clone() }).await;
    assert_err(refresh, Code::PermissionDenied, "ACCOUNT_SUSPENDED");
    let again = pb::ReinstateUserRequest { handle: "reporter".into(), note: String::new() };
    assert_err(api(&app).reinstate_user(admin.req(again)).await, Code::NotFound, "USER_NOT_FOUND");
    let back = pb::ReinstateUserRequest { handle: "spammer".into(), note: "소명 확인".into() };
    assert_err(api(&app).reinstate_user(reporter.req(back.clone())).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    let a = api(&app).reinstate_user(admin.req(back)).await.unwrap().into_inner().action.unwrap();
    assert_eq!(a.action, pb::ModerationActionType::ReinstateUser as i32);
    assert_eq!(product_status(&app, &reporter, &p.id).await.unwrap(), pb::ProductStatus::OnSale as i32, "shown again");
    assert_eq!(profile(&app, "spammer").await.unwrap().handle, "spammer", "the profile too, not a cached NOT_FOUND");
    let fresh = app.login("spammer").await;
    assert!(product_status(&app, &TestUser { token: fresh.access_token, ..spammer.clone() }, &p.id).await.is_ok());
    let log = api(&app)
        .list_moderation_actions(admin.req(pb::ListModerationActionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = log.actions.iter().map(|a| a.action).collect();
    assert_eq!(kinds, [pb::ModerationActionType::ReinstateUser as i32, pb::ModerationActionType::SuspendUser as i32]);
}

/// SUSPEND_TARGET on a comment hides it (and its replies) from everyone but its author and
/// admins; the post's comment count leaves them out (it is what others can list); a hidden
/// comment cannot be liked, replied to or reported by others.
#[sqlx::test]
async fn suspend_target_hides_a_comment_from_all_but_its_author_and_admins(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let author = app.user("author").await;
    let troll = app.user("troll").await;
    let reader = app.user("reader").await;
    let admin = app.admin_user("boss").await;
    let post = pb::CreatePostRequest { public: true, text: "중고 거래 후기".into(), ..Default::default() };
    let post = feed(&app).create_post(author.req(post)).await.unwrap().into_inner().post.unwrap();
    let comment = |who: &TestUser, text: &str, parent: &str| {
        let (mut f, req) = (
            feed(&app),
            who.req(pb::CreateCommentRequest {
                post_id: post.id.clone(),
                parent_id: parent.into(),
                text: text.into(),
                request_id: String::new(),
            }),
        );
        async move { f.create_comment(req).await.map(|r| r.into_inner().comment.unwrap()) }
    };
    let kind = comment(&reader, "좋은 글", "").await.unwrap();
    let bad = comment(&troll, "욕설", "").await.unwrap();
    let reply = comment(&reader, "신고합니다", &bad.id).await.unwrap();
    // Cached with 3 comments before the moderation.
    assert_eq!(comment_count(&app, &post.id).await, 3);
    let r = report(&app, &reader, about(pb::ReportTarget { comment_id: bad.id.clone(), ..Default::default() }))
        .await
        .unwrap();
    let req = pb::ResolveReportRequest {
        report_id: r.id,
        action: pb::ModerationActionType::SuspendTarget as i32,
        note: "욕설".into(),
        ..Default::default()
    };
    let a = api(&app).resolve_report(admin.req(req)).await.unwrap().into_inner().action.unwrap();
    assert_eq!((a.reports, a.owner_id.as_str()), (1, troll.id.as_str()));

    assert_eq!(comments(&app, Some(&reader), &post.id, "").await.unwrap(), std::slice::from_ref(&kind.id));
    assert_eq!(comments(&app, None, &post.id, "").await.unwrap(), std::slice::from_ref(&kind.id));
    assert_eq!(comments(&app, Some(&troll), &post.id, "").await.unwrap(), [kind.id.clone(), bad.id.clone()]);
    assert_eq!(comments(&app, Some(&admin), &post.id, "").await.unwrap(), [kind.id.clone(), bad.id.clone()]);
    let own = feed(&app)
        .list_comments(troll.req(pb::ListCommentsRequest { post_id: post.id.clone(), ..Default::default() }))
        .await
        .unwrap()
        .into_inner()
        .comments;
    assert!(own[1].suspended && !own[0].suspended, "its author is told it is hidden");
    assert_eq!(own[1].reply_count, 1);
    // Its replies go with it; the count is what others can list: 1, at once (not the cached 3).
    assert_err(comments(&app, Some(&reader), &post.id, &bad.id).await, Code::NotFound, "COMMENT_NOT_FOUND");
    assert_eq!(comments(&app, Some(&admin), &post.id, &bad.id).await.unwrap(), std::slice::from_ref(&reply.id));
    assert_eq!(comment_count(&app, &post.id).await, 1);
    // Others cannot like, reply to or report it; its author can still edit or delete it.
    let like = pb::LikeRequest { comment_id: bad.id.clone(), ..Default::default() };
    assert_err(feed(&app).like(reader.req(like)).await, Code::NotFound, "COMMENT_NOT_FOUND");
    let replied = comment(&reader, "또 답글", &bad.id).await;
    assert_err(replied, Code::NotFound, "COMMENT_NOT_FOUND");
    let again = about(pb::ReportTarget { comment_id: bad.id.clone(), ..Default::default() });
    assert_err(report(&app, &author, again).await, Code::NotFound, "COMMENT_NOT_FOUND");
    let edit = pb::UpdateCommentRequest { comment_id: bad.id.clone(), text: "수정".into() };
    assert!(feed(&app).update_comment(troll.req(edit)).await.is_ok());
    // SUSPEND_TARGET on a user is still refused: that is SUSPEND_USER.
    report(&app, &reader, about(pb::ReportTarget { user_handle: "troll".into(), ..Default::default() })).await.unwrap();
    let on_user = resolve_target(pb::ReportTargetType::User, &troll.id, pb::ModerationActionType::SuspendTarget);
    let s = api(&app).resolve_report(admin.req(on_user)).await;
    assert_err(s, Code::FailedPrecondition, "REPORT_ACTION_UNSUPPORTED");
}

/// The threshold (here 2) hides comments and users too; dismissing the reports shows them
/// again (the user may sign in again, with a new session).
#[sqlx::test]
async fn the_auto_hide_threshold_hides_comments_and_users_until_dismissed(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.reports.auto_hide_threshold = 2).await;
    let author = app.user("author").await;
    let troll = app.user("troll").await;
    let admin = app.admin_user("boss").await;
    let reporters = app.fast_users("reporter", 2).await;
    let post = pb::CreatePostRequest { public: true, text: "공지".into(), ..Default::default() };
    let post = feed(&app).create_post(author.req(post)).await.unwrap().into_inner().post.unwrap();
    let req =
        troll.req(pb::CreateCommentRequest { post_id: post.id.clone(), text: "광고".into(), ..Default::default() });
    let bad = feed(&app).create_comment(req).await.unwrap().into_inner().comment.unwrap();
    assert_eq!(comment_count(&app, &post.id).await, 1);
    assert!(profile(&app, "troll").await.is_ok());

    for r in &reporters {
        report(&app, r, about(pb::ReportTarget { comment_id: bad.id.clone(), ..Default::default() })).await.unwrap();
    }
    // The comment is hidden from others (count 0), its author still sees it.
    assert!(comments(&app, Some(&author), &post.id, "").await.unwrap().is_empty());
    assert_eq!(comment_count(&app, &post.id).await, 0);
    assert_eq!(comments(&app, Some(&troll), &post.id, "").await.unwrap(), std::slice::from_ref(&bad.id));
    for r in &reporters {
        report(&app, r, about(pb::ReportTarget { user_handle: "troll".into(), ..Default::default() })).await.unwrap();
    }
    // The account is hidden like a suspended one.
    assert_err(profile(&app, "troll").await, Code::NotFound, "USER_NOT_FOUND");
    let login = app.auth().login(pb::LoginRequest { login: "troll".into(), password: PASSWORD.into() }).await;
    assert_err(login, Code::PermissionDenied, "ACCOUNT_SUSPENDED");
    let queue = api(&app).list_reports(admin.req(pb::ListReportsRequest::default())).await.unwrap().into_inner();
    assert_eq!(queue.targets.len(), 2);
    assert!(queue.targets.iter().all(|t| t.auto_hidden && t.report_count == 2), "{queue:?}");
    let log = api(&app)
        .list_moderation_actions(admin.req(pb::ListModerationActionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log.actions.iter().filter(|a| a.action == pb::ModerationActionType::AutoHide as i32).count(), 2);

    // Dismissed: both shown again.
    for (kind, id) in [(pb::ReportTargetType::Comment, &bad.id), (pb::ReportTargetType::User, &troll.id)] {
        let dismiss = resolve_target(kind, id, pb::ModerationActionType::Dismiss);
        api(&app).resolve_report(admin.req(dismiss)).await.unwrap();
    }
    assert_eq!(comments(&app, Some(&author), &post.id, "").await.unwrap(), std::slice::from_ref(&bad.id));
    assert_eq!(comment_count(&app, &post.id).await, 1);
    assert_eq!(profile(&app, "troll").await.unwrap().handle, "troll");
    assert!(!app.login("troll").await.access_token.is_empty());
}
