//! TrialService end to end, with a local HTTP server in place of the odcloud gateway that
//! serves the real fixture in the gateway's envelope, with real paging and injected faults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use maru::config::Settings;
use maru::grpc::pb;
use maru::trials::ingest::{IngestRequest, Source, ingest};
use maru::trials::model::{RunResult, Trigger};
use parking_lot::Mutex;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clinical-trials-3074271.json");
const DATASET_PATH: &str = "/api/3074271/v1/uddi:cfc19dda-6f75-4c57-86a8-bb9c8b103887";
/// Has characters that must be URL-encoded, as real keys do.
const KEY: &str = "test+Service/Key==secret";
const PER_PAGE: u32 = 40;

fn fixture_rows() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(FIXTURE).expect("fixture readable")).expect("fixture is JSON")
}

fn ids_of(trials: &[pb::Trial]) -> Vec<String> {
    trials.iter().map(|t| t.trial_id.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// The fake gateway.

#[derive(Debug, Clone, Copy, PartialEq)]
enum FaultKind {
    Status(u16),
    Malformed,
    Slow(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    page: u32,
    kind: FaultKind,
    /// How many requests of that page fail; `None` = all.
    times: Option<usize>,
}

struct GatewayState {
    rows: Mutex<Vec<Value>>,
    fault: Mutex<Option<Fault>>,
    /// (page, perPage) of every request with the right path.
    requests: Mutex<Vec<(u32, u32)>>,
    /// When set, requests wait for a permit (requests entered are counted first).
    gate: Mutex<Option<Arc<Semaphore>>>,
    entered: Semaphore,
}

struct FakeGateway {
    addr: SocketAddr,
    state: Arc<GatewayState>,
}

impl FakeGateway {
    async fn start(rows: Vec<Value>) -> Self {
        let state = Arc::new(GatewayState {
            rows: Mutex::new(rows),
            fault: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            entered: Semaphore::new(0),
        });
        let router = axum::Router::new().fallback(serve).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        FakeGateway { addr, state }
    }

    fn settings(&self) -> impl FnOnce(&mut Settings) + use<> {
        let base = format!("http://{}/api", self.addr);
        move |s: &mut Settings| {
            s.trials.base_url = base;
            s.trials.service_key = Some(SecretString::from(KEY));
            s.trials.per_page = PER_PAGE;
            s.trials.request_timeout_ms = 300;
            s.trials.retries = 2;
            s.trials.backoff_ms = 10;
            s.trials.max_backoff_ms = 40;
            // Runs are started by the tests only.
            s.trials.enabled = false;
        }
    }

    fn set_rows(&self, rows: Vec<Value>) {
        *self.state.rows.lock() = rows;
    }

    fn fail(&self, page: u32, kind: FaultKind, times: Option<usize>) {
        *self.state.fault.lock() = Some(Fault { page, kind, times });
    }

    /// The pages requested since the last call.
    fn take_requests(&self) -> Vec<(u32, u32)> {
        std::mem::take(&mut *self.state.requests.lock())
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(body)).unwrap()
}

async fn serve(State(s): State<Arc<GatewayState>>, uri: Uri) -> Response {
    if uri.path() != DATASET_PATH {
        return json_response(StatusCode::NOT_FOUND, "{}".into());
    }
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let page: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let per_page: u32 = q.get("perPage").and_then(|p| p.parse().ok()).unwrap_or(10);
    s.requests.lock().push((page, per_page));
    let gate = s.gate.lock().clone();
    if let Some(gate) = gate {
        s.entered.add_permits(1);
        let _permit = gate.acquire().await.unwrap();
    }
    if q.get("serviceKey").map(String::as_str) != Some(KEY) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"code": -4, "msg": "등록되지 않은 인증키 입니다."}).to_string(),
        );
    }
    let fault = {
        let mut f = s.fault.lock();
        match f.as_mut() {
            Some(fault) if fault.page == page => {
                let kind = fault.kind;
                if let Some(n) = fault.times.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        *f = None;
                    }
                }
                Some(kind)
            }
            _ => None,
        }
    };
    match fault {
        Some(FaultKind::Status(code)) => {
            return json_response(StatusCode::from_u16(code).unwrap(), "{\"error\":\"boom\"}".into());
        }
        Some(FaultKind::Malformed) => {
            return json_response(StatusCode::OK, "{\"page\":2,\"data\":[{\"과제번호\"".into());
        }
        Some(FaultKind::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let rows = s.rows.lock().clone();
    let start = ((page.max(1) - 1) * per_page) as usize;
    let data: Vec<Value> = rows.iter().skip(start).take(per_page as usize).cloned().collect();
    let body = json!({
        "page": page,
        "perPage": per_page,
        "totalCount": rows.len(),
        "currentCount": data.len(),
        "matchCount": rows.len(),
        "data": data,
    });
    json_response(StatusCode::OK, body.to_string())
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async fn spawn_with_gateway(pool: PgPool) -> (TestApp, FakeGateway) {
    let gw = FakeGateway::start(fixture_rows()).await;
    let app = TestApp::spawn_with(pool, gw.settings()).await;
    (app, gw)
}

async fn run_ingest(app: &TestApp, admin: &TestUser) -> pb::IngestRun {
    app.trials().run_ingest(admin.req(pb::RunIngestRequest {})).await.expect("RunIngest").into_inner().run.unwrap()
}

fn counts(run: &pb::IngestRun) -> (i32, i32, i32, i32, i32) {
    (run.fetched, run.created, run.updated, run.unchanged, run.failed)
}

/// `updated_at` of every stored trial, by id.
async fn snapshot(pool: &PgPool) -> BTreeMap<String, DateTime<Utc>> {
    sqlx::query_as::<_, (String, DateTime<Utc>)>("select trial_id, updated_at from trials")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.unwrap().0
}

/// Rows written anywhere in the trial tables (trials, lookups, revisions).
async fn written(pool: &PgPool) -> i64 {
    count(
        pool,
        "select (select count(*) from trials) + (select count(*) from trial_revisions)
              + (select count(*) from trial_scopes) + (select count(*) from trial_types)
              + (select count(*) from trial_institutions) + (select count(*) from trial_phases)
              + (select count(*) from trial_departments)",
    )
    .await
}

async fn list(app: &TestApp, r: pb::ListTrialsRequest) -> pb::ListTrialsResponse {
    app.trials().list_trials(r).await.expect("ListTrials").into_inner()
}

async fn list_runs(app: &TestApp, admin: &TestUser) -> Vec<pb::IngestRun> {
    app.trials()
        .list_ingest_runs(admin.req(pb::ListIngestRunsRequest { page_size: 100, page_token: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .runs
}

fn all() -> pb::ListTrialsRequest {
    pb::ListTrialsRequest { updated_within_days: Some(0), ..Default::default() }
}

fn field<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key].as_str().unwrap().trim()
}

// ---------------------------------------------------------------------------------------------
// Ingest.

#[sqlx::test]
async fn first_run_creates_everything_and_second_run_changes_nothing(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;

    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Succeeded as i32, "{run:?}");
    assert_eq!(counts(&run), (145, 145, 0, 0, 0));
    assert_eq!(run.trigger, pb::IngestTrigger::Admin as i32);
    assert_eq!(run.triggered_by, admin.id);
    assert_eq!(run.origin, "GATEWAY");
    // Real paging: 145 rows in pages of 40, and not one request more.
    assert_eq!(gw.take_requests(), [(1, 40), (2, 40), (3, 40), (4, 40)]);
    let before = snapshot(&pool).await;
    assert_eq!(before.len(), 145);

    let run2 = run_ingest(&app, &admin).await;
    assert_eq!(run2.result, pb::IngestResult::Succeeded as i32);
    assert_eq!(counts(&run2), (145, 0, 0, 145, 0));
    assert_eq!(snapshot(&pool).await, before, "an unchanged source must not touch updated_at");
    assert_eq!(count(&pool, "select count(*) from trial_revisions").await, 0);
    assert_eq!(count(&pool, "select count(*) from trial_departments").await, 24);

    let runs = list_runs(&app, &admin).await;
    assert_eq!(runs.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [run2.id, run.id]);
}

#[sqlx::test]
async fn next_day_only_changed_rows_are_updated_with_revisions(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    assert_eq!(counts(&run_ingest(&app, &admin).await), (145, 145, 0, 0, 0));
    // It is now ten days later.
    sqlx::query(
        "update trials set created_at = created_at - interval '10 days', updated_at = updated_at - interval '10 days'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(list(&app, pb::ListTrialsRequest::default()).await.total_size, 0);
    let before = snapshot(&pool).await;

    let mut rows = fixture_rows();
    rows[0]["진료과"] = json!("Neurology");
    rows[1]["연구기간"] = json!("7개월");
    rows[2]["전체목표연구대상자수"] = json!("250");
    let old_title = field(&rows[3], "과제명").to_owned();
    let old_phase = field(&rows[3], "임상시험단계(연구모형)").to_owned();
    rows[3]["과제명"] = json!("새 과제명");
    rows[3]["임상시험단계(연구모형)"] = json!("");
    // Whitespace around a value is not a change.
    let padded = format!("  {}  ", field(&rows[4], "연구책임기관"));
    rows[4]["연구책임기관"] = json!(padded);
    rows.push(json!({
        "과제명": "신규 과제", "과제번호": "C999999", "연구기간": "", "연구범위": "단일기관",
        "연구종류": "중재연구", "연구책임기관": "새병원", "임상시험단계(연구모형)": "Phase 2",
        "전체목표연구대상자수": "", "진료과": "Ophthalmology"
    }));
    gw.set_rows(rows.clone());

    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Succeeded as i32, "{run:?}");
    assert_eq!(counts(&run), (146, 1, 4, 141, 0));

    // Exactly the changed and the new trials are "recently updated".
    let first_ids: Vec<&str> = rows[..5].iter().map(|r| field(r, "과제번호")).collect();
    assert_eq!(first_ids, ["C100001", "C100002", "C100003", "C100004", "C100005"]);
    let recent = list(&app, pb::ListTrialsRequest { limit: 100, ..Default::default() }).await;
    assert_eq!(recent.total_size, 5);
    assert_eq!(ids_of(&recent.trials), ["C100001", "C100002", "C100003", "C100004", "C999999"]);
    let after = snapshot(&pool).await;
    let touched: Vec<&String> = after.iter().filter(|(id, at)| before.get(*id) != Some(at)).map(|(id, _)| id).collect();
    assert_eq!(touched, ["C100001", "C100002", "C100003", "C100004", "C999999"]);

    let revisions = |id: &str| {
        let id = id.to_owned();
        let app = &app;
        async move {
            app.trials()
                .list_trial_revisions(pb::ListTrialRevisionsRequest { trial_id: id, ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .revisions
        }
    };
    let r4 = revisions("C100004").await;
    assert_eq!(r4.len(), 1);
    assert_eq!(r4[0].run_id, run.id);
    assert_eq!(
        r4[0].changes,
        [
            pb::FieldChange {
                field: "title".into(), old_value: Some(old_title), new_value: Some("새 과제명".into())
            },
            pb::FieldChange { field: "phase".into(), old_value: Some(old_phase), new_value: None },
        ]
    );
    let r1 = revisions("C100001").await;
    assert_eq!(r1[0].changes.len(), 1);
    assert_eq!(r1[0].changes[0].field, "department");
    assert_eq!(r1[0].changes[0].new_value.as_deref(), Some("Neurology"));
    let r3 = revisions("C100003").await;
    assert_eq!(
        r3[0].changes,
        [pb::FieldChange { field: "target_enrollment".into(), old_value: None, new_value: Some("250".into()) }]
    );
    assert!(revisions("C100005").await.is_empty());
    assert!(revisions("C999999").await.is_empty(), "creation is not a revision");
    assert_eq!(count(&pool, "select count(*) from trial_revisions").await, 4);

    let new = app.trials().get_trial(pb::GetTrialRequest { trial_id: "C999999".into() }).await.unwrap().into_inner();
    let new = new.trial.unwrap();
    assert_eq!((new.department.as_deref(), new.period, new.target_enrollment), (Some("Ophthalmology"), None, None));
    assert_eq!(count(&pool, "select count(*) from trial_departments").await, 25);
    let dept = app.trials().get_trial(pb::GetTrialRequest { trial_id: "C100001".into() }).await.unwrap().into_inner();
    assert_eq!(dept.trial.unwrap().department.as_deref(), Some("Neurology"));
}

#[sqlx::test]
async fn empty_source_values_are_stored_as_absent(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;
    let rows = fixture_rows();
    let empty = |key: &str| rows.iter().filter(|r| field(r, key).is_empty()).count() as i64;
    assert_eq!(count(&pool, "select count(*) from trials where period is null").await, empty("연구기간"));
    assert_eq!(
        count(&pool, "select count(*) from trials where phase_id is null").await,
        empty("임상시험단계(연구모형)")
    );
    assert_eq!(
        count(&pool, "select count(*) from trials where target_enrollment is null").await,
        empty("전체목표연구대상자수")
    );
    assert!(empty("연구기간") > 0 && empty("임상시험단계(연구모형)") > 0);
    assert_eq!(count(&pool, "select count(*) from trials where period = '' or title = ''").await, 0);
    assert_eq!(count(&pool, "select count(*) from trial_phases where name = ''").await, 0);
    assert_eq!(count(&pool, "select count(*) from trials where title <> btrim(title)").await, 0);

    let t = app.trials().get_trial(pb::GetTrialRequest { trial_id: "C100003".into() }).await.unwrap().into_inner();
    let t = t.trial.unwrap();
    assert_eq!(t.title, "CRCRA Registry");
    assert_eq!(t.period, None, "\"\" in the source is absent, not \"\"");
    assert_eq!(t.target_enrollment, None);
    assert_eq!(t.institution.as_deref(), Some("한양대학교병원"));
    let t = app.trials().get_trial(pb::GetTrialRequest { trial_id: "C100004".into() }).await.unwrap().into_inner();
    assert_eq!(t.trial.unwrap().target_enrollment, Some(700));
}

#[sqlx::test]
async fn gateway_401_fails_the_run_and_leaks_no_key(pool: PgPool) {
    let gw = FakeGateway::start(fixture_rows()).await;
    let settings = gw.settings();
    let app = TestApp::spawn_with(pool.clone(), |s| {
        settings(s);
        s.trials.service_key = Some(SecretString::from("wrong-key-d34db33f"));
    })
    .await;
    let admin = app.admin_user("boss").await;
    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Failed as i32, "{run:?}");
    assert!(run.error.contains("401") && run.error.contains("service_key"), "{}", run.error);
    assert!(!run.error.contains("d34db33f"), "the key leaked: {}", run.error);
    assert_eq!(gw.take_requests(), [(1, 40)], "401 is not retried");
    assert_eq!(written(&pool).await, 0);
    assert_eq!(list_runs(&app, &admin).await[0].result, pb::IngestResult::Failed as i32);
}

#[sqlx::test]
async fn gateway_500_after_retries_fails_the_run_without_partial_writes(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;
    gw.take_requests();
    let before = snapshot(&pool).await;
    let written_before = written(&pool).await;

    // A changed and a new row on pages 1 and 4: both must stay unwritten.
    let mut rows = fixture_rows();
    rows[0]["진료과"] = json!("Neurology");
    rows.push(json!({"과제명": "x", "과제번호": "C999999", "연구기간": "", "연구범위": "", "연구종류": "",
                     "연구책임기관": "", "임상시험단계(연구모형)": "", "전체목표연구대상자수": "", "진료과": "Ophthalmology"}));
    gw.set_rows(rows);
    gw.fail(4, FaultKind::Status(500), None);

    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Failed as i32, "{run:?}");
    assert!(run.error.contains("page 4") && run.error.contains("500"), "{}", run.error);
    assert!(run.error.contains("after 3 attempts"), "{}", run.error);
    assert_eq!(counts(&run), (0, 0, 0, 0, 0));
    // Pages 1–3 once, page 4 once plus two retries.
    assert_eq!(gw.take_requests(), [(1, 40), (2, 40), (3, 40), (4, 40), (4, 40), (4, 40)]);
    assert_eq!(snapshot(&pool).await, before);
    assert_eq!(written(&pool).await, written_before);
    assert_eq!(count(&pool, "select count(*) from trial_departments where name = 'Ophthalmology'").await, 0);
}

#[sqlx::test]
async fn a_transient_failure_is_retried(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    gw.fail(2, FaultKind::Status(503), Some(1));
    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Succeeded as i32, "{run:?}");
    assert_eq!(counts(&run), (145, 145, 0, 0, 0));
    assert_eq!(gw.take_requests(), [(1, 40), (2, 40), (2, 40), (3, 40), (4, 40)]);
}

#[sqlx::test]
async fn malformed_body_fails_the_run(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    gw.fail(2, FaultKind::Malformed, None);
    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Failed as i32, "{run:?}");
    assert!(run.error.contains("page 2") && run.error.contains("malformed JSON"), "{}", run.error);
    assert_eq!(gw.take_requests(), [(1, 40), (2, 40)], "a malformed body is not retried");
    assert_eq!(written(&pool).await, 0);
}

