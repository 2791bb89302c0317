//! Media uploads and processing against a running maru (issue 18), three figures for
//! loadtest/RESULTS.md:
//! 1. **Time to answer an 8 MB upload**: CreateUpload + `PUT` of the bytes + CompleteUpload, one
//!    client, `--uploads` in sequence, p50/p95/max (the source answered in 1.58 s synchronously
//!    and 138 ms with a Celery worker).
//! 2. **Processing throughput by image size**: `--batch` JPEGs of 1, 4 and 12 megapixels
//!    completed at once, then polled with GetMedia until every one is READY: images per second
//!    (first CompleteUpload → last READY), and the server's mean time per image from
//!    `maru_media_processing_seconds` (scraped from `--admin`).
//! 3. **Server memory during 20 concurrent 8 MB uploads**: `VmRSS` of `--pid` sampled every
//!    10 ms: before (baseline), its peak until every upload is answered (the bytes stream to the
//!    store), and its peak until every image is processed (the workers decode at most
//!    `media.workers` images at a time).
//!
//! ```sh
//! cargo build --release --example media_bench
//! MARU__RATE_LIMIT__ENABLED=false target/release/maru serve &      # the local object store
//! target/release/examples/media_bench --pid $(pgrep -n -x maru)
//! ```
//! It signs up 20 accounts `mbench<run>_<i>` (password `bench-password`) and spreads the uploads
//! over them (within the default per-user daily quotas). Images are generated: a gradient with
//! noise, encoded as JPEG; the "8 MB" one is 12 MP at the highest quality that stays ≤ 8.4 MB.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use image::{ImageEncoder, RgbImage};
use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use maru::grpc::pb::media_service_client::MediaServiceClient;
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// maru's public listener (gRPC and the media upload route).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// maru's admin listener (`/metrics`).
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    admin: String,
    /// The server's process id, for its memory (phase 3 is skipped without it).
    #[arg(long)]
    pid: Option<u32>,
    /// Sequential 8 MB uploads timed in phase 1.
    #[arg(long, default_value_t = 30)]
    uploads: usize,
    /// Images per size in phase 2.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Concurrent 8 MB uploads in phase 3.
    #[arg(long, default_value_t = 20)]
    concurrent: usize,
}

const ACCOUNTS: usize = 20;
const PASSWORD: &str = "bench-password";

#[derive(Clone)]
struct Client {
    channel: Channel,
    http: reqwest::Client,
    tokens: Vec<String>,
}

impl Client {
    fn media(&self) -> MediaServiceClient<Channel> {
        MediaServiceClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }

    fn req<T>(&self, account: usize, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        let bearer = format!("Bearer {}", self.tokens[account % self.tokens.len()]);
        r.metadata_mut().insert("authorization", bearer.parse().expect("header"));
        r
    }

