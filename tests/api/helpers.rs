//! Test harness: spawn the real application and talk to it with typed clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use maru::app::{Application, ShutdownHandle};
use maru::config::Settings;
use maru::grpc::pb;
use maru::grpc::pb::admin_service_client::AdminServiceClient;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use maru::grpc::pb::trial_service_client::TrialServiceClient;
use maru::state::AppState;
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub channel: Channel,
    pub state: AppState,
    pub shutdown: ShutdownHandle,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub redis_prefix: String,
}

/// Settings for a test server: ephemeral ports, a fixed key, a private Redis key prefix.
pub fn test_settings() -> Settings {
    let mut s = Settings::default();
    s.grpc.listen = "127.0.0.1:0".into();
    s.admin.listen = "127.0.0.1:0".into();
    s.auth.jwt_key = Some(SecretString::from("test-key-test-key-test-key-test-key!"));
    s.redis.key_prefix = format!("maru-test:{}:", uuid::Uuid::new_v4().simple());
    s.redis.probe_interval_ms = 200;
    s.log.access_log = false;
    // Every test client comes from 127.0.0.1; rate limiting has its own tests.
    s.rate_limit.enabled = false;
    // Tests that stop a server do not wait for a balancer (the default grace is 5 s).
    s.grpc.shutdown_grace_ms = 0;
    s
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, |_| {}).await
    }

    /// Spawns with adjusted settings and waits until health reports SERVING.
    pub async fn spawn_with(pool: PgPool, adjust: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings();
        adjust(&mut settings);
        Self::spawn_settings(pool, settings).await
    }

    pub async fn spawn_settings(pool: PgPool, settings: Settings) -> Self {
        Self::spawn_clock(pool, settings, std::sync::Arc::new(maru::clock::SystemClock)).await
    }

    /// Spawns with a given clock (tests share one `TestClock` between replicas).
    pub async fn spawn_clock(pool: PgPool, settings: Settings, clock: std::sync::Arc<dyn maru::clock::Clock>) -> Self {
        let redis_prefix = settings.redis.key_prefix.clone();
        let app = Application::build_with_clock(settings, pool, false, clock).await.expect("app builds");
        let grpc_addr = app.grpc_addr();
        let admin_addr = app.admin_addr();
        let state = app.state();
        let shutdown = app.shutdown_handle();
        let task = tokio::spawn(app.run_until_stopped());
        let channel = Channel::from_shared(format!("http://{grpc_addr}")).unwrap().connect().await.expect("connects");
        let app = TestApp { grpc_addr, admin_addr, channel, state, shutdown, task, redis_prefix };
        app.wait_serving().await;
        app
    }

    pub async fn wait_serving(&self) {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..200 {
            let r = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
            if r.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                // The cache monitor probes Redis right away; give it that first probe.
                for _ in 0..50 {
                    if self.state.cache.is_up() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server never became SERVING");
    }

    pub fn auth(&self) -> AuthServiceClient<Channel> {
        AuthServiceClient::new(self.channel.clone())
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn trials(&self) -> TrialServiceClient<Channel> {
        TrialServiceClient::new(self.channel.clone())
    }

    pub fn events(&self) -> maru::grpc::pb::event_service_client::EventServiceClient<Channel> {
        maru::grpc::pb::event_service_client::EventServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin_addr)).await.unwrap().text().await.unwrap()
    }

    /// Signs up `handle` (email `<handle>@example.com`) and returns the user.
    pub async fn sign_up(&self, handle: &str) -> pb::User {
        self.auth()
            .sign_up(pb::SignUpRequest {
                display_name: format!("User {handle}"),
                ..sign_up_req(handle, &format!("{handle}@example.com"))
            })
            .await
            .expect("sign up")
            .into_inner()
            .user
            .unwrap()
    }

    pub async fn login(&self, login: &str) -> pb::LoginResponse {
        self.auth()
            .login(pb::LoginRequest { login: login.into(), password: PASSWORD.into() })
            .await
            .expect("login")
            .into_inner()
    }

    /// A signed-up, logged-in user.
    pub async fn user(&self, handle: &str) -> TestUser {
        let user = self.sign_up(handle).await;
        let login = self.login(handle).await;
        TestUser { id: user.id, handle: handle.into(), token: login.access_token, refresh: login.refresh_token }
    }

    /// A logged-in user with the ADMIN role (granted as the CLI does, then logged in again).
    pub async fn admin_user(&self, handle: &str) -> TestUser {
        self.sign_up(handle).await;
        maru::accounts::ops::set_role(&self.state, handle, maru::caller::Role::Admin).await.unwrap();
        let login = self.login(handle).await;
        TestUser {
            id: login.user.unwrap().id,
            handle: handle.into(),
            token: login.access_token,
            refresh: login.refresh_token,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub handle: String,
    pub token: String,
    pub refresh: String,
}

impl TestUser {
    /// `msg` with this user's bearer token.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        bearer(&self.token, msg)
    }
}

pub fn bearer<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A valid SignUp request for `handle` with `email`.
pub fn sign_up_req(handle: &str, email: &str) -> pb::SignUpRequest {
    pb::SignUpRequest {
        handle: handle.into(),
        email: email.into(),
        password: PASSWORD.into(),
        display_name: "Someone".into(),
        request_id: String::new(),
    }
}

/// `ErrorInfo.reason` of a status (empty when absent).
pub fn reason(status: &Status) -> String {
    status.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

/// The fields named by `BadRequest.field_violations`, in order.
pub fn violations(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts a failed call's code and reason.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, expected_reason: &str) -> Status {
    let status = r.expect_err("call should fail");
    assert_eq!(status.code(), code, "unexpected code: {status:?}");
    assert_eq!(reason(&status), expected_reason, "unexpected reason: {status:?}");
    status
}

/// Community fixtures written straight to the database, for tests of the content services
/// (the CommunityService RPCs have their own tests).
impl TestApp {
    /// A community of `kind` (`APARTMENT`, `CLUB`, `SPORTS_CLUB`) named `name`.
    pub async fn community(&self, kind: &str, name: &str) -> String {
        let id = uuid::Uuid::new_v4();
        sqlx::query("insert into communities (id, kind, name, address) values ($1, $2, $3, '경기도 용인시')")
            .bind(id)
            .bind(kind)
            .bind(name)
            .execute(&self.state.db)
            .await
            .expect("insert community");
        id.to_string()
    }

    /// Makes `user` a member of `community` with `status` (`PENDING`, `APPROVED`) and `role`
    /// (`MEMBER`, `MANAGER`).
    pub async fn add_member(&self, community: &str, user: &TestUser, status: &str, role: &str) {
        sqlx::query(
            "insert into community_memberships (id, community_id, user_id, status, role)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(uuid::Uuid::parse_str(community).unwrap())
        .bind(uuid::Uuid::parse_str(&user.id).unwrap())
        .bind(status)
        .bind(role)
        .execute(&self.state.db)
        .await
        .expect("insert membership");
        // As every membership write does: cached standings and home entries move.
        let user_id = uuid::Uuid::parse_str(&user.id).unwrap();
        maru::communities::cache::members_changed(&self.state.cache, &[user_id]).await;
    }
}

impl TestApp {
    /// An access token of a new live session of `user_id` (the session row written straight to
    /// the database, as Login would): the auth layer refuses tokens of unknown sessions.
    pub async fn session_token(&self, user_id: uuid::Uuid, role: maru::caller::Role) -> String {
        let session_id = uuid::Uuid::now_v7();
        sqlx::query("insert into sessions (id, user_id) values ($1, $2)")
            .bind(session_id)
            .bind(user_id)
            .execute(&self.state.db)
            .await
            .expect("insert session");
        self.state.tokens.issue(user_id, session_id, role, chrono::Utc::now()).expect("token").0
    }

    /// `n` users `<prefix><i>` with access tokens, written straight to the database (no password
    /// hashing), for concurrency tests that need many distinct callers.
    pub async fn fast_users(&self, prefix: &str, n: usize) -> Vec<TestUser> {
        let mut out = Vec::new();
        for i in 0..n {
            let id = uuid::Uuid::now_v7();
            let handle = format!("{prefix}{i}");
            sqlx::query(
                "insert into users (id, handle, email, password_hash, display_name) values ($1, $2, $3, 'x', 'Fast')",
            )
            .bind(id)
            .bind(&handle)
            .bind(format!("{handle}@example.com"))
            .execute(&self.state.db)
            .await
            .expect("insert user");
            let token = self.session_token(id, maru::caller::Role::User).await;
            out.push(TestUser { id: id.to_string(), handle, token, refresh: String::new() });
        }
        out
    }
}

/// The callers every community authorization matrix covers, in its column order: anonymous,
/// signed-in non-member, pending member, member, manager of another community, manager, admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Outsider,
    Pending,
    Member,
    OtherManager,
    Manager,
    Admin,
}

pub const WHO: [Who; 7] =
    [Who::Anonymous, Who::Outsider, Who::Pending, Who::Member, Who::OtherManager, Who::Manager, Who::Admin];

/// `msg` as `user`, or anonymous.
pub fn as_who<T>(user: Option<&TestUser>, msg: T) -> Request<T> {
    match user {
        Some(u) => u.req(msg),
        None => Request::new(msg),
    }
}
