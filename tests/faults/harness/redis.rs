//! A throw-away `redis-server` per scenario on a free port of 127.0.0.1 (no persistence),
//! killed with SIGKILL and started again on the same port. Never the shared one on 6379.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{TempDir, free_port, harden, kill_and_reap};

pub struct RedisServer {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut server = Self { dir: TempDir::new("redis", None), port: free_port(), child: None };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let bin = std::env::var("FAULTS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        harden(&mut cmd, None, None);
        self.child = Some(cmd.spawn().expect("spawn redis-server (is it installed?)"));
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = self.port;
        while !tokio::task::spawn_blocking(move || ping(port)).await.unwrap_or(false) {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on {port}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `kill -9`: the server and every connection to it vanish at once.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running redis-server");
        self.spawn().await;
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).map(|n| buf[..n].starts_with(b"+PONG")).unwrap_or(false)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
