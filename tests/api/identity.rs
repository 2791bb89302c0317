//! Sign-in with external identity providers (issue 19) against providers speaking the real
//! formats: `oidc-provider-mock` (PyPI; discovery, authorization, token endpoint, JWKS, RS256
//! ID tokens; a restart is a new signing key) run as a subprocess, and a small fake GitHub
//! (OAuth app authorization with PKCE, token endpoint, `/user`, `/user/emails`) in-process.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use maru::clock::TestClock;
use maru::config::Settings;
use maru::grpc::pb;
use maru::grpc::pb::identity_service_client::IdentityServiceClient;
use maru::identity::config::{ProviderKind, ProviderSettings};
use parking_lot::Mutex;
use secrecy::SecretString;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::helpers::*;
use crate::mail::{SmtpSink, free_port, mail_settings};

const REDIRECT: &str = "https://app.example/auth/callback";
const CLIENT_ID: &str = "maru-test-client";

use pb::finish_external_login_response::Result as Finish;

fn identity(app: &TestApp) -> IdentityServiceClient<Channel> {
    IdentityServiceClient::new(app.channel.clone())
}

/// `python3 -m oidc_provider_mock` on a port; killed on drop.
struct OidcMock {
    child: Child,
    port: u16,
}

impl OidcMock {
    async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    async fn start_on(port: u16) -> Self {
        let child = Command::new("python3")
            .args(["-m", "oidc_provider_mock", "--port", &port.to_string(), "--require-nonce", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m oidc_provider_mock (pip install oidc-provider-mock)");
        let mock = OidcMock { child, port };
        let url = format!("{}/.well-known/openid-configuration", mock.issuer());
        for _ in 0..300 {
            if reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) {
                return mock;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oidc-provider-mock never answered on {port}");
    }

    /// A new process on the same port: same issuer, a new signing key.
    async fn restart(mut self) -> Self {
        let port = self.port;
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
        Self::start_on(port).await
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sets the user's claims (merged into its ID tokens, standard ones included).
    async fn set_user(&self, sub: &str, claims: serde_json::Value) {
        let r =
            reqwest::Client::new().put(format!("{}/users/{sub}", self.issuer())).json(&claims).send().await.unwrap();
        assert!(r.status().is_success(), "{r:?}");
    }

    /// Authorizes `sub` at the authorization URL as the user's browser would; returns the
    /// `code` and `state` of the redirect.
    async fn authorize(&self, authorization_url: &str, sub: &str) -> (String, String) {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.post(authorization_url).form(&[("sub", sub)]).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "{:?}", r.text().await);
        redirect_params(r.headers()["location"].to_str().unwrap())
    }
}

impl Drop for OidcMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `code` and `state` of a redirect to [`REDIRECT`].
fn redirect_params(location: &str) -> (String, String) {
    assert!(location.starts_with(REDIRECT), "{location}");
    let url = url::Url::parse(location).unwrap();
    let q: BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    (q["code"].clone(), q["state"].clone())
}

fn query_of(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

fn provider(issuer: &str) -> ProviderSettings {
    ProviderSettings {
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(SecretString::from("oidc-client-secret-value")),
        redirect_uris: vec![REDIRECT.into()],
        ..Default::default()
    }
}

/// Settings with `google` pointing at the mock (the Google preset, issuer overridden) and a
/// second OIDC provider `corp` at the same mock.
fn oidc_settings(mut s: Settings, mock: &OidcMock) -> Settings {
    s.identity.jwks_min_refetch_s = 0;
    s.identity.providers.insert("google".into(), provider(&mock.issuer()));
    s.identity.providers.insert("corp".into(), provider(&mock.issuer()));
    s
}

fn start(provider: &str) -> pb::StartExternalLoginRequest {
    pb::StartExternalLoginRequest { provider: provider.into(), redirect_uri: REDIRECT.into() }
}

fn finish(provider: &str, code: &str, state: &str) -> pb::FinishExternalLoginRequest {
    pb::FinishExternalLoginRequest { provider: provider.into(), code: code.into(), state: state.into() }
}

/// Start, authorize `sub` at the mock, finish: the answer.
async fn oidc_login(app: &TestApp, mock: &OidcMock, sub: &str) -> Result<Finish, tonic::Status> {
    let s = identity(app).start_external_login(start("google")).await?.into_inner();
    let (code, state) = mock.authorize(&s.authorization_url, sub).await;
    assert_eq!(state, s.state);
    identity(app).finish_external_login(finish("google", &code, &state)).await.map(|r| r.into_inner().result.unwrap())
}

fn ticket_of(f: Finish) -> pb::RegistrationRequired {
    match f {
        Finish::RegistrationRequired(r) => r,
        other => panic!("expected a registration ticket, got {other:?}"),
    }
}

fn register(ticket: &str, handle: &str) -> pb::CompleteRegistrationRequest {
    pb::CompleteRegistrationRequest {
        ticket: ticket.into(),
        handle: handle.into(),
        display_name: "Min Kim".into(),
        email: String::new(),
    }
}

/// The value of one series in a scrape (0 when absent).
fn counter(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

/// The metrics recorder is the process's: other tests count too, so each series must have
/// grown by at least `n` between the scrapes.
#[track_caller]
fn assert_counted(before: &str, after: &str, expected: &[(&str, f64)]) {
    for (series, n) in expected {
        let grown = counter(after, series) - counter(before, series);
        assert!(grown >= *n, "{series} grew by {grown}, expected {n}");
    }
}

fn check_of(status: &tonic::Status) -> String {
    status.get_details_error_info().unwrap().metadata.get("check").cloned().unwrap_or_default()
}

async fn email_verified(pool: &PgPool, user_id: &str) -> bool {
    sqlx::query_scalar("select email_verified_at is not null from users where id = $1::uuid")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn oidc_new_identity_registers_then_signs_in(pool: PgPool) {
    let mock = OidcMock::start().await;
    let app = TestApp::spawn_settings(pool.clone(), oidc_settings(test_settings(), &mock)).await;
    let before = app.metrics().await;
    mock.set_user("kim-sub", serde_json::json!({"email": "Kim@Example.com", "email_verified": true, "name": "Min Kim", "preferred_username": "min.kim"}))
        .await;

    // The authorization URL carries everything a provider needs, and PKCE S256 and a nonce.
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let q = query_of(&s.authorization_url);
    assert!(
        s.authorization_url.starts_with(&format!("{}/oauth2/authorize?", mock.issuer())),
        "{}",
        s.authorization_url
    );
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["state"], s.state);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["nonce"].len(), 43);
    assert!(s.state_expires_at.is_some());
    // The verifier stays on the server, and the state is stored only hashed.
    let stored: Vec<u8> =
        sqlx::query_scalar("select state_hash from external_login_states").fetch_one(&pool).await.unwrap();
    assert_ne!(stored, s.state.as_bytes());

    let (code, state) = mock.authorize(&s.authorization_url, "kim-sub").await;
    let r = identity(&app).finish_external_login(finish("google", &code, &state)).await.unwrap().into_inner();
    let t = ticket_of(r.result.unwrap());
    assert_eq!(t.suggested_handle, "min.kim");
    assert_eq!(t.suggested_display_name, "Min Kim");
    assert_eq!(t.email, "Kim@Example.com");
    assert!(t.email_verified);

    // Account validation as SignUp.
    let bad = identity(&app).complete_registration(register(&t.ticket, "X")).await;
    assert_eq!(violations(&assert_err(bad, Code::InvalidArgument, "INVALID_ARGUMENT")), ["handle"]);
    let done = identity(&app).complete_registration(register(&t.ticket, "min.kim")).await.unwrap().into_inner();
    let signed = done.signed_in.unwrap();
    let user = signed.user.unwrap();
    assert_eq!(user.handle, "min.kim");
    assert_eq!(user.email, "Kim@Example.com");
    assert!(email_verified(&pool, &user.id).await, "the provider verified the address");
    // The tokens work.
    let me = app.auth().who_am_i(bearer(&signed.access_token, pb::WhoAmIRequest {})).await.unwrap().into_inner();
    assert_eq!(me.user.unwrap().id, user.id);
    // The account has no password: Login with any is refused.
    let login = app.auth().login(pb::LoginRequest { login: "min.kim".into(), password: "".into() }).await;
    assert_err(login, Code::InvalidArgument, "INVALID_ARGUMENT");

    // A ticket is good once.
    let again = identity(&app).complete_registration(register(&t.ticket, "min.kim2")).await;
    assert_err(again, Code::Unauthenticated, "EXTERNAL_TICKET_INVALID");

    // The second login signs in at once.
    let Finish::SignedIn(second) = oidc_login(&app, &mock, "kim-sub").await.unwrap() else { panic!("signed in") };
    assert_eq!(second.user.unwrap().id, user.id);
    assert!(!second.refresh_token.is_empty());

    let list =
        identity(&app).list_identities(bearer(&signed.access_token, pb::ListIdentitiesRequest {})).await.unwrap();
    let ids = list.into_inner().identities;
    assert_eq!(ids.len(), 1);
    assert_eq!((ids[0].provider.as_str(), ids[0].subject.as_str()), ("google", "kim-sub"));

    assert_counted(
        &before,
        &app.metrics().await,
        &[
            (r#"maru_logins_total{method="google",outcome="registration_required"}"#, 1.0),
            (r#"maru_logins_total{method="google",outcome="ok"}"#, 2.0),
            (r#"maru_registrations_total{method="google"}"#, 1.0),
            (r#"maru_jwks_refreshes_total{provider="google",outcome="ok"}"#, 1.0),
        ],
    );
}

#[sqlx::test]
async fn bad_replayed_expired_or_foreign_states_are_refused(pool: PgPool) {
    let mock = OidcMock::start().await;
    let clock = TestClock::new(chrono::Utc::now());
    let app = TestApp::spawn_clock(pool.clone(), oidc_settings(test_settings(), &mock), clock.clone()).await;
    let before = app.metrics().await;
    mock.set_user("lee", serde_json::json!({"email": "lee@example.com", "email_verified": true})).await;

    // Forged.
    let forged = identity(&app).finish_external_login(finish("google", "some-code", "forged-state")).await;
    assert_err(forged, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");

    // Replayed: the first use consumed it.
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let (code, state) = mock.authorize(&s.authorization_url, "lee").await;
    identity(&app).finish_external_login(finish("google", &code, &state)).await.unwrap();
    let replay = identity(&app).finish_external_login(finish("google", &code, &state)).await;
    assert_err(replay, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");

    // Issued for another provider (and consumed by the try).
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let (code, state) = mock.authorize(&s.authorization_url, "lee").await;
    let wrong = identity(&app).finish_external_login(finish("corp", &code, &state)).await;
    assert_err(wrong, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");
    let after = identity(&app).finish_external_login(finish("google", &code, &state)).await;
    assert_err(after, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");

    // Expired.
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let (code, state) = mock.authorize(&s.authorization_url, "lee").await;
    clock.advance(chrono::Duration::seconds(601));
    let late = identity(&app).finish_external_login(finish("google", &code, &state)).await;
    assert_err(late, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");

    // Unknown provider, unknown redirect URI, hostile input.
    let unknown = identity(&app).start_external_login(start("myspace")).await;
    assert_err(unknown, Code::NotFound, "PROVIDER_UNKNOWN");
    let elsewhere =
        pb::StartExternalLoginRequest { provider: "google".into(), redirect_uri: "https://evil.example/cb".into() };
    let bad = identity(&app).start_external_login(elsewhere).await;
    assert_eq!(violations(&assert_err(bad, Code::InvalidArgument, "INVALID_ARGUMENT")), ["redirect_uri"]);
    let hostile =
        identity(&app).finish_external_login(finish("go\0ogle", &"c\0".repeat(5000), &"s".repeat(10_000))).await;
    let v = violations(&assert_err(hostile, Code::InvalidArgument, "INVALID_ARGUMENT"));
    assert_eq!(v, ["state", "code"]);

    assert_counted(
        &before,
        &app.metrics().await,
        &[
            (r#"maru_external_login_failures_total{provider="google",reason="state_invalid"}"#, 4.0),
            (r#"maru_external_login_failures_total{provider="corp",reason="state_invalid"}"#, 1.0),
            (r#"maru_logins_total{method="google",outcome="state_invalid"}"#, 4.0),
            (r#"maru_logins_total{method="oidc",outcome="state_invalid"}"#, 1.0),
        ],
    );
}

/// The mock merges a user's claims into its ID tokens, standard claims included: a user whose
/// claims say another audience, nonce or expiry gets exactly such a (correctly signed) token.
#[sqlx::test]
async fn id_tokens_failing_a_check_are_refused(pool: PgPool) {
    let mock = OidcMock::start().await;
    let app = TestApp::spawn_settings(pool.clone(), oidc_settings(test_settings(), &mock)).await;
    let before = app.metrics().await;
    let past = chrono::Utc::now().timestamp() - 3600;
    for (sub, claims, check) in [
        ("aud", serde_json::json!({"aud": "someone-else"}), "audience"),
        ("nonce", serde_json::json!({"nonce": "not-the-one-we-sent"}), "nonce"),
        ("exp", serde_json::json!({"exp": past}), "expiry"),
        ("iss", serde_json::json!({"iss": "https://accounts.evil.example"}), "issuer"),
    ] {
        mock.set_user(sub, claims).await;
        let r = oidc_login(&app, &mock, sub).await;
        let status = assert_err(r, Code::Unauthenticated, "EXTERNAL_LOGIN_FAILED");
        assert_eq!(check_of(&status), check, "{sub}");
    }
    // A code the provider does not know.
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let r = identity(&app).finish_external_login(finish("google", "not-a-code", &s.state)).await;
    assert_eq!(check_of(&assert_err(r, Code::Unauthenticated, "EXTERNAL_LOGIN_FAILED")), "code");
    assert_eq!(sqlx::query_scalar::<_, i64>("select count(*) from users").fetch_one(&pool).await.unwrap(), 0);
    let after = app.metrics().await;
    for reason in ["audience", "nonce", "expiry", "issuer", "code"] {
        let series = format!(r#"maru_external_login_failures_total{{provider="google",reason="{reason}"}}"#);
        assert_counted(&before, &after, &[(series.as_str(), 1.0)]);
    }
}

/// The mock's ID tokens name no `kid` and its JWKS holds one key: a token the cached key does
/// not verify refetches the JWKS (the provider may have rotated), at most every
/// `identity.jwks_min_refetch_s`.
#[sqlx::test]
async fn a_rotated_signing_key_is_fetched_again_and_refetches_are_rate_limited(pool: PgPool) {
    let mock = OidcMock::start().await;
    let app = TestApp::spawn_settings(pool.clone(), oidc_settings(test_settings(), &mock)).await;
    let slow = TestApp::spawn_settings(
        pool.clone(),
        oidc_settings(test_settings(), &mock).tap(|s| s.identity.jwks_min_refetch_s = 3600),
    )
    .await;
    mock.set_user("park", serde_json::json!({"email": "park@example.com", "email_verified": false})).await;
    ticket_of(oidc_login(&app, &mock, "park").await.unwrap());
    ticket_of(oidc_login(&slow, &mock, "park").await.unwrap());
    let before = app.metrics().await;

    // A new process is a new signing key (and forgets its users).
    let mock = mock.restart().await;
    mock.set_user("park", serde_json::json!({"email": "park@example.com", "email_verified": false})).await;
    ticket_of(oidc_login(&app, &mock, "park").await.unwrap());
    let after = app.metrics().await;
    assert_counted(&before, &after, &[(r#"maru_jwks_refreshes_total{provider="google",outcome="ok"}"#, 1.0)]);
    // A replica that fetched the JWKS within `jwks_min_refetch_s` does not fetch it again: the
    // token stays unverified.
    let r = oidc_login(&slow, &mock, "park").await;
    assert_eq!(check_of(&assert_err(r, Code::Unauthenticated, "EXTERNAL_LOGIN_FAILED")), "signature");
    assert_counted(
        &after,
        &slow.metrics().await,
        &[(r#"maru_jwks_refreshes_total{provider="google",outcome="rate_limited"}"#, 1.0)],
    );
}

#[sqlx::test]
async fn a_provider_that_is_down_is_unavailable(pool: PgPool) {
    let port = free_port();
    let app = TestApp::spawn_with(pool, |s| {
        s.identity.providers.insert("google".into(), provider(&format!("http://127.0.0.1:{port}")));
    })
    .await;
    let r = identity(&app).start_external_login(start("google")).await;
    assert_err(r, Code::Unavailable, "PROVIDER_UNAVAILABLE");
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl Tap for Settings {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

// ---- GitHub

/// What the fake GitHub answers.
struct GithubState {
    /// Issued codes: their PKCE challenge and redirect URI.
    codes: BTreeMap<String, (String, String)>,
    issued: u32,
    email: String,
    verified: bool,
    /// `/user` answers HTML instead of JSON.
    garbage: bool,
}

/// An OAuth app's view of GitHub: `/login/oauth/authorize` (redirects with a code),
/// `/login/oauth/access_token` (checks the client secret and the PKCE verifier; errors with
/// 200 as GitHub does), `/user` and `/user/emails` (bearer token).
struct FakeGithub {
    base: String,
    state: Arc<Mutex<GithubState>>,
    task: tokio::task::JoinHandle<()>,
}

const GH_SECRET: &str = "gh-client-secret-value";
const GH_TOKEN: &str = "gho_fake_access_token";

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_response(status: u16, body: serde_json::Value) -> axum::response::Response {
    axum::response::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

impl FakeGithub {
    async fn start(email: &str, verified: bool) -> Self {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, Uri};
        use axum::routing::{get, post};
        type S = State<Arc<Mutex<GithubState>>>;

        async fn authorize(State(s): S, uri: Uri) -> axum::response::Response {
            let q: BTreeMap<String, String> =
                url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
            assert_eq!(q["code_challenge_method"], "S256");
            assert_eq!(q["scope"], "read:user user:email");
            let mut s = s.lock();
            s.issued += 1;
            let code = format!("gh-code-{}", s.issued);
            s.codes.insert(code.clone(), (q["code_challenge"].clone(), q["redirect_uri"].clone()));
            let mut to = url::Url::parse(&q["redirect_uri"]).unwrap();
            to.query_pairs_mut().append_pair("code", &code).append_pair("state", &q["state"]);
            axum::response::Response::builder()
                .status(302)
                .header("location", to.as_str())
                .body(axum::body::Body::empty())
                .unwrap()
        }
        async fn token(State(s): S, body: Bytes) -> axum::response::Response {
            use base64::Engine;
            use sha2::Digest;
            let f: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
            let issued = s.lock().codes.remove(f.get("code").map_or("", String::as_str));
            let ok = issued.is_some_and(|(challenge, redirect)| {
                let made = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(f.get("code_verifier").cloned().unwrap_or_default()));
                made == challenge && f.get("redirect_uri") == Some(&redirect)
            }) && f.get("client_secret").map(String::as_str) == Some(GH_SECRET)
                && f.get("client_id").map(String::as_str) == Some(CLIENT_ID);
            if !ok {
                return json_response(
                    200,
                    serde_json::json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}),
                );
            }
            json_response(
                200,
                serde_json::json!({"access_token": GH_TOKEN, "token_type": "bearer", "scope": "read:user,user:email"}),
            )
        }
        fn authorized(h: &HeaderMap) -> bool {
            h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {GH_TOKEN}"))
        }
        async fn user(State(s): S, h: HeaderMap) -> axum::response::Response {
            if !authorized(&h) {
                return json_response(401, serde_json::json!({"message": "Bad credentials"}));
            }
            if s.lock().garbage {
                return axum::response::Response::new(axum::body::Body::from("<html>unicorn</html>"));
            }
            json_response(
                200,
                serde_json::json!({"id": 583231, "login": "octocat", "name": "The Octocat", "email": null}),
            )
        }
        async fn emails(State(s): S, h: HeaderMap) -> axum::response::Response {
            if !authorized(&h) {
                return json_response(401, serde_json::json!({"message": "Bad credentials"}));
            }
            let s = s.lock();
            json_response(
                200,
                serde_json::json!([
                    {"email": "583231+octocat@users.noreply.github.com", "primary": false, "verified": true, "visibility": null},
                    {"email": s.email, "primary": true, "verified": s.verified, "visibility": "private"}
                ]),
            )
        }

        let state = Arc::new(Mutex::new(GithubState {
            codes: BTreeMap::new(),
            issued: 0,
            email: email.into(),
            verified,
            garbage: false,
        }));
        let router = axum::Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeGithub { base, state, task }
    }

    fn provider(&self) -> ProviderSettings {
        ProviderSettings {
            kind: Some(ProviderKind::Github),
            client_id: CLIENT_ID.into(),
            client_secret: Some(SecretString::from(GH_SECRET)),
            redirect_uris: vec![REDIRECT.into()],
            authorize_url: format!("{}/login/oauth/authorize", self.base),
            token_url: format!("{}/login/oauth/access_token", self.base),
            api_url: self.base.clone(),
            ..Default::default()
        }
    }

    /// Settings with `github` and a second GitHub-kind provider `ghe` (an Enterprise server) at
    /// this fake.
    fn settings(&self, mut s: Settings) -> Settings {
        s.identity.providers.insert("github".into(), self.provider());
        s.identity.providers.insert("ghe".into(), self.provider());
        s
    }

    /// Start at `provider`, follow the authorization URL as the browser would, finish.
    async fn login(&self, app: &TestApp, provider: &str) -> Result<Finish, tonic::Status> {
        let s = identity(app).start_external_login(start(provider)).await?.into_inner();
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.get(&s.authorization_url).send().await.unwrap();
        let (code, state) = redirect_params(r.headers()["location"].to_str().unwrap());
        identity(app)
            .finish_external_login(finish(provider, &code, &state))
            .await
            .map(|r| r.into_inner().result.unwrap())
    }
}

#[sqlx::test]
async fn github_new_identity_registers_then_signs_in(pool: PgPool) {
    let gh = FakeGithub::start("octo@example.com", true).await;
    let app = TestApp::spawn_settings(pool.clone(), gh.settings(test_settings())).await;
    let before = app.metrics().await;
    let t = ticket_of(gh.login(&app, "github").await.unwrap());
    assert_eq!((t.suggested_handle.as_str(), t.suggested_display_name.as_str()), ("octocat", "The Octocat"));
    assert_eq!((t.email.as_str(), t.email_verified), ("octo@example.com", true));
    let done = identity(&app).complete_registration(register(&t.ticket, "octocat")).await.unwrap().into_inner();
    let user = done.signed_in.unwrap().user.unwrap();
    let Finish::SignedIn(again) = gh.login(&app, "github").await.unwrap() else { panic!("signed in") };
    assert_eq!(again.user.unwrap().id, user.id);

    // A code GitHub refuses (reused here), and garbage from its API.
    let s = identity(&app).start_external_login(start("github")).await.unwrap().into_inner();
    let r = identity(&app).finish_external_login(finish("github", "gh-code-1", &s.state)).await;
    assert_eq!(check_of(&assert_err(r, Code::Unauthenticated, "EXTERNAL_LOGIN_FAILED")), "code");
    gh.state.lock().garbage = true;
    assert_err(gh.login(&app, "github").await, Code::Unavailable, "PROVIDER_UNAVAILABLE");

    assert_counted(
        &before,
        &app.metrics().await,
        &[
            (r#"maru_logins_total{method="github",outcome="ok"}"#, 2.0),
            (r#"maru_registrations_total{method="github"}"#, 1.0),
            (r#"maru_external_login_failures_total{provider="github",reason="code"}"#, 1.0),
            (r#"maru_external_login_failures_total{provider="github",reason="provider_unavailable"}"#, 1.0),
        ],
    );
}

// ---- linking

async fn verify_address(pool: &PgPool, user_id: &str) {
    sqlx::query("update users set email_verified_at = now() where id = $1::uuid")
        .bind(user_id)
        .execute(pool)
        .await
        .unwrap();
}

fn link(ticket: &str, proof: pb::link_identity_request::Proof) -> pb::LinkIdentityRequest {
    pb::LinkIdentityRequest { ticket: ticket.into(), proof: Some(proof) }
}

async fn identities_of(pool: &PgPool, user_id: &str) -> Vec<String> {
    sqlx::query_scalar("select provider from external_identities where user_id = $1::uuid order by provider")
        .bind(user_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_verified_matching_address_links_only_after_the_password(pool: PgPool) {
    use pb::link_identity_request::Proof;
    let gh = FakeGithub::start("kim@example.com", true).await;
    let app = TestApp::spawn_settings(pool.clone(), gh.settings(test_settings())).await;
    let kim = app.user("kim").await;
    // An address the account never verified links nothing: a new account it would be, and
    // the address is taken.
    let t = ticket_of(gh.login(&app, "github").await.unwrap());
    let taken = identity(&app).complete_registration(register(&t.ticket, "octocat")).await;
    assert_err(taken, Code::AlreadyExists, "EMAIL_TAKEN");

    verify_address(&pool, &kim.id).await;
    let Finish::LinkRequired(l) = gh.login(&app, "github").await.unwrap() else { panic!("link required") };
    assert_eq!((l.handle.as_str(), l.has_password), ("kim", true));
    assert!(identities_of(&pool, &kim.id).await.is_empty(), "never linked silently");
    // A link ticket is no registration ticket, and a wrong password links nothing.
    let r = identity(&app).complete_registration(register(&l.ticket, "octocat")).await;
    assert_err(r, Code::Unauthenticated, "EXTERNAL_TICKET_INVALID");
    let r = identity(&app).link_identity(link(&l.ticket, Proof::Password("not the password".into()))).await;
    assert_err(r, Code::Unauthenticated, "BAD_CREDENTIALS");
    assert!(identities_of(&pool, &kim.id).await.is_empty());

    let r = identity(&app).link_identity(link(&l.ticket, Proof::Password(PASSWORD.into()))).await.unwrap();
    assert_eq!(r.into_inner().signed_in.unwrap().user.unwrap().id, kim.id);
    assert_eq!(identities_of(&pool, &kim.id).await, ["github"]);
    let r = identity(&app).link_identity(link(&l.ticket, Proof::Password(PASSWORD.into()))).await;
    assert_err(r, Code::Unauthenticated, "EXTERNAL_TICKET_INVALID");
    let Finish::SignedIn(s) = gh.login(&app, "github").await.unwrap() else { panic!("signed in") };
    assert_eq!(s.user.unwrap().id, kim.id);

    // The account has a password: its only identity may go.
    identity(&app).unlink_identity(kim.req(pb::UnlinkIdentityRequest { provider: "github".into() })).await.unwrap();
    assert!(identities_of(&pool, &kim.id).await.is_empty());
}

#[sqlx::test]
async fn an_unverified_provider_address_never_links(pool: PgPool) {
    let gh = FakeGithub::start("kim@example.com", false).await;
    let app = TestApp::spawn_settings(pool.clone(), gh.settings(test_settings())).await;
    let kim = app.user("kim").await;
    verify_address(&pool, &kim.id).await;
    let t = ticket_of(gh.login(&app, "github").await.unwrap());
    assert!(!t.email_verified);
    // Registering under another address works; it starts unverified.
    let mut req = register(&t.ticket, "octocat");
    req.email = "octo@example.org".into();
    let user = identity(&app).complete_registration(req).await.unwrap().into_inner().signed_in.unwrap().user.unwrap();
    assert!(!email_verified(&pool, &user.id).await);
    assert!(identities_of(&pool, &kim.id).await.is_empty());
}

#[sqlx::test]
async fn an_account_without_password_links_with_a_mailed_code_and_keeps_one_sign_in(pool: PgPool) {
    use pb::link_identity_request::Proof;
    let sink = SmtpSink::start().await;
    let gh = FakeGithub::start("octo@example.com", true).await;
    let app = TestApp::spawn_settings(pool.clone(), gh.settings(mail_settings(&sink.url()))).await;
    let t = ticket_of(gh.login(&app, "github").await.unwrap());
    let signed = identity(&app).complete_registration(register(&t.ticket, "octocat")).await.unwrap().into_inner();
    let signed = signed.signed_in.unwrap();
    let user_id = signed.user.unwrap().id;

    // The same person at another provider: the account must prove itself, and it has no
    // password.
    let Finish::LinkRequired(l) = gh.login(&app, "ghe").await.unwrap() else { panic!("link required") };
    assert!(!l.has_password);
    let r = identity(&app).link_identity(link(&l.ticket, Proof::Password(PASSWORD.into()))).await;
    assert_err(r, Code::FailedPrecondition, "IDENTITY_LINK_REQUIRED");
    let sent = identity(&app)
        .send_link_code(pb::SendLinkCodeRequest { ticket: l.ticket.clone(), lang: "en".into() })
        .await
        .unwrap();
    assert!(sent.into_inner().expires_at.is_some());
    let mail = sink.wait_to("octo@example.com").await;
    // The mail says what the code does, and for which provider's sign-in.
    assert!(mail.subject.starts_with("[maru] Code to link your ghe sign-in: "), "{}", mail.subject);
    assert!(mail.body.contains("asked to link that sign-in to your account"), "{}", mail.body);
    assert!(app.metrics().await.contains("maru_emails_queued_total{kind=\"link_code\"}"));
    let wrong = crate::mail::wrong(&mail.code());
    let r = identity(&app).link_identity(link(&l.ticket, Proof::Code(wrong))).await;
    assert_err(r, Code::PermissionDenied, "VERIFICATION_CODE_MISMATCH");
    assert_eq!(identities_of(&pool, &user_id).await, ["github"]);
    let r = identity(&app).link_identity(link(&l.ticket, Proof::Code(mail.code()))).await.unwrap();
    assert_eq!(r.into_inner().signed_in.unwrap().user.unwrap().id, user_id);
    assert_eq!(identities_of(&pool, &user_id).await, ["ghe", "github"]);

    // Unlink: one may go, the last may not.
    let me = |p: &str| bearer(&signed.access_token, pb::UnlinkIdentityRequest { provider: p.into() });
    identity(&app).unlink_identity(me("ghe")).await.unwrap();
    assert_err(identity(&app).unlink_identity(me("ghe")).await, Code::NotFound, "IDENTITY_NOT_FOUND");
    assert_err(identity(&app).unlink_identity(me("github")).await, Code::FailedPrecondition, "LAST_SIGN_IN_METHOD");
    assert_eq!(identities_of(&pool, &user_id).await, ["github"]);
}

#[sqlx::test]
async fn a_state_and_a_ticket_are_each_used_once_by_racing_clients(pool: PgPool) {
    let mock = OidcMock::start().await;
    let app = TestApp::spawn_settings(pool.clone(), oidc_settings(test_settings(), &mock)).await;
    mock.set_user("racer", serde_json::json!({"email": "racer@example.com", "email_verified": true})).await;
    let s = identity(&app).start_external_login(start("google")).await.unwrap().into_inner();
    let (code, state) = mock.authorize(&s.authorization_url, "racer").await;

    // Eight clients finish the same login at once: the state lets exactly one through.
    let finishes = futures::future::join_all((0..8).map(|_| {
        let mut client = identity(&app);
        let req = finish("google", &code, &state);
        async move { client.finish_external_login(req).await }
    }))
    .await;
    let (won, lost): (Vec<_>, Vec<_>) = finishes.into_iter().partition(Result::is_ok);
    assert_eq!((won.len(), lost.len()), (1, 7));
    for r in lost {
        assert_err(r, Code::Unauthenticated, "EXTERNAL_STATE_INVALID");
    }
    let t = ticket_of(won.into_iter().next().unwrap().unwrap().into_inner().result.unwrap());

    // Eight registrations on the one ticket, each with its own handle: one account is made.
    let registrations = futures::future::join_all((0..8).map(|i| {
        let mut client = identity(&app);
        let req = register(&t.ticket, &format!("racer{i}"));
        async move { client.complete_registration(req).await }
    }))
    .await;
    let (won, lost): (Vec<_>, Vec<_>) = registrations.into_iter().partition(Result::is_ok);
    assert_eq!((won.len(), lost.len()), (1, 7));
    for r in lost {
        assert_err(r, Code::Unauthenticated, "EXTERNAL_TICKET_INVALID");
    }
    let accounts: i64 =
        sqlx::query_scalar("select count(*) from users where handle like 'racer%'").fetch_one(&pool).await.unwrap();
    let identities: i64 =
        sqlx::query_scalar("select count(*) from external_identities where provider = 'google' and subject = 'racer'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((accounts, identities), (1, 1));
}

#[sqlx::test]
async fn the_sweep_deletes_states_and_tickets_an_hour_after_they_expire(pool: PgPool) {
    let mock = OidcMock::start().await;
    let clock = TestClock::new(chrono::Utc::now());
    let app = TestApp::spawn_clock(pool.clone(), oidc_settings(test_settings(), &mock), clock.clone()).await;
    mock.set_user("late", serde_json::json!({"email": "late@example.com", "email_verified": true})).await;
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // One login abandoned at the provider (a state), one never registered (a ticket).
    identity(&app).start_external_login(start("google")).await.unwrap();
    let t = ticket_of(oidc_login(&app, &mock, "late").await.unwrap());
    assert_eq!((count("external_login_states").await, count("external_tickets").await), (1, 1));

    // Expired, but within the hour kept: nothing goes (a late answer is told "expired").
    let ttl = app.state.settings.identity.ticket_ttl_s.max(app.state.settings.identity.state_ttl_s);
    clock.advance(chrono::Duration::seconds(ttl as i64 + 60));
    assert_eq!(maru::identity::sweep_expired(&app.state).await.unwrap(), (0, 0));
    let late = identity(&app).complete_registration(register(&t.ticket, "late")).await;
    assert_err(late, Code::Unauthenticated, "EXTERNAL_TICKET_INVALID");

    // An hour later both go; a second sweep finds nothing.
    clock.advance(chrono::Duration::hours(1));
    assert_eq!(maru::identity::sweep_expired(&app.state).await.unwrap(), (1, 1));
    assert_eq!((count("external_login_states").await, count("external_tickets").await), (0, 0));
    assert_eq!(maru::identity::sweep_expired(&app.state).await.unwrap(), (0, 0));
}

#[sqlx::test]
async fn no_state_code_ticket_token_secret_or_address_is_logged(pool: PgPool) {
    let captured = crate::logs::capture();
    let gh = FakeGithub::start("pii.identity@example.com", true).await;
    let mut settings = gh.settings(test_settings());
    settings.log.access_log = true;
    let app = TestApp::spawn_settings(pool.clone(), settings).await;
    let s = identity(&app).start_external_login(start("github")).await.unwrap().into_inner();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = client.get(&s.authorization_url).send().await.unwrap();
    let (code, state) = redirect_params(r.headers()["location"].to_str().unwrap());
    let f = identity(&app).finish_external_login(finish("github", &code, &state)).await.unwrap().into_inner();
    let t = ticket_of(f.result.unwrap());
    let _ = identity(&app).finish_external_login(finish("github", &code, &state)).await; // replay
    let done = identity(&app).complete_registration(register(&t.ticket, "octocat")).await.unwrap().into_inner();
    let signed = done.signed_in.unwrap();
    let _ = identity(&app).complete_registration(register(&t.ticket, "octocat")).await; // reuse
    let challenge = query_of(&s.authorization_url)["code_challenge"].clone();

    tokio::time::sleep(Duration::from_millis(1500)).await; // let the Loki batches arrive
    let mut everything = captured.stdout_text();
    for (labels, line) in captured.loki_lines() {
        everything.push_str(&labels);
        everything.push_str(&line);
    }
    assert!(everything.contains(&signed.user.unwrap().id), "the capture works: user ids are logged");
    for (what, secret) in [
        ("email", "pii.identity@example.com"),
        ("state", s.state.as_str()),
        ("code", code.as_str()),
        ("code challenge", challenge.as_str()),
        ("ticket", t.ticket.as_str()),
        ("access token", signed.access_token.as_str()),
        ("refresh token", signed.refresh_token.as_str()),
        ("client secret", GH_SECRET),
        ("provider access token", GH_TOKEN),
    ] {
        assert!(!everything.contains(secret), "the {what} reached the log");
    }
}

/// A reverse proxy in front of the mock that breaks the signature of every ID token the token
/// endpoint issues (the last byte of the signature changed), everything else passed through.
async fn tampering_proxy(mock: &OidcMock) -> (String, tokio::task::JoinHandle<()>) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, Uri};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = mock.issuer();
    async fn forward(
        State((upstream, host)): State<(String, String)>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = client.request(method, format!("{upstream}{path}")).header("host", host).body(body);
        if let Some(ct) = headers.get("content-type") {
            req = req.header("content-type", ct.to_str().unwrap());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let ct = r.headers().get("content-type").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        let mut body = r.bytes().await.unwrap().to_vec();
        if uri.path() == "/oauth2/token" && status == 200 {
            let mut v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let t = v["id_token"].as_str().unwrap().to_owned();
            // A character in the middle of the signature: still valid base64url.
            let at = t.rfind('.').unwrap() + 20;
            let c = if &t[at..=at] == "A" { "B" } else { "A" };
            v["id_token"] = serde_json::Value::String(format!("{}{c}{}", &t[..at], &t[at + 1..]));
            body = v.to_string().into_bytes();
        }
        let mut b = axum::response::Response::builder().status(status).header("content-type", ct);
        if let Some(l) = location {
            b = b.header("location", l);
        }
        b.body(axum::body::Body::from(body)).unwrap()
    }
    let router = axum::Router::new().fallback(forward).with_state((upstream, addr.to_string()));
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (format!("http://{addr}"), task)
}

#[sqlx::test]
async fn an_id_token_with_a_bad_signature_is_refused(pool: PgPool) {
    let mock = OidcMock::start().await;
    let (proxy, task) = tampering_proxy(&mock).await;
    let app = TestApp::spawn_with(pool, |s| {
        s.identity.providers.insert("google".into(), provider(&proxy));
    })
    .await;
    mock.set_user("choi", serde_json::json!({"email": "choi@example.com", "email_verified": true})).await;
    let r = oidc_login(&app, &mock, "choi").await;
    assert_eq!(check_of(&assert_err(r, Code::Unauthenticated, "EXTERNAL_LOGIN_FAILED")), "signature");
    task.abort();
}
