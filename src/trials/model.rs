//! Clinical-trial rules, free of SQL and transport: how a source row becomes a trial (values
//! trimmed, `""` absent, the enrolment a whole number), what counts as a change, the records an
//! ingest run keeps, and the shapes of the read queries.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The dataset name used in run records and metric labels.
pub const SOURCE: &str = "clinical_trials";

/// Keys of a source row (odcloud dataset 3074271), all strings, `""` when missing.
pub mod keys {
    pub const TRIAL_ID: &str = "과제번호";
    pub const TITLE: &str = "과제명";
    pub const PERIOD: &str = "연구기간";
    pub const SCOPE: &str = "연구범위";
    pub const TYPE: &str = "연구종류";
    pub const INSTITUTION: &str = "연구책임기관";
    pub const PHASE: &str = "임상시험단계(연구모형)";
    pub const TARGET_ENROLLMENT: &str = "전체목표연구대상자수";
    pub const DEPARTMENT: &str = "진료과";
}

const MAX_TITLE_CHARS: usize = 1000;
const MAX_VALUE_CHARS: usize = 200;

/// One row as the gateway (or a file) delivers it.
pub type RawRow = serde_json::Map<String, Value>;

/// The published values of a trial, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TrialData {
    pub trial_id: String,
    pub title: String,
    pub period: Option<String>,
    pub scope: Option<String>,
    pub trial_type: Option<String>,
    pub institution: Option<String>,
    pub phase: Option<String>,
    pub target_enrollment: Option<i32>,
    pub department: Option<String>,
}

/// A stored trial.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Trial {
    #[sqlx(flatten)]
    pub data: TrialData,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A changed field, named as in the API (`type`, `target_enrollment` …), values as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl TrialData {
    /// The compared fields in API order, values as text.
    fn fields(&self) -> [(&'static str, Option<String>); 8] {
        [
            ("title", Some(self.title.clone())),
            ("period", self.period.clone()),
            ("scope", self.scope.clone()),
            ("type", self.trial_type.clone()),
            ("institution", self.institution.clone()),
            ("phase", self.phase.clone()),
            ("target_enrollment", self.target_enrollment.map(|n| n.to_string())),
            ("department", self.department.clone()),
        ]
    }

    /// The fields whose value differs from `old` (empty: nothing changed).
    pub fn changes_from(&self, old: &TrialData) -> Vec<FieldChange> {
        old.fields()
            .into_iter()
            .zip(self.fields())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((field, old), (_, new))| FieldChange { field: field.to_owned(), old, new })
            .collect()
    }
}

/// A trial id (과제번호): 1–32 characters of `[A-Za-z0-9_-]`, e.g. `C130010`.
pub fn parse_trial_id(raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() {
        return Err("is required".into());
    }
    if id.chars().count() > 32 {
        return Err("must be at most 32 characters".into());
    }
    if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("may contain only A-Z, a-z, 0-9, '-' and '_'".into());
    }
    Ok(id.to_owned())
}

/// A source value: trimmed, `""` and `null` absent. A missing key is an error, so a renamed
/// column fails its rows instead of silently blanking every trial.
fn text(row: &RawRow, key: &str, max_chars: usize) -> Result<Option<String>, String> {
    let s = match row.get(key) {
        None => return Err(format!("missing field {key}")),
        Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(format!("{key} is not text")),
    };
    if s.is_empty() {
        return Ok(None);
    }
    if s.chars().count() > max_chars {
        return Err(format!("{key} is longer than {max_chars} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{key} contains control characters"));
    }
    Ok(Some(s))
}

/// A whole number of participants; thousands separators are accepted.
fn enrollment(raw: Option<String>) -> Result<Option<i32>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let digits: String = raw.chars().filter(|c| *c != ',').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("{} `{raw}` is not a whole number", keys::TARGET_ENROLLMENT));
    }
    digits.parse::<i32>().map(Some).map_err(|_| format!("{} `{raw}` is too large", keys::TARGET_ENROLLMENT))
}

/// Why a source row was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// 1-based position among the fetched rows.
    pub row: i32,
    pub trial_id: Option<String>,
    pub reason: String,
}

