//! Reports and moderation (DOMAIN §3 reports, issue 16): `maru.v1.ReportService`
//! (`proto/maru/v1/reports.proto`, `docs/reports.md`). Users report users, posts, comments and
//! products and chat messages (of rooms the reporter is in); admins work the queue of reported targets.
//!
//! Invariants, decided by the database: one report per (reporter, target) (unique constraint
//! `reports_reporter_id_target_type_target_id_key` → ALREADY_EXISTS `ALREADY_REPORTED`); a
//! target's open reports are counted and resolved under the lock of its `report_targets` row,
//! so the auto-hide threshold (`reports.auto_hide_threshold` distinct reporters) hides a target
//! exactly once and of two resolutions of one target exactly one wins (FAILED_PRECONDITION
//! `ALREADY_RESOLVED` for the other); every resolution and automatic hide is logged in
//! `moderation_actions` in the same transaction. Posts and products are hidden with the
//! suspension their domains already have, comments with the feed's hiding ([`crate::feed`] and
//! [`crate::market`] `moderation`), users with the suspension of SUSPEND_USER.
//!
//! Public API: [`register_metrics`] and [`add_services`].

pub mod config;
pub mod convert;
pub mod model;
pub mod ops;
pub mod service;
pub mod store;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Describes the report metrics and registers them at zero (docs/reports.md#metrics).
pub fn register_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!("maru_reports_created_total", "Reports created, by reason (request_id replays excluded).");
    for r in model::ReportReason::ALL {
        metrics::counter!("maru_reports_created_total", "reason" => r.as_db()).increment(0);
    }
    describe_counter!("maru_reports_resolved_total", "Reports resolved, by the moderation action that resolved them.");
    for a in [model::Action::Dismiss, model::Action::SuspendTarget, model::Action::WarnUser, model::Action::SuspendUser]
    {
        metrics::counter!("maru_reports_resolved_total", "action" => a.as_db()).increment(0);
    }
    describe_counter!("maru_reports_auto_hidden_total", "Targets hidden by the auto-hide threshold.");
    metrics::counter!("maru_reports_auto_hidden_total").increment(0);
    describe_gauge!("maru_reports_open", "Open reports (the moderation queue), as of the last report or resolution.");
    describe_gauge!(
        "maru_reports_oldest_open_age_seconds",
        "Age of the oldest open report, as of the last report or resolution (0: queue empty)."
    );
}

/// Puts `ReportService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::report_service_server::ReportServiceServer::new(service::ReportApi { state: state.clone() })
    );
}
