//! Request ids: `x-request-id` accepted from the client (when sane) or generated, echoed in
//! response metadata, present in every log line of the request (span field) and in every
//! error's `RequestInfo`.

use http::HeaderMap;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The client's id when it is 1–128 visible ASCII characters, else a fresh UUIDv7.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// Runs `fut` with `id` as the current request id.
pub async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// Runs `f` with `id` as the current request id (for errors built outside the handler future).
pub fn scope_sync<R>(id: &str, f: impl FnOnce() -> R) -> R {
    REQUEST_ID.sync_scope(id.to_owned(), f)
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_sane_ids_and_replaces_others() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(from_headers(&h), "abc-123");
        h.insert(HEADER, "has space".parse().unwrap());
        assert_ne!(from_headers(&h), "has space");
        h.insert(HEADER, "x".repeat(129).parse().unwrap());
        assert_eq!(from_headers(&h).len(), 32);
    }
}
