//! `chat`: live chat at 1,000 subscribers (smoke 20) spread over every `--target` (two replicas
//! in the run), with 100 senders (smoke 4) at a human pace (`--think-time`, default
//! 1–3 s between messages) in rooms of 2–20 members (issue 17).
//!
//! Seeding: the subscribers are real accounts (SignUp, Login; reused by a rerun with the same
//! `--seed`), put into rooms by size in turn from [`ROOM_SIZES`] — a size-2 room is a DM, the
//! others are groups — each made once per seed by CreateRoom with a deterministic `request_id`.
//! Every subscriber opens one `ChatService/Subscribe` stream on target `i % targets` (its own
//! HTTP/2 connection, like separate clients) and resumes each of its rooms from the room's
//! last seq at seeding, so nothing sent after that can slip past it. Sender `i` is a member of
//! room `i % rooms` and sends there; its text carries the send time (Unix µs, taken right before
//! the call). A subscriber's stream that ends (a drain, a slow-subscriber close) is resumed from
//! its last seq per room, as a client would, and counted.
//!
//! Figures: delivery latency end to end, client-side (the send stamp in the text to the
//! receipt of the MESSAGE_CREATED event on each member's stream), p50/p99 over every delivery;
//! messages/s; with `--server-metrics`, the server's resident memory per open idle stream: the
//! streams open in two halves, and the figure is the growth of that replica's resident bytes
//! over the growth of its `maru_chat_streams_open` while the second half opens (the first warms
//! the server up: its database pool, allocator arenas, caches), before any message; the figure
//! over all streams, warm-up included, is printed beside it. Checks: every reply OK, no INTERNAL; per subscriber and room,
//! every event after the resume point arrived exactly once and in seq order up to the room's
//! last seq in the database (0 lost, 0 duplicated, 0 out of order); every message stored was
//! delivered to every member; a full run checks delivery p99 ≤ 100 ms (`--p99-ms`) and
//! ≤ 20 KiB per idle stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use goose::goose::{GooseUser, Scenario, TransactionResult};
use maru::grpc::pb;
use maru::grpc::pb::chat_service_client::ChatServiceClient;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use super::whoami::custom;
use super::{Ctx, Entry, LoadScenario, Shape, Think, session, tx, with_think};
use crate::api::Api;
use crate::report::{Check, Summary};
use crate::rpc::request;
use crate::seed::{self, Account, Seeding};

pub const ENTRY: Entry = Entry {
    name: "chat",
    about: "live chat: 1,000 Subscribe streams (smoke 20) over every --target, 100 senders (smoke 4) at \
            1–3 s per message in rooms of 2–20; delivery latency end to end, lost/duplicated events",
    full: Shape::new(100, 60, Think::ms(1_000, 3_000)),
    smoke: Shape::new(4, 4, Think::ms(100, 300)),
    build: |ctx| Box::new(Arc::new(Chat::new(ctx))),
};

/// Default delivery p99 goal of a full run, in milliseconds.
const P99_GOAL_MS: f64 = 100.0;
/// Server memory goal per open idle stream, in KiB.
const RSS_PER_STREAM_GOAL_KIB: f64 = 20.0;
/// Room sizes, taken in turn until every subscriber has a room (2 = a DM).
const ROOM_SIZES: [usize; 8] = [2, 3, 5, 8, 12, 20, 2, 10];
/// How long `verify` waits for the last messages to reach every stream.
const SETTLE: Duration = Duration::from_secs(3);
const SEND: &str = "/maru.v1.ChatService/SendMessage";

struct Chat {
    ctx: Arc<Ctx>,
    subscribers: OnceLock<Vec<Account>>,
    /// Rooms: id and member indexes into `subscribers`.
    rooms: OnceLock<Vec<Room>>,
    /// What every stream saw, per subscriber.
    seen: OnceLock<Vec<Arc<Mutex<Seen>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Delivery latencies of MESSAGE_CREATED events, µs.
    latencies: Arc<Mutex<Vec<u64>>>,
    sent: AtomicU64,
    resumed: Arc<AtomicU64>,
    rss_per_stream_kib: OnceLock<Option<f64>>,
    /// Subscriber connections by `i / --streams-per-connection`.
    connections: Mutex<HashMap<usize, Channel>>,
}

