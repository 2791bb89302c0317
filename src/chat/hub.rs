//! The fan-out of room changes to the Subscribe streams of every replica
//! (docs/chat.md#the-live-stream).
//!
//! After a change of a room commits, its writer publishes a small [`Notice`] — the room, the
//! seq of its last event, the users whose membership changed, the commit time — on one Redis
//! pub/sub channel (`<redis.key_prefix>chat:events`). Each replica's [`Hub`] holds one
//! dedicated pub/sub connection (a plain `redis::Client` connection, not the pool) and routes
//! each notice to its local streams: those that carry the room, and every stream of a user the
//! notice names (a room they joined is new to their streams). A notice only says "there is
//! something up to seq n": the stream reads the events themselves from PostgreSQL
//! (`chat_events`) after the last seq it sent, so a lost notice is filled by the next one (or by
//! the heartbeat's check) and a duplicate is dropped by its seq. When the pub/sub connection
//! drops the hub reconnects with backoff, then asks every stream to catch up from PostgreSQL.
//!
//! The hub belongs to the chat service (not to the application state); it holds no queue of
//! its own: routing a notice marks each stream's pending work and wakes it, and never waits
//! on a stream.
//!
//! **Shared reads.** The new events a notice announces are read from PostgreSQL once per
//! replica, not once per stream: a stream woken by a notice asks the hub for the room's events
//! after its last seq ([`Hub::read_after`]); concurrent askers of the same (room, after seq)
//! join one read in flight, and later askers are served from a small window of the room's
//! latest events the hub keeps while the room has local streams (the events are `Arc`'d, every
//! stream gets the same ones). Each stream still filters them itself (its own MEMBER_LEFT ends
//! the room), so membership, order and exactly-once are decided per stream as before. Resume
//! backlogs and the heartbeat's and membership changes' catch-up reads stay per stream.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::Utc;
use deadpool_redis::redis::{self, Script};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared as SharedFuture};
use parking_lot::Mutex;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use tonic::Code;
use uuid::Uuid;

use super::config::ChatSettings;
use super::store::{self, EventRow};
use crate::cache::Cache;
use crate::error::{AppError, AppResult, Reason};
use crate::state::AppState;

/// What a writer publishes after its change committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The room.
    pub r: Uuid,
    /// The seq of the room's last event written by the change.
    pub s: i64,
    /// Users who joined or left with the change (their streams re-read their rooms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub u: Vec<Uuid>,
    /// Commit time, Unix milliseconds (for `maru_chat_delivery_seconds`).
    pub t: i64,
}

/// The pub/sub channel of a deployment (its Redis key prefix).
pub fn channel(key_prefix: &str) -> String {
    format!("{key_prefix}chat:events")
}

/// Publishes a notice for `room` up to `seq` (after the change committed). Redis being away is
/// not an error: streams find the change at their next heartbeat, or after the hub reconnects.
pub async fn publish(state: &AppState, room: Uuid, seq: i64, users: &[Uuid]) {
    let notice = Notice { r: room, s: seq, u: users.to_vec(), t: Utc::now().timestamp_millis() };
    let Ok(payload) = serde_json::to_string(&notice) else { return };
    let ch = channel(&state.settings.redis.key_prefix);
    state
        .cache
        .run("chat_publish", |mut c| async move {
            redis::cmd("PUBLISH").arg(ch).arg(payload).query_async::<i64>(&mut c).await
        })
        .await;
}

/// Work a stream's driver has to do, set by the hub and taken by the driver.
#[derive(Default)]
pub struct Pending {
    /// Rooms with notices: the seqs notified and their commit times (Unix ms).
    pub rooms: HashMap<Uuid, Vec<(i64, i64)>>,
    /// Re-read the stream's rooms from the database (membership changed, Redis reconnected).
    pub sync: bool,
    /// End the stream with this status.
    pub end: Option<AppError>,
}

/// Most notified seqs remembered per room between two wake-ups of a stream (beyond, the
/// events are still sent, counted as gap fills).
const MAX_NOTIFIED: usize = 1024;

/// The part of a stream the hub reaches.
pub struct Shared {
    pub id: u64,
    pub user: Uuid,
    pending: Mutex<Pending>,
    pub notify: Notify,
}

