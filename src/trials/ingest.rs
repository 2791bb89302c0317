//! The ingest pipeline shared by the scheduler, RunIngest and the CLI.
//!
//! 1. Take the session advisory lock on a dedicated connection (closed on drop, so a cancelled
//!    run cannot leave the lock behind); if another session holds it, refuse with
//!    `INGEST_IN_PROGRESS` and record nothing.
//! 2. Record the run (RUNNING); a scheduled run whose cron slot already has a run stops here.
//! 3. Fetch every row first. Any failure (401, 5xx after retries, malformed body, time-out)
//!    marks the run FAILED and writes nothing else.
//! 4. In ONE transaction: ensure lookup values, compare each trial with the stored one, insert
//!    the new, update only the changed (bumping `updated_at` and recording a revision), and
//!    mark the run SUCCEEDED with its counts. A failure rolls all of it back.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use super::model::{Counts, IngestRun, Origin, Progress, RawRow, RunResult, SOURCE, Trigger, normalise};
use super::source::{Gateway, SourceError, read_file};
use super::store::{self, Lookup, NewRun, TrialRow};
use crate::error::{AppError, AppResult, Reason};
use crate::state::AppState;

/// Where a run reads its rows.
#[derive(Debug, Clone)]
pub enum Source {
    /// The configured odcloud gateway (`trials.*`).
    Gateway,
    /// A JSON file: an array of rows or the gateway envelope.
    File(PathBuf),
}

/// What to run and on whose behalf.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub source: Source,
    pub trigger: Trigger,
    pub triggered_by: Option<Uuid>,
    /// The cron slot of a scheduled run (each slot runs once across replicas).
    pub scheduled_for: Option<DateTime<Utc>>,
}

pub fn in_progress() -> AppError {
    AppError::failed_precondition(Reason::IngestInProgress, "an ingest run is already in progress; try again later")
}

pub fn not_configured() -> AppError {
    AppError::failed_precondition(
        Reason::IngestNotConfigured,
        "the trials gateway has no service key (set MARU__TRIALS__SERVICE_KEY)",
    )
}

/// Why a run failed; the text goes into the run record.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Data(String),
    #[error("database: {0:#}")]
    Db(#[from] AppError),
}

