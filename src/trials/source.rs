//! Where ingest rows come from: the odcloud gateway, paged (`page`, `perPage`, until
//! `totalCount`), every request bounded by a time-out and retried with exponential backoff
//! after time-outs, connection errors, 429 and 5xx; or a JSON file (a bare array of rows, or
//! the gateway envelope). Every error text is free of the service key: reqwest errors lose
//! their URL and whatever remains is redacted.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::model::{Progress, RawRow};
use crate::config::TrialsSettings;

/// Largest response body (or file) accepted.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

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
    client: reqwest::Client,
    url: String,
    key: SecretString,
    per_page: u32,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

/// A failed attempt, and whether trying again may help.
struct Attempt {
    error: String,
    retryable: bool,
}

impl Gateway {
    /// `None` without a service key.
    pub fn new(s: &TrialsSettings) -> Result<Option<Self>, SourceError> {
        let Some(key) = s.service_key.clone() else { return Ok(None) };
        let client = reqwest::Client::builder()
            .timeout(s.request_timeout())
            .connect_timeout(s.request_timeout())
            .user_agent(concat!("maru/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the key in its query string to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SourceError(format!("cannot build the HTTP client: {}", chain(e))))?;
        Ok(Some(Self {
            client,
            url: format!("{}{}", s.base_url.trim_end_matches('/'), s.dataset_path),
            key,
            per_page: s.per_page,
            retries: s.retries,
            backoff: Duration::from_millis(s.backoff_ms),
            max_backoff: Duration::from_millis(s.max_backoff_ms),
            timeout: s.request_timeout(),
        }))
    }

    /// Every row of the dataset, or the first error (after retries).
    pub async fn fetch_all(&self, progress: &(dyn Fn(Progress) + Send + Sync)) -> Result<Vec<RawRow>, SourceError> {
        let mut rows: Vec<RawRow> = Vec::new();
        let mut total: Option<i64> = None;
        let mut page: u32 = 1;
        loop {
            let env = self.fetch_page(page).await?;
            if let Some(p) = env.page
                && p != i64::from(page)
            {
                return Err(self.error(format!("page {page}: the gateway answered with page {p}")));
            }
            let t = *total.get_or_insert(env.total_count);
            if env.total_count != t {
                return Err(self.error(format!(
                    "page {page}: totalCount changed from {t} to {} during the run; try again later",
                    env.total_count
                )));
            }
            if t < 0 {
                return Err(self.error(format!("page {page}: negative totalCount {t}")));
            }
            let got = env.data.len();
            rows.extend(env.data);
            progress(Progress::Fetched { rows: rows.len(), total: usize::try_from(t).unwrap_or(0) });
            if rows.len() as i64 >= t {
                return Ok(rows);
            }
            if got == 0 {
                return Err(self.error(format!("page {page} was empty after {} of {t} rows", rows.len())));
            }
            page += 1;
        }
    }

    /// One page, retried with exponential backoff when the failure may be transient.
    async fn fetch_page(&self, page: u32) -> Result<Envelope, SourceError> {
        let mut attempt: u32 = 0;
        loop {
            match self.try_page(page).await {
                Ok(env) => return Ok(env),
                Err(a) if a.retryable && attempt < self.retries => {
                    let delay = self.backoff.saturating_mul(2u32.saturating_pow(attempt)).min(self.max_backoff);
                    tracing::warn!(
                        page,
                        attempt = attempt + 1,
                        retry_ms = delay.as_millis() as u64,
                        error = %self.redact(&a.error),
                        "trials gateway request failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(a) => {
                    let tries = if attempt > 0 { format!(" (after {} attempts)", attempt + 1) } else { String::new() };
                    return Err(self.error(format!("page {page}: {}{tries}", a.error)));
                }
            }
        }
    }

    async fn try_page(&self, page: u32) -> Result<Envelope, Attempt> {
        let transport = |e: reqwest::Error| {
            let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            let error =
                if e.is_timeout() { format!("timed out after {} ms", self.timeout.as_millis()) } else { chain(e) };
            Attempt { error, retryable }
        };
        let mut resp = self
            .client
            .get(&self.url)
            .query(&[
                ("serviceKey", self.key.expose_secret()),
                ("page", &page.to_string()),
                ("perPage", &self.per_page.to_string()),
                ("returnType", "JSON"),
            ])
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt {
                    error: format!("response larger than {MAX_BODY_BYTES} bytes"),
                    retryable: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            let hint = match status.as_u16() {
                401 | 403 => " (check trials.service_key)",
                _ => "",
            };
            return Err(Attempt { error: format!("HTTP {status}{hint}: {}", excerpt(&body)), retryable });
        }
        parse_envelope(&body).map_err(|error| Attempt { error, retryable: false })
    }

    fn redact(&self, text: &str) -> String {
        redact(text, self.key.expose_secret())
    }

    fn error(&self, text: String) -> SourceError {
        SourceError(self.redact(&text))
    }
}

/// The envelope, or what is wrong with the body. odcloud reports some errors as 200 with
/// `{"code": …, "msg": …}`.
fn parse_envelope(body: &[u8]) -> Result<Envelope, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
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

/// An error and its causes on one line, without the request URL (it holds the key).
fn chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "(empty body)".to_owned() } else { cut(text, 200) }
}

fn cut(s: &str, max_chars: usize) -> String {
    let mut out: String = s.chars().take(max_chars).collect();
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Replaces the key, raw or URL-encoded, wherever it appears.
pub fn redact(text: &str, key: &str) -> String {
    if key.is_empty() {
        return text.to_owned();
    }
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    text.replace(key, "********").replace(&encoded, "********")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_covers_raw_and_encoded_keys() {
        let key = "abc+/def==";
        let text = format!("bad key {key} in url ?serviceKey=abc%2B%2Fdef%3D%3D");
        let out = redact(&text, key);
        assert!(!out.contains("abc"), "{out}");
        assert_eq!(out.matches("********").count(), 2);
    }

    #[test]
    fn envelope_errors_are_described() {
        assert!(parse_envelope(b"{\"page\":1,").unwrap_err().starts_with("malformed JSON"));
        let e = parse_envelope("{\"code\":-4,\"msg\":\"등록되지 않은 인증키 입니다.\"}".as_bytes()).unwrap_err();
        assert!(e.contains("-4") && e.contains("인증키"), "{e}");
        assert!(
            parse_envelope(b"{\"totalCount\":1,\"data\":[1]}").unwrap_err().starts_with("unexpected response shape")
        );
        let env = parse_envelope(b"{\"page\":1,\"perPage\":2,\"totalCount\":1,\"data\":[{\"a\":\"b\"}]}").unwrap();
        assert_eq!((env.page, env.total_count, env.data.len()), (Some(1), 1, 1));
    }
}
