//! Flushes pending views of every counted target (posts, teams, products) from Redis to PostgreSQL every
//! `feed.view_flush_interval_s` on every replica; the flush serialises itself across replicas
//! (see [`crate::views`]).

use std::time::Duration;

use tokio::sync::watch;

use crate::error::AppResult;
use crate::state::AppState;
use crate::views::{FlushOutcome, Target};

/// Every target views are recorded for: one flush takes them all.
pub const TARGETS: [&Target; 3] =
    [&crate::feed::views::TARGET, &crate::teams::views::TARGET, &crate::market::views::TARGET];

/// One flush of every target's pending views.
pub async fn flush(state: &AppState) -> AppResult<FlushOutcome> {
    crate::views::flush(state, &TARGETS).await
}

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    crate::feed::register_metrics();
    let every = Duration::from_secs(state.settings.feed.view_flush_interval_s.max(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        match crate::traces::job("views.flush", flush(&state)).await {
            Ok(o) if o.views > 0 => tracing::info!(items = o.items, views = o.views, "views flushed"),
            Ok(_) => {}
            // Before migrations ran the tables may not exist yet: tried again at the next tick.
            Err(e) => tracing::debug!(error = %e, "view flush failed"),
        }
    }
}
