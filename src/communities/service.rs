//! `maru.v1.CommunityService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{
    bulk_decision, community_and_user, community_to_pb, member_query, membership_to_pb, my_community_to_pb,
    role_from_pb,
};
use super::model::{Decision, JoinRequest, NewCommunity, SearchQuery};
use super::ops;
use crate::error::AppError;
use crate::fields::required_id;
use crate::grpc::{caller, maybe_caller, pb};
use crate::state::AppState;

pub struct CommunityApi {
    pub state: AppState,
}

fn total(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[tonic::async_trait]
impl pb::community_service_server::CommunityService for CommunityApi {
    async fn search_communities(
        &self,
        req: Request<pb::SearchCommunitiesRequest>,
    ) -> Result<Response<pb::SearchCommunitiesResponse>, Status> {
        maybe_caller(&req)?;
        let r = req.into_inner();
        let q = SearchQuery::try_from(&r)?;
        let (rows, n, next) = ops::search_communities(&self.state, q, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::SearchCommunitiesResponse {
            communities: rows.into_iter().map(community_to_pb).collect(),
            next_page_token: next,
            total_size: total(n.total),
            total_size_is_lower_bound: n.lower_bound,
        }))
    }

    async fn get_community(
        &self,
        req: Request<pb::GetCommunityRequest>,
    ) -> Result<Response<pb::GetCommunityResponse>, Status> {
        let who = maybe_caller(&req)?;
        let id = required_id("community_id", &req.get_ref().community_id)?;
        let c = ops::get_community(&self.state, who.as_ref(), id).await?;
        Ok(Response::new(pb::GetCommunityResponse { community: Some(community_to_pb(c)) }))
    }

    async fn create_community(
        &self,
        req: Request<pb::CreateCommunityRequest>,
    ) -> Result<Response<pb::CreateCommunityResponse>, Status> {
        let caller = caller(&req)?;
        // Non-admins are refused before their input is looked at.
        caller.require_admin()?;
        let cmd = NewCommunity::try_from(req.into_inner())?;
        let c = ops::create_community(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateCommunityResponse { community: Some(community_to_pb(c)) }))
    }

    async fn request_membership(
        &self,
        req: Request<pb::RequestMembershipRequest>,
    ) -> Result<Response<pb::RequestMembershipResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = JoinRequest::try_from(req.into_inner())?;
        let m = ops::request_membership(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::RequestMembershipResponse { membership: Some(membership_to_pb(m)) }))
    }

    async fn list_membership_requests(
        &self,
        req: Request<pb::ListMembershipRequestsRequest>,
    ) -> Result<Response<pb::ListMembershipRequestsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("community_id", &r.community_id)?;
        let (rows, next) = ops::list_membership_requests(&self.state, &caller, id, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListMembershipRequestsResponse {
            memberships: rows.into_iter().map(membership_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn decide_membership(
        &self,
        req: Request<pb::DecideMembershipRequest>,
    ) -> Result<Response<pb::DecideMembershipResponse>, Status> {
        let caller = caller(&req)?;
        let d = Decision::try_from(req.into_inner())?;
        let m = ops::decide_membership(&self.state, &caller, d).await?;
        Ok(Response::new(pb::DecideMembershipResponse { membership: Some(membership_to_pb(m)) }))
    }

    async fn decide_memberships(
        &self,
        req: Request<pb::DecideMembershipsRequest>,
    ) -> Result<Response<pb::DecideMembershipsResponse>, Status> {
        let caller = caller(&req)?;
        let (community, ids, note) = bulk_decision(req.get_ref())?;
        let r = req.get_ref();
        let (decided, not_decided) =
            ops::decide_memberships(&self.state, &caller, community, &ids, r.approve, note.as_deref()).await?;
        Ok(Response::new(pb::DecideMembershipsResponse {
            decided: decided.into_iter().map(membership_to_pb).collect(),
            not_decided: not_decided.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn list_members(
        &self,
        req: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("community_id", &r.community_id)?;
        let role = role_from_pb(r.role).map_err(|e| AppError::invalid("role", e))?;
        let query = member_query(&r.query)?;
        let (rows, next) =
            ops::list_members(&self.state, &caller, id, role, query.as_deref(), r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: rows.into_iter().map(membership_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn set_member_role(
        &self,
        req: Request<pb::SetMemberRoleRequest>,
    ) -> Result<Response<pb::SetMemberRoleResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (community, user) = community_and_user(&r.community_id, &r.user_id)?;
        let role = role_from_pb(r.role)
            .map_err(|e| AppError::invalid("role", e))?
            .ok_or_else(|| AppError::invalid("role", "must be MEMBER or MANAGER"))?;
        let m = ops::set_member_role(&self.state, &caller, community, user, role).await?;
        Ok(Response::new(pb::SetMemberRoleResponse { membership: Some(membership_to_pb(m)) }))
    }

    async fn leave_community(
        &self,
        req: Request<pb::LeaveCommunityRequest>,
    ) -> Result<Response<pb::LeaveCommunityResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("community_id", &req.get_ref().community_id)?;
        ops::leave_community(&self.state, &caller, id).await?;
        Ok(Response::new(pb::LeaveCommunityResponse {}))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::RemoveMemberResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (community, user) = community_and_user(&r.community_id, &r.user_id)?;
        ops::remove_member(&self.state, &caller, community, user).await?;
        Ok(Response::new(pb::RemoveMemberResponse {}))
    }

    async fn list_my_communities(
        &self,
        req: Request<pb::ListMyCommunitiesRequest>,
    ) -> Result<Response<pb::ListMyCommunitiesResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let (rows, next) = ops::list_my_communities(&self.state, who.as_ref(), r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListMyCommunitiesResponse {
            communities: rows.into_iter().map(my_community_to_pb).collect(),
            next_page_token: next,
        }))
    }
}
