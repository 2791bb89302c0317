//! Email (issue 19): the SMTP outbox, verification codes and password reset, against a real
//! SMTP sink (`aiosmtpd`, Maildir) whose messages are parsed as received.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use maru::clock::TestClock;
use maru::config::Settings;
use maru::grpc::pb;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl Received {
    /// The verification code: the last word of the subject.
    pub fn code(&self) -> String {
        self.subject.rsplit(' ').next().unwrap().to_owned()
    }

    /// The reset token: the rest of the line after `Reset token: ` or `재설정 토큰: `.
    pub fn reset_token(&self) -> String {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix("Reset token: ").or_else(|| l.strip_prefix("재설정 토큰: ")))
            .expect("a reset token line")
            .trim()
            .to_owned()
    }
}

/// `python3 -m aiosmtpd` writing every message into a Maildir; killed on drop.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// A port nothing listens on (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// Starts the sink on `port` and waits until it accepts connections.
    pub async fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("maru-maildir-{}", uuid::Uuid::new_v4().simple()));
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        let sink = SmtpSink { child, port, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return sink;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the SMTP sink never listened on {port}");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, parsed.
    pub fn messages(&self) -> Vec<Received> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("new")) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in entries {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            let m = mail_parser::MessageParser::default().parse(&raw).expect("a parsable message");
            let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_owned();
            out.push(Received {
                to,
                subject: m.subject().unwrap_or_default().to_owned(),
                body: m.body_text(0).unwrap_or_default().into_owned(),
            });
        }
        out
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..400 {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} messages never arrived (got {})", self.messages().len());
    }

    /// The one message to `to`, once it arrived.
    pub async fn wait_to(&self, to: &str) -> Received {
        for _ in 0..400 {
            let m: Vec<_> = self.messages().into_iter().filter(|m| m.to == to).collect();
            assert!(m.len() <= 1, "more than one message to {to}");
            if let Some(m) = m.into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no message to {to} arrived");
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Test settings sending to `smtp_url`, polling often and retrying quickly.
pub fn mail_settings(smtp_url: &str) -> Settings {
    let mut s = test_settings();
    s.mail.smtp_url = Some(secrecy::SecretString::from(smtp_url.to_owned()));
    s.mail.poll_interval_ms = 50;
    s.mail.backoff_ms = 50;
    s
}

fn send_code(lang: &str) -> pb::SendVerificationCodeRequest {
    pb::SendVerificationCodeRequest { lang: lang.into() }
}

fn verify(code: &str) -> pb::VerifyEmailRequest {
    pb::VerifyEmailRequest { code: code.into() }
}

fn request_reset(email: &str, lang: &str) -> pb::RequestPasswordResetRequest {
    pb::RequestPasswordResetRequest { email: email.into(), lang: lang.into() }
}

/// A well-formed code other than `code`.
pub fn wrong(code: &str) -> String {
    let first = if code.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &code[1..])
}

async fn verified_at(pool: &PgPool, user_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    sqlx::query_scalar("select email_verified_at from users where id = $1::uuid")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn attempts_left(status: &tonic::Status) -> String {
    status.get_details_error_info().unwrap().metadata.get("attempts_left").cloned().unwrap_or_default()
}

#[sqlx::test]
async fn a_mailed_code_verifies_the_address_in_korean_or_english(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_settings(pool.clone(), mail_settings(&sink.url())).await;
    let kim = app.user("kim").await;
    let lee = app.user("lee").await;

    // Korean by default.
    let sent = app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap().into_inner();
    assert!(sent.expires_at.is_some());
    let ko = sink.wait_to("kim@example.com").await;
    assert!(ko.subject.starts_with("[maru] 이메일 인증 코드: "), "{ko:?}");
    assert!(ko.body.contains(&format!("이메일 인증 코드는 {} 입니다", ko.code())), "{ko:?}");
    assert!(ko.body.contains("5분"), "{ko:?}");
    assert_eq!(ko.code().len(), 6);

    // English on request.
    app.auth().send_verification_code(lee.req(send_code("en-US"))).await.unwrap();
    let en = sink.wait_to("lee@example.com").await;
    assert!(en.subject.starts_with("[maru] Your email verification code: "), "{en:?}");
    assert!(en.body.contains(&format!("Your email verification code is {}.", en.code())), "{en:?}");
    assert!(en.body.contains("5 minutes"), "{en:?}");

    // Case and spaces do not matter; the code works once.
    assert!(verified_at(&pool, &kim.id).await.is_none());
    let code = format!("  {}  ", ko.code().to_lowercase());
    let ok = app.auth().verify_email(kim.req(verify(&code))).await.unwrap().into_inner();
    assert!(ok.email_verified_at.is_some());
    assert!(verified_at(&pool, &kim.id).await.is_some());
    assert_err(
        app.auth().verify_email(kim.req(verify(&ko.code()))).await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXPIRED",
    );
    // A verified address gets no more codes; another account's code is not this one's.
    assert_err(
        app.auth().send_verification_code(kim.req(send_code(""))).await,
        Code::FailedPrecondition,
        "EMAIL_ALREADY_VERIFIED",
    );
    assert_err(
        app.auth().verify_email(kim.req(verify(&en.code()))).await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXPIRED",
    );
    app.auth().verify_email(lee.req(verify(&en.code()))).await.unwrap();

    // Refusals: no caller; malformed code and language.
    assert_err(app.auth().send_verification_code(send_code("")).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(app.auth().verify_email(verify("ABCDEF")).await, Code::Unauthenticated, "TOKEN_MISSING");
    let s =
        assert_err(app.auth().verify_email(lee.req(verify("12345"))).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["code"]);
    let s = assert_err(
        app.auth().send_verification_code(lee.req(send_code("fr"))).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["lang"]);

    let metrics = app.metrics().await;
    assert!(metrics.contains("maru_emails_queued_total{kind=\"verification_code\"}"), "{metrics}");
    assert!(metrics.contains("maru_emails_sent_total{kind=\"verification_code\"}"), "{metrics}");
    assert!(metrics.contains("maru_email_outbox_oldest_age_seconds"), "{metrics}");
    // A sent mail's body (the code) is erased from the outbox.
    let bodies: Vec<String> =
        sqlx::query_scalar("select body from email_outbox where sent_at is not null").fetch_all(&pool).await.unwrap();
    assert_eq!(bodies, ["", ""]);
}

#[sqlx::test]
async fn five_wrong_codes_kill_the_code_even_racing(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_settings(pool.clone(), mail_settings(&sink.url())).await;
    let kim = app.user("kim").await;
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    let code = sink.wait_to("kim@example.com").await.code();
    for left in (0..5).rev() {
        let s = assert_err(
            app.auth().verify_email(kim.req(verify(&wrong(&code)))).await,
            Code::PermissionDenied,
            "VERIFICATION_CODE_MISMATCH",
        );
        assert_eq!(attempts_left(&s), left.to_string());
    }
    // Now even the right code is refused: a new one is needed.
    assert_err(
        app.auth().verify_email(kim.req(verify(&code))).await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXHAUSTED",
    );
    assert!(verified_at(&pool, &kim.id).await.is_none());

    // Ten wrong guesses at once at a new code: exactly five count, the rest find it dead.
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    let first = code;
    let code = sink.wait_for(2).await.into_iter().map(|m| m.code()).find(|c| *c != first).unwrap();
    let calls = (0..10).map(|_| {
        let (mut auth, req) = (app.auth(), kim.req(verify(&wrong(&code))));
        async move { auth.verify_email(req).await }
    });
    let results = futures::future::join_all(calls).await;
    let reasons: Vec<String> = results.iter().map(|r| reason(r.as_ref().unwrap_err())).collect();
    assert_eq!(reasons.iter().filter(|r| *r == "VERIFICATION_CODE_MISMATCH").count(), 5, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "VERIFICATION_CODE_EXHAUSTED").count(), 5, "{reasons:?}");
    assert_err(
        app.auth().verify_email(kim.req(verify(&code))).await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXHAUSTED",
    );

    // A third code works.
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    let seen: BTreeSet<String> = [first, code].into();
    let third = sink.wait_for(3).await.into_iter().map(|m| m.code()).find(|c| !seen.contains(c)).unwrap();
    app.auth().verify_email(kim.req(verify(&third))).await.unwrap();
}

#[sqlx::test]
async fn codes_and_reset_tokens_expire_on_the_clock(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let clock = TestClock::new(chrono::Utc::now());
    let app = TestApp::spawn_clock(pool.clone(), mail_settings(&sink.url()), clock.clone()).await;
    let kim = app.user("kim").await;
    let lee = app.user("lee").await;

    // A code works up to its fifth minute, not at it.
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    app.auth().send_verification_code(lee.req(send_code(""))).await.unwrap();
    let kim_code = sink.wait_to("kim@example.com").await.code();
    let lee_code = sink.wait_to("lee@example.com").await.code();
    clock.advance(chrono::Duration::seconds(299));
    app.auth().verify_email(lee.req(verify(&lee_code))).await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    assert_err(
        app.auth().verify_email(kim.req(verify(&kim_code))).await,
        Code::FailedPrecondition,
        "VERIFICATION_CODE_EXPIRED",
    );

    // A reset token works for 30 minutes.
    app.auth().request_password_reset(request_reset("kim@example.com", "en")).await.unwrap();
    app.auth().request_password_reset(request_reset("lee@example.com", "en")).await.unwrap();
    let kim_token =
        sink.wait_for(4).await.into_iter().find(|m| m.to == "kim@example.com" && m.subject.contains("Reset"));
    let kim_token = kim_token.unwrap().reset_token();
    let lee_token =
        sink.wait_for(4).await.into_iter().find(|m| m.to == "lee@example.com" && m.subject.contains("Reset"));
    let lee_token = lee_token.unwrap().reset_token();
    clock.advance(chrono::Duration::minutes(30) - chrono::Duration::seconds(1));
    let reset =
        |token: &str| pb::ResetPasswordRequest { token: token.into(), new_password: "brand new password".into() };
    app.auth().reset_password(reset(&lee_token)).await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    assert_err(app.auth().reset_password(reset(&kim_token)).await, Code::Unauthenticated, "RESET_TOKEN_INVALID");
}

#[sqlx::test]
async fn sends_are_limited_per_account_and_per_address(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let clock = TestClock::new(chrono::Utc::now());
    let mut s = mail_settings(&sink.url());
    s.mail.max_per_account = 3;
    s.mail.max_per_address = 2;
    s.mail.limit_window_s = 600;
    let app = TestApp::spawn_clock(pool.clone(), s, clock.clone()).await;
    let users = app.fast_users("racer", 2).await;
    let kim = &users[0];

    // Six sends at once: the address allows two per window (the account three), so exactly two
    // mails are queued and four refused with RetryInfo.
    let calls = (0..6).map(|_| {
        let (mut auth, req) = (app.auth(), kim.req(send_code("")));
        async move { auth.send_verification_code(req).await }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 2, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!((r.code(), reason(r).as_str()), (Code::ResourceExhausted, "EMAIL_RATE_LIMITED"), "{r:?}");
        let info = r.get_details_error_info().unwrap();
        assert_eq!(info.metadata["limit"], "address");
        let delay = r.get_details_retry_info().unwrap().retry_delay.unwrap();
        assert!(delay > Duration::ZERO && delay <= Duration::from_secs(600), "{delay:?}");
    }
    sink.wait_for(2).await;
    let queued: i64 = sqlx::query_scalar("select count(*) from email_outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(queued, 2);

    // The next window allows again.
    clock.advance(chrono::Duration::seconds(600));
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();

    // Reset requests: the address limit holds for an unknown address exactly as for a known one
    // (racer1 asked for no code: codes and reset mails share the address's count).
    for email in ["nobody@example.com", "racer1@example.com"] {
        for _ in 0..2 {
            app.auth().request_password_reset(request_reset(email, "")).await.unwrap();
        }
        let s = assert_err(
            app.auth().request_password_reset(request_reset(&email.to_uppercase(), "")).await,
            Code::ResourceExhausted,
            "EMAIL_RATE_LIMITED",
        );
        assert!(s.get_details_retry_info().is_some());
    }
}

#[sqlx::test]
async fn sends_are_limited_per_account_across_address_windows(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let mut s = mail_settings(&sink.url());
    s.mail.max_per_account = 2;
    s.mail.max_per_address = 10;
    let app = TestApp::spawn_settings(pool.clone(), s).await;
    let kim = app.user("kim").await;
    for _ in 0..2 {
        app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    }
    let s = assert_err(
        app.auth().send_verification_code(kim.req(send_code(""))).await,
        Code::ResourceExhausted,
        "EMAIL_RATE_LIMITED",
    );
    assert_eq!(s.get_details_error_info().unwrap().metadata["limit"], "account");
}

#[sqlx::test]
async fn a_password_reset_is_single_use_and_ends_every_session(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_settings(pool.clone(), mail_settings(&sink.url())).await;
    let kim = app.user("kim").await;
    let phone = app.login("kim").await;

    app.auth().request_password_reset(request_reset(" KIM@example.com ", "")).await.unwrap();
    let mail = sink.wait_to("kim@example.com").await;
    assert_eq!(mail.subject, "[maru] 비밀번호 재설정");
    assert!(mail.body.contains("모든 기기에서 로그아웃"), "{mail:?}");
    let token = mail.reset_token();

    // Refusals first: a bad password is INVALID_ARGUMENT and uses nothing.
    let s = assert_err(
        app.auth()
            .reset_password(pb::ResetPasswordRequest { token: token.clone(), new_password: "short".into() })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["new_password"]);
    let s = assert_err(
        app.auth().reset_password(pb::ResetPasswordRequest { token: String::new(), new_password: String::new() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["token", "new_password"]);
    assert_err(
        app.auth()
            .reset_password(pb::ResetPasswordRequest {
                token: format!("{token}x"),
                new_password: "brand new password".into(),
            })
            .await,
        Code::Unauthenticated,
        "RESET_TOKEN_INVALID",
    );

    // Two uses at once: exactly one wins.
    let calls = (0..2).map(|i| {
        let mut auth = app.auth();
        let req = pb::ResetPasswordRequest { token: token.clone(), new_password: format!("brand new password {i}") };
        async move { auth.reset_password(req).await }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let winner = results.iter().position(|r| r.is_ok()).unwrap();
    assert_err(results.into_iter().find(|r| r.is_err()).unwrap(), Code::Unauthenticated, "RESET_TOKEN_INVALID");
    assert_err(
        app.auth().reset_password(pb::ResetPasswordRequest { token, new_password: "another password".into() }).await,
        Code::Unauthenticated,
        "RESET_TOKEN_INVALID",
    );

    // Every session ended: access tokens and refresh tokens of both devices.
    for access in [&kim.token, &phone.access_token] {
        let r = app.auth().who_am_i(bearer(access, pb::WhoAmIRequest {})).await;
        assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
    }
    for refresh in [&kim.refresh, &phone.refresh_token] {
        let r = app.auth().refresh(pb::RefreshRequest { refresh_token: refresh.clone() }).await;
        assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);
    }
    // The new password signs in, the old one does not; the address counts as verified.
    let login = |password: String| pb::LoginRequest { login: "kim".into(), password };
    assert_err(app.auth().login(login(PASSWORD.into())).await, Code::Unauthenticated, "BAD_CREDENTIALS");
    app.auth().login(login(format!("brand new password {winner}"))).await.unwrap();
    assert!(verified_at(&pool, &kim.id).await.is_some());
}

#[sqlx::test]
async fn a_reset_for_an_unknown_address_answers_the_same_and_sends_nothing(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let app = TestApp::spawn_settings(pool.clone(), mail_settings(&sink.url())).await;
    app.sign_up("kim").await;
    let unknown = app.auth().request_password_reset(request_reset("nobody@example.com", "")).await.unwrap();
    let known = app.auth().request_password_reset(request_reset("kim@example.com", "")).await.unwrap();
    assert_eq!(unknown.metadata().keys().count(), known.metadata().keys().count());
    assert_eq!(prost::Message::encode_to_vec(unknown.get_ref()), prost::Message::encode_to_vec(known.get_ref()));

    // Only kim's mail: once it arrived and nothing is pending, the sink holds exactly it. The
    // sink may hold the mail a moment before the delivery job stamps it sent: wait for that.
    sink.wait_to("kim@example.com").await;
    let mut pending = -1_i64;
    for _ in 0..100 {
        pending = sqlx::query_scalar("select count(*) from email_outbox where sent_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "a mail is still pending after 10 s");
    let to: Vec<String> = sink.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(to, ["kim@example.com"]);
    let tokens: i64 = sqlx::query_scalar("select count(*) from password_reset_tokens").fetch_one(&pool).await.unwrap();
    assert_eq!(tokens, 1);

    // A malformed address is a field violation, not a silent success.
    let s = assert_err(
        app.auth().request_password_reset(request_reset("not-an-address", "")).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["email"]);
}

#[sqlx::test]
async fn smtp_down_is_retried_and_delivered_once_it_is_up(pool: PgPool) {
    let port = free_port();
    let app = TestApp::spawn_settings(pool.clone(), mail_settings(&format!("smtp://127.0.0.1:{port}"))).await;
    let kim = app.user("kim").await;
    app.auth().send_verification_code(kim.req(send_code("en"))).await.unwrap();

    // Attempts fail while nothing listens.
    let mut attempts = 0;
    for _ in 0..400 {
        attempts = sqlx::query_scalar("select attempts from email_outbox").fetch_one(&pool).await.unwrap();
        if attempts >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(attempts >= 2, "failed attempts are recorded: {attempts}");
    let (sent, error): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
        sqlx::query_as("select sent_at, last_error from email_outbox").fetch_one(&pool).await.unwrap();
    assert!(sent.is_none());
    assert_eq!(error.as_deref(), Some("connection failed"));
    assert!(app.metrics().await.contains("maru_emails_failed_total{kind=\"verification_code\"}"));

    let sink = SmtpSink::start_on(port).await;
    let mail = sink.wait_to("kim@example.com").await;
    app.auth().verify_email(kim.req(verify(&mail.code()))).await.unwrap();
    let (sent, failed): (Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select sent_at, failed_at from email_outbox").fetch_one(&pool).await.unwrap();
    assert!(sent.is_some() && failed.is_none());
    assert_eq!(sink.messages().len(), 1);
}

#[sqlx::test]
async fn a_mail_is_given_up_after_max_attempts(pool: PgPool) {
    let port = free_port();
    let mut s = mail_settings(&format!("smtp://127.0.0.1:{port}"));
    s.mail.max_attempts = 2;
    let app = TestApp::spawn_settings(pool.clone(), s).await;
    let kim = app.user("kim").await;
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    for _ in 0..400 {
        let failed: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("select failed_at from email_outbox").fetch_one(&pool).await.unwrap();
        if failed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (attempts, failed): (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select attempts, failed_at from email_outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(attempts, 2);
    assert!(failed.is_some());
    // A given-up mail is not sent once the server is back.
    let sink = SmtpSink::start_on(port).await;
    let other = app.user("lee").await;
    app.auth().send_verification_code(other.req(send_code(""))).await.unwrap();
    sink.wait_to("lee@example.com").await;
    assert_eq!(sink.messages().len(), 1);
}

#[sqlx::test]
async fn racing_delivery_workers_never_send_a_mail_twice(pool: PgPool) {
    let sink = SmtpSink::start().await;
    let mut s = mail_settings(&sink.url());
    s.mail.batch_size = 3;
    let a = TestApp::spawn_settings(pool.clone(), s.clone()).await;
    let _b = TestApp::spawn_settings(pool.clone(), s.clone()).await;

    const N: usize = 40;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..N {
        let rendered = maru::mail::Rendered { subject: format!("mail {i}"), body: format!("body {i}") };
        maru::mail::enqueue(&mut tx, maru::mail::Kind::VerificationCode, &format!("r{i}@example.com"), &rendered)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // Besides both replicas' jobs, four more workers deliver at once.
    let sender = maru::mail::Sender::from_settings(&s.mail).unwrap().unwrap();
    let workers = (0..4).map(|_| {
        let (state, sender) = (a.state.clone(), sender.clone());
        async move { maru::mail::deliver_due(&state, &sender).await.unwrap() }
    });
    futures::future::join_all(workers).await;

    sink.wait_for(N).await;
    for _ in 0..400 {
        let pending: i64 = sqlx::query_scalar("select count(*) from email_outbox where sent_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let received = sink.messages();
    assert_eq!(received.len(), N, "each mail exactly once");
    let subjects: BTreeSet<String> = received.into_iter().map(|m| m.subject).collect();
    assert_eq!(subjects.len(), N);
    let attempts: i64 = sqlx::query_scalar("select sum(attempts) from email_outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(attempts, N as i64, "one attempt per mail");
}

#[sqlx::test]
async fn without_smtp_url_mail_waits_in_the_outbox(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let kim = app.user("kim").await;
    app.auth().send_verification_code(kim.req(send_code(""))).await.unwrap();
    let (attempts, sent): (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select attempts, sent_at from email_outbox").fetch_one(&pool).await.unwrap();
    assert_eq!((attempts, sent), (0, None));
    // The age gauge sees it (the job measures it every poll).
    let mut seen = false;
    for _ in 0..100 {
        if app.metrics().await.lines().any(|l| l.starts_with("maru_email_outbox_oldest_age_seconds ")) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen);
}
