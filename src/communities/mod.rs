//! Communities (DOMAIN §1): apartment complexes, clubs and sports clubs, their memberships and
//! roles, and the content members share (notices, complaints, contacts, schedules, polls).
//!
//! Invariants: one active (PENDING or APPROVED) membership per user and community, enforced by
//! the partial unique index `community_memberships_active_key`; an apartment is unique by its
//! registry code (`communities_external_code_key`); a community that has managers keeps at
//! least one (decided under a lock of the community row). Every content RPC decides who may act
//! with [`access`]: an APPROVED membership of that community, MANAGER for writes where noted, and
//! the deployment ADMIN as a moderator who may read and manage everything but does not vote or
//! file complaints in someone's name.
//!
//! Who may do what in the core (`CommunityService`): anyone searches and reads communities;
//! admins create them (or import the apartment registry, [`registry`]); signed-in users ask to
//! join; managers and admins decide requests, change roles and remove members; members list
//! members and leave. See [`ops`] for the full table, caching and invalidation.
//!
//! Public API (what other domains may use; `tests/layering.rs` checks it): [`access`] — who may
//! act in a community, with [`access::MemberRole`] — [`cache`] (the home-screen keys a profile
//! edit invalidates), [`guests`] (guests' read-only memberships) and [`add_services`].

/// Public API: who may act in a community — used by content, events and the feed.
pub mod access;
/// Public API: the home-screen and standing cache keys — social, accounts and reports invalidate
/// a member's entries after a profile edit, an account deletion or suspension, expired guests.
pub mod cache;
pub mod config;
pub mod content;
pub mod convert;
/// Public API: read-only memberships of guests in the demo complexes — used by accounts.
pub mod guests;
pub mod model;
pub mod ops;
pub mod registry;
pub mod service;
pub mod store;
pub mod synthetic;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `CommunityService` and the content services (notices, complaints, contacts, schedules,
/// polls) on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    // Readers of a notice or complaint see its images (GetMedia).
    crate::media::attach::register_reader(crate::media::attach::Kind::Notice, content::notices::sees_notice);
    crate::media::attach::register_reader(crate::media::attach::Kind::Complaint, content::complaints::sees_complaint);
    add_service!(
        routes,
        state,
        pb::community_service_server::CommunityServiceServer::new(service::CommunityApi { state: state.clone() })
    );
    add_service!(
        routes,
        state,
        pb::notice_service_server::NoticeServiceServer::new(content::service::NoticeApi { state: state.clone() })
    );
    add_service!(
        routes,
        state,
        pb::complaint_service_server::ComplaintServiceServer::new(content::service::ComplaintApi {
            state: state.clone()
        })
    );
    add_service!(
        routes,
        state,
        pb::contact_service_server::ContactServiceServer::new(content::service::ContactApi { state: state.clone() })
    );
    add_service!(
        routes,
        state,
        pb::schedule_service_server::ScheduleServiceServer::new(content::service::ScheduleApi { state: state.clone() })
    );
    add_service!(
        routes,
        state,
        pb::poll_service_server::PollServiceServer::new(content::service::PollApi { state: state.clone() })
    );
}