impl Shared {
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    fn noticed(&self, room: Uuid, seq: i64, at: i64) {
        {
            let mut p = self.pending.lock();
            let seqs = p.rooms.entry(room).or_default();
            if seqs.len() < MAX_NOTIFIED {
                seqs.push((seq, at));
            }
        }
        self.notify.notify_one();
    }

    pub fn request_sync(&self) {
        self.pending.lock().sync = true;
        self.notify.notify_one();
    }

    fn end(&self, err: AppError) {
        self.pending.lock().end.get_or_insert(err);
        self.notify.notify_one();
    }
}

struct Entry {
    shared: Arc<Shared>,
    rooms: HashSet<Uuid>,
}

#[derive(Default)]
struct Registry {
    streams: HashMap<u64, Entry>,
    by_user: HashMap<Uuid, Vec<u64>>,
    by_room: HashMap<Uuid, HashSet<u64>>,
    /// The shared reads of the rooms with local streams (dropped with the room's last stream).
    logs: HashMap<Uuid, RoomLog>,
}

/// Events of one read, shared by every stream that asked for them.
pub type Events = Arc<Vec<Arc<EventRow>>>;

/// A read in flight; its error is shared too.
type Flight = SharedFuture<BoxFuture<'static, Result<Events, Arc<AppError>>>>;

/// Latest events kept per room for streams that ask after the read finished.
const WINDOW: usize = 64;

/// What the hub knows of a room's log: its latest events and the reads in flight.
#[derive(Default)]
struct RoomLog {
    /// Events of consecutive seqs, oldest first, at most [`WINDOW`].
    window: VecDeque<Arc<EventRow>>,
    /// Reads in flight by the seq they read after.
    flights: HashMap<i64, Flight>,
}

impl RoomLog {
    /// The window's events after `after`, if the window holds the one right after it.
    fn serve(&self, after: i64, limit: usize) -> Option<Vec<Arc<EventRow>>> {
        let (front, back) = (self.window.front()?, self.window.back()?);
        if front.seq > after + 1 || back.seq <= after {
            return None;
        }
        Some(self.window.iter().filter(|e| e.seq > after).take(limit).cloned().collect())
    }

    /// Adds the events of a read (consecutive seqs) to the window, which stays consecutive and
    /// keeps the latest [`WINDOW`].
    fn merge(&mut self, events: &[Arc<EventRow>]) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else { return };
        let touches = match (self.window.front(), self.window.back()) {
            (Some(f), Some(b)) => first.seq <= b.seq + 1 && last.seq + 1 >= f.seq,
            _ => false,
        };
        if touches && first.seq > self.window.front().map_or(i64::MIN, |f| f.seq) {
            let back = self.window.back().map_or(i64::MIN, |b| b.seq);
            self.window.extend(events.iter().filter(|e| e.seq > back).cloned());
        } else {
            let tail: Vec<Arc<EventRow>> =
                if touches { self.window.iter().filter(|e| e.seq > last.seq).cloned().collect() } else { Vec::new() };
            self.window.clear();
            self.window.extend(events.iter().cloned());
            self.window.extend(tail);
        }
        while self.window.len() > WINDOW {
            self.window.pop_front();
        }
    }
}

/// A copy of an error shared by the askers of one read.
fn copy_error(e: &AppError) -> AppError {
    match e {
        AppError::Retry { code, reason, message, retry_after, metadata } => AppError::Retry {
            code: *code,
            reason: *reason,
            message: message.clone(),
            retry_after: *retry_after,
            metadata: metadata.clone(),
        },
        AppError::Refused { code, reason, message, metadata } => {
            AppError::Refused { code: *code, reason: *reason, message: message.clone(), metadata: metadata.clone() }
        }
        other => AppError::internal(format!("chat events read failed: {other}")),
    }
}

/// The streams of this replica and the pub/sub connection feeding them.
pub struct Hub {
    reg: Mutex<Registry>,
    next_id: AtomicU64,
    draining: AtomicBool,
    pub settings: ChatSettings,
}

/// Keeps a stream registered; dropping it unregisters the stream (and ends its lease).
pub struct Registration {
    hub: Arc<Hub>,
    pub shared: Arc<Shared>,
    /// The stream's place in its user's deployment-wide count (set by [`Hub::open_counted`]).
    pub lease: Option<Arc<Lease>>,
}

