//! Chat use cases. Who may do what (a room one is not a member of is NOT_FOUND
//! `CHAT_ROOM_NOT_FOUND`, so an id leaks nothing):
//!
//! | op | who |
//! |---|---|
//! | create_room | any signed-in user; a DM not with someone who blocked them |
//! | get_room, list_my_rooms, list_messages | members |
//! | invite_to_room | members of a group |
//! | leave_room | members of a group |
//! | remove_from_room, rename_room | the group's owner |
//! | block_user, unblock_user | any signed-in user, for themselves |
//! | send_message | members; in a DM not if the other member blocked them |
//! | edit_message, delete_message | the author, while a member |
//! | mark_read | members, for themselves |
//!
//! Every change of a room runs in one transaction that first locks the room row
//! ([`store::lock_room`]), checks membership under that lock, then takes the room's next seq for
//! each event it writes: a member who left cannot slip a message in after their MEMBER_LEFT
//! event, and seqs commit in order without gaps. One DM per pair is the unique key
//! `chat_rooms_dm_pair_key`; a concurrent second CreateRoom waits on it and returns the room.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::hub::publish;
use super::model::{
    CreateRoom, EventKind, MAX_MEMBERS, Message, MessageWindow, NewEvent, Room, RoomKind, RoomView, SendMessage,
    dm_pair, room_kind,
};
use super::store::{self, RoomCursor};
use crate::caller::Caller;
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{remember, replayed};
use crate::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::state::AppState;

pub fn room_not_found() -> AppError {
    AppError::not_found(Reason::ChatRoomNotFound, "chat room")
}

fn message_not_found() -> AppError {
    AppError::not_found(Reason::ChatMessageNotFound, "chat message")
}

fn is_direct() -> AppError {
    AppError::failed_precondition(
        Reason::ChatRoomIsDirect,
        "a direct message keeps its two members and has no title (block the user to stop it)",
    )
}

fn owner_required(what: &str) -> AppError {
    AppError::permission_denied(Reason::ChatOwnerRequired, format!("only the room's owner may {what}"))
}

fn blocked() -> AppError {
    AppError::permission_denied(Reason::ChatBlocked, "this user does not accept direct messages from you")
}

/// The ids of `handles` (lower case), in order; NOT_FOUND `USER_NOT_FOUND` naming the first
/// unknown or deleted one.
async fn resolve(state: &AppState, handles: &[String]) -> AppResult<Vec<Uuid>> {
    let found: HashMap<String, Uuid> = store::users_by_handles(&state.db, handles).await?.into_iter().collect();
    handles
        .iter()
        .map(|h| {
            found
                .get(h)
                .copied()
                .ok_or_else(|| AppError::not_found(Reason::UserNotFound, "user").with_meta("handle", h))
        })
        .collect()
}

/// The room, locked, when `user` is a member of it (NOT_FOUND otherwise).
async fn lock_member_room(conn: &mut sqlx::PgConnection, room: Uuid, user: Uuid) -> AppResult<Room> {
    let r = store::lock_room(conn, room).await?.ok_or_else(room_not_found)?;
    store::member_read_seq(&mut *conn, room, user).await?.ok_or_else(room_not_found)?;
    Ok(r)
}

/// Appends an event with the room's next seq; returns the seq.
async fn append(conn: &mut sqlx::PgConnection, room: Uuid, e: NewEvent<'_>) -> AppResult<i64> {
    let seq = store::next_seq(conn, room, false).await?;
    store::insert_event(conn, room, seq, e).await?;
    Ok(seq)
}

/// Adds `user` as a member with a MEMBER_JOINED event by `actor`; returns its seq.
async fn join(conn: &mut sqlx::PgConnection, room: Uuid, actor: Uuid, user: Uuid) -> AppResult<i64> {
    let seq = append(conn, room, NewEvent::new(EventKind::MemberJoined, actor).user(user)).await?;
    store::insert_member(conn, room, user, seq).await?;
    Ok(seq)
}

