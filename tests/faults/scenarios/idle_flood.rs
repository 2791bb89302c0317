//! Issue 14 point 5: thousands of silent TCP connections from one address (127.0.0.2) against
//! a server limited to 1,024 open files, under the mixed load from another address
//! (127.0.0.1). Before the fix they used up the file descriptors and new connections and
//! `/metrics` timed out; now the per-address cap closes most at once and the handshake timeout
//! the rest.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::Maru;
use crate::harness::process::RssSampler;
use crate::harness::report::Report;
use crate::harness::{Env, scenario, soak};

const SILENT: usize = 3_000;

/// The value of the series `line_start` (name and labels) in `/metrics`.
pub fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(line_start))?.rsplit_once(' ')?.1.trim().parse().ok()
}

/// Whether the server closed `stream` (EOF or reset) within `wait`.
async fn closed(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(wait, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[test]
fn idle_connection_flood() {
    scenario(|| async {
        let env = Env::start().await;
        let mut cfg = env.maru("maru-1").load_limits().set("MARU__GRPC__HANDSHAKE_TIMEOUT_MS", 3_000);
        cfg.nofile = Some(1_024);
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "idle.user", 4).await;
        let rss = RssSampler::start(maru.pid);
        let load = Load::start(LoadSpec::default(), vec![maru.grpc], users);
        tokio::time::sleep(soak(2)).await;

        let fault_start = Instant::now();
        let mut silent = Vec::new();
        let mut not_connected = 0;
        for _ in 0..SILENT {
            let socket = TcpSocket::new_v4().expect("socket");
            socket.bind("127.0.0.2:0".parse().expect("addr")).expect("bind 127.0.0.2");
            match tokio::time::timeout(Duration::from_secs(1), socket.connect(maru.grpc)).await {
                Ok(Ok(s)) => silent.push(s),
                _ => not_connected += 1,
            }
        }
        // While they are open: the admin port and new connections from others.
        let (mut metrics_ok, mut metrics_failed) = (0, 0);
        let mut new_clients_ok = 0;
        for _ in 0..10 {
            match maru.metrics().await {
                Ok(_) => metrics_ok += 1,
                Err(_) => metrics_failed += 1,
            }
            if crate::harness::maru::health_check(&maru.channel()).await.is_ok() {
                new_clients_ok += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Past the handshake timeout every silent connection is closed.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let still_open = futures::future::join_all(silent.iter_mut().map(|s| closed(s, Duration::from_millis(500))))
            .await
            .into_iter()
            .filter(|c| !c)
            .count();
        let fault_end = Instant::now();
        let text = maru.metrics().await.unwrap_or_default();
        drop(silent);
        tokio::time::sleep(soak(2)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let rejected = metric(&text, "maru_grpc_connections_total{outcome=\"rejected_address_limit\"}").unwrap_or(0.0);
        let timed_out =
            metric(&text, "maru_grpc_connections_closed_total{reason=\"handshake_timeout\"}").unwrap_or(0.0);
        let mut report = Report::new("idle_connection_flood");
        report.figure(
            "fault",
            format!("{SILENT} silent TCP connections from 127.0.0.2; maru limited to 1,024 open files; handshake timeout 3 s"),
        );
        report.figure(
            "silent connections accepted by the kernel / not connected",
            format!("{} / {not_connected}", SILENT - not_connected),
        );
        report.figure(
            "closed by the per-address cap (64) / by the handshake timeout",
            format!("{rejected} / {timed_out}"),
        );
        report.figure("silent connections still open after 5 s", still_open);
        report.figure("/metrics during the flood (ok / failed)", format!("{metrics_ok} / {metrics_failed}"));
        report.figure("new health-check connections from 127.0.0.1 during the flood (ok of 10)", new_clients_ok);
        report.figure("failed calls of the load during the flood", result.failures_between(fault_start, fault_end));
        report.figure("RSS before / peak / after", rss);
        report.load(&result, &writes, &violations);
        report.check(metrics_failed == 0, format!("/metrics answers during the flood: {metrics_failed} of 10 failed"));
        report.check(new_clients_ok == 10, format!("new connections of others succeed: {new_clients_ok} of 10"));
        report.check(
            result.failures_between(fault_start, fault_end) == 0,
            format!("no failed call of the load during the flood: {}", result.failures_between(fault_start, fault_end)),
        );
        report.check(still_open == 0, format!("every silent connection closed by the server: {still_open} still open"));
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
