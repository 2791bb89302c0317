//! Settlement notices to a Slack/Discord-compatible incoming webhook, through an outbox.
//!
//! [`enqueue`] runs in the settlement's transaction, so each settled event gets exactly one
//! notice row (unique `event_webhook_outbox_event_id_key`) and a rolled-back settlement none.
//! [`deliver_due`] (the settlement job, every replica) takes due rows one at a time under
//! `FOR UPDATE SKIP LOCKED`, POSTs `{"text", "content"}` (Slack reads `text`, Discord
//! `content`) and records success, or the error and the next attempt with exponential backoff
//! ([`crate::retry`]: `events.webhook_backoff_ms` doubling up to one hour, plus up to as much
//! again in jitter; a `Retry-After` on 429/503 instead, at most one hour) up to
//! `events.webhook_max_attempts`.
//! Delivery is at least once: a crash between the POST and the commit sends the notice again.

use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::PenaltyReason;
use super::store;
use crate::error::AppResult;
use crate::retry::{self, Policy};
use crate::state::AppState;

/// The longest wait between two deliveries of a notice (before jitter), and the longest
/// `Retry-After` honoured as it is.
const MAX_BACKOFF: Duration = Duration::from_secs(3_600);

/// When to try a notice again after `attempts` failed deliveries: the webhook's `Retry-After`
/// (capped), or the backoff of `events.webhook_backoff_ms`.
pub fn next_attempt_in(first: Duration, attempts: i32, retry_after: Option<Duration>) -> Duration {
    let policy = Policy { first, max: MAX_BACKOFF, retries: None };
    let n = u32::try_from(attempts.saturating_sub(1)).unwrap_or(0);
    retry_after.map(|w| w.min(MAX_BACKOFF)).or_else(|| policy.delay(n)).unwrap_or(MAX_BACKOFF)
}

/// The notice text of a settlement.
pub fn message(community: &str, title: &str, penalties: &[PenaltyReason]) -> String {
    let count = |r: PenaltyReason| penalties.iter().filter(|p| **p == r).count();
    format!(
        "[{community}] {title}: settled — absent {}, late {}, not paid {}",
        count(PenaltyReason::Absent),
        count(PenaltyReason::Late),
        count(PenaltyReason::NotPaid)
    )
}

/// Writes the notice of a settlement, in the settlement's transaction.
pub async fn enqueue(
    tx: &mut PgConnection,
    event_id: Uuid,
    community_id: Uuid,
    title: &str,
    penalties: &[PenaltyReason],
) -> AppResult<()> {
    let community = store::community_name(&mut *tx, community_id).await?;
    let text = message(&community, title, penalties);
    store::insert_notice(&mut *tx, event_id, &serde_json::json!({ "text": text, "content": text })).await
}

/// Delivers every due notice; returns how many were delivered by this call.
pub async fn deliver_due(state: &AppState) -> AppResult<usize> {
    let cfg = &state.settings.events;
    let Some(url) = cfg.webhook_url.as_ref() else { return Ok(0) };
    let timeout = Duration::from_millis(cfg.webhook_timeout_ms);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow::anyhow!("webhook client: {e}"))?;
    let mut delivered = 0;
    loop {
        let mut tx = crate::db::begin(&state.db).await?;
        let row = store::take_due_notice(&mut tx, cfg.webhook_max_attempts).await?;
        let Some((id, payload, attempts)) = row else { return Ok(delivered) };
        let outcome = match crate::traces::send(client.post(url.expose_secret()).json(&payload), "webhook.deliver")
            .await
        {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                Err((format!("HTTP {}", r.status()), retry::retry_after(r.status(), r.headers(), SystemTime::now())))
            }
            Err(e) if e.is_timeout() => Err(("timed out".to_owned(), None)),
            Err(_) => Err(("request failed".to_owned(), None)),
        };
        match outcome {
            Ok(()) => {
                store::update_notice_delivered(&mut tx, id).await?;
                metrics::counter!("maru_event_webhook_deliveries_total", "result" => "delivered").increment(1);
                delivered += 1;
            }
            Err((error, retry_after)) => {
                let first = Duration::from_millis(cfg.webhook_backoff_ms);
                let backoff_ms = next_attempt_in(first, attempts + 1, retry_after).as_millis() as f64;
                store::update_notice_failed(&mut tx, id, &error, backoff_ms).await?;
                metrics::counter!("maru_event_webhook_deliveries_total", "result" => "failed").increment(1);
                tracing::warn!(outbox_id = %id, attempt = attempts + 1, error, "settlement webhook not delivered");
            }
        }
        crate::db::commit(&state.db, tx).await?;
    }
}

/// Notices not delivered yet (given-up ones included), for `maru_event_outbox_backlog`.
pub async fn backlog(state: &AppState) -> AppResult<i64> {
    store::count_undelivered_notices(&state.db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_or_follow_retry_after() {
        let first = Duration::from_millis(1_000);
        for _ in 0..20 {
            // After the 1st failure 1-2 s, after the 3rd 4-8 s, late ones at most 1 h (+ jitter).
            let d = next_attempt_in(first, 1, None);
            assert!(d >= first && d <= first * 2, "{d:?}");
            let d = next_attempt_in(first, 3, None);
            assert!(d >= first * 4 && d <= first * 8, "{d:?}");
            let d = next_attempt_in(first, 30, None);
            assert!(d >= MAX_BACKOFF && d <= MAX_BACKOFF * 2, "{d:?}");
        }
        assert_eq!(next_attempt_in(first, 1, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(next_attempt_in(first, 1, Some(Duration::from_secs(86_400))), MAX_BACKOFF);
    }

    #[test]
    fn message_counts_reasons() {
        let m = message("FC", "경기", &[PenaltyReason::Absent, PenaltyReason::Late, PenaltyReason::Absent]);
        assert_eq!(m, "[FC] 경기: settled — absent 2, late 1, not paid 0");
    }
}