/// Rooms for `user` (with their read marks): members, last messages, unread counts.
async fn views(state: &AppState, user: Uuid, rooms: Vec<(Room, i64)>) -> AppResult<Vec<RoomView>> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rooms.iter().map(|(r, _)| r.id).collect();
    let read: Vec<i64> = rooms.iter().map(|(_, s)| *s).collect();
    let mut members: HashMap<Uuid, Vec<_>> = HashMap::new();
    for m in store::list_members(&state.db, &ids).await? {
        members.entry(m.room_id).or_default().push(m);
    }
    let (with_msg, last): (Vec<Uuid>, Vec<i64>) =
        rooms.iter().filter(|(r, _)| r.last_message_seq > 0).map(|(r, _)| (r.id, r.last_message_seq)).unzip();
    let mut last_messages: HashMap<Uuid, Message> =
        store::messages_at(&state.db, &with_msg, &last).await?.into_iter().map(|m| (m.room_id, m)).collect();
    let unread: HashMap<Uuid, i64> = store::unread_counts(&state.db, user, &ids, &read).await?.into_iter().collect();
    Ok(rooms
        .into_iter()
        .map(|(room, _)| RoomView {
            members: members.remove(&room.id).unwrap_or_default(),
            last_message: last_messages.remove(&room.id),
            unread_count: unread.get(&room.id).copied().unwrap_or(0),
            room,
        })
        .collect())
}

async fn view(state: &AppState, user: Uuid, room: Uuid) -> AppResult<RoomView> {
    let read = store::member_read_seq(&state.db, room, user).await?.ok_or_else(room_not_found)?;
    let r = store::get_room(&state.db, room).await?.ok_or_else(room_not_found)?;
    views(state, user, vec![(r, read)]).await?.pop().ok_or_else(room_not_found)
}

/// Creates a DM or a group; `(room, created)`. The DM of an existing pair is returned as it is.
#[tracing::instrument(name = "chat.create_room", skip_all, err(level = "debug"))]
pub async fn create_room(state: &AppState, caller: &Caller, cmd: CreateRoom) -> AppResult<(RoomView, bool)> {
    let mut others = Vec::new();
    for id in resolve(state, &cmd.handles).await? {
        if id != caller.user_id && !others.contains(&id) {
            others.push(id);
        }
    }
    let kind = room_kind(others.len())
        .ok_or_else(|| AppError::invalid("member_handles", "name at least one member besides yourself"))?;
    if kind == RoomKind::Direct && !cmd.title.is_empty() {
        return Err(AppError::invalid("title", "a direct message has no title"));
    }
    if kind == RoomKind::Direct && store::is_blocked(&state.db, others[0], caller.user_id).await? {
        return Err(blocked());
    }
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(id) = replayed::<Uuid>(state, &mut tx, "CreateRoom", caller, cmd.request_id.as_ref(), &cmd).await? {
        crate::db::commit(&state.db, tx).await?;
        return Ok((view(state, caller.user_id, id).await?, false));
    }
    let id = Uuid::now_v7();
    let mut last = 0;
    let (room, created) = match kind {
        RoomKind::Direct => {
            let pair = dm_pair(caller.user_id, others[0]);
            if store::insert_dm(&mut tx, id, pair).await? {
                append(&mut tx, id, NewEvent::new(EventKind::RoomCreated, caller.user_id)).await?;
                join(&mut tx, id, caller.user_id, caller.user_id).await?;
                last = join(&mut tx, id, caller.user_id, others[0]).await?;
                (id, true)
            } else {
                // The pair's DM exists (a concurrent creator's committed before this statement
                // finished waiting on the unique key): that room.
                (store::dm_room(&mut *tx, pair).await?.ok_or_else(room_not_found)?, false)
            }
        }
        RoomKind::Group => {
            store::insert_group(&mut tx, id, caller.user_id, &cmd.title).await?;
            append(&mut tx, id, NewEvent::new(EventKind::RoomCreated, caller.user_id)).await?;
            last = join(&mut tx, id, caller.user_id, caller.user_id).await?;
            for &user in &others {
                last = join(&mut tx, id, caller.user_id, user).await?;
            }
            (id, true)
        }
    };
    remember(&mut tx, "CreateRoom", caller, cmd.request_id.as_ref(), &room).await?;
    crate::db::commit(&state.db, tx).await?;
    if created {
        metrics::counter!("maru_chat_rooms_created_total", "room_kind" => kind_label(kind)).increment(1);
        let mut members = others.clone();
        members.push(caller.user_id);
        publish(state, room, last, &members).await;
    }
    Ok((view(state, caller.user_id, room).await?, created))
}

