//! The local backend's HTTP routes on maru's public gRPC listener (which already speaks
//! HTTP/1.1 for gRPC-web): `PUT /media/upload/<token>` receives an upload, `GET /media/<token>`
//! serves a variant. [`MediaHttpLayer`] sends `/media/…` paths to them, past the gRPC layers
//! (no gRPC status, no RPC metrics); the token in the URL is the credential.
//!
//! An upload is streamed to the store in chunks of [`CHUNK_BYTES`] (at most two chunks in
//! flight), never held whole; the declared size is enforced while streaming: a body that
//! passes it is refused (413) as soon as it does, one that ends short is refused (400), and the
//! partial object is discarded. The token is single-use: the first PUT claims the upload
//! (409 for a replay); a refused or broken PUT releases it so the client may retry.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures::StreamExt as _;
use futures::future::BoxFuture;
use tower::{Layer, Service, ServiceExt as _};

use super::storage::Storage;
use super::{store, token};
use crate::state::AppState;

/// Bytes buffered per upload before a write to the store. These routes exist only with the
/// local backend (S3 clients PUT to a presigned URL), so no S3 minimum part size applies here;
/// UploadMedia, which also writes to S3, uses `ops::S3_PART_BYTES` there.
pub const CHUNK_BYTES: usize = 256 * 1024;

#[derive(Clone)]
struct Http {
    state: AppState,
    storage: Storage,
}

/// The routes (served only with the local backend; S3 clients talk to the bucket).
pub fn router(state: &AppState, storage: &Storage) -> Router {
    Router::new()
        .route("/media/upload/{token}", put(put_upload))
        .route("/media/{token}", get(get_variant))
        .with_state(Arc::new(Http { state: state.clone(), storage: storage.clone() }))
}

fn counted(outcome: &'static str) {
    metrics::counter!("maru_media_http_requests_total", "outcome" => outcome).increment(1);
}

/// The closed set of the `outcome` label of `maru_media_http_requests_total`.
pub const HTTP_OUTCOMES: [&str; 9] = [
    "stored",
    "too_large",
    "size_mismatch",
    "token_invalid",
    "token_used",
    "body_error",
    "storage_error",
    "served",
    "not_modified",
];

fn refuse(status: StatusCode, outcome: &'static str, message: &str) -> Response {
    counted(outcome);
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

fn token_refusal(r: &token::Refusal) -> Response {
    let msg = match r {
        token::Refusal::Expired => "this URL has expired",
        _ => "this URL is not valid",
    };
    refuse(StatusCode::FORBIDDEN, "token_invalid", msg)
}

async fn put_upload(
    State(h): State<Arc<Http>>,
    Path(tok): Path<String>,
    headers: HeaderMap,
    body: AxumBody,
) -> Response {
    let now = h.state.clock.now();
    let claims = match token::verify(&h.state, &tok, token::UPLOAD, now.timestamp()) {
        Ok(c) => c,
        Err(r) => return token_refusal(&r),
    };
    let m = match store::start_upload(&h.state.db, claims.m, now).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return refuse(
                StatusCode::CONFLICT,
                "token_used",
                "this upload URL was already used, or the upload is closed; create a new upload",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "media upload: database unavailable");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_error", "unavailable; retry shortly");
        }
    };
    let declared = m.size_bytes as u64;
    let announced =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let release = || async {
        if let Err(e) = store::release_upload(&h.state.db, m.id).await {
            tracing::warn!(error = %e, media_id = %m.id, "releasing a refused upload failed");
        }
    };
    if announced.is_some_and(|n| n > declared) {
        release().await;
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the body is larger than the {declared} bytes declared at CreateUpload"),
        );
    }
    let mut writer = match h.storage.writer(&m.object_key, CHUNK_BYTES).await {
        Ok(w) => w,
        Err(_) => {
            release().await;
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_error", "the media store is unavailable; retry");
        }
    };
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    let refusal = loop {
        let Some(chunk) = stream.next().await else { break None };
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => break Some(refuse(StatusCode::BAD_REQUEST, "body_error", "the request body broke off")),
        };
        total += chunk.len() as u64;
        if total > declared {
            break Some(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("the body is larger than the {declared} bytes declared at CreateUpload"),
            ));
        }
        if writer.wait_for_capacity(2).await.is_err() {
            break Some(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                "the media store is unavailable; retry",
            ));
        }
        writer.put(chunk);
    };
    let refusal = refusal.or_else(|| {
        (total != declared).then(|| {
            refuse(
                StatusCode::BAD_REQUEST,
                "size_mismatch",
                &format!("{total} bytes were sent, {declared} were declared at CreateUpload"),
            )
        })
    });
    if let Some(resp) = refusal {
        let _ = writer.abort().await;
        release().await;
        return resp;
    }
    match writer.finish().await {
        Ok(_) => {
            counted("stored");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            super::storage::storage_error("write", &e);
            release().await;
            refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_error", "the media store is unavailable; retry")
        }
    }
}

async fn get_variant(State(h): State<Arc<Http>>, Path(tok): Path<String>, headers: HeaderMap) -> Response {
    let now = h.state.clock.now().timestamp();
    let claims = match token::verify(&h.state, &tok, token::DOWNLOAD, now) {
        Ok(c) => c,
        Err(r) => return token_refusal(&r),
    };
    let variant = match store::variant(&h.state.db, claims.m, &claims.v).await {
        Ok(Some(v)) => v,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "token_invalid", "no such media"),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_error", "unavailable; retry shortly"),
    };
    // A variant never changes once written: its name, media and size identify its bytes.
    let etag = format!("\"{}-{}-{}\"", claims.m.simple(), claims.v, variant.size_bytes);
    let cache = format!("private, max-age={}, immutable", (claims.e - now).max(0));
    let common = |resp: &mut Response| {
        let hs = resp.headers_mut();
        hs.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ascii"));
        hs.insert(header::CACHE_CONTROL, HeaderValue::from_str(&cache).expect("ascii"));
    };
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        counted("not_modified");
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        common(&mut resp);
        return resp;
    }
    let bytes = match h.storage.get(&variant.object_key).await {
        Ok(Some(b)) => b,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "token_invalid", "no such media"),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "storage_error", "unavailable; retry shortly"),
    };
    counted("served");
    let mut resp = ([(header::CONTENT_TYPE, variant.content_type.clone())], bytes).into_response();
    common(&mut resp);
    resp
}

/// Sends `/media/…` requests to the media routes, everything else on to the gRPC stack.
#[derive(Clone)]
pub struct MediaHttpLayer {
    router: Option<Router>,
}

impl MediaHttpLayer {
    /// `None`: no routes (the S3 backend), every request goes on.
    pub fn new(router: Option<Router>) -> Self {
        Self { router }
    }
}

impl<S> Layer<S> for MediaHttpLayer {
    type Service = MediaHttpService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MediaHttpService { inner, router: self.router.clone() }
    }
}

#[derive(Clone)]
pub struct MediaHttpService<S> {
    inner: S,
    router: Option<Router>,
}

impl<S> Service<http::Request<tonic::body::Body>> for MediaHttpService<S>
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
        if let Some(router) = &self.router
            && req.uri().path().starts_with("/media/")
        {
            let router = router.clone();
            return Box::pin(async move {
                let resp: Result<Response, Infallible> = router.oneshot(req).await;
                let resp = match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok(resp.map(tonic::body::Body::new))
            });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(req))
    }
}
