//! ChatService.Subscribe (issue 17): the live stream of a user's rooms — delivery, resume
//! without gap or duplicate, rooms joined after the stream opened, two replicas sharing
//! PostgreSQL and Redis, slow subscribers, leaving and removal, limits, drain, gRPC-web.
//!
//! Waiting for an event has a generous hang guard (a failed test, not a timing assertion).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use maru::grpc::pb;
use maru::grpc::pb::chat_service_client::ChatServiceClient;
use prost::Message as _;
use sqlx::PgPool;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};
use tonic_types::StatusExt;

use crate::helpers::*;

const HANG: Duration = Duration::from_secs(60);

/// Every test server of this process records into one metrics registry. The tests of this file
/// that open streams hold this shared; the one that counts the shared fan-out reads holds it
/// alone, so that the reads it counts are its own (no other test file opens a stream).
static READS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn api(ch: &Channel) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(ch.clone())
}

async fn group(app: &TestApp, owner: &TestUser, others: &[&TestUser]) -> pb::ChatRoom {
    api(&app.channel)
        .create_room(owner.req(pb::CreateRoomRequest {
            member_handles: others.iter().map(|u| u.handle.clone()).collect(),
            title: if others.len() > 1 { "모임".into() } else { String::new() },
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap()
}

async fn send(ch: &Channel, who: &TestUser, room: &str, text: &str) -> pb::ChatMessage {
    api(ch)
        .send_message(who.req(pb::SendMessageRequest {
            room_id: room.into(),
            text: text.into(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .message
        .unwrap()
}

async fn subscribe(
    ch: &Channel,
    who: &TestUser,
    resume: &[(&str, i64)],
) -> Result<Streaming<pb::SubscribeResponse>, tonic::Status> {
    let resume = resume.iter().map(|(r, s)| pb::ChatResumePoint { room_id: (*r).into(), last_seq: *s }).collect();
    Ok(api(ch).subscribe(who.req(pb::SubscribeRequest { resume })).await?.into_inner())
}

/// The next event that is not a heartbeat; the stream's end as an error.
async fn next(s: &mut Streaming<pb::SubscribeResponse>) -> Result<pb::ChatEvent, tonic::Status> {
    loop {
        let m = tokio::time::timeout(HANG, s.message()).await.expect("an event within the hang guard");
        match m.map(|r| r.map(|r| r.event.expect("every message carries an event"))) {
            Ok(Some(e)) if e.kind == pb::ChatEventKind::Heartbeat as i32 => continue,
            Ok(Some(e)) => return Ok(e),
            Ok(None) => return Err(tonic::Status::ok("stream ended")),
            Err(status) => return Err(status),
        }
    }
}

/// Events until (and with) the message whose text is `text`.
async fn until_text(s: &mut Streaming<pb::SubscribeResponse>, text: &str) -> Vec<pb::ChatEvent> {
    let mut out = Vec::new();
    loop {
        let e = next(s).await.unwrap();
        let done =
            e.message.as_ref().is_some_and(|m| m.text == text) && e.kind == pb::ChatEventKind::MessageCreated as i32;
        out.push(e);
        if done {
            return out;
        }
    }
}

fn kind(e: &pb::ChatEvent) -> pb::ChatEventKind {
    pb::ChatEventKind::try_from(e.kind).unwrap()
}

#[sqlx::test]
async fn messages_and_rooms_created_later_reach_the_subscriber(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let dm = group(&app, &a, &[&b]).await;
    let mut s = subscribe(&app.channel, &b, &[]).await.unwrap();

    let m = send(&app.channel, &a, &dm.id, "안녕").await;
    let e = next(&mut s).await.unwrap();
    assert_eq!(kind(&e), pb::ChatEventKind::MessageCreated);
    assert_eq!((e.room_id.as_str(), e.seq, e.actor_id.as_str()), (dm.id.as_str(), m.seq, a.id.as_str()));
    assert_eq!(e.message.as_ref().unwrap().text, "안녕");
    assert_eq!(e.message.as_ref().unwrap().id, m.id);

    // A group created after the stream opened: from its creation on.
    let g = group(&app, &c, &[&a, &b]).await;
    let _ = send(&app.channel, &c, &g.id, "first in the group").await;
    let got = until_text(&mut s, "first in the group").await;
    let got: Vec<(i64, pb::ChatEventKind)> =
        got.iter().filter(|e| e.room_id == g.id).map(|e| (e.seq, kind(e))).collect();
    use pb::ChatEventKind::*;
    assert_eq!(
        got,
        [(1, RoomCreated), (2, MemberJoined), (3, MemberJoined), (4, MemberJoined), (5, MessageCreated)],
        "every event of the new room in seq order"
    );

    // Edits, deletions, read marks and renames are events too.
    let m2 = send(&app.channel, &a, &dm.id, "oops").await;
    let mut chat = api(&app.channel);
    chat.edit_message(a.req(pb::EditMessageRequest { message_id: m2.id.clone(), text: "fixed".into() })).await.unwrap();
    chat.delete_message(a.req(pb::DeleteMessageRequest { message_id: m2.id.clone() })).await.unwrap();
    chat.mark_read(b.req(pb::MarkReadRequest { room_id: dm.id.clone(), seq: m2.seq })).await.unwrap();
    let kinds: Vec<pb::ChatEventKind> =
        [next(&mut s).await, next(&mut s).await, next(&mut s).await, next(&mut s).await]
            .iter()
            .map(|e| kind(e.as_ref().unwrap()))
            .collect();
    assert_eq!(kinds, [MessageCreated, MessageEdited, MessageDeleted, Read]);
    let metrics = app.metrics().await;
    for family in ["maru_chat_events_fanned_out_total", "maru_chat_delivery_seconds_count"] {
        assert!(metrics.lines().any(|l| l.starts_with(family) && !l.ends_with(" 0")), "{family} recorded");
    }
}

#[sqlx::test]
async fn a_resumed_stream_gets_the_missed_events_then_live_ones(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = group(&app, &a, &[&b]).await;
    let other = group(&app, &b, &[&app.user("carol").await]).await;
    let mut s = subscribe(&app.channel, &b, &[]).await.unwrap();
    let m1 = send(&app.channel, &a, &dm.id, "one").await;
    assert_eq!(next(&mut s).await.unwrap().seq, m1.seq);
    drop(s);

    let missed: Vec<i64> = [send(&app.channel, &a, &dm.id, "two").await, send(&app.channel, &a, &dm.id, "three").await]
        .iter()
        .map(|m| m.seq)
        .collect();
    let mut s = subscribe(&app.channel, &b, &[(&dm.id, m1.seq), (&other.id, 0)]).await.unwrap();
    // The other room from its start (seq 0), then the DM's missed messages, each once.
    let mut got: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for _ in 0..(other.last_seq as usize + missed.len()) {
        let e = next(&mut s).await.unwrap();
        got.entry(e.room_id.clone()).or_default().push(e.seq);
    }
    assert_eq!(got[&dm.id], missed);
    assert_eq!(got[&other.id], (1..=other.last_seq).collect::<Vec<_>>());
    let live = send(&app.channel, &a, &dm.id, "four").await;
    let e = next(&mut s).await.unwrap();
    assert_eq!((e.room_id.as_str(), e.seq), (dm.id.as_str(), live.seq), "then live, no duplicate");

    // A resume point past the room's last seq, a bad id, a duplicate: INVALID_ARGUMENT.
    let r = subscribe(&app.channel, &b, &[(&dm.id, live.seq + 1)]).await;
    let st = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&st), ["resume[0].last_seq"]);
    let r = subscribe(&app.channel, &b, &[("nope", 0), (&dm.id, 1), (&dm.id, 2)]).await;
    let st = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&st), ["resume[0].room_id", "resume[2].room_id"]);
}

#[sqlx::test]
async fn leaving_stops_a_room_at_once_and_a_removed_member_cannot_resume(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let g = group(&app, &a, &[&b, &c]).await;
    let dm = group(&app, &a, &[&b]).await;
    let mut s = subscribe(&app.channel, &b, &[]).await.unwrap();
    let m1 = send(&app.channel, &a, &g.id, "before").await;
    assert_eq!(next(&mut s).await.unwrap().seq, m1.seq);

    api(&app.channel)
        .remove_from_room(a.req(pb::RemoveFromRoomRequest { room_id: g.id.clone(), handle: b.handle.clone() }))
        .await
        .unwrap();
    let left = next(&mut s).await.unwrap();
    assert_eq!(
        (kind(&left), left.user_id.as_str(), left.room_id.as_str()),
        (pb::ChatEventKind::MemberLeft, b.id.as_str(), g.id.as_str())
    );
    send(&app.channel, &a, &g.id, "after").await;
    send(&app.channel, &c, &g.id, "after 2").await;
    send(&app.channel, &a, &dm.id, "sentinel").await;
    let got = until_text(&mut s, "sentinel").await;
    assert!(got.iter().all(|e| e.room_id != g.id), "nothing of the room after the member left: {got:?}");
    drop(s);

    // Resuming into it: skipped, nothing sent; the stream carries the caller's other rooms.
    let mut s = subscribe(&app.channel, &b, &[(&g.id, m1.seq), (&uuid::Uuid::now_v7().to_string(), 0)]).await.unwrap();
    send(&app.channel, &a, &g.id, "after 3").await;
    send(&app.channel, &a, &dm.id, "sentinel 2").await;
    let got = until_text(&mut s, "sentinel 2").await;
    assert!(got.iter().all(|e| e.room_id != g.id), "{got:?}");

    // Invited again: the room comes back from the caller's MEMBER_JOINED.
    api(&app.channel)
        .invite_to_room(a.req(pb::InviteToRoomRequest { room_id: g.id.clone(), handles: vec![b.handle.clone()] }))
        .await
        .unwrap();
    send(&app.channel, &a, &g.id, "welcome back").await;
    let got = until_text(&mut s, "welcome back").await;
    let kinds: Vec<pb::ChatEventKind> = got.iter().filter(|e| e.room_id == g.id).map(kind).collect();
    assert_eq!(kinds, [pb::ChatEventKind::MemberJoined, pb::ChatEventKind::MessageCreated]);
}

/// A subscriber as a real client: keeps the last seq per room and resumes when its stream ends
/// with a retryable status.
struct Client {
    user: TestUser,
    channel: Channel,
    last: HashMap<String, i64>,
    /// Messages by room, in the order received.
    messages: HashMap<String, Vec<(i64, String)>>,
}

impl Client {
    /// Reads until `want` messages per room arrived; asserts seq order and no duplicate.
    async fn collect(&mut self, mut s: Streaming<pb::SubscribeResponse>, want: &HashMap<String, usize>) {
        let done = |c: &Client| want.iter().all(|(r, n)| c.messages.get(r).map_or(0, Vec::len) >= *n);
        while !done(self) {
            match next(&mut s).await {
                Ok(e) => {
                    let last = self.last.entry(e.room_id.clone()).or_insert(0);
                    assert!(e.seq > *last, "{}: seq {} after {} in room {}", self.user.handle, e.seq, last, e.room_id);
                    *last = e.seq;
                    if kind(&e) == pb::ChatEventKind::MessageCreated {
                        self.messages.entry(e.room_id.clone()).or_default().push((e.seq, e.message.unwrap().id));
                    }
                }
                Err(st) if matches!(st.code(), Code::ResourceExhausted | Code::Unavailable) => {
                    let resume: Vec<(String, i64)> = self.last.iter().map(|(r, s)| (r.clone(), *s)).collect();
                    let resume: Vec<(&str, i64)> = resume.iter().map(|(r, s)| (r.as_str(), *s)).collect();
                    s = subscribe(&self.channel, &self.user, &resume).await.unwrap();
                }
                Err(st) => panic!("{}: stream ended: {st:?}", self.user.handle),
            }
        }
    }
}

#[sqlx::test]
async fn two_replicas_deliver_every_message_once_in_order_to_every_member(pool: PgPool) {
    let _reads = READS.read().await;
    let adjust = |s: &mut maru::config::Settings| s.chat.stream_buffer = 4096;
    let one = TestApp::spawn_with(pool.clone(), adjust).await;
    let prefix = one.redis_prefix.clone();
    let two = TestApp::spawn_with(pool, |s| {
        adjust(s);
        s.redis.key_prefix = prefix;
    })
    .await;
    let users = one.fast_users("member", 20).await;
    // Six overlapping rooms of 3 to 8 members; every user is in at least one.
    let layout: [&[usize]; 6] = [
        &[0, 1, 2],
        &[2, 3, 4, 5, 6],
        &[6, 7, 8, 9, 10, 11, 12, 13],
        &[13, 14, 15, 16],
        &[16, 17, 18, 19, 0],
        &[1, 5, 9, 13, 17],
    ];
    let mut rooms = Vec::new();
    for members in layout {
        let others: Vec<&TestUser> = members[1..].iter().map(|i| &users[*i]).collect();
        rooms.push((group(&one, &users[members[0]], &others).await.id, members.to_vec()));
    }
    let channels = [one.channel.clone(), two.channel.clone()];
    let mut streams = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let ch = channels[i % 2].clone();
        streams.push((
            Client { user: u.clone(), channel: ch.clone(), last: HashMap::new(), messages: HashMap::new() },
            subscribe(&ch, u, &[]).await.unwrap(),
        ));
    }

    // 1,000 messages from 20 concurrent senders, half through each replica.
    let mut senders = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mine: Vec<String> = rooms.iter().filter(|(_, m)| m.contains(&i)).map(|(r, _)| r.clone()).collect();
        let (u, ch) = (u.clone(), channels[(i + 1) % 2].clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for k in 0..50 {
                let room = &mine[k % mine.len()];
                sent.push((room.clone(), send(&ch, &u, room, &format!("{} #{k}", u.handle)).await.id));
            }
            sent
        }));
    }
    let mut sent: HashMap<String, HashSet<String>> = HashMap::new();
    for s in senders {
        for (room, id) in s.await.unwrap() {
            sent.entry(room).or_default().insert(id);
        }
    }
    assert_eq!(sent.values().map(HashSet::len).sum::<usize>(), 1000);

    let mut readers = Vec::new();
    for (i, (mut client, s)) in streams.into_iter().enumerate() {
        let want: HashMap<String, usize> =
            rooms.iter().filter(|(_, m)| m.contains(&i)).map(|(r, _)| (r.clone(), sent[r].len())).collect();
        readers.push(tokio::spawn(async move {
            client.collect(s, &want).await;
            (i, client)
        }));
    }
    for r in readers {
        let (i, client) = r.await.unwrap();
        let mine: HashSet<&String> = rooms.iter().filter(|(_, m)| m.contains(&i)).map(|(r, _)| r).collect();
        let got: HashSet<&String> = client.messages.keys().collect();
        assert_eq!(got, mine, "{}: messages of exactly its rooms", client.user.handle);
        for (room, msgs) in &client.messages {
            let ids: HashSet<String> = msgs.iter().map(|(_, id)| id.clone()).collect();
            assert_eq!(ids.len(), msgs.len(), "no duplicate");
            assert_eq!(&ids, &sent[room], "{}: every message of room {room}", client.user.handle);
        }
    }
}

