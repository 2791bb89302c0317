//! Teams, their seats, members, applications and likes: rows, commands and the rules of their
//! fields. No tonic, no SQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::db_enum;
use crate::fields::parse_urls;
use crate::idempotency::RequestId;

pub const MAX_TITLE_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
pub const MAX_LINKS: usize = 5;
pub const MAX_ROLES: usize = 8;
pub const MIN_CAPACITY: i32 = 1;
pub const MAX_CAPACITY: i32 = 10;
pub const MAX_MESSAGE_CHARS: usize = 1_000;
pub const MAX_NOTE_CHARS: usize = 500;

db_enum! {
    /// What a team builds.
    Genre { Web => "WEB", App => "APP", Game => "GAME", Ai => "AI", Other => "OTHER", }
}

db_enum! {
    /// A role a team recruits (a seat kind).
    TeamRole {
        Backend => "BACKEND", Frontend => "FRONTEND", Design => "DESIGN", Planning => "PLANNING",
        Ai => "AI", Mobile => "MOBILE", Devops => "DEVOPS", Other => "OTHER",
    }
}

db_enum! {
    /// A team's life: PENDING_APPROVAL → (a manager) RECRUITING | REJECTED; RECRUITING → (the
    /// leader) IN_PROGRESS → ACCOMPLISHED.
    TeamState {
        PendingApproval => "PENDING_APPROVAL", Rejected => "REJECTED", Recruiting => "RECRUITING",
        InProgress => "IN_PROGRESS", Accomplished => "ACCOMPLISHED",
    }
}

db_enum! {
    /// An application's decision.
    ApplicationState { Pending => "PENDING", Approved => "APPROVED", Rejected => "REJECTED", }
}

impl TeamState {
    /// Approved by a manager: listed to every member of the club.
    pub fn is_listed(self) -> bool {
        matches!(self, TeamState::Recruiting | TeamState::InProgress | TeamState::Accomplished)
    }

    /// The state the leader may move a team in `self` to: only the next one.
    pub fn leader_may_move_to(self, to: TeamState) -> bool {
        matches!(
            (self, to),
            (TeamState::Recruiting, TeamState::InProgress) | (TeamState::InProgress, TeamState::Accomplished)
        )
    }
}

/// The seats of one role of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Seats {
    pub team_id: Uuid,
    pub role: String,
    pub capacity: i32,
    pub filled: i32,
}

impl Seats {
    pub fn is_open(&self) -> bool {
        self.filled < self.capacity
    }
}

/// A team as stored, with its leader, seats and counts; the same for every viewer (cacheable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Team {
    pub id: Uuid,
    pub community_id: Uuid,
    pub leader_id: Uuid,
    pub leader_handle: String,
    pub leader_display_name: String,
    pub leader_image_url: String,
    pub leader_role: Option<String>,
    pub title: String,
    pub genre: String,
    pub description: String,
    pub links: Vec<String>,
    pub image_url: String,
    pub state: String,
    pub decision_note: String,
    pub view_count: i64,
    pub like_count: i64,
    pub member_count: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(skip)]
    pub roles: Vec<Seats>,
}

impl Team {
    pub fn state(&self) -> TeamState {
        TeamState::from_db(&self.state).unwrap_or(TeamState::PendingApproval)
    }
    /// The etag clients send back with UpdateTeam.
    pub fn etag(&self) -> String {
        format!("v{}", self.version)
    }
    pub fn seats(&self, role: TeamRole) -> Option<&Seats> {
        self.roles.iter().find(|s| s.role == role.as_db())
    }
}

/// A team for one viewer.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamView {
    pub team: Team,
    pub liked_by_me: bool,
}

/// ProposeTeam, validated.
#[derive(Debug, Clone, Serialize)]
pub struct ProposeTeam {
    pub community_id: Uuid,
    pub title: String,
    pub genre: Genre,
    pub description: String,
    pub links: Vec<String>,
    pub image_url: String,
    pub roles: Vec<(TeamRole, i32)>,
    pub leader_role: TeamRole,
    /// The image, attached in the same transaction (`crate::media::attach`): none or one.
    pub media_ids: Vec<Uuid>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// The fields UpdateTeam changes (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct TeamPatch {
    pub title: Option<String>,
    pub genre: Option<Genre>,
    pub description: Option<String>,
    pub links: Option<Vec<String>>,
    pub image_url: Option<String>,
    /// The whole new role list with capacities (roles left out are removed).
    pub roles: Option<Vec<(TeamRole, i32)>>,
    /// The image from now on (empty: none), detaching the one it replaces.
    pub media_ids: Option<Vec<Uuid>>,
}

/// Why a new role list does not fit the seats taken (UpdateTeam `roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleConflict {
    /// A role left out of the list still has members (the leader's role always has).
    NotEmpty { role: String },
    /// A capacity below the seats already filled.
    BelowFilled { role: String, filled: i32 },
}

#[derive(Debug, Clone)]
pub struct UpdateTeam {
    pub team_id: Uuid,
    pub patch: TeamPatch,
    pub expected_version: Option<i64>,
}