/// Runs one ingest and returns its record (SUCCEEDED or FAILED). `Err` only when the run
/// could not start (`INGEST_IN_PROGRESS`, `INGEST_NOT_CONFIGURED`, database unavailable).
#[tracing::instrument(name = "trials.ingest", skip_all, fields(trigger = req.trigger.label(), run_id), err(level = "debug"))]
pub async fn ingest(
    state: &AppState,
    req: IngestRequest,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> AppResult<IngestRun> {
    let (origin, gateway) = match &req.source {
        Source::Gateway => {
            let gateway = Gateway::new(&state.settings.trials).map_err(|e| AppError::internal(e.0))?;
            (Origin::Gateway, Some(gateway.ok_or_else(not_configured)?))
        }
        Source::File(_) => (Origin::File, None),
    };

    let mut lock = state.db.acquire().await?;
    // Closing the connection is what releases a session lock if this future is dropped.
    lock.close_on_drop();
    if !store::try_lock_ingest(&mut lock).await? {
        metrics::counter!("maru_ingest_runs_total", "source" => SOURCE, "result" => "skipped").increment(1);
        return Err(in_progress());
    }
    let abandoned = store::fail_abandoned_runs(&state.db).await?;
    if abandoned > 0 {
        tracing::warn!(runs = abandoned, "ingest runs left RUNNING by a stopped process marked FAILED");
    }
    let run_id = Uuid::now_v7();
    tracing::Span::current().record("run_id", tracing::field::display(run_id));
    let new = NewRun {
        id: run_id,
        origin,
        trigger: req.trigger,
        triggered_by: req.triggered_by,
        scheduled_for: req.scheduled_for,
    };
    if !store::insert_run(&state.db, &new).await? {
        metrics::counter!("maru_ingest_runs_total", "source" => SOURCE, "result" => "skipped").increment(1);
        let _ = store::unlock_ingest(&mut lock).await;
        return Err(AppError::failed_precondition(
            Reason::IngestInProgress,
            "this scheduled run already ran on another replica",
        ));
    }
    tracing::info!(origin = origin.label(), "ingest run started");

    let started = Instant::now();
    let mut fetched = 0;
    let outcome = async {
        let rows = match (&req.source, &gateway) {
            (Source::File(path), _) => read_file(path)?,
            (Source::Gateway, Some(g)) => g.fetch_all(progress).await?,
            (Source::Gateway, None) => return Err(Failure::Data("no gateway configured".into())),
        };
        fetched = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        write(state, run_id, &rows, progress).await
    }
    .await;

    let run = match outcome {
        Ok(run) => run,
        Err(failure) => {
            let error = failure.to_string();
            tracing::warn!(error = %error, "ingest run failed; nothing was written");
            store::fail_run(&state.db, run_id, fetched, &error).await?
        }
    };
    let _ = store::unlock_ingest(&mut lock).await;
    record_metrics(&run, started);
    tracing::info!(
        result = run.result.label(),
        fetched = run.fetched,
        created = run.created,
        updated = run.updated,
        unchanged = run.unchanged,
        failed = run.failed,
        "ingest run finished"
    );
    Ok(run)
}

fn record_metrics(run: &IngestRun, started: Instant) {
    metrics::counter!("maru_ingest_runs_total", "source" => SOURCE, "result" => run.result.label()).increment(1);
    metrics::histogram!("maru_ingest_run_duration_seconds", "source" => SOURCE).record(started.elapsed().as_secs_f64());
    if run.result == RunResult::Succeeded {
        for (outcome, n) in
            [("created", run.created), ("updated", run.updated), ("unchanged", run.unchanged), ("failed", run.failed)]
        {
            metrics::counter!("maru_ingest_rows_total", "source" => SOURCE, "outcome" => outcome)
                .increment(u64::try_from(n).unwrap_or(0));
        }
        if let Some(at) = run.finished_at {
            set_last_success(at);
        }
    }
}

/// Sets `maru_ingest_last_success_timestamp_seconds`.
pub fn set_last_success(at: DateTime<Utc>) {
    metrics::gauge!("maru_ingest_last_success_timestamp_seconds", "source" => SOURCE).set(at.timestamp() as f64);
}

/// Normalises the fetched rows and writes them in one transaction, run record included.
async fn write(
    state: &AppState,
    run_id: Uuid,
    rows: &[RawRow],
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<IngestRun, Failure> {
    let (trials, row_errors) = normalise(rows);
    for e in row_errors.iter().take(20) {
        tracing::warn!(row = e.row, trial_id = e.trial_id.as_deref().unwrap_or(""), reason = %e.reason, "source row skipped");
    }
    if !rows.is_empty() && trials.is_empty() {
        let first = row_errors.first().map(|e| e.reason.as_str()).unwrap_or("");
        return Err(Failure::Data(format!(
            "none of the {} fetched rows could be used (first problem: {first}); has the source format changed?",
            rows.len()
        )));
    }
    progress(Progress::Writing { rows: trials.len() });

    let mut tx = crate::db::begin(&state.db).await.map_err(AppError::from)?;
    let mut ids: HashMap<Lookup, HashMap<String, i64>> = HashMap::new();
    for lookup in Lookup::ALL {
        let names: Vec<String> = trials
            .iter()
            .filter_map(|t| lookup.of(t))
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        ids.insert(lookup, store::ensure_lookup(&mut tx, lookup, &names).await?);
    }
    let row = |t| TrialRow {
        data: t,
        ids: Lookup::ALL.map(|l| l.of(t).and_then(|name| ids.get(&l).and_then(|m| m.get(name)).copied())),
    };

    let trial_ids: Vec<String> = trials.iter().map(|t| t.trial_id.clone()).collect();
    let existing: HashMap<String, _> =
        store::lock_trials(&mut tx, &trial_ids).await?.into_iter().map(|t| (t.trial_id.clone(), t)).collect();
    let (mut created, mut changed, mut revisions, mut unchanged) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for t in &trials {
        match existing.get(&t.trial_id) {
            None => created.push(row(t)),
            Some(old) => {
                let changes = t.changes_from(old);
                if changes.is_empty() {
                    unchanged += 1;
                } else {
                    changed.push(row(t));
                    revisions.push((t.trial_id.as_str(), changes));
                }
            }
        }
    }
    store::insert_trials(&mut tx, &created).await?;
    store::update_trials(&mut tx, &changed).await?;
    store::insert_revisions(&mut tx, run_id, &revisions).await?;
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let counts = Counts {
        fetched: count(rows.len()),
        created: count(created.len()),
        updated: count(changed.len()),
        unchanged,
        failed: count(row_errors.len()),
    };
    let run = store::finish_run(&mut tx, run_id, &counts, &row_errors).await?;
    crate::db::commit(&state.db, tx).await?;
    Ok(run)
}

/// Whether `err` is the refusal of a run because another is in progress.
pub fn is_in_progress(err: &AppError) -> bool {
    err.code() == Code::FailedPrecondition && err.reason() == Reason::IngestInProgress
}
