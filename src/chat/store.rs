//! Every SQL statement of chat. A change of a room first locks the room row
//! ([`lock_room`]), then takes the room's next seq ([`next_seq`]) and writes its event
//! ([`insert_event`]) in the same transaction: the lock serialises the room's writers, so seqs
//! commit in order with no gap (migration `20261204000300_chat.sql`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{Member, Message, MessageWindow, NewEvent, Room, RoomKind, UNREAD_CAP};
use crate::error::AppResult;

/// Sort key of ListMyRooms: (active_at, id), both descending.
pub type RoomCursor = (DateTime<Utc>, Uuid);

const ROOM_SELECT: &str = "select r.id, r.kind, r.title, r.owner_id, r.last_seq, r.last_message_seq, r.created_at
   from chat_rooms r";

const MEMBER_SELECT: &str = "select m.room_id, m.user_id, u.handle, u.display_name, u.image_url, m.joined_seq,
        m.read_seq, m.joined_at
   from chat_members m join users u on u.id = m.user_id";

const MESSAGE_SELECT: &str = "select m.id, m.room_id, m.seq, m.author_id, u.handle as author_handle,
        u.display_name as author_display_name, u.image_url as author_image_url, m.text, m.created_at,
        m.edited_at, m.deleted_at
   from chat_messages m join users u on u.id = m.author_id";

/// Live users by lower-case handle: `(handle, id)` of those that exist.
pub async fn users_by_handles(db: impl PgExecutor<'_>, handles: &[String]) -> AppResult<Vec<(String, Uuid)>> {
    Ok(sqlx::query_as("select lower(handle), id from users where lower(handle) = any($1) and deleted_at is null")
        .bind(handles)
        .fetch_all(db)
        .await?)
}