#[sqlx::test]
async fn time_out_fails_the_run(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    gw.fail(3, FaultKind::Slow(Duration::from_secs(3)), None);
    let run = run_ingest(&app, &admin).await;
    assert_eq!(run.result, pb::IngestResult::Failed as i32, "{run:?}");
    assert!(run.error.contains("page 3") && run.error.contains("timed out after 300 ms"), "{}", run.error);
    assert_eq!(gw.take_requests(), [(1, 40), (2, 40), (3, 40), (3, 40), (3, 40)]);
    assert_eq!(written(&pool).await, 0);
}

#[sqlx::test]
async fn concurrent_runs_one_runs_the_others_are_told(pool: PgPool) {
    let (app, gw) = spawn_with_gateway(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    let gate = Arc::new(Semaphore::new(0));
    *gw.state.gate.lock() = Some(gate.clone());

    let mut pending: Vec<_> = (0..6)
        .map(|_| {
            let (mut client, req) = (app.trials(), admin.req(pb::RunIngestRequest {}));
            tokio::spawn(async move { client.run_ingest(req).await })
        })
        .collect();
    // While the gate is closed the winner cannot finish, so the first five calls to return are
    // the losers, refused at the lock.
    for _ in 0..5 {
        let (done, _, rest) =
            tokio::time::timeout(Duration::from_secs(10), futures::future::select_all(pending)).await.unwrap();
        assert_err(done.unwrap(), Code::FailedPrecondition, "INGEST_IN_PROGRESS");
        pending = rest;
    }
    // The winner holds the lock while its first page request waits at the gate.
    let _entered = tokio::time::timeout(Duration::from_secs(10), gw.state.entered.acquire()).await.unwrap().unwrap();
    assert_eq!(gw.state.requests.lock().len(), 1);
    // A CLI run is refused the same way.
    let cli = IngestRequest {
        source: Source::File(FIXTURE.into()),
        trigger: Trigger::Cli,
        triggered_by: None,
        scheduled_for: None,
    };
    let err = ingest(&app.state, cli, &|_| {}).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "INGEST_IN_PROGRESS");

    gate.add_permits(1000);
    let run = pending.pop().unwrap().await.unwrap().unwrap().into_inner().run.unwrap();
    assert_eq!(counts(&run), (145, 145, 0, 0, 0));
    let runs = list_runs(&app, &admin).await;
    assert_eq!(runs.len(), 1, "only the winner is recorded");
    assert_eq!(gw.take_requests().len(), 4);

    // The lock is free again.
    *gw.state.gate.lock() = None;
    assert_eq!(counts(&run_ingest(&app, &admin).await), (145, 0, 0, 145, 0));
}

