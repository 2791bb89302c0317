//! Protobuf ⇄ model conversions for team building. Requests become commands or every bad field
//! is reported at once.

use super::model::{
    ActivityCounts, ActivityEntry, ActivityKind, Application, ApplicationState, Apply, Genre, MAX_DESCRIPTION_CHARS,
    MAX_MESSAGE_CHARS, MAX_NOTE_CHARS, MAX_TITLE_CHARS, ProposeTeam, Team, TeamFilter, TeamMember, TeamPatch, TeamRole,
    TeamSort, TeamState, TeamView, UpdateTeam, check_role_list, check_roles, parse_links,
};
use crate::error::{AppError, Violations};
use crate::fields::{id, mask, parse_etag, parse_query, parse_url, request_id, text, timestamp};
use crate::grpc::pb;
use crate::media::attach;

fn genre(v: &mut Violations, field: &str, raw: i32) -> Genre {
    match pb::TeamGenre::try_from(raw) {
        Ok(pb::TeamGenre::Web) => Genre::Web,
        Ok(pb::TeamGenre::App) => Genre::App,
        Ok(pb::TeamGenre::Game) => Genre::Game,
        Ok(pb::TeamGenre::Ai) => Genre::Ai,
        Ok(pb::TeamGenre::Other) => Genre::Other,
        Ok(pb::TeamGenre::Unspecified) => {
            v.add(field, "is required");
            Genre::Other
        }
        Err(_) => {
            v.add(field, "is not a known genre");
            Genre::Other
        }
    }
}

/// A role field; `None` when unset (and not `required`) or bad.
fn role(v: &mut Violations, field: &str, raw: i32, required: bool) -> Option<TeamRole> {
    let r = match pb::TeamRole::try_from(raw) {
        Ok(pb::TeamRole::Backend) => TeamRole::Backend,
        Ok(pb::TeamRole::Frontend) => TeamRole::Frontend,
        Ok(pb::TeamRole::Design) => TeamRole::Design,
        Ok(pb::TeamRole::Planning) => TeamRole::Planning,
        Ok(pb::TeamRole::Ai) => TeamRole::Ai,
        Ok(pb::TeamRole::Mobile) => TeamRole::Mobile,
        Ok(pb::TeamRole::Devops) => TeamRole::Devops,
        Ok(pb::TeamRole::Other) => TeamRole::Other,
        Ok(pb::TeamRole::Unspecified) => {
            if required {
                v.add(field, "is required");
            }
            return None;
        }
        Err(_) => {
            v.add(field, "is not a known role");
            return None;
        }
    };
    Some(r)
}

fn state(raw: i32) -> Result<Option<TeamState>, String> {
    Ok(Some(match pb::TeamState::try_from(raw).map_err(|_| "is not a known team state".to_owned())? {
        pb::TeamState::Unspecified => return Ok(None),
        pb::TeamState::PendingApproval => TeamState::PendingApproval,
        pb::TeamState::Rejected => TeamState::Rejected,
        pb::TeamState::Recruiting => TeamState::Recruiting,
        pb::TeamState::InProgress => TeamState::InProgress,
        pb::TeamState::Accomplished => TeamState::Accomplished,
    }))
}

fn image(v: &mut Violations, raw: &str) -> String {
    v.check("image_url", parse_url(raw)).unwrap_or_default()
}

impl TryFrom<pb::ProposeTeamRequest> for ProposeTeam {
    type Error = AppError;
    fn try_from(r: pb::ProposeTeamRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let title = text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false);
        let genre = genre(&mut v, "genre", r.genre);
        let description = text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true);
        let links = v.check("links", parse_links(&r.links)).unwrap_or_default();
        let image_url = image(&mut v, &r.image_url);
        let (roles, roles_ok) = role_list(&mut v, &r.roles);
        let leader_role = role(&mut v, "leader_role", r.leader_role, true);
        if let (true, Some(l)) = (roles_ok, leader_role)
            && let Err(e) = check_roles(&roles, l)
        {
            v.add("roles", e);
        }
        let media_ids = attach::parse_one(&mut v, "media_id", &r.media_id);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(ProposeTeam {
            community_id,
            title,
            genre,
            description,
            links,
            image_url,
            roles,
            leader_role: leader_role.unwrap_or(TeamRole::Other),
            media_ids,
            request_id,
        })
    }
}

