//! Media (issue 18): `maru.v1.MediaService` (`proto/maru/v1/media.proto`, `docs/media.md`).
//! Image uploads straight to an object store ([`storage`]: a local directory by default, an
//! S3-compatible bucket when configured), processed asynchronously by a durable PostgreSQL job
//! queue worked by every replica ([`worker`]).
//!
//! Invariants, decided by the database: an upload token is used once (the conditional update
//! of `upload_started_at`); UPLOADING → PROCESSING happens once, with its job inserted in the
//! same transaction; PROCESSING → READY / FAILED happens once (conditional on PROCESSING), so a
//! job worked twice (a worker died, its lease ran out) finishes once; a user's daily quota is
//! checked under a per-user advisory lock. Only the owner (and admins) see a media; to others
//! it does not exist (NOT_FOUND `MEDIA_NOT_FOUND`).
//!
//! Public API (what other layers may use; `tests/layering.rs` checks it): [`register_metrics`],
//! [`add_services`], [`spawn_jobs`] (for `crate::jobs`), [`http_layer`] (for `crate::app`),
//! [`attach`] (for domains whose rows carry media: the feed's posts).

/// Public API: attaching media to other domains' rows, showing them, and who may read them.
pub mod attach;
pub mod config;
pub mod http;
pub mod model;
pub mod ops;
pub mod process;
pub mod readers;
pub mod service;
pub mod storage;
pub mod store;
pub mod token;
pub mod worker;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::grpc::pb;
use crate::services::{RoutesBuilder, add_service};
use crate::state::AppState;

/// Describes the media metrics and registers them at zero (docs/media.md#metrics).
pub fn register_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "maru_media_uploads_total",
        "Media uploads by purpose and outcome (created, quota_exceeded, completed, incomplete, type_unsupported, expired)."
    );
    describe_counter!("maru_media_upload_bytes_total", "Bytes of completed uploads, by purpose.");
    describe_counter!(
        "maru_media_http_requests_total",
        "Requests to the local backend's upload and download routes, by outcome."
    );
    describe_gauge!("maru_media_queue_depth", "Media processing jobs queued or running.");
    describe_gauge!(
        "maru_media_queue_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest media processing job queued or running (0 when none)."
    );
    describe_histogram!(
        "maru_media_processing_seconds",
        Unit::Seconds,
        "Time to process one image into its variants and store them (successful jobs)."
    );
    describe_counter!("maru_media_processed_total", "Media processing jobs finished, by outcome (ready, failed).");
    describe_counter!(
        "maru_media_processing_failures_total",
        "Media that FAILED processing, by reason (too_many_pixels, undecodable, encode, attempts_exhausted)."
    );
    describe_counter!("maru_media_storage_errors_total", "Failed object store operations, by op.");
    describe_counter!("maru_media_cleaned_total", "Media never completed or never attached, deleted by the clean-up.");
    describe_counter!(
        "maru_media_owner_deleted_cleaned_total",
        "Media of deleted accounts, deleted by the clean-up after media.owner_deleted_grace_h."
    );
    for p in model::Purpose::ALL {
        for o in ops::UPLOAD_OUTCOMES {
            metrics::counter!("maru_media_uploads_total", "purpose" => p.as_str(), "outcome" => o).increment(0);
        }
        metrics::counter!("maru_media_upload_bytes_total", "purpose" => p.as_str()).increment(0);
    }
    for o in http::HTTP_OUTCOMES {
        metrics::counter!("maru_media_http_requests_total", "outcome" => o).increment(0);
    }
    for o in ["ready", "failed"] {
        metrics::counter!("maru_media_processed_total", "outcome" => o).increment(0);
    }
    for r in process::FAILURE_LABELS {
        metrics::counter!("maru_media_processing_failures_total", "reason" => r).increment(0);
    }
    for op in storage::OPS {
        metrics::counter!("maru_media_storage_errors_total", "op" => op).increment(0);
    }
    metrics::counter!("maru_media_cleaned_total").increment(0);
    metrics::counter!("maru_media_owner_deleted_cleaned_total").increment(0);
    metrics::gauge!("maru_media_queue_depth").set(0.0);
    metrics::gauge!("maru_media_queue_oldest_age_seconds").set(0.0);
}

/// Puts `MediaService` on the server. Fails when the store cannot be opened (the local
/// directory cannot be created, the S3 settings are incomplete).
pub fn add_services(routes: &mut RoutesBuilder, state: &AppState) -> anyhow::Result<()> {
    let storage = storage::Storage::from_settings(&state.settings.media)?;
    add_service!(
        routes,
        state,
        pb::media_service_server::MediaServiceServer::new(service::MediaApi { state: state.clone(), storage })
    );
    Ok(())
}

/// The processing worker and the clean-up job (see [`worker`]).
pub fn spawn_jobs(state: &AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    match storage::Storage::from_settings(&state.settings.media) {
        Ok(storage) => vec![
            tokio::spawn(worker::run(state.clone(), storage.clone(), stop.clone())),
            tokio::spawn(worker::cleanup(state.clone(), storage, stop)),
        ],
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "media store unavailable: no media processing on this replica");
            vec![]
        }
    }
}

/// The layer serving the local backend's `/media/…` routes on the gRPC listener (a pass-through
/// with the S3 backend).
pub fn http_layer(state: &AppState) -> anyhow::Result<http::MediaHttpLayer> {
    let storage = storage::Storage::from_settings(&state.settings.media)?;
    let router = (!storage.is_s3()).then(|| http::router(state, &storage));
    Ok(http::MediaHttpLayer::new(router))
}
