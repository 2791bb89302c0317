//! `maru.v1.IdentityService`: thin handlers over [`super::ops`].

use std::sync::Arc;

use secrecy::SecretString;
use tonic::{Request, Response, Status};

use super::model::parse_opaque;
use super::ops::{self, CompleteRegistration, Finished, Proof};
use super::providers::Providers;
use crate::accounts::external::{Opened, parse_account_code};
use crate::accounts::{Email, Handle, device_of, parse_display_name, user_to_pb};
use crate::error::{AppError, Violations};
use crate::fields::timestamp;
use crate::grpc::{caller, pb};
use crate::mail::Lang;
use crate::state::AppState;

pub struct IdentityApi {
    pub state: AppState,
    pub providers: Arc<Providers>,
}

/// A provider name field: required, bounded (an unknown one is NOT_FOUND later).
fn provider_field(v: &mut Violations, raw: &str) -> String {
    let p = raw.trim();
    if p.is_empty() {
        v.add("provider", "is required");
    } else if p.len() > 32 {
        v.add("provider", "is not a configured provider");
    }
    p.to_owned()
}

fn opaque_field(v: &mut Violations, field: &str, raw: &str) -> String {
    v.check(field, parse_opaque(raw)).unwrap_or_default().to_owned()
}

fn signed_in(o: Opened) -> pb::ExternalSignIn {
    pb::ExternalSignIn {
        access_token: o.tokens.access_token,
        refresh_token: o.tokens.refresh_token,
        access_expires_at: Some(timestamp(o.tokens.access_expires_at)),
        refresh_expires_at: Some(timestamp(o.tokens.refresh_expires_at)),
        user: Some(user_to_pb(o.user, true)),
    }
}

#[tonic::async_trait]
impl pb::identity_service_server::IdentityService for IdentityApi {
    async fn start_external_login(
        &self,
        req: Request<pb::StartExternalLoginRequest>,
    ) -> Result<Response<pb::StartExternalLoginResponse>, Status> {
        let r = req.into_inner();
        let mut v = Violations::new();
        let provider = provider_field(&mut v, &r.provider);
        if r.redirect_uri.trim().is_empty() {
            v.add("redirect_uri", "is required");
        } else if r.redirect_uri.len() > 2000 {
            v.add("redirect_uri", "must be at most 2000 characters");
        }
        v.finish()?;
        let s = ops::start_external_login(&self.state, &self.providers, &provider, r.redirect_uri.trim()).await?;
        Ok(Response::new(pb::StartExternalLoginResponse {
            authorization_url: s.authorization_url,
            state: s.state,
            state_expires_at: Some(timestamp(s.expires_at)),
        }))
    }

    async fn finish_external_login(
        &self,
        req: Request<pb::FinishExternalLoginRequest>,
    ) -> Result<Response<pb::FinishExternalLoginResponse>, Status> {
        let device = device_of(&self.state, &req);
        let r = req.into_inner();
        let mut v = Violations::new();
        let provider = provider_field(&mut v, &r.provider);
        let state = opaque_field(&mut v, "state", &r.state);
        let code = r.code.trim();
        if code.is_empty() {
            v.add("code", "is required");
        } else if code.len() > 2048 || code.chars().any(char::is_control) {
            v.add("code", "is not an authorization code");
        }
        v.finish()?;
        use pb::finish_external_login_response::Result as R;
        let result =
            match ops::finish_external_login(&self.state, &self.providers, &device, &provider, code, &state).await? {
                Finished::SignedIn(o) => R::SignedIn(signed_in(o)),
                Finished::Register { ticket, expires_at, profile, handle, name } => {
                    R::RegistrationRequired(pb::RegistrationRequired {
                        ticket,
                        ticket_expires_at: Some(timestamp(expires_at)),
                        suggested_handle: handle,
                        suggested_display_name: name,
                        email: profile.email.unwrap_or_default(),
                        email_verified: profile.email_verified,
                    })
                }
                Finished::Link { ticket, expires_at, handle, has_password } => R::LinkRequired(pb::LinkRequired {
                    ticket,
                    ticket_expires_at: Some(timestamp(expires_at)),
                    handle,
                    has_password,
                }),
            };
        Ok(Response::new(pb::FinishExternalLoginResponse { result: Some(result) }))
    }

