//! Every SQL statement of clinical trials, ingest runs and the ingest lock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::{
    Counts, FieldChange, IngestRun, Origin, Revision, RowError, SOURCE, Trial, TrialData, TrialFilter, Trigger,
};
use crate::db::escape_like;
use crate::error::AppResult;

/// Session-level advisory lock held (on a dedicated connection) for a whole ingest run, so one
/// run at a time happens across replicas. The value spells "marutria".
const INGEST_LOCK_KEY: i64 = 0x6d61_7275_7472_6961;

/// Takes the ingest lock on `conn` if no other session holds it.
pub async fn try_lock_ingest(conn: &mut PgConnection) -> AppResult<bool> {
    let (locked,): (bool,) =
        sqlx::query_as("select pg_try_advisory_lock($1)").bind(INGEST_LOCK_KEY).fetch_one(conn).await?;
    Ok(locked)
}

pub async fn unlock_ingest(conn: &mut PgConnection) -> AppResult<()> {
    sqlx::query("select pg_advisory_unlock($1)").bind(INGEST_LOCK_KEY).execute(conn).await?;
    Ok(())
}

const RUN_COLUMNS: &str = "id, source, origin, trigger, triggered_by, scheduled_for, result, started_at, \
                           finished_at, fetched, created, updated, unchanged, failed, error, row_errors";

/// Marks runs left RUNNING by a process that stopped mid-run as FAILED. Only called while
/// holding the ingest lock, so none of them is really running.
pub async fn fail_abandoned_runs(db: impl PgExecutor<'_>) -> AppResult<u64> {
    Ok(sqlx::query(
        "update ingest_runs
         set result = 'FAILED', finished_at = now(), updated_at = now(),
             error = 'interrupted: the process stopped before the run finished'
         where source = $1 and result = 'RUNNING'",
    )
    .bind(SOURCE)
    .execute(db)
    .await?
    .rows_affected())
}

pub struct NewRun {
    pub id: Uuid,
    pub origin: Origin,
    pub trigger: Trigger,
    pub triggered_by: Option<Uuid>,
    pub scheduled_for: Option<DateTime<Utc>>,
}

/// Records a RUNNING run; `false` when its schedule slot already has a run.
pub async fn insert_run(db: impl PgExecutor<'_>, r: &NewRun) -> AppResult<bool> {
    let inserted = sqlx::query(
        "insert into ingest_runs (id, source, origin, trigger, triggered_by, scheduled_for)
         values ($1, $2, $3, $4, $5, $6)
         on conflict do nothing",
    )
    .bind(r.id)
    .bind(SOURCE)
    .bind(r.origin.as_db())
    .bind(r.trigger.as_db())
    .bind(r.triggered_by)
    .bind(r.scheduled_for)
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Completes a run as SUCCEEDED (in the transaction that wrote its data).
pub async fn finish_run(
    conn: &mut PgConnection,
    id: Uuid,
    counts: &Counts,
    row_errors: &[RowError],
) -> AppResult<IngestRun> {
    let sql = format!(
        "update ingest_runs
         set result = 'SUCCEEDED', finished_at = clock_timestamp(), updated_at = now(),
             fetched = $2, created = $3, updated = $4, unchanged = $5, failed = $6, row_errors = $7
         where id = $1
         returning {RUN_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, IngestRun>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(counts.fetched)
        .bind(counts.created)
        .bind(counts.updated)
        .bind(counts.unchanged)
        .bind(counts.failed)
        .bind(Json(row_errors))
        .fetch_one(conn)
        .await?)
}

/// Completes a run as FAILED; nothing of it was written.
pub async fn fail_run(db: impl PgExecutor<'_>, id: Uuid, fetched: i32, error: &str) -> AppResult<IngestRun> {
    let sql = format!(
        "update ingest_runs
         set result = 'FAILED', finished_at = clock_timestamp(), updated_at = now(), fetched = $2, error = $3
         where id = $1
         returning {RUN_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, IngestRun>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(fetched)
        .bind(error)
        .fetch_one(db)
        .await?)
}

/// Runs newest first, after the `(started_at, id)` cursor.
pub async fn list_runs(
    db: impl PgExecutor<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> AppResult<Vec<IngestRun>> {
    let sql = format!(
        "select {RUN_COLUMNS} from ingest_runs
         where source = $1 and ($2::timestamptz is null or (started_at, id) < ($2, $3))
         order by started_at desc, id desc
         limit $4"
    );
    Ok(sqlx::query_as::<_, IngestRun>(sqlx::AssertSqlSafe(sql))
        .bind(SOURCE)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(db)
        .await?)
}

/// When the last successful run finished.
pub async fn last_success(db: impl PgExecutor<'_>) -> AppResult<Option<DateTime<Utc>>> {
    let row: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "select finished_at from ingest_runs where source = $1 and result = 'SUCCEEDED'
         order by finished_at desc limit 1",
    )
    .bind(SOURCE)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.0))
}

/// The lookup tables of a trial's classifying values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lookup {
    Scope,
    Type,
    Institution,
    Phase,
    Department,
}

