//! Sets `maru_community_memberships{status}` and `maru_complaints{status}` from counts in the
//! database every 30 s on every replica, so every replica reports the same (true) numbers whichever one served the writes.

use std::time::Duration;

use tokio::sync::watch;

use crate::communities::content::complaints::refresh_complaint_gauge;
use crate::communities::ops::refresh_membership_gauge;
use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(30);

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        // Before migrations ran the table may not exist yet: tried again at the next tick.
        if let Err(e) = refresh_membership_gauge(&state).await {
            tracing::debug!(error = %e, "membership gauge not refreshed");
        }
        if let Err(e) = refresh_complaint_gauge(&state).await {
            tracing::debug!(error = %e, "complaint gauge not refreshed");
        }
    }
}
