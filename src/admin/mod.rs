//! Operator tools. Every RPC requires a caller whose deployment-wide role is ADMIN.
//!
//! Public API: none besides [`add_services`].

pub mod ops;
pub mod service;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `AdminService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::admin_service_server::AdminServiceServer::new(service::AdminApi { state: state.clone() })
    );
}
