//! ChatService (DOMAIN §3 chat, issue 17): DMs (one per pair, also under 50 concurrent
//! creates) and groups, membership, blocks, messages with per-room seqs (no gaps or duplicates
//! under concurrent senders), request_id replays, history, read marks, the room event log and
//! the authorization matrix of every RPC.

use std::collections::{BTreeSet, HashSet};

use maru::grpc::pb;
use maru::grpc::pb::chat_service_client::ChatServiceClient;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::*;

fn api(app: &TestApp) -> ChatServiceClient<Channel> {
    ChatServiceClient::new(app.channel.clone())
}

fn handles(hs: &[&TestUser]) -> Vec<String> {
    hs.iter().map(|u| u.handle.clone()).collect()
}

async fn create(
    app: &TestApp,
    who: &TestUser,
    others: &[&TestUser],
    title: &str,
) -> Result<(pb::ChatRoom, bool), Status> {
    let r = api(app)
        .create_room(who.req(pb::CreateRoomRequest {
            member_handles: handles(others),
            title: title.into(),
            request_id: String::new(),
        }))
        .await?
        .into_inner();
    Ok((r.room.unwrap(), r.created))
}

async fn room(app: &TestApp, who: &TestUser, others: &[&TestUser]) -> pb::ChatRoom {
    create(app, who, others, if others.len() > 1 { "모임" } else { "" }).await.unwrap().0
}

async fn send(app: &TestApp, who: &TestUser, room: &str, text: &str) -> Result<pb::ChatMessage, Status> {
    send_rid(app, who, room, text, "").await
}

async fn send_rid(app: &TestApp, who: &TestUser, room: &str, text: &str, rid: &str) -> Result<pb::ChatMessage, Status> {
    Ok(api(app)
        .send_message(who.req(pb::SendMessageRequest {
            room_id: room.into(),
            text: text.into(),
            request_id: rid.into(),
        }))
        .await?
        .into_inner()
        .message
        .unwrap())
}

async fn get(app: &TestApp, who: &TestUser, room: &str) -> Result<pb::ChatRoom, Status> {
    Ok(api(app).get_room(who.req(pb::GetRoomRequest { room_id: room.into() })).await?.into_inner().room.unwrap())
}

async fn history(
    app: &TestApp,
    who: &TestUser,
    room: &str,
    before: i64,
    after: i64,
    size: i32,
) -> Result<(Vec<i64>, bool), Status> {
    let r = api(app)
        .list_messages(who.req(pb::ListMessagesRequest {
            room_id: room.into(),
            before_seq: before,
            after_seq: after,
            page_size: size,
        }))
        .await?
        .into_inner();
    Ok((r.messages.iter().map(|m| m.seq).collect(), r.has_more))
}

fn member_handles(r: &pb::ChatRoom) -> Vec<String> {
    r.members.iter().map(|m| m.user.as_ref().unwrap().handle.clone()).collect()
}

/// The room's event log as (seq, kind), in seq order.
async fn events(app: &TestApp, room: &str) -> Vec<(i64, String)> {
    sqlx::query_as("select seq, kind from chat_events where room_id = $1::uuid order by seq")
        .bind(room)
        .fetch_all(&app.state.db)
        .await
        .unwrap()
}

/// The log of a room is 1..=last_seq without a gap.
async fn assert_log_contiguous(app: &TestApp, room: &str) -> Vec<(i64, String)> {
    let log = events(app, room).await;
    let seqs: Vec<i64> = log.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=log.len() as i64).collect::<Vec<_>>());
    let last: i64 = sqlx::query_scalar("select last_seq from chat_rooms where id = $1::uuid")
        .bind(room)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(last, log.len() as i64);
    log
}