/// The `room_kind` label of `maru_chat_rooms_created_total`.
pub fn kind_label(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Direct => "direct",
        RoomKind::Group => "group",
    }
}

#[tracing::instrument(name = "chat.get_room", skip_all, err(level = "debug"))]
pub async fn get_room(state: &AppState, caller: &Caller, room: Uuid) -> AppResult<RoomView> {
    view(state, caller.user_id, room).await
}

/// A page of the caller's rooms, most recently active first.
#[tracing::instrument(name = "chat.list_my_rooms", skip_all, err(level = "debug"))]
pub async fn list_my_rooms(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<RoomView>, String)> {
    let query = ("chat_rooms", caller.user_id);
    let page = state.pager.page::<RoomCursor>(page_size, page_token, &query)?;
    let rows = store::list_rooms(&state.db, caller.user_id, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |(r, _, at)| (*at, r.id));
    let rooms = rows.into_iter().map(|(r, read, _)| (r, read)).collect();
    Ok((views(state, caller.user_id, rooms).await?, next))
}

/// Adds the users of `handles` to a group (those already members stay as they are).
#[tracing::instrument(name = "chat.invite_to_room", skip_all, err(level = "debug"))]
pub async fn invite_to_room(state: &AppState, caller: &Caller, room: Uuid, handles: &[String]) -> AppResult<RoomView> {
    let users = resolve(state, handles).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let r = lock_member_room(&mut tx, room, caller.user_id).await?;
    if r.is_direct() {
        return Err(is_direct());
    }
    let present: HashSet<Uuid> = store::members_among(&mut *tx, room, &users).await?.into_iter().collect();
    let mut new = Vec::new();
    for u in users {
        if !present.contains(&u) && !new.contains(&u) {
            new.push(u);
        }
    }
    let count = store::count_members(&mut *tx, room).await?;
    if count as usize + new.len() > MAX_MEMBERS {
        return Err(AppError::failed_precondition(
            Reason::ChatRoomFull,
            format!("a room has at most {MAX_MEMBERS} members"),
        )
        .with_meta("max_members", MAX_MEMBERS));
    }
    let mut last = 0;
    for &u in &new {
        last = join(&mut tx, room, caller.user_id, u).await?;
    }
    crate::db::commit(&state.db, tx).await?;
    if !new.is_empty() {
        publish(state, room, last, &new).await;
    }
    view(state, caller.user_id, room).await
}

/// The caller leaves a group; an owner hands ownership to the longest-standing member.
#[tracing::instrument(name = "chat.leave_room", skip_all, err(level = "debug"))]
pub async fn leave_room(state: &AppState, caller: &Caller, room: Uuid) -> AppResult<()> {
    let mut tx = crate::db::begin(&state.db).await?;
    let r = lock_member_room(&mut tx, room, caller.user_id).await?;
    if r.is_direct() {
        return Err(is_direct());
    }
    store::delete_member(&mut tx, room, caller.user_id).await?;
    let seq = append(&mut tx, room, NewEvent::new(EventKind::MemberLeft, caller.user_id).user(caller.user_id)).await?;
    if r.owner_id == Some(caller.user_id) {
        store::pass_ownership(&mut tx, room).await?;
    }
    crate::db::commit(&state.db, tx).await?;
    publish(state, room, seq, &[caller.user_id]).await;
    Ok(())
}

/// The owner removes a member.
#[tracing::instrument(name = "chat.remove_from_room", skip_all, err(level = "debug"))]
pub async fn remove_from_room(state: &AppState, caller: &Caller, room: Uuid, handle: String) -> AppResult<()> {
    let user = resolve(state, &[handle]).await?[0];
    let mut tx = crate::db::begin(&state.db).await?;
    let r = lock_member_room(&mut tx, room, caller.user_id).await?;
    if r.is_direct() {
        return Err(is_direct());
    }
    if r.owner_id != Some(caller.user_id) {
        return Err(owner_required("remove members"));
    }
    if user == caller.user_id {
        return Err(AppError::invalid("handle", "the owner leaves with LeaveRoom"));
    }
    if !store::delete_member(&mut tx, room, user).await? {
        return Err(AppError::not_found(Reason::ChatMemberNotFound, "chat member"));
    }
    let seq = append(&mut tx, room, NewEvent::new(EventKind::MemberLeft, caller.user_id).user(user)).await?;
    crate::db::commit(&state.db, tx).await?;
    publish(state, room, seq, &[user]).await;
    Ok(())
}

