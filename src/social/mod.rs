//! Profiles and the social graph (DOMAIN §3): `maru.v1.ProfileService` and
//! `maru.v1.SocialService` (`proto/maru/v1/social.proto`, `docs/feed.md`).
//!
//! Invariants, decided by the database: one follow row per (follower, followee) (primary key
//! `follows_pkey`), nobody follows themself (`follows_not_self_check`, and refused before with
//! INVALID_ARGUMENT `CANNOT_FOLLOW_SELF`); follower/following counts are counted from the rows
//! on every read, so they always equal them. Follow, Unfollow and RemoveFollower are
//! idempotent: repeating one is OK and reports whether it changed anything.
//!
//! Who may do what: anyone (anonymous included) reads profiles and follow lists; a signed-in
//! user edits only their own profile, follows and unfollows in their own name, removes their
//! own followers and deletes their own account. A deleted account (soft delete) is
//! NOT_FOUND `USER_NOT_FOUND` everywhere, its follows vanish from lists and counts, and its
//! handle stays reserved.
//!
//! Public API: [`add_services`] and [`accounts_shown_or_hidden`] (the invalidation after an
//! account was suspended or reinstated by moderation, `crate::reports`).

pub mod convert;
pub mod model;
pub mod ops;
pub mod service;
pub mod store;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

// Public API (see the module docs).
pub use ops::accounts_shown_or_hidden;

/// Puts `ProfileService` and `SocialService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    // Readers of a profile see its picture (GetMedia).
    crate::media::attach::register_reader(crate::media::attach::Kind::Profile, ops::sees_profile);
    add_service!(
        routes,
        state,
        pb::profile_service_server::ProfileServiceServer::new(service::ProfileApi { state: state.clone() })
    );
    add_service!(
        routes,
        state,
        pb::social_service_server::SocialServiceServer::new(service::SocialApi { state: state.clone() })
    );
}