#[sqlx::test]
async fn file_ingest_and_invalid_rows(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let file = |path: PathBuf| IngestRequest {
        source: Source::File(path),
        trigger: Trigger::Cli,
        triggered_by: None,
        scheduled_for: None,
    };
    let run = ingest(&app.state, file(FIXTURE.into()), &|_| {}).await.unwrap();
    assert_eq!(run.result, RunResult::Succeeded);
    assert_eq!((run.fetched, run.created, run.updated, run.unchanged, run.failed), (145, 145, 0, 0, 0));

    // The envelope form, with invalid rows: they are skipped and reported; the rest is written.
    let rows = fixture_rows();
    let mut changed = rows[0].clone();
    changed["진료과"] = json!("Neurology");
    let mut no_id = rows[1].clone();
    no_id["과제번호"] = json!("");
    let mut bad_number = rows[2].clone();
    bad_number["전체목표연구대상자수"] = json!("많음");
    let repeated = rows[0].clone();
    let dir = std::env::temp_dir().join(format!("maru-trials-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rows.json");
    let doc =
        json!({"page": 1, "perPage": 4, "totalCount": 5, "data": [changed, no_id, bad_number, repeated, rows[3]]});
    std::fs::write(&path, doc.to_string()).unwrap();
    let run = ingest(&app.state, file(path.clone()), &|_| {}).await.unwrap();
    assert_eq!(run.result, RunResult::Succeeded, "{run:?}");
    assert_eq!((run.fetched, run.created, run.updated, run.unchanged, run.failed), (5, 0, 1, 1, 3));
    let errs: Vec<(i32, Option<&str>)> = run.row_errors.iter().map(|e| (e.row, e.trial_id.as_deref())).collect();
    assert_eq!(errs, [(2, None), (3, Some("C100003")), (4, Some("C100001"))]);
    assert!(run.row_errors[1].reason.contains("not a whole number"), "{:?}", run.row_errors);
    assert_eq!(count(&pool, "select count(*) from trials").await, 145, "rows absent from a run are kept");

    // Nothing usable, or no file at all: the run fails.
    std::fs::write(&path, json!([{"foo": "bar"}]).to_string()).unwrap();
    let run = ingest(&app.state, file(path.clone()), &|_| {}).await.unwrap();
    assert_eq!(run.result, RunResult::Failed);
    assert!(run.error.as_deref().unwrap().contains("none of the 1 fetched rows"), "{:?}", run.error);
    let run = ingest(&app.state, file(dir.join("missing.json")), &|_| {}).await.unwrap();
    assert_eq!(run.result, RunResult::Failed);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(count(&pool, "select count(*) from trial_revisions").await, 1);
}

#[sqlx::test]
async fn a_schedule_slot_runs_once_and_abandoned_runs_are_closed(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool.clone()).await;
    // A run a crashed process left RUNNING.
    sqlx::query(
        "insert into ingest_runs (id, source, origin, trigger) values ($1, 'clinical_trials', 'GATEWAY', 'CLI')",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&pool)
    .await
    .unwrap();
    let slot: DateTime<Utc> = "2026-11-22T15:00:00Z".parse().unwrap();
    let req = || IngestRequest {
        source: Source::Gateway,
        trigger: Trigger::Schedule,
        triggered_by: None,
        scheduled_for: Some(slot),
    };
    let run = ingest(&app.state, req(), &|_| {}).await.unwrap();
    assert_eq!((run.result, run.created, run.scheduled_for), (RunResult::Succeeded, 145, Some(slot)));
    let err = ingest(&app.state, req(), &|_| {}).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "INGEST_IN_PROGRESS");
    assert_eq!(count(&pool, "select count(*) from ingest_runs where scheduled_for is not null").await, 1);
    assert_eq!(
        count(&pool, "select count(*) from ingest_runs where result = 'FAILED' and error like 'interrupted%'").await,
        1
    );
    assert_eq!(count(&pool, "select count(*) from ingest_runs where result = 'RUNNING'").await, 0);
}

