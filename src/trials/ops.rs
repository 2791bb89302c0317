//! Clinical-trial use cases. Who may do what:
//! - anyone (anonymous included): ListTrials, GetTrial, ListTrialRevisions — the data is
//!   public open data, as the source API was;
//! - an admin: RunIngest, ListIngestRuns;
//! - the scheduler and an operator at the CLI: ingest (see [`super::ingest`]).

use chrono::{DateTime, Utc};
use tracing::Instrument;
use uuid::Uuid;

use super::ingest::{IngestRequest, Source, ingest};
use super::model::{IngestRun, ListTrials, Revision, Trial, Trigger, Window};
use super::store;
use crate::caller::Caller;
use crate::db::{ExpensiveRead, ReadKind};
use crate::error::{AppError, AppResult, Reason};
use crate::state::AppState;

/// A page of trials, the number matching the filters, and the next page token (token paging).
#[tracing::instrument(name = "trials.list_trials", skip_all, err(level = "debug"))]
pub async fn list_trials(state: &AppState, q: ListTrials) -> AppResult<(Vec<Trial>, i64, String)> {
    let filter = &q.filter;
    let (page, after, offset, limit) = match &q.window {
        Window::Offset { offset, limit } => (None, None, *offset, *limit),
        Window::Token { page_size, page_token } => {
            let page = state.pager.page::<(DateTime<Utc>, String)>(*page_size, page_token, filter)?;
            let (after, limit) = (page.after.clone(), page.fetch_limit());
            (Some(page), after, 0, limit)
        }
    };
    // Joins with substring filters and an exact count: an expensive read (bulkhead, deadline,
    // cancelled when abandoned), so anonymous listings cannot hold the whole pool.
    let mut read = ExpensiveRead::begin(&state.db, &state.expensive_reads, ReadKind::TrialList).await?;
    let result = async {
        let rows = store::list_trials(read.conn(), filter, after.as_ref(), offset, limit).await?;
        let total = store::count_trials(read.conn(), filter).await?;
        Ok::<_, AppError>((rows, total))
    }
    .await;
    let (rows, total) = read.finish(result).await?;
    Ok(match page {
        Some(page) => {
            let (rows, next) = state.pager.finish(&page, rows, filter, |t| (t.updated_at, t.data.trial_id.clone()));
            (rows, total, next)
        }
        None => (rows, total, String::new()),
    })
}

#[tracing::instrument(name = "trials.get_trial", skip_all, err(level = "debug"))]
pub async fn get_trial(state: &AppState, trial_id: &str) -> AppResult<Trial> {
    store::get_trial(&state.db, trial_id).await?.ok_or_else(|| AppError::not_found(Reason::TrialNotFound, "trial"))
}

/// Revisions of one trial, newest first; NOT_FOUND for an unknown trial.
#[tracing::instrument(name = "trials.list_trial_revisions", skip_all, err(level = "debug"))]
pub async fn list_trial_revisions(
    state: &AppState,
    trial_id: &str,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<Revision>, String)> {
    let page = state.pager.page::<i64>(page_size, page_token, &("trial_revisions", trial_id))?;
    if !store::trial_exists(&state.db, trial_id).await? {
        return Err(AppError::not_found(Reason::TrialNotFound, "trial"));
    }
    let rows = store::list_revisions(&state.db, trial_id, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &("trial_revisions", trial_id), |r| r.id))
}

/// Runs an ingest from the gateway now and waits for its record. The run is a task of its own,
/// so a cancelled or timed-out call does not interrupt it.
#[tracing::instrument(name = "trials.run_ingest", skip_all, err(level = "debug"))]
pub async fn run_ingest(state: &AppState, caller: &Caller) -> AppResult<IngestRun> {
    caller.require_admin()?;
    let state = state.clone();
    let req = IngestRequest {
        source: Source::Gateway,
        trigger: Trigger::Admin,
        triggered_by: Some(caller.user_id),
        scheduled_for: None,
    };
    // The run's logs keep the request id of the call that started it.
    tokio::spawn(async move { ingest(&state, req, &|_| {}).await }.instrument(tracing::Span::current()))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("ingest task failed: {e}")))?
}

/// Ingest runs, newest first.
#[tracing::instrument(name = "trials.list_ingest_runs", skip_all, err(level = "debug"))]
pub async fn list_ingest_runs(
    state: &AppState,
    caller: &Caller,
    page_size: i32,
    page_token: &str,
) -> AppResult<(Vec<IngestRun>, String)> {
    caller.require_admin()?;
    let page = state.pager.page::<(DateTime<Utc>, Uuid)>(page_size, page_token, &"ingest_runs")?;
    let rows = store::list_runs(&state.db, page.after, page.fetch_limit()).await?;
    Ok(state.pager.finish(&page, rows, &"ingest_runs", |r| (r.started_at, r.id)))
}
