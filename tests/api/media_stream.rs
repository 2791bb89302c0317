//! MediaService.UploadMedia (issue 18): the client-streaming upload of native clients. The
//! first message carries CreateUpload's metadata, then chunks of at most 1 MiB; it ends
//! PROCESSING like CompleteUpload. The size is enforced while streaming, the SHA-256 checked,
//! the type sniffed, quotas apply; a client that stops mid-way leaves no READY media.

use std::time::Duration;

use maru::grpc::pb;
use maru::grpc::pb::upload_media_request::Part;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tonic::Code;

use crate::helpers::*;
use crate::media::{api, create_req, jpeg, processed, spawn};

fn metadata(size: usize, sha256: &str) -> pb::UploadMediaRequest {
    let mut m = create_req("image/jpeg", size);
    m.sha256 = sha256.into();
    pb::UploadMediaRequest { part: Some(Part::Metadata(m)) }
}

fn chunk(bytes: &[u8]) -> pb::UploadMediaRequest {
    pb::UploadMediaRequest { part: Some(Part::Chunk(bytes.to_vec())) }
}

/// Metadata for `bytes`, then `bytes` in chunks of `size`.
fn messages(bytes: &[u8], size: usize, sha256: &str) -> Vec<pb::UploadMediaRequest> {
    let mut out = vec![metadata(bytes.len(), sha256)];
    out.extend(bytes.chunks(size).map(chunk));
    out
}

async fn upload(app: &TestApp, who: &TestUser, msgs: Vec<pb::UploadMediaRequest>) -> Result<pb::Media, tonic::Status> {
    api(app).upload_media(who.req(futures::stream::iter(msgs))).await.map(|r| r.into_inner().media.unwrap())
}

