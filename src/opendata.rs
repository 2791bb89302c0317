//! The HTTP client for the public-data APIs maru copies from (the odcloud gateway of the
//! clinical trials, data.go.kr's AptListService for the apartment registry): the service key
//! travels in the query string, so it is redacted from every error and log line, and redirects
//! are refused (one would carry the key to wherever it points). Each request has a time-out;
//! a time-out, a connection error, 429 and 5xx are retried ([`crate::retry`]: exponential
//! backoff with jitter, a `Retry-After` on 429/503 honoured up to [`RETRY_AFTER_CAP`]), never
//! another 4xx or a malformed body. Bodies are bounded.

use std::error::Error as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::retry::{self, Policy, RETRY_AFTER_CAP};

/// The largest body (or file) accepted from a source.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub retries: u32,
    /// First delay; doubles with each retry up to `max_backoff` (each plus up to as much again
    /// in jitter).
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Retry {
    fn policy(&self) -> Policy {
        Policy { first: self.backoff, max: self.max_backoff, retries: Some(self.retries) }
    }
}

/// A GET client for one endpoint of a keyed public-data API.
pub struct KeyedClient {
    client: reqwest::Client,
    url: String,
    key: SecretString,
    timeout: Duration,
    retry: Retry,
    /// For log lines, e.g. "trials gateway".
    name: &'static str,
    /// The setting that holds the key, named in 401/403 errors, e.g. "trials.service_key".
    key_setting: &'static str,
}

/// A failed attempt, whether trying again may help, and how long the server asked to wait.
struct Attempt {
    error: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl KeyedClient {
    pub fn new(
        name: &'static str,
        key_setting: &'static str,
        url: String,
        key: SecretString,
        timeout: Duration,
        retry: Retry,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("maru/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(e)))?;
        Ok(Self { client, url, key, timeout, retry, name, key_setting })
    }

    /// GET with `serviceKey` and `query`, retried when the failure may be transient; the JSON
    /// body, or what went wrong prefixed with `what` (e.g. "page 3"), the key redacted.
    pub async fn get_json(&self, what: &str, query: &[(&str, String)]) -> Result<Value, String> {
        let attempts = AtomicU32::new(0);
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            self.try_get(query)
        })
        .retry(self.retry.policy().backoff())
        .sleep(tokio::time::sleep)
        .when(|a: &Attempt| a.retryable)
        .adjust(|a: &Attempt, computed| retry::next_delay(computed, a.retry_after, RETRY_AFTER_CAP))
        .notify(|a: &Attempt, delay| {
            tracing::warn!(
                source = self.name,
                request = what,
                attempt = attempts.load(Ordering::Relaxed),
                retry_ms = delay.as_millis() as u64,
                error = %self.redact(&a.error),
                "public-data request failed; retrying"
            );
        })
        .await;
        result.map_err(|a| {
            let n = attempts.load(Ordering::Relaxed);
            let tries = if n > 1 { format!(" (after {n} attempts)") } else { String::new() };
            self.redact(&format!("{what}: {}{tries}", a.error))
        })
    }

    async fn try_get(&self, query: &[(&str, String)]) -> Result<Value, Attempt> {
        let transport = |e: reqwest::Error| {
            let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            let error =
                if e.is_timeout() { format!("timed out after {} ms", self.timeout.as_millis()) } else { chain(e) };
            Attempt { error, retryable, retry_after: None }
        };
        let req = self.client.get(&self.url).query(&[("serviceKey", self.key.expose_secret())]).query(query);
        let mut resp = crate::traces::send(req, "opendata.get").await.map_err(transport)?;
        let status = resp.status();
        let retry_after = retry::retry_after(status, resp.headers(), SystemTime::now());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Attempt {
                    error: format!("response larger than {MAX_BODY_BYTES} bytes"),
                    retryable: false,
                    retry_after: None,
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            let hint = match (status.as_u16(), retry_after) {
                (401 | 403, _) => format!(" (check {})", self.key_setting),
                (_, Some(wait)) if wait > RETRY_AFTER_CAP => {
                    format!(
                        " (Retry-After {} s, longer than the {} s maru waits)",
                        wait.as_secs(),
                        RETRY_AFTER_CAP.as_secs()
                    )
                }
                _ => String::new(),
            };
            return Err(Attempt { error: format!("HTTP {status}{hint}: {}", excerpt(&body)), retryable, retry_after });
        }
        serde_json::from_slice(&body).map_err(|e| Attempt {
            error: format!("malformed JSON: {e}"),
            retryable: false,
            retry_after: None,
        })
    }