/// Inserts the DM of a pair unless it exists; true when this call created it.
pub async fn insert_dm(conn: &mut PgConnection, id: Uuid, pair: (Uuid, Uuid)) -> AppResult<bool> {
    Ok(sqlx::query(
        "insert into chat_rooms (id, kind, dm_low, dm_high) values ($1, 'DIRECT', $2, $3)
         on conflict on constraint chat_rooms_dm_pair_key do nothing",
    )
    .bind(id)
    .bind(pair.0)
    .bind(pair.1)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The DM of a pair (ordered by [`super::model::dm_pair`]).
pub async fn dm_room(db: impl PgExecutor<'_>, pair: (Uuid, Uuid)) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar("select id from chat_rooms where dm_low = $1 and dm_high = $2")
        .bind(pair.0)
        .bind(pair.1)
        .fetch_optional(db)
        .await?)
}

pub async fn insert_group(conn: &mut PgConnection, id: Uuid, owner: Uuid, title: &str) -> AppResult<()> {
    sqlx::query("insert into chat_rooms (id, kind, title, owner_id) values ($1, $2, $3, $4)")
        .bind(id)
        .bind(RoomKind::Group.as_db())
        .bind(title)
        .bind(owner)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_room(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Room>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{ROOM_SELECT} where r.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The room, locked until the transaction ends: the room's changes happen one at a time.
pub async fn lock_room(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<Room>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{ROOM_SELECT} where r.id = $1 for update")))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// Takes the room's next seq; a message also becomes the room's last message and activity.
pub async fn next_seq(conn: &mut PgConnection, room: Uuid, message: bool) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "update chat_rooms
            set last_seq = last_seq + 1,
                last_message_seq = case when $2 then last_seq + 1 else last_message_seq end,
                active_at = case when $2 then now() else active_at end,
                updated_at = now()
          where id = $1
      returning last_seq",
    )
    .bind(room)
    .bind(message)
    .fetch_one(conn)
    .await?)
}

pub async fn insert_event(conn: &mut PgConnection, room: Uuid, seq: i64, e: NewEvent<'_>) -> AppResult<()> {
    sqlx::query(
        "insert into chat_events (room_id, seq, kind, actor_id, user_id, message_id, title, read_seq)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(room)
    .bind(seq)
    .bind(e.kind.as_db())
    .bind(e.actor)
    .bind(e.user)
    .bind(e.message)
    .bind(e.title)
    .bind(e.read_seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds a member unless they are one; true when added.
pub async fn insert_member(conn: &mut PgConnection, room: Uuid, user: Uuid, joined_seq: i64) -> AppResult<bool> {
    Ok(sqlx::query(
        "insert into chat_members (room_id, user_id, joined_seq) values ($1, $2, $3)
         on conflict on constraint chat_members_pkey do nothing",
    )
    .bind(room)
    .bind(user)
    .bind(joined_seq)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

pub async fn delete_member(conn: &mut PgConnection, room: Uuid, user: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from chat_members where room_id = $1 and user_id = $2")
        .bind(room)
        .bind(user)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// The member's read mark, when `user` is a member of `room`.
pub async fn member_read_seq(db: impl PgExecutor<'_>, room: Uuid, user: Uuid) -> AppResult<Option<i64>> {
    Ok(sqlx::query_scalar("select read_seq from chat_members where room_id = $1 and user_id = $2")
        .bind(room)
        .bind(user)
        .fetch_optional(db)
        .await?)
}

/// Which of `users` are members of `room`.
pub async fn members_among(db: impl PgExecutor<'_>, room: Uuid, users: &[Uuid]) -> AppResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar("select user_id from chat_members where room_id = $1 and user_id = any($2)")
        .bind(room)
        .bind(users)
        .fetch_all(db)
        .await?)
}

pub async fn count_members(db: impl PgExecutor<'_>, room: Uuid) -> AppResult<i64> {
    Ok(sqlx::query_scalar("select count(*) from chat_members where room_id = $1").bind(room).fetch_one(db).await?)
}

/// Members of `rooms`, by room then the order they joined.
pub async fn list_members(db: impl PgExecutor<'_>, rooms: &[Uuid]) -> AppResult<Vec<Member>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MEMBER_SELECT} where m.room_id = any($1) order by m.room_id, m.joined_seq, m.user_id"
    )))
    .bind(rooms)
    .fetch_all(db)
    .await?)
}

/// Ownership passes to the longest-standing member (none: the room has no owner).
pub async fn pass_ownership(conn: &mut PgConnection, room: Uuid) -> AppResult<()> {
    sqlx::query(
        "update chat_rooms set owner_id = (select user_id from chat_members where room_id = $1
                                            order by joined_seq, user_id limit 1),
                updated_at = now()
          where id = $1",
    )
    .bind(room)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_title(conn: &mut PgConnection, room: Uuid, title: &str) -> AppResult<()> {
    sqlx::query("update chat_rooms set title = $2, updated_at = now() where id = $1")
        .bind(room)
        .bind(title)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the read mark forward to `seq`; false when it was already there or beyond.
pub async fn advance_read(conn: &mut PgConnection, room: Uuid, user: Uuid, seq: i64) -> AppResult<bool> {
    Ok(sqlx::query("update chat_members set read_seq = $3 where room_id = $1 and user_id = $2 and read_seq < $3")
        .bind(room)
        .bind(user)
        .bind(seq)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// A page of `user`'s rooms, most recently active first, with their read marks.
pub async fn list_rooms(
    db: impl PgExecutor<'_>,
    user: Uuid,
    after: Option<RoomCursor>,
    limit: i64,
) -> AppResult<Vec<(Room, i64, DateTime<Utc>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        room: Room,
        read_seq: i64,
        active_at: DateTime<Utc>,
    }
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    let rows: Vec<Row> = sqlx::query_as(
        "select r.id, r.kind, r.title, r.owner_id, r.last_seq, r.last_message_seq, r.created_at, m.read_seq,
                r.active_at
           from chat_members m join chat_rooms r on r.id = m.room_id
          where m.user_id = $1 and ($2::timestamptz is null or (r.active_at, r.id) < ($2, $3))
          order by r.active_at desc, r.id desc
          limit $4",
    )
    .bind(user)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.room, r.read_seq, r.active_at)).collect())
}

/// Messages of others after `read_seq` in each room (`rooms[i]`, `read_seqs[i]`), deleted ones
/// not counted, each count capped at [`UNREAD_CAP`].
pub async fn unread_counts(
    db: impl PgExecutor<'_>,
    user: Uuid,
    rooms: &[Uuid],
    read_seqs: &[i64],
) -> AppResult<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(
        "select q.room_id, (select count(*) from (select 1 from chat_messages c
                                                  where c.room_id = q.room_id and c.seq > q.read_seq
                                                    and c.author_id <> $1 and c.deleted_at is null
                                                  limit $4) x)
           from unnest($2::uuid[], $3::bigint[]) as q (room_id, read_seq)",
    )
    .bind(user)
    .bind(rooms)
    .bind(read_seqs)
    .bind(UNREAD_CAP)
    .fetch_all(db)
    .await?)
}

