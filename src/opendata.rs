//! The HTTP client for the public-data APIs maru copies from (the odcloud gateway of the
//! clinical trials, data.go.kr's AptListService for the apartment registry): the service key
//! travels in the query string, so it is redacted from every error and log line, and redirects
//! are refused (one would carry the key to wherever it points). Each request has a time-out;
//! a time-out, a connection error, 429 and 5xx are retried with exponential backoff, never 401,
//! 403 or a malformed body. Bodies are bounded.

use std::error::Error as _;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The largest body (or file) accepted from a source.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub retries: u32,
    /// First delay; doubles with each retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
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

/// A failed attempt, and whether trying again may help.
struct Attempt {
    error: String,
    retryable: bool,
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
        let mut attempt: u32 = 0;
        loop {
            match self.try_get(query).await {
                Ok(v) => return Ok(v),
                Err(a) if a.retryable && attempt < self.retry.retries => {
                    let delay =
                        self.retry.backoff.saturating_mul(2u32.saturating_pow(attempt)).min(self.retry.max_backoff);
                    tracing::warn!(
                        source = self.name,
                        request = what,
                        attempt = attempt + 1,
                        retry_ms = delay.as_millis() as u64,
                        error = %self.redact(&a.error),
                        "public-data request failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(a) => {
                    let tries = if attempt > 0 { format!(" (after {} attempts)", attempt + 1) } else { String::new() };
                    return Err(self.redact(&format!("{what}: {}{tries}", a.error)));
                }
            }
        }
    }

    async fn try_get(&self, query: &[(&str, String)]) -> Result<Value, Attempt> {
        let transport = |e: reqwest::Error| {
            let retryable = e.is_timeout() || e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
            let error =
                if e.is_timeout() { format!("timed out after {} ms", self.timeout.as_millis()) } else { chain(e) };
            Attempt { error, retryable }
        };
        let mut resp = self
            .client
            .get(&self.url)
            .query(&[("serviceKey", self.key.expose_secret())])
            .query(query)
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
                401 | 403 => format!(" (check {})", self.key_setting),
                _ => String::new(),
            };
            return Err(Attempt { error: format!("HTTP {status}{hint}: {}", excerpt(&body)), retryable });
        }
        serde_json::from_slice(&body).map_err(|e| Attempt { error: format!("malformed JSON: {e}"), retryable: false })
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
}