    /// CreateUpload + PUT + CompleteUpload: the media id.
    async fn upload(&self, account: usize, jpeg: &bytes::Bytes) -> anyhow::Result<String> {
        let ticket = self
            .media()
            .create_upload(self.req(
                account,
                pb::CreateUploadRequest {
                    purpose: pb::MediaPurpose::PostImage as i32,
                    content_type: "image/jpeg".into(),
                    size_bytes: jpeg.len() as i64,
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        let mut put = self.http.put(&ticket.upload_url).body(jpeg.clone());
        for h in &ticket.upload_headers {
            put = put.header(&h.name, &h.value);
        }
        let r = put.send().await?;
        if !r.status().is_success() {
            bail!("PUT answered {}", r.status());
        }
        let done = self
            .media()
            .complete_upload(self.req(account, pb::CompleteUploadRequest { media_id: ticket.media_id.clone() }))
            .await?
            .into_inner();
        let state = done.media.map_or(0, |m| m.state);
        if state != pb::MediaState::Processing as i32 && state != pb::MediaState::Ready as i32 {
            bail!("CompleteUpload left the media in state {state}");
        }
        Ok(ticket.media_id)
    }

    /// Polls GetMedia until every media is READY (an error if one FAILs).
    async fn wait_ready(&self, ids: &[(usize, String)]) -> anyhow::Result<()> {
        let mut pending: Vec<&(usize, String)> = ids.iter().collect();
        let deadline = Instant::now() + Duration::from_secs(600);
        while !pending.is_empty() {
            if Instant::now() > deadline {
                bail!("{} media still not READY after 10 minutes", pending.len());
            }
            let mut still = Vec::new();
            for item in pending {
                let (account, id) = item;
                let m = self
                    .media()
                    .get_media(self.req(*account, pb::GetMediaRequest { media_id: id.clone() }))
                    .await?
                    .into_inner()
                    .media
                    .context("no media")?;
                if m.state == pb::MediaState::Failed as i32 {
                    bail!("media {id} FAILED: {}", m.failure_reason);
                }
                if m.state != pb::MediaState::Ready as i32 {
                    still.push(item);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }
}

/// A `width`×`height` gradient with noise (xorshift), as JPEG at `quality`.
fn jpeg(width: u32, height: u32, quality: u8, seed: u32) -> bytes::Bytes {
    let mut x = seed | 1;
    let img = RgbImage::from_fn(width, height, |px, py| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (x & 0x3f) as i32 - 32;
        let base = [(px * 255 / width) as i32, (py * 255 / height) as i32, ((px + py) % 256) as i32];
        image::Rgb(base.map(|c| (c + noise).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
        .expect("encode");
    out.into()
}

/// The "8 MB photo": 12 MP at the highest quality whose JPEG is at most 8.4 MB.
fn eight_mb(seed: u32) -> bytes::Bytes {
    for q in [100, 98, 96, 94, 92, 90, 85, 80, 70, 60] {
        let j = jpeg(4000, 3000, q, seed);
        if j.len() <= 8_400_000 {
            return j;
        }
    }
    jpeg(4000, 3000, 50, seed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `maru_media_processing_seconds` (sum, count) in a scrape.
async fn processing_seconds(http: &reqwest::Client, admin: &str) -> anyhow::Result<(f64, f64)> {
    let text = http.get(format!("{admin}/metrics")).send().await?.text().await?;
    let value = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    Ok((value("maru_media_processing_seconds_sum"), value("maru_media_processing_seconds_count")))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Channel::from_shared(args.target.clone())?.connect().await?;
    let http = reqwest::Client::new();
    let run = std::process::id();
    let mut tokens = Vec::new();
    let mut auth = AuthServiceClient::new(channel.clone());
    for i in 0..ACCOUNTS {
        let handle = format!("mbench{run}_{i}");
        auth.sign_up(pb::SignUpRequest {
            handle: handle.clone(),
            email: format!("{handle}@bench.example"),
            password: PASSWORD.into(),
            display_name: handle.clone(),
            ..Default::default()
        })
        .await?;
        let login = auth.login(pb::LoginRequest { login: handle, password: PASSWORD.into() }).await?.into_inner();
        tokens.push(login.access_token);
    }
    let client = Client { channel, http: http.clone(), tokens };
    let photo = eight_mb(7);
    println!("8 MB photo: 4000x3000 JPEG, {} bytes", photo.len());

    // 1. Time to answer an upload.
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for i in 0..args.uploads {
        let t = Instant::now();
        let id = client.upload(i, &photo).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        ids.push((i, id));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "answer (CreateUpload + PUT + CompleteUpload), {} x {} bytes in sequence: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        args.uploads,
        photo.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times[times.len() - 1]
    );
    client.wait_ready(&ids).await?;

    // 2. Processing throughput by size.
    for (label, w, h) in [("1 MP", 1200, 900), ("4 MP", 2400, 1700), ("12 MP", 4000, 3000)] {
        let image = jpeg(w, h, 90, 11);
        let before = processing_seconds(&http, &args.admin).await?;
        let t = Instant::now();
        let uploads = (0..args.batch).map(|i| {
            let client = client.clone();
            let image = image.clone();
            async move { client.upload(i, &image).await.map(|id| (i, id)) }
        });
        let ids: Vec<(usize, String)> = futures::future::try_join_all(uploads).await?;
        let uploaded = t.elapsed().as_secs_f64();
        client.wait_ready(&ids).await?;
        let total = t.elapsed().as_secs_f64();
        let after = processing_seconds(&http, &args.admin).await?;
        let n = after.1 - before.1;
        let mean_ms = if n > 0.0 { (after.0 - before.0) / n * 1000.0 } else { f64::NAN };
        println!(
            "processing {label} ({w}x{h}, {} bytes) x {}: uploaded in {:.2} s, all READY after {:.2} s: {:.1} images/s; server mean {:.0} ms per image ({n} processed)",
            image.len(),
            args.batch,
            uploaded,
            total,
            args.batch as f64 / total,
            mean_ms
        );
    }

    // 3. Server memory during concurrent 8 MB uploads.
    let Some(pid) = args.pid else {
        println!("memory: skipped (no --pid)");
        return Ok(());
    };
    let baseline = rss_kib(pid).context("the server's /proc status")?;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The same bytes for every upload (each is its own media): encoding 20 photos would take
    // longer than the run.
    let t = Instant::now();
    let uploads = (0..args.concurrent).map(|i| {
        let client = client.clone();
        let photo = photo.clone();
        async move { client.upload(i, &photo).await.map(|id| (i, id)) }
    });
    let ids: Vec<(usize, String)> = futures::future::try_join_all(uploads).await?;
    let answered = t.elapsed().as_secs_f64();
    let peak_answered = peak.load(std::sync::atomic::Ordering::Relaxed);
    client.wait_ready(&ids).await?;
    let ready = t.elapsed().as_secs_f64();
    sampler.abort();
    let peak_ready = peak.load(std::sync::atomic::Ordering::Relaxed);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "memory: {} concurrent 8 MB uploads answered in {:.2} s, all READY after {:.2} s; server RSS baseline {:.1} MiB, \
         peak while uploading {:.1} MiB (+{:.1}), peak until all processed {:.1} MiB (+{:.1})",
        args.concurrent,
        answered,
        ready,
        mib(baseline),
        mib(peak_answered),
        mib(peak_answered - baseline),
        mib(peak_ready),
        mib(peak_ready - baseline)
    );
    Ok(())
}
