//! The bounded mixed load every fault runs under: a few signed-in users, each worker a client
//! that posts (CreatePost with a `request_id`, retried with the same id on UNAVAILABLE,
//! DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or a broken connection, honouring `RetryInfo`, as a
//! well-behaved client does), lists and reads posts, reads trials, asks WhoAmI and now and then
//! logs in. "Naive" workers also post without a `request_id` and retry that on UNAVAILABLE (the
//! clients of issue 14 point 6). Every call is recorded (code, reason, RetryInfo, replica,
//! time); every post has a unique text, so rows per write can be counted afterwards.
//! With several replicas a worker fails over to the next one on UNAVAILABLE or a transport
//! error.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use maru::grpc::pb;
use maru::grpc::pb::auth_service_client::AuthServiceClient;
use maru::grpc::pb::feed_service_client::FeedServiceClient;
use maru::grpc::pb::trial_service_client::TrialServiceClient;
use sqlx::PgConnection;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::maru::endpoint;
use super::status::Failure;

pub const PASSWORD: &str = "faults correct horse";

/// Trial ids of the bundled clinical-trial fixture (ingested by [`super::Env::ingest_trials`]).
pub const TRIAL_IDS: [&str; 5] = ["C100001", "C100002", "C100003", "C100004", "C100005"];

/// A signed-in user of the load.
#[derive(Debug, Clone)]
pub struct Account {
    pub handle: String,
    pub token: String,
}

/// `msg` with the bearer token of `token` (none when empty).
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut req = Request::new(msg);
    if !token.is_empty() {
        let value = format!("Bearer {token}").parse().expect("ascii token");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// Calls `f` again while it answers RESOURCE_EXHAUSTED, after the `RetryInfo` delay.
pub async fn patiently<T, F, Fut>(mut f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == Code::ResourceExhausted && tries < 30 => {
                tries += 1;
                let wait = Failure::of(&s).retry_delay.unwrap_or(Duration::from_millis(500));
                tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Signs up and logs in `handle` through the API.
pub async fn account(channel: &Channel, handle: &str) -> Account {
    let auth = AuthServiceClient::new(channel.clone());
    let signup = pb::SignUpRequest {
        handle: handle.to_owned(),
        email: format!("{handle}@faults.example"),
        password: PASSWORD.to_owned(),
        display_name: format!("부하 {handle}"),
        request_id: format!("signup-{}", handle.replace('.', "-")),
    };
    let user = patiently(|| {
        let (mut auth, req) = (auth.clone(), signup.clone());
        async move { auth.sign_up(req).await }
    })
    .await
    .unwrap_or_else(|s| panic!("SignUp {handle}: {s:?}"))
    .user
    .expect("user");
    let login = pb::LoginRequest { login: handle.to_owned(), password: PASSWORD.to_owned() };
    let token = patiently(|| {
        let (mut auth, req) = (auth.clone(), login.clone());
        async move { auth.login(req).await }
    })
    .await
    .unwrap_or_else(|s| panic!("Login {handle}: {s:?}"));
    Account { handle: user.handle, token: token.access_token }
}

/// `n` accounts `{prefix}0`, `{prefix}1`, …
pub async fn accounts(channel: &Channel, prefix: &str, n: usize) -> Vec<Account> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(account(channel, &format!("{prefix}{i}")).await);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    CreatePost,
    CreatePostNaive,
    ListPosts,
    GetPost,
    GetTrial,
    ListTrials,
    WhoAmI,
    Login,
}

impl Op {
    /// Whether the call needs the database (WhoAmI may come from the cache).
    pub fn touches_db(self) -> bool {
        !matches!(self, Op::WhoAmI)
    }
}

/// One call as the client saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub op: Op,
    pub replica: usize,
    pub start: Instant,
    pub end: Instant,
    pub result: Result<(), Failure>,
}

/// One logical post: its unique text, its request id (none for naive writes), and the post id
/// once acknowledged.
#[derive(Debug, Clone)]
pub struct Write {
    pub text: String,
    pub request_id: Option<String>,
    pub post_id: Option<String>,
    pub attempts: u32,
    pub last_error: Option<Failure>,
    /// When the last attempt was sent, and the acknowledged post's `created_at` (the start of
    /// the transaction that created it): a post older than the attempt that acknowledged it
    /// was created by an earlier attempt — one that was answered with `last_error`.
    pub last_attempt_at: SystemTime,
    pub created_at: Option<SystemTime>,
}

impl Write {
    /// The error an earlier attempt got although that attempt had created the post.
    pub fn committed_despite(&self) -> Option<&Failure> {
        let created = self.created_at?;
        (self.attempts > 1 && created < self.last_attempt_at).then_some(self.last_error.as_ref()).flatten()
    }
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub workers: usize,
    /// Of the workers, how many also post without a request_id.
    pub naive_workers: usize,
    pub think: Duration,
    /// The client gives up on a call after this long (recorded as a hang). No `grpc-timeout`
    /// is sent: tonic's client enforces it too and would race maru's own DEADLINE_EXCEEDED,
    /// hiding what the server answered; maru's deadline is `grpc.request_timeout_ms`.
    pub guard: Duration,
    /// After stop, how long a worker keeps retrying its pending write.
    pub drain: Duration,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            workers: 6,
            naive_workers: 0,
            think: Duration::from_millis(25),
            guard: Duration::from_secs(15),
            drain: Duration::from_secs(30),
        }
    }
}