impl Lookup {
    pub const ALL: [Lookup; 5] = [Lookup::Scope, Lookup::Type, Lookup::Institution, Lookup::Phase, Lookup::Department];

    fn table(self) -> &'static str {
        match self {
            Lookup::Scope => "trial_scopes",
            Lookup::Type => "trial_types",
            Lookup::Institution => "trial_institutions",
            Lookup::Phase => "trial_phases",
            Lookup::Department => "trial_departments",
        }
    }

    pub fn of(self, t: &TrialData) -> Option<&str> {
        match self {
            Lookup::Scope => t.scope.as_deref(),
            Lookup::Type => t.trial_type.as_deref(),
            Lookup::Institution => t.institution.as_deref(),
            Lookup::Phase => t.phase.as_deref(),
            Lookup::Department => t.department.as_deref(),
        }
    }
}

/// Ids of `names` in the lookup table, inserting the missing ones.
pub async fn ensure_lookup(
    conn: &mut PgConnection,
    lookup: Lookup,
    names: &[String],
) -> AppResult<HashMap<String, i64>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let table = lookup.table();
    // Only the missing names, so the identity sequence is not spent on every run.
    let insert = format!(
        "insert into {table} (name)
         select n from unnest($1::text[]) as n where not exists (select 1 from {table} where name = n)
         on conflict (name) do nothing"
    );
    sqlx::query(sqlx::AssertSqlSafe(insert)).bind(names).execute(&mut *conn).await?;
    let select = format!("select name, id from {table} where name = any($1)");
    let rows: Vec<(String, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(select)).bind(names).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

/// A trial's columns with its lookup values resolved to ids.
pub struct TrialRow<'a> {
    pub data: &'a TrialData,
    pub ids: [Option<i64>; 5],
}

/// Column arrays for `unnest`, in `trials` column order.
#[derive(Default)]
struct Columns {
    trial_id: Vec<String>,
    title: Vec<String>,
    period: Vec<Option<String>>,
    ids: [Vec<Option<i64>>; 5],
    target_enrollment: Vec<Option<i32>>,
}

impl Columns {
    fn of(rows: &[TrialRow<'_>]) -> Self {
        let mut c = Columns::default();
        for r in rows {
            c.trial_id.push(r.data.trial_id.clone());
            c.title.push(r.data.title.clone());
            c.period.push(r.data.period.clone());
            for (col, id) in c.ids.iter_mut().zip(r.ids) {
                col.push(id);
            }
            c.target_enrollment.push(r.data.target_enrollment);
        }
        c
    }
}

pub async fn insert_trials(conn: &mut PgConnection, rows: &[TrialRow<'_>]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let c = Columns::of(rows);
    let [scope, ty, institution, phase, department] = c.ids;
    sqlx::query(
        "insert into trials (trial_id, title, period, scope_id, type_id, institution_id, phase_id,
                             department_id, target_enrollment)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[],
                              $7::int8[], $8::int8[], $9::int4[])",
    )
    .bind(c.trial_id)
    .bind(c.title)
    .bind(c.period)
    .bind(scope)
    .bind(ty)
    .bind(institution)
    .bind(phase)
    .bind(department)
    .bind(c.target_enrollment)
    .execute(conn)
    .await?;
    Ok(())
}

/// Overwrites changed trials and bumps their `updated_at` (only rows passed here change).
pub async fn update_trials(conn: &mut PgConnection, rows: &[TrialRow<'_>]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let c = Columns::of(rows);
    let [scope, ty, institution, phase, department] = c.ids;
    sqlx::query(
        "update trials t
         set title = u.title, period = u.period, scope_id = u.scope_id, type_id = u.type_id,
             institution_id = u.institution_id, phase_id = u.phase_id, department_id = u.department_id,
             target_enrollment = u.target_enrollment, updated_at = now()
         from unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
                     $8::int8[], $9::int4[])
              as u(trial_id, title, period, scope_id, type_id, institution_id, phase_id, department_id,
                   target_enrollment)
         where t.trial_id = u.trial_id",
    )
    .bind(c.trial_id)
    .bind(c.title)
    .bind(c.period)
    .bind(scope)
    .bind(ty)
    .bind(institution)
    .bind(phase)
    .bind(department)
    .bind(c.target_enrollment)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn insert_revisions(
    conn: &mut PgConnection,
    run_id: Uuid,
    revisions: &[(&str, Vec<FieldChange>)],
) -> AppResult<()> {
    #[derive(Serialize)]
    struct Rev<'a> {
        trial_id: &'a str,
        changes: &'a [FieldChange],
    }
    if revisions.is_empty() {
        return Ok(());
    }
    let revs: Vec<Rev<'_>> = revisions.iter().map(|(id, ch)| Rev { trial_id: id, changes: ch }).collect();
    sqlx::query(
        "insert into trial_revisions (trial_id, run_id, changes)
         select r.value ->> 'trial_id', $1, r.value -> 'changes'
         from jsonb_array_elements($2::jsonb) with ordinality as r(value, n)
         order by r.n",
    )
    .bind(run_id)
    .bind(Json(revs))
    .execute(conn)
    .await?;
    Ok(())
}