#[tracing::instrument(name = "chat.rename_room", skip_all, err(level = "debug"))]
pub async fn rename_room(state: &AppState, caller: &Caller, room: Uuid, title: String) -> AppResult<RoomView> {
    let mut tx = crate::db::begin(&state.db).await?;
    let r = lock_member_room(&mut tx, room, caller.user_id).await?;
    if r.is_direct() {
        return Err(is_direct());
    }
    if r.owner_id != Some(caller.user_id) {
        return Err(owner_required("rename it"));
    }
    store::set_title(&mut tx, room, &title).await?;
    let seq = append(&mut tx, room, NewEvent::new(EventKind::RoomRenamed, caller.user_id).title(&title)).await?;
    crate::db::commit(&state.db, tx).await?;
    publish(state, room, seq, &[]).await;
    view(state, caller.user_id, room).await
}

/// The user of `handle`, not the caller.
async fn other_user(state: &AppState, caller: &Caller, handle: String) -> AppResult<Uuid> {
    let user = resolve(state, &[handle]).await?[0];
    if user == caller.user_id {
        return Err(AppError::invalid("handle", "must not be your own"));
    }
    Ok(user)
}

#[tracing::instrument(name = "chat.block_user", skip_all, err(level = "debug"))]
pub async fn block_user(state: &AppState, caller: &Caller, handle: String) -> AppResult<()> {
    let user = other_user(state, caller, handle).await?;
    store::insert_block(&state.db, caller.user_id, user).await
}

#[tracing::instrument(name = "chat.unblock_user", skip_all, err(level = "debug"))]
pub async fn unblock_user(state: &AppState, caller: &Caller, handle: String) -> AppResult<()> {
    let user = other_user(state, caller, handle).await?;
    store::delete_block(&state.db, caller.user_id, user).await
}

