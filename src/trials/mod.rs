//! Clinical-trial open data (DOMAIN §5): KDCA dataset 3074271, copied from the odcloud gateway.
//!
//! Invariants: a trial is keyed by its id (과제번호); its classifying values live in lookup
//! tables with unique names; source values are trimmed and `""` is stored as NULL; `updated_at`
//! moves only when a published value changed, and every such change leaves a revision with the
//! changed fields' old and new values. An ingest writes all of its rows in one transaction or
//! nothing; one run at a time across replicas (a PostgreSQL advisory lock), each recorded in
//! `ingest_runs`; the service key never reaches a log line or a run record.
//!
//! Who may do what: anyone (anonymous included) reads trials and revisions; admins trigger runs
//! and list them; the scheduler (`trials.schedule` in `trials.time_zone`) and the CLI
//! (`maru ingest trials [--from-file F]`) run ingests too.
//!
//! Public API: none besides [`add_services`].

pub mod config;
pub mod convert;
pub mod ingest;
pub mod model;
pub mod ops;
pub mod schedule;
pub mod service;
pub mod source;
pub mod store;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Puts `TrialService` on the server.
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) {
    add_service!(
        routes,
        state,
        pb::trial_service_server::TrialServiceServer::new(service::TrialApi { state: state.clone() })
    );
}
