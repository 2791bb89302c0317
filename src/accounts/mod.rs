//! Accounts and sessions.
//!
//! Invariants: handles and emails are unique case-insensitively (unique indexes decide races);
//! passwords are stored only as argon2id hashes; refresh tokens are stored only as SHA-256,
//! each usable once, and presenting a used one revokes its whole session (token family).
//! Access tokens are stateless JWTs: a revoked session's access token stays valid until it
//! expires (`auth.access_ttl_s`, 15 min by default).
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`Handle`],
//! [`parse_display_name`], [`User`], [`UserFilter`], [`user_to_pb`], [`list_users`] and the
//! WhoAmI cache key [`user_cache_key`]; and [`add_services`].

pub mod convert;
pub mod model;
pub mod ops;
pub mod refresh;
pub mod service;
pub mod store;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

// Public API (see the module docs).
pub use convert::user_to_pb;
pub use model::{Handle, User, UserFilter, parse_display_name};
pub use ops::{list_users, user_cache_key};

/// Puts `AuthService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::auth_service_server::AuthServiceServer::new(service::AuthApi { state: state.clone() })
    );
}