    /// `text` with the key replaced.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.key.expose_secret())
    }
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

/// One page of a `totalCount`-paged open-data API: its rows and the total it reports.
pub struct Page<T> {
    pub total_count: Option<i64>,
    pub rows: Vec<T>,
}

/// Every row of a `totalCount`-paged API: pages 1, 2, … from `fetch` until `totalCount` rows
/// are in, calling `progress(rows, total)` after each. Refuses a missing or negative total, a
/// total that changes during the run (the source was being updated: try again later) and an
/// empty page before the end. Errors are plain text; the caller redacts and wraps them.
pub async fn fetch_all_pages<T, F, Fut>(mut fetch: F, mut progress: impl FnMut(usize, usize)) -> Result<Vec<T>, String>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, String>>,
{
    let mut rows = Vec::new();
    let mut total: Option<i64> = None;
    let mut page: u32 = 1;
    loop {
        let got = fetch(page).await?;
        let t = match (total, got.total_count) {
            (None, Some(t)) => *total.insert(t),
            (Some(t), Some(now)) if now != t => {
                return Err(format!(
                    "page {page}: totalCount changed from {t} to {now} during the run; try again later"
                ));
            }
            (Some(t), _) => t,
            (None, None) => return Err(format!("page {page}: no totalCount")),
        };
        if t < 0 {
            return Err(format!("page {page}: negative totalCount {t}"));
        }
        let n = got.rows.len();
        rows.extend(got.rows);
        progress(rows.len(), usize::try_from(t).unwrap_or(0));
        if rows.len() as i64 >= t {
            return Ok(rows);
        }
        if n == 0 {
            return Err(format!("page {page} was empty after {} of {t} rows", rows.len()));
        }
        page += 1;
    }
}

