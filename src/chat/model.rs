//! Rooms, members, messages and room events: rows, commands and the rules of their fields.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::db::db_enum;
use crate::idempotency::RequestId;

/// Longest message text (Unicode scalar values, after trimming).
pub const MAX_TEXT_CHARS: usize = 4_000;
/// Longest group title.
pub const MAX_TITLE_CHARS: usize = 100;
/// Most members of a room, the creator included.
pub const MAX_MEMBERS: usize = 100;
/// Unread counts stop counting here (clients show "999+").
pub const UNREAD_CAP: i64 = 1_000;

db_enum! {
    /// Two people (one room per pair) or a group with an owner.
    RoomKind {
        Direct => "DIRECT",
        Group => "GROUP",
    }
}

db_enum! {
    /// What a room event records (`chat_events.kind`).
    EventKind {
        RoomCreated => "ROOM_CREATED",
        MemberJoined => "MEMBER_JOINED",
        MemberLeft => "MEMBER_LEFT",
        RoomRenamed => "ROOM_RENAMED",
        MessageCreated => "MESSAGE_CREATED",
        MessageEdited => "MESSAGE_EDITED",
        MessageDeleted => "MESSAGE_DELETED",
        Read => "READ",
    }
}

/// The shape of a new room from the other members the creator named: one makes a DM, more a
/// group. `None` when nobody else is named.
pub fn room_kind(others: usize) -> Option<RoomKind> {
    match others {
        0 => None,
        1 => Some(RoomKind::Direct),
        _ => Some(RoomKind::Group),
    }
}

/// The two members of a DM in the order the pair is stored (`chat_rooms.dm_low < dm_high`), so
/// that either of them creating it hits the same unique key.
pub fn dm_pair(a: Uuid, b: Uuid) -> (Uuid, Uuid) {
    if a < b { (a, b) } else { (b, a) }
}

/// A room as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Room {
    pub id: Uuid,
    pub kind: String,
    pub title: String,
    pub owner_id: Option<Uuid>,
    pub last_seq: i64,
    pub last_message_seq: i64,
    pub created_at: DateTime<Utc>,
}

impl Room {
    pub fn kind(&self) -> RoomKind {
        RoomKind::from_db(&self.kind).unwrap_or(RoomKind::Group)
    }
    pub fn is_direct(&self) -> bool {
        self.kind() == RoomKind::Direct
    }
}

/// A member of a room with their public profile.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Member {
    pub room_id: Uuid,
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub joined_seq: i64,
    pub read_seq: i64,
    pub joined_at: DateTime<Utc>,
}

/// A message (or its tombstone) with its author's profile.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Message {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub author_id: Uuid,
    pub author_handle: String,
    pub author_display_name: String,
    pub author_image_url: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A room for one of its members.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    pub room: Room,
    pub members: Vec<Member>,
    pub last_message: Option<Message>,
    pub unread_count: i64,
}

/// A room event to append to the log (the seq is the room's next).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewEvent<'a> {
    pub kind: EventKind,
    pub actor: Uuid,
    pub user: Option<Uuid>,
    pub message: Option<Uuid>,
    pub title: Option<&'a str>,
    pub read_seq: Option<i64>,
}

impl<'a> NewEvent<'a> {
    pub fn new(kind: EventKind, actor: Uuid) -> Self {
        NewEvent { kind, actor, user: None, message: None, title: None, read_seq: None }
    }
    pub fn user(self, user: Uuid) -> Self {
        NewEvent { user: Some(user), ..self }
    }
    pub fn message(self, message: Uuid) -> Self {
        NewEvent { message: Some(message), ..self }
    }
    pub fn title(self, title: &'a str) -> Self {
        NewEvent { title: Some(title), ..self }
    }
    pub fn read_seq(self, seq: i64) -> Self {
        NewEvent { read_seq: Some(seq), ..self }
    }
}

#[derive(Debug, Serialize)]
pub struct CreateRoom {
    /// Lower-case handles of the other members, without duplicates.
    pub handles: Vec<String>,
    pub title: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Serialize)]
pub struct SendMessage {
    pub room_id: Uuid,
    pub text: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// Which messages ListMessages returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageWindow {
    /// The latest page.
    Latest,
    /// The page just before this seq.
    Before(i64),
    /// The page just after this seq.
    After(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_other_is_a_dm_more_a_group() {
        assert_eq!(room_kind(0), None);
        assert_eq!(room_kind(1), Some(RoomKind::Direct));
        assert_eq!(room_kind(2), Some(RoomKind::Group));
        assert_eq!(room_kind(MAX_MEMBERS - 1), Some(RoomKind::Group));
    }

    #[test]
    fn a_pair_is_stored_in_one_order_whoever_creates_it() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(dm_pair(a, b), dm_pair(b, a));
        let (lo, hi) = dm_pair(b, a);
        assert!(lo < hi);
    }

    #[test]
    fn kinds_round_trip_through_the_database_text() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_db(k.as_db()), Some(*k));
        }
        for k in RoomKind::ALL {
            assert_eq!(RoomKind::from_db(k.as_db()), Some(*k));
        }
    }
}