/// A deployment-wide count of a user's open streams: a Redis sorted set per user
/// (`<prefix>chat:streams:<user id>`) of stream ids scored by the expiry of their lease (Redis
/// time, Unix ms). Opening a stream drops the expired ids (streams of a replica that died) and
/// adds its own unless the user has the limit already, in one script; each heartbeat extends
/// the lease (re-adding the id if Redis lost it); the stream's end removes it.
pub struct Lease {
    cache: Cache,
    key: String,
    member: String,
    ttl_ms: u64,
    ended: AtomicBool,
}

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
          if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
          redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return 1",
    )
});

static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
          redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
          return 1",
    )
});

impl Lease {
    fn new(cache: &Cache, user: Uuid, heartbeat_s: u64) -> Self {
        Lease {
            cache: cache.clone(),
            key: cache.key(&format!("chat:streams:{user}")),
            member: Uuid::now_v7().to_string(),
            // Three heartbeats: a live stream renews it twice over before it runs out.
            ttl_ms: heartbeat_s * 3_000,
            ended: AtomicBool::new(false),
        }
    }

    /// Takes a place under `limit`: `Some(false)` when the user has `limit` streams open on
    /// the deployment already, `None` when Redis is unavailable (the per-replica count decides).
    async fn acquire(&self, limit: usize) -> Option<bool> {
        let (key, member, ttl) = (self.key.clone(), self.member.clone(), self.ttl_ms);
        self.cache
            .run("chat_streams", |mut c| async move {
                ACQUIRE.key(key).arg(member).arg(ttl).arg(limit).invoke_async::<i64>(&mut c).await
            })
            .await
            .map(|ok| ok == 1)
    }

    /// Extends the lease (on the stream's heartbeat); re-adds the stream if Redis lost it.
    pub fn refresh(self: &Arc<Self>) {
        if self.ended.load(Ordering::Acquire) {
            return;
        }
        let lease = self.clone();
        tokio::spawn(async move {
            let (key, member, ttl) = (lease.key.clone(), lease.member.clone(), lease.ttl_ms);
            lease
                .cache
                .run("chat_streams", |mut c| async move {
                    REFRESH.key(key).arg(member).arg(ttl).invoke_async::<i64>(&mut c).await
                })
                .await;
        });
    }

    /// Gives the place back (the stream ended).
    fn release(self: &Arc<Self>) {
        self.ended.store(true, Ordering::Release);
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let lease = self.clone();
        rt.spawn(async move {
            let (key, member) = (lease.key.clone(), lease.member.clone());
            lease
                .cache
                .run("chat_streams", |mut c| async move {
                    redis::cmd("ZREM").arg(key).arg(member).query_async::<i64>(&mut c).await
                })
                .await;
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(lease) = &self.lease {
            lease.release();
        }
        let open = {
            let mut reg = self.hub.reg.lock();
            let id = self.shared.id;
            if let Some(e) = reg.streams.remove(&id) {
                for room in e.rooms {
                    remove_from(&mut reg, room, id);
                }
            }
            if let Some(ids) = reg.by_user.get_mut(&self.shared.user) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    reg.by_user.remove(&self.shared.user);
                }
            }
            reg.streams.len()
        };
        metrics::gauge!("maru_chat_streams_open").set(open as f64);
    }
}

fn remove_from(reg: &mut Registry, room: Uuid, id: u64) {
    if let Some(ids) = reg.by_room.get_mut(&room) {
        ids.remove(&id);
        if ids.is_empty() {
            reg.by_room.remove(&room);
            reg.logs.remove(&room);
        }
    }
}

fn limit_reached(which: &'static str, limit: usize) -> AppError {
    let label = if which == "user" { "user_limit" } else { "replica_limit" };
    metrics::counter!("maru_chat_streams_refused_total", "reason" => label).increment(1);
    let message = if which == "user" {
        format!("you already have {limit} chat streams open; close one first")
    } else {
        "this replica has as many chat streams open as it takes; retry shortly".to_owned()
    };
    AppError::Retry {
        code: Code::ResourceExhausted,
        reason: Reason::ChatStreamsLimit,
        message,
        retry_after: Duration::from_secs(if which == "user" { 5 } else { 1 }),
        metadata: [("limit".to_owned(), which.to_owned())].into(),
    }
}

/// UNAVAILABLE `SHUTTING_DOWN`: the replica drains; resume elsewhere.
pub fn shutting_down() -> AppError {
    AppError::Retry {
        code: Code::Unavailable,
        reason: Reason::ShuttingDown,
        message: "this replica is shutting down; resume the stream on another".into(),
        retry_after: Duration::from_millis(100),
        metadata: Default::default(),
    }
}