#[sqlx::test]
async fn dms_are_one_per_pair_and_groups_have_an_owner(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];

    let (dm, created) = create(&app, &a, &[&b], "").await.unwrap();
    assert!(created);
    assert_eq!(dm.kind, pb::ChatRoomKind::Direct as i32);
    assert_eq!(dm.owner_id, "");
    assert_eq!(member_handles(&dm), ["alice", "bobby"]);
    assert_eq!(dm.last_seq, 3, "created, two joined");
    // The same pair, either way round, in any case of handle, with the caller named too.
    let (again, created) = create(&app, &b, &[&a], "").await.unwrap();
    assert_eq!((again.id.as_str(), created), (dm.id.as_str(), false));
    let r = api(&app)
        .create_room(a.req(pb::CreateRoomRequest {
            member_handles: vec!["BOBBY".into(), "alice".into(), "bobby".into()],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.room.unwrap().id, r.created), (dm.id.clone(), false));

    let (group, created) = create(&app, &a, &[&b, &c], "  우리 모임 ").await.unwrap();
    assert!(created);
    assert_eq!(group.kind, pb::ChatRoomKind::Group as i32);
    assert_eq!(group.title, "우리 모임");
    assert_eq!(group.owner_id, a.id);
    assert_eq!(member_handles(&group), ["alice", "bobby", "carol"]);
    assert!(group.members[0].owner && !group.members[1].owner);
    // A second group with the same people is another room.
    let (group2, _) = create(&app, &a, &[&b, &c], "").await.unwrap();
    assert_ne!(group2.id, group.id);

    // Refusals.
    let s = assert_err(create(&app, &a, &[&a], "").await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["member_handles"]);
    let s = assert_err(create(&app, &a, &[&c], "제목").await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["title"]);
    let r = api(&app)
        .create_room(a.req(pb::CreateRoomRequest { member_handles: vec!["nobody_here".into()], ..Default::default() }))
        .await;
    let s = assert_err(r, Code::NotFound, "USER_NOT_FOUND");
    assert_eq!(s.get_details_error_info_meta("handle"), Some("nobody_here".into()));
    let count: i64 = sqlx::query_scalar("select count(*) from chat_rooms").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(count, 3, "refused creates left nothing behind");

    for r in [&dm, &group] {
        assert_log_contiguous(&app, &r.id).await;
    }
    let log: Vec<String> = events(&app, &group.id).await.into_iter().map(|(_, k)| k).collect();
    assert_eq!(log, ["ROOM_CREATED", "MEMBER_JOINED", "MEMBER_JOINED", "MEMBER_JOINED"]);
}

trait MetaExt {
    fn get_details_error_info_meta(&self, key: &str) -> Option<String>;
}

impl MetaExt for Status {
    fn get_details_error_info_meta(&self, key: &str) -> Option<String> {
        use tonic_types::StatusExt;
        self.get_details_error_info().and_then(|i| i.metadata.get(key).cloned())
    }
}