async fn states(app: &TestApp, who: &TestUser) -> Vec<String> {
    sqlx::query_scalar("select state from media where owner_id = $1::uuid order by created_at")
        .bind(&who.id)
        .fetch_all(&app.state.db)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_streamed_upload_ends_processing_and_becomes_ready(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(1600, 1200);
    assert!(bytes.len() > 4 * 8192, "several chunks: {}", bytes.len());
    let sha = hex::encode(Sha256::digest(&bytes));
    let m = upload(&app, &kim, messages(&bytes, 8192, &sha)).await.unwrap();
    assert_eq!(m.state, pb::MediaState::Processing as i32);
    assert_eq!((m.content_type.as_str(), m.size_bytes), ("image/jpeg", bytes.len() as i64));
    let m = processed(&app, &kim, &m.id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    let display = m.variants.iter().find(|v| v.name == "display").unwrap();
    assert_eq!((display.width, display.height), (1080, 810));
    // Chunks of up to 1 MiB are fine; the stored object is the bytes sent.
    let big = jpeg(3000, 2000);
    let m = upload(&app, &kim, messages(&big, 1024 * 1024, "")).await.unwrap();
    let key: String = sqlx::query_scalar("select object_key from media where id = $1::uuid")
        .bind(&m.id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    let stored = std::fs::read(std::path::Path::new(&app.state.settings.media.data_dir).join(key)).unwrap();
    assert_eq!(stored, big);
}

#[sqlx::test]
async fn every_refusal_of_a_streamed_upload_leaves_it_unfinished(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(400, 300);
    // The first message must be the metadata, and it is validated like CreateUpload's.
    let s = assert_err(upload(&app, &kim, vec![chunk(&bytes)]).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["metadata"]);
    let mut bad = create_req("text/plain", 0);
    bad.purpose = 0;
    let msgs = vec![pb::UploadMediaRequest { part: Some(Part::Metadata(bad)) }];
    let s = assert_err(upload(&app, &kim, msgs).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["purpose"]);
    // A chunk over 1 MiB.
    let mut msgs = vec![metadata(2 * 1024 * 1024, "")];
    msgs.push(chunk(&vec![0xFF; 1024 * 1024 + 1]));
    let s = assert_err(upload(&app, &kim, msgs).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["chunk"]);
    // More bytes than declared: refused when they pass it.
    let mut msgs = vec![metadata(1000, "")];
    msgs.extend([chunk(&[0xFF; 600]), chunk(&[0xFF; 600])]);
    let s = assert_err(upload(&app, &kim, msgs).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["size_bytes"]);
    // Fewer.
    let mut msgs = messages(&bytes, 4096, "");
    msgs.pop();
    assert_err(upload(&app, &kim, msgs).await, Code::FailedPrecondition, "MEDIA_UPLOAD_INCOMPLETE");
    // Another SHA-256.
    let other = hex::encode(Sha256::digest(b"something else"));
    assert_err(
        upload(&app, &kim, messages(&bytes, 4096, &other)).await,
        Code::FailedPrecondition,
        "MEDIA_UPLOAD_INCOMPLETE",
    );
    // Not an image, whatever the declared type.
    let text = b"hello, I am a .jpg".repeat(10);
    assert_err(upload(&app, &kim, messages(&text, 64, "")).await, Code::FailedPrecondition, "MEDIA_TYPE_UNSUPPORTED");
    // None of them got further than UPLOADING.
    let s = states(&app, &kim).await;
    assert_eq!(s.len(), 5, "the five that got past the metadata: {s:?}");
    assert!(s.iter().all(|x| x == "UPLOADING"), "{s:?}");
}

#[sqlx::test]
async fn streamed_uploads_count_against_the_daily_quota(pool: PgPool) {
    let app = spawn(pool, |s| s.media.quota_uploads_per_day = 1).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(200, 100);
    upload(&app, &kim, messages(&bytes, 4096, "")).await.unwrap();
    assert_err(upload(&app, &kim, messages(&bytes, 4096, "")).await, Code::ResourceExhausted, "MEDIA_QUOTA_EXCEEDED");
}

#[sqlx::test]
async fn a_client_that_stops_sending_leaves_no_ready_media(pool: PgPool) {
    let app = spawn(pool, |_| {}).await;
    let kim = app.user("kim").await;
    let bytes = jpeg(800, 600);
    // Half the bytes, then silence until the client's deadline.
    let half: Vec<_> = messages(&bytes, 4096, "").into_iter().take(1 + bytes.len() / 8192).collect();
    let stalled = futures::StreamExt::chain(futures::stream::iter(half), futures::stream::pending());
    let mut req = kim.req(stalled);
    req.set_timeout(Duration::from_secs(2));
    let r = tokio::time::timeout(Duration::from_secs(60), api(&app).upload_media(req)).await;
    let status = r.expect("the deadline ends the call").expect_err("refused");
    assert!(matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded), "{status:?}");
    // Nothing was queued (the server dropped the call with its deadline): the worker never
    // sees it, and the media is not READY; the clean-up collects it.
    assert_eq!(states(&app, &kim).await, ["UPLOADING"]);
    let jobs: i64 = sqlx::query_scalar("select count(*) from media_jobs").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(jobs, 0);
}

/// A `w`×`h` PNG of noise (it does not compress: about 3 bytes a pixel).
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    use image::ImageEncoder as _;
    let mut seed: u32 = 0x2545_F491;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 24) as u8
        };
        image::Rgb([next(), next(), next()])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(&img, w, h, image::ExtendedColorType::Rgb8).unwrap();
    out
}

#[sqlx::test]
async fn a_streamed_upload_to_s3_is_written_in_parts_s3_accepts(pool: PgPool) {
    let (s3, app) = crate::media::spawn_s3(pool).await;
    let kim = app.user("kim").await;
    // Over 5 MiB: more than one multipart part (S3 refuses parts under 5 MiB but the last).
    let bytes = noise_png(1500, 1400);
    assert!(bytes.len() > 5 * 1024 * 1024 && bytes.len() < 10 * 1024 * 1024, "{}", bytes.len());
    let mut msgs = vec![pb::UploadMediaRequest { part: Some(Part::Metadata(create_req("image/png", bytes.len()))) }];
    msgs.extend(bytes.chunks(1024 * 1024).map(chunk));
    let m = upload(&app, &kim, msgs).await.unwrap();
    assert_eq!((m.state, m.content_type.as_str()), (pb::MediaState::Processing as i32, "image/png"));
    let m = processed(&app, &kim, &m.id).await;
    assert_eq!(m.state, pb::MediaState::Ready as i32, "{}", m.failure_reason);
    assert!(m.variants.iter().all(|v| v.url.starts_with(&s3.url)));
}