/// The roles of a request, each role required; `false` when one is bad.
fn role_list(v: &mut Violations, raw: &[pb::RoleSeats]) -> (Vec<(TeamRole, i32)>, bool) {
    let mut roles = Vec::new();
    let mut ok = true;
    for (i, s) in raw.iter().enumerate() {
        match role(v, &format!("roles[{i}].role"), s.role, true) {
            Some(x) => roles.push((x, s.capacity)),
            None => ok = false,
        }
    }
    (roles, ok)
}

impl TryFrom<pb::UpdateTeamRequest> for UpdateTeam {
    type Error = AppError;
    fn try_from(r: pb::UpdateTeamRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let team_id = id(&mut v, "team_id", &r.team_id);
        let mut patch = TeamPatch::default();
        let allowed = ["title", "genre", "description", "links", "image_url", "roles", "media_id"];
        for path in mask(&mut v, r.update_mask.as_ref(), &allowed) {
            match path.as_str() {
                "title" => patch.title = Some(text(&mut v, "title", &r.title, 1, MAX_TITLE_CHARS, false)),
                "genre" => patch.genre = Some(genre(&mut v, "genre", r.genre)),
                "description" => {
                    patch.description =
                        Some(text(&mut v, "description", &r.description, 0, MAX_DESCRIPTION_CHARS, true))
                }
                "links" => patch.links = v.check("links", parse_links(&r.links)),
                "image_url" => patch.image_url = Some(image(&mut v, &r.image_url)),
                "media_id" => patch.media_ids = Some(attach::parse_one(&mut v, "media_id", &r.media_id)),
                "roles" => {
                    let (roles, ok) = role_list(&mut v, &r.roles);
                    if ok && let Err(e) = check_role_list(&roles) {
                        v.add("roles", e);
                    }
                    patch.roles = Some(roles);
                }
                _ => {}
            }
        }
        let expected_version = v.check("etag", parse_etag(&r.etag, "team")).flatten();
        v.finish()?;
        Ok(UpdateTeam { team_id, patch, expected_version })
    }
}

impl TryFrom<&pb::ListTeamsRequest> for TeamFilter {
    type Error = AppError;
    fn try_from(r: &pb::ListTeamsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let community_id = id(&mut v, "community_id", &r.community_id);
        let state = v.check("state", state(r.state)).flatten();
        let genre = if r.genre == 0 { None } else { Some(genre(&mut v, "genre", r.genre)) };
        let open_role = role(&mut v, "open_role", r.open_role, false);
        let query = if r.query.trim().is_empty() { None } else { v.check("query", parse_query(&r.query)) };
        let sort = match pb::TeamSort::try_from(r.sort) {
            Ok(pb::TeamSort::Unspecified | pb::TeamSort::Newest) => TeamSort::Newest,
            Ok(pb::TeamSort::MostLiked) => TeamSort::MostLiked,
            Ok(pb::TeamSort::MostViewed) => TeamSort::MostViewed,
            Err(_) => {
                v.add("sort", "is not a known sort");
                TeamSort::Newest
            }
        };
        v.finish()?;
        Ok(TeamFilter { community_id, state, genre, open_role, query, sort })
    }
}

/// SetTeamState's (team, target state).
pub fn set_state(r: &pb::SetTeamStateRequest) -> Result<(uuid::Uuid, TeamState), AppError> {
    let mut v = Violations::new();
    let team = id(&mut v, "team_id", &r.team_id);
    let to = match v.check("state", state(r.state)) {
        Some(Some(s)) => Some(s),
        Some(None) => {
            v.add("state", "is required");
            None
        }
        None => None,
    };
    v.finish()?;
    Ok((team, to.unwrap_or(TeamState::InProgress)))
}

