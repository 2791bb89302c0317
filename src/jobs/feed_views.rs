//! Flushes pending post views from Redis to PostgreSQL every `feed.view_flush_interval_s` on
//! every replica; the flush serialises itself across replicas (see [`crate::feed::views`]).

use std::time::Duration;

use tokio::sync::watch;

use crate::feed::views;
use crate::state::AppState;

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
        match views::flush(&state).await {
            Ok(o) if o.views > 0 => tracing::info!(posts = o.posts, views = o.views, "post views flushed"),
            Ok(_) => {}
            // Before migrations ran the tables may not exist yet: tried again at the next tick.
            Err(e) => tracing::debug!(error = %e, "post view flush failed"),
        }
    }
}
