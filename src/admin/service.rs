//! `maru.v1.AdminService`.

use tonic::{Request, Response, Status};

use super::ops;
use crate::accounts::{UserFilter, user_to_pb};
use crate::caller::Role;
use crate::error::AppError;
use crate::fields::{enum_value, parse_text};
use crate::grpc::{caller, pb};
use crate::state::AppState;

pub struct AdminApi {
    pub state: AppState,
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let role = match enum_value::<pb::Role>(r.role, "role").map_err(|e| AppError::invalid("role", e))? {
            pb::Role::Unspecified => None,
            pb::Role::User => Some(Role::User),
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Guest => Some(Role::Guest),
        };
        let query = parse_text(&r.query, 0, 100, false).map_err(|e| AppError::invalid("query", e))?;
        let query = Some(query).filter(|q| !q.is_empty());
        let (users, next) =
            ops::list_users(&self.state, &caller, UserFilter { query, role }, r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: users.into_iter().map(|u| user_to_pb(u, true)).collect(),
            next_page_token: next,
        }))
    }
}
