//! Child processes of the suite: free ports, throw-away directories, the `postgres` account
//! when running as root, signals, resident memory, and children that die with the suite.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A TCP port free on 127.0.0.1 right now (the OS picks it; the caller binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The uid and gid to run PostgreSQL as: `postgres` when the suite runs as root (initdb
/// refuses root), else the current user (`None`).
pub fn postgres_ids() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "running as root: the `postgres` account is needed to run initdb and postgres");
    // SAFETY: checked non-null above.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

/// Makes `cmd` run as `ids` (when given) and die with SIGKILL if the suite's thread that
/// started it goes away (a killed test run leaves no servers behind). `nofile` lowers the
/// child's open-file limit.
pub fn harden(cmd: &mut Command, ids: Option<(u32, u32)>, nofile: Option<u64>) {
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: only async-signal-safe calls (prctl, setrlimit) between fork and exec; they run
    // after the uid change, which would otherwise clear the parent-death signal.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(n) = nofile {
                let lim = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Sends `sig` to `pid`; false when the process is gone.
pub fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// Kills and reaps a child (SIGKILL); a child that already exited is only reaped.
pub fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A directory under the system temp dir, removed on drop (also when a test panics).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Owned by `ids` when given (PostgreSQL refuses a data directory it does not own).
    pub fn new(tag: &str, ids: Option<(u32, u32)>) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "maru-faults-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown temp dir");
        }
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Samples a process's resident memory every 100 ms: before (first sample), peak, last.
pub struct RssSampler {
    before: u64,
    peak: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Resident memory figures of one phase, in MiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub before: f64,
    pub peak: f64,
    pub after: f64,
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} / {:.0} / {:.0} MiB", self.before, self.peak, self.after)
    }
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let before = rss_kib(pid).unwrap_or(0);
        let peak = Arc::new(AtomicU64::new(before));
        let last = Arc::new(AtomicU64::new(before));
        let (p, l) = (peak.clone(), last.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                    l.store(kib, Ordering::Relaxed);
                }
            }
        });
        Self { before, peak, last, task }
    }

    /// The figures so far, without stopping.
    pub fn now(&self) -> Rss {
        Rss {
            before: mib(self.before),
            peak: mib(self.peak.load(Ordering::Relaxed)),
            after: mib(self.last.load(Ordering::Relaxed)),
        }
    }

    /// Stops sampling; `after` is a fresh sample when the process is still there.
    pub fn stop(self, pid: u32) -> Rss {
        self.task.abort();
        if let Some(kib) = rss_kib(pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
            self.last.store(kib, Ordering::Relaxed);
        }
        self.now()
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