/// At most `max_chars` characters of `s`, with an ellipsis when cut.
pub fn cut(s: &str, max_chars: usize) -> String {
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
        let key = "a+b/c==";
        let text = "key a+b/c== or a%2Bb%2Fc%3D%3D";
        assert_eq!(redact(text, key), "key ******** or ********");
        assert_eq!(redact(text, ""), text);
    }

    #[test]
    fn cut_marks_what_it_cut() {
        assert_eq!(cut("가나다라", 2), "가나…");
        assert_eq!(cut("가나", 2), "가나");
    }

    /// A local API answering each GET with the next of `replies` (status, Retry-After), then
    /// 200 `{"ok": true}`; returns its URL and the count of requests.
    async fn api(replies: Vec<(u16, Option<&'static str>)>) -> (String, std::sync::Arc<AtomicU32>) {
        use axum::http::{HeaderValue, StatusCode};
        use axum::response::IntoResponse;
        let hits = std::sync::Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let replies = std::sync::Arc::new(replies);
        let router = axum::Router::new().route(
            "/api",
            axum::routing::get(move || {
                let (hits, replies) = (counter.clone(), replies.clone());
                async move {
                    let n = hits.fetch_add(1, Ordering::SeqCst) as usize;
                    match replies.get(n) {
                        Some((status, retry_after)) => {
                            let mut r = (StatusCode::from_u16(*status).unwrap(), "busy").into_response();
                            if let Some(v) = retry_after {
                                r.headers_mut().insert("retry-after", HeaderValue::from_static(v));
                            }
                            r
                        }
                        None => ([("content-type", "application/json")], r#"{"ok": true}"#).into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (url, hits)
    }

    fn client(url: String) -> KeyedClient {
        // A 10 ms backoff: a retry that waits a second waited for the server, not for it.
        let retry = Retry { retries: 3, backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(40) };
        KeyedClient::new("test API", "test.service_key", url, SecretString::from("k"), Duration::from_secs(5), retry)
            .unwrap()
    }

    #[tokio::test]
    async fn retry_after_is_honoured_on_503_and_429() {
        for (status, wait) in [(503, "1"), (429, "1")] {
            let (url, hits) = api(vec![(status, Some(wait))]).await;
            let started = std::time::Instant::now();
            let v = client(url).get_json("page 1", &[]).await.unwrap();
            assert_eq!(v["ok"], true);
            assert_eq!(hits.load(Ordering::SeqCst), 2, "one failure, one retry");
            // A correctness check of the delay (not a performance assertion): the retry came no
            // earlier than the server asked.
            assert!(started.elapsed() >= Duration::from_secs(1), "{status}: retried after {:?}", started.elapsed());
        }
        // As an HTTP date too.
        let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
        let when: &'static str = Box::leak(when.into_boxed_str());
        let (url, hits) = api(vec![(503, Some(when))]).await;
        let started = std::time::Instant::now();
        client(url).get_json("page 1", &[]).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // The date has one-second precision: at least one second is left of the two.
        assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn transient_failures_back_off_and_4xx_is_not_retried() {
        let (url, hits) = api(vec![(500, None), (502, None), (503, None)]).await;
        client(url).get_json("page 1", &[]).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 4, "three failures, three retries");

        let (url, hits) = api(vec![(500, None); 10]).await;
        let e = client(url).get_json("page 7", &[]).await.unwrap_err();
        assert!(e.starts_with("page 7: HTTP 500") && e.ends_with("(after 4 attempts)"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 4, "1 + retries");

        for status in [400, 401, 403, 404] {
            let (url, hits) = api(vec![(status, Some("1"))]).await;
            let e = client(url).get_json("page 1", &[]).await.unwrap_err();
            assert!(e.contains(&format!("HTTP {status}")), "{e}");
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{status} is not retried");
        }
        // A server asking for longer than maru waits: not retried, and the error says why.
        let (url, hits) = api(vec![(503, Some("3600"))]).await;
        let e = client(url).get_json("page 1", &[]).await.unwrap_err();
        assert!(e.contains("Retry-After 3600 s"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    /// Pages of `per` rows out of `total`, with the totals each page reports.
    async fn pages(totals: &[Option<i64>], per: usize) -> Result<Vec<u32>, String> {
        let totals = totals.to_vec();
        fetch_all_pages(
            |page| {
                let total_count = totals.get(page as usize - 1).copied().flatten();
                async move { Ok(Page { total_count, rows: vec![page; per] }) }
            },
            |_, _| {},
        )
        .await
    }

    #[tokio::test]
    async fn pages_until_the_total_and_refuses_inconsistent_sources() {
        assert_eq!(pages(&[Some(5), Some(5), Some(5)], 2).await.unwrap(), [1, 1, 2, 2, 3, 3]);
        // Later pages may leave the total out.
        assert_eq!(pages(&[Some(3), None], 2).await.unwrap(), [1, 1, 2, 2]);
        assert_eq!(pages(&[Some(0)], 0).await.unwrap(), Vec::<u32>::new());
        assert!(pages(&[Some(5), Some(7)], 2).await.unwrap_err().contains("totalCount changed from 5 to 7"));
        assert!(pages(&[None], 2).await.unwrap_err().contains("no totalCount"));
        assert!(pages(&[Some(-1)], 2).await.unwrap_err().contains("negative totalCount"));
        assert!(pages(&[Some(5), Some(5)], 0).await.unwrap_err().contains("page 1 was empty after 0 of 5 rows"));
    }
}