impl Hub {
    pub fn new(settings: ChatSettings) -> Arc<Self> {
        Arc::new(Hub {
            reg: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            settings,
        })
    }

    /// Registers a new stream of `user`, within the limits (RESOURCE_EXHAUSTED
    /// `CHAT_STREAMS_LIMIT`) and unless the replica drains (UNAVAILABLE `SHUTTING_DOWN`).
    pub fn open(self: &Arc<Self>, user: Uuid) -> Result<Registration, AppError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(shutting_down());
        }
        let shared = {
            let mut reg = self.reg.lock();
            if reg.streams.len() >= self.settings.max_streams_per_replica {
                return Err(limit_reached("replica", self.settings.max_streams_per_replica));
            }
            if reg.by_user.get(&user).map_or(0, Vec::len) >= self.settings.max_streams_per_user {
                return Err(limit_reached("user", self.settings.max_streams_per_user));
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let shared = Arc::new(Shared { id, user, pending: Mutex::new(Pending::default()), notify: Notify::new() });
            reg.streams.insert(id, Entry { shared: shared.clone(), rooms: HashSet::new() });
            reg.by_user.entry(user).or_default().push(id);
            metrics::gauge!("maru_chat_streams_open").set(reg.streams.len() as f64);
            shared
        };
        Ok(Registration { hub: self.clone(), shared, lease: None })
    }

    /// [`Hub::open`], then the user's deployment-wide count in Redis ([`Lease`]): at most
    /// `chat.max_streams_per_user` over every replica. While Redis is unavailable the
    /// per-replica count alone decides; such a stream joins the Redis count at its next
    /// heartbeat.
    pub async fn open_counted(self: &Arc<Self>, cache: &Cache, user: Uuid) -> Result<Registration, AppError> {
        let mut registration = self.open(user)?;
        let lease = Arc::new(Lease::new(cache, user, self.settings.heartbeat_s));
        if lease.acquire(self.settings.max_streams_per_user).await == Some(false) {
            lease.ended.store(true, Ordering::Release);
            return Err(limit_reached("user", self.settings.max_streams_per_user));
        }
        registration.lease = Some(lease);
        Ok(registration)
    }

    /// The stream now carries `room`: notices of it reach the stream.
    pub fn add_room(&self, id: u64, room: Uuid) {
        let mut reg = self.reg.lock();
        if let Some(e) = reg.streams.get_mut(&id) {
            e.rooms.insert(room);
            reg.by_room.entry(room).or_default().insert(id);
        }
    }

    /// The stream no longer carries `room`.
    pub fn remove_room(&self, id: u64, room: Uuid) {
        let mut reg = self.reg.lock();
        if let Some(e) = reg.streams.get_mut(&id) {
            e.rooms.remove(&room);
        }
        remove_from(&mut reg, room, id);
    }

    /// The events of `room` after seq `after` (at most `limit`, in seq order), read from
    /// PostgreSQL once for every local stream that asks: joined to a read of the same
    /// (room, after) in flight, or served from the room's window of latest events. What it
    /// returns was committed, but may end before a seq notified after the read began (the
    /// caller asks again from its new last seq).
    pub async fn read_after(self: &Arc<Self>, db: &PgPool, room: Uuid, after: i64, limit: usize) -> AppResult<Events> {
        let flight = {
            let mut reg = self.reg.lock();
            if reg.by_room.contains_key(&room) {
                let log = reg.logs.entry(room).or_default();
                if let Some(events) = log.serve(after, limit) {
                    return Ok(Arc::new(events));
                }
                Some(match log.flights.get(&after) {
                    Some(f) => f.clone(),
                    None => {
                        let f = self.start_read(db.clone(), room, after, limit);
                        log.flights.insert(after, f.clone());
                        f
                    }
                })
            } else {
                None
            }
        };
        let Some(flight) = flight else {
            // No local stream carries the room (any more): nothing to share.
            let rows = store::events_after(db, &[room], &[after], limit as i64).await?;
            return Ok(Arc::new(rows.into_iter().map(Arc::new).collect()));
        };
        flight.await.map_err(|e| copy_error(&e))
    }

    /// Starts a read on its own task (it completes and fills the window even if every asker
    /// went away).
    fn start_read(self: &Arc<Self>, db: PgPool, room: Uuid, after: i64, limit: usize) -> Flight {
        let hub = self.clone();
        let task = tokio::spawn(async move {
            metrics::counter!("maru_chat_fanout_reads_total").increment(1);
            let read = store::events_after(&db, &[room], &[after], limit as i64).await;
            let read: Result<Events, Arc<AppError>> =
                read.map(|rows| Arc::new(rows.into_iter().map(Arc::new).collect())).map_err(Arc::new);
            let mut reg = hub.reg.lock();
            // Only a room that still has local streams keeps its log.
            if let Some(log) = reg.logs.get_mut(&room) {
                log.flights.remove(&after);
                if let Ok(events) = &read {
                    log.merge(events);
                }
            }
            read
        });
        async move {
            match task.await {
                Ok(read) => read,
                Err(e) => Err(Arc::new(AppError::internal(format!("chat events read task failed: {e}")))),
            }
        }
        .boxed()
        .shared()
    }

    /// Routes a notice to the local streams of the room and of the users it names.
    pub fn dispatch(&self, n: &Notice) {
        let reg = self.reg.lock();
        if let Some(ids) = reg.by_room.get(&n.r) {
            for id in ids {
                if let Some(e) = reg.streams.get(id) {
                    e.shared.noticed(n.r, n.s, n.t);
                }
            }
        }
        for user in &n.u {
            for id in reg.by_user.get(user).into_iter().flatten() {
                if let Some(e) = reg.streams.get(id) {
                    e.shared.request_sync();
                }
            }
        }
    }

    /// Every stream re-reads its rooms from the database (after a pub/sub reconnect).
    fn sync_all(&self) {
        for e in self.reg.lock().streams.values() {
            e.shared.request_sync();
        }
    }

    /// Ends every stream with UNAVAILABLE `SHUTTING_DOWN` and refuses new ones.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        for e in self.reg.lock().streams.values() {
            e.shared.end(shutting_down());
        }
    }

    /// Open streams on this replica.
    pub fn open_streams(&self) -> usize {
        self.reg.lock().streams.len()
    }

    /// Starts the pub/sub listener, and the drain once `stopping` turns true and `grace` passed
    /// (health is NOT_SERVING by then; the listener closes at the same moment).
    pub fn spawn(
        self: &Arc<Self>,
        redis_url: &str,
        key_prefix: &str,
        grace: Duration,
        stopping: watch::Receiver<bool>,
    ) {
        let listener = tokio::spawn(self.clone().listen(redis_url.to_owned(), channel(key_prefix)));
        let hub = self.clone();
        tokio::spawn(async move {
            let mut stopping = stopping;
            let _ = stopping.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
            hub.drain();
            listener.abort();
        });
    }

    /// The pub/sub loop: connect, subscribe, ask every stream to catch up (notices may have
    /// been missed while not subscribed), route notices until the connection drops; reconnect
    /// with backoff.
    async fn listen(self: Arc<Self>, url: String, channel: String) {
        let first_backoff = Duration::from_millis(self.settings.reconnect_backoff_ms);
        let mut backoff = first_backoff;
        let mut connected_before = false;
        loop {
            match subscribe(&url, &channel).await {
                Ok(pubsub) => {
                    if connected_before {
                        metrics::counter!("maru_chat_pubsub_reconnects_total").increment(1);
                        tracing::info!("chat pub/sub reconnected; streams catch up from the database");
                    }
                    connected_before = true;
                    backoff = first_backoff;
                    self.sync_all();
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        match serde_json::from_slice::<Notice>(msg.get_payload_bytes()) {
                            Ok(n) => self.dispatch(&n),
                            Err(e) => tracing::debug!(error = %e, "ignoring a malformed chat notice"),
                        }
                    }
                    tracing::warn!("chat pub/sub connection lost; reconnecting");
                }
                Err(e) => {
                    tracing::debug!(error = %e, backoff_ms = backoff.as_millis() as u64, "chat pub/sub connect failed");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

async fn subscribe(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url)?;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connect timed out")))??;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// `redis.url` as a string for the pub/sub client.
pub fn redis_url(state: &AppState) -> String {
    state.settings.redis.url.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(per_user: usize, per_replica: usize) -> Arc<Hub> {
        Hub::new(ChatSettings {
            max_streams_per_user: per_user,
            max_streams_per_replica: per_replica,
            ..Default::default()
        })
    }

    #[test]
    fn notices_reach_the_streams_of_the_room_and_of_the_users_named() {
        let h = hub(5, 100);
        let (a, b, room) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let sa = h.open(a).unwrap();
        let sb = h.open(b).unwrap();
        h.add_room(sa.shared.id, room);
        h.dispatch(&Notice { r: room, s: 3, u: vec![b], t: 0 });
        let pa = sa.shared.take();
        assert_eq!(pa.rooms.get(&room), Some(&vec![(3, 0)]));
        assert!(!pa.sync);
        let pb = sb.shared.take();
        assert!(pb.rooms.is_empty());
        assert!(pb.sync);
        h.remove_room(sa.shared.id, room);
        h.dispatch(&Notice { r: room, s: 4, u: vec![], t: 0 });
        assert!(sa.shared.take().rooms.is_empty());
    }

    #[test]
    fn limits_per_user_and_per_replica_and_the_drain_refuse_new_streams() {
        let h = hub(2, 3);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let s1 = h.open(a).unwrap();
        let _s2 = h.open(a).unwrap();
        assert!(matches!(h.open(a), Err(AppError::Retry { reason: Reason::ChatStreamsLimit, .. })));
        let _s3 = h.open(b).unwrap();
        assert!(matches!(h.open(b), Err(AppError::Retry { reason: Reason::ChatStreamsLimit, .. })));
        drop(s1);
        assert_eq!(h.open_streams(), 2);
        let s4 = h.open(b).unwrap();
        h.drain();
        assert!(matches!(s4.shared.take().end, Some(AppError::Retry { reason: Reason::ShuttingDown, .. })));
        assert!(matches!(h.open(b), Err(AppError::Retry { reason: Reason::ShuttingDown, .. })));
    }

    fn ev(room: Uuid, seq: i64) -> Arc<EventRow> {
        Arc::new(EventRow {
            room_id: room,
            seq,
            kind: "read".into(),
            actor_id: None,
            user_id: None,
            title: None,
            read_seq: None,
            created_at: Utc::now(),
            message: store::MaybeMessage {
                m_id: None,
                m_seq: None,
                m_author_id: None,
                m_author_handle: None,
                m_author_display_name: None,
                m_author_image_url: None,
                m_text: None,
                m_created_at: None,
                m_edited_at: None,
                m_deleted_at: None,
            },
        })
    }

    fn seqs(log: &RoomLog) -> Vec<i64> {
        log.window.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_window_keeps_the_latest_consecutive_events_and_serves_what_follows_a_seq() {
        let room = Uuid::now_v7();
        let mut log = RoomLog::default();
        assert!(log.serve(0, 10).is_none());
        log.merge(&(1..=3).map(|s| ev(room, s)).collect::<Vec<_>>());
        assert_eq!(seqs(&log), [1, 2, 3]);
        // Overlapping and adjacent reads extend it; a read of older events keeps the newer ones.
        log.merge(&(3..=5).map(|s| ev(room, s)).collect::<Vec<_>>());
        log.merge(&[ev(room, 6)]);
        log.merge(&(1..=2).map(|s| ev(room, s)).collect::<Vec<_>>());
        assert_eq!(seqs(&log), [1, 2, 3, 4, 5, 6]);
        let served: Vec<i64> = log.serve(3, 10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(served, [4, 5, 6]);
        assert_eq!(log.serve(3, 2).unwrap().len(), 2, "at most the limit");
        assert!(log.serve(6, 10).is_none(), "nothing after the last event held");
        // A read after a hole replaces it (the window stays consecutive).
        log.merge(&[ev(room, 9), ev(room, 10)]);
        assert_eq!(seqs(&log), [9, 10]);
        assert!(log.serve(6, 10).is_none(), "seq 7 is not held");
        log.merge(&(11..=11 + WINDOW as i64).map(|s| ev(room, s)).collect::<Vec<_>>());
        assert_eq!(log.window.len(), WINDOW);
        assert_eq!(log.window.back().unwrap().seq, 11 + WINDOW as i64);
    }

    #[test]
    fn a_notice_round_trips_through_json() {
        let n = Notice { r: Uuid::now_v7(), s: 9, u: vec![Uuid::now_v7()], t: 1 };
        let back: Notice = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
    }
}