/// Sends a message with the room's next seq. A retry with the same `request_id` gets the first
/// message.
#[tracing::instrument(name = "chat.send_message", skip_all, err(level = "debug"))]
pub async fn send_message(state: &AppState, caller: &Caller, cmd: SendMessage) -> AppResult<Message> {
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some(id) = replayed::<Uuid>(state, &mut tx, "SendMessage", caller, cmd.request_id.as_ref(), &cmd).await? {
        let m = store::get_message(&mut *tx, id).await?.ok_or_else(message_not_found)?;
        crate::db::commit(&state.db, tx).await?;
        return Ok(m);
    }
    let r = lock_member_room(&mut tx, cmd.room_id, caller.user_id).await?;
    if r.is_direct()
        && let Some(other) = store::dm_other(&mut *tx, r.id, caller.user_id).await?
        && store::is_blocked(&mut *tx, other, caller.user_id).await?
    {
        return Err(blocked());
    }
    let seq = store::next_seq(&mut tx, r.id, true).await?;
    let id = Uuid::now_v7();
    store::insert_message(&mut tx, id, r.id, seq, caller.user_id, &cmd.text).await?;
    store::insert_event(&mut tx, r.id, seq, NewEvent::new(EventKind::MessageCreated, caller.user_id).message(id))
        .await?;
    remember(&mut tx, "SendMessage", caller, cmd.request_id.as_ref(), &id).await?;
    let m = store::get_message(&mut *tx, id).await?.ok_or_else(message_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    metrics::counter!("maru_chat_messages_sent_total").increment(1);
    publish(state, m.room_id, seq, &[]).await;
    Ok(m)
}

/// The message, its room locked, when the caller is a member and its author.
async fn lock_own_message(conn: &mut sqlx::PgConnection, caller: &Caller, id: Uuid, what: &str) -> AppResult<Message> {
    let m = store::get_message(&mut *conn, id).await?.ok_or_else(message_not_found)?;
    lock_member_room(conn, m.room_id, caller.user_id).await.map_err(|_| message_not_found())?;
    if m.author_id != caller.user_id {
        return Err(AppError::permission_denied(
            Reason::ChatAuthorRequired,
            format!("only the author may {what} this message"),
        ));
    }
    Ok(m)
}

#[tracing::instrument(name = "chat.edit_message", skip_all, err(level = "debug"))]
pub async fn edit_message(state: &AppState, caller: &Caller, id: Uuid, text: String) -> AppResult<Message> {
    let mut tx = crate::db::begin(&state.db).await?;
    let m = lock_own_message(&mut tx, caller, id, "edit").await?;
    if !store::update_message_text(&mut tx, id, &text).await? {
        return Err(AppError::failed_precondition(Reason::ChatMessageDeleted, "the message was deleted"));
    }
    let seq = append(&mut tx, m.room_id, NewEvent::new(EventKind::MessageEdited, caller.user_id).message(id)).await?;
    let m = store::get_message(&mut *tx, id).await?.ok_or_else(message_not_found)?;
    crate::db::commit(&state.db, tx).await?;
    publish(state, m.room_id, seq, &[]).await;
    Ok(m)
}

#[tracing::instrument(name = "chat.delete_message", skip_all, err(level = "debug"))]
pub async fn delete_message(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let mut tx = crate::db::begin(&state.db).await?;
    let m = lock_own_message(&mut tx, caller, id, "delete").await?;
    if store::tombstone_message(&mut tx, id).await? {
        let seq =
            append(&mut tx, m.room_id, NewEvent::new(EventKind::MessageDeleted, caller.user_id).message(id)).await?;
        crate::db::commit(&state.db, tx).await?;
        publish(state, m.room_id, seq, &[]).await;
    }
    Ok(())
}

/// Moves the caller's read mark forward to `seq`, but never past the room's last message (a
/// client marking "read up to the latest event" would otherwise chase its own READ events).
/// Returns the read mark after the call.
#[tracing::instrument(name = "chat.mark_read", skip_all, err(level = "debug"))]
pub async fn mark_read(state: &AppState, caller: &Caller, room: Uuid, seq: i64) -> AppResult<i64> {
    let mut tx = crate::db::begin(&state.db).await?;
    let r = lock_member_room(&mut tx, room, caller.user_id).await?;
    if seq > r.last_seq {
        return Err(AppError::invalid("seq", format!("is beyond the room's last seq ({})", r.last_seq)));
    }
    let to = seq.min(r.last_message_seq);
    if store::advance_read(&mut tx, room, caller.user_id, to).await? {
        let e = NewEvent::new(EventKind::Read, caller.user_id).user(caller.user_id).read_seq(to);
        let seq = append(&mut tx, room, e).await?;
        crate::db::commit(&state.db, tx).await?;
        publish(state, room, seq, &[]).await;
        return Ok(to);
    }
    store::member_read_seq(&mut *tx, room, caller.user_id).await?.ok_or_else(room_not_found)
}

/// Messages of a room in `window`, in seq order, and whether more lie beyond the page.
#[tracing::instrument(name = "chat.list_messages", skip_all, err(level = "debug"))]
pub async fn list_messages(
    state: &AppState,
    caller: &Caller,
    room: Uuid,
    window: MessageWindow,
    page_size: i32,
) -> AppResult<(Vec<Message>, bool)> {
    let size = match page_size {
        n if n < 0 => return Err(Violations::one("page_size", "must not be negative").into_error()),
        0 => DEFAULT_PAGE_SIZE,
        n => i64::from(n).min(MAX_PAGE_SIZE),
    };
    store::member_read_seq(&state.db, room, caller.user_id).await?.ok_or_else(room_not_found)?;
    let mut rows = store::list_messages(&state.db, room, window, size + 1).await?;
    let more = rows.len() as i64 > size;
    if more {
        match window {
            // Fetched newest first: the extra one is the oldest.
            MessageWindow::Latest | MessageWindow::Before(_) => {
                rows.remove(0);
            }
            MessageWindow::After(_) => rows.truncate(size as usize),
        }
    }
    Ok((rows, more))
}
