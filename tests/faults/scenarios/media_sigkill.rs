//! Issue 18: a media job killed in the middle is finished exactly once by another replica.
//! Two replicas share the database and the local media directory. maru-1 alone runs while a
//! photo is uploaded; its worker claims the job, stores the first variant and is caught
//! before the second (`media.test_processing_delay_ms`, a test-only pause after each
//! variant). maru-1 is SIGKILLed there; maru-2 (started meanwhile, without the pause) claims
//! the job once its lease (`media.job_lease_s` = 3) runs out and finishes it: the media
//! READY, one row and one object per variant, the job done after two attempts by maru-2,
//! one READY counted.

use std::path::Path;
use std::time::{Duration, Instant};

use image::{ExtendedColorType, ImageEncoder};
use maru::grpc::pb;
use maru::grpc::pb::media_service_client::MediaServiceClient;
use sqlx::Row as _;

use crate::harness::load::{account, authed};
use crate::harness::maru::Maru;
use crate::harness::process::{TempDir, signal};
use crate::harness::report::{Report, ms};
use crate::harness::{Env, light_scenario};

/// A `w`×`h` JPEG with some detail (so every variant takes real work).
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&img, w, h, ExtendedColorType::Rgb8)
        .expect("encode");
    out
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap_or(&p).display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The value of the sample `series` in a `/metrics` text, 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn media_job_sigkilled_mid_way() {
    light_scenario(|| async {
        let env = Env::start().await;
        let data = TempDir::new("media", None);
        let dir = data.path().display().to_string();
        let shared = |name: &str| {
            env.maru(name)
                .set("MARU__MEDIA__DATA_DIR", &dir)
                .set("MARU__MEDIA__JOB_LEASE_S", 3)
                .set("MARU__MEDIA__POLL_INTERVAL_MS", 100)
                .set("HOSTNAME", name)
        };
        // maru-1 pauses 30 s after each variant: it is caught between thumbnail and display.
        let cfg1 = shared("maru-1").set("MARU__MEDIA__TEST_PROCESSING_DELAY_MS", 30_000);
        let cfg2 = shared("maru-2");
        let mut m1 = Maru::start(&cfg1).await;
        let user = account(&m1.channel(), "media.kill").await;

        let photo = jpeg(2400, 1800);
        let mut media = MediaServiceClient::new(m1.channel());
        let ticket = media
            .create_upload(authed(
                pb::CreateUploadRequest {
                    purpose: pb::MediaPurpose::PostImage as i32,
                    content_type: "image/jpeg".into(),
                    size_bytes: photo.len() as i64,
                    sha256: String::new(),
                    request_id: String::new(),
                },
                &user.token,
            ))
            .await
            .expect("CreateUpload")
            .into_inner();
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        let mut put = http.put(&ticket.upload_url).body(photo.clone());
        for h in &ticket.upload_headers {
            put = put.header(&h.name, &h.value);
        }
        let status = put.send().await.expect("PUT").status();
        assert_eq!(status.as_u16(), 204, "PUT of the photo");
        let id = ticket.media_id.clone();
        media
            .complete_upload(authed(pb::CompleteUploadRequest { media_id: id.clone() }, &user.token))
            .await
            .expect("CompleteUpload");
        let media_id: uuid::Uuid = id.parse().expect("uuid");

        // Wait until maru-1 holds the job with the thumbnail stored and the display not yet.
        let mut db = env.db().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = sqlx::query(
                "select j.state, j.worker, (select count(*) from media_variants v where v.media_id = j.media_id) as n
                 from media_jobs j where j.media_id = $1",
            )
            .bind(media_id)
            .fetch_one(&mut db)
            .await
            .expect("job row");
            let (state, worker, n): (String, Option<String>, i64) = (r.get("state"), r.get("worker"), r.get("n"));
            if state == "running" && n == 1 {
                assert!(worker.is_some_and(|w| w.starts_with("maru-1-")), "maru-1 holds the job");
                break;
            }
            assert!(Instant::now() < deadline, "maru-1 never got half-way (job {state}, {n} variants)");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let half_done: Vec<String> = files(data.path());

        let m2 = Maru::start(&cfg2).await;
        let kill = Instant::now();
        assert!(signal(m1.pid, libc::SIGKILL), "maru-1 is running");
        while m1.running() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // maru-2 takes the job over once the lease runs out, and finishes it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut media2 = MediaServiceClient::new(m2.channel());
        let (got, ready_after) = loop {
            let m = media2
                .get_media(authed(pb::GetMediaRequest { media_id: id.clone() }, &user.token))
                .await
                .expect("GetMedia on maru-2")
                .into_inner()
                .media
                .expect("media");
            if m.state == pb::MediaState::Ready as i32 || m.state == pb::MediaState::Failed as i32 {
                break (m, Some(kill.elapsed()));
            }
            assert!(Instant::now() < deadline, "the job was never taken over:\n{}", m2.output.stdout().join("\n"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Give a (wrong) second finisher time to show up before counting.
        tokio::time::sleep(Duration::from_secs(4)).await;

        let job = sqlx::query(
            "select state, attempts, worker, lease_until is null as released from media_jobs where media_id = $1",
        )
        .bind(media_id)
        .fetch_one(&mut db)
        .await
        .expect("job row");
        let (job_state, attempts, worker, released): (String, i32, Option<String>, bool) =
            (job.get("state"), job.get("attempts"), job.get("worker"), job.get("released"));
        let variants: Vec<(String, String)> =
            sqlx::query_as("select name, object_key from media_variants where media_id = $1 order by name")
                .bind(media_id)
                .fetch_all(&mut db)
                .await
                .expect("variants");
        let (media_state, original): (String, String) =
            sqlx::query_as("select state, object_key from media where id = $1")
                .bind(media_id)
                .fetch_one(&mut db)
                .await
                .expect("media row");
        let stored = files(data.path());
        let expected: Vec<String> = {
            let mut e = vec![original];
            e.extend(variants.iter().map(|(_, key)| key.clone()));
            e.sort();
            e
        };
        let metrics = m2.metrics().await.unwrap_or_default();
        let ready_counted = sample(&metrics, r#"maru_media_processed_total{outcome="ready"}"#);
        let variant_names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();

        let mut report = Report::new("media_job_sigkilled_mid_way");
        report.figure("fault", "SIGKILL to maru-1 while it held a media job (thumbnail stored, display not yet)");
        report.figure("lease", "media.job_lease_s = 3, poll 100 ms");
        report.figure("photo", format!("2400×1800 JPEG, {} bytes", photo.len()));
        report.figure("objects when killed", half_done.len());
        report.figure("SIGKILL → READY seen on maru-2", ms(ready_after));
        report.figure(
            "job",
            format!("{job_state}, {attempts} attempts, last worker {}", worker.clone().unwrap_or_default()),
        );
        report.figure("variants", format!("{variant_names:?}"));
        report.figure("objects stored", format!("{stored:?}"));
        report.check(
            half_done.len() == 2,
            format!("maru-1 was killed half-way (original + one variant stored): {half_done:?}"),
        );
        report.check(
            got.state == pb::MediaState::Ready as i32 && media_state == "READY",
            format!("the media is READY (failure: {:?})", got.failure_reason),
        );
        report.check(
            got.variants.len() == 2 && got.variants.iter().all(|v| !v.url.is_empty() && v.width > 0),
            "GetMedia answers both variants with URLs",
        );
        report.check(variant_names == ["display", "thumbnail"], "one row per variant");
        report.check(stored == expected, format!("one object per variant and the original, nothing else: {stored:?}"));
        report.check(
            job_state == "done"
                && attempts == 2
                && released
                && worker.as_deref().is_some_and(|w| w.starts_with("maru-2-")),
            "the job is done after two attempts, the second by maru-2, its lease released",
        );
        report.check(ready_counted == 1.0, format!("maru-2 counted the media READY once ({ready_counted})"));
        report.check(ready_after.is_some_and(|d| d >= Duration::from_secs(2)), "the take-over waited for the lease");
        report.no_panic(&[&m2]);
        report.finish();
    });
}
