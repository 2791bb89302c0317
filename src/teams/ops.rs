//! Team-building use cases. Who may do what (member = APPROVED member of the team's club;
//! manager = its MANAGER; admin = deployment ADMIN, who reads and moderates like a manager but
//! does not act in their own name):
//!
//! | op | who |
//! |---|---|
//! | propose_team | members (the community must be a CLUB) |
//! | approve_team, reject_team | managers, admins |
//! | get_team, list_team_members | members, admins; a team not yet approved only its leader, managers, admins |
//! | list_teams | members, admins; PENDING_APPROVAL / REJECTED lists managers and admins only |
//! | update_team, set_team_state, decide_application, remove_team_member | the leader |
//! | delete_team | the leader, managers, admins |
//! | apply, like_team, unlike_team | members |
//! | withdraw_application | the applicant |
//! | list_applications | a team's: leader, managers, admins all, other members their own; else the caller's own |
//! | leave_team | members of the team but the leader |
//!
//! Decided by the database: title unique per club (`teams_community_id_title_key`), one
//! application per (user, team, role) (`team_applications_team_id_user_id_role_key`), one seat
//! per member and team (`team_members_pkey`), seats never over-filled (the conditional update
//! of [`store::take_seat`] under the role row's lock, and `team_roles_filled_check`), one like
//! per user and team, edits conditional on the etag's version. A team's image is an attached
//! media (`crate::media::attach`, TEAM_IMAGE), seen by whoever sees the team ([`sees_team`]).

use std::collections::HashSet;

use futures::future::BoxFuture;
use tonic::Code;
use uuid::Uuid;

use super::model::{
    Application, ApplicationState, Apply, ProposeTeam, RoleConflict, Team, TeamFilter, TeamMember, TeamState, TeamView,
    UpdateTeam,
};
use super::store::{self, ApplicationCursor, MemberCursor, TeamCursor};
use crate::caller::Caller;
use crate::communities::access::{self, Access};
use crate::error::{AppError, AppResult, Reason};
use crate::idempotency::{remember, replayed};
use crate::media::attach;
use crate::state::AppState;

pub fn team_not_found() -> AppError {
    AppError::not_found(Reason::TeamNotFound, "team")
}

fn application_not_found() -> AppError {
    AppError::not_found(Reason::ApplicationNotFound, "application")
}

fn leader_required() -> AppError {
    AppError::permission_denied(Reason::TeamLeaderRequired, "only the team's leader may do this")
}

fn membership_required() -> AppError {
    AppError::permission_denied(Reason::MembershipRequired, "an approved membership of this club is required")
}

fn invalid_state(team: &Team, to: TeamState) -> AppError {
    AppError::failed_precondition(
        Reason::InvalidTeamState,
        format!("a {} team cannot become {}", team.state, to.as_db()),
    )
    .with_meta("from", &team.state)
    .with_meta("to", to.as_db())
}

fn applications_closed() -> AppError {
    AppError::failed_precondition(Reason::ApplicationsClosed, "the team is not recruiting")
}

fn role_full(role: &str) -> AppError {
    AppError::failed_precondition(Reason::RoleFull, "no seat of this role is left").with_meta("role", role)
}

/// The team, if the caller may see it, and the caller's access to its club: members and admins
/// see approved teams; a team not approved yet only its leader, managers and admins.
pub async fn visible_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<(Team, Access)> {
    let team = super::cache::get_team_cached(state, id).await?.ok_or_else(team_not_found)?;
    let access = access::member(&state.db, caller, team.community_id).await?;
    if !team.state().is_listed() && team.leader_id != caller.user_id && !access.can_manage() {
        return Err(team_not_found());
    }
    Ok((team, access))
}

