//! Background work. Each job runs on every replica; jobs here are idempotent deletes, so
//! replicas racing each other do no harm. The trials ingest serialises itself (see
//! [`trials_ingest`]); event settlement takes each event under a row lock (see [`event_settlement`]);
//! the nightly guest clean-up runs once per slot across replicas (see [`guest_cleanup`]).

mod community_gauges;
mod event_settlement;
mod guest_cleanup;
mod mail_delivery;
mod report_gauges;
mod trials_ingest;
pub mod views;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::store as accounts_store;
use crate::idempotency;
use crate::state::AppState;

const SWEEP_EVERY: Duration = Duration::from_secs(600);

pub fn spawn_all(state: &AppState, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut jobs = vec![
        tokio::spawn(sweep_expired(state.clone(), stop.clone())),
        tokio::spawn(trials_ingest::run(state.clone(), stop.clone())),
        tokio::spawn(community_gauges::run(state.clone(), stop.clone())),
        tokio::spawn(event_settlement::run(state.clone(), stop.clone())),
        tokio::spawn(report_gauges::run(state.clone(), stop.clone())),
        tokio::spawn(views::run(state.clone(), stop.clone())),
        tokio::spawn(mail_delivery::run(state.clone(), stop.clone())),
        tokio::spawn(guest_cleanup::run(state.clone(), stop.clone())),
        tokio::spawn(crate::keyring::watch(
            state.keyring.clone(),
            Duration::from_secs(state.settings.auth.keyring_reload_s),
            stop.clone(),
        )),
    ];
    // Media processing (a durable queue, see `crate::media::worker`) and its clean-up.
    jobs.extend(crate::media::spawn_jobs(state, stop));
    jobs
}

/// Deletes expired idempotency keys, long-expired refresh tokens, and expired external-login
/// states and tickets.
async fn sweep_expired(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match crate::traces::job("idempotency.sweep", idempotency::sweep(&state.db)).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "expired idempotency keys swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "idempotency sweep failed"),
        }
        match accounts_store::delete_expired_refresh_tokens(&state.db).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "expired refresh tokens swept"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "refresh token sweep failed"),
        }
        match crate::identity::sweep_expired(&state).await {
            Ok((states, tickets)) if states + tickets > 0 => {
                tracing::info!(states, tickets, "expired external-login states and tickets swept")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "external-login sweep failed"),
        }
    }
}
