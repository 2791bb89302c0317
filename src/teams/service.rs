//! `maru.v1.TeamService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{application_state, application_to_pb, member_to_pb, note, set_state, team_to_pb};
use super::model::{Apply, ProposeTeam, TeamFilter, TeamView, UpdateTeam};
use super::ops;
use crate::error::Violations;
use crate::fields::{id, opt_id, required_id};
use crate::grpc::{caller, pb};
use crate::media::attach;
use crate::state::AppState;

pub struct TeamApi {
    pub state: AppState,
}

/// Teams with their attached image (`crate::media::attach`; one query for all of them).
async fn teams_pb(state: &AppState, views: Vec<TeamView>) -> Result<Vec<pb::Team>, Status> {
    let ids: Vec<Uuid> = views.iter().map(|v| v.team.id).collect();
    let mut media = attach::shown(state, attach::Kind::Team, &ids).await?;
    Ok(views
        .into_iter()
        .map(|v| {
            let m = media.remove(&v.team.id).and_then(|m| m.into_iter().next());
            team_to_pb(v, m)
        })
        .collect())
}

async fn team_pb(state: &AppState, view: TeamView) -> Result<pb::Team, Status> {
    Ok(teams_pb(state, vec![view]).await?.into_iter().next().unwrap_or_default())
}

#[tonic::async_trait]
impl pb::team_service_server::TeamService for TeamApi {
    async fn propose_team(
        &self,
        req: Request<pb::ProposeTeamRequest>,
    ) -> Result<Response<pb::ProposeTeamResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = ProposeTeam::try_from(req.into_inner())?;
        let t = ops::propose_team(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ProposeTeamResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn approve_team(
        &self,
        req: Request<pb::ApproveTeamRequest>,
    ) -> Result<Response<pb::ApproveTeamResponse>, Status> {
        let caller = caller(&req)?;
        let (id, note) = note(("team_id", &req.get_ref().team_id), &req.get_ref().note, false)?;
        let t = ops::decide_team(&self.state, &caller, id, true, &note).await?;
        Ok(Response::new(pb::ApproveTeamResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn reject_team(
        &self,
        req: Request<pb::RejectTeamRequest>,
    ) -> Result<Response<pb::RejectTeamResponse>, Status> {
        let caller = caller(&req)?;
        let (id, note) = note(("team_id", &req.get_ref().team_id), &req.get_ref().note, true)?;
        let t = ops::decide_team(&self.state, &caller, id, false, &note).await?;
        Ok(Response::new(pb::RejectTeamResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn get_team(&self, req: Request<pb::GetTeamRequest>) -> Result<Response<pb::GetTeamResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("team_id", &req.get_ref().team_id)?;
        let t = ops::get_team(&self.state, &caller, id).await?;
        Ok(Response::new(pb::GetTeamResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn list_teams(&self, req: Request<pb::ListTeamsRequest>) -> Result<Response<pb::ListTeamsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let filter = TeamFilter::try_from(&r)?;
        let (rows, next) = ops::list_teams(&self.state, &caller, filter, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListTeamsResponse { teams: teams_pb(&self.state, rows).await?, next_page_token: next }))
    }

    async fn update_team(
        &self,
        req: Request<pb::UpdateTeamRequest>,
    ) -> Result<Response<pb::UpdateTeamResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = UpdateTeam::try_from(req.into_inner())?;
        let t = ops::update_team(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdateTeamResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn set_team_state(
        &self,
        req: Request<pb::SetTeamStateRequest>,
    ) -> Result<Response<pb::SetTeamStateResponse>, Status> {
        let caller = caller(&req)?;
        let (id, to) = set_state(req.get_ref())?;
        let t = ops::set_team_state(&self.state, &caller, id, to).await?;
        Ok(Response::new(pb::SetTeamStateResponse { team: Some(team_pb(&self.state, t).await?) }))
    }

    async fn delete_team(
        &self,
        req: Request<pb::DeleteTeamRequest>,
    ) -> Result<Response<pb::DeleteTeamResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("team_id", &req.get_ref().team_id)?;
        ops::delete_team(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteTeamResponse {}))
    }

    async fn apply(&self, req: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = Apply::try_from(req.into_inner())?;
        let a = ops::apply(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ApplyResponse { application: Some(application_to_pb(a)) }))
    }

    async fn withdraw_application(
        &self,
        req: Request<pb::WithdrawApplicationRequest>,
    ) -> Result<Response<pb::WithdrawApplicationResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("application_id", &req.get_ref().application_id)?;
        ops::withdraw_application(&self.state, &caller, id).await?;
        Ok(Response::new(pb::WithdrawApplicationResponse {}))
    }

    async fn list_applications(
        &self,
        req: Request<pb::ListApplicationsRequest>,
    ) -> Result<Response<pb::ListApplicationsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let team = opt_id(&mut v, "team_id", &r.team_id);
        v.finish()?;
        let state = application_state(r.state)?;
        let (rows, next) =
            ops::list_applications(&self.state, &caller, team, state, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListApplicationsResponse {
            applications: rows.into_iter().map(application_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn decide_application(
        &self,
        req: Request<pb::DecideApplicationRequest>,
    ) -> Result<Response<pb::DecideApplicationResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let (id, note) = note(("application_id", &r.application_id), &r.note, false)?;
        let a = ops::decide_application(&self.state, &caller, id, r.approve, &note).await?;
        Ok(Response::new(pb::DecideApplicationResponse { application: Some(application_to_pb(a)) }))
    }

    async fn leave_team(&self, req: Request<pb::LeaveTeamRequest>) -> Result<Response<pb::LeaveTeamResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("team_id", &req.get_ref().team_id)?;
        ops::leave_team(&self.state, &caller, id).await?;
        Ok(Response::new(pb::LeaveTeamResponse {}))
    }

    async fn remove_team_member(
        &self,
        req: Request<pb::RemoveTeamMemberRequest>,
    ) -> Result<Response<pb::RemoveTeamMemberResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let mut v = Violations::new();
        let (team, user) = (id(&mut v, "team_id", &r.team_id), id(&mut v, "user_id", &r.user_id));
        v.finish()?;
        ops::remove_team_member(&self.state, &caller, team, user).await?;
        Ok(Response::new(pb::RemoveTeamMemberResponse {}))
    }

    async fn list_team_members(
        &self,
        req: Request<pb::ListTeamMembersRequest>,
    ) -> Result<Response<pb::ListTeamMembersResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("team_id", &r.team_id)?;
        let (rows, next) = ops::list_team_members(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListTeamMembersResponse {
            members: rows.into_iter().map(member_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn like_team(&self, req: Request<pb::LikeTeamRequest>) -> Result<Response<pb::LikeTeamResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("team_id", &req.get_ref().team_id)?;
        let (created, like_count) = ops::like_team(&self.state, &caller, id).await?;
        Ok(Response::new(pb::LikeTeamResponse { created, like_count }))
    }

    async fn unlike_team(
        &self,
        req: Request<pb::UnlikeTeamRequest>,
    ) -> Result<Response<pb::UnlikeTeamResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("team_id", &req.get_ref().team_id)?;
        let (removed, like_count) = ops::unlike_team(&self.state, &caller, id).await?;
        Ok(Response::new(pb::UnlikeTeamResponse { removed, like_count }))
    }
}