const TRIAL_SELECT: &str = "select t.trial_id, t.title, t.period, s.name as scope, ty.name as trial_type,
       i.name as institution, p.name as phase, t.target_enrollment, d.name as department,
       t.created_at, t.updated_at
from trials t
left join trial_scopes s on s.id = t.scope_id
left join trial_types ty on ty.id = t.type_id
left join trial_institutions i on i.id = t.institution_id
left join trial_phases p on p.id = t.phase_id
left join trial_departments d on d.id = t.department_id";

/// The stored values of the given trials, row-locked for the rest of the transaction.
pub async fn lock_trials(conn: &mut PgConnection, ids: &[String]) -> AppResult<Vec<TrialData>> {
    let sql = format!("{TRIAL_SELECT} where t.trial_id = any($1) for update of t");
    Ok(sqlx::query_as::<_, TrialData>(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(conn).await?)
}

pub async fn get_trial(db: impl PgExecutor<'_>, trial_id: &str) -> AppResult<Option<Trial>> {
    let sql = format!("{TRIAL_SELECT} where t.trial_id = $1");
    Ok(sqlx::query_as::<_, Trial>(sqlx::AssertSqlSafe(sql)).bind(trial_id).fetch_optional(db).await?)
}

pub async fn trial_exists(db: impl PgExecutor<'_>, trial_id: &str) -> AppResult<bool> {
    let (exists,): (bool,) =
        sqlx::query_as("select exists (select 1 from trials where trial_id = $1)").bind(trial_id).fetch_one(db).await?;
    Ok(exists)
}

/// The filter conditions of ListTrials over [`TRIAL_SELECT`]'s aliases, parameters $1–$7.
const TRIAL_FILTER: &str = "($1::int4 is null or t.updated_at >= now() - make_interval(days => $1))
  and ($2::text is null or t.title ilike '%' || $2 || '%')
  and ($3::text is null or s.name ilike '%' || $3 || '%')
  and ($4::text is null or ty.name ilike '%' || $4 || '%')
  and ($5::text is null or i.name ilike '%' || $5 || '%')
  and ($6::text is null or p.name ilike '%' || $6 || '%')
  and ($7::text is null or d.name ilike '%' || $7 || '%')";

/// LIKE patterns of the text filters, wildcards escaped, in parameter order $2–$7.
fn patterns(f: &TrialFilter) -> [Option<String>; 6] {
    [&f.title, &f.scope, &f.trial_type, &f.institution, &f.phase, &f.department].map(|v| v.as_deref().map(escape_like))
}

/// Trials matching `filter`, most recently updated first then by id; after the keyset cursor
/// `(updated_at, trial_id)` and/or skipping `offset` rows.
pub async fn list_trials(
    db: impl PgExecutor<'_>,
    filter: &TrialFilter,
    after: Option<&(DateTime<Utc>, String)>,
    offset: i64,
    limit: i64,
) -> AppResult<Vec<Trial>> {
    let sql = format!(
        "{TRIAL_SELECT}
         where {TRIAL_FILTER}
           and ($8::timestamptz is null or t.updated_at < $8 or (t.updated_at = $8 and t.trial_id > $9))
         order by t.updated_at desc, t.trial_id
         limit $10 offset $11"
    );
    let [title, scope, ty, institution, phase, department] = patterns(filter);
    Ok(sqlx::query_as::<_, Trial>(sqlx::AssertSqlSafe(sql))
        .bind(filter.updated_within_days)
        .bind(title)
        .bind(scope)
        .bind(ty)
        .bind(institution)
        .bind(phase)
        .bind(department)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1.clone()))
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?)
}

