//! Issue 14 point 4: 20 HTTP/2 connections from one address (127.0.0.2) with a flow-control
//! window of 0 send ListTrials waves and never read, while signed-in users run the mixed load
//! from 127.0.0.1. Before the fix RSS grew 142 → 505 MB in 36 s and stayed there; now streams
//! per connection are capped (SETTINGS_MAX_CONCURRENT_STREAMS), every unsent response holds
//! an in-flight slot, and a connection whose responses wait longer than the send timeout is
//! closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use maru::grpc::pb;
use prost::Message;
use tokio::net::TcpSocket;

use crate::harness::load::{Load, LoadSpec, accounts};
use crate::harness::maru::Maru;
use crate::harness::process::RssSampler;
use crate::harness::report::Report;
use crate::harness::{Env, scenario, soak};
use crate::scenarios::idle_flood::metric;

const CONNECTIONS: usize = 20;

/// One non-reading client: connects with window 0, opens as many ListTrials streams as the
/// server allows, never reads, and starts over when the server closes the connection.
async fn non_reader(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
) {
    let mut body = vec![0u8; 5];
    let msg = pb::ListTrialsRequest { limit: 100, ..Default::default() }.encode_to_vec();
    body[1..5].copy_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend(msg);
    let body = Bytes::from(body);
    while !stop.load(Ordering::Relaxed) {
        let Ok(socket) = TcpSocket::new_v4() else { return };
        let _ = socket.bind("127.0.0.2:0".parse().expect("addr"));
        let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(addr)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok((mut client, conn)) = h2::client::Builder::new().initial_window_size(0).handshake::<_, Bytes>(tcp).await
        else {
            continue;
        };
        let mut conn = tokio::spawn(conn);
        let mut pending = Vec::new();
        loop {
            tokio::select! {
                _ = &mut conn => break,
                ready = client.clone().ready() => {
                    let Ok(c) = ready else { break };
                    client = c;
                    let req = http::Request::post("/maru.v1.TrialService/ListTrials")
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(())
                        .expect("request");
                    let Ok((resp, mut stream)) = client.send_request(req, false) else { break };
                    let _ = stream.send_data(body.clone(), true);
                    pending.push(resp);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if pending.len() >= 150 {
                // Enough for this connection (refused ones end at once): wait for the server
                // to close it.
                tokio::select! {
                    _ = &mut conn => {}
                    _ = async { while !stop.load(Ordering::Relaxed) { tokio::time::sleep(Duration::from_millis(50)).await } } => {}
                }
                break;
            }
        }
        closed.fetch_add(1, Ordering::Relaxed);
        drop(pending);
        conn.abort();
    }
}

#[test]
fn non_reading_clients() {
    scenario(|| async {
        let env = Env::start().await;
        let cfg = env.maru("maru-1").load_limits().set("MARU__GRPC__RESPONSE_SEND_TIMEOUT_MS", 3_000);
        let maru = Maru::start(&cfg).await;
        env.ingest_trials(&cfg).await;
        let users = accounts(&maru.channel(), "window.user", 4).await;
        let rss = RssSampler::start(maru.pid);
        let load = Load::start(LoadSpec::default(), vec![maru.grpc], users);
        tokio::time::sleep(soak(2)).await;

        let fault_start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|_| tokio::spawn(non_reader(maru.grpc, stop.clone(), sent.clone(), closed.clone())))
            .collect();
        tokio::time::sleep(soak(10)).await;
        let during = rss.now();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.abort();
            let _ = c.await;
        }
        let fault_end = Instant::now();
        // After they are gone, nothing they caused is still held.
        let mut unsent = f64::MAX;
        let mut text = String::new();
        for _ in 0..100 {
            text = maru.metrics().await.unwrap_or_default();
            unsent = metric(&text, "maru_grpc_responses_unsent").unwrap_or(0.0);
            if unsent == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(soak(3)).await;
        let result = load.stop().await;
        let rss = rss.stop(maru.pid);
        let send_timeouts = metric(&text, "maru_grpc_connections_closed_total{reason=\"send_timeout\"}").unwrap_or(0.0);

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        let violations = result.violations(|_| false);
        let failed_during = result.failures_between(fault_start, fault_end);
        let mut report = Report::new("non_reading_clients");
        report.figure("fault", format!("{CONNECTIONS} HTTP/2 connections from 127.0.0.2 with window 0 sending ListTrials (limit 100) without reading, 10 s; send timeout 3 s"));
        report.figure("ListTrials streams opened by the non-readers", sent.load(Ordering::Relaxed));
        report.figure(
            "their connections closed by the server (send timeout) / seen closed by them",
            format!("{send_timeouts} / {}", closed.load(Ordering::Relaxed)),
        );
        report.figure(
            "RSS before / peak during / after they closed",
            format!("{:.0} / {:.0} / {:.0} MiB", rss.before, during.peak.max(rss.peak), rss.after),
        );
        report.figure("unary responses unsent after they closed", unsent);
        report.figure("failed calls of the load during the fault", failed_during);
        report.load(&result, &writes, &violations);
        report.check(send_timeouts > 0.0, "connections that never read are closed by the send timeout");
        report.check(unsent == 0.0, format!("no response is held once they closed: {unsent} unsent"));
        // Their ListTrials waves (within the read limits) still run their queries and press the
        // pool: other users may get UNAVAILABLE with RetryInfo (counted above, checked by
        // `load`), never a hang or an undocumented code.
        report.check(
            result
                .calls
                .iter()
                .filter(|c| c.start >= fault_start && c.start < fault_end)
                .filter_map(|c| c.result.as_ref().err())
                .all(|f| f.from_server && f.retryable()),
            "other users' failures during the fault are retryable (UNAVAILABLE/RESOURCE_EXHAUSTED with RetryInfo)",
        );
        report.rss(rss);
        report.no_panic(&[&maru]);
        report.finish();
    });
}
