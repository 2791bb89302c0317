//! Protobuf ⇄ model conversions for accounts. Requests become commands or every bad field is
//! reported at once.

use secrecy::SecretString;

use super::model::{
    ChangePassword, ConvertGuest, Email, Handle, Login, RequestReset, ResetPassword, SendCode, SessionInfo, SignUp,
    User, VerifyEmail, parse_code, parse_display_name, parse_password,
};
use crate::caller::{Caller, Role};
use crate::error::{AppError, Violations};
use crate::fields::{lookup, request_id, timestamp};
use crate::grpc::pb;
use crate::mail::Lang;

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::User => pb::Role::User,
        Role::Admin => pb::Role::Admin,
        Role::Guest => pb::Role::Guest,
    }
}

/// Whether `viewer` may see `user`'s email: the user themself and admins only.
pub fn sees_email(viewer: Option<&Caller>, user: &User) -> bool {
    viewer.is_some_and(|c| c.user_id == user.id || c.is_admin())
}

/// A user for the wire; the email only when `show_email` (see [`sees_email`]).
pub fn user_to_pb(u: User, show_email: bool) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        handle: u.handle,
        email: if show_email { u.email } else { String::new() },
        display_name: u.display_name,
        role: role_to_pb(u.role) as i32,
        created_at: Some(timestamp(u.created_at)),
    }
}

impl TryFrom<pb::SignUpRequest> for SignUp {
    type Error = AppError;
    fn try_from(r: pb::SignUpRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let handle = v.check("handle", Handle::parse(&r.handle));
        let email = v.check("email", Email::parse(&r.email));
        let password = v.check("password", parse_password(&r.password));
        let display_name = v.check("display_name", parse_display_name(&r.display_name));
        let request_id = request_id(&mut v, &r.request_id);
        match (handle, email, password, display_name) {
            (Some(handle), Some(email), Some(password), Some(display_name)) if v.is_empty() => {
                Ok(SignUp { handle, email, password, display_name, request_id })
            }
            _ => Err(v.into_error()),
        }
    }
}

impl TryFrom<pb::ConvertGuestRequest> for ConvertGuest {
    type Error = AppError;
    fn try_from(r: pb::ConvertGuestRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let handle = v.check("handle", Handle::parse(&r.handle));
        let email = v.check("email", Email::parse(&r.email));
        let password = v.check("password", parse_password(&r.password));
        let display_name = v.check("display_name", parse_display_name(&r.display_name));
        match (handle, email, password, display_name) {
            (Some(handle), Some(email), Some(password), Some(display_name)) if v.is_empty() => {
                Ok(ConvertGuest { handle, email, password, display_name })
            }
            _ => Err(v.into_error()),
        }
    }
}

impl TryFrom<pb::LoginRequest> for Login {
    type Error = AppError;
    fn try_from(r: pb::LoginRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        if r.login.trim().is_empty() {
            v.add("login", "is required");
        }
        lookup(&mut v, "login", &r.login);
        if r.password.is_empty() {
            v.add("password", "is required");
        }
        if r.password.chars().count() > 128 {
            v.add("password", "must be at most 128 characters");
        }
        v.finish()?;
        Ok(Login { login: r.login, password: SecretString::from(r.password) })
    }
}

impl TryFrom<pb::ChangePasswordRequest> for ChangePassword {
    type Error = AppError;
    fn try_from(r: pb::ChangePasswordRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        if r.old_password.is_empty() {
            v.add("old_password", "is required");
        }
        let new = v.check("new_password", parse_password(&r.new_password));
        if !r.old_password.is_empty() && r.old_password == r.new_password {
            v.add("new_password", "must differ from the old password");
        }
        match new {
            Some(new) if v.is_empty() => Ok(ChangePassword { old: SecretString::from(r.old_password), new }),
            _ => Err(v.into_error()),
        }
    }
}

/// A refresh token field: required, bounded.
pub fn refresh_token(raw: &str) -> Result<&str, AppError> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 256 {
        return Err(AppError::invalid("refresh_token", "is required (at most 256 characters)"));
    }
    Ok(t)
}

pub fn session_to_pb(s: SessionInfo, current: uuid::Uuid) -> pb::Session {
    pb::Session {
        session_id: s.id.to_string(),
        created_at: Some(timestamp(s.created_at)),
        last_used_at: Some(timestamp(s.last_used_at)),
        expires_at: Some(timestamp(s.expires_at)),
        user_agent: s.user_agent,
        address: s.address,
        current: s.id == current,
    }
}

impl TryFrom<pb::SendVerificationCodeRequest> for SendCode {
    type Error = AppError;
    fn try_from(r: pb::SendVerificationCodeRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let lang = v.check("lang", Lang::parse(&r.lang));
        v.finish()?;
        Ok(SendCode { lang: lang.unwrap_or_default() })
    }
}

impl TryFrom<pb::VerifyEmailRequest> for VerifyEmail {
    type Error = AppError;
    fn try_from(r: pb::VerifyEmailRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let code = v.check("code", parse_code(&r.code));
        v.finish()?;
        Ok(VerifyEmail { code: code.unwrap_or_default() })
    }
}

impl TryFrom<pb::RequestPasswordResetRequest> for RequestReset {
    type Error = AppError;
    fn try_from(r: pb::RequestPasswordResetRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let email = v.check("email", Email::parse(&r.email));
        let lang = v.check("lang", Lang::parse(&r.lang));
        match (email, lang) {
            (Some(email), Some(lang)) if v.is_empty() => Ok(RequestReset { email, lang }),
            _ => Err(v.into_error()),
        }
    }
}

impl TryFrom<pb::ResetPasswordRequest> for ResetPassword {
    type Error = AppError;
    fn try_from(r: pb::ResetPasswordRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let token = r.token.trim();
        if token.is_empty() {
            v.add("token", "is required");
        } else if token.len() > 128 {
            v.add("token", "is not a reset token");
        }
        let new = v.check("new_password", parse_password(&r.new_password));
        match new {
            Some(new) if v.is_empty() => Ok(ResetPassword { token: token.to_owned(), new }),
            _ => Err(v.into_error()),
        }
    }
}