#[derive(Clone)]
struct Room {
    id: String,
    members: Vec<usize>,
    /// The room's last seq when the streams opened: streams resume from it.
    start_seq: i64,
}

/// One subscriber's view: per room, the last seq received, and what went wrong.
#[derive(Default)]
struct Seen {
    last: HashMap<String, i64>,
    duplicates: u64,
    gaps: u64,
    messages: u64,
    ended: Option<String>,
}

#[derive(Clone)]
struct Sender {
    api: Api,
    account: Account,
    room: String,
    n: u64,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

/// Rooms over `n` subscribers: sizes from [`ROOM_SIZES`] in turn; a last lone subscriber joins
/// the first room.
fn partition(n: usize) -> Vec<Vec<usize>> {
    let mut rooms: Vec<Vec<usize>> = Vec::new();
    let mut next = 0;
    let mut k = 0;
    while next < n {
        let size = ROOM_SIZES[k % ROOM_SIZES.len()].min(n - next);
        k += 1;
        if size < 2 {
            if let Some(first) = rooms.first_mut() {
                first.extend(next..n);
            }
            break;
        }
        rooms.push((next..next + size).collect());
        next += size;
    }
    rooms
}

/// p-quantile of sorted values (nearest rank).
fn quantile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Chat {
    fn new(ctx: Arc<Ctx>) -> Self {
        Chat {
            ctx,
            subscribers: OnceLock::new(),
            rooms: OnceLock::new(),
            seen: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            latencies: Arc::new(Mutex::new(Vec::new())),
            sent: AtomicU64::new(0),
            resumed: Arc::new(AtomicU64::new(0)),
            rss_per_stream_kib: OnceLock::new(),
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn subscriber_count(&self) -> usize {
        if self.ctx.smoke { 20 } else { 1_000 }
    }

    fn prefix(&self) -> String {
        format!("ch.s{}.", self.ctx.seed)
    }

    /// The rooms of this seed, made once (CreateRoom with a request_id fixed by seed and room).
    async fn make_rooms(&self, subs: &[Account]) -> anyhow::Result<Vec<Room>> {
        let mut rooms = Vec::new();
        for (r, members) in partition(subs.len()).into_iter().enumerate() {
            let owner = &subs[members[0]];
            let mut client = ChatServiceClient::new(self.ctx.channel(r)?);
            let request_id = format!("chat-load-{}-{r}", self.ctx.seed);
            let msg = pb::CreateRoomRequest {
                member_handles: members[1..].iter().map(|&m| subs[m].handle.clone()).collect(),
                title: if members.len() > 2 { format!("load room {r}") } else { String::new() },
                request_id,
            };
            let room = client
                .create_room(request(msg, Some(&owner.bearer), None))
                .await
                .map_err(|s| anyhow::anyhow!("CreateRoom {r}: {:?} {}", s.code(), s.message()))?
                .into_inner()
                .room
                .ok_or_else(|| anyhow::anyhow!("CreateRoom {r}: no room in the reply"))?;
            rooms.push(Room { id: room.id, members, start_seq: 0 });
        }
        // Where each room is now (a replayed CreateRoom answers with the room as it was then).
        let mut db = self.ctx.db().await?;
        for room in &mut rooms {
            room.start_seq = sqlx::query_scalar("select last_seq from chat_rooms where id = $1::uuid")
                .bind(&room.id)
                .fetch_one(&mut db)
                .await?;
        }
        Ok(rooms)
    }

    /// Opens subscriber `i`'s stream and keeps it open (resuming when it ends) until aborted.
    /// Opens the streams of subscribers `which` (indexes into `subs`), each resuming its rooms
    /// from their seq at seeding; returns when every one is open.
    async fn open_streams(
        &self,
        subs: &[Account],
        rooms: &[Room],
        which: std::ops::Range<usize>,
    ) -> anyhow::Result<Vec<Arc<Mutex<Seen>>>> {
        let mut rooms_of: Vec<Vec<&Room>> = vec![Vec::new(); subs.len()];
        for room in rooms {
            for &m in &room.members {
                rooms_of[m].push(room);
            }
        }
        let mut seen = Vec::new();
        let mut opened = Vec::new();
        for (i, account) in subs.iter().enumerate().take(which.end).skip(which.start) {
            let state = Arc::new(Mutex::new(Seen {
                last: rooms_of[i].iter().map(|r| (r.id.clone(), r.start_seq)).collect(),
                ..Default::default()
            }));
            seen.push(Arc::clone(&state));
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            // Subscribers with the same `i / per` share a connection (to target `i / per`).
            let per = self.ctx.options.streams_per_connection.max(1);
            let channel = {
                let mut shared = self.connections.lock().expect("connections");
                match shared.get(&(i / per)) {
                    Some(c) => c.clone(),
                    None => {
                        let target = self.ctx.target(i / per).to_owned();
                        let c = Endpoint::from_shared(target)?.connect_timeout(Duration::from_secs(5)).connect_lazy();
                        shared.insert(i / per, c.clone());
                        c
                    }
                }
            };
            let task = tokio::spawn(subscriber(
                channel,
                account.clone(),
                state,
                Arc::clone(&self.latencies),
                Arc::clone(&self.resumed),
                ready_tx,
            ));
            self.tasks.lock().expect("tasks").push(task);
            opened.push(ready_rx);
        }
        for (i, ready) in which.zip(opened) {
            match ready.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("subscriber {i}: Subscribe refused: {e}"),
                Err(_) => anyhow::bail!("subscriber {i}: the stream task ended before the stream opened"),
            }
        }
        Ok(seen)
    }

    async fn send(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let mut s = session::<Sender>(user)?;
        s.n += 1;
        user.set_session_data(s.clone());
        let text = format!("{} {} {}", now_us(), s.account.handle, s.n);
        let msg = pb::SendMessageRequest { room_id: s.room.clone(), text, request_id: String::new() };
        let reply = s
            .api
            .call::<_, pb::SendMessageResponse>(user, &self.ctx.budget, SEND, msg, Some(&s.account.bearer))
            .await?;
        if reply.is_ok() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn start_sender(self: Arc<Self>, user: &mut GooseUser) -> TransactionResult {
        let i = user.weighted_users_index;
        let (subs, rooms) = match (self.subscribers.get(), self.rooms.get()) {
            (Some(s), Some(r)) if !r.is_empty() => (s, r),
            _ => return Err(custom("the rooms are not seeded".into())),
        };
        let room = &rooms[i % rooms.len()];
        let member = room.members[(i / rooms.len()) % room.members.len()];
        let api = Api::Grpc(self.ctx.channel(i).map_err(|e| custom(format!("{e:#}")))?);
        user.set_session_data(Sender { api, account: subs[member].clone(), room: room.id.clone(), n: 0 });
        Ok(())
    }

    /// Resident bytes and open streams of the `--server-metrics` replica.
    async fn server_figures(&self) -> Option<(f64, f64)> {
        let m = self.ctx.server_metrics.as_ref()?;
        let rss = m.sum("process_resident_memory_bytes", &[]).await.ok()?;
        let streams = m.sum("maru_chat_streams_open", &[]).await.ok()?;
        Some((rss, streams))
    }
}

/// One client: Subscribe with the last seq per room, read every event, resume when the stream
/// ends, until the task is aborted.
async fn subscriber(
    channel: Channel,
    account: Account,
    seen: Arc<Mutex<Seen>>,
    latencies: Arc<Mutex<Vec<u64>>>,
    resumed: Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    loop {
        let resume: Vec<pb::ChatResumePoint> = {
            let s = seen.lock().expect("seen");
            s.last.iter().map(|(room, seq)| pb::ChatResumePoint { room_id: room.clone(), last_seq: *seq }).collect()
        };
        let mut client = ChatServiceClient::new(channel.clone());
        let opened = client.subscribe(request(pb::SubscribeRequest { resume }, Some(&account.bearer), None)).await;
        let mut stream = match opened {
            Ok(r) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(()));
                }
                r.into_inner()
            }
            Err(status) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(format!("{:?} {}", status.code(), status.message())));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let ended = loop {
            match stream.message().await {
                Ok(Some(reply)) => {
                    let received = now_us();
                    let Some(event) = reply.event else { continue };
                    if event.room_id.is_empty() {
                        continue; // heartbeat
                    }
                    let mut s = seen.lock().expect("seen");
                    let last = s.last.get(&event.room_id).copied();
                    match last {
                        Some(last) if event.seq <= last => s.duplicates += 1,
                        Some(last) if event.seq > last + 1 => {
                            s.gaps += 1;
                            s.last.insert(event.room_id.clone(), event.seq);
                        }
                        _ => {
                            s.last.insert(event.room_id.clone(), event.seq);
                        }
                    }
                    if event.kind == pb::ChatEventKind::MessageCreated as i32
                        && let Some(sent) =
                            event.message.as_ref().and_then(|m| m.text.split(' ').next()?.parse::<u64>().ok())
                    {
                        s.messages += 1;
                        drop(s);
                        latencies.lock().expect("latencies").push(received.saturating_sub(sent));
                    }
                }
                Ok(None) => break "the server ended the stream".to_owned(),
                Err(status) => break format!("{:?} {}", status.code(), status.message()),
            }
        };
        seen.lock().expect("seen").ended = Some(ended);
        resumed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[async_trait]
impl LoadScenario for Arc<Chat> {
    async fn prepare(&self) -> anyhow::Result<Vec<Scenario>> {
        let ctx = &self.ctx;
        let prefix = self.prefix();
        let how =
            Seeding { prefix: &prefix, count: self.subscriber_count(), forwarded: false, fail_on_rate_limit: false };
        let subs = seed::accounts(ctx, &how).await?;
        let rooms = self.make_rooms(&subs).await?;
        // Memory per idle stream is the marginal cost: the first half of the streams warms the
        // server up (database pool grown to its size, allocator arenas, caches), the second
        // half's resident memory over its streams is the figure. Idle streams settle (buffers
        // allocated, catch-up reads done) before each reading.
        let before = self.server_figures().await;
        let half = subs.len() / 2;
        let mut seen = self.open_streams(&subs, &rooms, 0..half).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let middle = self.server_figures().await;
        seen.extend(self.open_streams(&subs, &rooms, half..subs.len()).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = self.server_figures().await;
        let per = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
            (Some((rss0, s0)), Some((rss1, s1))) if s1 > s0 => Some((rss1 - rss0) / (s1 - s0) / 1024.0),
            _ => None,
        };
        let per_stream = per(middle, after);
        let _ = self.rss_per_stream_kib.set(per_stream);
        println!(
            "chat: {} subscribers in {} rooms (sizes 2–20), {} streams open over {} target(s) and {} connection(s){}{}",
            subs.len(),
            rooms.len(),
            seen.len(),
            ctx.targets.len(),
            self.connections.lock().expect("connections").len(),
            per_stream.map(|k| format!("; server memory {k:.1} KiB per idle stream (second half)")).unwrap_or_default(),
            per(before, after).map(|k| format!(", {k:.1} KiB over all streams (warm-up included)")).unwrap_or_default()
        );
        let _ = self.seen.set(seen);
        let _ = self.rooms.set(rooms);
        let _ = self.subscribers.set(subs);
        let s = Scenario::new("senders")
            .register_transaction(tx!(self, "Join", start_sender).set_on_start())
            .register_transaction(tx!(self, "SendMessage", send));
        Ok(vec![with_think(s, ctx.think)?])
    }

    async fn verify(&self, s: &Summary) -> anyhow::Result<Vec<Check>> {
        let ctx = &self.ctx;
        tokio::time::sleep(SETTLE).await;
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
        let rooms = self.rooms.get().map(Vec::as_slice).unwrap_or_default();
        let seen = self.seen.get().map(Vec::as_slice).unwrap_or_default();
        let mut db = ctx.db().await?;
        let ids: Vec<String> = rooms.iter().map(|r| r.id.clone()).collect();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "select r.id::text, r.last_seq,
                    (select count(*) from chat_messages m where m.room_id = r.id and m.seq > x.start_seq)
               from chat_rooms r join unnest($1::text[], $2::bigint[]) as x(id, start_seq) on r.id = x.id::uuid",
        )
        .bind(&ids)
        .bind(rooms.iter().map(|r| r.start_seq).collect::<Vec<_>>())
        .fetch_all(&mut db)
        .await?;
        let db_last: HashMap<String, (i64, i64)> =
            rows.into_iter().map(|(id, last, msgs)| (id, (last, msgs))).collect();
        let (mut lost, mut dups, mut gaps, mut delivered, mut expected) = (0i64, 0u64, 0u64, 0u64, 0i64);
        let mut ended = 0;
        for room in rooms {
            let (last, msgs) = db_last.get(&room.id).copied().unwrap_or_default();
            expected += msgs * room.members.len() as i64;
            for &m in &room.members {
                let got = seen[m].lock().expect("seen").last.get(&room.id).copied().unwrap_or_default();
                lost += (last - got).max(0);
            }
        }
        for sub in seen {
            let sub = sub.lock().expect("seen");
            dups += sub.duplicates;
            gaps += sub.gaps;
            delivered += sub.messages;
            ended += u64::from(sub.ended.is_some());
        }
        let mut lat = std::mem::take(&mut *self.latencies.lock().expect("latencies"));
        lat.sort_unstable();
        let (p50, p99) = (quantile(&lat, 0.5) as f64 / 1000.0, quantile(&lat, 0.99) as f64 / 1000.0);
        let sent = self.sent.load(Ordering::Relaxed);
        let mut checks = vec![
            Check::no_internal(s),
            Check::only_codes("every reply OK", s, |_, code| code == "OK"),
            Check::new("messages were sent", sent > 0, format!("{sent} messages, {:.1}/s", sent as f64 / s.elapsed_s)),
            Check::new(
                "0 lost, 0 duplicated, 0 out of order",
                lost == 0 && dups == 0 && gaps == 0,
                format!("{lost} events missing at the end, {dups} duplicates, {gaps} gaps in seq order"),
            ),
            Check::new(
                "every stored message reached every member",
                delivered as i64 == expected,
                format!(
                    "{delivered} deliveries of {expected} (messages × members); {ended} streams ended and resumed \
                     ({} resumes)",
                    self.resumed.load(Ordering::Relaxed)
                ),
            ),
            Check::new(
                "delivery latency (end to end)",
                !lat.is_empty(),
                format!("p50 {p50:.2} ms, p99 {p99:.2} ms over {} deliveries", lat.len()),
            ),
        ];
        let per_stream = self.rss_per_stream_kib.get().copied().flatten();
        if !ctx.smoke {
            let goal = ctx.options.p99_ms.unwrap_or(P99_GOAL_MS);
            checks.push(Check::new(format!("delivery p99 ≤ {goal} ms"), p99 <= goal, format!("p99 {p99:.2} ms")));
            if let Some(kib) = per_stream {
                checks.push(Check::new(
                    format!("server memory ≤ {RSS_PER_STREAM_GOAL_KIB} KiB per idle stream"),
                    kib <= RSS_PER_STREAM_GOAL_KIB,
                    format!("{kib:.1} KiB per stream (resident memory of the --server-metrics replica)"),
                ));
            }
        } else if let Some(kib) = per_stream {
            checks.push(Check::new("server memory per idle stream (figure)", true, format!("{kib:.1} KiB")));
        }
        Ok(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_cover_every_subscriber_once_with_2_to_21_members() {
        for n in [2, 3, 20, 21, 1_000, 1_001] {
            let rooms = partition(n);
            let mut all: Vec<usize> = rooms.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}");
            assert!(rooms.iter().all(|r| (2..=21).contains(&r.len())), "n = {n}: {rooms:?}");
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[], 0.99), 0);
    }
}
