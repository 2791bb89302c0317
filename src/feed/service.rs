//! `maru.v1.FeedService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{comment_to_pb, comment_update, liker_to_pb, post_to_pb, status_from_pb, target};
use super::model::{CreateComment, CreatePost, PostFilter, PostView, UpdatePost};
use super::ops;
use crate::fields::{request_id_field, required_id};
use crate::grpc::admission::client_ip;
use crate::grpc::{caller, maybe_caller, pb};
use crate::media::attach;
use crate::state::AppState;

pub struct FeedApi {
    pub state: AppState,
}

impl FeedApi {
    /// Posts with their attached media (one query for all of them).
    async fn many(&self, views: Vec<PostView>) -> Result<Vec<pb::Post>, Status> {
        let ids: Vec<Uuid> = views.iter().map(|v| v.post.id).collect();
        let mut media = attach::shown(&self.state, attach::Kind::Post, &ids).await?;
        Ok(views
            .into_iter()
            .map(|v| {
                let m = media.remove(&v.post.id).unwrap_or_default();
                post_to_pb(v, m)
            })
            .collect())
    }

    async fn one(&self, view: PostView) -> Result<pb::Post, Status> {
        let mut media = attach::shown(&self.state, attach::Kind::Post, &[view.post.id]).await?;
        let m = media.remove(&view.post.id).unwrap_or_default();
        Ok(post_to_pb(view, m))
    }
}

#[tonic::async_trait]
impl pb::feed_service_server::FeedService for FeedApi {
    async fn create_post(
        &self,
        req: Request<pb::CreatePostRequest>,
    ) -> Result<Response<pb::CreatePostResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = CreatePost::try_from(req.into_inner())?;
        let p = ops::create_post(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreatePostResponse { post: Some(self.one(p).await?) }))
    }

    async fn get_post(&self, req: Request<pb::GetPostRequest>) -> Result<Response<pb::GetPostResponse>, Status> {
        let who = maybe_caller(&req)?;
        let trusted = &self.state.settings.rate_limit.trusted_proxies;
        let ip = req.remote_addr().map(|a| client_ip(trusted, a.ip(), req.metadata().as_ref()).to_string());
        let id = required_id("post_id", &req.get_ref().post_id)?;
        let p = ops::get_post(&self.state, who.as_ref(), id, ip.as_deref()).await?;
        Ok(Response::new(pb::GetPostResponse { post: Some(self.one(p).await?) }))
    }

    async fn update_post(
        &self,
        req: Request<pb::UpdatePostRequest>,
    ) -> Result<Response<pb::UpdatePostResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = UpdatePost::try_from(req.into_inner())?;
        let p = ops::update_post(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::UpdatePostResponse { post: Some(self.one(p).await?) }))
    }

    async fn delete_post(
        &self,
        req: Request<pb::DeletePostRequest>,
    ) -> Result<Response<pb::DeletePostResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("post_id", &req.get_ref().post_id)?;
        ops::delete_post(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeletePostResponse {}))
    }

    async fn set_post_status(
        &self,
        req: Request<pb::SetPostStatusRequest>,
    ) -> Result<Response<pb::SetPostStatusResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = required_id("post_id", &r.post_id)?;
        let status = status_from_pb(r.status)?;
        let p = ops::set_post_status(&self.state, &caller, id, status).await?;
        Ok(Response::new(pb::SetPostStatusResponse { post: Some(self.one(p).await?) }))
    }

    async fn list_posts(&self, req: Request<pb::ListPostsRequest>) -> Result<Response<pb::ListPostsResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let filter = PostFilter::try_from(&r)?;
        let (rows, next) = ops::list_posts(&self.state, who.as_ref(), filter, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListPostsResponse { posts: self.many(rows).await?, next_page_token: next }))
    }

    async fn list_home_feed(
        &self,
        req: Request<pb::ListHomeFeedRequest>,
    ) -> Result<Response<pb::ListHomeFeedResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (rows, next) = ops::list_home_feed(&self.state, &caller, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListHomeFeedResponse { posts: self.many(rows).await?, next_page_token: next }))
    }

    async fn create_comment(
        &self,
        req: Request<pb::CreateCommentRequest>,
    ) -> Result<Response<pb::CreateCommentResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = CreateComment::try_from(req.into_inner())?;
        let c = ops::create_comment(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::CreateCommentResponse { comment: Some(comment_to_pb(c)) }))
    }

    async fn list_comments(
        &self,
        req: Request<pb::ListCommentsRequest>,
    ) -> Result<Response<pb::ListCommentsResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let post = required_id("post_id", &r.post_id)?;
        let parent = if r.parent_id.trim().is_empty() { None } else { Some(required_id("parent_id", &r.parent_id)?) };
        let (rows, next) =
            ops::list_comments(&self.state, who.as_ref(), post, parent, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListCommentsResponse {
            comments: rows.into_iter().map(comment_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn update_comment(
        &self,
        req: Request<pb::UpdateCommentRequest>,
    ) -> Result<Response<pb::UpdateCommentResponse>, Status> {
        let caller = caller(&req)?;
        let (id, text) = comment_update(req.get_ref())?;
        let c = ops::update_comment(&self.state, &caller, id, text).await?;
        Ok(Response::new(pb::UpdateCommentResponse { comment: Some(comment_to_pb(c)) }))
    }

    async fn delete_comment(
        &self,
        req: Request<pb::DeleteCommentRequest>,
    ) -> Result<Response<pb::DeleteCommentResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("comment_id", &req.get_ref().comment_id)?;
        ops::delete_comment(&self.state, &caller, id).await?;
        Ok(Response::new(pb::DeleteCommentResponse {}))
    }

    async fn like(&self, req: Request<pb::LikeRequest>) -> Result<Response<pb::LikeResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let rid = request_id_field(&r.request_id)?;
        let t = target(&r.post_id, &r.comment_id)?;
        let (created, like_count) = ops::like(&self.state, &caller, t, rid.as_ref()).await?;
        Ok(Response::new(pb::LikeResponse { created, like_count }))
    }

    async fn unlike(&self, req: Request<pb::UnlikeRequest>) -> Result<Response<pb::UnlikeResponse>, Status> {
        let caller = caller(&req)?;
        let t = target(&req.get_ref().post_id, &req.get_ref().comment_id)?;
        let (removed, like_count) = ops::unlike(&self.state, &caller, t).await?;
        Ok(Response::new(pb::UnlikeResponse { removed, like_count }))
    }

    async fn list_likers(
        &self,
        req: Request<pb::ListLikersRequest>,
    ) -> Result<Response<pb::ListLikersResponse>, Status> {
        let who = maybe_caller(&req)?;
        let r = req.into_inner();
        let t = target(&r.post_id, &r.comment_id)?;
        let (rows, next) = ops::list_likers(&self.state, who.as_ref(), t, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListLikersResponse {
            likers: rows.into_iter().map(liker_to_pb).collect(),
            next_page_token: next,
        }))
    }
}