/// The messages at `(rooms[i], seqs[i])`.
pub async fn messages_at(db: impl PgExecutor<'_>, rooms: &[Uuid], seqs: &[i64]) -> AppResult<Vec<Message>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MESSAGE_SELECT} join unnest($1::uuid[], $2::bigint[]) as q (room_id, seq)
                            on q.room_id = m.room_id and q.seq = m.seq"
    )))
    .bind(rooms)
    .bind(seqs)
    .fetch_all(db)
    .await?)
}

pub async fn insert_message(
    conn: &mut PgConnection,
    id: Uuid,
    room: Uuid,
    seq: i64,
    author: Uuid,
    text: &str,
) -> AppResult<()> {
    sqlx::query("insert into chat_messages (id, room_id, seq, author_id, text) values ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(room)
        .bind(seq)
        .bind(author)
        .bind(text)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_message(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Message>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{MESSAGE_SELECT} where m.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// Replaces the text of a message that is not deleted; false otherwise.
pub async fn update_message_text(conn: &mut PgConnection, id: Uuid, text: &str) -> AppResult<bool> {
    Ok(sqlx::query("update chat_messages set text = $2, edited_at = now() where id = $1 and deleted_at is null")
        .bind(id)
        .bind(text)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Leaves a tombstone in place of a message; false when it already was one.
pub async fn tombstone_message(conn: &mut PgConnection, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("update chat_messages set text = '', deleted_at = now() where id = $1 and deleted_at is null")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Up to `limit` messages of `room` in `window`, in seq order.
pub async fn list_messages(
    db: impl PgExecutor<'_>,
    room: Uuid,
    window: MessageWindow,
    limit: i64,
) -> AppResult<Vec<Message>> {
    let (cond, order, seq) = match window {
        MessageWindow::Latest => ("true", "desc", 0),
        MessageWindow::Before(s) => ("m.seq < $2", "desc", s),
        MessageWindow::After(s) => ("m.seq > $2", "asc", s),
    };
    let mut rows: Vec<Message> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{MESSAGE_SELECT} where m.room_id = $1 and {cond} order by m.seq {order} limit $3"
    )))
    .bind(room)
    .bind(seq)
    .bind(limit)
    .fetch_all(db)
    .await?;
    if order == "desc" {
        rows.reverse();
    }
    Ok(rows)
}

/// Blocks `blocked` for `blocker` (a no-op when already blocked).
pub async fn insert_block(db: impl PgExecutor<'_>, blocker: Uuid, blocked: Uuid) -> AppResult<()> {
    sqlx::query(
        "insert into chat_blocks (blocker_id, blocked_id) values ($1, $2)
         on conflict on constraint chat_blocks_pkey do nothing",
    )
    .bind(blocker)
    .bind(blocked)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn delete_block(db: impl PgExecutor<'_>, blocker: Uuid, blocked: Uuid) -> AppResult<()> {
    sqlx::query("delete from chat_blocks where blocker_id = $1 and blocked_id = $2")
        .bind(blocker)
        .bind(blocked)
        .execute(db)
        .await?;
    Ok(())
}

/// Whether `blocker` blocked `blocked`.
pub async fn is_blocked(db: impl PgExecutor<'_>, blocker: Uuid, blocked: Uuid) -> AppResult<bool> {
    Ok(sqlx::query_scalar("select exists (select 1 from chat_blocks where blocker_id = $1 and blocked_id = $2)")
        .bind(blocker)
        .bind(blocked)
        .fetch_one(db)
        .await?)
}

/// The other member of a DM.
pub async fn dm_other(db: impl PgExecutor<'_>, room: Uuid, me: Uuid) -> AppResult<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "select case when dm_low = $2 then dm_high else dm_low end from chat_rooms
          where id = $1 and kind = 'DIRECT' and $2 in (dm_low, dm_high)",
    )
    .bind(room)
    .bind(me)
    .fetch_optional(db)
    .await?)
}

/// One row of a room's event log with the message it concerns (MESSAGE_* events).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub room_id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub actor_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub title: Option<String>,
    pub read_seq: Option<i64>,
    pub created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub message: MaybeMessage,
}

/// The columns of [`Message`], null when the event concerns none.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MaybeMessage {
    pub m_id: Option<Uuid>,
    pub m_seq: Option<i64>,
    pub m_author_id: Option<Uuid>,
    pub m_author_handle: Option<String>,
    pub m_author_display_name: Option<String>,
    pub m_author_image_url: Option<String>,
    pub m_text: Option<String>,
    pub m_created_at: Option<DateTime<Utc>>,
    pub m_edited_at: Option<DateTime<Utc>>,
    pub m_deleted_at: Option<DateTime<Utc>>,
}

