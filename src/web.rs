//! The reference web app's static files (`web/`, built into `web.dir`) on maru's public gRPC
//! listener under `/app/`, when `web.enabled`. [`WebLayer`] sends `/app` and `/app/…` to them,
//! past the gRPC layers, like the media routes (with the app disabled: a plain 404).
//!
//! - `GET`/`HEAD` only (anything else 405); `/app` redirects to `/app/`.
//! - A file of `web.dir` is served with its content type; `/app/` and any path without a file
//!   extension that names no file get `index.html` (the app's routes); a missing asset is 404.
//!   Paths with `..`, hidden segments or backslashes are 404, never outside `web.dir`.
//! - Every answer carries the app's Content-Security-Policy ([`csp`]: scripts, styles and calls
//!   to its own origin; uploads and photos also to the media origins — maru's
//!   `media.public_url` or the bucket; images from https:), `nosniff`,
//!   `frame-ancestors 'none'` and a strict referrer policy.
//! - Caching: the built names are not content-hashed, so every file is `no-cache` with an ETag
//!   (size and modification time): the browser revalidates and gets 304 while nothing changed.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::config::WebSettings;

/// The URL prefix of the app.
pub const PREFIX: &str = "/app";

/// The app's Content-Security-Policy: scripts, styles and calls to its own origin; uploads
/// (`connect-src`, the PUT) and photos (`img-src`) also to `media_origins`
/// ([`MediaSettings::browser_origins`](crate::media::config::MediaSettings::browser_origins):
/// maru's `media.public_url` or the bucket), images from any https: origin too (the legacy
/// `image_urls` of posts), `blob:` for the previews of chosen photos.
pub fn csp(media_origins: &[String]) -> String {
    let extra: String = media_origins.iter().map(|o| format!(" {o}")).collect();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'{extra}; \
         img-src 'self'{extra} https: data: blob:; font-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The content type of a file by its extension (the files a bundler writes).
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The file `path` (below `/app/`) names in `dir`, or `None` for a path that could leave it.
fn resolve(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = rel.trim_start_matches('/');
    if rel.contains('\\') || rel.split('/').any(|s| s.starts_with('.')) {
        return None;
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(p))
}

fn security_headers(h: &mut HeaderMap, csp: &HeaderValue) {
    h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn plain(status: StatusCode, text: &str) -> Response<Vec<u8>> {
    let mut r = Response::new(format!("{text}\n").into_bytes());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The answer to `method path` (path below `/app`) from `dir`, with the policy `csp`.
pub async fn respond(
    dir: &Path,
    csp: &HeaderValue,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Vec<u8>> {
    let mut resp = answer(dir, method, path, headers).await;
    security_headers(resp.headers_mut(), csp);
    if method == Method::HEAD {
        resp.body_mut().clear();
    }
    resp
}

async fn answer(dir: &Path, method: &Method, path: &str, headers: &HeaderMap) -> Response<Vec<u8>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(rel) = path.strip_prefix(PREFIX) else { return plain(StatusCode::NOT_FOUND, "not found") };
    if rel.is_empty() {
        let mut r = plain(StatusCode::PERMANENT_REDIRECT, "see /app/");
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/app/"));
        return r;
    }
    let Some(mut file) = resolve(dir, rel) else { return plain(StatusCode::NOT_FOUND, "not found") };
    let mut meta = tokio::fs::metadata(&file).await.ok().filter(|m| m.is_file());
    // The app's own routes (no extension) and `/app/` itself: index.html.
    if meta.is_none() && file.extension().is_none() {
        file = dir.join("index.html");
        meta = tokio::fs::metadata(&file).await.ok().filter(|m| m.is_file());
        if meta.is_none() {
            return plain(StatusCode::NOT_FOUND, "the web app is not built: run `npm ci && npm run build` in web/");
        }
    }
    let Some(meta) = meta else { return plain(StatusCode::NOT_FOUND, "not found") };
    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let mut r = Response::new(bytes);
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %file.display(), "web: reading a file failed");
                return plain(StatusCode::NOT_FOUND, "not found");
            }
        }
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Sends `/app` and `/app/…` to the static files when `web.enabled`, everything else on.
#[derive(Clone)]
pub struct WebLayer {
    dir: Option<Arc<PathBuf>>,
    csp: HeaderValue,
}

impl WebLayer {
    /// `media_origins`: where browsers PUT uploads and GET photos (see [`csp`]).
    pub fn new(settings: &WebSettings, media_origins: &[String]) -> Self {
        // Origins are ASCII serialisations; a value that is not a header value is left out.
        let csp = HeaderValue::from_str(&csp(media_origins))
            .unwrap_or_else(|_| HeaderValue::from_str(&csp(&[])).expect("ascii"));
        let dir = settings.enabled.then(|| Arc::new(PathBuf::from(&settings.dir)));
        if let Some(d) = &dir
            && !d.join("index.html").is_file()
        {
            tracing::info!(
                dir = %d.display(),
                "web.enabled, but web.dir has no index.html: /app/ answers 404 until the app is built \
                 (npm ci && npm run build in web/)"
            );
        }
        Self { dir, csp }
    }
}

impl<S> Layer<S> for WebLayer {
    type Service = WebService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        WebService { inner, dir: self.dir.clone(), csp: self.csp.clone() }
    }
}

