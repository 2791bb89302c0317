//! The public apartment registry (DOMAIN §1): complexes imported into `communities` as
//! APARTMENT, keyed by their registry code (kaptCode).
//!
//! Rows come from a JSON file (an array of rows, or the API's envelope) or from the
//! AptListService API (`response.body.items`, paged by `pageNo` / `numOfRows` until
//! `totalCount`), each request bounded by `registry.request_timeout_ms` and retried with backoff
//! after time-outs, connection errors, 429 and 5xx. Rows are upserted in batches of
//! [`BATCH_ROWS`] (one `INSERT … SELECT FROM UNNEST … ON CONFLICT DO UPDATE … WHERE changed`
//! each), so a second import of the same data writes nothing and reports every row unchanged.
//! The service key is a secret: it never reaches a log line or an error text.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::config::RegistrySettings;
use super::model::MAX_NAME_CHARS;
use super::store::{self, ApartmentRow, UpsertCounts};
use crate::opendata::{KeyedClient, MAX_BODY_BYTES, Page, Retry, fetch_all_pages};
use crate::state::AppState;

/// Rows per upsert statement.
pub const BATCH_ROWS: usize = 1000;

/// Where rows come from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// A JSON document compiled into the binary (the registry `maru seed demo` imports), named
    /// for error messages.
    Bundled {
        name: &'static str,
        json: &'static [u8],
    },
    Api,
}

/// What an import is doing, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Fetched { rows: usize, total: usize },
    Written { rows: usize, total: usize },
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub fetched: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Rows skipped: no usable code or name, or a code repeated in the input.
    pub failed: u64,
    /// The first few skipped rows: (1-based position, reason).
    pub problems: Vec<(usize, String)>,
    /// False when rows changed but Redis could not be told: servers using that Redis may show
    /// cached home screens with the old values until their entries expire (5 minutes). True
    /// when nothing changed.
    pub home_cache_current: bool,
}

/// Why the rows could not be had. Safe to print (no service key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Imports the registry from `source`.
pub async fn import(
    state: &AppState,
    source: Source,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> anyhow::Result<Summary> {
    let raw = match &source {
        Source::File(path) => read_file(path)?,
        Source::Bundled { name, json } => parse_json(json).map_err(|e| SourceError(format!("{name}: {e}")))?,
        Source::Api => {
            let api = Api::new(&state.settings.registry)?
                .ok_or_else(|| SourceError("registry.service_key is not set (MARU__REGISTRY__SERVICE_KEY)".into()))?;
            api.fetch_all(progress).await?
        }
    };
    progress(Progress::Fetched { rows: raw.len(), total: raw.len() });
    let (rows, problems) = normalise(&raw);
    let mut summary = Summary {
        fetched: raw.len() as u64,
        failed: problems.len() as u64,
        problems: problems.into_iter().take(20).collect(),
        home_cache_current: true,
        ..Default::default()
    };
    for (row, reason) in &summary.problems {
        tracing::warn!(row, reason = %reason, "registry row skipped");
    }
    let mut written = 0;
    for batch in rows.chunks(BATCH_ROWS) {
        let UpsertCounts { created, updated, unchanged } = store::upsert_apartments(&state.db, batch).await?;
        summary.created += created;
        summary.updated += updated;
        summary.unchanged += unchanged;
        written += batch.len();
        progress(Progress::Written { rows: written, total: rows.len() });
    }
    // Renamed or moved complexes show in their members' home screens (and new ones in the
    // anonymous sample): every entry moves before the import returns.
    if summary.created > 0 || summary.updated > 0 {
        super::cache::communities_changed(&state.cache).await;
        summary.home_cache_current = state.cache.is_up();
    }
    tracing::info!(
        fetched = summary.fetched,
        created = summary.created,
        updated = summary.updated,
        unchanged = summary.unchanged,
        failed = summary.failed,
        "apartment registry imported"
    );
    Ok(summary)
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Registry rows ready to store, and the skipped ones with their reasons. A code repeated in
/// the input keeps its first row.
pub fn normalise(raw: &[Map<String, Value>]) -> (Vec<ApartmentRow>, Vec<(usize, String)>) {
    let mut rows = Vec::with_capacity(raw.len());
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let pos = i + 1;
        let code = text(r, "kaptCode");
        let name = text(r, "kaptName");
        if super::model::parse_external_code(&code).is_err() {
            problems.push((pos, "kaptCode is missing or malformed".to_owned()));
            continue;
        }
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            problems.push((pos, format!("kaptName of {code} is empty, too long or has control characters")));
            continue;
        }
        if !seen.insert(code.clone()) {
            problems.push((pos, format!("repeats kaptCode {code}")));
            continue;
        }
        let address =
            ["as1", "as2", "as3", "as4"].iter().map(|k| text(r, k)).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        let registry: Map<String, Value> = ["kaptCode", "kaptName", "as1", "as2", "as3", "as4", "bjdCode"]
            .iter()
            .map(|k| (k.to_string(), Value::String(text(r, k))))
            .collect();
        rows.push(ApartmentRow { code, name, address: address.join(" "), registry: Value::Object(registry) });
    }
    (rows, problems)
}