/// One source row as a trial, or the reason it cannot be one.
pub fn parse_row(row: &RawRow) -> Result<TrialData, (Option<String>, String)> {
    let trial_id = match text(row, keys::TRIAL_ID, 64) {
        Ok(Some(raw)) => parse_trial_id(&raw).map_err(|e| (None, format!("{} {e}", keys::TRIAL_ID)))?,
        Ok(None) => return Err((None, format!("{} is empty", keys::TRIAL_ID))),
        Err(e) => return Err((None, e)),
    };
    let fail = |e: String| (Some(trial_id.clone()), e);
    let title = text(row, keys::TITLE, MAX_TITLE_CHARS).map_err(fail)?;
    let Some(title) = title else { return Err(fail(format!("{} is empty", keys::TITLE))) };
    let value = |key| text(row, key, MAX_VALUE_CHARS).map_err(fail);
    Ok(TrialData {
        title,
        period: value(keys::PERIOD)?,
        scope: value(keys::SCOPE)?,
        trial_type: value(keys::TYPE)?,
        institution: value(keys::INSTITUTION)?,
        phase: value(keys::PHASE)?,
        target_enrollment: enrollment(value(keys::TARGET_ENROLLMENT)?).map_err(fail)?,
        department: value(keys::DEPARTMENT)?,
        trial_id: trial_id.clone(),
    })
}

/// Parses every row; invalid rows and repeated trial ids (the first occurrence wins) become
/// [`RowError`]s.
pub fn normalise(rows: &[RawRow]) -> (Vec<TrialData>, Vec<RowError>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut trials = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (i, raw) in rows.iter().enumerate() {
        let row = i32::try_from(i + 1).unwrap_or(i32::MAX);
        match parse_row(raw) {
            Ok(t) => {
                if let Some(first) = seen.get(&t.trial_id) {
                    errors.push(RowError {
                        row,
                        trial_id: Some(t.trial_id),
                        reason: format!("repeats the trial id of row {first}"),
                    });
                } else {
                    seen.insert(t.trial_id.clone(), i + 1);
                    trials.push(t);
                }
            }
            Err((trial_id, reason)) => errors.push(RowError { row, trial_id, reason }),
        }
    }
    (trials, errors)
}

/// Outcome of an ingest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Running,
    Succeeded,
    Failed,
}

/// What started an ingest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Admin,
    Cli,
}

/// Where a run read its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Gateway,
    File,
}

macro_rules! db_enum {
    ($ty:ident { $($variant:ident => $db:literal / $label:literal,)* }) => {
        impl $ty {
            pub fn as_db(self) -> &'static str {
                match self { $($ty::$variant => $db,)* }
            }
            /// Lower-case name for metric labels and logs.
            pub fn label(self) -> &'static str {
                match self { $($ty::$variant => $label,)* }
            }
        }
        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                match s.as_str() {
                    $($db => Ok($ty::$variant),)*
                    _ => Err(format!("unknown {} {s}", stringify!($ty))),
                }
            }
        }
    };
}

db_enum!(RunResult { Running => "RUNNING" / "running", Succeeded => "SUCCEEDED" / "succeeded", Failed => "FAILED" / "failed", });
db_enum!(Trigger { Schedule => "SCHEDULE" / "schedule", Admin => "ADMIN" / "admin", Cli => "CLI" / "cli", });
db_enum!(Origin { Gateway => "GATEWAY" / "gateway", File => "FILE" / "file", });

/// The record of one ingest run.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IngestRun {
    pub id: Uuid,
    pub source: String,
    #[sqlx(try_from = "String")]
    pub origin: Origin,
    #[sqlx(try_from = "String")]
    pub trigger: Trigger,
    pub triggered_by: Option<Uuid>,
    pub scheduled_for: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub result: RunResult,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub fetched: i32,
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub failed: i32,
    pub error: Option<String>,
    #[sqlx(json)]
    pub row_errors: Vec<RowError>,
}

/// How the rows of a successful run were classified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub fetched: i32,
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub failed: i32,
}

/// One recorded update of a trial.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Revision {
    pub id: i64,
    pub trial_id: String,
    pub run_id: Uuid,
    #[sqlx(json)]
    pub changes: Vec<FieldChange>,
    pub created_at: DateTime<Utc>,
}

/// Progress of an ingest, for the CLI's progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Rows fetched so far out of the source's `totalCount`.
    Fetched { rows: usize, total: usize },
    /// Fetching is done; the rows are being written in one transaction.
    Writing { rows: usize },
}