#[sqlx::test]
async fn the_scheduler_runs_on_its_cron(pool: PgPool) {
    let gw = FakeGateway::start(fixture_rows()).await;
    let settings = gw.settings();
    let app = TestApp::spawn_with(pool.clone(), |s| {
        settings(s);
        s.trials.enabled = true;
        // Every second (six fields: seconds first), in Seoul time.
        s.trials.schedule = "* * * * * *".into();
    })
    .await;
    let mut done = 0;
    for _ in 0..100 {
        done =
            count(&pool, "select count(*) from ingest_runs where trigger = 'SCHEDULE' and result = 'SUCCEEDED'").await;
        if done > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done > 0, "no scheduled run within 10 s");
    app.shutdown.shutdown();
    assert_eq!(count(&pool, "select count(*) from trials").await, 145);
    assert_eq!(
        count(&pool, "select count(*) from ingest_runs where trigger = 'SCHEDULE' and scheduled_for is null").await,
        0
    );
}

#[sqlx::test]
async fn run_ingest_without_a_key_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app.admin_user("boss").await;
    let r = app.trials().run_ingest(admin.req(pb::RunIngestRequest {})).await;
    assert_err(r, Code::FailedPrecondition, "INGEST_NOT_CONFIGURED");
    assert_eq!(count(&pool, "select count(*) from ingest_runs").await, 0);
}

