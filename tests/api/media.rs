//! MediaService (issue 18) with the local backend: CreateUpload → PUT (maru's own
//! `/media/upload/<token>`) → CompleteUpload → processing by the durable queue → GetMedia READY
//! with variants served by `GET /media/<token>`; EXIF orientation applied and metadata
//! stripped; the bytes' real type decides; the size enforced while streaming; single-use
//! tokens; decompression bombs FAILED with a reason; quotas; who may see a media; a job whose
//! worker died (its lease ran out) finished exactly once by another replica.

use std::time::Duration;

use image::{ExtendedColorType, ImageEncoder};
use maru::grpc::pb;
use maru::grpc::pb::media_service_client::MediaServiceClient;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::*;

pub(crate) fn api(app: &TestApp) -> MediaServiceClient<Channel> {
    MediaServiceClient::new(app.channel.clone())
}

/// The value of the sample `series` (name and labels as rendered) in `metrics`, 0 when absent.
/// Counters are process-wide and tests run in parallel: compare with `>=`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

pub(crate) fn data_dir() -> String {
    std::env::temp_dir().join(format!("maru-media-test-{}", uuid::Uuid::new_v4().simple())).display().to_string()
}

/// A media test server: its own data directory, a fast queue poll.
pub(crate) async fn spawn(pool: PgPool, adjust: impl FnOnce(&mut maru::config::Settings)) -> TestApp {
    TestApp::spawn_with(pool, |s| {
        s.media.data_dir = data_dir();
        s.media.poll_interval_ms = 50;
        adjust(s);
    })
    .await
}

