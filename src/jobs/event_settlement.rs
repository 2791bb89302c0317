//! Settles ended events (see [`crate::events::settle`]) every `events.settle_interval_ms` on
//! every replica, starting at once so events that ended while the service was down are
//! settled on start-up. Replicas racing each other are safe: each event is taken under
//! `FOR UPDATE SKIP LOCKED` and settled in one transaction. Failures (database not ready yet,
//! or an event that cannot be settled) are logged and retried at the next tick. Also sets
//! `maru_event_settlement_pending_seconds` (age of the oldest ended, unsettled event), and with
//! `events.webhook_url` set delivers the settlement notices of the outbox
//! ([`crate::events::outbox`]) and sets `maru_event_outbox_backlog`.

use std::time::Duration;

use tokio::sync::watch;

use crate::events::{outbox, settle};
use crate::state::AppState;

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.settings.events.settle_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        if let Err(e) = crate::traces::job("events.settle", settle::settle_due(&state)).await {
            tracing::debug!(error = %e, "event settlement deferred");
        }
        match settle::oldest_unsettled_lag(&state).await {
            Ok(lag) => metrics::gauge!("maru_event_settlement_pending_seconds").set(lag),
            Err(e) => tracing::debug!(error = %e, "settlement backlog not measured"),
        }
        if state.settings.events.webhook_url.is_some() {
            if let Err(e) = crate::traces::job("events.webhooks", outbox::deliver_due(&state)).await {
                tracing::debug!(error = %e, "settlement webhooks deferred");
            }
            match outbox::backlog(&state).await {
                Ok(n) => metrics::gauge!("maru_event_outbox_backlog").set(n as f64),
                Err(e) => tracing::debug!(error = %e, "outbox backlog not measured"),
            }
        }
    }
}