struct Shared {
    spec: LoadSpec,
    run: String,
    targets: Vec<SocketAddr>,
    accounts: Vec<Account>,
    stop: AtomicBool,
    stopped_at: Mutex<Option<Instant>>,
    calls: Mutex<Vec<Call>>,
    writes: Mutex<Vec<Write>>,
}

/// A running load.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// What a load did.
pub struct LoadResult {
    pub calls: Vec<Call>,
    pub writes: Vec<Write>,
    pub run: String,
}

impl Load {
    /// Starts `spec.workers` workers against `targets` (replicas) as `accounts`.
    pub fn start(spec: LoadSpec, targets: Vec<SocketAddr>, accounts: Vec<Account>) -> Self {
        assert!(!targets.is_empty() && !accounts.is_empty());
        let run = format!("{:08x}", rand::random::<u32>());
        let shared = Arc::new(Shared {
            spec: spec.clone(),
            run,
            targets,
            accounts,
            stop: AtomicBool::new(false),
            stopped_at: Mutex::new(None),
            calls: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
        });
        let tasks = (0..spec.workers)
            .map(|id| tokio::spawn(Worker::new(shared.clone(), id, id < spec.naive_workers).run()))
            .collect();
        Self { shared, tasks }
    }

    /// Stops the workers; each finishes (or gives up on, after `drain`) its pending write.
    pub async fn stop(self) -> LoadResult {
        if let Ok(mut at) = self.shared.stopped_at.lock() {
            *at = Some(Instant::now());
        }
        self.shared.stop.store(true, Ordering::Release);
        for t in self.tasks {
            let _ = t.await;
        }
        LoadResult {
            calls: self.shared.calls.lock().map(|c| c.clone()).unwrap_or_default(),
            writes: self.shared.writes.lock().map(|w| w.clone()).unwrap_or_default(),
            run: self.shared.run.clone(),
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    id: usize,
    naive: bool,
    n: u64,
    replica: usize,
    channels: Vec<Channel>,
    account: Account,
    posts: Vec<String>,
}

/// The op cycle of a worker; naive workers swap two reads for posts without a request_id.
const CYCLE: [Op; 12] = [
    Op::CreatePost,
    Op::ListPosts,
    Op::GetTrial,
    Op::WhoAmI,
    Op::CreatePost,
    Op::ListTrials,
    Op::GetPost,
    Op::WhoAmI,
    Op::CreatePost,
    Op::GetTrial,
    Op::ListPosts,
    Op::GetPost,
];

impl Worker {
    fn new(shared: Arc<Shared>, id: usize, naive: bool) -> Self {
        let channels = shared.targets.iter().map(|a| endpoint(*a).connect_lazy()).collect();
        let account = shared.accounts[id % shared.accounts.len()].clone();
        let replica = id % shared.targets.len();
        Self { shared, id, naive, n: id as u64 * 5, replica, channels, account, posts: Vec::new() }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Past the drain allowance after stop.
    fn drained(&self) -> bool {
        let at = self.shared.stopped_at.lock().ok().and_then(|a| *a);
        at.is_some_and(|at| at.elapsed() > self.shared.spec.drain)
    }

    async fn run(mut self) {
        while !self.stopping() {
            self.n += 1;
            let naive = self.naive;
            let op = if self.n.is_multiple_of(40) {
                Op::Login
            } else {
                match CYCLE[(self.n % CYCLE.len() as u64) as usize] {
                    Op::ListTrials | Op::CreatePost if naive && self.n.is_multiple_of(3) => Op::CreatePostNaive,
                    op => op,
                }
            };
            self.one(op).await;
            tokio::time::sleep(self.shared.spec.think).await;
        }
    }

    async fn one(&mut self, op: Op) {
        let channel = self.channels[self.replica].clone();
        let token = self.account.token.clone();
        match op {
            Op::CreatePost => self.write(true).await,
            Op::CreatePostNaive => self.write(false).await,
            Op::ListPosts => {
                let req = pb::ListPostsRequest {
                    author_handle: self.account.handle.clone(),
                    page_size: 10,
                    ..Default::default()
                };
                let _ = self.call(op, FeedServiceClient::new(channel).list_posts(self.req(req, &token))).await;
            }
            Op::GetPost => {
                let Some(id) = self.posts.get((self.n as usize / 3) % self.posts.len().max(1)).cloned() else {
                    return;
                };
                let req = pb::GetPostRequest { post_id: id };
                let _ = self.call(op, FeedServiceClient::new(channel).get_post(self.req(req, &token))).await;
            }
            Op::GetTrial => {
                let req = pb::GetTrialRequest { trial_id: TRIAL_IDS[self.n as usize % TRIAL_IDS.len()].to_owned() };
                let _ = self.call(op, TrialServiceClient::new(channel).get_trial(self.req(req, &token))).await;
            }
            Op::ListTrials => {
                let req = pb::ListTrialsRequest { updated_within_days: Some(0), limit: 20, ..Default::default() };
                let _ = self.call(op, TrialServiceClient::new(channel).list_trials(self.req(req, &token))).await;
            }
            Op::WhoAmI => {
                let _ = self
                    .call(op, AuthServiceClient::new(channel).who_am_i(self.req(pb::WhoAmIRequest {}, &token)))
                    .await;
            }
            Op::Login => {
                let req = pb::LoginRequest { login: self.account.handle.clone(), password: PASSWORD.to_owned() };
                if let Ok(r) = self.call(op, AuthServiceClient::new(channel).login(self.req(req, ""))).await {
                    self.account.token = r.access_token;
                }
            }
        }
    }

    fn req<T>(&self, msg: T, token: &str) -> Request<T> {
        authed(msg, token)
    }

    /// Runs one call, records it, and moves to the next replica after UNAVAILABLE or a
    /// transport failure.
    async fn call<T>(
        &mut self,
        op: Op,
        fut: impl std::future::Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Failure> {
        let guard = self.shared.spec.guard;
        let start = Instant::now();
        let result = match tokio::time::timeout(guard, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(Failure::of(&s)),
            Err(_) => Err(Failure::hung(guard)),
        };
        let call = Call {
            op,
            replica: self.replica,
            start,
            end: Instant::now(),
            result: result.as_ref().map(|_| ()).map_err(Clone::clone),
        };
        if let Ok(mut calls) = self.shared.calls.lock() {
            calls.push(call);
        }
        if let Err(f) = &result
            && (!f.from_server || f.code == Code::Unavailable)
        {
            self.replica = (self.replica + 1) % self.channels.len();
        }
        result
    }

    /// One logical post, retried until acknowledged, refused for good, or drained.
    async fn write(&mut self, with_request_id: bool) {
        let run = self.shared.run.clone();
        let kind = if with_request_id { "r" } else { "n" };
        let text = format!("faults {run} {kind}{:03}-{:06} 부하 시험 글", self.id, self.n);
        let request_id = with_request_id.then(|| format!("faults-{run}-{:03}-{:06}", self.id, self.n));
        let mut w = Write {
            text: text.clone(),
            request_id: request_id.clone(),
            post_id: None,
            attempts: 0,
            last_error: None,
            last_attempt_at: SystemTime::now(),
            created_at: None,
        };
        let op = if with_request_id { Op::CreatePost } else { Op::CreatePostNaive };
        loop {
            w.attempts += 1;
            w.last_attempt_at = SystemTime::now();
            let req = pb::CreatePostRequest {
                public: true,
                text: text.clone(),
                request_id: request_id.clone().unwrap_or_default(),
                ..Default::default()
            };
            let channel = self.channels[self.replica].clone();
            let token = self.account.token.clone();
            match self.call(op, FeedServiceClient::new(channel).create_post(self.req(req, &token))).await {
                Ok(r) => {
                    let post = r.post.unwrap_or_default();
                    w.created_at = post.created_at.and_then(|t| SystemTime::try_from(t).ok());
                    self.posts.push(post.id.clone());
                    w.post_id = Some(post.id);
                    break;
                }
                Err(f) => {
                    let again = if with_request_id { retryable(&f) } else { naive_retryable(&f) };
                    let delay = retry_delay(&f, w.attempts);
                    w.last_error = Some(f);
                    if !again || self.drained() {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
        if let Ok(mut writes) = self.shared.writes.lock() {
            writes.push(w);
        }
    }
}

/// A well-behaved client retries these with the same request_id.
pub fn retryable(f: &Failure) -> bool {
    !f.from_server
        || matches!(f.code, Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted)
        || f.reason.as_deref() == Some("REQUEST_IN_PROGRESS")
}

/// A client without a request_id retries only what the server says was not done.
pub fn naive_retryable(f: &Failure) -> bool {
    f.from_server && matches!(f.code, Code::Unavailable | Code::ResourceExhausted)
}

fn retry_delay(f: &Failure, attempt: u32) -> Duration {
    f.retry_delay.unwrap_or_else(|| Duration::from_millis(100 * u64::from(attempt.min(10)))).min(Duration::from_secs(2))
}

/// Violations by kind: (count, one message).
pub type Violations = BTreeMap<String, (usize, String)>;

/// The writes as the database has them afterwards.
#[derive(Debug, Default)]
pub struct WritesCheck {
    pub attempted: usize,
    pub acked: usize,
    /// Acknowledged writes whose post row exists (with that id and text).
    pub acked_present: usize,
    pub missing: Vec<String>,
    /// Texts with more than one row: (text, rows, had request_id).
    pub duplicated: Vec<(String, i64, bool)>,
    /// Writes with a request_id never acknowledged (given up after drain, or refused for
    /// good): a well-behaved client retries until it has an answer.
    pub unresolved: Vec<String>,
    /// Writes without a request_id never acknowledged (such a client cannot retry a deadline
    /// or a broken connection safely, so it gives up).
    pub naive_unacked: usize,
    /// Of those, how many have a row all the same (the client was told it failed).
    pub unacked_committed: usize,
    /// Acknowledged on a retry, but created by an earlier attempt: by that attempt's error.
    pub committed_despite: BTreeMap<String, usize>,
    /// Rows of load posts in the table.
    pub rows: i64,
}

impl LoadResult {
    /// Counts of outcomes by label (`OK`, `UNAVAILABLE DATABASE_UNAVAILABLE +RetryInfo`, …).
    pub fn by_label(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.calls {
            let label = match &c.result {
                Ok(()) => "OK".to_owned(),
                Err(f) => f.label(),
            };
            *out.entry(label).or_default() += 1;
        }
        out
    }

    /// Calls per replica (index in the load's targets).
    pub fn by_replica(&self) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        for c in &self.calls {
            *out.entry(c.replica).or_default() += 1;
        }
        out
    }

    /// Failed calls by op and label.
    pub fn failures_by_op(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.calls {
            if let Err(f) = &c.result {
                *out.entry(format!("{:?} {}", c.op, f.label())).or_default() += 1;
            }
        }
        out
    }

    /// Every call whose status breaks the error design (INTERNAL/UNKNOWN, no ErrorInfo,
    /// undocumented reason, UNAVAILABLE/RESOURCE_EXHAUSTED without RetryInfo), plus transport
    /// failures and hangs unless `transport_ok` allows that call's; by kind, with a count and
    /// one message.
    pub fn violations(&self, transport_ok: impl Fn(&Call) -> bool) -> Violations {
        let mut out = Violations::new();
        for c in &self.calls {
            let Err(f) = &c.result else { continue };
            let v = match f.design_violation() {
                Some(v) => Some(v),
                None if !f.from_server && !transport_ok(c) => Some(f.label()),
                None => None,
            };
            if let Some(v) = v {
                let e = out.entry(format!("{:?}: {v}", c.op)).or_insert((0, f.message.clone()));
                e.0 += 1;
            }
        }
        out
    }

    /// From `after` to the end of the first successful database call that started after it.
    pub fn recovery(&self, after: Instant) -> Option<Duration> {
        self.calls
            .iter()
            .filter(|c| c.start >= after && c.op.touches_db() && c.result.is_ok())
            .map(|c| c.end.duration_since(after))
            .min()
    }

    /// Failed calls that started in `[from, to)`.
    pub fn failures_between(&self, from: Instant, to: Instant) -> usize {
        self.calls.iter().filter(|c| c.start >= from && c.start < to && c.result.is_err()).count()
    }

    /// Compares the acknowledged writes with the `posts` table.
    pub async fn check_writes(&self, db: &mut PgConnection) -> WritesCheck {
        let rows: Vec<(String, String)> =
            sqlx::query_as("select text, id::text from posts where text like 'faults ' || $1 || ' %'")
                .bind(&self.run)
                .fetch_all(&mut *db)
                .await
                .expect("read load posts");
        let mut by_text: HashMap<&str, Vec<&str>> = HashMap::new();
        for (text, id) in &rows {
            by_text.entry(text.as_str()).or_default().push(id.as_str());
        }
        let mut check = WritesCheck { attempted: self.writes.len(), rows: rows.len() as i64, ..Default::default() };
        for w in &self.writes {
            let ids = by_text.get(w.text.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            if ids.len() > 1 {
                check.duplicated.push((w.text.clone(), ids.len() as i64, w.request_id.is_some()));
            }
            if let Some(f) = w.committed_despite() {
                *check.committed_despite.entry(f.label()).or_default() += 1;
            }
            match &w.post_id {
                Some(id) => {
                    check.acked += 1;
                    if ids.contains(&id.as_str()) {
                        check.acked_present += 1;
                    } else {
                        check.missing.push(format!("{} (post {id})", w.text));
                    }
                }
                None if w.request_id.is_none() => {
                    check.naive_unacked += 1;
                    if !ids.is_empty() {
                        check.unacked_committed += 1;
                    }
                }
                None => {
                    if !ids.is_empty() {
                        check.unacked_committed += 1;
                    }
                    check.unresolved.push(format!(
                        "{} after {} attempts: {}",
                        w.text,
                        w.attempts,
                        w.last_error.as_ref().map(Failure::label).unwrap_or_default()
                    ))
                }
            }
        }
        check
    }
}
