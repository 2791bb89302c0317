//! Protobuf ⇄ model conversions for clinical trials. Requests become queries or every bad
//! field is reported at once.

use super::model::{
    DEFAULT_LIMIT, DEFAULT_WINDOW_DAYS, FieldChange, IngestRun, ListTrials, MAX_FILTER_CHARS, MAX_LIMIT,
    MAX_WINDOW_DAYS, Revision, RunResult, Trial, TrialFilter, Trigger, Window, parse_trial_id,
};
use crate::error::{AppError, AppResult, Violations};
use crate::fields::{parse_text, timestamp};
use crate::grpc::pb;

pub fn trial_to_pb(t: Trial) -> pb::Trial {
    let d = t.data;
    pb::Trial {
        trial_id: d.trial_id,
        title: d.title,
        period: d.period,
        scope: d.scope,
        r#type: d.trial_type,
        institution: d.institution,
        phase: d.phase,
        target_enrollment: d.target_enrollment,
        department: d.department,
        created_at: Some(timestamp(t.created_at)),
        updated_at: Some(timestamp(t.updated_at)),
    }
}

fn change_to_pb(c: FieldChange) -> pb::FieldChange {
    pb::FieldChange { field: c.field, old_value: c.old, new_value: c.new }
}

pub fn revision_to_pb(r: Revision) -> pb::TrialRevision {
    pb::TrialRevision {
        id: r.id.to_string(),
        trial_id: r.trial_id,
        run_id: r.run_id.to_string(),
        changes: r.changes.into_iter().map(change_to_pb).collect(),
        created_at: Some(timestamp(r.created_at)),
    }
}

pub fn run_to_pb(r: IngestRun) -> pb::IngestRun {
    let result = match r.result {
        RunResult::Running => pb::IngestResult::Running,
        RunResult::Succeeded => pb::IngestResult::Succeeded,
        RunResult::Failed => pb::IngestResult::Failed,
    };
    let trigger = match r.trigger {
        Trigger::Schedule => pb::IngestTrigger::Schedule,
        Trigger::Admin => pb::IngestTrigger::Admin,
        Trigger::Cli => pb::IngestTrigger::Cli,
    };
    pb::IngestRun {
        id: r.id.to_string(),
        source: r.source,
        origin: r.origin.as_db().to_owned(),
        trigger: trigger as i32,
        triggered_by: r.triggered_by.map(|u| u.to_string()).unwrap_or_default(),
        result: result as i32,
        started_at: Some(timestamp(r.started_at)),
        finished_at: r.finished_at.map(timestamp),
        fetched: r.fetched,
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        failed: r.failed,
        error: r.error.unwrap_or_default(),
        row_errors: r
            .row_errors
            .into_iter()
            .map(|e| pb::RowError { row: e.row, trial_id: e.trial_id.unwrap_or_default(), reason: e.reason })
            .collect(),
        scheduled_for: r.scheduled_for.map(timestamp),
    }
}

/// A trial id field (`trial_id`).
pub fn trial_id(raw: &str) -> AppResult<String> {
    parse_trial_id(raw).map_err(|e| AppError::invalid("trial_id", e))
}

/// A partial-match filter: trimmed, empty = none, at most [`MAX_FILTER_CHARS`].
fn filter_text(v: &mut Violations, field: &str, raw: &str) -> Option<String> {
    if raw.trim().is_empty() {
        return None;
    }
    v.check(field, parse_text(raw, 0, MAX_FILTER_CHARS, false))
}

impl TryFrom<pb::ListTrialsRequest> for ListTrials {
    type Error = AppError;
    fn try_from(r: pb::ListTrialsRequest) -> Result<Self, AppError> {
        let mut v = Violations::new();
        let updated_within_days = match r.updated_within_days {
            None => Some(DEFAULT_WINDOW_DAYS),
            Some(0) => None,
            Some(d) if d < 0 => {
                v.add("updated_within_days", "must not be negative (0 = all)");
                None
            }
            Some(d) if d > MAX_WINDOW_DAYS => {
                v.add("updated_within_days", format!("must be at most {MAX_WINDOW_DAYS}"));
                None
            }
            Some(d) => Some(d),
        };
        let filter = TrialFilter {
            updated_within_days,
            title: filter_text(&mut v, "title", &r.title),
            scope: filter_text(&mut v, "scope", &r.scope),
            trial_type: filter_text(&mut v, "type", &r.r#type),
            institution: filter_text(&mut v, "institution", &r.institution),
            phase: filter_text(&mut v, "phase", &r.phase),
            department: filter_text(&mut v, "department", &r.department),
        };
        let token_paging = r.page_size != 0 || !r.page_token.is_empty();
        if r.offset < 0 {
            v.add("offset", "must not be negative");
        } else if r.offset > 0 && token_paging {
            v.add("offset", "cannot be combined with page_size or page_token");
        }
        if r.limit < 0 {
            v.add("limit", "must not be negative");
        } else if i64::from(r.limit) > MAX_LIMIT {
            v.add("limit", format!("must be at most {MAX_LIMIT}"));
        } else if r.limit > 0 && token_paging {
            v.add("limit", "cannot be combined with page_size or page_token");
        }
        if r.page_size < 0 {
            v.add("page_size", "must not be negative");
        }
        v.finish()?;
        let window = if token_paging {
            Window::Token { page_size: r.page_size, page_token: r.page_token }
        } else {
            let limit = if r.limit == 0 { DEFAULT_LIMIT } else { i64::from(r.limit) };
            Window::Offset { offset: i64::from(r.offset), limit }
        };
        Ok(ListTrials { filter, window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;

    fn fields(e: AppError) -> Vec<String> {
        match e {
            AppError::Invalid { reason, violations } => {
                assert_eq!(reason, Reason::InvalidArgument);
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let q = ListTrials::try_from(pb::ListTrialsRequest::default()).unwrap();
        assert_eq!(q.filter.updated_within_days, Some(7));
        assert_eq!(q.window, Window::Offset { offset: 0, limit: 5 });
        let q =
            ListTrials::try_from(pb::ListTrialsRequest { updated_within_days: Some(0), ..Default::default() }).unwrap();
        assert_eq!(q.filter.updated_within_days, None);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let r = pb::ListTrialsRequest {
            updated_within_days: Some(-1),
            department: "x".repeat(101),
            offset: -1,
            limit: 101,
            page_size: -2,
            ..Default::default()
        };
        assert_eq!(
            fields(ListTrials::try_from(r).unwrap_err()),
            ["updated_within_days", "department", "offset", "limit", "page_size"]
        );
    }

    #[test]
    fn offset_and_tokens_do_not_mix() {
        let r = pb::ListTrialsRequest { offset: 5, limit: 5, page_token: "t".into(), ..Default::default() };
        assert_eq!(fields(ListTrials::try_from(r).unwrap_err()), ["offset", "limit"]);
    }

    #[test]
    fn filters_are_trimmed() {
        let r = pb::ListTrialsRequest { title: "  ".into(), r#type: " 관찰 ".into(), ..Default::default() };
        let q = ListTrials::try_from(r).unwrap();
        assert_eq!(q.filter.title, None);
        assert_eq!(q.filter.trial_type.as_deref(), Some("관찰"));
    }
}