#[sqlx::test]
async fn ingest_metrics_are_exported(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;
    let m = app.metrics().await;
    for needle in [
        "maru_ingest_runs_total{source=\"clinical_trials\",result=\"succeeded\"}",
        "maru_ingest_rows_total{source=\"clinical_trials\",outcome=\"created\"}",
        "maru_ingest_last_success_timestamp_seconds{source=\"clinical_trials\"}",
        "maru_ingest_run_duration_seconds_bucket{source=\"clinical_trials\",le=\"1800\"}",
    ] {
        assert!(m.contains(needle), "missing {needle}");
    }
}

// ---------------------------------------------------------------------------------------------
// Reads.

#[sqlx::test]
async fn every_filter_alone_and_combined(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;
    let rows = fixture_rows();

    type Case = (pb::ListTrialsRequest, Vec<(&'static str, &'static str)>);
    let req = |f: &dyn Fn(&mut pb::ListTrialsRequest)| {
        let mut r = pb::ListTrialsRequest { updated_within_days: Some(0), limit: 100, ..Default::default() };
        f(&mut r);
        r
    };
    let cases: Vec<Case> = vec![
        (req(&|r| r.title = "registry".into()), vec![("과제명", "registry")]),
        (req(&|r| r.title = "%".into()), vec![("과제명", "%")]),
        (req(&|r| r.title = "_".into()), vec![("과제명", "_")]),
        (req(&|r| r.scope = "다기관".into()), vec![("연구범위", "다기관")]),
        (req(&|r| r.r#type = "관찰".into()), vec![("연구종류", "관찰")]),
        (req(&|r| r.institution = "세브란스".into()), vec![("연구책임기관", "세브란스")]),
        (req(&|r| r.phase = "PHASE".into()), vec![("임상시험단계(연구모형)", "phase")]),
        (req(&|r| r.department = "surgery".into()), vec![("진료과", "surgery")]),
        (req(&|r| r.department = "Cardiology".into()), vec![("진료과", "cardiology")]),
        (
            req(&|r| {
                r.department = "cardio".into();
                r.scope = "국내".into();
                r.r#type = "관찰연구".into();
            }),
            vec![("진료과", "cardio"), ("연구범위", "국내"), ("연구종류", "관찰연구")],
        ),
        (
            req(&|r| {
                r.institution = "서울".into();
                r.phase = "코호트".into();
                r.title = "환자".into();
            }),
            vec![("연구책임기관", "서울"), ("임상시험단계(연구모형)", "코호트"), ("과제명", "환자")],
        ),
        (
            req(&|r| {
                r.department = "Cardiology".into();
                r.institution = "한의학".into();
            }),
            vec![("진료과", "cardiology"), ("연구책임기관", "한의학")],
        ),
    ];
    for (request, preds) in cases {
        let mut expected: Vec<String> = rows
            .iter()
            .filter(|r| {
                preds.iter().all(|(k, q)| {
                    let v = field(r, k).to_lowercase();
                    !v.is_empty() && v.contains(&q.to_lowercase())
                })
            })
            .map(|r| field(r, "과제번호").to_owned())
            .collect();
        expected.sort();
        let got = list(&app, request.clone()).await;
        assert_eq!(got.total_size as usize, expected.len(), "{request:?}");
        expected.truncate(100);
        assert_eq!(ids_of(&got.trials), expected, "{request:?}");
    }
    // The cases above are not vacuous.
    let count_of = |r: pb::ListTrialsRequest| {
        let app = &app;
        async move { list(app, r).await.total_size }
    };
    assert_eq!(count_of(req(&|r| r.department = "surgery".into())).await, 7);
    assert_eq!(count_of(req(&|r| r.title = "_".into())).await, 1);
    assert_eq!(count_of(req(&|r| r.title = "%".into())).await, 0);
    assert_eq!(count_of(req(&|r| r.scope = "다기관".into())).await, 114);
}

#[sqlx::test]
async fn offset_and_limit_edges(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;

    // Defaults: updated within 7 days, limit 5, by last update then id.
    let first = list(&app, pb::ListTrialsRequest::default()).await;
    assert_eq!(first.total_size, 145);
    assert_eq!(ids_of(&first.trials), ["C100001", "C100002", "C100003", "C100004", "C100005"]);
    assert!(first.next_page_token.is_empty());

    let page = |offset: i32, limit: i32| pb::ListTrialsRequest { offset, limit, ..all() };
    let r = list(&app, page(1, 1)).await;
    assert_eq!(ids_of(&r.trials), ["C100002"]);
    let r = list(&app, page(140, 10)).await;
    assert_eq!((r.trials.len(), r.total_size), (5, 145));
    assert_eq!(r.trials.last().unwrap().trial_id, "C160048");
    let r = list(&app, page(145, 10)).await;
    assert_eq!((r.trials.len(), r.total_size), (0, 145));
    let r = list(&app, page(100_000, 100)).await;
    assert_eq!((r.trials.len(), r.total_size), (0, 145));
    assert_eq!(list(&app, page(0, 100)).await.trials.len(), 100);
    assert_eq!(list(&app, page(0, 0)).await.trials.len(), 5);

    // Older than the window: nothing by default, everything with 0 or a wide window.
    let pool = &app.state.db;
    sqlx::query("update trials set updated_at = updated_at - interval '8 days'").execute(pool).await.unwrap();
    assert_eq!(list(&app, pb::ListTrialsRequest::default()).await.total_size, 0);
    let wide = pb::ListTrialsRequest { updated_within_days: Some(9), ..Default::default() };
    assert_eq!(list(&app, wide).await.total_size, 145);
    assert_eq!(list(&app, all()).await.total_size, 145);
}

#[sqlx::test]
async fn page_tokens_walk_every_trial_once(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut sizes = Vec::new();
    loop {
        let r = list(&app, pb::ListTrialsRequest { page_size: 50, page_token: token.clone(), ..all() }).await;
        assert_eq!(r.total_size, 145);
        sizes.push(r.trials.len());
        seen.extend(ids_of(&r.trials));
        if r.next_page_token.is_empty() {
            break;
        }
        if token.is_empty() {
            // A token is bound to its filters.
            let other = pb::ListTrialsRequest {
                page_size: 50,
                page_token: r.next_page_token.clone(),
                department: "cardio".into(),
                ..all()
            };
            assert_err(app.trials().list_trials(other).await, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
            let mixed = pb::ListTrialsRequest { page_token: r.next_page_token.clone(), offset: 5, ..all() };
            let s = assert_err(app.trials().list_trials(mixed).await, Code::InvalidArgument, "INVALID_ARGUMENT");
            assert_eq!(violations(&s), ["offset"]);
        }
        token = r.next_page_token;
    }
    assert_eq!(sizes, [50, 50, 45]);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted), (145, seen.clone()));
}

#[sqlx::test]
async fn invalid_requests_name_their_fields(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let bad = |r: pb::ListTrialsRequest| {
        let mut client = app.trials();
        async move { client.list_trials(r).await }
    };
    let s = assert_err(
        bad(pb::ListTrialsRequest { updated_within_days: Some(-1), offset: -1, limit: -1, ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["updated_within_days", "offset", "limit"]);
    let s = assert_err(
        bad(pb::ListTrialsRequest { limit: 101, ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["limit"]);
    let s = assert_err(
        bad(pb::ListTrialsRequest { page_size: -1, title: "t".repeat(101), ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["title", "page_size"]);
    let s = assert_err(
        bad(pb::ListTrialsRequest { page_size: 10, limit: 10, ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["limit"]);
    let s = assert_err(
        bad(pb::ListTrialsRequest { updated_within_days: Some(36_501), ..Default::default() }).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(violations(&s), ["updated_within_days"]);
    let s = assert_err(
        bad(pb::ListTrialsRequest { page_token: "garbage".into(), ..Default::default() }).await,
        Code::InvalidArgument,
        "PAGE_TOKEN_INVALID",
    );
    assert_eq!(violations(&s), ["page_token"]);

    for id in ["", "  ", "C 1", "C1%", &"C".repeat(33)] {
        let s = assert_err(
            app.trials().get_trial(pb::GetTrialRequest { trial_id: id.into() }).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(violations(&s), ["trial_id"]);
        let r = pb::ListTrialRevisionsRequest { trial_id: id.into(), ..Default::default() };
        let s = assert_err(app.trials().list_trial_revisions(r).await, Code::InvalidArgument, "INVALID_ARGUMENT");
        assert_eq!(violations(&s), ["trial_id"]);
    }
    assert_err(
        app.trials().get_trial(pb::GetTrialRequest { trial_id: "C000000".into() }).await,
        Code::NotFound,
        "TRIAL_NOT_FOUND",
    );
    let r = pb::ListTrialRevisionsRequest { trial_id: "C000000".into(), ..Default::default() };
    assert_err(app.trials().list_trial_revisions(r).await, Code::NotFound, "TRIAL_NOT_FOUND");
    let admin = app.admin_user("boss").await;
    let r = pb::ListIngestRunsRequest { page_size: -1, page_token: String::new() };
    let s = assert_err(app.trials().list_ingest_runs(admin.req(r)).await, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(violations(&s), ["page_size"]);
}

#[sqlx::test]
async fn authorization_of_every_rpc(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let user = app.user("minsu").await;
    let admin = app.admin_user("boss").await;
    run_ingest(&app, &admin).await;
    let mut t = app.trials();

    // Reads are public: anonymous, user and admin alike.
    let get = || pb::GetTrialRequest { trial_id: "C100001".into() };
    let revs = || pb::ListTrialRevisionsRequest { trial_id: "C100001".into(), ..Default::default() };
    assert_eq!(t.list_trials(pb::ListTrialsRequest::default()).await.unwrap().into_inner().total_size, 145);
    t.get_trial(get()).await.unwrap();
    t.list_trial_revisions(revs()).await.unwrap();
    for caller in [&user, &admin] {
        t.list_trials(caller.req(pb::ListTrialsRequest::default())).await.unwrap();
        t.get_trial(caller.req(get())).await.unwrap();
        t.list_trial_revisions(caller.req(revs())).await.unwrap();
    }
    // A presented token must be valid, even on public reads.
    assert_err(
        t.list_trials(bearer("not-a-token", pb::ListTrialsRequest::default())).await,
        Code::Unauthenticated,
        "TOKEN_INVALID",
    );
    assert_err(t.get_trial(bearer("not-a-token", get())).await, Code::Unauthenticated, "TOKEN_INVALID");

    // Runs are for admins.
    let runs = || pb::ListIngestRunsRequest::default();
    assert_err(t.run_ingest(pb::RunIngestRequest {}).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(t.list_ingest_runs(runs()).await, Code::Unauthenticated, "TOKEN_MISSING");
    assert_err(t.run_ingest(user.req(pb::RunIngestRequest {})).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    assert_err(t.list_ingest_runs(user.req(runs())).await, Code::PermissionDenied, "ADMIN_REQUIRED");
    let listed = t.list_ingest_runs(admin.req(runs())).await.unwrap().into_inner().runs;
    assert_eq!(listed.len(), 1, "refused calls start no run");
}

#[sqlx::test]
async fn ingest_runs_are_paged(pool: PgPool) {
    let (app, _gw) = spawn_with_gateway(pool).await;
    let admin = app.admin_user("boss").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(run_ingest(&app, &admin).await.id);
    }
    ids.reverse();
    let mut t = app.trials();
    let first =
        t.list_ingest_runs(admin.req(pb::ListIngestRunsRequest { page_size: 2, page_token: String::new() })).await;
    let first = first.unwrap().into_inner();
    let second = t
        .list_ingest_runs(
            admin.req(pb::ListIngestRunsRequest { page_size: 2, page_token: first.next_page_token.clone() }),
        )
        .await
        .unwrap()
        .into_inner();
    let got: Vec<String> = first.runs.iter().chain(&second.runs).map(|r| r.id.clone()).collect();
    assert_eq!(got, ids);
    assert!(second.next_page_token.is_empty());
    assert_eq!(first.runs[2 - 1].result, pb::IngestResult::Succeeded as i32);
}

/// ListTrials (anonymous; joins with substring filters and an exact count) is an expensive
/// read: when the bulkhead is full it is refused with RetryInfo instead of queueing on the
/// pool that cheap calls of other users need, and it is answered again once a slot frees.
#[sqlx::test]
async fn list_trials_is_behind_the_expensive_read_bulkhead(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.database.max_expensive_reads = 1).await;
    let held = maru::db::ExpensiveRead::begin(&app.state.db, &app.state.expensive_reads, maru::db::ReadKind::TrialList)
        .await
        .unwrap();
    let refused = app.trials().list_trials(all()).await;
    let status = assert_err(refused.map(|_| ()), Code::ResourceExhausted, "CAPACITY_EXCEEDED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");
    held.finish(Ok(())).await.unwrap();
    assert_eq!(list(&app, all()).await.total_size, 0);
}
