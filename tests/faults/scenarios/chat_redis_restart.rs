//! Chat's live stream through a Redis `kill -9` and restart (issue 17): two replicas share
//! PostgreSQL and a throw-away Redis; 8 subscribers (4 per replica) read their rooms while 8
//! senders post through the other replica; Redis is killed in the middle and started again
//! empty. Notices published while it was away are lost; the hub's reconnect (and the next
//! notices) fill the gap from PostgreSQL. Every subscriber must receive every message of its
//! rooms — exactly the rows in the database — once, in seq order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use maru::grpc::pb;
use maru::grpc::pb::chat_service_client::ChatServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::harness::load::{Account, accounts, authed};
use crate::harness::maru::Maru;
use crate::harness::report::Report;
use crate::harness::{Env, scenario, soak};

/// Rooms by the indexes of their members (the first creates it).
const ROOMS: [&[usize]; 4] = [&[0, 1, 2, 3], &[2, 3, 4, 5], &[4, 5, 6, 7, 0], &[1, 3, 5, 7]];

fn sentinel(room: &str) -> String {
    format!("sentinel {room}")
}

async fn metric(maru: &Maru, name: &str) -> f64 {
    let text = maru.metrics().await.unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn subscribe(
    ch: &Channel,
    token: &str,
    last: &HashMap<String, i64>,
) -> Result<Streaming<pb::SubscribeResponse>, tonic::Status> {
    let resume = last.iter().map(|(r, s)| pb::ChatResumePoint { room_id: r.clone(), last_seq: *s }).collect();
    Ok(ChatServiceClient::new(ch.clone()).subscribe(authed(pb::SubscribeRequest { resume }, token)).await?.into_inner())
}

/// What one subscriber saw: message (seq, id) per room in arrival order, and problems.
#[derive(Default)]
struct Seen {
    messages: HashMap<String, Vec<(i64, String)>>,
    problems: Vec<String>,
    resumes: usize,
}

/// Reads until the sentinel of each of `rooms` arrived (resuming like a client on a retryable
/// end), recording messages and any seq out of order.
async fn read(ch: Channel, token: String, rooms: Vec<String>, mut s: Streaming<pb::SubscribeResponse>) -> Seen {
    let mut seen = Seen::default();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.len() < rooms.len() {
        if Instant::now() > deadline {
            seen.problems.push(format!("hang guard: sentinels of {} of {} rooms", done.len(), rooms.len()));
            break;
        }
        let m = tokio::time::timeout(Duration::from_secs(30), s.message()).await;
        match m.map(|r| r.map(|r| r.and_then(|r| r.event))) {
            Ok(Ok(Some(e))) if e.kind == pb::ChatEventKind::Heartbeat as i32 => {}
            Ok(Ok(Some(e))) => {
                let l = last.entry(e.room_id.clone()).or_insert(0);
                if e.seq <= *l {
                    seen.problems.push(format!("room {}: seq {} after {}", e.room_id, e.seq, l));
                }
                *l = e.seq;
                if e.kind == pb::ChatEventKind::MessageCreated as i32
                    && let Some(m) = e.message
                {
                    if m.text == sentinel(&e.room_id) {
                        done.insert(e.room_id.clone());
                    }
                    seen.messages.entry(e.room_id.clone()).or_default().push((e.seq, m.id));
                }
            }
            Ok(Ok(None)) => seen.problems.push("stream ended with OK".into()),
            Ok(Err(st)) if matches!(st.code(), Code::Unavailable | Code::ResourceExhausted) => {
                seen.resumes += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                match subscribe(&ch, &token, &last).await {
                    Ok(n) => s = n,
                    Err(st) => seen.problems.push(format!("resume failed: {st:?}")),
                }
            }
            Ok(Err(st)) => {
                seen.problems.push(format!("stream failed: {st:?}"));
                break;
            }
            Err(_) => {}
        }
    }
    seen
}

#[test]
fn chat_stream_survives_a_redis_restart() {
    scenario(|| async {
        let mut env = Env::start().await;
        let cfg = |name: &str| {
            env.maru(name)
                .load_limits()
                .set("MARU__RATE_LIMIT__BUCKETS__WRITE__PER_MINUTE", 60_000)
                .set("MARU__RATE_LIMIT__BUCKETS__WRITE__BURST", 1000)
                // No heartbeat check during the scenario: recovery must come from the reconnect
                // and from later notices, not from the periodic check.
                .set("MARU__CHAT__HEARTBEAT_S", 3600)
        };
        let one = Maru::start(&cfg("maru-1")).await;
        let two = Maru::start(&cfg("maru-2")).await;
        let channels = [one.channel(), two.channel()];
        let users: Vec<Account> = accounts(&channels[0], "chat.user", 8).await;
        let mut rooms = Vec::new();
        for members in ROOMS {
            let r = ChatServiceClient::new(channels[0].clone())
                .create_room(authed(
                    pb::CreateRoomRequest {
                        member_handles: members[1..].iter().map(|i| users[*i].handle.clone()).collect(),
                        title: "장애 시험".into(),
                        request_id: String::new(),
                    },
                    &users[members[0]].token,
                ))
                .await
                .expect("CreateRoom")
                .into_inner();
            rooms.push((r.room.expect("room").id, members.to_vec()));
        }
        let rooms_of = |i: usize| -> Vec<String> {
            rooms.iter().filter(|(_, m)| m.contains(&i)).map(|(r, _)| r.clone()).collect()
        };

        let mut readers = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let ch = channels[i % 2].clone();
            let s = subscribe(&ch, &u.token, &HashMap::new()).await.expect("Subscribe");
            readers.push(tokio::spawn(read(ch, u.token.clone(), rooms_of(i), s)));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut senders = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let (mine, ch, token) = (rooms_of(i), channels[(i + 1) % 2].clone(), u.token.clone());
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            senders.push(tokio::spawn(async move {
                let mut chat = ChatServiceClient::new(ch);
                let mut k = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let req = pb::SendMessageRequest {
                        room_id: mine[k % mine.len()].clone(),
                        text: format!("msg {i}/{k}"),
                        request_id: format!("chat-fault-{i}-{k}"),
                    };
                    match chat.send_message(authed(req, &token)).await {
                        Ok(_) => {
                            sent.fetch_add(1, Ordering::Relaxed);
                            k += 1;
                        }
                        // Retried with the same request_id.
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }

        tokio::time::sleep(soak(2)).await;
        let before_fault = sent.load(Ordering::Relaxed);
        env.redis.kill9();
        tokio::time::sleep(soak(3)).await;
        let during_fault = sent.load(Ordering::Relaxed) - before_fault;
        env.redis.restart().await;
        // Both replicas use Redis again (the cache probe), and a while of traffic after that.
        let back = Instant::now();
        while back.elapsed() < Duration::from_secs(30)
            && (metric(&one, "maru_redis_up").await < 1.0 || metric(&two, "maru_redis_up").await < 1.0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(soak(2)).await;
        stop.store(true, Ordering::Release);
        for s in senders {
            s.await.expect("sender");
        }
        // The last message of every room.
        for (room, members) in &rooms {
            ChatServiceClient::new(channels[1].clone())
                .send_message(authed(
                    pb::SendMessageRequest { room_id: room.clone(), text: sentinel(room), request_id: String::new() },
                    &users[members[0]].token,
                ))
                .await
                .expect("sentinel");
        }

        let mut db = env.db().await;
        let mut stored: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for (room, _) in &rooms {
            let rows: Vec<(i64, uuid::Uuid)> =
                sqlx::query_as("select seq, id from chat_messages where room_id = $1::uuid order by seq")
                    .bind(room)
                    .fetch_all(&mut db)
                    .await
                    .expect("messages");
            stored.insert(room.clone(), rows.into_iter().map(|(s, id)| (s, id.to_string())).collect());
        }

        let mut report = Report::new("chat_stream_survives_a_redis_restart");
        report.figure("fault", "redis-server SIGKILL under chat traffic, 3 s down, restarted empty on the same port");
        report.figure("load", "2 replicas, 8 subscribers (4 per replica), 8 senders on the other replica, 4 rooms");
        report.figure(
            "messages acknowledged (during the outage)",
            format!("{} ({during_fault})", sent.load(Ordering::Relaxed)),
        );
        report.figure("SendMessage errors", failed.load(Ordering::Relaxed));
        let mut total_resumes = 0;
        for (i, r) in readers.into_iter().enumerate() {
            let seen = r.await.expect("reader");
            total_resumes += seen.resumes;
            report.check(seen.problems.is_empty(), format!("subscriber {i}: no gap, no disorder: {:?}", seen.problems));
            for room in rooms_of(i) {
                let got = seen.messages.get(&room).cloned().unwrap_or_default();
                let want = &stored[&room];
                report.check(
                    &got == want,
                    format!(
                        "subscriber {i}, room {room}: exactly the stored messages, once, in seq order ({} received, {} stored)",
                        got.len(),
                        want.len()
                    ),
                );
            }
            let extra: Vec<&String> = seen.messages.keys().filter(|r| !rooms_of(i).contains(r)).collect();
            report.check(extra.is_empty(), format!("subscriber {i}: only its rooms: {extra:?}"));
        }
        report.figure("subscriber resumes", total_resumes);
        let reconnects = [
            metric(&one, "maru_chat_pubsub_reconnects_total").await,
            metric(&two, "maru_chat_pubsub_reconnects_total").await,
        ];
        let gap_fills =
            metric(&one, "maru_chat_gap_fills_total").await + metric(&two, "maru_chat_gap_fills_total").await;
        report.figure("pub/sub reconnects (per replica)", format!("{reconnects:?}"));
        report.figure("gap fills (events read without their notice)", gap_fills);
        report.check(reconnects.iter().all(|r| *r >= 1.0), "each replica's pub/sub reconnected");
        report.check(during_fault > 0, "messages were sent while Redis was down");
        report.check(gap_fills > 0.0, "the lost notices were filled from PostgreSQL");
        report.no_panic(&[&one, &two]);
        report.finish();
    });
}