/// A `w`×`h` JPEG: red on the left half, blue on the right.
pub(crate) fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(
            w,
            h,
            |x, _| if x < w / 2 { image::Rgb([220, 20, 20]) } else { image::Rgb([20, 20, 220]) },
        );
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&img, w, h, ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// `jpeg` with an EXIF APP1 segment right after SOI carrying `Orientation` = `orientation`.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG whose header claims `w`×`h` pixels and that has no image data.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A tiny IDAT (an empty zlib stream) and IEND: a decoder reads the header, then would inflate.
    for (kind, data) in [(&b"IDAT"[..], &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01][..]), (&b"IEND"[..], &[][..])]
    {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

pub(crate) fn create_req(content_type: &str, size: usize) -> pb::CreateUploadRequest {
    pb::CreateUploadRequest {
        purpose: pb::MediaPurpose::PostImage as i32,
        content_type: content_type.into(),
        size_bytes: size as i64,
        sha256: String::new(),
        request_id: String::new(),
    }
}

pub(crate) async fn create(app: &TestApp, who: &TestUser, content_type: &str, size: usize) -> pb::CreateUploadResponse {
    api(app).create_upload(who.req(create_req(content_type, size))).await.expect("create upload").into_inner()
}

pub(crate) async fn put(ticket: &pb::CreateUploadResponse, body: Vec<u8>) -> reqwest::Response {
    let mut r = reqwest::Client::new().put(&ticket.upload_url);
    for h in &ticket.upload_headers {
        r = r.header(&h.name, &h.value);
    }
    r.body(body).send().await.expect("PUT reaches the server")
}

pub(crate) async fn complete(app: &TestApp, who: &TestUser, id: &str) -> Result<pb::Media, tonic::Status> {
    api(app)
        .complete_upload(who.req(pb::CompleteUploadRequest { media_id: id.into() }))
        .await
        .map(|r| r.into_inner().media.unwrap())
}

pub(crate) async fn get(app: &TestApp, who: &TestUser, id: &str) -> Result<pb::Media, tonic::Status> {
    api(app)
        .get_media(who.req(pb::GetMediaRequest { media_id: id.into() }))
        .await
        .map(|r| r.into_inner().media.unwrap())
}

/// Waits until the media leaves PROCESSING.
pub(crate) async fn processed(app: &TestApp, who: &TestUser, id: &str) -> pb::Media {
    for _ in 0..600 {
        let m = get(app, who, id).await.expect("get media");
        if m.state != pb::MediaState::Processing as i32 {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("media {id} never left PROCESSING");
}

/// Uploads `bytes` as `content_type` and completes it.
pub(crate) async fn upload(app: &TestApp, who: &TestUser, content_type: &str, bytes: Vec<u8>) -> pb::Media {
    let t = create(app, who, content_type, bytes.len()).await;
    let r = put(&t, bytes).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    complete(app, who, &t.media_id).await.expect("complete")
}

#[sqlx::test]
async fn an_upload_is_processed_into_variants_served_with_cache_headers(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(1600, 1200);
    let t = create(&app, &kim, "image/jpeg", bytes.len()).await;
    assert!(t.upload_url.contains("/media/upload/"), "{}", t.upload_url);
    assert_eq!(t.upload_headers.len(), 1);
    assert!(t.expires_at.is_some());

    // Not yet uploaded: CompleteUpload says so.
    assert_err(complete(&app, &kim, &t.media_id).await, Code::FailedPrecondition, "MEDIA_UPLOAD_INCOMPLETE");
    let r = put(&t, bytes.clone()).await;
    assert_eq!(r.status(), 204);
    // The token is single-use.
    let again = put(&t, bytes.clone()).await;
    assert_eq!(again.status(), 409);

    let m = complete(&app, &kim, &t.media_id).await.unwrap();
    assert!([pb::MediaState::Processing as i32, pb::MediaState::Ready as i32].contains(&m.state), "state {}", m.state);
    assert_eq!(m.content_type, "image/jpeg");
    let m = processed(&app, &kim, &t.media_id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    let dims: Vec<_> = m.variants.iter().map(|v| (v.name.as_str(), v.width, v.height)).collect();
    assert_eq!(dims, vec![("thumbnail", 256, 192), ("display", 1080, 810)]);
    // CompleteUpload again answers the state, without a second job.
    let again = complete(&app, &kim, &t.media_id).await.unwrap();
    assert_eq!(again.state, pb::MediaState::Ready as i32);
    let jobs: i64 = sqlx::query_scalar("select count(*) from media_jobs").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(jobs, 1);

    let display = m.variants.iter().find(|v| v.name == "display").unwrap();
    let r = reqwest::get(&display.url).await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let cache = r.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.starts_with("private, max-age="), "{cache}");
    assert_eq!(r.headers()["content-type"].to_str().unwrap(), display.content_type);
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() as i64, display.size_bytes);
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!((img.width(), img.height()), (1080, 810));
    let r = reqwest::Client::new().get(&display.url).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    // A tampered token is refused.
    let r = reqwest::get(format!("{}x", display.url)).await.unwrap();
    assert_eq!(r.status(), 403);

    let metrics = app.metrics().await;
    assert!(sample(&metrics, r#"maru_media_uploads_total{purpose="post_image",outcome="completed"}"#) >= 1.0);
    assert!(sample(&metrics, r#"maru_media_processed_total{outcome="ready"}"#) >= 1.0);
    assert!(sample(&metrics, r#"maru_media_http_requests_total{outcome="token_used"}"#) >= 1.0);
}

#[sqlx::test]
async fn exif_orientation_is_applied_and_metadata_stripped(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    // Stored 400×200 (red left, blue right); orientation 6: shown rotated 90° clockwise.
    let bytes = with_exif_orientation(&jpeg(400, 200), 6);
    assert!(bytes.windows(4).any(|w| w == b"Exif"));
    let m = upload(&app, &kim, "image/jpeg", bytes).await;
    let m = processed(&app, &kim, &m.id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    let display = m.variants.iter().find(|v| v.name == "display").unwrap();
    assert_eq!((display.width, display.height), (200, 400));
    let body = reqwest::get(&display.url).await.unwrap().bytes().await.unwrap();
    assert!(!body.windows(4).any(|w| w == b"Exif"), "EXIF survived");
    let img = image::load_from_memory(&body).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (200, 400));
    // Rotated clockwise, the red left half is now on top.
    let top = img.get_pixel(100, 20);
    let bottom = img.get_pixel(100, 380);
    assert!(top[0] > 150 && top[2] < 100, "top {top:?}");
    assert!(bottom[2] > 150 && bottom[0] < 100, "bottom {bottom:?}");
}

#[sqlx::test]
async fn the_bytes_decide_the_type_not_the_name(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let text = b"this is a text file named photo.jpg\n".to_vec();
    let t = create(&app, &kim, "image/jpeg", text.len()).await;
    assert_eq!(put(&t, text).await.status(), 204);
    let s = assert_err(complete(&app, &kim, &t.media_id).await, Code::FailedPrecondition, "MEDIA_TYPE_UNSUPPORTED");
    assert!(s.message().contains("not a JPEG, PNG, WebP or GIF"), "{}", s.message());
    // A GIF is not an avatar.
    let gif =
        b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;"
            .to_vec();
    let mut req = create_req("image/png", gif.len());
    req.purpose = pb::MediaPurpose::Avatar as i32;
    let t = api(&app).create_upload(kim.req(req)).await.unwrap().into_inner();
    assert_eq!(put(&t, gif).await.status(), 204);
    let s = assert_err(complete(&app, &kim, &t.media_id).await, Code::FailedPrecondition, "MEDIA_TYPE_UNSUPPORTED");
    assert!(s.message().contains("image/gif"), "{}", s.message());
}

/// A raw HTTP/1.1 PUT with a chunked body (no Content-Length): the server only learns the size
/// while streaming. Returns the status code.
async fn put_chunked(url: &str, chunks: usize, chunk: &[u8]) -> u16 {
    let url = url::Url::parse(url).unwrap();
    let mut s = tokio::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: {}\r\ncontent-type: image/jpeg\r\ntransfer-encoding: chunked\r\n\r\n",
        url.path(),
        url.host_str().unwrap()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        // The server may answer and close before the whole body is sent.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || s.write_all(chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[sqlx::test]
async fn the_declared_size_is_enforced_while_streaming(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let t = create(&app, &kim, "image/jpeg", 100_000).await;
    // Content-Length over the declared size: refused before reading.
    assert_eq!(put(&t, vec![0xFF; 200_000]).await.status(), 413);
    // Chunked, no length: refused once the body passes the declared size.
    assert_eq!(put_chunked(&t.upload_url, 64, &[0xAB; 16 * 1024]).await, 413);
    // Short: refused, nothing kept.
    assert_eq!(put(&t, vec![0xFF; 50_000]).await.status(), 400);
    assert_err(complete(&app, &kim, &t.media_id).await, Code::FailedPrecondition, "MEDIA_UPLOAD_INCOMPLETE");
    // Refusals released the token: the right bytes still go in, once.
    let mut ok = jpeg(64, 64);
    ok.resize(100_000, 0);
    assert_eq!(put(&t, ok.clone()).await.status(), 204);
    assert_eq!(put(&t, ok).await.status(), 409);
    let m = complete(&app, &kim, &t.media_id).await.unwrap();
    assert_eq!(m.size_bytes, 100_000);
    let metrics = app.metrics().await;
    assert!(sample(&metrics, r#"maru_media_http_requests_total{outcome="too_large"}"#) >= 2.0);
}

#[sqlx::test]
async fn a_declared_sha256_must_match(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(32, 32);
    let mut req = create_req("image/jpeg", bytes.len());
    req.sha256 = "00".repeat(32);
    let t = api(&app).create_upload(kim.req(req)).await.unwrap().into_inner();
    assert_eq!(put(&t, bytes.clone()).await.status(), 204);
    let s = assert_err(complete(&app, &kim, &t.media_id).await, Code::FailedPrecondition, "MEDIA_UPLOAD_INCOMPLETE");
    assert!(s.message().contains("SHA-256"), "{}", s.message());
    use sha2::Digest as _;
    let mut req = create_req("image/jpeg", bytes.len());
    req.sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let t = api(&app).create_upload(kim.req(req)).await.unwrap().into_inner();
    assert_eq!(put(&t, bytes).await.status(), 204);
    complete(&app, &kim, &t.media_id).await.unwrap();
}

#[sqlx::test]
async fn a_pixel_bomb_fails_with_its_reason(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let m = upload(&app, &kim, "image/png", png_bomb(100_000, 100_000)).await;
    let m = processed(&app, &kim, &m.id).await;
    assert_eq!(m.state, pb::MediaState::Failed as i32);
    assert!(m.failure_reason.contains("100000x100000"), "{}", m.failure_reason);
    assert!(m.variants.is_empty());
    let metrics = app.metrics().await;
    assert!(sample(&metrics, r#"maru_media_processing_failures_total{reason="too_many_pixels"}"#) >= 1.0);
}

#[sqlx::test]
async fn bad_requests_name_every_field_and_quotas_hold(pool: PgPool) {
    let app = spawn(pool, |s| s.media.quota_uploads_per_day = 2).await;
    let kim = app.user("kim").await;
    let s = assert_err(
        api(&app)
            .create_upload(kim.req(pb::CreateUploadRequest {
                purpose: 0,
                content_type: "text/plain".into(),
                size_bytes: 0,
                sha256: "xyz\0".into(),
                request_id: "bad id!".into(),
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), vec!["purpose", "sha256", "request_id"]);
    let mut req = create_req("text/plain", 11 * 1024 * 1024);
    req.purpose = pb::MediaPurpose::Avatar as i32;
    let s = assert_err(api(&app).create_upload(kim.req(req)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), vec!["content_type", "size_bytes"]);

    // request_id: a replay answers the same ticket and does not count twice.
    let mut req = create_req("image/jpeg", 1000);
    req.request_id = "r1".into();
    let a = api(&app).create_upload(kim.req(req.clone())).await.unwrap().into_inner();
    let b = api(&app).create_upload(kim.req(req)).await.unwrap().into_inner();
    assert_eq!(a.media_id, b.media_id);
    create(&app, &kim, "image/png", 1000).await;
    let s = assert_err(
        api(&app).create_upload(kim.req(create_req("image/jpeg", 1000))).await,
        Code::ResourceExhausted,
        "MEDIA_QUOTA_EXCEEDED",
    );
    assert!(s.message().contains("2 of 2"), "{}", s.message());
    use tonic_types::StatusExt as _;
    assert!(s.get_details_retry_info().is_some());
    // Another user has their own quota.
    let lee = app.user("lee").await;
    create(&app, &lee, "image/jpeg", 1000).await;
}

#[sqlx::test]
async fn only_the_owner_sees_and_completes_a_media(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let lee = app.user("lee").await;
    let t = create(&app, &kim, "image/jpeg", 10).await;
    assert_err(complete(&app, &lee, &t.media_id).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_err(get(&app, &lee, &t.media_id).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_err(get(&app, &kim, &uuid::Uuid::new_v4().to_string()).await, Code::NotFound, "MEDIA_NOT_FOUND");
    let s = assert_err(get(&app, &kim, "not-a-uuid").await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), vec!["media_id"]);
    let m = get(&app, &kim, &t.media_id).await.unwrap();
    assert_eq!(m.state, pb::MediaState::Uploading as i32);
    let anonymous = api(&app).get_media(pb::GetMediaRequest { media_id: t.media_id.clone() }).await;
    assert_err(anonymous, Code::Unauthenticated, "TOKEN_MISSING");
    let admin = app.admin_user("root").await;
    assert_eq!(get(&app, &admin, &t.media_id).await.unwrap().id, t.media_id);
}

#[sqlx::test]
async fn a_job_whose_worker_died_is_finished_once_by_another_replica(pool: PgPool) {
    // Replica A polls the queue once at start, then not for a minute.
    let dir = data_dir();
    let shared = dir.clone();
    let a = spawn(pool.clone(), |s| {
        s.media.data_dir = shared;
        s.media.poll_interval_ms = 60_000;
    })
    .await;
    let kim = a.user("kim").await;
    let m = upload(&a, &kim, "image/jpeg", jpeg(800, 600)).await;
    assert_eq!(m.state, pb::MediaState::Processing as i32);
    // A worker claims the job with a 1 s lease, then dies without a heartbeat.
    let now = a.state.clock.now();
    let claimed = maru::media::store::claim_job(&a.state.db, "dead-worker", 1, now).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 1);
    // Nobody else can claim it while the lease runs.
    assert!(maru::media::store::claim_job(&a.state.db, "other", 1, now).await.unwrap().is_none());
    // Replica B takes it over once the lease ran out and finishes it.
    let b = spawn(pool.clone(), |s| s.media.data_dir = dir).await;
    let done = processed(&b, &kim, &m.id).await;
    assert_eq!(done.state, pb::MediaState::Ready as i32, "{}", done.failure_reason);
    let (state, attempts, worker): (String, i32, String) =
        sqlx::query_as("select state, attempts, worker from media_jobs where media_id = $1::uuid")
            .bind(&m.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("done", 2));
    assert_ne!(worker, "dead-worker");
    let variants: i64 = sqlx::query_scalar("select count(*) from media_variants where media_id = $1::uuid")
        .bind(&m.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(variants, 2);
    // The dead worker's late finish changes nothing: the state change is conditional.
    let late = maru::media::store::finish(&pool, m.id.parse().unwrap(), false, Some("late"), now).await.unwrap();
    assert!(!late);
    assert_eq!(get(&b, &kim, &m.id).await.unwrap().state, pb::MediaState::Ready as i32);
}

/// A moto S3 server on a free port for one test, stopped when dropped.
pub(crate) struct Moto {
    child: std::process::Child,
    pub(crate) url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server is installed (pip install 'moto[server]')");
    let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    for _ in 0..200 {
        if reqwest::get(&moto.url).await.is_ok() {
            return moto;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto_server did not start");
}

/// A moto S3 server with the bucket `maru-media`, and a server using it as its media store.
pub(crate) async fn spawn_s3(pool: PgPool) -> (Moto, TestApp) {
    let s3 = moto().await;
    let r = reqwest::Client::new().put(format!("{}/maru-media", s3.url)).send().await.unwrap();
    assert!(r.status().is_success(), "bucket: {}", r.status());
    let endpoint = s3.url.clone();
    let app = spawn(pool, |s| {
        s.media.backend = maru::media::config::MediaBackend::S3;
        s.media.s3_bucket = "maru-media".into();
        s.media.s3_endpoint = endpoint;
        s.media.s3_allow_http = true;
        s.media.s3_access_key_id = Some("testing".to_owned().into());
        s.media.s3_secret_access_key = Some("testing".to_owned().into());
    })
    .await;
    (s3, app)
}

#[sqlx::test]
async fn the_s3_backend_uses_presigned_urls(pool: PgPool) {
    let (s3, app) = spawn_s3(pool).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(640, 480);
    let t = create(&app, &kim, "image/jpeg", bytes.len()).await;
    assert!(t.upload_url.starts_with(&s3.url), "{}", t.upload_url);
    assert!(t.upload_url.contains("X-Amz-Signature="), "{}", t.upload_url);
    assert!(put(&t, bytes).await.status().is_success());
    complete(&app, &kim, &t.media_id).await.unwrap();
    let m = processed(&app, &kim, &t.media_id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    let thumb = m.variants.iter().find(|v| v.name == "thumbnail").unwrap();
    assert_eq!((thumb.width, thumb.height), (256, 192));
    assert!(thumb.url.starts_with(&s3.url) && thumb.url.contains("X-Amz-Signature="), "{}", thumb.url);
    let body = reqwest::get(&thumb.url).await.unwrap().bytes().await.unwrap();
    let img = image::load_from_memory(&body).unwrap();
    assert_eq!((img.width(), img.height()), (256, 192));
}

// ---- attaching media to posts ----

fn feed_api(app: &TestApp) -> maru::grpc::pb::feed_service_client::FeedServiceClient<Channel> {
    maru::grpc::pb::feed_service_client::FeedServiceClient::new(app.channel.clone())
}

/// A READY post photo of `who`.
async fn ready_photo(app: &TestApp, who: &TestUser) -> String {
    let m = upload(app, who, "image/jpeg", jpeg(640, 480)).await;
    let m = processed(app, who, &m.id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    m.id
}

fn post_req(community: &str, text: &str, media: &[&str]) -> pb::CreatePostRequest {
    pb::CreatePostRequest {
        community_id: community.into(),
        public: community.is_empty(),
        text: text.into(),
        media_ids: media.iter().map(|m| (*m).to_owned()).collect(),
        ..Default::default()
    }
}

async fn create_post(app: &TestApp, who: &TestUser, req: pb::CreatePostRequest) -> Result<pb::Post, tonic::Status> {
    feed_api(app).create_post(who.req(req)).await.map(|r| r.into_inner().post.unwrap())
}

pub(crate) fn error_meta(s: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    s.get_details_error_info().and_then(|i| i.metadata.get(key).cloned())
}

#[sqlx::test]
async fn a_post_carries_its_photos_in_order_with_variant_urls(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let (a, b) = (ready_photo(&app, &kim).await, ready_photo(&app, &kim).await);
    let post = create_post(&app, &kim, post_req("", "사진 두 장", &[&b, &a])).await.unwrap();
    let ids: Vec<&str> = post.media.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    assert!(post.media.iter().all(|m| m.variants.len() == 2 && m.state == pb::MediaState::Ready as i32));
    // The URLs work for anyone holding them (anonymous reader of a public post).
    let got = feed_api(&app).get_post(pb::GetPostRequest { post_id: post.id.clone() }).await.unwrap().into_inner();
    let got = got.post.unwrap();
    assert_eq!(got.media.len(), 2);
    let thumb = got.media[0].variants.iter().find(|v| v.name == "thumbnail").unwrap();
    let r = reqwest::get(&thumb.url).await.unwrap();
    assert_eq!(r.status(), 200);
    // Lists carry them too.
    let page = feed_api(&app)
        .list_posts(pb::ListPostsRequest { author_handle: "kim".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.posts[0].media.len(), 2);
    // Attached media are never cleaned up, however old.
    sqlx::query("update media set created_at = now() - interval '3 days'").execute(&app.state.db).await.unwrap();
    let storage = maru::media::storage::Storage::from_settings(&app.state.settings.media).unwrap();
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 0);
    let got = feed_api(&app).get_post(pb::GetPostRequest { post_id: post.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.post.unwrap().media.len(), 2);
}

#[sqlx::test]
async fn every_refusal_of_an_attachment_names_the_media(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let lee = app.user("lee").await;
    let mine = ready_photo(&app, &kim).await;
    let theirs = ready_photo(&app, &lee).await;
    // Field violations: not an id, listed twice, nobody's, someone else's, the wrong purpose.
    let mut req = create_req("image/jpeg", 1000);
    req.purpose = pb::MediaPurpose::ProductImage as i32;
    let product = api(&app).create_upload(kim.req(req)).await.unwrap().into_inner().media_id;
    let nobody = uuid::Uuid::new_v4().to_string();
    let s = assert_err(
        create_post(&app, &kim, post_req("", "x", &["nope", &mine, &mine])).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_ids[0]", "media_ids[2]"]);
    let s = assert_err(
        create_post(&app, &kim, post_req("", "x", &[&mine, &nobody, &theirs, &product])).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_ids[1]", "media_ids[2]", "media_ids[3]"]);
    assert!(s.message().contains("PRODUCT_IMAGE"), "{}", s.message());
    let eleven: Vec<String> = (0..11).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let refs: Vec<&str> = eleven.iter().map(String::as_str).collect();
    let s =
        assert_err(create_post(&app, &kim, post_req("", "x", &refs)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["media_ids"]);
    // Not READY yet.
    let t = create(&app, &kim, "image/jpeg", 1000).await;
    let s = assert_err(
        create_post(&app, &kim, post_req("", "x", &[&mine, &t.media_id])).await,
        Code::FailedPrecondition,
        "MEDIA_NOT_READY",
    );
    assert_eq!(error_meta(&s, "field").as_deref(), Some("media_ids[1]"));
    assert_eq!(error_meta(&s, "state").as_deref(), Some("UPLOADING"));
    // A refused post is not written and attaches nothing.
    let posts: i64 = sqlx::query_scalar("select count(*) from posts").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(posts, 0);
    // Attached once: a second post (anywhere) is refused.
    let first = create_post(&app, &kim, post_req("", "first", &[&mine])).await.unwrap();
    let s = assert_err(
        create_post(&app, &kim, post_req("", "second", &[&mine])).await,
        Code::FailedPrecondition,
        "MEDIA_ALREADY_ATTACHED",
    );
    assert_eq!(error_meta(&s, "field").as_deref(), Some("media_ids[0]"));
    assert_eq!(first.media.len(), 1);
}

#[sqlx::test]
async fn update_post_replaces_the_photos_and_detached_ones_are_cleaned_up(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let (a, b, c) = (ready_photo(&app, &kim).await, ready_photo(&app, &kim).await, ready_photo(&app, &kim).await);
    let post = create_post(&app, &kim, post_req("", "사진", &[&a, &b])).await.unwrap();
    let update = |ids: &[&str], etag: &str| pb::UpdatePostRequest {
        post_id: post.id.clone(),
        media_ids: ids.iter().map(|m| (*m).to_owned()).collect(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["media_ids".into()] }),
        etag: etag.into(),
        ..Default::default()
    };
    let updated = feed_api(&app).update_post(kim.req(update(&[&c, &a], &post.etag))).await.unwrap().into_inner();
    let updated = updated.post.unwrap();
    let ids: Vec<&str> = updated.media.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [c.as_str(), a.as_str()]);
    assert_ne!(updated.etag, post.etag, "an edit of the photos is an edit");
    // b is detached: attachable elsewhere, and cleaned up like media never attached.
    let other = create_post(&app, &kim, post_req("", "b", &[&b])).await.unwrap();
    assert_eq!(other.media.len(), 1);
    feed_api(&app).delete_post(kim.req(pb::DeletePostRequest { post_id: other.id.clone() })).await.unwrap();
    sqlx::query("update media set created_at = now() - interval '3 days'").execute(&app.state.db).await.unwrap();
    let storage = maru::media::storage::Storage::from_settings(&app.state.settings.media).unwrap();
    assert_eq!(maru::media::worker::cleanup_once(&app.state, &storage).await.unwrap(), 1, "b, its post deleted");
    assert_err(get(&app, &kim, &b).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_eq!(get(&app, &kim, &a).await.unwrap().state, pb::MediaState::Ready as i32);
    // Another user's edit attaches nothing of theirs; the author cannot attach someone else's.
    let lee = app.user("lee").await;
    let theirs = ready_photo(&app, &lee).await;
    let s = assert_err(
        feed_api(&app).update_post(kim.req(update(&[&theirs], ""))).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_ids[0]"]);
    // An empty list detaches everything.
    let cleared = feed_api(&app).update_post(kim.req(update(&[], ""))).await.unwrap().into_inner();
    assert!(cleared.post.unwrap().media.is_empty());
}

#[sqlx::test]
async fn readers_see_a_posts_media_where_they_see_the_post(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let member = app.user("member").await;
    let outsider = app.user("outsider").await;
    let community = app.community("APARTMENT", "판교 푸르지오").await;
    app.add_member(&community, &kim, "APPROVED", "MEMBER").await;
    app.add_member(&community, &member, "APPROVED", "MEMBER").await;
    let (inside, public, loose) =
        (ready_photo(&app, &kim).await, ready_photo(&app, &kim).await, ready_photo(&app, &kim).await);
    let post = create_post(&app, &kim, post_req(&community, "단지 사진", &[&inside])).await.unwrap();
    create_post(&app, &kim, post_req("", "공개 사진", &[&public])).await.unwrap();
    // A member sees the community post's media; an outsider does not.
    assert_eq!(get(&app, &member, &inside).await.unwrap().variants.len(), 2);
    assert_err(get(&app, &outsider, &inside).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // Everyone signed in sees a public post's media; nobody sees unattached media of others.
    assert_eq!(get(&app, &outsider, &public).await.unwrap().id, public);
    assert_err(get(&app, &member, &loose).await, Code::NotFound, "MEDIA_NOT_FOUND");
    // A suspended post hides its media from readers, not from the owner.
    let admin = app.admin_user("root").await;
    feed_api(&app)
        .set_post_status(
            admin.req(pb::SetPostStatusRequest { post_id: post.id.clone(), status: pb::PostStatus::Suspended as i32 }),
        )
        .await
        .unwrap();
    assert_err(get(&app, &member, &inside).await, Code::NotFound, "MEDIA_NOT_FOUND");
    assert_eq!(get(&app, &kim, &inside).await.unwrap().id, inside);
}

#[sqlx::test]
async fn of_two_posts_attaching_the_same_media_at_once_exactly_one_wins(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    for round in 0..5 {
        let photo = ready_photo(&app, &kim).await;
        let (a, b) = tokio::join!(
            create_post(&app, &kim, post_req("", &format!("a{round}"), &[&photo])),
            create_post(&app, &kim, post_req("", &format!("b{round}"), &[&photo]))
        );
        let (won, lost): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
        assert_eq!((won.len(), lost.len()), (1, 1), "round {round}");
        assert_err(lost.into_iter().next().unwrap(), Code::FailedPrecondition, "MEDIA_ALREADY_ATTACHED");
        let winner = won.into_iter().next().unwrap().unwrap();
        assert_eq!(winner.media[0].id, photo);
        let (n, attached_to): (i64, Option<uuid::Uuid>) = sqlx::query_as(
            "select (select count(*) from posts where text like '_' || $2), (select attached_id from media where id = $1::uuid)",
        )
        .bind(&photo)
        .bind(round.to_string())
        .fetch_one(&app.state.db)
        .await
        .unwrap();
        assert_eq!(n, 1, "only the winner's post was written");
        assert_eq!(attached_to.map(|u| u.to_string()), Some(winner.id));
    }
}

/// A READY product image of `who`.
async fn ready_product_image(app: &TestApp, who: &TestUser) -> String {
    ready_for(app, who, pb::MediaPurpose::ProductImage).await
}

/// A READY media of `who` uploaded for `purpose` (CreateUpload → PUT → CompleteUpload).
pub(crate) async fn ready_for(app: &TestApp, who: &TestUser, purpose: pb::MediaPurpose) -> String {
    let bytes = jpeg(320, 240);
    let mut req = create_req("image/jpeg", bytes.len());
    req.purpose = purpose as i32;
    let t = api(app).create_upload(who.req(req)).await.unwrap().into_inner();
    assert_eq!(put(&t, bytes).await.status(), 204);
    complete(app, who, &t.media_id).await.unwrap();
    let m = processed(app, who, &t.media_id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    m.id
}

#[sqlx::test]
async fn a_product_carries_its_image_and_refusals_name_media_id(pool: PgPool) {
    use maru::grpc::pb::product_service_client::ProductServiceClient;
    let app = spawn(pool, |_| {}).await;
    let seller = app.user("seller").await;
    let buyer = app.user("buyer").await;
    let products = || ProductServiceClient::new(app.channel.clone());
    let product = |media: &str| pb::CreateProductRequest {
        name: "자전거 팝니다".into(),
        price: 50_000,
        media_id: media.into(),
        ..Default::default()
    };
    let image = ready_product_image(&app, &seller).await;
    let photo = ready_photo(&app, &seller).await;
    // A post photo is not a product image; someone else's image is nobody's.
    let s = assert_err(
        products().create_product(seller.req(product(&photo))).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_id"]);
    assert!(s.message().contains("POST_IMAGE"), "{}", s.message());
    let s = assert_err(
        products().create_product(buyer.req(product(&image))).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_id"]);

    let p = products().create_product(seller.req(product(&image))).await.unwrap().into_inner().product.unwrap();
    let m = p.media.as_ref().expect("the product's image");
    assert_eq!((m.id.as_str(), m.variants.len()), (image.as_str(), 2));
    // Lists and recommendations carry it; a buyer who sees the product may GetMedia it.
    let page = products()
        .list_user_products(pb::ListUserProductsRequest { handle: "seller".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.products[0].media.as_ref().map(|m| m.id.clone()), Some(image.clone()));
    assert_eq!(get(&app, &buyer, &image).await.unwrap().variants.len(), 2);
    // Attached once: not to a post too.
    let s = assert_err(
        create_post(&app, &seller, post_req("", "x", &[&image])).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["media_ids[0]"], "a product image is not a post photo");
    let second = products().create_product(seller.req(product(&image))).await;
    let s = assert_err(second, Code::FailedPrecondition, "MEDIA_ALREADY_ATTACHED");
    assert!(s.message().contains("product"), "{}", s.message());
    // An edit with an empty media_id detaches it; the buyer no longer sees it.
    let edit = pb::UpdateProductRequest {
        product_id: p.id.clone(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["media_id".into()] }),
        ..Default::default()
    };
    let edited = products().update_product(seller.req(edit)).await.unwrap().into_inner().product.unwrap();
    assert!(edited.media.is_none());
    assert_err(get(&app, &buyer, &image).await, Code::NotFound, "MEDIA_NOT_FOUND");
}
