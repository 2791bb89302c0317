//! Sports-club events (DOMAIN §4), served by `maru.v1.EventService`
//! (`proto/maru/v1/events.proto`, `docs/events.md`).
//!
//! Who may act is decided by [`crate::communities::access`]: managers (and admins) create,
//! change and delete events, manage participants, force attendance and decide fees; APPROVED
//! members see the events of their gender category (managers see all), check in and report
//! their fee as paid. An event the caller cannot see is NOT_FOUND `EVENT_NOT_FOUND`.
//!
//! Invariants, each decided by PostgreSQL:
//! - one check-in per participant and event: the unique key `event_check_ins_event_id_user_id_key`;
//! - fee transitions are conditional UPDATEs on the expected status (NOT_PAID → PENDING →
//!   PAID | NOT_PAID), so concurrent calls make exactly one transition;
//! - an ended event is settled exactly once ([`settle`]): its row is locked with
//!   `FOR UPDATE SKIP LOCKED`, penalties are inserted and `settled_at` is set in one
//!   transaction, so a crash leaves nothing or everything and replicas never both settle it;
//!   changes to participants and attendance hold a share lock on the event and are refused
//!   once it is settled (`EVENT_SETTLED`).
//!
//! "Now" comes from the injected [`crate::clock::Clock`].
//!
//! Public API: none besides [`add_services`].

pub mod config;
pub mod convert;
pub mod geocode;
pub mod model;
pub mod ops;
pub mod outbox;
pub mod service;
pub mod settle;
pub mod store;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `EventService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::event_service_server::EventServiceServer::new(service::EventApi { state: state.clone() })
    );
}
