//! Every SQL statement of team building. Counts (likes, members) are counted from the rows;
//! seats move only by the conditional updates here (`filled < capacity`), checked again by
//! `team_roles_filled_check`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{
    ActivityCounts, ActivityEntry, ActivityKind, Application, ApplicationState, Apply, ProposeTeam, RoleConflict,
    Seats, Team, TeamFilter, TeamMember, TeamPatch, TeamRole, TeamSort, TeamState,
};
use crate::db::escape_like;
use crate::error::AppResult;

/// Sort key of team lists: (sort value, created_at, id), all descending. The sort value is 0
/// for [`TeamSort::Newest`], else the like or view count.
pub type TeamCursor = (i64, DateTime<Utc>, Uuid);
/// Sort key of application lists: (created_at, id), both descending.
pub type ApplicationCursor = (DateTime<Utc>, Uuid);
/// Sort key of member lists: (0 for the leader else 1, joined_at, user id), ascending.
pub type MemberCursor = (i32, DateTime<Utc>, Uuid);

const TEAM_COLUMNS: &str = "t.id, t.community_id, t.leader_id, u.handle as leader_handle,
        u.display_name as leader_display_name, u.image_url as leader_image_url,
        (select m.role from team_members m where m.team_id = t.id and m.user_id = t.leader_id) as leader_role,
        t.title, t.genre, t.description, t.links, t.image_url, t.state, t.decision_note, t.view_count,
        (select count(*) from team_likes l where l.team_id = t.id) as like_count,
        (select count(*) from team_members m where m.team_id = t.id) as member_count,
        t.version, t.created_at, t.updated_at";
const TEAM_FROM: &str = "from teams t join users u on u.id = t.leader_id";

const APPLICATION_SELECT: &str = "select a.id, a.team_id, t.title as team_title, a.user_id, u.handle,
        u.display_name, u.image_url, a.role, a.message, a.state, a.note, a.created_at, a.decided_at
   from team_applications a join teams t on t.id = a.team_id join users u on u.id = a.user_id";

/// The kind of community `id` (`None`: no such community).
pub async fn community_kind(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("select kind from communities where id = $1").bind(id).fetch_optional(db).await?;
    Ok(row.map(|r| r.0))
}