impl EventRow {
    pub fn message(&self) -> Option<Message> {
        let m = &self.message;
        Some(Message {
            id: m.m_id?,
            room_id: self.room_id,
            seq: m.m_seq?,
            author_id: m.m_author_id?,
            author_handle: m.m_author_handle.clone()?,
            author_display_name: m.m_author_display_name.clone()?,
            author_image_url: m.m_author_image_url.clone()?,
            text: m.m_text.clone()?,
            created_at: m.m_created_at?,
            edited_at: m.m_edited_at,
            deleted_at: m.m_deleted_at,
        })
    }
}

/// Events of several rooms after a seq each (`rooms[i]`, after `after[i]`), by room then seq,
/// at most `limit` of them in all. Commit order is seq order (the room lock), so what a
/// reader sees of a room after a seq has no gap.
pub async fn events_after(
    db: impl PgExecutor<'_>,
    rooms: &[Uuid],
    after: &[i64],
    limit: i64,
) -> AppResult<Vec<EventRow>> {
    Ok(sqlx::query_as(
        "select e.room_id, e.seq, e.kind, e.actor_id, e.user_id, e.title, e.read_seq, e.created_at,
                m.id as m_id, m.seq as m_seq, m.author_id as m_author_id, u.handle as m_author_handle,
                u.display_name as m_author_display_name, u.image_url as m_author_image_url, m.text as m_text,
                m.created_at as m_created_at, m.edited_at as m_edited_at, m.deleted_at as m_deleted_at
           from unnest($1::uuid[], $2::bigint[]) as q (room_id, after_seq)
           join chat_events e on e.room_id = q.room_id and e.seq > q.after_seq
           left join chat_messages m on m.id = e.message_id
           left join users u on u.id = m.author_id
          order by e.room_id, e.seq
          limit $3",
    )
    .bind(rooms)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// A room of a subscriber: where its stream starts when the room is new to it.
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Membership {
    pub room_id: Uuid,
    /// The seq of the event that added the member.
    pub joined_seq: i64,
    /// Added in the room's creating transaction (the creator and the first members).
    pub at_creation: bool,
    /// The room's latest event.
    pub last_seq: i64,
}

/// Every room of `user` (a stream's rooms). `now()` is the transaction's start, so members
/// added by CreateRoom have `joined_at = created_at` exactly.
pub async fn memberships(db: impl PgExecutor<'_>, user: Uuid) -> AppResult<Vec<Membership>> {
    Ok(sqlx::query_as(
        "select m.room_id, m.joined_seq, (m.joined_at = r.created_at) as at_creation, r.last_seq
           from chat_members m join chat_rooms r on r.id = m.room_id
          where m.user_id = $1",
    )
    .bind(user)
    .fetch_all(db)
    .await?)
}
