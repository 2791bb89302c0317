//! Who is calling: the deployment-wide role and the authenticated caller the auth layer
//! puts into request extensions. Ops take a `&Caller`; they never see the transport.

use uuid::Uuid;

use crate::error::{AppError, AppResult, Reason};

/// Deployment-wide role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    User,
    Admin,
    /// A one-day guest (StartGuestSession): reads only; the policy layer refuses its writes.
    Guest,
}

/// The authenticated user of a request, put into request extensions by the auth layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// A guest account (read-only; see `crate::grpc::policy::Policy::admit`).
    pub fn is_guest(&self) -> bool {
        self.role == Role::Guest
    }

    /// PERMISSION_DENIED unless the caller is a deployment admin.
    pub fn require_admin(&self) -> AppResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::permission_denied(Reason::AdminRequired, "admin role required"))
        }
    }
}

/// What the auth layer concluded about the request's credentials.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    Anonymous,
    Caller(Caller),
    /// A token was presented but is not acceptable (expired, bad signature, malformed).
    Rejected(Reason),
}

impl Role {
    pub fn as_db(self) -> &'static str {
        match self {
            Role::User => "USER",
            Role::Admin => "ADMIN",
            Role::Guest => "GUEST",
        }
    }
    pub fn from_db(s: &str) -> Option<Role> {
        match s {
            "USER" => Some(Role::User),
            "ADMIN" => Some(Role::Admin),
            "GUEST" => Some(Role::Guest),
            _ => None,
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Role::from_db(&s).ok_or_else(|| format!("unknown role {s}"))
    }
}