#[sqlx::test]
async fn fifty_concurrent_creates_of_one_dm_make_exactly_one_room(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let users = app.fast_users("pair", 2).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let app_channel = app.channel.clone();
            let (me, other) =
                if i % 2 == 0 { (users[0].clone(), users[1].clone()) } else { (users[1].clone(), users[0].clone()) };
            tokio::spawn(async move {
                let r = ChatServiceClient::new(app_channel)
                    .create_room(
                        me.req(pb::CreateRoomRequest { member_handles: vec![other.handle], ..Default::default() }),
                    )
                    .await
                    .unwrap()
                    .into_inner();
                (r.room.unwrap().id, r.created)
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let (id, c) = t.await.unwrap();
        ids.insert(id);
        created += usize::from(c);
    }
    assert_eq!(ids.len(), 1, "every call got the same room");
    assert_eq!(created, 1, "exactly one call created it");
    let rooms: i64 = sqlx::query_scalar("select count(*) from chat_rooms").fetch_one(&app.state.db).await.unwrap();
    let members: i64 = sqlx::query_scalar("select count(*) from chat_members").fetch_one(&app.state.db).await.unwrap();
    assert_eq!((rooms, members), (1, 2));
    let id = ids.into_iter().next().unwrap();
    assert_eq!(assert_log_contiguous(&app, &id).await.len(), 3);
}

#[sqlx::test]
async fn concurrent_senders_get_every_seq_once_without_gaps(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let users = app.fast_users("sender", 10).await;
    let others: Vec<&TestUser> = users[1..].iter().collect();
    let group = room(&app, &users[0], &others).await;
    let before = group.last_seq;
    assert_eq!(before, 11, "created and ten joined");
    let per_sender = 20;
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|u| {
            let channel = app.channel.clone();
            let room = group.id.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..per_sender {
                    let m = ChatServiceClient::new(channel.clone())
                        .send_message(u.req(pb::SendMessageRequest {
                            room_id: room.clone(),
                            text: format!("{} #{i}", u.handle),
                            request_id: String::new(),
                        }))
                        .await
                        .unwrap()
                        .into_inner()
                        .message
                        .unwrap();
                    seqs.push(m.seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one sender's messages in order: {seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    let n = (users.len() * per_sender) as i64;
    assert_eq!(all, ((before + 1)..=(before + n)).collect::<Vec<_>>(), "seqs are exactly the next {n}, once each");
    assert_log_contiguous(&app, &group.id).await;
    // History agrees: the latest page is the last 100 seqs, in order.
    let (page, more) = history(&app, &users[3], &group.id, 0, 0, 100).await.unwrap();
    assert_eq!(page, ((before + n - 99)..=(before + n)).collect::<Vec<_>>());
    assert!(more);
    let metrics = app.metrics().await;
    // The recorder is shared by the tests of this binary: at least these were counted.
    let sent = metrics.lines().find_map(|l| l.strip_prefix("maru_chat_messages_sent_total ")).unwrap();
    assert!(sent.parse::<f64>().unwrap() >= n as f64, "{sent}");
}

#[sqlx::test]
async fn a_request_id_replay_returns_the_first_message(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = room(&app, &a, &[&b]).await;
    let first = send_rid(&app, &a, &dm.id, "안녕", "msg-1").await.unwrap();
    let again = send_rid(&app, &a, &dm.id, "안녕", "msg-1").await.unwrap();
    assert_eq!((again.id.as_str(), again.seq), (first.id.as_str(), first.seq));
    assert_err(send_rid(&app, &a, &dm.id, "다른 말", "msg-1").await, Code::InvalidArgument, "REQUEST_ID_REUSED");
    // Another caller's keys are their own.
    let bs = send_rid(&app, &b, &dm.id, "안녕", "msg-1").await.unwrap();
    assert_ne!(bs.id, first.id);
    // Concurrent duplicates: one message.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let channel = app.channel.clone();
            let (a, room) = (a.clone(), dm.id.clone());
            tokio::spawn(async move {
                ChatServiceClient::new(channel)
                    .send_message(a.req(pb::SendMessageRequest {
                        room_id: room,
                        text: "once".into(),
                        request_id: "msg-2".into(),
                    }))
                    .await
                    .map(|r| r.into_inner().message.unwrap().id)
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(id) => {
                ids.insert(id);
            }
            Err(s) => assert_eq!((s.code(), reason(&s).as_str()), (Code::FailedPrecondition, "REQUEST_IN_PROGRESS")),
        }
    }
    assert_eq!(ids.len(), 1);
    let texts: i64 = sqlx::query_scalar("select count(*) from chat_messages where text = 'once'")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(texts, 1);
    assert_log_contiguous(&app, &dm.id).await;
}

#[sqlx::test]
async fn requests_are_validated_field_by_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b] = [app.user("alice").await, app.user("bobby").await];
    let dm = room(&app, &a, &[&b]).await;
    let bad_text = |text: String| pb::SendMessageRequest { room_id: dm.id.clone(), text, request_id: String::new() };
    for text in ["a\0b".to_owned(), "x".repeat(1 << 20), "가".repeat(4_001), "   ".to_owned(), "\u{7}".to_owned()] {
        let s =
            assert_err(api(&app).send_message(a.req(bad_text(text))).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), ["text"]);
    }
    // 4,000 characters with line breaks are fine.
    let long = format!("{}\n{}", "가".repeat(2_000), "나".repeat(1_999));
    assert_eq!(send(&app, &a, &dm.id, &long).await.unwrap().text, long);
    let r = api(&app)
        .send_message(a.req(pb::SendMessageRequest {
            room_id: "nope".into(),
            text: String::new(),
            request_id: "bad id!".into(),
        }))
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["room_id", "text", "request_id"]);
    let r = api(&app)
        .create_room(a.req(pb::CreateRoomRequest {
            member_handles: vec!["ok_handle".into(), "no spaces\0".into(), "x".into()],
            title: "t\0".into(),
            request_id: String::new(),
        }))
        .await;
    let s = assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["member_handles[1]", "member_handles[2]", "title"]);
    let s = assert_err(
        api(&app).create_room(a.req(pb::CreateRoomRequest::default())).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["member_handles"]);
    let s = assert_err(
        api(&app)
            .create_room(a.req(pb::CreateRoomRequest {
                member_handles: (0..100).map(|i| format!("user{i}")).collect(),
                ..Default::default()
            }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["member_handles"]);
    let r = history(&app, &a, &dm.id, 5, 3, 0).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["after_seq"]);
    let r = history(&app, &a, &dm.id, -1, 0, -2).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["before_seq"]);
    let r = api(&app).mark_read(a.req(pb::MarkReadRequest { room_id: dm.id.clone(), seq: -1 })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["seq"]);
    let r = api(&app).mark_read(a.req(pb::MarkReadRequest { room_id: dm.id.clone(), seq: 1_000 })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["seq"]);
    let r = api(&app).rename_room(a.req(pb::RenameRoomRequest { room_id: dm.id.clone(), title: " ".into() })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["title"]);
    let r = api(&app).block_user(a.req(pb::BlockUserRequest { handle: "ALICE".into() })).await;
    assert_eq!(violations(&assert_err(r, Code::InvalidArgument, "INVALID_ARGUMENT")), ["handle"]);
    let r = api(&app).block_user(a.req(pb::BlockUserRequest { handle: "ghost_user".into() })).await;
    assert_err(r, Code::NotFound, "USER_NOT_FOUND");
    let r = api(&app)
        .invite_to_room(a.req(pb::InviteToRoomRequest { room_id: dm.id.clone(), handles: vec!["ghost_user".into()] }))
        .await;
    assert_err(r, Code::NotFound, "USER_NOT_FOUND");
}

