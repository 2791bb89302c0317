//! Sends the email outbox ([`crate::mail`]) every `mail.poll_interval_ms` on every replica,
//! starting at once. Replicas racing each other are safe: each mail is taken under
//! `FOR UPDATE SKIP LOCKED`. Without `mail.smtp_url` nothing is sent (the start-up warned) and
//! mail waits in the outbox. Also sets `maru_email_outbox_oldest_age_seconds` and sweeps old
//! send counters.

use std::time::Duration;

use tokio::sync::watch;

use crate::mail::{self, Sender};
use crate::state::AppState;

/// How often old send counters are swept (every replica; the delete is idempotent).
const SWEEP_EVERY: Duration = Duration::from_secs(3_600);

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let sender = match Sender::from_settings(&state.settings.mail) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "mail is not sent: the SMTP transport could not be built");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(state.settings.mail.poll_interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut swept = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        if let Some(sender) = &sender
            && let Err(e) = crate::traces::job("mail.deliver", mail::deliver_due(&state, sender)).await
        {
            tracing::debug!(error = %e, "mail delivery deferred");
        }
        if let Err(e) = mail::update_outbox_age(&state).await {
            tracing::debug!(error = %e, "email outbox age not measured");
        }
        if swept.elapsed() >= SWEEP_EVERY {
            swept = tokio::time::Instant::now();
            match mail::sweep_send_counts(&state.db).await {
                Ok(n) if n > 0 => tracing::info!(deleted = n, "old email send counters swept"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "email send counter sweep failed"),
            }
        }
    }
}
