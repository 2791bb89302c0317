//! Penalty settlement: every ended event is settled exactly once. A replica takes one ended,
//! unsettled event with `FOR UPDATE SKIP LOCKED`, inserts its penalty rows and sets
//! `settled_at` in the same transaction: a crash before the commit leaves nothing, after it
//! everything, and a second replica skips the locked row (or, later, no longer sees it as
//! unsettled). Points (settings `events.*_points`): ABSENT +3; LATE +1; NOT_PAID +1 for a
//! participant who came (ATTEND or LATE) to an event with a fee, added to LATE. PENDING fees
//! are not penalised. The state lives in PostgreSQL only, so an event that ended while no
//! replica ran is settled by the first one to start. With `events.webhook_url` set, the
//! settlement's notice is written to the outbox in the same transaction ([`super::outbox`]).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::model::PenaltyReason;
use super::store;
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// One settled event.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub event_id: Uuid,
    pub penalties: Vec<PenaltyReason>,
    pub lag_s: f64,
}

/// Settles every event that has ended by the clock's now; returns what this call settled. An
/// event whose settlement fails is rolled back, skipped for the rest of this call (so it does
/// not hold up the others) and retried at the next call; the first error is returned.
pub async fn settle_due(state: &AppState) -> AppResult<Vec<Settled>> {
    let mut done = Vec::new();
    let mut failed: Vec<Uuid> = Vec::new();
    let mut first_error = None;
    loop {
        match settle_one(state, &failed).await {
            Ok(Some(s)) => done.push(s),
            Ok(None) => break,
            Err((Some(id), e)) => {
                tracing::warn!(event_id = %id, error = %e, "event settlement failed; retried later");
                failed.push(id);
                first_error.get_or_insert(e);
            }
            Err((None, e)) => return Err(e),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Settles one ended event, if any is left that no other replica holds (and not in `skip`).
/// The error names the event when one was taken.
async fn settle_one(state: &AppState, skip: &[Uuid]) -> Result<Option<Settled>, (Option<Uuid>, AppError)> {
    let now = state.clock.now();
    let mut tx = crate::db::begin(&state.db).await.map_err(|e| (None, e.into()))?;
    let row = store::take_due_event(&mut tx, now, skip).await.map_err(|e| (None, e))?;
    let Some(store::DueEvent { event_id, community_id, ends_at, fee, title }) = row else { return Ok(None) };
    let penalties = apply(state, &mut tx, event_id, community_id, fee, now).await.map_err(|e| (Some(event_id), e))?;
    if state.settings.events.webhook_url.is_some() {
        super::outbox::enqueue(&mut tx, event_id, community_id, &title, &penalties)
            .await
            .map_err(|e| (Some(event_id), e))?;
    }
    crate::db::commit(&state.db, tx).await.map_err(|e| (Some(event_id), e))?;

    let lag_s = (now - ends_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::counter!("maru_event_settlements_total").increment(1);
    metrics::histogram!("maru_event_settlement_lag_seconds").record(lag_s);
    for p in &penalties {
        metrics::counter!("maru_event_penalties_total", "reason" => p.label()).increment(1);
    }
    tracing::info!(event_id = %event_id, penalties = penalties.len(), lag_s, "event settled");
    Ok(Some(Settled { event_id, penalties, lag_s }))
}

/// Inserts the penalty rows and marks the event settled, in the caller's transaction.
async fn apply(
    state: &AppState,
    tx: &mut PgConnection,
    event_id: Uuid,
    community_id: Uuid,
    fee: i64,
    now: DateTime<Utc>,
) -> AppResult<Vec<PenaltyReason>> {
    let cfg = &state.settings.events;
    let points =
        store::PenaltyPoints { absent: cfg.absent_points, late: cfg.late_points, not_paid: cfg.not_paid_points };
    let reasons = store::insert_penalties(&mut *tx, event_id, community_id, points, fee).await?;
    store::update_event_settled(&mut *tx, event_id, now).await?;
    Ok(reasons.iter().filter_map(|r| PenaltyReason::from_db(r)).collect())
}

/// Seconds the oldest ended, unsettled event has waited (0 when none), for the lag alert.
pub async fn oldest_unsettled_lag(state: &AppState) -> AppResult<f64> {
    let oldest = store::oldest_unsettled_end(&state.db, state.clock.now()).await?;
    Ok(oldest.map_or(0.0, |t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0))
}
