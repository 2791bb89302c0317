//! The scheduled clinical-trial ingest. Every replica runs this loop: at each fire time of
//! `trials.schedule` (in `trials.time_zone`) it starts a run for that cron slot; the advisory
//! lock and the slot's unique index let exactly one replica run it. A run missed while no
//! replica was up is not made up (the last-success alert covers it). Every few minutes each
//! replica also sets `maru_ingest_last_success_timestamp_seconds` from the database, so the
//! gauge survives restarts and agrees across replicas. Early failures (database not ready yet)
//! are logged and retried at the next tick or slot.

use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::state::AppState;
use crate::trials::ingest::{IngestRequest, Source, ingest, is_in_progress, set_last_success};
use crate::trials::model::Trigger;
use crate::trials::schedule::Schedule;
use crate::trials::store;

const GAUGE_REFRESH: Duration = Duration::from_secs(300);

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let cfg = &state.settings.trials;
    let schedule = match Schedule::parse(&cfg.schedule, &cfg.time_zone) {
        Ok(s) if cfg.enabled && cfg.service_key.is_some() => Some(s),
        Ok(_) if !cfg.enabled => {
            tracing::info!("trials ingest schedule disabled (trials.enabled = false)");
            None
        }
        Ok(_) => {
            tracing::info!("trials ingest schedule idle: trials.service_key is not set");
            None
        }
        Err(errs) => {
            // Unreachable with validated settings; logged rather than panicking.
            tracing::error!(errors = ?errs, "trials ingest schedule is invalid");
            None
        }
    };
    let mut refresh = tokio::time::interval(GAUGE_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
    if let Some(at) = next {
        tracing::info!(next = %at, "trials ingest scheduled");
    }
    loop {
        let wait = next.map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = refresh.tick() => refresh_gauge(&state).await,
            _ = sleep_or_forever(wait) => {
                let slot = next;
                run_slot(&state, slot).await;
                // From the slot at least: the wall clock may lag the timer a little.
                let from = slot.map_or_else(Utc::now, |s| s.max(Utc::now()));
                next = schedule.as_ref().and_then(|s| s.next_after(from));
            }
        }
    }
}

// The guard `wait_for` returns is not Send; it must not live in the select's output.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}

async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn run_slot(state: &AppState, slot: Option<chrono::DateTime<Utc>>) {
    let req =
        IngestRequest { source: Source::Gateway, trigger: Trigger::Schedule, triggered_by: None, scheduled_for: slot };
    match crate::traces::job("trials.ingest", ingest(state, req, &|_| {})).await {
        Ok(run) => tracing::info!(run_id = %run.id, result = run.result.label(), "scheduled trials ingest done"),
        Err(e) if is_in_progress(&e) => tracing::info!(reason = %e, "scheduled trials ingest skipped"),
        Err(e) => tracing::warn!(error = %e, "scheduled trials ingest could not start"),
    }
}

async fn refresh_gauge(state: &AppState) {
    match store::last_success(&state.db).await {
        Ok(Some(at)) => set_last_success(at),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "last ingest success not read (database not ready?)"),
    }
}