/// Inserts the team, its roles and the leader's seat; the team's id.
pub async fn insert_team(conn: &mut PgConnection, t: &ProposeTeam, leader: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into teams (id, community_id, leader_id, title, genre, description, links, image_url)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(t.community_id)
    .bind(leader)
    .bind(&t.title)
    .bind(t.genre.as_db())
    .bind(&t.description)
    .bind(&t.links)
    .bind(&t.image_url)
    .execute(&mut *conn)
    .await?;
    let roles: Vec<&str> = t.roles.iter().map(|(r, _)| r.as_db()).collect();
    let caps: Vec<i32> = t.roles.iter().map(|(_, c)| *c).collect();
    sqlx::query(
        "insert into team_roles (team_id, role, capacity, filled)
         select $1, r, c, case when r = $4 then 1 else 0 end from unnest($2::text[], $3::int[]) as x (r, c)",
    )
    .bind(id)
    .bind(&roles)
    .bind(&caps)
    .bind(t.leader_role.as_db())
    .execute(&mut *conn)
    .await?;
    sqlx::query("insert into team_members (team_id, user_id, role) values ($1, $2, $3)")
        .bind(id)
        .bind(leader)
        .bind(t.leader_role.as_db())
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// The seats of `teams`, in the order of [`TeamRole::ALL`].
pub async fn list_seats(db: impl PgExecutor<'_>, teams: &[Uuid]) -> AppResult<Vec<Seats>> {
    let mut rows: Vec<Seats> =
        sqlx::query_as("select team_id, role, capacity, filled from team_roles where team_id = any($1)")
            .bind(teams)
            .fetch_all(db)
            .await?;
    let rank = |s: &Seats| TeamRole::ALL.iter().position(|r| r.as_db() == s.role).unwrap_or(usize::MAX);
    rows.sort_by_key(|s| (s.team_id, rank(s)));
    Ok(rows)
}

/// Puts each team's seats on it.
pub async fn with_seats(db: impl PgExecutor<'_>, mut teams: Vec<Team>) -> AppResult<Vec<Team>> {
    if teams.is_empty() {
        return Ok(teams);
    }
    let ids: Vec<Uuid> = teams.iter().map(|t| t.id).collect();
    let seats = list_seats(db, &ids).await?;
    for t in &mut teams {
        t.roles = seats.iter().filter(|s| s.team_id == t.id).cloned().collect();
    }
    Ok(teams)
}

/// A team with its seats, whatever its state.
pub async fn get_team(conn: &mut PgConnection, id: Uuid) -> AppResult<Option<Team>> {
    let team: Option<Team> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("select {TEAM_COLUMNS} {TEAM_FROM} where t.id = $1")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    match team {
        Some(t) => Ok(with_seats(conn, vec![t]).await?.pop()),
        None => Ok(None),
    }
}

/// A page of a club's teams for `filter`; `states` are the states the caller may list.
pub async fn list_teams(
    conn: &mut PgConnection,
    filter: &TeamFilter,
    states: &[TeamState],
    after: Option<TeamCursor>,
    limit: i64,
) -> AppResult<Vec<Team>> {
    let key = match filter.sort {
        TeamSort::Newest => "0::bigint",
        TeamSort::MostLiked => "(select count(*) from team_likes l where l.team_id = t.id)",
        TeamSort::MostViewed => "t.view_count",
    };
    let sql = format!(
        "select * from (
           select {TEAM_COLUMNS}, {key} as sort_key {TEAM_FROM}
            where t.community_id = $1 and t.state = any($2)
              and ($3::text is null or t.genre = $3)
              and ($4::text is null or exists (select 1 from team_roles r
                    where r.team_id = t.id and r.role = $4 and r.filled < r.capacity))
              and ($5::text is null or t.title ilike '%' || $5 || '%' or t.description ilike '%' || $5 || '%')
         ) s
         where ($6::bigint is null or (s.sort_key, s.created_at, s.id) < ($6, $7, $8))
         order by s.sort_key desc, s.created_at desc, s.id desc
         limit $9"
    );
    let states: Vec<&str> = states.iter().map(|s| s.as_db()).collect();
    let (k, at, id) = after.map_or((None, None, None), |(k, a, i)| (Some(k), Some(a), Some(i)));
    let rows: Vec<Team> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.community_id)
        .bind(&states)
        .bind(filter.genre.map(|g| g.as_db()))
        .bind(filter.open_role.map(|r| r.as_db()))
        .bind(filter.query.as_deref().map(escape_like))
        .bind(k)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    with_seats(conn, rows).await
}