    async fn complete_registration(
        &self,
        req: Request<pb::CompleteRegistrationRequest>,
    ) -> Result<Response<pb::CompleteRegistrationResponse>, Status> {
        let device = device_of(&self.state, &req);
        let r = req.into_inner();
        let mut v = Violations::new();
        let ticket = opaque_field(&mut v, "ticket", &r.ticket);
        let handle = v.check("handle", Handle::parse(&r.handle));
        let display_name = v.check("display_name", parse_display_name(&r.display_name));
        let email = if r.email.trim().is_empty() { None } else { v.check("email", Email::parse(&r.email)) };
        let (Some(handle), Some(display_name)) = (handle, display_name) else {
            return Err(v.into_error().into());
        };
        v.finish()?;
        let cmd = CompleteRegistration { ticket, handle, display_name, email };
        let o = ops::complete_registration(&self.state, &self.providers, &device, cmd).await?;
        Ok(Response::new(pb::CompleteRegistrationResponse { signed_in: Some(signed_in(o)) }))
    }

    async fn send_link_code(
        &self,
        req: Request<pb::SendLinkCodeRequest>,
    ) -> Result<Response<pb::SendLinkCodeResponse>, Status> {
        let r = req.into_inner();
        let mut v = Violations::new();
        let ticket = opaque_field(&mut v, "ticket", &r.ticket);
        let lang = v.check("lang", Lang::parse(&r.lang));
        v.finish()?;
        let expires_at = ops::send_link_code(&self.state, &ticket, lang.unwrap_or_default()).await?;
        Ok(Response::new(pb::SendLinkCodeResponse { expires_at: Some(timestamp(expires_at)) }))
    }

    async fn link_identity(
        &self,
        req: Request<pb::LinkIdentityRequest>,
    ) -> Result<Response<pb::LinkIdentityResponse>, Status> {
        let device = device_of(&self.state, &req);
        let r = req.into_inner();
        let mut v = Violations::new();
        let ticket = opaque_field(&mut v, "ticket", &r.ticket);
        use pb::link_identity_request::Proof as P;
        let proof = match r.proof {
            Some(P::Password(p)) if !p.is_empty() && p.chars().count() <= 128 => {
                Some(Proof::Password(SecretString::from(p)))
            }
            Some(P::Password(_)) => {
                v.add("password", "is required (at most 128 characters)");
                None
            }
            Some(P::Code(c)) => v.check("code", parse_account_code(&c)).map(Proof::Code),
            None => {
                v.add("proof", "a password or a mailed code is required");
                None
            }
        };
        v.finish()?;
        let proof = proof.ok_or_else(|| AppError::invalid("proof", "is required"))?;
        let o = ops::link_identity(&self.state, &self.providers, &device, &ticket, proof).await?;
        Ok(Response::new(pb::LinkIdentityResponse { signed_in: Some(signed_in(o)) }))
    }

    async fn list_identities(
        &self,
        req: Request<pb::ListIdentitiesRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        let caller = caller(&req)?;
        let rows = ops::list_identities(&self.state, &caller).await?;
        let identities = rows
            .into_iter()
            .map(|i| pb::ExternalIdentity {
                provider: i.provider,
                subject: i.subject,
                email: i.email,
                linked_at: Some(timestamp(i.linked_at)),
                last_login_at: Some(timestamp(i.last_login_at)),
            })
            .collect();
        Ok(Response::new(pb::ListIdentitiesResponse { identities }))
    }

    async fn unlink_identity(
        &self,
        req: Request<pb::UnlinkIdentityRequest>,
    ) -> Result<Response<pb::UnlinkIdentityResponse>, Status> {
        let caller = caller(&req)?;
        let mut v = Violations::new();
        let provider = provider_field(&mut v, &req.get_ref().provider);
        v.finish()?;
        ops::unlink_identity(&self.state, &caller, &provider).await?;
        Ok(Response::new(pb::UnlinkIdentityResponse {}))
    }
}