/// A manager's note (ApproveTeam, RejectTeam: required there) or a leader's (DecideApplication).
pub fn note(team_or_app_field: (&str, &str), raw: &str, required: bool) -> Result<(uuid::Uuid, String), AppError> {
    let mut v = Violations::new();
    let id = id(&mut v, team_or_app_field.0, team_or_app_field.1);
    let note = text(&mut v, "note", raw, usize::from(required), MAX_NOTE_CHARS, true);
    v.finish()?;
    Ok((id, note))
}

impl TryFrom<pb::ApplyRequest> for Apply {
    type Error = AppError;
    fn try_from(r: pb::ApplyRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let team_id = id(&mut v, "team_id", &r.team_id);
        let role = role(&mut v, "role", r.role, true);
        let message = text(&mut v, "message", &r.message, 0, MAX_MESSAGE_CHARS, true);
        let request_id = request_id(&mut v, &r.request_id);
        v.finish()?;
        Ok(Apply { team_id, role: role.unwrap_or(TeamRole::Other), message, request_id })
    }
}

/// ListApplications' optional state filter.
pub fn application_state(raw: i32) -> Result<Option<ApplicationState>, AppError> {
    match pb::ApplicationState::try_from(raw) {
        Ok(pb::ApplicationState::Unspecified) => Ok(None),
        Ok(pb::ApplicationState::Pending) => Ok(Some(ApplicationState::Pending)),
        Ok(pb::ApplicationState::Approved) => Ok(Some(ApplicationState::Approved)),
        Ok(pb::ApplicationState::Rejected) => Ok(Some(ApplicationState::Rejected)),
        Err(_) => Err(AppError::invalid("state", "is not a known application state")),
    }
}

fn role_to_pb(s: &str) -> i32 {
    (match TeamRole::from_db(s) {
        Some(TeamRole::Backend) => pb::TeamRole::Backend,
        Some(TeamRole::Frontend) => pb::TeamRole::Frontend,
        Some(TeamRole::Design) => pb::TeamRole::Design,
        Some(TeamRole::Planning) => pb::TeamRole::Planning,
        Some(TeamRole::Ai) => pb::TeamRole::Ai,
        Some(TeamRole::Mobile) => pb::TeamRole::Mobile,
        Some(TeamRole::Devops) => pb::TeamRole::Devops,
        Some(TeamRole::Other) => pb::TeamRole::Other,
        None => pb::TeamRole::Unspecified,
    }) as i32
}

fn genre_to_pb(s: &str) -> i32 {
    (match Genre::from_db(s) {
        Some(Genre::Web) => pb::TeamGenre::Web,
        Some(Genre::App) => pb::TeamGenre::App,
        Some(Genre::Game) => pb::TeamGenre::Game,
        Some(Genre::Ai) => pb::TeamGenre::Ai,
        Some(Genre::Other) => pb::TeamGenre::Other,
        None => pb::TeamGenre::Unspecified,
    }) as i32
}

pub fn state_to_pb(s: TeamState) -> i32 {
    (match s {
        TeamState::PendingApproval => pb::TeamState::PendingApproval,
        TeamState::Rejected => pb::TeamState::Rejected,
        TeamState::Recruiting => pb::TeamState::Recruiting,
        TeamState::InProgress => pb::TeamState::InProgress,
        TeamState::Accomplished => pb::TeamState::Accomplished,
    }) as i32
}