#[sqlx::test]
async fn a_subscriber_that_never_reads_is_closed_and_delays_nobody(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn_with(pool, |s| s.chat.stream_buffer = 8).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let g = group(&app, &a, &[&b, &c]).await;
    // The slow client's connection takes 1 KiB before it stops reading.
    let slow_ch = Endpoint::from_shared(format!("http://{}", app.grpc_addr))
        .unwrap()
        .initial_stream_window_size(1024)
        .initial_connection_window_size(1024)
        .connect()
        .await
        .unwrap();
    let mut slow = subscribe(&slow_ch, &b, &[]).await.unwrap();
    let mut fast = subscribe(&app.channel, &c, &[]).await.unwrap();
    let text = "가".repeat(1000);
    let mut seqs = Vec::new();
    for _ in 0..100 {
        seqs.push(send(&app.channel, &a, &g.id, &text).await.seq);
        // The fast one keeps up as it goes.
        assert_eq!(next(&mut fast).await.unwrap().seq, *seqs.last().unwrap());
    }
    // Now the slow one reads: what was queued, then RESOURCE_EXHAUSTED.
    let mut got = 0;
    let st = loop {
        match next(&mut slow).await {
            Ok(_) => got += 1,
            Err(st) => break st,
        }
    };
    assert_eq!((st.code(), reason(&st).as_str()), (Code::ResourceExhausted, "CHAT_STREAM_TOO_SLOW"), "{st:?}");
    assert!(got < 100, "closed before the end ({got} events)");
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("maru_chat_slow_subscriber_closes_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // Handled when the stream ended, with its code.
    eventually_in_metrics(r#"grpc_server_handled_total{grpc_type="server_stream",grpc_service="maru.v1.ChatService",grpc_method="Subscribe",protocol="grpc",grpc_code="ResourceExhausted"}"#).await;
}

#[sqlx::test]
async fn open_streams_are_limited_per_user(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn_with(pool, |s| s.chat.max_streams_per_user = 2).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let one = subscribe(&app.channel, &a, &[]).await.unwrap();
    let _two = subscribe(&app.channel, &a, &[]).await.unwrap();
    let st = assert_err(subscribe(&app.channel, &a, &[]).await, Code::ResourceExhausted, "CHAT_STREAMS_LIMIT");
    assert!(st.get_details_retry_info().is_some(), "with RetryInfo");
    let _other = subscribe(&app.channel, &b, &[]).await.unwrap();
    // Closing one frees its slot (once the server saw the client go).
    drop(one);
    loop {
        match subscribe(&app.channel, &a, &[]).await {
            Ok(_) => break,
            Err(st) => assert_eq!(reason(&st), "CHAT_STREAMS_LIMIT"),
        }
        tokio::task::yield_now().await;
    }
    assert!(app.metrics().await.contains(r#"maru_chat_streams_refused_total{reason="user_limit"}"#));
}

#[sqlx::test]
async fn a_draining_replica_ends_its_streams_with_unavailable(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = group(&app, &a, &[&b]).await;
    let mut s = subscribe(&app.channel, &b, &[]).await.unwrap();
    let m = send(&app.channel, &a, &dm.id, "hi").await;
    assert_eq!(next(&mut s).await.unwrap().seq, m.seq);
    app.shutdown.shutdown();
    let st = next(&mut s).await.unwrap_err();
    assert_eq!((st.code(), reason(&st).as_str()), (Code::Unavailable, "SHUTTING_DOWN"), "{st:?}");
    // The server stops once its streams ended (no drain timeout).
    app.task.await.unwrap().unwrap();
}

/// Splits a gRPC-web body into message payloads and the trailer frame (if complete).
fn web_frames(body: &[u8]) -> (Vec<Vec<u8>>, Option<String>) {
    let (mut messages, mut trailers, mut rest) = (Vec::new(), None, body);
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        if rest.len() < 5 + len {
            break;
        }
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            trailers = Some(String::from_utf8_lossy(payload).into_owned());
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    (messages, trailers)
}

#[sqlx::test]
async fn subscribe_works_over_grpc_web(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = group(&app, &a, &[&b]).await;
    let http = reqwest::Client::builder().http1_only().build().unwrap();
    let req = pb::SubscribeRequest::default().encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(req.len() as u32).to_be_bytes());
    body.extend_from_slice(&req);
    let mut resp = http
        .post(format!("http://{}/maru.v1.ChatService/Subscribe", app.grpc_addr))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", format!("Bearer {}", b.token))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let m = send(&app.channel, &a, &dm.id, "over the web").await;
    // Read until an event frame arrives.
    let mut buf = Vec::new();
    let event = loop {
        let chunk = tokio::time::timeout(HANG, resp.chunk()).await.unwrap().unwrap().expect("more body");
        buf.extend_from_slice(&chunk);
        let (messages, _) = web_frames(&buf);
        if let Some(e) = messages
            .iter()
            .map(|p| pb::SubscribeResponse::decode(p.as_slice()).unwrap().event.unwrap())
            .find(|e| e.kind == pb::ChatEventKind::MessageCreated as i32)
        {
            break e;
        }
    };
    assert_eq!((event.room_id.as_str(), event.seq), (dm.id.as_str(), m.seq));
    assert_eq!(event.message.unwrap().text, "over the web");
    // The replica drains: the stream ends with a trailer frame carrying UNAVAILABLE.
    app.shutdown.shutdown();
    while let Some(chunk) = tokio::time::timeout(HANG, resp.chunk()).await.unwrap().unwrap() {
        buf.extend_from_slice(&chunk);
    }
    let (_, trailers) = web_frames(&buf);
    let trailers = trailers.expect("a trailer frame");
    assert!(trailers.contains("grpc-status:14"), "{trailers}");
    assert!(trailers.contains("grpc-status-details-bin"), "{trailers}");
    // Every event is a message sent; the stream is handled once, when it ended.
    // Every event is a message sent; the stream is handled once, when it ended (the admin port
    // is down with the server: the process-wide recorder is read directly).
    let labels =
        r#"grpc_type="server_stream",grpc_service="maru.v1.ChatService",grpc_method="Subscribe",protocol="grpc_web""#;
    eventually_in_metrics(&format!("grpc_server_msg_sent_total{{{labels}}}")).await;
    eventually_in_metrics(&format!("grpc_server_handled_total{{{labels},grpc_code=\"Unavailable\"}}")).await;
}

/// Waits until the process's metrics contain `text` (recorded when the server drops the
/// finished response, just after the client saw its end).
async fn eventually_in_metrics(text: &str) {
    let deadline = std::time::Instant::now() + HANG;
    while !maru::telemetry::metrics_handle().render().contains(text) {
        assert!(std::time::Instant::now() < deadline, "never in the metrics: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test]
async fn no_server_deadline_applies_to_a_stream(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn(pool.clone()).await;
    let prefix = app.redis_prefix.clone();
    // A replica whose unary calls get 1 ms: its streams are not cut by it.
    let strict = TestApp::spawn_with(pool, |s| {
        s.grpc.request_timeout_ms = 1;
        s.redis.key_prefix = prefix;
    })
    .await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = group(&app, &a, &[&b]).await;
    let mut s = subscribe(&strict.channel, &b, &[]).await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..5 {
        let m = send(&app.channel, &a, &dm.id, &format!("{i}")).await;
        assert_eq!(next(&mut s).await.unwrap().seq, m.seq);
        seqs.push(m.seq);
    }
    assert_eq!(seqs.len(), 5);
}

/// The value of an unlabelled counter in a `/metrics` text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} in the metrics")) as u64
}

#[sqlx::test]
async fn the_streams_of_a_room_on_one_replica_share_one_read_per_notice(pool: PgPool) {
    let _only = READS.write().await;
    let app = TestApp::spawn(pool).await;
    let users = app.fast_users("reader", 8).await;
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let g = group(&app, &users[0], &others).await;
    let mut streams = Vec::new();
    for u in &users {
        streams.push(subscribe(&app.channel, u, &[]).await.unwrap());
    }
    // Every stream is live once a first message reached it.
    send(&app.channel, &users[0], &g.id, "warm up").await;
    for s in &mut streams {
        until_text(s, "warm up").await;
    }
    let metrics = app.metrics().await;
    let (reads, fanned) =
        (counter(&metrics, "maru_chat_fanout_reads_total"), counter(&metrics, "maru_chat_events_fanned_out_total"));
    const MESSAGES: u64 = 10;
    for i in 0..MESSAGES {
        let m = send(&app.channel, &users[(i as usize) % users.len()], &g.id, &format!("message {i}")).await;
        for s in &mut streams {
            let e = next(s).await.unwrap();
            assert_eq!((e.seq, e.message.unwrap().text), (m.seq, format!("message {i}")), "in order, each once");
        }
    }
    let metrics = app.metrics().await;
    let n = streams.len() as u64;
    assert_eq!(
        counter(&metrics, "maru_chat_events_fanned_out_total") - fanned,
        MESSAGES * n,
        "every stream got every message"
    );
    assert_eq!(
        counter(&metrics, "maru_chat_fanout_reads_total") - reads,
        MESSAGES,
        "one read of PostgreSQL per notice for the {n} streams of the replica"
    );
}

#[sqlx::test]
async fn the_per_user_limit_counts_the_streams_of_every_replica(pool: PgPool) {
    let _reads = READS.read().await;
    let one = TestApp::spawn_with(pool.clone(), |s| s.chat.max_streams_per_user = 2).await;
    let prefix = one.redis_prefix.clone();
    let two = TestApp::spawn_with(pool, |s| {
        s.chat.max_streams_per_user = 2;
        s.redis.key_prefix = prefix;
    })
    .await;
    let [a, b] = [one.user("alice").await, one.user("bobby").await];
    let first = subscribe(&one.channel, &a, &[]).await.unwrap();
    let _second = subscribe(&two.channel, &a, &[]).await.unwrap();
    for app in [&one, &two] {
        let st = assert_err(subscribe(&app.channel, &a, &[]).await, Code::ResourceExhausted, "CHAT_STREAMS_LIMIT");
        assert!(st.get_details_retry_info().is_some(), "with RetryInfo");
        let info = st.get_details_error_info().unwrap();
        assert_eq!(info.metadata.get("limit").map(String::as_str), Some("user"));
    }
    let _other = subscribe(&two.channel, &b, &[]).await.unwrap();
    // Closing the stream on one replica frees its place on the other.
    drop(first);
    loop {
        match subscribe(&two.channel, &a, &[]).await {
            Ok(_) => break,
            Err(st) => assert_eq!(reason(&st), "CHAT_STREAMS_LIMIT"),
        }
        tokio::task::yield_now().await;
    }
}

#[sqlx::test]
async fn streams_of_a_replica_that_died_drop_out_of_the_count_when_their_lease_expires(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn_with(pool, |s| s.chat.max_streams_per_user = 2).await;
    let a = app.user("alice").await;
    let key = app.state.cache.key(&format!("chat:streams:{}", a.id));
    let mut redis = app.state.cache.conn().await.expect("redis");
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Two streams of a replica that died a minute ago: their leases ran out.
    let _: i64 = deadpool_redis::redis::cmd("ZADD")
        .arg(&key)
        .arg(now_ms - 60_000)
        .arg("dead-1")
        .arg(now_ms - 60_000)
        .arg("dead-2")
        .query_async(&mut redis)
        .await
        .unwrap();
    let _one = subscribe(&app.channel, &a, &[]).await.unwrap();
    let members: Vec<String> =
        deadpool_redis::redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut redis).await.unwrap();
    assert_eq!(members.len(), 1, "the expired ones dropped, the new one counted: {members:?}");
    // One live stream elsewhere (its lease runs): the user is at the limit on this replica too.
    let _: i64 = deadpool_redis::redis::cmd("ZADD")
        .arg(&key)
        .arg(now_ms + 600_000)
        .arg("elsewhere")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_err(subscribe(&app.channel, &a, &[]).await, Code::ResourceExhausted, "CHAT_STREAMS_LIMIT");
}

#[sqlx::test]
async fn without_redis_the_per_user_limit_is_counted_per_replica(pool: PgPool) {
    let _reads = READS.read().await;
    let app = TestApp::spawn_with(pool, |s| {
        s.chat.max_streams_per_user = 2;
        s.redis.url = "redis://127.0.0.1:1".to_owned().into();
    })
    .await;
    let a = app.user("alice").await;
    let _one = subscribe(&app.channel, &a, &[]).await.unwrap();
    let _two = subscribe(&app.channel, &a, &[]).await.unwrap();
    let st = assert_err(subscribe(&app.channel, &a, &[]).await, Code::ResourceExhausted, "CHAT_STREAMS_LIMIT");
    assert!(st.get_details_retry_info().is_some(), "with RetryInfo");
}
