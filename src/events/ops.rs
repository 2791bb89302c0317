//! The use cases of `EventService`. Who may do what:
//!
//! | RPC | who |
//! |---|---|
//! | CreateEvent, UpdateEvent, DeleteEvent, AddParticipant, RemoveParticipant, ListNonParticipants, SetMemberGender, ForceAttend, ListPendingFees, ConfirmFee, RejectFee, ListMemberStats | managers, admins |
//! | GetEvent, ListEvents, ListParticipants | members (events of their category), managers, admins |
//! | CheckIn, ReportFeePaid | participants |
//! | GetMemberStats, ListPenalties | managers and admins for anyone; members for themselves |

use chrono::Duration;
use sqlx::{PgConnection, PgExecutor};
use tonic::Code;
use uuid::Uuid;

use super::geocode;
use super::model::{
    Attendance, Category, CheckIn, CheckInFacts, CheckInRules, Coords, CreateEvent, EventRow, EventUser, EventView,
    FeeStatus, ListEvents, MemberRow, ParticipantRow, Participation, PenaltyRow, PendingFeeRow, StatsRow, UpdateEvent,
    Venue, haversine_m, shown_metres, shown_radius, too_far_message,
};
use super::store;
use crate::caller::Caller;
use crate::communities::access::{self, Access};
use crate::error::{AppError, AppResult, Reason, Violations};
use crate::idempotency::{RequestId, remember, replayed};
use crate::state::AppState;

fn event_not_found() -> AppError {
    AppError::not_found(Reason::EventNotFound, "event")
}

fn settled() -> AppError {
    AppError::failed_precondition(Reason::EventSettled, "the event's penalties are settled; it can no longer change")
}

/// The event, if the caller may see it: an APPROVED member of its community whose gender is in
/// its category, a manager or an admin. Anything else is NOT_FOUND `EVENT_NOT_FOUND`.
async fn visible_event(state: &AppState, caller: &Caller, event_id: Uuid) -> AppResult<(EventRow, Access)> {
    let event = store::get_event(&state.db, event_id).await?.ok_or_else(event_not_found)?;
    let access = match access::member(&state.db, caller, event.community_id).await {
        Err(e) if matches!(e.code(), Code::PermissionDenied | Code::NotFound) => return Err(event_not_found()),
        other => other?,
    };
    if !access.can_manage() {
        let gender = store::member_gender(&state.db, event.community_id, caller.user_id).await?.flatten();
        if !event.category().admits(gender) {
            return Err(event_not_found());
        }
    }
    Ok((event, access))
}

/// A visible event the caller manages (PERMISSION_DENIED `MANAGER_REQUIRED` for members).
async fn managed_event(state: &AppState, caller: &Caller, event_id: Uuid) -> AppResult<EventRow> {
    let (event, access) = visible_event(state, caller, event_id).await?;
    if !access.can_manage() {
        return Err(AppError::permission_denied(Reason::ManagerRequired, "community manager role required"));
    }
    Ok(event)
}

async fn views(db: impl PgExecutor<'_>, caller: &Caller, rows: Vec<EventRow>) -> AppResult<Vec<EventView>> {
    let ids: Vec<Uuid> = rows.iter().map(|e| e.id).collect();
    let mine: std::collections::HashMap<Uuid, Participation> = store::participations(db, &ids, caller.user_id)
        .await?
        .into_iter()
        .map(|(id, a, f, at)| {
            let p = Participation {
                attendance: Attendance::from_db(&a).unwrap_or(Attendance::Absent),
                fee_status: FeeStatus::from_db(&f).unwrap_or(FeeStatus::NotPaid),
                checked_in_at: at,
            };
            (id, p)
        })
        .collect();
    Ok(rows
        .into_iter()
        .map(|e| EventView {
            category: e.category(),
            mine: mine.get(&e.id).cloned(),
            id: e.id,
            community_id: e.community_id,
            title: e.title,
            address: e.address,
            coords: Coords { latitude: e.latitude, longitude: e.longitude },
            fee: e.fee,
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            description: e.description,
            settled_at: e.settled_at,
            created_at: e.created_at,
            participant_count: e.participant_count,
        })
        .collect())
}

