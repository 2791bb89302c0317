//! Settlement notices to a Slack/Discord-compatible incoming webhook, through an outbox.
//!
//! [`enqueue`] runs in the settlement's transaction, so each settled event gets exactly one
//! notice row (unique `event_webhook_outbox_event_id_key`) and a rolled-back settlement none.
//! [`deliver_due`] (the settlement job, every replica) takes due rows one at a time under
//! `FOR UPDATE SKIP LOCKED`, POSTs `{"text", "content"}` (Slack reads `text`, Discord
//! `content`) and records success, or the error and the next attempt with exponential backoff
//! (`events.webhook_backoff_ms` doubling, at most one hour) up to `events.webhook_max_attempts`.
//! Delivery is at least once: a crash between the POST and the commit sends the notice again.

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::PenaltyReason;
use super::store;
use crate::error::AppResult;
use crate::state::AppState;

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
        let mut tx = state.db.begin().await?;
        let row = store::take_due_notice(&mut tx, cfg.webhook_max_attempts).await?;
        let Some((id, payload, attempts)) = row else { return Ok(delivered) };
        let outcome = match client.post(url.expose_secret()).json(&payload).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status())),
            Err(e) if e.is_timeout() => Err("timed out".to_owned()),
            Err(_) => Err("request failed".to_owned()),
        };
        match outcome {
            Ok(()) => {
                store::update_notice_delivered(&mut tx, id).await?;
                metrics::counter!("maru_event_webhook_deliveries_total", "result" => "delivered").increment(1);
                delivered += 1;
            }
            Err(error) => {
                let backoff_ms =
                    cfg.webhook_backoff_ms.saturating_mul(1u64 << attempts.clamp(0, 20)).min(3_600_000) as f64;
                store::update_notice_failed(&mut tx, id, &error, backoff_ms).await?;
                metrics::counter!("maru_event_webhook_deliveries_total", "result" => "failed").increment(1);
                tracing::warn!(outbox_id = %id, attempt = attempts + 1, error, "settlement webhook not delivered");
            }
        }
        tx.commit().await?;
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
    fn message_counts_reasons() {
        let m = message("FC", "경기", &[PenaltyReason::Absent, PenaltyReason::Late, PenaltyReason::Absent]);
        assert_eq!(m, "[FC] 경기: settled — absent 2, late 1, not paid 0");
    }
}