#[derive(Clone)]
pub struct WebService<S> {
    inner: S,
    dir: Option<Arc<PathBuf>>,
    csp: HeaderValue,
}

impl<S> Service<http::Request<tonic::body::Body>> for WebService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path();
        // No gRPC method lives under /app: with the app disabled these paths are a plain 404
        // rather than the gRPC stack's UNIMPLEMENTED.
        if path == PREFIX || path.starts_with("/app/") {
            let (dir, csp, path) = (self.dir.clone(), self.csp.clone(), path.to_owned());
            return Box::pin(async move {
                let resp = match dir {
                    Some(dir) => respond(&dir, &csp, req.method(), &path, req.headers()).await,
                    None => plain(StatusCode::NOT_FOUND, "the web app is not enabled (web.enabled)"),
                };
                Ok(resp.map(|b| tonic::body::Body::new(axum::body::Body::from(b))))
            });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_directory() {
        let d = Path::new("/srv/app");
        assert_eq!(resolve(d, "/app.js"), Some(PathBuf::from("/srv/app/app.js")));
        assert_eq!(resolve(d, "/a/b.css"), Some(PathBuf::from("/srv/app/a/b.css")));
        for bad in ["/../etc/passwd", "/a/../../x", "/.env", "/a/.git/config", "/a\\..\\b", "//etc/passwd"] {
            assert!(resolve(d, bad).is_none_or(|p| p.starts_with(d)), "{bad}");
        }
        assert_eq!(resolve(d, "/../x"), None);
        assert_eq!(resolve(d, "/.env"), None);
    }

    #[test]
    fn the_policy_lets_uploads_and_photos_reach_the_media_origins() {
        let p = csp(&["http://127.0.0.1:50051".to_owned()]);
        assert!(p.contains("connect-src 'self' http://127.0.0.1:50051;"), "{p}");
        assert!(p.contains("img-src 'self' http://127.0.0.1:50051 https: data: blob:;"), "{p}");
        assert!(p.contains("default-src 'none'") && p.contains("frame-ancestors 'none'"), "{p}");
        let p = csp(&[]);
        assert!(p.contains("connect-src 'self';") && p.contains("img-src 'self' https:"), "{p}");

        use crate::media::config::{MediaBackend, MediaSettings};
        let mut m = MediaSettings { public_url: "https://api.example.org/base/".into(), ..MediaSettings::default() };
        assert_eq!(m.browser_origins(), ["https://api.example.org"]);
        m.backend = MediaBackend::S3;
        assert_eq!(m.browser_origins(), ["https://*.amazonaws.com"]);
        m.s3_endpoint = "http://127.0.0.1:9000".into();
        assert_eq!(m.browser_origins(), ["http://127.0.0.1:9000"]);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("app.js")), "text/javascript; charset=utf-8");
        assert_eq!(content_type(Path::new("app.CSS")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("app.js.map")), "application/json");
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