/// `v` with its attached image (`crate::media::attach::shown`).
pub fn team_to_pb(v: TeamView, media: Option<pb::Media>) -> pb::Team {
    let t: Team = v.team;
    let etag = t.etag();
    let state = state_to_pb(t.state());
    pb::Team {
        id: t.id.to_string(),
        community_id: t.community_id.to_string(),
        title: t.title,
        genre: genre_to_pb(&t.genre),
        description: t.description,
        links: t.links,
        image_url: t.image_url,
        state,
        leader: Some(pb::Author {
            user_id: t.leader_id.to_string(),
            handle: t.leader_handle,
            display_name: t.leader_display_name,
            image_url: t.leader_image_url,
        }),
        leader_role: t.leader_role.as_deref().map_or(0, role_to_pb),
        roles: t
            .roles
            .iter()
            .map(|s| pb::RoleSeats { role: role_to_pb(&s.role), capacity: s.capacity, filled: s.filled })
            .collect(),
        like_count: t.like_count,
        view_count: t.view_count,
        member_count: t.member_count,
        liked_by_me: v.liked_by_me,
        decision_note: t.decision_note,
        etag,
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
        media,
    }
}

pub fn application_to_pb(a: Application) -> pb::Application {
    let state = match a.state() {
        ApplicationState::Pending => pb::ApplicationState::Pending,
        ApplicationState::Approved => pb::ApplicationState::Approved,
        ApplicationState::Rejected => pb::ApplicationState::Rejected,
    };
    pb::Application {
        id: a.id.to_string(),
        team_id: a.team_id.to_string(),
        team_title: a.team_title,
        applicant: Some(pb::Author {
            user_id: a.user_id.to_string(),
            handle: a.handle,
            display_name: a.display_name,
            image_url: a.image_url,
        }),
        role: role_to_pb(&a.role),
        message: a.message,
        state: state as i32,
        note: a.note,
        created_at: Some(timestamp(a.created_at)),
        decided_at: a.decided_at.map(timestamp),
    }
}

pub fn member_to_pb(m: TeamMember) -> pb::TeamMember {
    pb::TeamMember {
        user: Some(pb::Author {
            user_id: m.user_id.to_string(),
            handle: m.handle,
            display_name: m.display_name,
            image_url: m.image_url,
        }),
        role: role_to_pb(&m.role),
        is_leader: m.is_leader,
        joined_at: Some(timestamp(m.joined_at)),
    }
}

/// The `kind` of a ListProfileActivityRequest (required).
pub fn activity_kind(raw: i32) -> Result<ActivityKind, String> {
    match pb::ProfileActivityKind::try_from(raw) {
        Ok(pb::ProfileActivityKind::Applied) => Ok(ActivityKind::Applied),
        Ok(pb::ProfileActivityKind::InProgress) => Ok(ActivityKind::InProgress),
        Ok(pb::ProfileActivityKind::Accomplished) => Ok(ActivityKind::Accomplished),
        Ok(pb::ProfileActivityKind::Liked) => Ok(ActivityKind::Liked),
        Ok(pb::ProfileActivityKind::Unspecified) => {
            Err("is required: APPLIED, IN_PROGRESS, ACCOMPLISHED or LIKED".into())
        }
        Err(_) => Err("is not a known activity kind".into()),
    }
}

fn application_state_to_pb(s: &str) -> i32 {
    (match ApplicationState::from_db(s) {
        Some(ApplicationState::Pending) => pb::ApplicationState::Pending,
        Some(ApplicationState::Approved) => pb::ApplicationState::Approved,
        Some(ApplicationState::Rejected) => pb::ApplicationState::Rejected,
        None => pb::ApplicationState::Unspecified,
    }) as i32
}

pub fn activity_to_pb(e: ActivityEntry) -> pb::ProfileActivity {
    pb::ProfileActivity {
        team_id: e.team_id.to_string(),
        community_id: e.community_id.to_string(),
        team_title: e.title,
        genre: genre_to_pb(&e.genre),
        team_state: TeamState::from_db(&e.team_state).map_or(0, state_to_pb),
        role: e.role.as_deref().map_or(0, role_to_pb),
        application_state: e.application_state.as_deref().map_or(0, application_state_to_pb),
        is_leader: e.is_leader,
        at: Some(timestamp(e.at)),
    }
}

pub fn activity_counts_to_pb(c: ActivityCounts) -> pb::ProfileActivityCounts {
    pb::ProfileActivityCounts {
        applied: c.applied,
        in_progress: c.in_progress,
        accomplished: c.accomplished,
        liked: c.liked,
    }
}
