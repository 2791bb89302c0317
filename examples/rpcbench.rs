//! A small closed-loop load generator for maru's auth RPCs, for the figures in
//! `loadtest/RESULTS.md`. Loopback only, bounded in time.
//!
//! ```sh
//! cargo run --release --example rpcbench -- whoami 50 10        # WhoAmI, 50 concurrent, 10 s
//! cargo run --release --example rpcbench -- signup 50 10        # SignUp storm
//! cargo run --release --example rpcbench -- mixed 50 10         # WhoAmI while 50 more sign up
//! ```
//! Target: `MARU_BENCH_ADDR` (default `http://127.0.0.1:50051`; must be a loopback address).

use std::sync::Arc;
use std::time::{Duration, Instant};

use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    errors: std::collections::BTreeMap<String, usize>,
}

fn report(name: &str, stats: &Stats, elapsed: Duration) {
    let mut l = stats.latencies.clone();
    l.sort();
    let pct = |p: f64| l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
    println!(
        "{name:>8}: {:>7} ok  {:>9.1} req/s  p50 {:>7.2} ms  p95 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {:?}",
        l.len(),
        l.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        stats.errors
    );
}

async fn run<F, Fut>(workers: usize, until: Instant, stats: Arc<Mutex<Stats>>, call: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (stats, call) = (stats.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Stats::default();
            let mut i = 0u64;
            while Instant::now() < until {
                let t = Instant::now();
                match call(w, i).await {
                    Ok(()) => local.latencies.push(t.elapsed()),
                    Err(s) => *local.errors.entry(format!("{:?}", s.code())).or_default() += 1,
                }
                i += 1;
            }
            let mut s = stats.lock().await;
            s.latencies.extend(local.latencies);
            for (k, v) in local.errors {
                *s.errors.entry(k).or_default() += v;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("whoami").to_owned();
    let workers: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10).min(120);
    let addr = std::env::var("MARU_BENCH_ADDR").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let host = addr.trim_start_matches("http://").rsplit_once(':').map(|(h, _)| h).unwrap_or("");
    anyhow::ensure!(matches!(host, "127.0.0.1" | "localhost" | "[::1]"), "loopback targets only");

    // A few HTTP/2 connections, shared round-robin, like a real client pool.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(Channel::from_shared(addr.clone())?.connect().await?);
    }
    let client = move |w: usize| AuthServiceClient::new(channels[w % channels.len()].clone());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();

    let mut c = client(0);
    let handle = format!("bench{run_id}");
    c.sign_up(pb::SignUpRequest {
        handle: handle.clone(),
        email: format!("{handle}@example.com"),
        password: "bench password".into(),
        display_name: "Bench".into(),
        request_id: String::new(),
    })
    .await?;
    let token =
        c.login(pb::LoginRequest { login: handle, password: "bench password".into() }).await?.into_inner().access_token;
    let bearer = format!("Bearer {token}");

    let whoami = {
        let (client, bearer) = (client.clone(), bearer.clone());
        move |w: usize, _i: u64| {
            let mut c = client(w);
            let mut r = tonic::Request::new(pb::WhoAmIRequest {});
            r.metadata_mut().insert("authorization", bearer.parse().expect("ascii token"));
            async move { c.who_am_i(r).await.map(|_| ()) }
        }
    };
    let signup = {
        let client = client.clone();
        let run_id = run_id.clone();
        move |w: usize, i: u64| {
            let mut c = client(w);
            let h = format!("s{run_id}w{w}i{i}");
            async move {
                c.sign_up(pb::SignUpRequest {
                    handle: h.clone(),
                    email: format!("{h}@example.com"),
                    password: "bench password".into(),
                    display_name: "Storm".into(),
                    request_id: String::new(),
                })
                .await
                .map(|_| ())
            }
        }
    };

    let until = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    println!("mode {mode}, {workers} concurrent, {secs} s, target {addr}");
    match mode.as_str() {
        "whoami" => {
            let s = Arc::new(Mutex::new(Stats::default()));
            run(workers, until, s.clone(), whoami).await;
            report("WhoAmI", &*s.lock().await, start.elapsed());
        }
        "signup" => {
            let s = Arc::new(Mutex::new(Stats::default()));
            run(workers, until, s.clone(), signup).await;
            report("SignUp", &*s.lock().await, start.elapsed());
        }
        "mixed" => {
            let (a, b) = (Arc::new(Mutex::new(Stats::default())), Arc::new(Mutex::new(Stats::default())));
            tokio::join!(run(workers, until, a.clone(), whoami), run(workers, until, b.clone(), signup));
            report("WhoAmI", &*a.lock().await, start.elapsed());
            report("SignUp", &*b.lock().await, start.elapsed());
        }
        other => anyhow::bail!("unknown mode {other}: whoami | signup | mixed"),
    }
    Ok(())
}