/// One event as `caller` sees it, read on `conn`: writes read their answer inside their
/// transaction, so a committed write is never answered with a retryable error.
async fn view(conn: &mut PgConnection, caller: &Caller, event_id: Uuid) -> AppResult<EventView> {
    let row = store::get_event(&mut *conn, event_id).await?.ok_or_else(event_not_found)?;
    views(&mut *conn, caller, vec![row]).await?.pop().ok_or_else(event_not_found)
}

#[tracing::instrument(name = "events.create_event", skip_all, err(level = "debug"))]
pub async fn create_event(state: &AppState, caller: &Caller, cmd: CreateEvent) -> AppResult<EventView> {
    access::manager(&state.db, caller, cmd.community_id).await?;
    if store::community_kind(&state.db, cmd.community_id).await?.as_deref() != Some("SPORTS_CLUB") {
        return Err(AppError::failed_precondition(Reason::NotSportsClub, "events belong to sports clubs only"));
    }
    // Before the transaction: no connection is held during the HTTP call (results are cached).
    let at = match cmd.venue {
        Venue::Explicit(c) => c,
        Venue::Geocode => geocode::resolve(state, &cmd.address).await?,
    };
    let mut tx = crate::db::begin(&state.db).await?;
    let event_id = match replayed::<Uuid>(state, &mut tx, "CreateEvent", caller, cmd.request_id.as_ref(), &cmd).await? {
        Some(id) => id,
        None => {
            let id = store::insert_event(&mut tx, &cmd, at, caller.user_id).await?;
            remember(&mut tx, "CreateEvent", caller, cmd.request_id.as_ref(), &id).await?;
            id
        }
    };
    let event = view(&mut tx, caller, event_id).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(event)
}

#[tracing::instrument(name = "events.update_event", skip_all, err(level = "debug"))]
pub async fn update_event(state: &AppState, caller: &Caller, mut cmd: UpdateEvent) -> AppResult<EventView> {
    managed_event(state, caller, cmd.event_id).await?;
    if cmd.patch.geocode
        && let Some(address) = &cmd.patch.address
    {
        cmd.patch.coords = Some(geocode::resolve(state, address).await?);
    }
    let p = &cmd.patch;
    let mut tx = crate::db::begin(&state.db).await?;
    let event = store::lock_event(&mut tx, cmd.event_id).await?.ok_or_else(event_not_found)?;
    let category_changes = p.category.is_some_and(|c| c != event.category());
    if event.settled_at.is_some() && (category_changes || p.starts_at.is_some() || p.ends_at.is_some()) {
        return Err(settled());
    }
    if category_changes && event.participant_count > 0 {
        return Err(AppError::failed_precondition(
            Reason::CategoryLocked,
            "the gender category cannot change once the event has participants",
        ));
    }
    if p.ends_at.unwrap_or(event.ends_at) <= p.starts_at.unwrap_or(event.starts_at) {
        return Err(Violations::one("ends_at", "must be after starts_at").into_error());
    }
    store::update_event(&mut tx, cmd.event_id, p).await?;
    let event = view(&mut tx, caller, cmd.event_id).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(event)
}

#[tracing::instrument(name = "events.delete_event", skip_all, err(level = "debug"))]
pub async fn delete_event(state: &AppState, caller: &Caller, event_id: Uuid) -> AppResult<()> {
    managed_event(state, caller, event_id).await?;
    if store::delete_event(&state.db, event_id).await? { Ok(()) } else { Err(event_not_found()) }
}

#[tracing::instrument(name = "events.get_event", skip_all, err(level = "debug"))]
pub async fn get_event(state: &AppState, caller: &Caller, event_id: Uuid) -> AppResult<EventView> {
    let (event, _) = visible_event(state, caller, event_id).await?;
    views(&state.db, caller, vec![event]).await?.pop().ok_or_else(event_not_found)
}

