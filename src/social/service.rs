//! `maru.v1.ProfileService` and `maru.v1.SocialService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{activity_request, card_to_pb, profile_to_pb, summary_to_pb};
use super::model::{ProfilePatch, ProfileSearch};
use super::ops::{self, handle_field};
use crate::fields::request_id_field;
use crate::grpc::{caller, maybe_caller, pb};
use crate::media::attach;
use crate::state::AppState;
use crate::teams::activity;

pub struct ProfileApi {
    pub state: AppState,
}

/// The profile picture of `user` (`crate::media::attach`), if any.
async fn avatar_of(state: &AppState, user: uuid::Uuid) -> Result<Option<pb::Media>, Status> {
    let mut media = attach::shown(state, attach::Kind::Profile, &[user]).await?;
    Ok(media.remove(&user).and_then(|m| m.into_iter().next()))
}

#[tonic::async_trait]
impl pb::profile_service_server::ProfileService for ProfileApi {
    async fn get_profile(
        &self,
        req: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let who = maybe_caller(&req)?;
        let handle = handle_field(&req.get_ref().handle)?;
        let (p, counts) = ops::get_profile_with_activity(&self.state, who.as_ref(), &handle).await?;
        let avatar = avatar_of(&self.state, p.user_id).await?;
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(profile_to_pb(p, Some(activity::activity_counts_to_pb(counts)), avatar)),
        }))
    }

    async fn update_profile(
        &self,
        req: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let caller = caller(&req)?;
        let patch = ProfilePatch::try_from(req.into_inner())?;
        let p = ops::update_profile(&self.state, &caller, patch).await?;
        let avatar = avatar_of(&self.state, p.user_id).await?;
        Ok(Response::new(pb::UpdateProfileResponse { profile: Some(profile_to_pb(p, None, avatar)) }))
    }

    async fn delete_account(
        &self,
        req: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let caller = caller(&req)?;
        ops::delete_account(&self.state, &caller, &req.get_ref().confirm_handle).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn search_profiles(
        &self,
        req: Request<pb::SearchProfilesRequest>,
    ) -> Result<Response<pb::SearchProfilesResponse>, Status> {
        maybe_caller(&req)?;
        let r = req.into_inner();
        let search = ProfileSearch::try_from(&r)?;
        let (rows, next) = ops::search_profiles(&self.state, &search, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::SearchProfilesResponse {
            profiles: rows.into_iter().map(card_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_profile_activity(
        &self,
        req: Request<pb::ListProfileActivityRequest>,
    ) -> Result<Response<pb::ListProfileActivityResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let (handle, kind) = activity_request(&r)?;
        let (rows, next) =
            ops::list_profile_activity(&self.state, who.as_ref(), &handle, kind, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListProfileActivityResponse {
            entries: rows.into_iter().map(activity::activity_to_pb).collect(),
            next_page_token: next,
        }))
    }
}

pub struct SocialApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::social_service_server::SocialService for SocialApi {
    async fn follow(&self, req: Request<pb::FollowRequest>) -> Result<Response<pb::FollowResponse>, Status> {
        let caller = caller(&req)?;
        let rid = request_id_field(&req.get_ref().request_id)?;
        let handle = handle_field(&req.get_ref().handle)?;
        let (created, p) = ops::follow(&self.state, &caller, &handle, rid.as_ref()).await?;
        let avatar = avatar_of(&self.state, p.user_id).await?;
        Ok(Response::new(pb::FollowResponse { created, profile: Some(profile_to_pb(p, None, avatar)) }))
    }

    async fn unfollow(&self, req: Request<pb::UnfollowRequest>) -> Result<Response<pb::UnfollowResponse>, Status> {
        let caller = caller(&req)?;
        let handle = handle_field(&req.get_ref().handle)?;
        let removed = ops::unfollow(&self.state, &caller, &handle).await?;
        Ok(Response::new(pb::UnfollowResponse { removed }))
    }

    async fn remove_follower(
        &self,
        req: Request<pb::RemoveFollowerRequest>,
    ) -> Result<Response<pb::RemoveFollowerResponse>, Status> {
        let caller = caller(&req)?;
        let handle = handle_field(&req.get_ref().handle)?;
        let removed = ops::remove_follower(&self.state, &caller, &handle).await?;
        Ok(Response::new(pb::RemoveFollowerResponse { removed }))
    }

    async fn list_followers(
        &self,
        req: Request<pb::ListFollowersRequest>,
    ) -> Result<Response<pb::ListFollowersResponse>, Status> {
        maybe_caller(&req)?;
        let r = req.into_inner();
        let handle = handle_field(&r.handle)?;
        let (rows, next) = ops::list_follows(&self.state, &handle, true, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListFollowersResponse {
            profiles: rows.into_iter().map(summary_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_following(
        &self,
        req: Request<pb::ListFollowingRequest>,
    ) -> Result<Response<pb::ListFollowingResponse>, Status> {
        maybe_caller(&req)?;
        let r = req.into_inner();
        let handle = handle_field(&r.handle)?;
        let (rows, next) = ops::list_follows(&self.state, &handle, false, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListFollowingResponse {
            profiles: rows.into_iter().map(summary_to_pb).collect(),
            next_page_token: next,
        }))
    }
}
