//! Club team building (DOMAIN §2): `maru.v1.TeamService` (`proto/maru/v1/teams.proto`,
//! `docs/teams.md`). APPROVED members of a CLUB propose teams with the roles they recruit and a
//! capacity per role; a club manager approves them before they are listed; members apply for a
//! role, the leader decides, and an approval fills one seat.
//!
//! Invariants, decided by the database: a title is unique per club (case-insensitive), one
//! application per (user, team, role), one seat per member and team, a role never holds more
//! members than its capacity (a conditional update under the role row's lock, and a check
//! constraint), one like per user and team with counts counted from the rows, edits conditional
//! on the etag's version. Team detail and lists are cached with invalidation on every write
//! ([`cache`]). Views are counted by the platform's [`crate::views`] (GetTeam, once per
//! viewer, team and day). Who may do what is in [`ops`]; club membership is decided by
//! [`crate::communities::access`].
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`views`] (teams as a
//! counted target, for the flush job), [`activity`] (a member's team history, for profiles) and
//! [`add_services`].

/// Public API: a member's team history and its counts — `ProfileService` (social) serves them.
pub mod activity;
pub mod cache;
pub mod config;
pub mod convert;
pub mod model;
pub mod ops;
pub mod service;
pub mod store;
/// Public API: teams as a counted target of [`crate::views`] — the flush job passes it.
pub mod views;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `TeamService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    // Readers of a team see its image (GetMedia).
    crate::media::attach::register_reader(crate::media::attach::Kind::Team, ops::sees_team);
    add_service!(
        routes,
        state,
        pb::team_service_server::TeamServiceServer::new(service::TeamApi { state: state.clone() })
    );
}