/// Events by start time: members see their category's, managers every one.
#[tracing::instrument(name = "events.list_events", skip_all, err(level = "debug"))]
pub async fn list_events(state: &AppState, caller: &Caller, q: ListEvents) -> AppResult<(Vec<EventView>, String)> {
    let query = ("events", q.community_id, q.from, q.to);
    let page = state.pager.page::<store::EventCursor>(q.page_size, &q.page_token, &query)?;
    let access = access::member(&state.db, caller, q.community_id).await?;
    let visible_to = if access.can_manage() {
        None
    } else {
        Some(store::member_gender(&state.db, q.community_id, caller.user_id).await?.flatten())
    };
    let rows =
        store::list_events(&state.db, q.community_id, visible_to, q.from, q.to, page.after, page.fetch_limit()).await?;
    let (rows, next) = state.pager.finish(&page, rows, &query, |e| (e.starts_at, e.id));
    Ok((views(&state.db, caller, rows).await?, next))
}

#[tracing::instrument(name = "events.add_participant", skip_all, err(level = "debug"))]
pub async fn add_participant(
    state: &AppState,
    caller: &Caller,
    cmd: EventUser,
    request_id: Option<&RequestId>,
) -> AppResult<ParticipantRow> {
    managed_event(state, caller, cmd.event_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    // A retry after a lost reply gets the participant, not ALREADY_PARTICIPANT.
    if let Some(first) = replayed(state, &mut tx, "AddParticipant", caller, request_id, &cmd).await? {
        return Ok(first);
    }
    let event = store::lock_event_shared(&mut tx, cmd.event_id).await?.ok_or_else(event_not_found)?;
    if event.settled_at.is_some() {
        return Err(settled());
    }
    let Some(gender) = store::member_gender(&mut *tx, event.community_id, cmd.user_id).await? else {
        return Err(AppError::not_found(Reason::MemberNotFound, "member"));
    };
    if !event.category().admits(gender) {
        return Err(AppError::failed_precondition(
            Reason::CategoryMismatch,
            "the member's gender is outside the event's category",
        ));
    }
    store::insert_participant(&mut tx, cmd.event_id, cmd.user_id, caller.user_id).await?;
    let row = participant(&mut tx, cmd).await?;
    remember(&mut tx, "AddParticipant", caller, request_id, &row).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(row)
}

/// Read inside the writing transaction (see [`view`]).
async fn participant(conn: &mut PgConnection, cmd: EventUser) -> AppResult<ParticipantRow> {
    store::get_participant(conn, cmd.event_id, cmd.user_id)
        .await?
        .ok_or_else(|| AppError::not_found(Reason::ParticipantNotFound, "participant"))
}

#[tracing::instrument(name = "events.remove_participant", skip_all, err(level = "debug"))]
pub async fn remove_participant(state: &AppState, caller: &Caller, cmd: EventUser) -> AppResult<()> {
    managed_event(state, caller, cmd.event_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let event = store::lock_event_shared(&mut tx, cmd.event_id).await?.ok_or_else(event_not_found)?;
    if event.settled_at.is_some() {
        return Err(settled());
    }
    if !store::delete_participant(&mut tx, cmd.event_id, cmd.user_id).await? {
        return Err(AppError::not_found(Reason::ParticipantNotFound, "participant"));
    }
    crate::db::commit(&state.db, tx).await?;
    Ok(())
}

#[tracing::instrument(name = "events.list_participants", skip_all, err(level = "debug"))]
pub async fn list_participants(
    state: &AppState,
    caller: &Caller,
    event_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<ParticipantRow>, String)> {
    let query = ("participants", event_id);
    let page = state.pager.page::<store::ParticipantCursor>(page_size, page_token, &query)?;
    visible_event(state, caller, event_id).await?;
    let rows = store::list_participants(&state.db, event_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |p| (p.created_at, p.user_id)))
}

#[tracing::instrument(name = "events.list_non_participants", skip_all, err(level = "debug"))]
pub async fn list_non_participants(
    state: &AppState,
    caller: &Caller,
    event_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<MemberRow>, String)> {
    let query = ("non_participants", event_id);
    let page = state.pager.page::<Uuid>(page_size, page_token, &query)?;
    let event = managed_event(state, caller, event_id).await?;
    let rows = store::list_non_participants(&state.db, &event, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |m| m.user_id))
}

