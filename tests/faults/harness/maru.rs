//! maru under test as a real subprocess (`maru serve`, the binary cargo built for this test),
//! configured only through `MARU__…` variables that point at the scenario's own PostgreSQL and
//! Redis. Ports are ephemeral (`127.0.0.1:0`); the actual ones are read from the
//! "maru listening" log line. Every line of stdout (JSON logs) and stderr (panics) is kept.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::postgres::PgCluster;
use super::process::{harden, kill_and_reap};
use super::redis::RedisServer;

pub const MARU: &str = env!("CARGO_BIN_EXE_maru");

/// The environment of one `maru` process.
#[derive(Clone)]
pub struct MaruConfig {
    pub name: String,
    env: BTreeMap<String, String>,
    /// Open-file limit of the process (`setrlimit` before exec).
    pub nofile: Option<u64>,
}

impl MaruConfig {
    /// Points at `pg` (database `maru`) and `redis` (an unreachable port without one), with
    /// the scenario's JWT key (shared by replicas) and Redis key prefix.
    pub fn new(name: &str, pg: &PgCluster, redis: Option<&RedisServer>, jwt_key: &str, prefix: &str) -> Self {
        let redis_url = redis.map_or_else(|| "redis://127.0.0.1:1".to_owned(), RedisServer::url);
        let env = [
            ("MARU__GRPC__LISTEN", "127.0.0.1:0".to_owned()),
            ("MARU__ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
            ("MARU__DATABASE__URL", pg.url("maru")),
            ("MARU__REDIS__URL", redis_url),
            ("MARU__REDIS__KEY_PREFIX", prefix.to_owned()),
            ("MARU__AUTH__JWT_KEY", jwt_key.to_owned()),
            ("MARU__LOG__FORMAT", "json".to_owned()),
            ("MARU__LOG__LEVEL", "info,sqlx::postgres::notice=warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self { name: name.to_owned(), env, nofile: None }
    }

    /// Sets `MARU__…` variable `key`.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.env.insert(key.to_owned(), value.to_string());
        self
    }

    /// Rate limits of the auth bucket raised for a load of many callers behind one address
    /// (every load client is 127.0.0.1); the other buckets keep their defaults.
    pub fn load_limits(self) -> Self {
        self.set("MARU__RATE_LIMIT__BUCKETS__AUTH__PER_MINUTE", 6000).set("MARU__RATE_LIMIT__BUCKETS__AUTH__BURST", 200)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(MARU);
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
        // Only what the scenario sets: nothing from the developer's environment.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MARU") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&self.env);
        cmd
    }

    /// Runs a one-shot CLI command (`admin grant`, `ingest trials`, …) against the same
    /// database; panics unless it succeeds.
    pub async fn cli(&self, args: &[&str]) -> String {
        let mut cmd = self.command(args);
        cmd.env("MARU__LOG__LEVEL", "warn").stdin(Stdio::null());
        harden(&mut cmd, None, None);
        let what = args.join(" ");
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("run maru");
        assert!(
            out.status.success(),
            "maru {what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Captured output of a process.
#[derive(Default)]
pub struct Output {
    pub stdout: Mutex<Vec<String>>,
    pub stderr: Mutex<Vec<String>>,
}

impl Output {
    fn lines(&self, which: &Mutex<Vec<String>>) -> Vec<String> {
        which.lock().map(|l| l.clone()).unwrap_or_default()
    }
    pub fn stdout(&self) -> Vec<String> {
        self.lines(&self.stdout)
    }
    pub fn stderr(&self) -> Vec<String> {
        self.lines(&self.stderr)
    }
}

/// A running `maru serve`.
pub struct Maru {
    pub name: String,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
    pub output: Arc<Output>,
    child: Child,
}

impl Maru {
    /// Starts it and waits until health is SERVING (database created and migrated).
    pub async fn start(cfg: &MaruConfig) -> Self {
        let maru = Self::spawn(cfg).await;
        maru.wait_serving(Duration::from_secs(60)).await;
        maru
    }

    /// Starts it and waits only for the listeners.
    pub async fn spawn(cfg: &MaruConfig) -> Self {
        let mut cmd = cfg.command(&["serve"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        harden(&mut cmd, None, cfg.nofile);
        let mut child = cmd.spawn().expect("spawn maru serve");
        let output = Arc::new(Output::default());
        if let Some(out) = child.stdout.take() {
            let o = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(mut v) = o.stdout.lock() {
                        v.push(line);
                    }
                }
            });
        }
        if let Some(err) = child.stderr.take() {
            let o = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut v) = o.stderr.lock() {
                        v.push(line);
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let (grpc, admin) = loop {
            let found = output.stdout().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "maru listening").then(|| {
                    let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    (addr("grpc"), addr("admin"))
                })
            });
            if let Some((Some(g), Some(a))) = found {
                break (g, a);
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{} exited with {status} before listening:\n{}", cfg.name, tail(&output));
            }
            assert!(Instant::now() < deadline, "{} did not start listening:\n{}", cfg.name, tail(&output));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { name: cfg.name.clone(), grpc, admin, pid: child.id(), output, child }
    }

    pub async fn wait_serving(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let channel = self.channel();
        loop {
            if matches!(health_check(&channel).await, Ok(ServingStatus::Serving)) {
                return;
            }
            assert!(Instant::now() < deadline, "{} never became SERVING:\n{}", self.name, tail(&self.output));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A lazily connecting channel to the gRPC listener.
    pub fn channel(&self) -> Channel {
        endpoint(self.grpc).connect_lazy()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `/metrics` of the admin port.
    pub async fn metrics(&self) -> Result<String, reqwest::Error> {
        http().get(format!("http://{}/metrics", self.admin)).send().await?.text().await
    }

    /// stderr lines that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .output
            .stderr()
            .into_iter()
            .filter(|l| l.contains("panicked at") || l.contains("RUST_BACKTRACE"))
            .collect();
        out.extend(self.output.stdout().into_iter().filter(|l| l.contains("panicked")));
        out
    }

    /// Log lines at ERROR level.
    pub fn error_lines(&self) -> Vec<String> {
        self.output.stdout().into_iter().filter(|l| l.contains(r#""level":"ERROR""#)).collect()
    }

    /// The distinct `error` fields of ERROR log lines (what the server logged for its
    /// INTERNAL answers), at most `n`, each shortened.
    pub fn logged_errors(&self, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for line in self.error_lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let e = v["error"].as_str().or(v["message"].as_str()).unwrap_or_default();
            let e: String = e.chars().take(160).collect();
            if !out.contains(&e) {
                out.push(e);
            }
            if out.len() >= n {
                break;
            }
        }
        out
    }
}

impl Drop for Maru {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// The last lines of a process's output, for failure messages.
pub fn tail(output: &Output) -> String {
    let mut lines = output.stdout();
    lines.extend(output.stderr());
    lines[lines.len().saturating_sub(30)..].join("\n")
}

pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(3)).no_proxy().build().expect("http client")
}

/// Health of the whole server (`""`).
pub async fn health_check(channel: &Channel) -> Result<ServingStatus, tonic::Status> {
    let mut req = tonic::Request::new(HealthCheckRequest { service: String::new() });
    req.set_timeout(Duration::from_secs(2));
    let mut client = HealthClient::new(channel.clone());
    let r = tokio::time::timeout(Duration::from_secs(3), client.check(req))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??;
    Ok(ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown))
}