/// The filters of ListTrials (page tokens are bound to them). `None` = no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrialFilter {
    pub updated_within_days: Option<i32>,
    pub title: Option<String>,
    pub scope: Option<String>,
    pub trial_type: Option<String>,
    pub institution: Option<String>,
    pub phase: Option<String>,
    pub department: Option<String>,
}

/// Default `limit` of offset paging (what the source API offered).
pub const DEFAULT_LIMIT: i64 = 5;
pub const MAX_LIMIT: i64 = 100;
/// Default and upper bound of `updated_within_days`.
pub const DEFAULT_WINDOW_DAYS: i32 = 7;
pub const MAX_WINDOW_DAYS: i32 = 36_500;
pub const MAX_FILTER_CHARS: usize = 100;

/// Which rows of the filtered list a request wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    Offset { offset: i64, limit: i64 },
    Token { page_size: i32, page_token: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTrials {
    pub filter: TrialFilter,
    pub window: Window,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> RawRow {
        v.as_object().unwrap().clone()
    }

    fn sample() -> Value {
        json!({
            "과제명": "  CRCRA Registry ",
            "과제번호": "C100003",
            "연구기간": "",
            "연구범위": "단일기관",
            "연구종류": "관찰연구",
            "연구책임기관": "한양대학교병원",
            "임상시험단계(연구모형)": "코호트",
            "전체목표연구대상자수": "1,200",
            "진료과": "Rheumatology"
        })
    }

    #[test]
    fn rows_are_trimmed_and_empty_is_absent() {
        let t = parse_row(&row(sample())).unwrap();
        assert_eq!(t.title, "CRCRA Registry");
        assert_eq!(t.period, None);
        assert_eq!(t.target_enrollment, Some(1200));
        assert_eq!(t.department.as_deref(), Some("Rheumatology"));
    }

    #[test]
    fn bad_rows_name_their_problem() {
        let mut r = sample();
        r["전체목표연구대상자수"] = json!("약 100");
        let (id, reason) = parse_row(&row(r)).unwrap_err();
        assert_eq!(id.as_deref(), Some("C100003"));
        assert!(reason.contains("not a whole number"), "{reason}");

        let mut r = sample();
        r["과제번호"] = json!(" ");
        assert_eq!(parse_row(&row(r)).unwrap_err().0, None);

        let mut r = sample();
        r.as_object_mut().unwrap().remove("진료과");
        assert!(parse_row(&row(r)).unwrap_err().1.contains("missing field 진료과"));

        let mut r = sample();
        r["과제명"] = json!("");
        assert!(parse_row(&row(r)).is_err());

        let mut r = sample();
        r["전체목표연구대상자수"] = json!("99999999999");
        assert!(parse_row(&row(r)).is_err());
    }

    #[test]
    fn numbers_from_the_source_are_accepted_as_text() {
        let mut r = sample();
        r["전체목표연구대상자수"] = json!(300);
        assert_eq!(parse_row(&row(r)).unwrap().target_enrollment, Some(300));
    }

    #[test]
    fn duplicates_keep_the_first() {
        let mut second = sample();
        second["과제명"] = json!("other");
        let (trials, errors) = normalise(&[row(sample()), row(second)]);
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].title, "CRCRA Registry");
        assert_eq!(
            errors,
            [RowError { row: 2, trial_id: Some("C100003".into()), reason: "repeats the trial id of row 1".into() }]
        );
    }

    #[test]
    fn changes_list_only_differing_fields() {
        let old = parse_row(&row(sample())).unwrap();
        assert!(old.changes_from(&old).is_empty());
        let mut new = old.clone();
        new.department = Some("Cardiology".into());
        new.target_enrollment = None;
        assert_eq!(
            new.changes_from(&old),
            [
                FieldChange { field: "target_enrollment".into(), old: Some("1200".into()), new: None },
                FieldChange {
                    field: "department".into(),
                    old: Some("Rheumatology".into()),
                    new: Some("Cardiology".into())
                },
            ]
        );
    }

    #[test]
    fn trial_ids() {
        assert_eq!(parse_trial_id(" C130010 ").unwrap(), "C130010");
        assert!(parse_trial_id("").is_err());
        assert!(parse_trial_id("C 1").is_err());
        assert!(parse_trial_id("C%").is_err());
        assert!(parse_trial_id(&"C".repeat(33)).is_err());
    }
}