/// Rows from a JSON file: an array of rows, `{"items": […]}`, or the API envelope.
pub fn read_file(path: &Path) -> Result<Vec<Map<String, Value>>, SourceError> {
    let fail = |what: String| SourceError(format!("{}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_BODY_BYTES as u64 {
        return Err(fail(format!("larger than {MAX_BODY_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    parse_json(&bytes).map_err(fail)
}

/// Rows from a JSON document: an array of rows, `{"items": […]}`, or the API envelope.
fn parse_json(bytes: &[u8]) -> Result<Vec<Map<String, Value>>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("malformed JSON: {e}"))?;
    let items = match value {
        Value::Array(rows) => rows,
        other => parse_page(other)?.items,
    };
    rows_of(items)
}

fn rows_of(items: Vec<Value>) -> Result<Vec<Map<String, Value>>, String> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(row) => Ok(row),
            _ => Err(format!("row {} is not an object", i + 1)),
        })
        .collect()
}

/// One page of the API.
#[derive(Debug)]
struct ApiPage {
    items: Vec<Value>,
    total_count: Option<i64>,
}

fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads `{"response": {"header": {...}, "body": {"items": …, "totalCount": …}}}` (also
/// without the `response` wrapper). `items` may be an array, `{"item": [...]}`, `{"item": {...}}`
/// or `""` (no rows), as the portal's JSON renderings differ.
fn parse_page(value: Value) -> Result<ApiPage, String> {
    let Value::Object(mut root) = value else { return Err("expected a JSON object".into()) };
    let mut response = match root.remove("response") {
        Some(Value::Object(r)) => r,
        Some(_) => return Err("`response` is not an object".into()),
        None => root,
    };
    if let Some(Value::Object(header)) = response.get("header") {
        let code = header.get("resultCode").and_then(Value::as_str).unwrap_or("00");
        if !matches!(code, "00" | "000" | "0") {
            let msg = header.get("resultMsg").and_then(Value::as_str).unwrap_or("");
            return Err(format!("the API answered with error {code}: {}", msg.chars().take(200).collect::<String>()));
        }
    }
    let mut body = match response.remove("body") {
        Some(Value::Object(b)) => b,
        _ => response,
    };
    let total_count = number(body.get("totalCount"));
    let items = match body.remove("items") {
        Some(Value::Array(a)) => a,
        Some(Value::Object(mut o)) => match o.remove("item") {
            Some(Value::Array(a)) => a,
            Some(obj @ Value::Object(_)) => vec![obj],
            _ => Vec::new(),
        },
        Some(Value::Null) | Some(Value::String(_)) => Vec::new(),
        None if total_count.is_some() => Vec::new(),
        _ => return Err("unexpected response shape: no `items`".into()),
    };
    Ok(ApiPage { items, total_count })
}

/// A client of the AptListService API, configured from `registry.*`.
pub struct Api {
    http: KeyedClient,
    rows_per_page: u32,
}

impl Api {
    /// `None` without a service key.
    pub fn new(s: &RegistrySettings) -> Result<Option<Self>, SourceError> {
        let Some(key) = s.service_key.clone() else { return Ok(None) };
        let retry = Retry {
            retries: s.retries,
            backoff: Duration::from_millis(s.backoff_ms),
            max_backoff: Duration::from_secs(30),
        };
        let url = format!("{}{}", s.base_url.trim_end_matches('/'), s.list_path);
        let timeout = Duration::from_millis(s.request_timeout_ms);
        let http =
            KeyedClient::new("registry API", "registry.service_key", url, key, timeout, retry).map_err(SourceError)?;
        Ok(Some(Self { http, rows_per_page: s.rows_per_page }))
    }

    /// Every row, page by page, or the first error (after retries).
    pub async fn fetch_all(
        &self,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Vec<Map<String, Value>>, SourceError> {
        let fetch = |page_no: u32| async move {
            let page = self.fetch_page(page_no).await.map_err(|e| e.0)?;
            let total_count = page.total_count;
            let rows = rows_of(page.items).map_err(|e| format!("page {page_no}: {e}"))?;
            Ok(Page { total_count, rows })
        };
        fetch_all_pages(fetch, |rows, total| progress(Progress::Fetched { rows, total }))
            .await
            .map_err(|e| self.error(e))
    }

    /// One page (retried by the client when the failure may be transient).
    async fn fetch_page(&self, page_no: u32) -> Result<ApiPage, SourceError> {
        let query =
            [("pageNo", page_no.to_string()), ("numOfRows", self.rows_per_page.to_string()), ("_type", "json".into())];
        let value = self.http.get_json(&format!("page {page_no}"), &query).await.map_err(SourceError)?;
        parse_page(value).map_err(|e| self.error(format!("page {page_no}: {e}")))
    }

    fn error(&self, text: String) -> SourceError {
        SourceError(self.http.redact(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn rows_are_normalised_and_bad_ones_skipped() {
        let raw = vec![
            obj(json!({"kaptCode": "A1", "kaptName": " 파장삼익 ", "as1": "경기도", "as2": "수원장안구",
                       "as3": "파장동", "as4": "", "bjdCode": "4111112900"})),
            obj(json!({"kaptCode": "", "kaptName": "x"})),
            obj(json!({"kaptCode": "A1", "kaptName": "again"})),
            obj(json!({"kaptCode": "A2", "kaptName": ""})),
        ];
        let (rows, problems) = normalise(&raw);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "파장삼익");
        assert_eq!(rows[0].address, "경기도 수원장안구 파장동");
        assert_eq!(rows[0].registry["bjdCode"], "4111112900");
        assert_eq!(problems.iter().map(|p| p.0).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn api_shapes() {
        let p = parse_page(json!({"response": {"header": {"resultCode": "00", "resultMsg": "NORMAL SERVICE"},
            "body": {"items": [{"kaptCode": "A1"}], "numOfRows": "10", "pageNo": "1", "totalCount": "5067"}}}))
        .unwrap();
        assert_eq!((p.items.len(), p.total_count), (1, Some(5067)));
        let p = parse_page(json!({"response": {"body": {"items": {"item": {"kaptCode": "A1"}}, "totalCount": 1}}}))
            .unwrap();
        assert_eq!(p.items.len(), 1);
        let p = parse_page(json!({"response": {"body": {"items": "", "totalCount": 0}}})).unwrap();
        assert!(p.items.is_empty());
        let e = parse_page(
            json!({"response": {"header": {"resultCode": "30", "resultMsg": "SERVICE KEY IS NOT REGISTERED ERROR."}}}),
        )
        .unwrap_err();
        assert!(e.contains("30"), "{e}");
    }
}