#[tracing::instrument(name = "events.set_member_gender", skip_all, err(level = "debug"))]
pub async fn set_member_gender(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    user_id: Uuid,
    gender: Category,
) -> AppResult<()> {
    access::manager(&state.db, caller, community_id).await?;
    if store::set_member_gender(&state.db, community_id, user_id, gender).await? {
        Ok(())
    } else {
        Err(AppError::not_found(Reason::MemberNotFound, "member"))
    }
}

fn not_participant() -> AppError {
    AppError::failed_precondition(Reason::NotParticipant, "you are not a participant of this event")
}

fn count_check_in(result: &'static str) {
    metrics::counter!("maru_event_check_ins_total", "result" => result).increment(1);
}

/// A participant checks in at their position: ATTEND or LATE, or a specific refusal.
#[tracing::instrument(name = "events.check_in", skip_all, err(level = "debug"))]
pub async fn check_in(state: &AppState, caller: &Caller, cmd: CheckIn) -> AppResult<(Attendance, f64)> {
    visible_event(state, caller, cmd.event_id).await?;
    let cfg = &state.settings.events;
    let rules = CheckInRules {
        radius_m: cfg.check_in_radius_m,
        opens_before: Duration::minutes(cfg.check_in_opens_min),
        late_after: Duration::minutes(cfg.late_after_min),
    };
    let mut tx = crate::db::begin(&state.db).await?;
    // A retry after a lost reply gets its attendance, not ALREADY_CHECKED_IN.
    if let Some(first) = replayed(state, &mut tx, "CheckIn", caller, cmd.request_id.as_ref(), &cmd).await? {
        return Ok(first);
    }
    // Share lock: settlement waits for this check-in, or this check-in sees the event settled.
    let event = store::lock_event_shared(&mut tx, cmd.event_id).await?.ok_or_else(event_not_found)?;
    let me = store::get_participant(&mut *tx, cmd.event_id, caller.user_id).await?.ok_or_else(not_participant)?;
    let now = state.clock.now();
    let venue = Coords { latitude: event.latitude, longitude: event.longitude };
    let distance = haversine_m(venue, cmd.at);
    let facts = CheckInFacts {
        now,
        starts_at: event.starts_at,
        ends_at: event.ends_at,
        settled: event.settled_at.is_some(),
        distance_m: distance,
        checked_in: me.checked_in_at.is_some(),
    };
    let attendance = match super::model::check_in(&rules, &facts) {
        Ok(a) => a,
        Err(Reason::TooFar) => {
            count_check_in("too_far");
            return Err(AppError::failed_precondition(Reason::TooFar, too_far_message(distance, rules.radius_m))
                .with_meta("distance_m", shown_metres(distance))
                .with_meta("radius_m", shown_radius(rules.radius_m)));
        }
        Err(Reason::NotOpenYet) => {
            count_check_in("not_open_yet");
            let opens = event.starts_at - rules.opens_before;
            return Err(AppError::failed_precondition(Reason::NotOpenYet, "check-in is not open yet")
                .with_meta("opens_at", opens.to_rfc3339()));
        }
        Err(Reason::AlreadyCheckedIn) => {
            count_check_in("already_checked_in");
            return Err(already_checked_in());
        }
        Err(reason) => {
            count_check_in("event_ended");
            return Err(AppError::failed_precondition(reason, "the event has ended"));
        }
    };
    match store::insert_check_in(&mut tx, cmd.event_id, caller.user_id, attendance, distance, now).await {
        Err(e) if e.reason() == Reason::AlreadyCheckedIn => {
            count_check_in("already_checked_in");
            return Err(e);
        }
        other => other?,
    }
    remember(&mut tx, "CheckIn", caller, cmd.request_id.as_ref(), &(attendance, distance)).await?;
    crate::db::commit(&state.db, tx).await?;
    count_check_in(match attendance {
        Attendance::Late => "late",
        _ => "attend",
    });
    Ok((attendance, distance))
}

