//! The nightly guest clean-up ([`crate::accounts::guests`]): every `guests.cleanup_check_s`
//! (default 60 s) each replica asks whether the clean-up of the current 00:00 Asia/Seoul slot
//! (by the application clock) has run, and runs it if not; the slot's row decides which replica
//! runs it, so it runs once per night whatever the number of replicas. A night with no replica
//! up is made up by the first one that starts. Each check also sets `maru_guests_active`.
//! Failures (database not ready yet) are logged and retried at the next check.

use std::time::Duration;

use tokio::sync::watch;

use crate::accounts::guests;
use crate::state::AppState;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(state.settings.guests.cleanup_check_s.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        if let Err(e) = crate::traces::job("guests.cleanup", guests::cleanup_due(&state)).await {
            tracing::debug!(error = %e, "guest clean-up deferred");
        }
        if let Err(e) = guests::refresh_active_gauge(&state).await {
            tracing::debug!(error = %e, "active guests not counted");
        }
    }
}
