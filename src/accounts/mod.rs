//! Accounts and sessions.
//!
//! Invariants: handles and emails are unique case-insensitively (unique indexes decide races);
//! passwords are stored only as argon2id hashes; refresh tokens are stored only as SHA-256,
//! each usable once, and presenting a used one revokes its whole session (token family).
//! Access tokens are signed JWTs naming their session: the auth layer checks on every call that
//! the session is live and the account active, and takes the account's current role
//! (`crate::sessions`), so a revoked session's access tokens stop at once. Every write here
//! that ends a session or changes a role tells the session cache before it returns.
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`Handle`],
//! [`parse_display_name`], [`User`], [`UserFilter`], [`user_to_pb`], [`list_users`] and the
//! WhoAmI cache key [`user_cache_key`]; the session check's [`session_loader`]; [`external`]
//! (accounts from identity providers, their sessions and proofs); [`Email`], [`Device`],
//! [`Tokens`]; the [`device_of`] a request; and [`add_services`].

pub mod config;
pub mod convert;
/// Public API: what sign-in with identity providers (`crate::identity`) needs of accounts.
pub mod external;
pub mod guests;
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
pub use model::{Device, Email, Handle, Tokens, User, UserFilter, parse_display_name};
pub use ops::{list_users, session_loader, user_cache_key};
pub use service::device_of;

/// Puts `AuthService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::auth_service_server::AuthServiceServer::new(service::AuthApi { state: state.clone() })
    );
}