/// Applies `patch` if the team is still at `expected` (when given); `false` otherwise.
pub async fn update_team(
    db: impl PgExecutor<'_>,
    id: Uuid,
    patch: &TeamPatch,
    expected: Option<i64>,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update teams
            set title = coalesce($2, title), genre = coalesce($3, genre), description = coalesce($4, description),
                links = coalesce($5, links), image_url = coalesce($6, image_url),
                version = version + 1, updated_at = now()
          where id = $1 and ($7::bigint is null or version = $7)",
    )
    .bind(id)
    .bind(&patch.title)
    .bind(patch.genre.map(|g| g.as_db()))
    .bind(&patch.description)
    .bind(&patch.links)
    .bind(&patch.image_url)
    .bind(expected)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Moves the team from `from` to `to` (with a manager's decision note and id when given);
/// `false` when it was not in `from`.
pub async fn set_team_state(
    db: impl PgExecutor<'_>,
    id: Uuid,
    from: TeamState,
    to: TeamState,
    decision: Option<(&str, Uuid)>,
) -> AppResult<bool> {
    let (note, by) = decision.map_or((None, None), |(n, b)| (Some(n), Some(b)));
    Ok(sqlx::query(
        "update teams
            set state = $3, version = version + 1, updated_at = now(),
                decision_note = coalesce($4, decision_note),
                decided_by = coalesce($5, decided_by),
                decided_at = case when $5::uuid is null then decided_at else now() end
          where id = $1 and state = $2",
    )
    .bind(id)
    .bind(from.as_db())
    .bind(to.as_db())
    .bind(note)
    .bind(by)
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Replaces the team's roles with `roles` (capacities changed, roles added, roles left out
/// removed), decided under the same row locks approvals take ([`take_seat`] locks the role row):
/// first the pending applications of the roles to be removed (approvals lock their application
/// before its role, so both lock in the same order and never deadlock), then every role row of
/// the team; the seats are checked on the locked rows. `Some(conflict)` (and nothing changed)
/// when a removed role still has members or a capacity falls below its filled seats.
/// Applications of removed roles go with them (`team_applications_role_fkey`).
pub async fn set_roles(
    conn: &mut PgConnection,
    team: Uuid,
    roles: &[(TeamRole, i32)],
) -> AppResult<Option<RoleConflict>> {
    let names: Vec<&str> = roles.iter().map(|(r, _)| r.as_db()).collect();
    let caps: Vec<i32> = roles.iter().map(|(_, c)| *c).collect();
    sqlx::query(
        "select 1 from team_applications where team_id = $1 and role <> all($2) and state = 'PENDING'
          order by id for update",
    )
    .bind(team)
    .bind(&names)
    .execute(&mut *conn)
    .await?;
    let seats: Vec<(String, i32)> =
        sqlx::query_as("select role, filled from team_roles where team_id = $1 order by role for update")
            .bind(team)
            .fetch_all(&mut *conn)
            .await?;
    for (role, filled) in seats {
        match roles.iter().find(|(r, _)| r.as_db() == role) {
            None if filled > 0 => return Ok(Some(RoleConflict::NotEmpty { role })),
            Some((_, cap)) if *cap < filled => return Ok(Some(RoleConflict::BelowFilled { role, filled })),
            _ => {}
        }
    }
    sqlx::query("delete from team_roles where team_id = $1 and role <> all($2)")
        .bind(team)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "insert into team_roles (team_id, role, capacity)
         select $1, r, c from unnest($2::text[], $3::int[]) as x (r, c)
         on conflict on constraint team_roles_pkey do update set capacity = excluded.capacity",
    )
    .bind(team)
    .bind(&names)
    .bind(&caps)
    .execute(&mut *conn)
    .await?;
    Ok(None)
}

pub async fn delete_team(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from teams where id = $1").bind(id).execute(db).await?.rows_affected() == 1)
}

/// Whether `user` holds a seat of `team`.
pub async fn is_team_member(db: impl PgExecutor<'_>, team: Uuid, user: Uuid) -> AppResult<bool> {
    let (yes,): (bool,) =
        sqlx::query_as("select exists (select 1 from team_members where team_id = $1 and user_id = $2)")
            .bind(team)
            .bind(user)
            .fetch_one(db)
            .await?;
    Ok(yes)
}

pub async fn insert_application(conn: &mut PgConnection, a: &Apply, user: Uuid) -> AppResult<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("insert into team_applications (id, team_id, user_id, role, message) values ($1, $2, $3, $4, $5)")
        .bind(id)
        .bind(a.team_id)
        .bind(user)
        .bind(a.role.as_db())
        .bind(&a.message)
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn get_application(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<Option<Application>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("{APPLICATION_SELECT} where a.id = $1")))
        .bind(id)
        .fetch_optional(db)
        .await?)
}