/// How many trials match `filter`.
pub async fn count_trials(db: impl PgExecutor<'_>, filter: &TrialFilter) -> AppResult<i64> {
    let sql = format!(
        "select count(*) from ({TRIAL_SELECT}
         where {TRIAL_FILTER}) matching"
    );
    let [title, scope, ty, institution, phase, department] = patterns(filter);
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.updated_within_days)
        .bind(title)
        .bind(scope)
        .bind(ty)
        .bind(institution)
        .bind(phase)
        .bind(department)
        .fetch_one(db)
        .await?;
    Ok(n)
}

/// Revisions of a trial, newest first, after the id cursor.
pub async fn list_revisions(
    db: impl PgExecutor<'_>,
    trial_id: &str,
    after: Option<i64>,
    limit: i64,
) -> AppResult<Vec<Revision>> {
    Ok(sqlx::query_as::<_, Revision>(
        "select id, trial_id, run_id, changes, created_at from trial_revisions
         where trial_id = $1 and ($2::int8 is null or id < $2)
         order by id desc
         limit $3",
    )
    .bind(trial_id)
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;

    fn trial(id: &str, title: &str, scope: &str, phase: Option<&str>) -> TrialData {
        TrialData {
            trial_id: id.into(),
            title: title.into(),
            period: None,
            scope: Some(scope.into()),
            trial_type: None,
            institution: Some("서울대학교병원".into()),
            phase: phase.map(Into::into),
            target_enrollment: Some(10),
            department: None,
        }
    }

    /// `ensure_lookup` writes to the table of its lookup: every one of them.
    #[sqlx::test]
    async fn lookups_per_table(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        for lookup in Lookup::ALL {
            let first = ensure_lookup(&mut conn, lookup, &["a".into(), "b".into()]).await.unwrap();
            assert_eq!(first.len(), 2);
            let again = ensure_lookup(&mut conn, lookup, &["b".into(), "c".into()]).await.unwrap();
            assert_eq!(again["b"], first["b"], "{lookup:?}: an existing name keeps its id");
            let table = lookup.table();
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(n, 3, "{table}");
        }
        assert!(ensure_lookup(&mut conn, Lookup::Scope, &[]).await.unwrap().is_empty());
    }

    /// The filters of `list_trials` and `count_trials`, wildcards matched literally.
    #[sqlx::test]
    async fn list_and_count_by_filter(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        let data = [
            trial("T-1", "당뇨 100% 연구", "국내", Some("1상")),
            trial("T-2", "고혈압 연구", "국내", Some("2상")),
            trial("T-3", "당뇨 예방", "다국가", None),
        ];
        let mut rows = Vec::new();
        for d in &data {
            let mut ids = [None; 5];
            for (i, lookup) in Lookup::ALL.into_iter().enumerate() {
                if let Some(name) = lookup.of(d) {
                    ids[i] = ensure_lookup(&mut conn, lookup, &[name.to_owned()]).await.unwrap().get(name).copied();
                }
            }
            rows.push(TrialRow { data: d, ids });
        }
        insert_trials(&mut conn, &rows).await.unwrap();
        let ids = |v: Vec<Trial>| v.into_iter().map(|t| t.data.trial_id).collect::<Vec<_>>();
        for (filter, expected) in [
            (TrialFilter::default(), vec!["T-1", "T-2", "T-3"]),
            (TrialFilter { title: Some("당뇨".into()), ..Default::default() }, vec!["T-1", "T-3"]),
            (TrialFilter { title: Some("0%".into()), ..Default::default() }, vec!["T-1"]),
            (TrialFilter { scope: Some("국내".into()), phase: Some("2".into()), ..Default::default() }, vec!["T-2"]),
            (TrialFilter { institution: Some("서울대".into()), ..Default::default() }, vec!["T-1", "T-2", "T-3"]),
            (TrialFilter { updated_within_days: Some(1), department: Some("x".into()), ..Default::default() }, vec![]),
        ] {
            let mut got = ids(list_trials(&pool, &filter, None, 0, 10).await.unwrap());
            got.sort();
            assert_eq!(got, expected, "{filter:?}");
            assert_eq!(count_trials(&pool, &filter).await.unwrap(), expected.len() as i64, "{filter:?}");
        }
        let all = list_trials(&pool, &TrialFilter::default(), None, 0, 10).await.unwrap();
        let after = (all[0].updated_at, all[0].data.trial_id.clone());
        assert_eq!(list_trials(&pool, &TrialFilter::default(), Some(&after), 0, 10).await.unwrap().len(), 2);
        assert_eq!(list_trials(&pool, &TrialFilter::default(), None, 2, 10).await.unwrap().len(), 1);
        assert_eq!(get_trial(&pool, "T-2").await.unwrap().unwrap().data.phase.as_deref(), Some("2상"));
    }
}