/// How a team list is ordered (each with `created_at desc, id desc` as the tie-break).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeamSort {
    Newest,
    MostLiked,
    MostViewed,
}

/// ListTeams' filters (also what its page tokens are bound to).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamFilter {
    pub community_id: Uuid,
    /// `None`: every listed state ([`TeamState::is_listed`]).
    pub state: Option<TeamState>,
    pub genre: Option<Genre>,
    pub open_role: Option<TeamRole>,
    pub query: Option<String>,
    pub sort: TeamSort,
}

/// Apply, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Apply {
    pub team_id: Uuid,
    pub role: TeamRole,
    pub message: String,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// An application with its applicant and team title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Application {
    pub id: Uuid,
    pub team_id: Uuid,
    pub team_title: String,
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub role: String,
    pub message: String,
    pub state: String,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl Application {
    pub fn state(&self) -> ApplicationState {
        ApplicationState::from_db(&self.state).unwrap_or(ApplicationState::Pending)
    }
}

/// A member of a team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TeamMember {
    pub user_id: Uuid,
    pub handle: String,
    pub display_name: String,
    pub image_url: String,
    pub role: String,
    pub is_leader: bool,
    pub joined_at: DateTime<Utc>,
}

/// Which part of a member's team history (ProfileService.ListProfileActivity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActivityKind {
    /// Applications, any state.
    Applied,
    /// Seats of RECRUITING or IN_PROGRESS teams (the leader's included).
    InProgress,
    /// Seats of ACCOMPLISHED teams.
    Accomplished,
    /// Likes.
    Liked,
}

/// One entry of a member's team history; the same for every viewer allowed to see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ActivityEntry {
    pub team_id: Uuid,
    pub community_id: Uuid,
    pub title: String,
    pub genre: String,
    pub team_state: String,
    pub role: Option<String>,
    pub application_state: Option<String>,
    pub is_leader: bool,
    pub at: DateTime<Utc>,
    /// The row's key in the list's order: the application's id, else the team's.
    pub entry_key: Uuid,
}

/// How many entries each kind of a member's team history has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ActivityCounts {
    pub applied: i64,
    pub in_progress: i64,
    pub accomplished: i64,
    pub liked: i64,
}

/// A proposal's roles: 1–8 distinct roles, each with a capacity of 1..10, the leader's among them.
pub fn check_roles(roles: &[(TeamRole, i32)], leader_role: TeamRole) -> Result<(), String> {
    check_role_list(roles)?;
    if !roles.iter().any(|(r, _)| *r == leader_role) {
        return Err("must include the leader's role".into());
    }
    Ok(())
}

/// A role list (ProposeTeam, UpdateTeam): 1–8 distinct roles, each with a capacity of 1..10.
/// Whether seats allow it (the leader's role kept, no capacity below its filled seats) is
/// decided in the database ([`super::store::set_roles`]).
pub fn check_role_list(roles: &[(TeamRole, i32)]) -> Result<(), String> {
    if roles.is_empty() {
        return Err("name at least one role the team recruits".into());
    }
    if roles.len() > MAX_ROLES {
        return Err(format!("at most {MAX_ROLES} roles"));
    }
    for (i, (role, cap)) in roles.iter().enumerate() {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(cap) {
            return Err(format!("capacity of {} must be {MIN_CAPACITY}..{MAX_CAPACITY}", role.as_db()));
        }
        if roles[..i].iter().any(|(r, _)| r == role) {
            return Err(format!("{} is named twice", role.as_db()));
        }
    }
    Ok(())
}

/// Up to 5 http(s) links, none empty.
pub fn parse_links(raw: &[String]) -> Result<Vec<String>, String> {
    parse_urls(raw, MAX_LINKS, "link")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        use TeamRole::*;
        assert!(check_roles(&[(Backend, 3), (Design, 1)], Backend).is_ok());
        assert!(check_roles(&[], Backend).is_err());
        assert!(check_roles(&[(Backend, 0)], Backend).is_err());
        assert!(check_roles(&[(Backend, 11)], Backend).is_err());
        assert!(check_roles(&[(Backend, 2), (Backend, 2)], Backend).is_err());
        assert!(check_roles(&[(Backend, 2)], Design).is_err());
    }

    #[test]
    fn states() {
        use TeamState::*;
        assert!(Recruiting.leader_may_move_to(InProgress));
        assert!(InProgress.leader_may_move_to(Accomplished));
        assert!(!Recruiting.leader_may_move_to(Accomplished));
        assert!(!PendingApproval.leader_may_move_to(Recruiting));
        assert!(!Accomplished.leader_may_move_to(InProgress));
        assert!(!PendingApproval.is_listed() && !Rejected.is_listed() && Accomplished.is_listed());
        for s in TeamState::ALL {
            assert_eq!(TeamState::from_db(s.as_db()), Some(*s));
        }
    }

    #[test]
    fn links() {
        assert!(parse_links(&["https://github.com/maru".into()]).is_ok());
        assert!(parse_links(&["".into()]).is_err());
        assert!(parse_links(&["javascript:alert(1)".into()]).is_err());
        assert!(parse_links(&vec!["https://a.example".to_string(); 6]).is_err());
    }
}
