//! Where ingest rows come from: the odcloud gateway, paged (`page`, `perPage`, until
//! `totalCount`), every request bounded by a time-out and retried with exponential backoff
//! after time-outs, connection errors, 429 and 5xx; or a JSON file (a bare array of rows, or
//! the gateway envelope). Every error text is free of the service key: reqwest errors lose
//! their URL and whatever remains is redacted.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::config::TrialsSettings;
use super::model::{Progress, RawRow};
use crate::opendata::{KeyedClient, MAX_BODY_BYTES, Page, Retry, cut, fetch_all_pages};

/// Why the rows could not be had. The text is safe to store and show to admins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// The odcloud envelope around a page of rows.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    page: Option<i64>,
    total_count: i64,
    data: Vec<RawRow>,
}

/// A client of the gateway, configured from `trials.*` settings.
pub struct Gateway {
    http: KeyedClient,
    per_page: u32,
}

impl Gateway {
    /// `None` without a service key.
    pub fn new(s: &TrialsSettings) -> Result<Option<Self>, SourceError> {
        let Some(key) = s.service_key.clone() else { return Ok(None) };
        let retry = Retry {
            retries: s.retries,
            backoff: Duration::from_millis(s.backoff_ms),
            max_backoff: Duration::from_millis(s.max_backoff_ms),
        };
        let url = format!("{}{}", s.base_url.trim_end_matches('/'), s.dataset_path);
        let http = KeyedClient::new("trials gateway", "trials.service_key", url, key, s.request_timeout(), retry)
            .map_err(SourceError)?;
        Ok(Some(Self { http, per_page: s.per_page }))
    }

    /// Every row of the dataset, or the first error (after retries).
    pub async fn fetch_all(&self, progress: &(dyn Fn(Progress) + Send + Sync)) -> Result<Vec<RawRow>, SourceError> {
        let fetch = |page: u32| async move {
            let env = self.fetch_page(page).await.map_err(|e| e.0)?;
            if let Some(p) = env.page
                && p != i64::from(page)
            {
                return Err(format!("page {page}: the gateway answered with page {p}"));
            }
            Ok(Page { total_count: Some(env.total_count), rows: env.data })
        };
        fetch_all_pages(fetch, |rows, total| progress(Progress::Fetched { rows, total }))
            .await
            .map_err(|e| self.error(e))
    }

    /// One page (retried by the client when the failure may be transient).
    async fn fetch_page(&self, page: u32) -> Result<Envelope, SourceError> {
        let query = [("page", page.to_string()), ("perPage", self.per_page.to_string()), ("returnType", "JSON".into())];
        let value = self.http.get_json(&format!("page {page}"), &query).await.map_err(SourceError)?;
        parse_envelope(value).map_err(|e| self.error(format!("page {page}: {e}")))
    }

    fn error(&self, text: String) -> SourceError {
        SourceError(self.http.redact(&text))
    }
}

/// The envelope, or what is wrong with the body. odcloud reports some errors as 200 with
/// `{"code": …, "msg": …}`.
fn parse_envelope(value: Value) -> Result<Envelope, String> {
    if value.get("totalCount").is_none()
        && let Some(msg) = value.get("msg").and_then(Value::as_str)
    {
        let code = value.get("code").map(Value::to_string).unwrap_or_default();
        return Err(format!("the gateway answered with error {code}: {}", cut(msg, 200)));
    }
    serde_json::from_value(value).map_err(|e| format!("unexpected response shape: {e}"))
}

/// Rows from a JSON file: an array of rows or an envelope with `data`.
pub fn read_file(path: &Path) -> Result<Vec<RawRow>, SourceError> {
    let fail = |what: String| SourceError(format!("{}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_BODY_BYTES as u64 {
        return Err(fail(format!("larger than {MAX_BODY_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| fail(format!("malformed JSON: {e}")))?;
    let data = match value {
        Value::Array(rows) => rows,
        Value::Object(mut env) => match env.remove("data") {
            Some(Value::Array(rows)) => rows,
            _ => return Err(fail("expected an array of rows or an object with a `data` array".into())),
        },
        _ => return Err(fail("expected an array of rows or an object with a `data` array".into())),
    };
    data.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(row) => Ok(row),
            _ => Err(fail(format!("row {} is not an object", i + 1))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_are_described() {
        let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let e = parse_envelope(json("{\"code\":-4,\"msg\":\"등록되지 않은 인증키 입니다.\"}")).unwrap_err();
        assert!(e.contains("-4") && e.contains("인증키"), "{e}");
        assert!(
            parse_envelope(json("{\"totalCount\":1,\"data\":[1]}"))
                .unwrap_err()
                .starts_with("unexpected response shape")
        );
        let env = parse_envelope(json("{\"page\":1,\"perPage\":2,\"totalCount\":1,\"data\":[{\"a\":\"b\"}]}")).unwrap();
        assert_eq!((env.page, env.total_count, env.data.len()), (Some(1), 1, 1));
    }
}
