//! Protobuf ⇄ model conversions for chat. Requests become commands or every bad field is
//! reported at once.

use super::model::{
    CreateRoom, MAX_MEMBERS, MAX_TEXT_CHARS, MAX_TITLE_CHARS, Member, Message, MessageWindow, RoomKind, RoomView,
    SendMessage,
};
use crate::accounts::Handle;
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{id, request_id, text, timestamp};
use crate::grpc::pb;

/// Message text: 1–4,000 characters, line breaks and tabs allowed.
pub fn message_text(v: &mut Violations, raw: &str) -> String {
    text(v, "text", raw, 1, MAX_TEXT_CHARS, true)
}

/// Lower-case handles, each valid, duplicates dropped; 1 to `MAX_MEMBERS - 1` of them.
fn handles(v: &mut Violations, field: &str, raw: &[String]) -> Vec<String> {
    if raw.is_empty() {
        v.add(field, "name at least one handle");
    }
    if raw.len() > MAX_MEMBERS - 1 {
        v.add(field, format!("at most {} handles", MAX_MEMBERS - 1));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (i, h) in raw.iter().enumerate() {
        match Handle::parse(h) {
            Ok(h) if !out.iter().any(|o| o == h.as_str()) => out.push(h.as_str().to_owned()),
            Ok(_) => {}
            Err(e) => v.add(&format!("{field}[{i}]"), e),
        }
    }
    out
}

fn handle(v: &mut Violations, raw: &str) -> String {
    v.check("handle", Handle::parse(raw)).map(|h| h.as_str().to_owned()).unwrap_or_default()
}

/// The `handle` of RemoveFromRoom, BlockUser, UnblockUser.
pub fn handle_field(raw: &str) -> AppResult<String> {
    let mut v = Violations::new();
    let h = handle(&mut v, raw);
    v.finish()?;
    Ok(h)
}

impl TryFrom<pb::CreateRoomRequest> for CreateRoom {
    type Error = AppError;
    fn try_from(r: pb::CreateRoomRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = CreateRoom {
            handles: handles(&mut v, "member_handles", &r.member_handles),
            title: text(&mut v, "title", &r.title, 0, MAX_TITLE_CHARS, false),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

impl TryFrom<pb::SendMessageRequest> for SendMessage {
    type Error = AppError;
    fn try_from(r: pb::SendMessageRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let cmd = SendMessage {
            room_id: id(&mut v, "room_id", &r.room_id),
            text: message_text(&mut v, &r.text),
            request_id: request_id(&mut v, &r.request_id),
        };
        v.finish()?;
        Ok(cmd)
    }
}

/// InviteToRoom: the room and the handles.
pub fn invite(r: &pb::InviteToRoomRequest) -> AppResult<(uuid::Uuid, Vec<String>)> {
    let mut v = Violations::new();
    let room = id(&mut v, "room_id", &r.room_id);
    let hs = handles(&mut v, "handles", &r.handles);
    v.finish()?;
    Ok((room, hs))
}

/// RemoveFromRoom: the room and the handle.
pub fn remove(r: &pb::RemoveFromRoomRequest) -> AppResult<(uuid::Uuid, String)> {
    let mut v = Violations::new();
    let room = id(&mut v, "room_id", &r.room_id);
    let h = handle(&mut v, &r.handle);
    v.finish()?;
    Ok((room, h))
}

/// RenameRoom: the room and a title of 1–100 characters.
pub fn rename(r: &pb::RenameRoomRequest) -> AppResult<(uuid::Uuid, String)> {
    let mut v = Violations::new();
    let room = id(&mut v, "room_id", &r.room_id);
    let title = text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false);
    v.finish()?;
    Ok((room, title))
}

/// EditMessage: the message and its new text.
pub fn edit(r: &pb::EditMessageRequest) -> AppResult<(uuid::Uuid, String)> {
    let mut v = Violations::new();
    let message = id(&mut v, "message_id", &r.message_id);
    let t = message_text(&mut v, &r.text);
    v.finish()?;
    Ok((message, t))
}

/// MarkRead: the room and a seq ≥ 0.
pub fn mark_read(r: &pb::MarkReadRequest) -> AppResult<(uuid::Uuid, i64)> {
    let mut v = Violations::new();
    let room = id(&mut v, "room_id", &r.room_id);
    if r.seq < 0 {
        v.add("seq", "must not be negative");
    }
    v.finish()?;
    Ok((room, r.seq))
}

/// ListMessages: the room and the window (at most one of before_seq, after_seq; 0 = unset).
pub fn list_messages(r: &pb::ListMessagesRequest) -> AppResult<(uuid::Uuid, MessageWindow)> {
    let mut v = Violations::new();
    let room = id(&mut v, "room_id", &r.room_id);
    if r.before_seq < 0 {
        v.add("before_seq", "must not be negative");
    }
    if r.after_seq < 0 {
        v.add("after_seq", "must not be negative");
    }
    let window = match (r.before_seq, r.after_seq) {
        (0, 0) => MessageWindow::Latest,
        (b, 0) => MessageWindow::Before(b),
        (0, a) => MessageWindow::After(a),
        _ => {
            v.add("after_seq", "set at most one of before_seq and after_seq");
            MessageWindow::Latest
        }
    };
    v.finish()?;
    Ok((room, window))
}

fn author(user_id: uuid::Uuid, handle: String, display_name: String, image_url: String) -> pb::Author {
    pb::Author { user_id: user_id.to_string(), handle, display_name, image_url }
}

pub fn message_to_pb(m: Message) -> pb::ChatMessage {
    pb::ChatMessage {
        id: m.id.to_string(),
        room_id: m.room_id.to_string(),
        seq: m.seq,
        author: Some(author(m.author_id, m.author_handle, m.author_display_name, m.author_image_url)),
        text: m.text,
        deleted: m.deleted_at.is_some(),
        created_at: Some(timestamp(m.created_at)),
        edited_at: m.edited_at.map(timestamp),
    }
}

fn member_to_pb(m: Member, owner: Option<uuid::Uuid>) -> pb::ChatMember {
    pb::ChatMember {
        owner: owner == Some(m.user_id),
        read_seq: m.read_seq,
        joined_at: Some(timestamp(m.joined_at)),
        user: Some(author(m.user_id, m.handle, m.display_name, m.image_url)),
    }
}

pub fn room_to_pb(v: RoomView) -> pb::ChatRoom {
    let r = v.room;
    let kind = match r.kind() {
        RoomKind::Direct => pb::ChatRoomKind::Direct,
        RoomKind::Group => pb::ChatRoomKind::Group,
    };
    pb::ChatRoom {
        id: r.id.to_string(),
        kind: kind as i32,
        title: r.title,
        owner_id: r.owner_id.map(|o| o.to_string()).unwrap_or_default(),
        members: v.members.into_iter().map(|m| member_to_pb(m, r.owner_id)).collect(),
        last_message: v.last_message.map(message_to_pb),
        unread_count: v.unread_count,
        last_seq: r.last_seq,
        created_at: Some(timestamp(r.created_at)),
    }
}

/// Most resume entries of one Subscribe.
pub const MAX_RESUME: usize = 1_000;

/// Subscribe: `(room, last_seq)` per resume entry, each room once, seqs not negative.
pub fn resume(r: &pb::SubscribeRequest) -> AppResult<Vec<(uuid::Uuid, i64)>> {
    let mut v = Violations::new();
    if r.resume.len() > MAX_RESUME {
        return Err(Violations::one("resume", format!("at most {MAX_RESUME} rooms")).into_error());
    }
    let mut out: Vec<(uuid::Uuid, i64)> = Vec::with_capacity(r.resume.len());
    for (i, p) in r.resume.iter().enumerate() {
        let room = id(&mut v, &format!("resume[{i}].room_id"), &p.room_id);
        if p.last_seq < 0 {
            v.add(&format!("resume[{i}].last_seq"), "must not be negative");
        }
        if !room.is_nil() && out.iter().any(|(r, _)| *r == room) {
            v.add(&format!("resume[{i}].room_id"), "names a room already listed");
        }
        out.push((room, p.last_seq));
    }
    v.finish()?;
    Ok(out)
}

fn event_kind(kind: &str) -> pb::ChatEventKind {
    use super::model::EventKind as K;
    match K::from_db(kind) {
        Some(K::RoomCreated) => pb::ChatEventKind::RoomCreated,
        Some(K::MemberJoined) => pb::ChatEventKind::MemberJoined,
        Some(K::MemberLeft) => pb::ChatEventKind::MemberLeft,
        Some(K::RoomRenamed) => pb::ChatEventKind::RoomRenamed,
        Some(K::MessageCreated) => pb::ChatEventKind::MessageCreated,
        Some(K::MessageEdited) => pb::ChatEventKind::MessageEdited,
        Some(K::MessageDeleted) => pb::ChatEventKind::MessageDeleted,
        Some(K::Read) => pb::ChatEventKind::Read,
        None => pb::ChatEventKind::Unspecified,
    }
}

pub fn event_to_pb(e: &super::store::EventRow) -> pb::ChatEvent {
    let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    pb::ChatEvent {
        room_id: e.room_id.to_string(),
        seq: e.seq,
        kind: event_kind(&e.kind) as i32,
        actor_id: id(e.actor_id),
        user_id: id(e.user_id),
        message: e.message().map(message_to_pb),
        title: e.title.clone().unwrap_or_default(),
        read_seq: e.read_seq.unwrap_or(0),
        at: Some(timestamp(e.created_at)),
    }
}

pub fn heartbeat(at: chrono::DateTime<chrono::Utc>) -> pb::ChatEvent {
    pb::ChatEvent { kind: pb::ChatEventKind::Heartbeat as i32, at: Some(timestamp(at)), ..Default::default() }
}
