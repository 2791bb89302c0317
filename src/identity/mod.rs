//! Sign-in with external identity providers (OAuth2 / OpenID Connect): GitHub, Google and any
//! OIDC provider configured (docs/identity.md).
//!
//! Invariants: a login `state` is random, stored as SHA-256, bound to its provider and redirect
//! URI, and consumed by its first use (a `delete … returning` decides races); the PKCE verifier
//! and the OIDC nonce never leave the server. A provider identity belongs to at most one
//! account, an account has at most one identity per provider (unique constraints). An identity
//! is linked to an existing account only after that account proves itself (password or mailed
//! code) — never because an address matches, and never on an address the provider did not
//! verify. An account keeps at least one way to sign in (UnlinkIdentity). Accounts, sessions
//! and codes are accounts' (`crate::accounts::external`).
//!
//! Public API: [`add_services`], [`sweep_expired`] (the periodic clean-up of expired login
//! states and tickets).

pub mod config;
pub mod model;
pub mod ops;
pub mod providers;
pub mod service;
pub mod store;

pub use ops::sweep_expired;

use std::sync::Arc;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `IdentityService` on the server, with its providers (HTTP client and metadata caches).
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) -> anyhow::Result<()> {
    let providers = Arc::new(providers::Providers::new(&state.settings.identity)?);
    add_service!(
        routes,
        state,
        pb::identity_service_server::IdentityServiceServer::new(service::IdentityApi {
            state: state.clone(),
            providers
        })
    );
    Ok(())
}
