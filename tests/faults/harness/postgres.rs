//! A throw-away PostgreSQL 15 cluster per scenario: `initdb` into a temp dir, `postgres` on a
//! free port of 127.0.0.1 (its socket in the temp dir; fsync off, which a
//! crash of PostgreSQL alone does not make lossy — commits stay synchronous), stopped with
//! `pg_ctl stop -m immediate` and started again on the same port and data. Never the shared
//! server on 5432. As root, both run as the `postgres` account (initdb refuses root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use super::process::{TempDir, free_port, harden, kill_and_reap, postgres_ids, signal, wait_timeout};

/// Where Debian's PostgreSQL 15 server binaries live (`FAULTS_PG_BIN` overrides).
fn bin(name: &str) -> PathBuf {
    let dir = std::env::var("FAULTS_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    PathBuf::from(dir).join(name)
}

pub struct PgCluster {
    dir: TempDir,
    ids: Option<(u32, u32)>,
    pub port: u16,
    pub max_connections: u32,
    postmaster: Option<Child>,
}

impl PgCluster {
    /// A fresh cluster with PostgreSQL's default `max_connections` (100), up and accepting.
    pub async fn start() -> Self {
        let ids = postgres_ids();
        let dir = TempDir::new("pg", ids);
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        harden(&mut initdb, ids, None);
        let out = tokio::task::spawn_blocking(move || initdb.output()).await.expect("join").expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut cluster = Self { dir, ids, port: free_port(), max_connections: 100, postmaster: None };
        cluster.start_postmaster().await;
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A connection URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A direct connection (outside maru) to database `db`.
    pub async fn connect(&self, db: &str) -> PgConnection {
        PgConnection::connect(&self.url(db)).await.unwrap_or_else(|e| panic!("connect to {}: {e}", self.url(db)))
    }

    async fn start_postmaster(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("postgres log file");
        if let Some((uid, gid)) = self.ids {
            let _ = std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(uid), Some(gid));
        }
        let mut cmd = Command::new(bin("postgres"));
        cmd.arg("-D").arg(self.data()).arg("-p").arg(self.port.to_string());
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", self.dir.path().display()),
            format!("max_connections={}", self.max_connections),
            "fsync=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=64MB".to_owned(),
            "maintenance_work_mem=256MB".to_owned(),
            "log_min_messages=warning".to_owned(),
        ] {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log fd")).stderr(log);
        harden(&mut cmd, self.ids, None);
        self.postmaster = Some(cmd.spawn().expect("spawn postgres"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if PgConnection::connect(&self.url("postgres")).await.is_ok() {
                return;
            }
            if let Some(child) = self.postmaster.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited with {status}: {}", self.log_tail());
            }
            assert!(Instant::now() < deadline, "postgres did not accept connections: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_ctl stop -m immediate`: SIGQUIT to the postmaster, which takes every backend down
    /// at once without a checkpoint (a crash, as far as clients can tell); returns when it is
    /// gone.
    pub fn stop_immediate(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            signal(child.id(), libc::SIGQUIT);
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                kill_and_reap(&mut child);
            }
        }
    }

    /// Starts it again on the same port and data (crash recovery first); returns once it
    /// accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.postmaster.is_none(), "restart of a running postgres");
        self.start_postmaster().await;
    }

    /// The end of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            // SIGQUIT is PostgreSQL's immediate shutdown: the postmaster takes its backends along.
            signal(child.id(), libc::SIGQUIT);
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                kill_and_reap(&mut child);
            }
        }
    }
}