#[sqlx::test]
async fn members_join_leave_and_are_removed_and_the_owner_renames(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b, c, d] =
        [app.user("alice").await, app.user("bobby").await, app.user("carol").await, app.user("david").await];
    let group = room(&app, &a, &[&b, &c]).await;
    // Any member invites; members already in stay as they are.
    let r = api(&app)
        .invite_to_room(b.req(pb::InviteToRoomRequest { room_id: group.id.clone(), handles: handles(&[&d, &c, &d]) }))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    assert_eq!(member_handles(&r), ["alice", "bobby", "carol", "david"]);
    // Only the owner renames and removes.
    let rename = |who: &TestUser, title: &str| {
        let req = who.req(pb::RenameRoomRequest { room_id: group.id.clone(), title: title.into() });
        let mut api = api(&app);
        async move { api.rename_room(req).await }
    };
    assert_err(rename(&b, "새 이름").await, Code::PermissionDenied, "CHAT_OWNER_REQUIRED");
    assert_eq!(rename(&a, "새 이름").await.unwrap().into_inner().room.unwrap().title, "새 이름");
    let remove = |who: &TestUser, whom: &TestUser| {
        let req = who.req(pb::RemoveFromRoomRequest { room_id: group.id.clone(), handle: whom.handle.clone() });
        let mut api = api(&app);
        async move { api.remove_from_room(req).await }
    };
    assert_err(remove(&b, &c).await, Code::PermissionDenied, "CHAT_OWNER_REQUIRED");
    assert_err(remove(&a, &a).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    remove(&a, &c).await.unwrap();
    assert_err(remove(&a, &c).await, Code::NotFound, "CHAT_MEMBER_NOT_FOUND");
    // A removed member sees nothing of the room any more.
    assert_err(get(&app, &c, &group.id).await, Code::NotFound, "CHAT_ROOM_NOT_FOUND");
    assert_err(send(&app, &c, &group.id, "hi").await, Code::NotFound, "CHAT_ROOM_NOT_FOUND");
    // The owner leaves: ownership passes to the longest-standing member.
    api(&app).leave_room(a.req(pb::LeaveRoomRequest { room_id: group.id.clone() })).await.unwrap();
    let r = get(&app, &b, &group.id).await.unwrap();
    assert_eq!(r.owner_id, b.id);
    assert_eq!(member_handles(&r), ["bobby", "david"]);
    let log: Vec<String> = assert_log_contiguous(&app, &group.id).await.into_iter().map(|(_, k)| k).skip(4).collect();
    assert_eq!(log, ["MEMBER_JOINED", "ROOM_RENAMED", "MEMBER_LEFT", "MEMBER_LEFT"]);

    // A DM keeps its two members and has no title.
    let dm = room(&app, &a, &[&b]).await;
    let r = api(&app)
        .invite_to_room(a.req(pb::InviteToRoomRequest { room_id: dm.id.clone(), handles: handles(&[&c]) }))
        .await;
    assert_err(r, Code::FailedPrecondition, "CHAT_ROOM_IS_DIRECT");
    let r = api(&app).leave_room(a.req(pb::LeaveRoomRequest { room_id: dm.id.clone() })).await;
    assert_err(r, Code::FailedPrecondition, "CHAT_ROOM_IS_DIRECT");
    let r = api(&app).rename_room(a.req(pb::RenameRoomRequest { room_id: dm.id.clone(), title: "x".into() })).await;
    assert_err(r, Code::FailedPrecondition, "CHAT_ROOM_IS_DIRECT");
    let r = api(&app)
        .remove_from_room(a.req(pb::RemoveFromRoomRequest { room_id: dm.id.clone(), handle: b.handle.clone() }))
        .await;
    assert_err(r, Code::FailedPrecondition, "CHAT_ROOM_IS_DIRECT");
    assert_eq!(assert_log_contiguous(&app, &dm.id).await.len(), 3, "refusals wrote no event");
}

