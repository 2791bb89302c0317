//! The processing worker, on every replica: claims due jobs from `media_jobs`
//! (`FOR UPDATE SKIP LOCKED`, see [`store::claim_job`]), at most `media.workers` at once, and
//! works each in `spawn_blocking`. While it works it renews the job's lease every third of
//! `media.job_lease_s`; a worker that dies (SIGKILL) stops renewing, the lease runs out and
//! another replica claims the job again. Variant writes are idempotent (same keys, upserted
//! rows) and the final state change is conditional on PROCESSING ([`store::finish`]), so a
//! job worked twice finishes once. A failure of the store or the database is retried with
//! backoff (2^attempts seconds, at most 5 min); after `media.job_max_attempts` the job is dead
//! and its media FAILED.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::model::State;
use super::process::{self, Refused};
use super::storage::Storage;
use super::store::{self, VariantRow};
use crate::error::AppError;
use crate::state::AppState;

/// Runs until `stop`: claims jobs while a slot is free, polls when the queue is empty.
pub async fn run(state: AppState, storage: Storage, mut stop: watch::Receiver<bool>) {
    let s = state.settings.media.clone();
    let slots = Arc::new(Semaphore::new(s.workers));
    let worker = format!("{}-{}", hostname(), Uuid::new_v4().simple());
    let poll = Duration::from_millis(s.poll_interval_ms);
    let mut last_stats = Instant::now() - Duration::from_secs(60);
    loop {
        if *stop.borrow() {
            return;
        }
        if last_stats.elapsed() >= Duration::from_secs(5) {
            last_stats = Instant::now();
            match store::queue_stats(&state.db, state.clock.now()).await {
                Ok((depth, age)) => {
                    metrics::gauge!("maru_media_queue_depth").set(depth as f64);
                    metrics::gauge!("maru_media_queue_oldest_age_seconds").set(age);
                }
                Err(e) => tracing::debug!(error = %e, "media queue stats failed"),
            }
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait_for(|v| *v) => return,
        };
        let claimed = store::claim_job(&state.db, &worker, s.job_lease_s as i64, state.clock.now()).await;
        match claimed {
            Ok(Some(job)) => {
                let (state, storage, worker) = (state.clone(), storage.clone(), worker.clone());
                tokio::spawn(async move {
                    work(&state, &storage, &worker, job).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::warn!(error = %e, "claiming a media job failed");
                tokio::select! {
                    _ = tokio::time::sleep(poll * 5) => {}
                    _ = stop.wait_for(|v| *v) => return,
                }
            }
        }
    }
}

/// Works every job due now, one after the other, on this task (for `maru seed demo`, which
/// runs without the background worker); the number worked. Jobs other replicas hold are left
/// to them.
pub async fn work_queued(state: &AppState, storage: &Storage) -> Result<u64, AppError> {
    let worker = format!("{}-seed-{}", hostname(), Uuid::new_v4().simple());
    let lease = state.settings.media.job_lease_s as i64;
    let mut n = 0;
    while let Some(job) = store::claim_job(&state.db, &worker, lease, state.clock.now()).await? {
        work(state, storage, &worker, job).await;
        n += 1;
    }
    Ok(n)
}

fn hostname() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "maru".into())
}

/// Works one claimed job, renewing its lease meanwhile.
async fn work(state: &AppState, storage: &Storage, worker: &str, job: store::Job) {
    let lease = state.settings.media.job_lease_s as i64;
    let heartbeat = {
        let (db, clock, worker, id) = (state.db.clone(), state.clock.clone(), worker.to_owned(), job.media_id);
        tokio::spawn(async move {
            let every = Duration::from_millis((lease as u64 * 1000 / 3).max(200));
            loop {
                tokio::time::sleep(every).await;
                match store::heartbeat(&db, id, &worker, lease, clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %e, media_id = %id, "media job heartbeat failed"),
                }
            }
        })
    };
    let started = Instant::now();
    let outcome = crate::traces::job("media.process", attempt(state, storage, &job)).await;
    heartbeat.abort();
    let now = state.clock.now();
    let max_attempts = state.settings.media.job_max_attempts;
    let result = match outcome {
        Ok(Ok(())) => {
            let done = store::finish(&state.db, job.media_id, true, None, now).await;
            if matches!(done, Ok(true)) {
                metrics::histogram!("maru_media_processing_seconds").record(started.elapsed().as_secs_f64());
                metrics::counter!("maru_media_processed_total", "outcome" => "ready").increment(1);
            }
            done.map(|_| ())
        }
        Ok(Err(refused)) => fail(state, job.media_id, &refused).await,
        Err(e) if job.attempts >= max_attempts => {
            let refused = Refused {
                label: "attempts_exhausted",
                reason: format!("processing gave up after {} attempts: {e}", job.attempts),
            };
            fail(state, job.media_id, &refused).await
        }
        Err(e) => {
            let backoff = Duration::from_secs(2u64.saturating_pow(job.attempts.max(0) as u32).min(300));
            tracing::warn!(media_id = %job.media_id, attempts = job.attempts, error = %e, "media job failed; retrying");
            let run_at = now + chrono::Duration::from_std(backoff).unwrap_or_default();
            store::retry_later(&state.db, job.media_id, worker, &e.to_string(), run_at).await
        }
    };
    if let Err(e) = result {
        // The lease runs out and another attempt follows.
        tracing::warn!(media_id = %job.media_id, error = %e, "recording a media job's outcome failed");
    }
}

