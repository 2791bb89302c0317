//! Issue 14 point 9: SIGTERM to one of two replicas under the mixed load, whose clients fail
//! over to the other replica on UNAVAILABLE or a broken connection, as a balancer does. The
//! stopping replica turns NOT_SERVING (and `/readyz` 503) while it still serves for
//! `grpc.shutdown_grace_ms`, then drains; its admin port answers until the drain is over.

use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;

use crate::harness::load::{Load, LoadSpec, accounts, retryable};
use crate::harness::maru::{Maru, health_check};
use crate::harness::process::signal;
use crate::harness::report::{Report, ms};
use crate::harness::{Env, scenario, soak};

#[test]
fn sigterm_one_of_two_replicas() {
    scenario(|| async {
        let env = Env::start().await;
        let cfg1 = env.maru("maru-1").load_limits().set("MARU__GRPC__SHUTDOWN_GRACE_MS", 2_000);
        let cfg2 = env.maru("maru-2").load_limits();
        let mut m1 = Maru::start(&cfg1).await;
        let m2 = Maru::start(&cfg2).await;
        env.ingest_trials(&cfg1).await;
        let users = accounts(&m2.channel(), "term.user", 4).await;
        let spec = LoadSpec { workers: 8, ..LoadSpec::default() };
        let load = Load::start(spec, vec![m1.grpc, m2.grpc], users);
        tokio::time::sleep(soak(3)).await;

        let term = Instant::now();
        assert!(signal(m1.pid, libc::SIGTERM), "maru-1 is running");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).no_proxy().build().expect("client");
        let (mut not_serving, mut listener_closed, mut ready_503, mut admin_gone) = (None, None, None, None);
        let channel = m1.channel();
        while term.elapsed() < Duration::from_secs(30) && m1.running() {
            let h = health_check(&channel).await;
            if not_serving.is_none() && matches!(h, Ok(ServingStatus::NotServing)) {
                not_serving = Some(term.elapsed());
            }
            if listener_closed.is_none() && tokio::net::TcpStream::connect(m1.grpc).await.is_err() {
                listener_closed = Some(term.elapsed());
            }
            match http.get(format!("http://{}/readyz", m1.admin)).send().await {
                Ok(r) if r.status() == 503 => {
                    ready_503.get_or_insert(term.elapsed());
                }
                Ok(_) => {}
                Err(_) => {
                    admin_gone.get_or_insert(term.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let exited = (!m1.running()).then(|| term.elapsed());
        tokio::time::sleep(soak(3)).await;
        let result = load.stop().await;

        let mut db = env.db().await;
        let writes = result.check_writes(&mut db).await;
        // A balancer retries a call on the other replica when the stopping one refused it
        // (UNAVAILABLE) or its connection broke; such failures of maru-1 are allowed.
        let balancer_retries = |c: &crate::harness::load::Call| c.replica == 0 && c.start >= term;
        let violations = result.violations(balancer_retries);
        let not_retried: Vec<String> = result
            .calls
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|f| (c, f)))
            .filter(|(c, f)| !(balancer_retries(c) && retryable(f)))
            .map(|(c, f)| format!("{:?} on maru-{}: {}", c.op, c.replica + 1, f.label()))
            .collect();
        let mut report = Report::new("sigterm_one_of_two_replicas");
        report.figure("fault", "SIGTERM to maru-1 of two replicas under load; grpc.shutdown_grace_ms = 2000");
        report.figure("load", "8 workers over both replicas, failing over on UNAVAILABLE or a broken connection");
        report.figure("SIGTERM → health NOT_SERVING seen", ms(not_serving));
        report.figure("SIGTERM → /readyz 503 seen", ms(ready_503));
        report.figure("SIGTERM → gRPC listener closed", ms(listener_closed));
        report.figure("SIGTERM → admin port gone", ms(admin_gone));
        report.figure("SIGTERM → process exited", ms(exited));
        report.figure("failed calls a balancer would not have retried", not_retried.len());
        report.load(&result, &writes, &violations);
        report.check(
            not_serving.is_some_and(|ns| listener_closed.is_none_or(|lc| ns < lc)),
            "NOT_SERVING is visible before the listener closes",
        );
        report.check(
            ready_503.is_some_and(|r| listener_closed.is_none_or(|lc| r < lc)),
            "/readyz answers 503 before the listener closes",
        );
        report.check(
            admin_gone.is_none_or(|a| listener_closed.is_some_and(|lc| a >= lc)),
            "the admin port stays up until the gRPC listener has closed",
        );
        report.check(exited.is_some(), "maru-1 exits within 30 s");
        report.check(
            not_retried.is_empty(),
            format!(
                "no failed call that a balancer would not have retried: {:?}",
                &not_retried[..not_retried.len().min(5)]
            ),
        );
        report.no_panic(&[&m1, &m2]);
        report.finish();
    });
}