/// Applications newest first: to `team` (if given), of `user` (if given), in `state` (if given).
pub async fn list_applications(
    db: impl PgExecutor<'_>,
    team: Option<Uuid>,
    user: Option<Uuid>,
    state: Option<ApplicationState>,
    after: Option<ApplicationCursor>,
    limit: i64,
) -> AppResult<Vec<Application>> {
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{APPLICATION_SELECT}
          where ($1::uuid is null or a.team_id = $1) and ($2::uuid is null or a.user_id = $2)
            and ($3::text is null or a.state = $3)
            and ($4::timestamptz is null or (a.created_at, a.id) < ($4, $5))
          order by a.created_at desc, a.id desc
          limit $6"
    )))
    .bind(team)
    .bind(user)
    .bind(state.map(|s| s.as_db()))
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Deletes a PENDING application; `false` when it is not (any more) pending.
pub async fn delete_pending_application(db: impl PgExecutor<'_>, id: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from team_applications where id = $1 and state = 'PENDING'")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Decides a PENDING application; `false` when it is not (any more) pending.
pub async fn decide_application(
    conn: &mut PgConnection,
    id: Uuid,
    to: ApplicationState,
    note: &str,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "update team_applications set state = $2, note = $3, decided_at = now(), updated_at = now()
          where id = $1 and state = 'PENDING'",
    )
    .bind(id)
    .bind(to.as_db())
    .bind(note)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Takes one free seat of `role` while the team is RECRUITING, in one conditional update: the
/// row lock makes concurrent takers wait and re-check `filled < capacity`, so a role never
/// over-fills. `false` when no seat was taken.
pub async fn take_seat(conn: &mut PgConnection, team: Uuid, role: &str) -> AppResult<bool> {
    Ok(sqlx::query(
        "update team_roles r set filled = r.filled + 1
           from teams t
          where r.team_id = $1 and r.role = $2 and r.filled < r.capacity
            and t.id = r.team_id and t.state = 'RECRUITING'",
    )
    .bind(team)
    .bind(role)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Seats `user` in `role`; `false` when they already hold a seat of the team.
pub async fn insert_team_member(conn: &mut PgConnection, team: Uuid, user: Uuid, role: &str) -> AppResult<bool> {
    Ok(sqlx::query("insert into team_members (team_id, user_id, role) values ($1, $2, $3) on conflict do nothing")
        .bind(team)
        .bind(user)
        .bind(role)
        .execute(conn)
        .await?
        .rows_affected()
        == 1)
}

/// Removes `user` from the team, frees their seat and deletes their approved application for it
/// (so they may apply again); `false` when they held no seat.
pub async fn delete_team_member(conn: &mut PgConnection, team: Uuid, user: Uuid) -> AppResult<bool> {
    let role: Option<(String,)> =
        sqlx::query_as("delete from team_members where team_id = $1 and user_id = $2 returning role")
            .bind(team)
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((role,)) = role else { return Ok(false) };
    sqlx::query("update team_roles set filled = filled - 1 where team_id = $1 and role = $2")
        .bind(team)
        .bind(&role)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "delete from team_applications where team_id = $1 and user_id = $2 and role = $3 and state = 'APPROVED'",
    )
    .bind(team)
    .bind(user)
    .bind(&role)
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

/// A team's members: the leader first, then by joining time.
pub async fn list_team_members(
    db: impl PgExecutor<'_>,
    team: Uuid,
    after: Option<MemberCursor>,
    limit: i64,
) -> AppResult<Vec<TeamMember>> {
    let (rank, at, id) = after.map_or((None, None, None), |(r, a, i)| (Some(r), Some(a), Some(i)));
    Ok(sqlx::query_as(
        "select m.user_id, u.handle, u.display_name, u.image_url, m.role, m.user_id = t.leader_id as is_leader,
                m.joined_at
           from team_members m join teams t on t.id = m.team_id join users u on u.id = m.user_id
          where m.team_id = $1
            and ($2::int is null
                 or (case when m.user_id = t.leader_id then 0 else 1 end, m.joined_at, m.user_id) > ($2, $3, $4))
          order by case when m.user_id = t.leader_id then 0 else 1 end, m.joined_at, m.user_id
          limit $5",
    )
    .bind(team)
    .bind(rank)
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

/// Likes the team unless liked; true when a row was created.
pub async fn insert_like(db: impl PgExecutor<'_>, team: Uuid, user: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("insert into team_likes (team_id, user_id) values ($1, $2) on conflict do nothing")
        .bind(team)
        .bind(user)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn delete_like(db: impl PgExecutor<'_>, team: Uuid, user: Uuid) -> AppResult<bool> {
    Ok(sqlx::query("delete from team_likes where team_id = $1 and user_id = $2")
        .bind(team)
        .bind(user)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

pub async fn count_likes(db: impl PgExecutor<'_>, team: Uuid) -> AppResult<i64> {
    let (n,): (i64,) =
        sqlx::query_as("select count(*) from team_likes where team_id = $1").bind(team).fetch_one(db).await?;
    Ok(n)
}

/// Which of `teams` `user` likes.
pub async fn liked_teams(db: impl PgExecutor<'_>, user: Uuid, teams: &[Uuid]) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as("select team_id from team_likes where user_id = $1 and team_id = any($2)")
        .bind(user)
        .bind(teams)
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Adds `counts[i]` views to team `ids[i]`, in one statement.
pub async fn add_team_views(conn: &mut PgConnection, ids: &[Uuid], counts: &[i64]) -> AppResult<()> {
    sqlx::query(
        "update teams t set view_count = t.view_count + d.n
           from unnest($1::uuid[], $2::bigint[]) as d (id, n) where t.id = d.id",
    )
    .bind(ids)
    .bind(counts)
    .execute(conn)
    .await?;
    Ok(())
}

/// The clubs of `teams`.
pub async fn team_communities(db: impl PgExecutor<'_>, teams: &[Uuid]) -> AppResult<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> =
        sqlx::query_as("select distinct community_id from teams where id = any($1)").bind(teams).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

// ---- profile activity (a member's team history, `super::activity`)

/// Sort key of activity lists: (applied/joined/liked at, application id or team id), both
/// descending.
pub type ActivityCursor = (DateTime<Utc>, Uuid);

/// The clubs whose teams `subject`'s activity may show to `viewer`: clubs of the teams
/// `subject` applied to, holds a seat of or liked, among those `viewer` is an APPROVED member of
/// (all of them when `admin`). Sorted, so the list can be part of a cache key.
pub async fn activity_clubs(db: impl PgExecutor<'_>, subject: Uuid, viewer: Uuid, admin: bool) -> AppResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "select coalesce(array_agg(c.id order by c.id), '{}') from (
           select distinct t.community_id as id
             from teams t
            where t.id in (select team_id from team_applications where user_id = $1
                           union select team_id from team_members where user_id = $1
                           union select team_id from team_likes where user_id = $1)
              and ($3 or exists (select 1 from community_memberships m
                                  where m.community_id = t.community_id and m.user_id = $2
                                    and m.status = 'APPROVED'))
         ) c",
    )
    .bind(subject)
    .bind(viewer)
    .bind(admin)
    .fetch_one(db)
    .await?)
}

/// The approved states: only those teams appear in anyone's activity.
const LISTED: &str = "('RECRUITING', 'IN_PROGRESS', 'ACCOMPLISHED')";

/// A page of `subject`'s activity of `kind` among the teams of `clubs`, newest first.
pub async fn list_activity(
    db: impl PgExecutor<'_>,
    subject: Uuid,
    kind: ActivityKind,
    clubs: &[Uuid],
    after: Option<ActivityCursor>,
    limit: i64,
) -> AppResult<Vec<ActivityEntry>> {
    let team_cols = "t.id as team_id, t.community_id, t.title, t.genre, t.state as team_state";
    // (rows, their time, their key, the columns of the kind, which rows of `subject`)
    let (from, at, key, cols, cond) = match kind {
        ActivityKind::Applied => (
            "team_applications a join teams t on t.id = a.team_id",
            "a.created_at",
            "a.id",
            "a.role, a.state as application_state, false as is_leader",
            format!("a.user_id = $1 and t.state in {LISTED}"),
        ),
        ActivityKind::InProgress | ActivityKind::Accomplished => (
            "team_members m join teams t on t.id = m.team_id",
            "m.joined_at",
            "t.id",
            "m.role, null::text as application_state, t.leader_id = $1 as is_leader",
            format!(
                "m.user_id = $1 and t.state in {}",
                if kind == ActivityKind::InProgress { "('RECRUITING', 'IN_PROGRESS')" } else { "('ACCOMPLISHED')" }
            ),
        ),
        ActivityKind::Liked => (
            "team_likes l join teams t on t.id = l.team_id",
            "l.created_at",
            "t.id",
            "null::text as role, null::text as application_state, false as is_leader",
            format!("l.user_id = $1 and t.state in {LISTED}"),
        ),
    };
    let sql = format!(
        "select {team_cols}, {cols}, {at} as at, {key} as entry_key
           from {from}
          where {cond} and t.community_id = any($2)
            and ($3::timestamptz is null or ({at}, {key}) < ($3, $4))
          order by {at} desc, {key} desc
          limit $5"
    );
    let (a, k) = after.map_or((None, None), |(a, k)| (Some(a), Some(k)));
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(subject)
        .bind(clubs)
        .bind(a)
        .bind(k)
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// How many entries each kind of `subject`'s activity has among the teams of `clubs`.
pub async fn count_activity(db: impl PgExecutor<'_>, subject: Uuid, clubs: &[Uuid]) -> AppResult<ActivityCounts> {
    let sql = format!(
        "select
           (select count(*) from team_applications a join teams t on t.id = a.team_id
             where a.user_id = $1 and t.community_id = any($2) and t.state in {LISTED}) as applied,
           (select count(*) from team_members m join teams t on t.id = m.team_id
             where m.user_id = $1 and t.community_id = any($2) and t.state in ('RECRUITING', 'IN_PROGRESS'))
             as in_progress,
           (select count(*) from team_members m join teams t on t.id = m.team_id
             where m.user_id = $1 and t.community_id = any($2) and t.state = 'ACCOMPLISHED') as accomplished,
           (select count(*) from team_likes l join teams t on t.id = l.team_id
             where l.user_id = $1 and t.community_id = any($2) and t.state in {LISTED}) as liked"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(subject).bind(clubs).fetch_one(db).await?)
}