#[sqlx::test]
async fn a_room_holds_at_most_one_hundred_members(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let users = app.fast_users("crowd", 101).await;
    let group = room(&app, &users[0], &users[1..99].iter().collect::<Vec<_>>()).await;
    assert_eq!(group.members.len(), 99);
    let invite = |hs: Vec<String>| {
        let req = users[0].req(pb::InviteToRoomRequest { room_id: group.id.clone(), handles: hs });
        let mut api = api(&app);
        async move { api.invite_to_room(req).await }
    };
    let s = assert_err(invite(handles(&[&users[99], &users[100]])).await, Code::FailedPrecondition, "CHAT_ROOM_FULL");
    assert_eq!(s.get_details_error_info_meta("max_members"), Some("100".into()));
    assert_eq!(invite(handles(&[&users[99]])).await.unwrap().into_inner().room.unwrap().members.len(), 100);
}

#[sqlx::test]
async fn history_edits_tombstones_read_marks_and_room_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let dm = room(&app, &a, &[&b]).await;
    let group = room(&app, &a, &[&b, &c]).await;
    let mut seqs = Vec::new();
    for i in 0..7 {
        seqs.push(send(&app, if i % 2 == 0 { &a } else { &b }, &dm.id, &format!("m{i}")).await.unwrap().seq);
    }
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());
    // Pages: latest, before, after.
    assert_eq!(history(&app, &b, &dm.id, 0, 0, 3).await.unwrap(), (vec![8, 9, 10], true));
    assert_eq!(history(&app, &b, &dm.id, 8, 0, 3).await.unwrap(), (vec![5, 6, 7], true));
    assert_eq!(history(&app, &b, &dm.id, 5, 0, 3).await.unwrap(), (vec![4], false));
    assert_eq!(history(&app, &b, &dm.id, 0, 4, 4).await.unwrap(), (vec![5, 6, 7, 8], true));
    assert_eq!(history(&app, &b, &dm.id, 0, 8, 4).await.unwrap(), (vec![9, 10], false));

    // Edit and delete: the author only; a tombstone keeps its seq.
    let m = send(&app, &a, &dm.id, "오타").await.unwrap();
    let edit = |who: &TestUser, id: &str, text: &str| {
        let req = who.req(pb::EditMessageRequest { message_id: id.into(), text: text.into() });
        let mut api = api(&app);
        async move { api.edit_message(req).await }
    };
    assert_err(edit(&b, &m.id, "x").await, Code::PermissionDenied, "CHAT_AUTHOR_REQUIRED");
    let edited = edit(&a, &m.id, "고침").await.unwrap().into_inner().message.unwrap();
    assert_eq!((edited.text.as_str(), edited.seq, edited.edited_at.is_some()), ("고침", m.seq, true));
    let del = |who: &TestUser, id: &str| {
        let req = who.req(pb::DeleteMessageRequest { message_id: id.into() });
        let mut api = api(&app);
        async move { api.delete_message(req).await }
    };
    assert_err(del(&b, &m.id).await, Code::PermissionDenied, "CHAT_AUTHOR_REQUIRED");
    del(&a, &m.id).await.unwrap();
    del(&a, &m.id).await.unwrap();
    assert_err(edit(&a, &m.id, "다시").await, Code::FailedPrecondition, "CHAT_MESSAGE_DELETED");
    let r = api(&app)
        .list_messages(b.req(pb::ListMessagesRequest {
            room_id: dm.id.clone(),
            after_seq: m.seq - 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let tomb = &r.messages[0];
    assert_eq!((tomb.seq, tomb.deleted, tomb.text.as_str()), (m.seq, true, ""));
    let log: Vec<String> = assert_log_contiguous(&app, &dm.id).await.into_iter().map(|(_, k)| k).skip(11).collect();
    assert_eq!(log, ["MESSAGE_EDITED", "MESSAGE_DELETED"], "the second delete changed nothing");
    assert_err(edit(&c, &m.id, "x").await, Code::NotFound, "CHAT_MESSAGE_NOT_FOUND");

    // Unread counts: others' messages after the read mark, tombstones not counted.
    let dm_b = get(&app, &b, &dm.id).await.unwrap();
    assert_eq!(dm_b.unread_count, 4, "a sent m0, m2, m4, m6 (the fifth was deleted)");
    assert_eq!(dm_b.last_message.as_ref().unwrap().seq, m.seq);
    let mark = |who: &TestUser, seq: i64| {
        let req = who.req(pb::MarkReadRequest { room_id: dm.id.clone(), seq });
        let mut api = api(&app);
        async move { api.mark_read(req).await.map(|r| r.into_inner().read_seq) }
    };
    assert_eq!(mark(&b, 6).await.unwrap(), 6);
    assert_eq!(get(&app, &b, &dm.id).await.unwrap().unread_count, 2, "seqs 8 and 10");
    assert_eq!(mark(&b, 5).await.unwrap(), 6, "a read mark never moves back");
    // Up to the latest event: held at the last message, so the READ event is not chased.
    let last = get(&app, &b, &dm.id).await.unwrap().last_seq;
    assert_eq!(mark(&b, last).await.unwrap(), m.seq);
    assert_eq!(mark(&b, last + 1).await.unwrap(), m.seq, "the READ event's seq changes nothing");
    assert_eq!(get(&app, &b, &dm.id).await.unwrap().unread_count, 0);
    let reads: i64 = sqlx::query_scalar("select count(*) from chat_events where room_id = $1::uuid and kind = 'READ'")
        .bind(&dm.id)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(reads, 2);

    // ListMyRooms: the most recently active first, in pages.
    send(&app, &c, &group.id, "newest").await.unwrap();
    let extra = room(&app, &b, &[&c]).await;
    let list = |token: String| {
        let req = b.req(pb::ListMyRoomsRequest { page_size: 2, page_token: token });
        let mut api = api(&app);
        async move { api.list_my_rooms(req).await.unwrap().into_inner() }
    };
    let p1 = list(String::new()).await;
    let ids: Vec<&str> = p1.rooms.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [extra.id.as_str(), group.id.as_str()]);
    assert_eq!(p1.rooms[1].unread_count, 1);
    assert_eq!(p1.rooms[1].last_message.as_ref().unwrap().text, "newest");
    let p2 = list(p1.next_page_token).await;
    assert_eq!(p2.rooms.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [dm.id.as_str()]);
    assert!(p2.next_page_token.is_empty());
    let r = api(&app)
        .list_my_rooms(c.req(pb::ListMyRoomsRequest { page_size: 2, page_token: "forged.token".into() }))
        .await;
    assert_err(r, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
}

#[sqlx::test]
async fn a_block_stops_direct_messages_from_that_user(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let dm = room(&app, &a, &[&b]).await;
    let group = room(&app, &a, &[&b, &c]).await;
    let block = |who: &TestUser, whom: &TestUser| {
        let req = who.req(pb::BlockUserRequest { handle: whom.handle.clone() });
        let mut api = api(&app);
        async move { api.block_user(req).await }
    };
    block(&a, &b).await.unwrap();
    block(&a, &b).await.unwrap();
    assert_err(send(&app, &b, &dm.id, "hi").await, Code::PermissionDenied, "CHAT_BLOCKED");
    assert_err(create(&app, &b, &[&a], "").await, Code::PermissionDenied, "CHAT_BLOCKED");
    // The blocker still writes; groups are not DMs.
    send(&app, &a, &dm.id, "bye").await.unwrap();
    send(&app, &b, &group.id, "in the group").await.unwrap();
    // A new DM with a blocker is refused before anything is written.
    block(&c, &b).await.unwrap();
    assert_err(create(&app, &b, &[&c], "").await, Code::PermissionDenied, "CHAT_BLOCKED");
    let dms: i64 = sqlx::query_scalar("select count(*) from chat_rooms where kind = 'DIRECT'")
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(dms, 1);
    api(&app).unblock_user(a.req(pb::UnblockUserRequest { handle: b.handle.clone() })).await.unwrap();
    send(&app, &b, &dm.id, "again").await.unwrap();
    assert_eq!(create(&app, &b, &[&a], "").await.unwrap().0.id, dm.id);
}

/// Who may call each RPC: anonymous callers are UNAUTHENTICATED, non-members see no room,
/// owner-only and author-only RPCs refuse the others.
#[sqlx::test]
async fn authorization_matrix_of_every_rpc(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let [owner, member, outsider, extra] =
        [app.user("owner").await, app.user("member").await, app.user("outsider").await, app.user("extra").await];
    let group = room(&app, &owner, &[&member, &extra]).await;
    let msg = send(&app, &owner, &group.id, "hello").await.unwrap();
    let room_id = group.id.clone();
    let theirs = api(&app).list_my_rooms(extra.req(pb::ListMyRoomsRequest::default())).await.unwrap().into_inner();
    assert_eq!(theirs.rooms.iter().map(|r| r.id.clone()).collect::<BTreeSet<_>>(), BTreeSet::from([room_id.clone()]));

    // (rpc, anonymous, outsider, member, owner): the expected reason, "" = OK.
    type Call = Box<dyn Fn(Option<&TestUser>) -> futures::future::BoxFuture<'static, Result<(), Status>>>;
    let c = app.channel.clone();
    macro_rules! call {
        ($method:ident, $req:expr) => {{
            let c = c.clone();
            let room_id = room_id.clone();
            let msg_id = msg.id.clone();
            let extra_handle = extra.handle.clone();
            let _ = (&room_id, &msg_id, &extra_handle);
            Box::new(move |who: Option<&TestUser>| {
                #[allow(clippy::redundant_clone)]
                let req = as_who(who, $req(room_id.clone(), msg_id.clone(), extra_handle.clone()));
                let mut api = ChatServiceClient::new(c.clone());
                let fut: futures::future::BoxFuture<'static, Result<(), Status>> =
                    Box::pin(async move { api.$method(req).await.map(|_| ()) });
                fut
            }) as Call
        }};
    }
    let rows: Vec<(&str, Call, [&str; 4])> = vec![
        (
            "GetRoom",
            call!(get_room, |r, _, _| pb::GetRoomRequest { room_id: r }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
        (
            "ListMessages",
            call!(list_messages, |r, _, _| pb::ListMessagesRequest { room_id: r, ..Default::default() }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
        (
            "MarkRead",
            call!(mark_read, |r, _, _| pb::MarkReadRequest { room_id: r, seq: 1 }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
        (
            "SendMessage",
            call!(send_message, |r, _, _| pb::SendMessageRequest {
                room_id: r,
                text: "x".into(),
                request_id: String::new()
            }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
        (
            "EditMessage",
            call!(edit_message, |_, m, _| pb::EditMessageRequest { message_id: m, text: "y".into() }),
            ["TOKEN_MISSING", "CHAT_MESSAGE_NOT_FOUND", "CHAT_AUTHOR_REQUIRED", ""],
        ),
        (
            "RenameRoom",
            call!(rename_room, |r, _, _| pb::RenameRoomRequest { room_id: r, title: "t".into() }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "CHAT_OWNER_REQUIRED", ""],
        ),
        (
            "InviteToRoom",
            call!(invite_to_room, |r, _, h| pb::InviteToRoomRequest { room_id: r, handles: vec![h] }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
        (
            "RemoveFromRoom",
            call!(remove_from_room, |r, _, h| pb::RemoveFromRoomRequest { room_id: r, handle: h }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "CHAT_OWNER_REQUIRED", ""],
        ),
        (
            "DeleteMessage",
            call!(delete_message, |_, m, _| pb::DeleteMessageRequest { message_id: m }),
            ["TOKEN_MISSING", "CHAT_MESSAGE_NOT_FOUND", "CHAT_AUTHOR_REQUIRED", ""],
        ),
        (
            "LeaveRoom",
            call!(leave_room, |r, _, _| pb::LeaveRoomRequest { room_id: r }),
            ["TOKEN_MISSING", "CHAT_ROOM_NOT_FOUND", "", ""],
        ),
    ];
    for (rpc, f, expected) in &rows {
        for (who, want) in [None, Some(&outsider), Some(&member), Some(&owner)].into_iter().zip(expected) {
            let r = f(who).await;
            let got = match &r {
                Ok(()) => String::new(),
                Err(s) => reason(s),
            };
            assert_eq!(&got, want, "{rpc} as {:?}: {r:?}", who.map(|u| &u.handle));
        }
    }
    // After the matrix the member and the owner have left; the room leaks nothing to them.
    assert_err(get(&app, &member, &room_id).await, Code::NotFound, "CHAT_ROOM_NOT_FOUND");
    assert_err(get(&app, &owner, &room_id).await, Code::NotFound, "CHAT_ROOM_NOT_FOUND");

    // The caller-only RPCs need a caller.
    let anon = api(&app).list_my_rooms(pb::ListMyRoomsRequest::default()).await;
    assert_err(anon, Code::Unauthenticated, "TOKEN_MISSING");
    let anon = api(&app)
        .create_room(pb::CreateRoomRequest { member_handles: vec!["owner".into()], ..Default::default() })
        .await;
    assert_err(anon, Code::Unauthenticated, "TOKEN_MISSING");
    let anon = api(&app).block_user(pb::BlockUserRequest { handle: "owner".into() }).await;
    assert_err(anon, Code::Unauthenticated, "TOKEN_MISSING");
    let anon = api(&app).unblock_user(pb::UnblockUserRequest { handle: "owner".into() }).await;
    assert_err(anon, Code::Unauthenticated, "TOKEN_MISSING");
    // ListMyRooms shows the caller's rooms only: none left for any of them.
    for u in [&outsider, &member, &owner, &extra] {
        let mine = api(&app).list_my_rooms(u.req(pb::ListMyRoomsRequest::default())).await.unwrap().into_inner();
        assert!(mine.rooms.is_empty(), "{}", u.handle);
    }
}

/// CreateReport takes chat messages of rooms the reporter is a member of.
#[sqlx::test]
async fn members_report_the_messages_of_their_rooms(pool: PgPool) {
    use maru::grpc::pb::report_service_client::ReportServiceClient;
    let app = TestApp::spawn(pool).await;
    let [a, b, c] = [app.user("alice").await, app.user("bobby").await, app.user("carol").await];
    let dm = room(&app, &a, &[&b]).await;
    let m = send(&app, &a, &dm.id, "스팸").await.unwrap();
    let report = |who: &TestUser| {
        let req = who.req(pb::CreateReportRequest {
            target: Some(pb::ReportTarget { chat_message_id: m.id.clone(), ..Default::default() }),
            reason: pb::ReportReason::Spam as i32,
            ..Default::default()
        });
        let mut api = ReportServiceClient::new(app.channel.clone());
        async move { api.create_report(req).await.map(|r| r.into_inner().report.unwrap()) }
    };
    let r = report(&b).await.unwrap();
    assert_eq!((r.target_type, r.target_id.as_str()), (pb::ReportTargetType::ChatMessage as i32, m.id.as_str()));
    assert_err(report(&a).await, Code::InvalidArgument, "CANNOT_REPORT_SELF");
    assert_err(report(&c).await, Code::NotFound, "CHAT_MESSAGE_NOT_FOUND");
    assert_err(report(&b).await, Code::AlreadyExists, "ALREADY_REPORTED");
}
