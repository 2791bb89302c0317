//! Every SQL statement of events.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{
    Attendance, Category, Coords, CreateEvent, EventPatch, EventRow, FeeStatus, MemberRow, ParticipantRow, PenaltyRow,
    PendingFeeRow, StatsRow,
};
use crate::error::AppResult;

/// Sort key of ListEvents: (starts_at, id), ascending.
pub type EventCursor = (DateTime<Utc>, Uuid);
/// Sort key of ListParticipants: (created_at, user_id).
pub type ParticipantCursor = (DateTime<Utc>, Uuid);
/// Sort key of ListPendingFees: (reported_at, event_id, user_id).
pub type FeeCursor = (DateTime<Utc>, Uuid, Uuid);
/// Sort key of ListPenalties: (created_at, id), descending.
pub type PenaltyCursor = (DateTime<Utc>, Uuid);

const COLUMNS: &str = "e.id, e.community_id, e.title, e.address, e.latitude, e.longitude, e.gender_category, e.fee,
    e.starts_at, e.ends_at, e.description, e.settled_at, e.created_at,
    (select count(*) from event_participants p where p.event_id = e.id) as participant_count";

const PARTICIPANT_COLUMNS: &str = "p.user_id, u.handle, u.display_name, p.attendance, p.fee_status,
    c.checked_in_at, p.created_at";

/// The community's kind, if it exists.
pub async fn community_kind(db: impl PgExecutor<'_>, community_id: Uuid) -> AppResult<Option<String>> {
    Ok(sqlx::query_scalar("select kind from communities where id = $1").bind(community_id).fetch_optional(db).await?)
}

pub async fn insert_event(conn: &mut PgConnection, e: &CreateEvent, at: Coords, by: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into events (id, community_id, title, address, latitude, longitude, gender_category, fee,
                             starts_at, ends_at, description, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(e.community_id)
    .bind(&e.title)
    .bind(&e.address)
    .bind(at.latitude)
    .bind(at.longitude)
    .bind(e.category.as_db())
    .bind(e.fee)
    .bind(e.starts_at)
    .bind(e.ends_at)
    .bind(&e.description)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(id)
}

pub async fn get_event(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<EventRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from events e where e.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// The event under a share lock (settlement, which takes FOR UPDATE, waits for the holder).
pub async fn lock_event_shared(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<EventRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from events e where e.id = $1 for share of e")))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// The event under an exclusive lock.
pub async fn lock_event(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<EventRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("select {COLUMNS} from events e where e.id = $1 for update of e")))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

pub async fn update_event(conn: &mut PgConnection, id: Uuid, p: &EventPatch) -> AppResult<()> {
    sqlx::query(
        "update events
            set title = coalesce($2, title), address = coalesce($3, address),
                latitude = coalesce($4, latitude), longitude = coalesce($5, longitude),
                gender_category = coalesce($6, gender_category), fee = coalesce($7, fee),
                starts_at = coalesce($8, starts_at), ends_at = coalesce($9, ends_at),
                description = coalesce($10, description), updated_at = now()
          where id = $1",
    )
    .bind(id)
    .bind(&p.title)
    .bind(&p.address)
    .bind(p.coords.map(|c| c.latitude))
    .bind(p.coords.map(|c| c.longitude))
    .bind(p.category.map(Category::as_db))
    .bind(p.fee)
    .bind(p.starts_at)
    .bind(p.ends_at)
    .bind(&p.description)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_event(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from events where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
}

/// Events of a community by start, optionally only those a member of `gender` sees
/// (`visible_to = Some(gender)`), in `[from, to)`.
#[allow(clippy::too_many_arguments)]
pub async fn list_events(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    visible_to: Option<Option<Category>>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<EventCursor>,
    limit: i64,
) -> AppResult<Vec<EventRow>> {
    let restricted = visible_to.is_some();
    let gender = visible_to.flatten().map(Category::as_db);
    let (start, id) = after.map_or((None, None), |(s, i)| (Some(s), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from events e
          where e.community_id = $1
            and (not $2 or e.gender_category = 'ALL' or e.gender_category = $3)
            and ($4::timestamptz is null or e.starts_at >= $4)
            and ($5::timestamptz is null or e.starts_at < $5)
            and ($6::timestamptz is null or (e.starts_at, e.id) > ($6, $7))
          order by e.starts_at, e.id
          limit $8"
    )))
    .bind(community_id)
    .bind(restricted)
    .bind(gender)
    .bind(from)
    .bind(to)
    .bind(start)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// The gender of an APPROVED member: `None` when not an APPROVED member, `Some(None)` when unset.
pub async fn member_gender(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<Option<Category>>> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "select gender from community_memberships
          where community_id = $1 and user_id = $2 and status = 'APPROVED'
            and user_id in (select id from users where deleted_at is null)",
    )
    .bind(community_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(g,)| g.as_deref().and_then(Category::from_db)))
}

pub async fn set_member_gender(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Uuid,
    gender: Category,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update community_memberships set gender = $3, updated_at = now()
          where community_id = $1 and user_id = $2 and status = 'APPROVED'",
    )
    .bind(community_id)
    .bind(user_id)
    .bind(gender.as_db())
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn insert_participant(conn: &mut PgConnection, event_id: Uuid, user_id: Uuid, by: Uuid) -> AppResult<()> {
    sqlx::query("insert into event_participants (event_id, user_id, added_by) values ($1, $2, $3)")
        .bind(event_id)
        .bind(user_id)
        .bind(by)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_participant(conn: &mut PgConnection, event_id: Uuid, user_id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from event_participants where event_id = $1 and user_id = $2")
        .bind(event_id)
        .bind(user_id)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

pub async fn get_participant(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<ParticipantRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {PARTICIPANT_COLUMNS}
           from event_participants p
           join users u on u.id = p.user_id
           left join event_check_ins c on c.event_id = p.event_id and c.user_id = p.user_id
          where p.event_id = $1 and p.user_id = $2"
    )))
    .bind(event_id)
    .bind(user_id)
    .fetch_optional(db)
    .await?)
}