fn already_checked_in() -> AppError {
    AppError::already_exists(Reason::AlreadyCheckedIn, "you have already checked in to this event")
}

#[tracing::instrument(name = "events.force_attend", skip_all, err(level = "debug"))]
pub async fn force_attend(state: &AppState, caller: &Caller, cmd: EventUser) -> AppResult<ParticipantRow> {
    managed_event(state, caller, cmd.event_id).await?;
    let mut tx = crate::db::begin(&state.db).await?;
    let event = store::lock_event_shared(&mut tx, cmd.event_id).await?.ok_or_else(event_not_found)?;
    if event.settled_at.is_some() {
        return Err(settled());
    }
    if store::get_participant(&mut *tx, cmd.event_id, cmd.user_id).await?.is_none() {
        return Err(AppError::not_found(Reason::ParticipantNotFound, "participant"));
    }
    store::force_attend(&mut tx, cmd.event_id, cmd.user_id, caller.user_id, state.clock.now()).await?;
    let row = participant(&mut tx, cmd).await?;
    crate::db::commit(&state.db, tx).await?;
    count_check_in("forced");
    Ok(row)
}

/// Moves a fee `from` → `to` by a conditional UPDATE; on a miss, the specific reason from the
/// current state. `key` (method, caller, request id) makes the move idempotent per request id.
async fn transition(
    state: &AppState,
    e: EventUser,
    from: FeeStatus,
    to: FeeStatus,
    own: bool,
    key: Option<(&str, &Caller, Option<&RequestId>)>,
) -> AppResult<FeeStatus> {
    let mut tx = crate::db::begin(&state.db).await?;
    if let Some((method, caller, rid)) = key
        && let Some(first) = replayed(state, &mut tx, method, caller, rid, &e).await?
    {
        return Ok(first);
    }
    if store::transition_fee(&mut *tx, e.event_id, e.user_id, from, to).await? {
        if let Some((method, caller, rid)) = key {
            remember(&mut tx, method, caller, rid, &to).await?;
        }
        crate::db::commit(&state.db, tx).await?;
        metrics::counter!("maru_event_fee_transitions_total", "to" => to.label()).increment(1);
        return Ok(to);
    }
    drop(tx);
    Err(match store::fee_status(&state.db, e.event_id, e.user_id).await? {
        None if own => not_participant(),
        None => AppError::not_found(Reason::ParticipantNotFound, "participant"),
        Some(FeeStatus::Paid) => AppError::failed_precondition(Reason::FeeAlreadyPaid, "the fee is already paid"),
        Some(FeeStatus::Pending) => AppError::failed_precondition(
            Reason::FeeAlreadyReported,
            "the fee is already reported as paid and awaits a manager",
        ),
        Some(FeeStatus::NotPaid) => {
            AppError::failed_precondition(Reason::FeeNotPending, "the fee is not pending a manager's decision")
        }
    })
}

#[tracing::instrument(name = "events.report_fee_paid", skip_all, err(level = "debug"))]
pub async fn report_fee_paid(
    state: &AppState,
    caller: &Caller,
    event_id: Uuid,
    request_id: Option<&RequestId>,
) -> AppResult<FeeStatus> {
    let (event, _) = visible_event(state, caller, event_id).await?;
    if event.fee == 0 {
        return Err(AppError::failed_precondition(Reason::NoFee, "the event has no fee"));
    }
    let me = EventUser { event_id, user_id: caller.user_id };
    // A retry after a lost reply gets PENDING, not FEE_ALREADY_REPORTED.
    let key = Some(("ReportFeePaid", caller, request_id));
    transition(state, me, FeeStatus::NotPaid, FeeStatus::Pending, true, key).await
}

#[tracing::instrument(name = "events.confirm_fee", skip_all, err(level = "debug"))]
pub async fn confirm_fee(state: &AppState, caller: &Caller, cmd: EventUser) -> AppResult<FeeStatus> {
    managed_event(state, caller, cmd.event_id).await?;
    transition(state, cmd, FeeStatus::Pending, FeeStatus::Paid, false, None).await
}

