//! `maru.v1.AuthService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{refresh_token, user_to_pb};
use super::ops;
use crate::fields::timestamp;
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct AuthApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn sign_up(&self, req: Request<pb::SignUpRequest>) -> Result<Response<pb::SignUpResponse>, Status> {
        let cmd = req.into_inner().try_into()?;
        let user = ops::sign_up(&self.state, cmd).await?;
        Ok(Response::new(pb::SignUpResponse { user: Some(user_to_pb(user, true)) }))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let cmd = req.into_inner().try_into()?;
        let (t, user) = ops::login(&self.state, cmd).await?;
        Ok(Response::new(pb::LoginResponse {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            access_expires_at: Some(timestamp(t.access_expires_at)),
            user: Some(user_to_pb(user, true)),
            refresh_expires_at: Some(timestamp(t.refresh_expires_at)),
        }))
    }

    async fn refresh(&self, req: Request<pb::RefreshRequest>) -> Result<Response<pb::RefreshResponse>, Status> {
        let t = ops::refresh(&self.state, refresh_token(&req.get_ref().refresh_token)?).await?;
        Ok(Response::new(pb::RefreshResponse {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            access_expires_at: Some(timestamp(t.access_expires_at)),
            refresh_expires_at: Some(timestamp(t.refresh_expires_at)),
        }))
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        ops::logout(&self.state, refresh_token(&req.get_ref().refresh_token)?).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = req.into_inner().try_into()?;
        ops::change_password(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller(&req)?;
        let user = ops::who_am_i(&self.state, &caller).await?;
        Ok(Response::new(pb::WhoAmIResponse { user: Some(user_to_pb(user, true)) }))
    }
}