/// The participations of `user_id` among `event_ids`.
pub async fn participations(
    db: impl PgExecutor<'_>,
    event_ids: &[Uuid],
    user_id: Uuid,
) -> AppResult<Vec<(Uuid, String, String, Option<DateTime<Utc>>)>> {
    Ok(sqlx::query_as(
        "select p.event_id, p.attendance, p.fee_status, c.checked_in_at
           from event_participants p
           left join event_check_ins c on c.event_id = p.event_id and c.user_id = p.user_id
          where p.event_id = any($1) and p.user_id = $2",
    )
    .bind(event_ids)
    .bind(user_id)
    .fetch_all(db)
    .await?)
}

pub async fn list_participants(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    after: Option<ParticipantCursor>,
    limit: i64,
) -> AppResult<Vec<ParticipantRow>> {
    let (created, id) = after.map_or((None, None), |(c, i)| (Some(c), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {PARTICIPANT_COLUMNS}
           from event_participants p
           join users u on u.id = p.user_id
           left join event_check_ins c on c.event_id = p.event_id and c.user_id = p.user_id
          where p.event_id = $1
            and ($2::timestamptz is null or (p.created_at, p.user_id) > ($2, $3))
          order by p.created_at, p.user_id
          limit $4"
    )))
    .bind(event_id)
    .bind(created)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// APPROVED members of the event's category who are not participants, by user id.