#[tracing::instrument(name = "events.reject_fee", skip_all, err(level = "debug"))]
pub async fn reject_fee(state: &AppState, caller: &Caller, cmd: EventUser) -> AppResult<FeeStatus> {
    managed_event(state, caller, cmd.event_id).await?;
    transition(state, cmd, FeeStatus::Pending, FeeStatus::NotPaid, false, None).await
}

#[tracing::instrument(name = "events.list_pending_fees", skip_all, err(level = "debug"))]
pub async fn list_pending_fees(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<PendingFeeRow>, String)> {
    let query = ("pending_fees", community_id);
    let page = state.pager.page::<store::FeeCursor>(page_size, page_token, &query)?;
    access::manager(&state.db, caller, community_id).await?;
    let rows = store::list_pending_fees(&state.db, community_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |f| (f.reported_at, f.event_id, f.user_id)))
}

fn self_or_manager(access: &Access, caller: &Caller, user_id: Option<Uuid>) -> AppResult<()> {
    if access.can_manage() || user_id.is_none_or(|u| u == caller.user_id) {
        Ok(())
    } else {
        Err(AppError::permission_denied(Reason::ManagerRequired, "only managers see other members' records"))
    }
}

#[tracing::instrument(name = "events.get_member_stats", skip_all, err(level = "debug"))]
pub async fn get_member_stats(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    user_id: Uuid,
) -> AppResult<StatsRow> {
    let access = access::member(&state.db, caller, community_id).await?;
    self_or_manager(&access, caller, Some(user_id))?;
    store::member_stats(&state.db, community_id, Some(user_id), None, 1)
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found(Reason::MemberNotFound, "member"))
}

#[tracing::instrument(name = "events.list_member_stats", skip_all, err(level = "debug"))]
pub async fn list_member_stats(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<StatsRow>, String)> {
    let query = ("member_stats", community_id);
    let page = state.pager.page::<Uuid>(page_size, page_token, &query)?;
    access::manager(&state.db, caller, community_id).await?;
    let rows = store::member_stats(&state.db, community_id, None, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |s| s.user_id))
}

#[tracing::instrument(name = "events.list_penalties", skip_all, err(level = "debug"))]
pub async fn list_penalties(
    state: &AppState,
    caller: &Caller,
    community_id: Uuid,
    user_id: Option<Uuid>,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<PenaltyRow>, String)> {
    let access = access::member(&state.db, caller, community_id).await?;
    self_or_manager(&access, caller, user_id)?;
    let user_id = if access.can_manage() { user_id } else { Some(caller.user_id) };
    let query = ("penalties", community_id, user_id);
    let page = state.pager.page::<store::PenaltyCursor>(page_size, page_token, &query)?;
    let rows = store::list_penalties(&state.db, community_id, user_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |p| (p.created_at, p.id)))
}

/// Describes the events metrics (recorded here, in `settle`, `outbox` and the settlement job);
/// called once by the telemetry start-up, so every family has its HELP line (docs/events.md).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "maru_event_check_ins_total",
        "Event check-ins by result (attend, late, forced; refusals too_far, not_open_yet, event_ended, already_checked_in)."
    );
    describe_counter!("maru_event_fee_transitions_total", "Event fee status changes by target status.");
    describe_counter!("maru_event_penalties_total", "Penalty rows written by settlements, by reason.");
    describe_counter!("maru_event_settlements_total", "Events settled (each exactly once).");
    describe_histogram!(
        "maru_event_settlement_lag_seconds",
        Unit::Seconds,
        "Time from an event's end to its settlement."
    );
    describe_gauge!(
        "maru_event_settlement_pending_seconds",
        Unit::Seconds,
        "Age of the oldest ended, unsettled event (0 when none; from the database, on every replica)."
    );
    describe_counter!("maru_event_webhook_deliveries_total", "Settlement webhook POSTs by result (delivered, failed).");
    describe_gauge!(
        "maru_event_outbox_backlog",
        "Settlement notices not delivered yet, given-up ones included (from the database, on every replica)."
    );
}