/// Whether `caller` sees team `id`: the teams' reader for `crate::media::attach` (a team's
/// image is seen by whoever sees the team).
pub fn sees_team<'a>(state: &'a AppState, caller: &'a Caller, id: Uuid) -> BoxFuture<'a, AppResult<bool>> {
    Box::pin(async move {
        match visible_team(state, caller, id).await {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Code::NotFound | Code::PermissionDenied) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

async fn reload(state: &AppState, id: Uuid) -> AppResult<Team> {
    store::get_team(&mut *state.db.acquire().await?, id).await?.ok_or_else(team_not_found)
}

async fn with_likes(state: &AppState, caller: &Caller, teams: Vec<Team>) -> AppResult<Vec<TeamView>> {
    let liked: HashSet<Uuid> = if teams.is_empty() {
        HashSet::new()
    } else {
        let ids: Vec<Uuid> = teams.iter().map(|t| t.id).collect();
        store::liked_teams(&state.db, caller.user_id, &ids).await?.into_iter().collect()
    };
    Ok(teams.into_iter().map(|t| TeamView { liked_by_me: liked.contains(&t.id), team: t }).collect())
}

async fn one_with_likes(state: &AppState, caller: &Caller, team: Team) -> AppResult<TeamView> {
    with_likes(state, caller, vec![team]).await?.pop().ok_or_else(team_not_found)
}

#[tracing::instrument(name = "teams.propose_team", skip_all, err(level = "debug"))]
pub async fn propose_team(state: &AppState, caller: &Caller, cmd: ProposeTeam) -> AppResult<TeamView> {
    access::resident(&state.db, caller, cmd.community_id).await?;
    if store::community_kind(&state.db, cmd.community_id).await?.as_deref() != Some("CLUB") {
        return Err(AppError::failed_precondition(Reason::NotClub, "teams are built in CLUB communities"));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    let id = match replayed::<Uuid>(state, &mut tx, "ProposeTeam", caller, cmd.request_id.as_ref(), &cmd).await? {
        // Return the connection before reading the team on another one: concurrent replays
        // holding theirs would exhaust a small pool.
        Some(id) => {
            tx.rollback().await?;
            id
        }
        None => {
            let id = store::insert_team(&mut tx, &cmd, caller.user_id).await?;
            attach::set(&mut tx, caller.user_id, attach::Kind::Team, id, &cmd.media_ids, "media_id").await?;
            remember(&mut tx, "ProposeTeam", caller, cmd.request_id.as_ref(), &id).await?;
            crate::db::commit(&state.db, tx).await?;
            metrics::counter!("maru_teams_proposed_total").increment(1);
            super::cache::team_listed(state, cmd.community_id).await;
            id
        }
    };
    let team = reload(state, id).await?;
    one_with_likes(state, caller, team).await
}

/// A manager's decision on a proposed team: RECRUITING (`approve`) or REJECTED.
#[tracing::instrument(name = "teams.decide_team", skip_all, err(level = "debug"))]
pub async fn decide_team(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    approve: bool,
    note: &str,
) -> AppResult<TeamView> {
    let team = super::cache::get_team_cached(state, id).await?.ok_or_else(team_not_found)?;
    access::manager(&state.db, caller, team.community_id).await?;
    let to = if approve { TeamState::Recruiting } else { TeamState::Rejected };
    if !store::set_team_state(&state.db, id, TeamState::PendingApproval, to, Some((note, caller.user_id))).await? {
        return Err(invalid_state(&reload(state, id).await?, to));
    }
    super::cache::team_changed(state, &team).await;
    let outcome = if approve { "approved" } else { "rejected" };
    metrics::counter!("maru_team_decisions_total", "outcome" => outcome).increment(1);
    one_with_likes(state, caller, reload(state, id).await?).await
}

#[tracing::instrument(name = "teams.get_team", skip_all, err(level = "debug"))]
pub async fn get_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<TeamView> {
    let (team, _) = visible_team(state, caller, id).await?;
    crate::views::record(state, &super::views::TARGET, team.id, Some(caller.user_id), None).await;
    one_with_likes(state, caller, team).await
}

/// A page of a club's teams.
#[tracing::instrument(name = "teams.list_teams", skip_all, err(level = "debug"))]
pub async fn list_teams(
    state: &AppState,
    caller: &Caller,
    filter: TeamFilter,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<TeamView>, String)> {
    let query = ("teams", &filter);
    let page = state.pager.page::<TeamCursor>(page_size, page_token, &query)?;
    let access = access::member(&state.db, caller, filter.community_id).await?;
    let states: Vec<TeamState> = match filter.state {
        Some(s) if !s.is_listed() && !access.can_manage() => {
            return Err(AppError::permission_denied(
                Reason::ManagerRequired,
                "teams awaiting approval or rejected are listed to managers",
            ));
        }
        Some(s) => vec![s],
        None => TeamState::ALL.iter().copied().filter(|s| s.is_listed()).collect(),
    };
    let rows = super::cache::list_teams_cached(state, &filter, &states, page.after, page.fetch_limit()).await?;
    let sort = filter.sort;
    let (rows, next) = state.pager.finish(&page, rows, &query, |t| {
        let k = match sort {
            super::model::TeamSort::Newest => 0,
            super::model::TeamSort::MostLiked => t.like_count,
            super::model::TeamSort::MostViewed => t.view_count,
        };
        (k, t.created_at, t.id)
    });
    Ok((with_likes(state, caller, rows).await?, next))
}

#[tracing::instrument(name = "teams.update_team", skip_all, err(level = "debug"))]
pub async fn update_team(state: &AppState, caller: &Caller, cmd: UpdateTeam) -> AppResult<TeamView> {
    let (team, _) = visible_team(state, caller, cmd.team_id).await?;
    if team.leader_id != caller.user_id {
        return Err(leader_required());
    }
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::update_team(&mut *tx, team.id, &cmd.patch, cmd.expected_version).await? {
        drop(tx);
        let now = reload(state, team.id).await?;
        return Err(AppError::refused(Code::Aborted, Reason::EtagMismatch, "the team changed since it was read")
            .with_meta("etag", now.etag()));
    }
    if let Some(roles) = &cmd.patch.roles
        && let Some(conflict) = store::set_roles(&mut tx, team.id, roles).await?
    {
        return Err(match conflict {
            RoleConflict::NotEmpty { role } => AppError::failed_precondition(
                Reason::RoleNotEmpty,
                "a role with members cannot be removed (the leader's role always has one)",
            )
            .with_meta("role", role),
            RoleConflict::BelowFilled { role, filled } => AppError::failed_precondition(
                Reason::CapacityBelowFilled,
                format!("{role} already has {filled} members: its capacity cannot be lower"),
            )
            .with_meta("role", role)
            .with_meta("filled", filled.to_string()),
        });
    }
    if let Some(ids) = &cmd.patch.media_ids {
        attach::set(&mut tx, caller.user_id, attach::Kind::Team, team.id, ids, "media_id").await?;
    }
    crate::db::commit(&state.db, tx).await?;
    super::cache::team_changed(state, &team).await;
    one_with_likes(state, caller, reload(state, team.id).await?).await
}

#[tracing::instrument(name = "teams.set_team_state", skip_all, err(level = "debug"))]
pub async fn set_team_state(state: &AppState, caller: &Caller, id: Uuid, to: TeamState) -> AppResult<TeamView> {
    let (team, _) = visible_team(state, caller, id).await?;
    if team.leader_id != caller.user_id {
        return Err(leader_required());
    }
    let from = team.state();
    if !from.leader_may_move_to(to) || !store::set_team_state(&state.db, id, from, to, None).await? {
        return Err(invalid_state(&reload(state, id).await?, to));
    }
    super::cache::team_changed(state, &team).await;
    one_with_likes(state, caller, reload(state, id).await?).await
}

#[tracing::instrument(name = "teams.delete_team", skip_all, err(level = "debug"))]
pub async fn delete_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let (team, access) = visible_team(state, caller, id).await?;
    if team.leader_id != caller.user_id && !access.can_manage() {
        return Err(AppError::permission_denied(
            Reason::TeamLeaderRequired,
            "only the leader, a club manager or an admin may delete this team",
        ));
    }
    if !store::delete_team(&state.db, id).await? {
        return Err(team_not_found());
    }
    super::cache::team_changed(state, &team).await;
    Ok(())
}

#[tracing::instrument(name = "teams.apply", skip_all, err(level = "debug"))]
pub async fn apply(state: &AppState, caller: &Caller, cmd: Apply) -> AppResult<Application> {
    let (team, access) = visible_team(state, caller, cmd.team_id).await?;
    if !access.is_member() {
        return Err(membership_required());
    }
    if team.state() != TeamState::Recruiting {
        return Err(applications_closed());
    }
    let Some(seats) = team.seats(cmd.role) else {
        return Err(AppError::invalid("role", "the team does not recruit this role"));
    };
    if !seats.is_open() {
        metrics::counter!("maru_team_applications_total", "outcome" => "role_full").increment(1);
        return Err(role_full(&seats.role));
    }
    if store::is_team_member(&state.db, team.id, caller.user_id).await? {
        return Err(AppError::failed_precondition(Reason::AlreadyTeamMember, "you are already a member of this team"));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    let id = match replayed::<Uuid>(state, &mut tx, "Apply", caller, cmd.request_id.as_ref(), &cmd).await? {
        Some(id) => {
            tx.rollback().await?;
            id
        }
        None => {
            let id = store::insert_application(&mut tx, &cmd, caller.user_id).await?;
            remember(&mut tx, "Apply", caller, cmd.request_id.as_ref(), &id).await?;
            crate::db::commit(&state.db, tx).await?;
            super::activity::member_changed(state, caller.user_id).await;
            metrics::counter!("maru_team_applications_total", "outcome" => "submitted").increment(1);
            id
        }
    };
    store::get_application(&state.db, id).await?.ok_or_else(application_not_found)
}

/// An application and its team, if the caller is a member of the team's club.
async fn application_in_club(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<(Application, Team, Access)> {
    let a = store::get_application(&state.db, id).await?.ok_or_else(application_not_found)?;
    let (team, access) = match visible_team(state, caller, a.team_id).await {
        Ok(v) => v,
        Err(e) if e.code() == Code::NotFound => return Err(application_not_found()),
        Err(e) => return Err(e),
    };
    Ok((a, team, access))
}

#[tracing::instrument(name = "teams.withdraw_application", skip_all, err(level = "debug"))]
pub async fn withdraw_application(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let (a, _, _) = application_in_club(state, caller, id).await?;
    if a.user_id != caller.user_id {
        return Err(AppError::permission_denied(Reason::ApplicantRequired, "only the applicant may withdraw"));
    }
    if !store::delete_pending_application(&state.db, id).await? {
        return Err(AppError::failed_precondition(
            Reason::ApplicationAlreadyDecided,
            "the application was already decided",
        ));
    }
    super::activity::member_changed(state, caller.user_id).await;
    metrics::counter!("maru_team_applications_total", "outcome" => "withdrawn").increment(1);
    Ok(())
}

#[tracing::instrument(name = "teams.list_applications", skip_all, err(level = "debug"))]
pub async fn list_applications(
    state: &AppState,
    caller: &Caller,
    team: Option<Uuid>,
    filter: Option<ApplicationState>,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Application>, String)> {
    let query = ("applications", team, filter, caller.user_id);
    let page = state.pager.page::<ApplicationCursor>(page_size, page_token, &query)?;
    let user = match team {
        Some(t) => {
            let (team, access) = visible_team(state, caller, t).await?;
            if team.leader_id == caller.user_id || access.can_manage() { None } else { Some(caller.user_id) }
        }
        None => Some(caller.user_id),
    };
    let rows = store::list_applications(&state.db, team, user, filter, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |a| (a.created_at, a.id)))
}

#[tracing::instrument(name = "teams.decide_application", skip_all, err(level = "debug"))]
pub async fn decide_application(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    approve: bool,
    note: &str,
) -> AppResult<Application> {
    let (a, team, _) = application_in_club(state, caller, id).await?;
    if team.leader_id != caller.user_id {
        return Err(leader_required());
    }
    let already =
        || AppError::failed_precondition(Reason::ApplicationAlreadyDecided, "the application was already decided");
    let mut tx = crate::db::begin(&state.db).await?;
    let to = if approve { ApplicationState::Approved } else { ApplicationState::Rejected };
    if !store::decide_application(&mut tx, id, to, note).await? {
        drop(tx);
        // Gone with its role (UpdateTeam removed it meanwhile), or decided by a concurrent call.
        return Err(match store::get_application(&state.db, id).await? {
            Some(_) => already(),
            None => application_not_found(),
        });
    }
    if approve {
        if !store::take_seat(&mut tx, team.id, &a.role).await? {
            drop(tx);
            if reload(state, team.id).await?.state() != TeamState::Recruiting {
                return Err(applications_closed());
            }
            metrics::counter!("maru_team_applications_total", "outcome" => "role_full").increment(1);
            return Err(role_full(&a.role));
        }
        if !store::insert_team_member(&mut tx, team.id, a.user_id, &a.role).await? {
            return Err(AppError::failed_precondition(
                Reason::AlreadyTeamMember,
                "the applicant already holds a seat of this team",
            ));
        }
    }
    crate::db::commit(&state.db, tx).await?;
    super::activity::member_changed(state, a.user_id).await;
    if approve {
        super::cache::team_changed(state, &team).await;
    }
    let outcome = if approve { "approved" } else { "rejected" };
    metrics::counter!("maru_team_applications_total", "outcome" => outcome).increment(1);
    if approve {
        metrics::counter!("maru_team_seats_filled_total").increment(1);
    }
    store::get_application(&state.db, id).await?.ok_or_else(application_not_found)
}

/// Frees `user`'s seat of `team`.
async fn unseat(state: &AppState, team: &Team, user: Uuid) -> AppResult<()> {
    if user == team.leader_id {
        return Err(AppError::failed_precondition(Reason::LeaderCannotLeave, "the leader cannot leave the team"));
    }
    let mut tx = crate::db::begin(&state.db).await?;
    if !store::delete_team_member(&mut tx, team.id, user).await? {
        return Err(AppError::failed_precondition(Reason::NotTeamMember, "not a member of this team"));
    }
    crate::db::commit(&state.db, tx).await?;
    super::cache::team_changed(state, team).await;
    Ok(())
}

#[tracing::instrument(name = "teams.leave_team", skip_all, err(level = "debug"))]
pub async fn leave_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<()> {
    let (team, _) = visible_team(state, caller, id).await?;
    unseat(state, &team, caller.user_id).await
}

#[tracing::instrument(name = "teams.remove_team_member", skip_all, err(level = "debug"))]
pub async fn remove_team_member(state: &AppState, caller: &Caller, id: Uuid, user: Uuid) -> AppResult<()> {
    let (team, _) = visible_team(state, caller, id).await?;
    if team.leader_id != caller.user_id {
        return Err(leader_required());
    }
    unseat(state, &team, user).await
}

#[tracing::instrument(name = "teams.list_team_members", skip_all, err(level = "debug"))]
pub async fn list_team_members(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<TeamMember>, String)> {
    let query = ("team_members", id);
    let page = state.pager.page::<MemberCursor>(page_size, page_token, &query)?;
    visible_team(state, caller, id).await?;
    let rows = store::list_team_members(&state.db, id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &query, |m| (i32::from(!m.is_leader), m.joined_at, m.user_id)))
}

/// Likes the team; `(created, like count)`.
#[tracing::instrument(name = "teams.like_team", skip_all, err(level = "debug"))]
pub async fn like_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<(bool, i64)> {
    let (team, access) = visible_team(state, caller, id).await?;
    if !access.is_member() {
        return Err(membership_required());
    }
    let created = store::insert_like(&state.db, team.id, caller.user_id).await?;
    if created {
        metrics::counter!("maru_team_likes_total").increment(1);
        super::cache::team_changed(state, &team).await;
    }
    Ok((created, store::count_likes(&state.db, team.id).await?))
}

/// Removes the caller's like; `(removed, like count)`.
#[tracing::instrument(name = "teams.unlike_team", skip_all, err(level = "debug"))]
pub async fn unlike_team(state: &AppState, caller: &Caller, id: Uuid) -> AppResult<(bool, i64)> {
    let (team, access) = visible_team(state, caller, id).await?;
    if !access.is_member() {
        return Err(membership_required());
    }
    let removed = store::delete_like(&state.db, team.id, caller.user_id).await?;
    if removed {
        super::cache::team_changed(state, &team).await;
    }
    Ok((removed, store::count_likes(&state.db, team.id).await?))
}

/// Describes the team metrics and registers the counters at zero (docs/teams.md#metrics).
pub fn describe_metrics() {
    use metrics::describe_counter;
    for (name, help) in [
        ("maru_teams_proposed_total", "Teams proposed (request_id replays excluded)."),
        ("maru_team_seats_filled_total", "Seats filled by approved applications."),
        ("maru_team_likes_total", "Likes on teams that created a row."),
        ("maru_team_views_counted_total", "Team views counted (a viewer's first of the day)."),
        ("maru_team_views_dropped_total", "Team views not counted because Redis was unavailable."),
        ("maru_team_views_flushed_total", "Team views added to PostgreSQL by flushes."),
    ] {
        describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    describe_counter!("maru_team_decisions_total", "Manager decisions on proposed teams, by outcome.");
    for outcome in ["approved", "rejected"] {
        metrics::counter!("maru_team_decisions_total", "outcome" => outcome).increment(0);
    }
    describe_counter!(
        "maru_team_applications_total",
        "Team applications by outcome: submitted, approved, rejected, role_full, withdrawn."
    );
    for outcome in ["submitted", "approved", "rejected", "role_full", "withdrawn"] {
        metrics::counter!("maru_team_applications_total", "outcome" => outcome).increment(0);
    }
}
