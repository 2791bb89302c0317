//! The reference web app's static files under `/app/` on the gRPC listener (`web.enabled`):
//! content types, the CSP and security headers, `no-cache` with ETag revalidation, the
//! index.html fallback for the app's routes, 404 for missing assets, 405 for writes; gRPC on the
//! same listener unaffected; disabled (the default) → 404.

use sqlx::PgPool;

use crate::helpers::*;

fn app_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("maru-web-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(d.join("assets")).unwrap();
    std::fs::write(d.join("index.html"), "<!doctype html><title>maru</title><div id=app></div>").unwrap();
    std::fs::write(d.join("app.js"), "console.log('maru')").unwrap();
    std::fs::write(d.join("assets/logo.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>").unwrap();
    d
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[sqlx::test]
async fn app_serves_the_built_files_with_csp_and_falls_back_to_index(pool: PgPool) {
    let dir = app_dir();
    let app = TestApp::spawn_with(pool, |s| {
        s.web.enabled = true;
        s.web.dir = dir.display().to_string();
    })
    .await;
    let base = format!("http://{}", app.grpc_addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let r = http.get(format!("{base}/app/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let csp = header(&r, "content-security-policy");
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    let etag = header(&r, "etag").to_owned();
    assert!(etag.starts_with('"'), "{etag}");
    assert!(r.text().await.unwrap().contains("<div id=app>"));

    // The app's routes get index.html; assets their own type; a missing asset is 404.
    let r = http.get(format!("{base}/app/chat/room-1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<div id=app>"));
    let r = http.get(format!("{base}/app/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    assert!(!header(&r, "content-security-policy").is_empty());
    let r = http.get(format!("{base}/app/assets/logo.svg")).send().await.unwrap();
    assert_eq!(header(&r, "content-type"), "image/svg+xml");
    let r = http.get(format!("{base}/app/missing.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(format!("{base}/app/.hidden")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Revalidation: the same ETag → 304 without a body.
    let r = http.get(format!("{base}/app/")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);

    // HEAD has the headers and no body; writes are refused; /app redirects to /app/.
    let r = http.head(format!("{base}/app/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    assert!(r.bytes().await.unwrap().is_empty());
    let r = http.post(format!("{base}/app/")).body("x").send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "GET, HEAD");
    let r = http.get(format!("{base}/app")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(header(&r, "location"), "/app/");

    // gRPC on the same listener is untouched.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status, 1);
    std::fs::remove_dir_all(dir).ok();
}

#[sqlx::test]
async fn app_is_404_when_disabled(pool: PgPool) {
    let dir = app_dir();
    // A built app in place, but web.enabled is false.
    let app = TestApp::spawn_with(pool, |s| {
        s.web.dir = dir.display().to_string();
        s.web.enabled = false;
    })
    .await;
    let r = reqwest::get(format!("http://{}/app/", app.grpc_addr)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("content-security-policy").is_none());
    let r = reqwest::get(format!("http://{}/app/app.js", app.grpc_addr)).await.unwrap();
    assert_eq!(r.status(), 404);
    std::fs::remove_dir_all(dir).ok();
}

#[sqlx::test]
async fn an_app_not_built_yet_says_how_to_build_it(pool: PgPool) {
    // web.enabled is the default; the directory holds no build.
    let empty = std::env::temp_dir().join(format!("maru-web-empty-{}", uuid::Uuid::new_v4().simple()));
    let app = TestApp::spawn_with(pool, |s| s.web.dir = empty.display().to_string()).await;
    assert!(app.state.settings.web.enabled);
    let r = reqwest::get(format!("http://{}/app/", app.grpc_addr)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("content-security-policy").is_some());
    assert!(r.text().await.unwrap().contains("npm run build"));
}

/// The sources a directive of `csp` allows (`connect-src 'self' https://a` → `['self', https://a]`).
fn sources<'a>(csp: &'a str, directive: &str) -> Vec<&'a str> {
    csp.split(';')
        .map(str::split_whitespace)
        .find_map(|mut parts| (parts.next() == Some(directive)).then(|| parts.collect()))
        .unwrap_or_default()
}

#[sqlx::test]
async fn the_policy_lets_the_app_put_uploads_and_show_photos_where_media_answers(pool: PgPool) {
    // Media on another origin than the page (maru behind a media host name): the PUT of an
    // upload (connect-src) and the variants (img-src) must be allowed by the app's policy.
    let dir = app_dir();
    let media_dir = std::env::temp_dir().join(format!("maru-web-media-{}", uuid::Uuid::new_v4().simple()));
    let app = TestApp::spawn_with(pool, |s| {
        s.web.enabled = true;
        s.web.dir = dir.display().to_string();
        s.media.data_dir = media_dir.display().to_string();
        s.media.public_url = "https://media.example.org/maru/".into();
    })
    .await;
    let kim = app.user("web.csp.kim").await;
    let ticket = maru::grpc::pb::media_service_client::MediaServiceClient::new(app.channel.clone())
        .create_upload(kim.req(maru::grpc::pb::CreateUploadRequest {
            purpose: maru::grpc::pb::MediaPurpose::PostImage as i32,
            content_type: "image/png".into(),
            size_bytes: 1000,
            sha256: String::new(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let origin = url::Url::parse(&ticket.upload_url).unwrap().origin().ascii_serialization();
    assert_eq!(origin, "https://media.example.org");

    let r = reqwest::get(format!("http://{}/app/", app.grpc_addr)).await.unwrap();
    let csp = header(&r, "content-security-policy").to_owned();
    assert!(sources(&csp, "connect-src").contains(&origin.as_str()), "{csp}");
    assert!(sources(&csp, "img-src").contains(&origin.as_str()), "{csp}");
    // Nothing else is widened: scripts and styles stay on the page's own origin.
    assert_eq!(sources(&csp, "script-src"), ["'self'"]);
    assert_eq!(sources(&csp, "style-src"), ["'self'"]);
    assert_eq!(sources(&csp, "default-src"), ["'none'"]);
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_dir_all(media_dir).ok();
}