pub async fn list_non_participants(
    db: impl PgExecutor<'_>,
    event: &EventRow,
    after: Option<Uuid>,
    limit: i64,
) -> AppResult<Vec<MemberRow>> {
    Ok(sqlx::query_as(
        "select m.user_id, u.handle, u.display_name
           from community_memberships m
           join users u on u.id = m.user_id
          where m.community_id = $1 and m.status = 'APPROVED' and u.deleted_at is null
            and ($2 = 'ALL' or m.gender = $2)
            and not exists (select 1 from event_participants p where p.event_id = $3 and p.user_id = m.user_id)
            and ($4::uuid is null or m.user_id > $4)
          order by m.user_id
          limit $5",
    )
    .bind(event.community_id)
    .bind(&event.gender_category)
    .bind(event.id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Records the one check-in of a participant (a second violates
/// `event_check_ins_event_id_user_id_key`) and sets their attendance.
pub async fn insert_check_in(
    conn: &mut PgConnection,
    event_id: Uuid,
    user_id: Uuid,
    result: Attendance,
    distance_m: f64,
    at: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "insert into event_check_ins (event_id, user_id, result, distance_m, checked_in_at)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(result.as_db())
    .bind(distance_m)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    set_attendance(conn, event_id, user_id, result).await
}

/// ATTEND whatever the participant's check-in (recorded as forced by `by`).
pub async fn force_attend(
    conn: &mut PgConnection,
    event_id: Uuid,
    user_id: Uuid,
    by: Uuid,
    at: DateTime<Utc>,
) -> AppResult<()> {
    sqlx::query(
        "insert into event_check_ins (event_id, user_id, result, forced_by, checked_in_at)
         values ($1, $2, 'ATTEND', $3, $4)
         on conflict on constraint event_check_ins_event_id_user_id_key
         do update set result = 'ATTEND', forced_by = excluded.forced_by",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(by)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    set_attendance(conn, event_id, user_id, Attendance::Attend).await
}

async fn set_attendance(conn: &mut PgConnection, event_id: Uuid, user_id: Uuid, a: Attendance) -> AppResult<()> {
    sqlx::query(
        "update event_participants set attendance = $3, updated_at = now() where event_id = $1 and user_id = $2",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(a.as_db())
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves the fee from `from` to `to`; `false` when it was not in `from` (or no such participant).
pub async fn transition_fee(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    user_id: Uuid,
    from: FeeStatus,
    to: FeeStatus,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update event_participants set fee_status = $4, updated_at = now()
          where event_id = $1 and user_id = $2 and fee_status = $3",
    )
    .bind(event_id)
    .bind(user_id)
    .bind(from.as_db())
    .bind(to.as_db())
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn fee_status(db: impl PgExecutor<'_>, event_id: Uuid, user_id: Uuid) -> AppResult<Option<FeeStatus>> {
    let s: Option<String> =
        sqlx::query_scalar("select fee_status from event_participants where event_id = $1 and user_id = $2")
            .bind(event_id)
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    Ok(s.as_deref().and_then(FeeStatus::from_db))
}

pub async fn list_pending_fees(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    after: Option<FeeCursor>,
    limit: i64,
) -> AppResult<Vec<PendingFeeRow>> {
    let (at, ev, us) = after.map_or((None, None, None), |(a, e, u)| (Some(a), Some(e), Some(u)));
    Ok(sqlx::query_as(
        "select p.event_id, e.title as event_title, p.user_id, u.handle, e.fee, p.updated_at as reported_at
           from event_participants p
           join events e on e.id = p.event_id
           join users u on u.id = p.user_id
          where e.community_id = $1 and p.fee_status = 'PENDING'
            and ($2::timestamptz is null or (p.updated_at, p.event_id, p.user_id) > ($2, $3, $4))
          order by p.updated_at, p.event_id, p.user_id
          limit $5",
    )
    .bind(community_id)
    .bind(at)
    .bind(ev)
    .bind(us)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Stats of APPROVED members (one with `user_id`), counted over settled events, by user id.
pub async fn member_stats(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Option<Uuid>,
    after: Option<Uuid>,
    limit: i64,
) -> AppResult<Vec<StatsRow>> {
    Ok(sqlx::query_as(
        "select m.user_id, u.handle,
                (select count(*)::int from events e
                  where e.community_id = m.community_id and e.settled_at is not null
                    and (e.gender_category = 'ALL' or e.gender_category = m.gender)) as total,
                coalesce(s.joined, 0) as joined, coalesce(s.attended, 0) as attended,
                coalesce(s.late, 0) as late, coalesce(s.absent, 0) as absent,
                (select coalesce(sum(x.points), 0)::int from event_penalties x
                  where x.community_id = m.community_id and x.user_id = m.user_id) as penalty_points
           from community_memberships m
           join users u on u.id = m.user_id
           left join lateral (
                select count(*)::int as joined,
                       (count(*) filter (where p.attendance = 'ATTEND'))::int as attended,
                       (count(*) filter (where p.attendance = 'LATE'))::int as late,
                       (count(*) filter (where p.attendance = 'ABSENT'))::int as absent
                  from event_participants p join events e on e.id = p.event_id
                 where e.community_id = m.community_id and p.user_id = m.user_id and e.settled_at is not null
           ) s on true
          where m.community_id = $1 and m.status = 'APPROVED' and u.deleted_at is null
            and ($2::uuid is null or m.user_id = $2)
            and ($3::uuid is null or m.user_id > $3)
          order by m.user_id
          limit $4",
    )
    .bind(community_id)
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

pub async fn list_penalties(
    db: impl PgExecutor<'_>,
    community_id: Uuid,
    user_id: Option<Uuid>,
    after: Option<PenaltyCursor>,
    limit: i64,
) -> AppResult<Vec<PenaltyRow>> {
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(
        "select id, event_id, user_id, reason, points, created_at
           from event_penalties
          where community_id = $1
            and ($2::uuid is null or user_id = $2)
            and ($3::timestamptz is null or (created_at, id) < ($3, $4))
          order by created_at desc, id desc
          limit $5",
    )
    .bind(community_id)
    .bind(user_id)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

// ---- settlement (`super::settle`)

/// An ended, unsettled event taken for settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct DueEvent {
    pub event_id: Uuid,
    pub community_id: Uuid,
    pub ends_at: DateTime<Utc>,
    pub fee: i64,
    pub title: String,
}

/// Locks the first event that ended by `now`, is unsettled, is not in `skip` and no other
/// transaction holds (`FOR UPDATE SKIP LOCKED`).
pub async fn take_due_event(conn: &mut PgConnection, now: DateTime<Utc>, skip: &[Uuid]) -> AppResult<Option<DueEvent>> {
    let row: Option<(Uuid, Uuid, DateTime<Utc>, i64, String)> = sqlx::query_as(
        "select id, community_id, ends_at, fee, title from events
          where settled_at is null and ends_at <= $1 and id <> all($2)
          order by ends_at, id
          limit 1
          for update skip locked",
    )
    .bind(now)
    .bind(skip)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(event_id, community_id, ends_at, fee, title)| DueEvent {
        event_id,
        community_id,
        ends_at,
        fee,
        title,
    }))
}

/// Penalty points of a settlement (`events.*_points`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PenaltyPoints {
    pub absent: i32,
    pub late: i32,
    pub not_paid: i32,
}

/// Inserts the penalties of an event's participants; returns their reasons. ABSENT and LATE by
/// attendance; NOT_PAID for a participant who came to an event with a fee and did not pay.
/// Reasons worth 0 points are not recorded.
pub async fn insert_penalties(
    conn: &mut PgConnection,
    event_id: Uuid,
    community_id: Uuid,
    points: PenaltyPoints,
    fee: i64,
) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "insert into event_penalties (id, community_id, event_id, user_id, reason, points)
         select gen_random_uuid(), $2, p.event_id, p.user_id, r.reason, r.points
           from event_participants p
          cross join lateral (values
                ('ABSENT', $3::int, p.attendance = 'ABSENT'),
                ('LATE', $4::int, p.attendance = 'LATE'),
                ('NOT_PAID', $5::int, p.fee_status = 'NOT_PAID' and $6::bigint > 0 and p.attendance <> 'ABSENT')
          ) as r(reason, points, applies)
          where p.event_id = $1 and r.applies and r.points > 0
         returning reason",
    )
    .bind(event_id)
    .bind(community_id)
    .bind(points.absent)
    .bind(points.late)
    .bind(points.not_paid)
    .bind(fee)
    .fetch_all(conn)
    .await?)
}

/// Marks the event settled at `now` (once).
pub async fn update_event_settled(conn: &mut PgConnection, event_id: Uuid, now: DateTime<Utc>) -> AppResult<()> {
    sqlx::query("update events set settled_at = $2, updated_at = now() where id = $1 and settled_at is null")
        .bind(event_id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// The end of the oldest event that ended by `now` and is not settled.
pub async fn oldest_unsettled_end(db: impl PgExecutor<'_>, now: DateTime<Utc>) -> AppResult<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("select min(ends_at) from events where settled_at is null and ends_at <= $1")
        .bind(now)
        .fetch_one(db)
        .await?)
}

// ---- the settlement webhook outbox (`super::outbox`)

pub async fn community_name(conn: &mut PgConnection, community_id: Uuid) -> AppResult<String> {
    Ok(sqlx::query_scalar("select name from communities where id = $1").bind(community_id).fetch_one(conn).await?)
}

/// The notice of an event's settlement; at most one per event
/// (`event_webhook_outbox_event_id_key`).
pub async fn insert_notice(conn: &mut PgConnection, event_id: Uuid, payload: &serde_json::Value) -> AppResult<()> {
    sqlx::query(
        "insert into event_webhook_outbox (id, event_id, payload) values ($1, $2, $3)
         on conflict on constraint event_webhook_outbox_event_id_key do nothing",
    )
    .bind(Uuid::now_v7())
    .bind(event_id)
    .bind(payload)
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the next notice due for delivery (`(id, payload, attempts)`) that no other transaction
/// holds and that has had fewer than `max_attempts`.
pub async fn take_due_notice(
    conn: &mut PgConnection,
    max_attempts: i32,
) -> AppResult<Option<(Uuid, serde_json::Value, i32)>> {
    Ok(sqlx::query_as(
        "select id, payload, attempts from event_webhook_outbox
          where delivered_at is null and next_attempt_at <= now() and attempts < $1
          order by next_attempt_at, id
          limit 1
          for update skip locked",
    )
    .bind(max_attempts)
    .fetch_optional(conn)
    .await?)
}

pub async fn update_notice_delivered(conn: &mut PgConnection, id: Uuid) -> AppResult<()> {
    sqlx::query(
        "update event_webhook_outbox set delivered_at = now(), attempts = attempts + 1, last_error = null
          where id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt and when to try again (`backoff_ms` from now).
pub async fn update_notice_failed(conn: &mut PgConnection, id: Uuid, error: &str, backoff_ms: f64) -> AppResult<()> {
    sqlx::query(
        "update event_webhook_outbox
            set attempts = attempts + 1, last_error = $2,
                next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
          where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(backoff_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notices not delivered yet (given-up ones included).
pub async fn count_undelivered_notices(db: impl PgExecutor<'_>) -> AppResult<i64> {
    Ok(sqlx::query_scalar("select count(*) from event_webhook_outbox where delivered_at is null").fetch_one(db).await?)
}
