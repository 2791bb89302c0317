//! `maru.v1.AuthService`: thin handlers over [`super::ops`].

use tonic::{Request, Response, Status};

use super::convert::{refresh_token, session_to_pb, user_to_pb};
use super::model::Device;
use super::{guests, ops};
use crate::fields::{required_id, timestamp};
use crate::grpc::admission::client_ip;
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
        let device = device_of(&self.state, &req);
        let cmd = req.into_inner().try_into()?;
        let (t, user) = ops::login(&self.state, cmd, &device).await?;
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

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (rows, next_page_token) = ops::list_sessions(&self.state, &caller, r.page_size, &r.page_token).await?;
        let sessions = rows.into_iter().map(|s| session_to_pb(s, caller.session_id)).collect();
        Ok(Response::new(pb::ListSessionsResponse { sessions, next_page_token }))
    }

    async fn revoke_session(
        &self,
        req: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let caller = caller(&req)?;
        let id = required_id("session_id", &req.get_ref().session_id)?;
        ops::revoke_session(&self.state, &caller, id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    async fn logout_all(&self, req: Request<pb::LogoutAllRequest>) -> Result<Response<pb::LogoutAllResponse>, Status> {
        let caller = caller(&req)?;
        let revoked = ops::logout_all(&self.state, &caller, req.get_ref().keep_current).await?;
        Ok(Response::new(pb::LogoutAllResponse { revoked: revoked as i64 }))
    }

    async fn send_verification_code(
        &self,
        req: Request<pb::SendVerificationCodeRequest>,
    ) -> Result<Response<pb::SendVerificationCodeResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = req.into_inner().try_into()?;
        let expires_at = ops::send_verification_code(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::SendVerificationCodeResponse { expires_at: Some(timestamp(expires_at)) }))
    }

    async fn verify_email(
        &self,
        req: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = req.into_inner().try_into()?;
        let at = ops::verify_email(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::VerifyEmailResponse { email_verified_at: Some(timestamp(at)) }))
    }

    async fn request_password_reset(
        &self,
        req: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        ops::request_password_reset(&self.state, req.into_inner().try_into()?).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    async fn reset_password(
        &self,
        req: Request<pb::ResetPasswordRequest>,
    ) -> Result<Response<pb::ResetPasswordResponse>, Status> {
        ops::reset_password(&self.state, req.into_inner().try_into()?).await?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    async fn start_guest_session(
        &self,
        req: Request<pb::StartGuestSessionRequest>,
    ) -> Result<Response<pb::StartGuestSessionResponse>, Status> {
        let device = device_of(&self.state, &req);
        let v = guests::start_guest_session(&self.state, &device).await?;
        Ok(Response::new(pb::StartGuestSessionResponse {
            access_token: v.tokens.access_token,
            refresh_token: v.tokens.refresh_token,
            access_expires_at: Some(timestamp(v.tokens.access_expires_at)),
            refresh_expires_at: Some(timestamp(v.tokens.refresh_expires_at)),
            user: Some(user_to_pb(v.user, true)),
            community_ids: v.community_ids.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn convert_guest(
        &self,
        req: Request<pb::ConvertGuestRequest>,
    ) -> Result<Response<pb::ConvertGuestResponse>, Status> {
        let caller = caller(&req)?;
        let cmd = req.into_inner().try_into()?;
        let user = guests::convert_guest(&self.state, &caller, cmd).await?;
        Ok(Response::new(pb::ConvertGuestResponse { user: Some(user_to_pb(user, true)) }))
    }
}

/// The device a request comes from: its `user-agent` and client address (forwarded addresses
/// only from trusted proxies).
pub fn device_of<T>(state: &AppState, req: &Request<T>) -> Device {
    let trusted = &state.settings.rate_limit.trusted_proxies;
    let address = req.remote_addr().map(|a| client_ip(trusted, a.ip(), req.metadata().as_ref()));
    let user_agent = req.metadata().get("user-agent").and_then(|v| v.to_str().ok());
    Device::new(user_agent, address)
}