async fn fail(state: &AppState, id: Uuid, refused: &Refused) -> Result<(), AppError> {
    let done = store::finish(&state.db, id, false, Some(&refused.reason), state.clock.now()).await?;
    if done {
        metrics::counter!("maru_media_processed_total", "outcome" => "failed").increment(1);
        metrics::counter!("maru_media_processing_failures_total", "reason" => refused.label).increment(1);
    }
    Ok(())
}

/// One attempt: `Err` for a failure worth retrying (store, database), `Ok(Err)` for a refused
/// image. A media no longer PROCESSING (finished by another worker) is left as it is.
async fn attempt(state: &AppState, storage: &Storage, job: &store::Job) -> Result<Result<(), Refused>, AppError> {
    let Some(m) = store::get(&state.db, job.media_id).await? else { return Ok(Ok(())) };
    if m.state != State::Processing {
        return Ok(Ok(()));
    }
    let Some(bytes) = storage.get(&m.object_key).await? else {
        return Ok(Err(Refused { label: "undecodable", reason: "the uploaded original is gone".into() }));
    };
    let max_pixels = state.settings.media.max_pixels;
    let variants = tokio::task::spawn_blocking(move || process::process(&bytes, max_pixels))
        .await
        .map_err(|e| AppError::internal(format!("image processing panicked: {e}")))?;
    let variants = match variants {
        Ok(v) => v,
        Err(refused) => return Ok(Err(refused)),
    };
    for v in variants {
        let key = super::ops::variant_key(&m, v.name, v.ext);
        let size = v.bytes.len() as i64;
        storage.put(&key, v.bytes).await?;
        let row = VariantRow {
            name: v.name.to_owned(),
            object_key: key,
            content_type: v.content_type.to_owned(),
            width: v.width as i32,
            height: v.height as i32,
            size_bytes: size,
        };
        store::upsert_variant(&state.db, m.id, &row).await?;
        let delay = state.settings.media.test_processing_delay_ms;
        if delay > 0 {
            // Tests only: a job caught between its variants (tests/faults, media_sigkill).
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    Ok(Ok(()))
}

/// Deletes media never completed or never attached after `media.cleanup_after_s` (objects
/// first, then the row), every 10 minutes.
pub async fn cleanup(state: AppState, storage: Storage, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(600);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match crate::traces::job("media.cleanup", cleanup_once(&state, &storage)).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "stale media deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "media clean-up failed"),
        }
    }
}

/// One clean-up pass; the number of media deleted: those never completed or never attached
/// (after `media.cleanup_after_s`), then those of accounts deleted more than
/// `media.owner_deleted_grace_h` ago, attached or not.
pub async fn cleanup_once(state: &AppState, storage: &Storage) -> Result<u64, AppError> {
    let before = state.clock.now() - chrono::Duration::seconds(state.settings.media.cleanup_after_s as i64);
    let mut deleted = 0;
    for (id, keys) in store::stale(&state.db, before, 500).await? {
        for key in &keys {
            storage.delete(key).await?;
        }
        if store::delete(&state.db, id, before).await? {
            deleted += 1;
        }
    }
    metrics::counter!("maru_media_cleaned_total").increment(deleted);
    Ok(deleted + cleanup_deleted_owners(state, storage).await?)
}

/// Deletes the media (objects, variants, rows) of accounts deleted more than
/// `media.owner_deleted_grace_h` ago; the number deleted.
async fn cleanup_deleted_owners(state: &AppState, storage: &Storage) -> Result<u64, AppError> {
    let grace = chrono::Duration::hours(state.settings.media.owner_deleted_grace_h as i64);
    let before = state.clock.now() - grace;
    let mut deleted = 0;
    for (id, keys) in store::of_deleted_owners(&state.db, before, 500).await? {
        for key in &keys {
            storage.delete(key).await?;
        }
        if store::delete_of_deleted_owner(&state.db, id, before).await? {
            deleted += 1;
        }
    }
    metrics::counter!("maru_media_owner_deleted_cleaned_total").increment(deleted);
    Ok(deleted)
}
